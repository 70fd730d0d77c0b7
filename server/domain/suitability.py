"""Investor suitability questionnaire and risk disclosure (CSDC rule A4).

A4 requires knowing the investor before opening an account (a questionnaire
that yields a risk level C1..C5) and disclosing risk (a document the investor
must actually read and acknowledge). Both texts are agency content loaded
from ``server/content``; this module only validates and applies them.

Pure functions only: no I/O and no clock. ``check_acknowledgement`` takes the
reading time as an argument so that the caller decides which clock counts.

Two kinds of errors:

* content errors (a malformed questionnaire or disclosure) raise ``ValueError``
  naming the path inside the data, because an operator fixes them in a file;
* investor errors raise ``InvalidInput`` with bilingual messages, because an
  investor fixes them in the browser.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain.errors import InvalidInput

__all__ = [
    "LEVELS",
    "DisclosureDocument",
    "Option",
    "Question",
    "Questionnaire",
    "SuitabilityResult",
    "check_acknowledgement",
    "parse_disclosure",
    "parse_questionnaire",
    "score",
]

# A4: investors are classified into five risk levels, from the most cautious
# (C1) to the most aggressive (C5); products are matched against these.
LEVELS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5")

# Client-supplied identifiers are echoed in error details, which reach logs;
# clipping keeps a hostile payload from bloating them.
_MAX_ECHO = 64


def _clip(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"


# --- content model ---------------------------------------------------------


@dataclass(frozen=True)
class Option:
    id: str
    text_zh: str
    text_en: str
    score: int

    def __post_init__(self) -> None:
        # bool is an int subclass; True as a score is always a content mistake.
        if isinstance(self.score, bool) or not isinstance(self.score, int) or self.score < 0:
            raise ValueError(f"option {self.id!r}: score must be a non-negative integer")


@dataclass(frozen=True)
class Question:
    id: str
    text_zh: str
    text_en: str
    options: tuple[Option, ...]
    # Multiple-choice questions score the best chosen option: choosing more
    # boxes describes the investor more fully, it must not inflate the level.
    multiple: bool = False

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"question {self.id!r}: has no options")
        ids = [o.id for o in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError(f"question {self.id!r}: option ids are not unique")

    def option(self, option_id: str) -> Option | None:
        for o in self.options:
            if o.id == option_id:
                return o
        return None

    @property
    def min_score(self) -> int:
        return min(o.score for o in self.options)

    @property
    def max_score(self) -> int:
        return max(o.score for o in self.options)


@dataclass(frozen=True)
class Questionnaire:
    version: str
    questions: tuple[Question, ...]
    # (level, minimum total) for C1..C5 in order, strictly ascending from 0.
    thresholds: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        # Checked here as well as in parse_questionnaire: score() relies on
        # these invariants whichever way the object was built.
        problem = _threshold_problem(self.thresholds)
        if problem is not None:
            raise ValueError(f"thresholds: {problem}")
        if not self.questions:
            raise ValueError("questions: must not be empty")
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("questions: ids are not unique")

    def question(self, question_id: str) -> Question | None:
        for q in self.questions:
            if q.id == question_id:
                return q
        return None

    def level_for(self, total: int) -> str:
        """A4: the highest level whose minimum the total reaches."""
        level = self.thresholds[0][0]
        for name, minimum in self.thresholds:
            if total >= minimum:
                level = name
        return level

    @property
    def min_total(self) -> int:
        return sum(q.min_score for q in self.questions)

    @property
    def max_total(self) -> int:
        return sum(q.max_score for q in self.questions)


def _threshold_problem(thresholds: Sequence[tuple[str, int]]) -> str | None:
    levels = tuple(name for name, _ in thresholds)
    if levels != LEVELS:
        return f"levels must be exactly {', '.join(LEVELS)} in this order"
    minimums = [minimum for _, minimum in thresholds]
    for name, minimum in thresholds:
        if isinstance(minimum, bool) or not isinstance(minimum, int):
            return f"{name}: minimum must be an integer"
    if minimums[0] != 0:
        # Every total (all scores are >= 0) must map to some level.
        return "C1: minimum must be 0"
    for (prev, low), (name, high) in itertools.pairwise(thresholds):
        if high <= low:
            return f"{name}: minimum must be greater than {prev}'s ({low})"
    return None


# --- scoring ---------------------------------------------------------------


@dataclass(frozen=True)
class SuitabilityResult:
    version: str
    total: int
    level: str
    # Normalized answers: questionnaire order, duplicates removed, option ids
    # in the questionnaire's option order, so the same choices always produce
    # the same record (it is kept as evidence of the A4 assessment).
    answers: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "total": self.total,
            "level": self.level,
            "answers": {qid: list(opts) for qid, opts in self.answers.items()},
        }


def _chosen(raw: object) -> list[object]:
    # Answers often arrive straight from JSON, so the declared types are not
    # trusted: a bare string is one option id (never split into characters),
    # an empty string or null is no answer, any other scalar is one bad id.
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, Sequence) and not isinstance(raw, bytes):
        return list(raw)
    return [raw]


def score(q: Questionnaire, answers: Mapping[str, Sequence[str]]) -> SuitabilityResult:
    """Score a complete answer set and assign the A4 risk level.

    ``answers`` maps question ids to chosen option ids; a bare string is also
    accepted as one option id (the natural JSON shape for a single choice).
    """
    # Unknown questions first: they usually mean the page shows an older
    # questionnaire, and reloading also fixes any other error below.
    for qid in answers:
        if q.question(qid) is None:
            raise InvalidInput(
                "suitability_unknown_question",
                "The questionnaire has changed; reload the page and answer it again.",
                "问卷内容已更新，请刷新页面后重新作答。",
                details={"question": _clip(qid)},
            )

    normalized: dict[str, list[str]] = {}
    total = 0
    for number, question in enumerate(q.questions, start=1):
        chosen = _chosen(answers.get(question.id))
        if not chosen:
            # A4: the level must rest on every question; no default answers.
            raise InvalidInput(
                "suitability_incomplete",
                f"Question {number} has not been answered; please answer every question.",
                f"第{number}题尚未作答，请完成全部问题后再提交。",
                details={"question": question.id},
            )
        picked: set[str] = set()
        for option_id in chosen:
            if not isinstance(option_id, str) or question.option(option_id) is None:
                raise InvalidInput(
                    "suitability_invalid_option",
                    f"The answer to question {number} is not one of its options.",
                    f"第{number}题的选项无效，请重新选择。",
                    details={"question": question.id, "option": _clip(option_id)},
                )
            picked.add(option_id)
        if not question.multiple and len(picked) > 1:
            raise InvalidInput(
                "suitability_single_choice",
                f"Question {number} allows only one answer.",
                f"第{number}题为单选题，只能选择一个选项。",
                details={"question": question.id},
            )
        options = [o for o in question.options if o.id in picked]
        normalized[question.id] = [o.id for o in options]
        total += max(o.score for o in options)

    return SuitabilityResult(
        version=q.version, total=total, level=q.level_for(total), answers=normalized
    )


# --- parsing agency content ------------------------------------------------


def _keys(data: Any, path: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path or '(top level)'}: must be a table")
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{_join(path, missing[0])}: is required")
    # Unknown keys are refused: a misspelt "mutliple" silently ignored would
    # turn a multiple-choice question into a single-choice one.
    unknown = sorted(str(k) for k in set(data) - required - optional)
    if unknown:
        raise ValueError(f"{_join(path, unknown[0])}: unknown key")
    return data


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text(data: Mapping[str, Any], key: str, path: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_join(path, key)}: must be a non-empty string")
    return value


def _non_negative_int(data: Mapping[str, Any], key: str, path: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{_join(path, key)}: must be a non-negative integer")
    return value


def _array(data: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    value = data[key]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{_join(path, key)}: must be a non-empty array")
    return value


def _parse_option(data: Any, path: str) -> Option:
    table = _keys(data, path, {"id", "text_zh", "text_en", "score"}, set())
    return Option(
        id=_text(table, "id", path).strip(),
        text_zh=_text(table, "text_zh", path),
        text_en=_text(table, "text_en", path),
        score=_non_negative_int(table, "score", path),
    )


def _parse_question(data: Any, path: str) -> Question:
    table = _keys(data, path, {"id", "text_zh", "text_en", "options"}, {"multiple"})
    multiple = table.get("multiple", False)
    if not isinstance(multiple, bool):
        raise ValueError(f"{path}.multiple: must be true or false")
    options: list[Option] = []
    seen: set[str] = set()
    for i, raw in enumerate(_array(table, "options", path)):
        option = _parse_option(raw, f"{path}.options[{i}]")
        if option.id in seen:
            raise ValueError(f"{path}.options[{i}].id: duplicate option id {option.id!r}")
        seen.add(option.id)
        options.append(option)
    if len(options) < 2:
        raise ValueError(f"{path}.options: a question needs at least 2 options")
    return Question(
        id=_text(table, "id", path).strip(),
        text_zh=_text(table, "text_zh", path),
        text_en=_text(table, "text_en", path),
        options=tuple(options),
        multiple=multiple,
    )


def _parse_thresholds(value: Any, path: str) -> tuple[tuple[str, int], ...]:
    # A TOML table ({"C1": 0, ...}, order preserved) or, for JSON callers,
    # an array of [level, minimum] pairs.
    pairs: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        pairs = []
        for i, item in enumerate(value):
            if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
                raise ValueError(f"{path}[{i}]: must be a [level, minimum] pair")
            pairs.append((item[0], item[1]))
    else:
        raise ValueError(f"{path}: must be a table of level = minimum score")
    for name, minimum in pairs:
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
            raise ValueError(f"{path}.{name}: must be a non-negative integer")
    result = tuple((str(name), minimum) for name, minimum in pairs)
    problem = _threshold_problem(result)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return result


def parse_questionnaire(data: Mapping[str, Any]) -> Questionnaire:
    """Validate agency questionnaire content; ``ValueError`` names the bad path."""
    table = _keys(data, "", {"version", "questions", "thresholds"}, set())
    version = _text(table, "version", "").strip()
    questions: list[Question] = []
    seen: set[str] = set()
    for i, raw in enumerate(_array(table, "questions", "")):
        question = _parse_question(raw, f"questions[{i}]")
        if question.id in seen:
            raise ValueError(f"questions[{i}].id: duplicate question id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    thresholds = _parse_thresholds(table["thresholds"], "thresholds")
    return Questionnaire(version=version, questions=tuple(questions), thresholds=thresholds)


# --- risk disclosure -------------------------------------------------------


@dataclass(frozen=True)
class DisclosureDocument:
    version: str
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str
    min_read_seconds: int


_DISCLOSURE_KEYS = {"version", "title_zh", "title_en", "body_zh", "body_en", "min_read_seconds"}


def parse_disclosure(data: Mapping[str, Any]) -> DisclosureDocument:
    """Validate agency disclosure content; ``ValueError`` names the bad key."""
    table = _keys(data, "", _DISCLOSURE_KEYS, set())
    return DisclosureDocument(
        version=_text(table, "version", "").strip(),
        title_zh=_text(table, "title_zh", ""),
        title_en=_text(table, "title_en", ""),
        body_zh=_text(table, "body_zh", ""),
        body_en=_text(table, "body_en", ""),
        min_read_seconds=_non_negative_int(table, "min_read_seconds", ""),
    )


def check_acknowledgement(
    doc: DisclosureDocument, *, version: str, scrolled_to_end: bool, open_seconds: float
) -> None:
    """A4: accept an acknowledgement only of the current text, read in full.

    ``open_seconds`` should come from the server's own clock (time between
    serving the document and receiving the acknowledgement); a client-reported
    figure is only as honest as the client.
    """
    if version != doc.version:
        # The investor read a different text from the one in force: what they
        # confirmed is not what is disclosed now.
        raise InvalidInput(
            "disclosure_version_mismatch",
            "The risk disclosure has been updated; reload the page and read the current version.",
            "风险揭示书已更新，请刷新页面并阅读最新版本后再确认。",
            details={"expected": doc.version, "received": _clip(version)},
        )
    if scrolled_to_end is not True:
        raise InvalidInput(
            "disclosure_not_scrolled",
            "Please scroll to the end of the document before confirming.",
            "请阅读至文末后再确认。",
        )
    # NaN compares false with everything, so it must be rejected explicitly
    # rather than slip past a "<" test.
    if math.isnan(open_seconds) or open_seconds < doc.min_read_seconds:
        n = doc.min_read_seconds
        raise InvalidInput(
            "disclosure_too_quick",
            f"Please read the document for at least {n} seconds before confirming.",
            f"请至少阅读{n}秒后再确认。",
            details={"min_read_seconds": n},
        )
