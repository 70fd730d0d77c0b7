"""The witnessing script and the rules for a verdict (A12, A17.3, A17.4). Pure.

A script is versioned data: steps in order, each said by the witness (a question the
investor answers) or by the investor (a statement they make), in Chinese with optional
English. During the call the witness shows the disclosure card, confirms reading it
aloud, then takes the steps in order, marking each answer *clear*, *unclear* or
*refused*. Progress is rebuilt from the session's events, so what the verdict is judged
on is exactly what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.domain.errors import Conflict, InvalidInput
from server.domain.session import Party, Verdict


class AnswerMark(StrEnum):
    CLEAR = "clear"
    UNCLEAR = "unclear"
    REFUSED = "refused"


class FaceJudgement(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNCERTAIN = "uncertain"


SPEAKERS = frozenset(Party)
MARKS = frozenset(AnswerMark)
FACE_JUDGEMENTS = frozenset(FaceJudgement)
# Why a witness fails a session (A17.3, A17.4); "other" needs a note.
FAIL_REASONS: dict[str, tuple[str, str]] = {
    "identity_mismatch": ("人证不一致", "The person does not match the ID"),
    "not_voluntary": ("非本人真实意愿", "Not the investor's own free will"),
    "on_behalf_of_another": ("代他人开户", "Opening for someone else"),
    "coerced": ("疑似受胁迫或诱导", "Appears coerced or induced"),
    "risk_not_understood": ("不了解证券市场风险", "Does not understand the market risk"),
    "agreement_not_read": ("未阅读理解开户协议", "Has not read or understood the agreement"),
    "refused_to_answer": ("拒绝回答", "Refused to answer"),
    "unclear_answers": ("回答不清", "Answers unclear"),
    "technical_problem": ("音视频质量无法完成见证", "Audio/video too poor to witness"),
    # A holder's service (A20–A22).
    "not_account_holder": ("非账户本人", "Not the account holder"),
    "service_not_understood": (
        "不了解业务后果",
        "Does not understand what the service does",
    ),
    "accounts_not_settled": (
        "账户证券或资金未处理完毕",
        "Holdings or funds in the account not dealt with",
    ),
    "other": ("其他", "Other"),
}


@dataclass(frozen=True)
class ScriptStep:
    id: str
    speaker: str  # who speaks: the witness asks, or the investor states
    text_zh: str
    text_en: str = ""
    expects_answer: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "speaker": self.speaker,
            "text_zh": self.text_zh,
            "text_en": self.text_en,
            "expects_answer": self.expects_answer,
        }


@dataclass(frozen=True)
class Script:
    version: str
    steps: tuple[ScriptStep, ...]

    def step(self, index: int) -> ScriptStep:
        if not 0 <= index < len(self.steps):
            raise InvalidInput("bad_step", "No such script step.", "没有该话术步骤。")
        return self.steps[index]


def script_for(scripts: Mapping[str, Script], business_type: str) -> Script:
    """The script a session of this business is witnessed with (A17.4, A20)."""
    script = scripts.get(business_type)
    if script is None:
        raise Conflict(
            "no_script",
            f"No witnessing script for the business '{business_type[:40]}'.",
            "该业务没有见证话术，无法见证。",
            details={"business_type": business_type[:40]},
        )
    return script


def parse_script(data: Mapping[str, Any], *, where: str) -> Script:
    """``[script]`` with ``version`` and ``[[script.steps]]``; ValueError names the fault."""
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"{where}: script.version must be a non-empty string")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError(f"{where}: script.steps must list at least one step")
    steps: list[ScriptStep] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_steps):
        at = f"{where}: script.steps[{n}]"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{at}: must be a table")
        step_id, speaker, text = raw.get("id"), raw.get("speaker"), raw.get("text_zh")
        if not isinstance(step_id, str) or not step_id or step_id in seen:
            raise ValueError(f"{at}.id: missing or repeated")
        if speaker not in SPEAKERS:
            raise ValueError(
                f"{at}.speaker: must be one of {', '.join(sorted(SPEAKERS, reverse=True))}"
            )
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{at}.text_zh: required")
        text_en = raw.get("text_en", "")
        expects = raw.get("expects_answer", True)
        if not isinstance(text_en, str) or not isinstance(expects, bool):
            raise ValueError(f"{at}: text_en must be text and expects_answer true/false")
        seen.add(step_id)
        steps.append(ScriptStep(step_id, str(speaker), text.strip(), text_en.strip(), expects))
    return Script(version.strip(), tuple(steps))


@dataclass
class StepRecord:
    started_ms: int | None = None
    ended_ms: int | None = None
    mark: str | None = None
    note: str = ""


@dataclass
class Progress:
    """Where a session stands, rebuilt from its events (``progress_from``)."""

    script: Script
    disclosure_shown_ms: int | None = None
    disclosure_confirmed_ms: int | None = None
    current: int | None = None  # index of the step being taken
    steps: list[StepRecord] = field(default_factory=list)
    face: str | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            self.steps = [StepRecord() for _ in self.script.steps]

    # ── the witness's actions (each validated, then recorded as an event) ─────────────
    def check_start(self, index: int) -> None:
        """A step may start once the disclosure was read out, and only after every earlier
        step that expects an answer has been marked (A17.4: none passed over silently)."""
        self.script.step(index)
        if self.disclosure_confirmed_ms is None:
            raise Conflict(
                "disclosure_first",
                "Show and read out your identity disclosure first.",
                "请先展示并宣读见证人员身份信息。",
            )
        for n in range(index):
            if self.script.steps[n].expects_answer and self.steps[n].mark is None:
                raise Conflict(
                    "step_unmarked",
                    f"Mark the answer to step {n + 1} first.",
                    f"请先记录第 {n + 1} 步的回答情况。",
                    details={"step": n},
                )

    def check_mark(self, index: int, mark: str, note: str) -> None:
        step = self.script.step(index)
        if mark not in MARKS:
            raise InvalidInput("bad_mark", "Unknown mark.", "未知的回答标记。")
        if not step.expects_answer:
            raise InvalidInput(
                "no_answer_expected", "This step takes no answer.", "该步骤无需回答。"
            )
        if self.steps[index].started_ms is None:
            raise Conflict("step_not_started", "Start the step first.", "请先开始该步骤。")
        if mark != AnswerMark.CLEAR and not note.strip():
            # A17.4: an unclear or refused answer is written down, never passed over.
            raise InvalidInput(
                "note_required",
                "Say what was unclear or refused.",
                "回答不清或拒绝回答时，请填写说明。",
                details={"field": "note"},
            )

    def verdict_problems(self, result: str) -> list[str]:
        """Why a pass would be wrong (empty: a pass is allowed). A fail is always allowed:
        the witness may stop a session that is going wrong at any point."""
        if result != Verdict.PASS:
            return []
        problems: list[str] = []
        if self.disclosure_shown_ms is None or self.disclosure_confirmed_ms is None:
            problems.append("disclosure_not_done")
        for n, step in enumerate(self.script.steps):
            record = self.steps[n]
            if record.started_ms is None:
                problems.append(f"step_not_taken:{step.id}")
            elif step.expects_answer and record.mark != AnswerMark.CLEAR:
                problems.append(f"step_not_clear:{step.id}")
        if self.face != FaceJudgement.MATCH:
            problems.append("face_not_matched")
        return problems


def progress_from(script: Script, events: Iterable[tuple[int, str, Mapping[str, Any]]]) -> Progress:
    """Replay ``(offset_ms, kind, payload)`` events in order."""
    progress = Progress(script)
    for offset, kind, payload in events:
        if kind == "disclosure.shown":
            progress.disclosure_shown_ms = offset
        elif kind == "disclosure.confirmed":
            progress.disclosure_confirmed_ms = offset
        elif kind == "script.step_started":
            index = int(payload.get("index", -1))
            if 0 <= index < len(progress.steps):
                if progress.current is not None:
                    progress.steps[progress.current].ended_ms = offset
                # Asking a step again asks for a fresh answer: the old mark no longer stands.
                progress.steps[index] = StepRecord(started_ms=offset)
                progress.current = index
        elif kind == "script.step_marked":
            index = int(payload.get("index", -1))
            step_id = payload.get("step")
            if 0 <= index < len(progress.steps) and (
                step_id is None or step_id == script.steps[index].id
            ):
                progress.steps[index].mark = str(payload.get("mark"))
                progress.steps[index].note = str(payload.get("note", ""))
        elif kind == "face.judged":
            progress.face = str(payload.get("judgement"))
    return progress


def check_verdict(progress: Progress, result: str, reason_code: str | None, notes: str) -> None:
    if result not in frozenset(Verdict):
        raise InvalidInput(
            "bad_verdict", "The verdict is pass or fail.", "结论只能为通过或不通过。"
        )
    if result == Verdict.FAIL:
        if reason_code not in FAIL_REASONS:
            raise InvalidInput(
                "reason_required",
                "Choose a reason.",
                "请选择不通过原因。",
                details={"field": "reason"},
            )
        if reason_code == "other" and not notes.strip():
            raise InvalidInput(
                "note_required",
                "Describe the reason.",
                "请填写原因说明。",
                details={"field": "notes"},
            )
        return
    problems = progress.verdict_problems(Verdict.PASS)
    if problems:
        raise Conflict(
            "verdict_incomplete",
            "Not everything a pass needs is done: " + ", ".join(problems),
            "尚未完成通过所需的全部环节（身份告知、逐项确认、人像比对）。",
            details={"problems": problems},
        )
