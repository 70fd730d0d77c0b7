"""Suitability questionnaire and risk disclosure (CSDC rule A4), and the shipped content.

Expected totals are written out by hand from the option scores, never computed
with the code under test, so a wrong scoring rule cannot confirm itself.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.content import DEFAULT_INTAKE_PATH, load_intake_content
from server.domain.errors import ErrorKind, InvalidInput
from server.domain.suitability import (
    LEVELS,
    DisclosureDocument,
    Option,
    Question,
    Questionnaire,
    SuitabilityResult,
    check_acknowledgement,
    parse_disclosure,
    parse_questionnaire,
    score,
)

# q1 single choice 0/5/10, q2 multiple choice 0/3/8. The thresholds are chosen
# so that every one of them is reached exactly by some answer set.
SMALL: dict[str, Any] = {
    "version": "t-1",
    "thresholds": {"C1": 0, "C2": 3, "C3": 5, "C4": 8, "C5": 13},
    "questions": [
        {
            "id": "q1",
            "text_zh": "问题一",
            "text_en": "Question one",
            "options": [
                {"id": "a", "text_zh": "甲", "text_en": "A", "score": 0},
                {"id": "b", "text_zh": "乙", "text_en": "B", "score": 5},
                {"id": "c", "text_zh": "丙", "text_en": "C", "score": 10},
            ],
        },
        {
            "id": "q2",
            "text_zh": "问题二",
            "text_en": "Question two",
            "multiple": True,
            "options": [
                {"id": "a", "text_zh": "甲", "text_en": "A", "score": 0},
                {"id": "b", "text_zh": "乙", "text_en": "B", "score": 3},
                {"id": "c", "text_zh": "丙", "text_en": "C", "score": 8},
            ],
        },
    ],
}

DISCLOSURE: dict[str, Any] = {
    "version": "d-1",
    "title_zh": "风险揭示书",
    "title_en": "Risk disclosure",
    "body_zh": "证券投资有风险。",
    "body_en": "Investing involves risk.",
    "min_read_seconds": 10,
}


@pytest.fixture
def small() -> Questionnaire:
    return parse_questionnaire(SMALL)


@pytest.fixture
def doc() -> DisclosureDocument:
    return parse_disclosure(DISCLOSURE)


def _raises(code: str, q: Questionnaire, answers: Mapping[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        score(q, answers)
    assert exc.value.code == code
    assert exc.value.kind is ErrorKind.INVALID
    return exc.value


# --- scoring ---------------------------------------------------------------


def test_single_choice_scores_the_chosen_option(small: Questionnaire) -> None:
    result = score(small, {"q1": ["b"], "q2": ["a"]})
    assert (result.total, result.level) == (5, "C3")
    assert result.version == "t-1"
    assert result.answers == {"q1": ["b"], "q2": ["a"]}


def test_multiple_choice_scores_the_best_option_not_the_sum(small: Questionnaire) -> None:
    # A4: ticking more boxes must not inflate the risk level: 3 and 8 give 8, not 11.
    result = score(small, {"q1": ["a"], "q2": ["b", "c"]})
    assert (result.total, result.level) == (8, "C4")


def test_duplicate_options_collapse_and_answers_are_normalized(small: Questionnaire) -> None:
    # A repeated option on a single-choice question is still one choice.
    result = score(small, {"q2": ["c", "b", "c"], "q1": ["b", "b"]})
    assert result.total == 13
    # Questionnaire order for questions and options: one record per set of choices.
    assert list(result.answers) == ["q1", "q2"]
    assert result.answers == {"q1": ["b"], "q2": ["b", "c"]}


def test_bare_string_is_one_option_id(small: Questionnaire) -> None:
    assert score(small, {"q1": "c", "q2": "b"}).total == 13


@pytest.mark.parametrize(
    ("q1", "q2", "total", "level"),
    [
        ("a", ["a"], 0, "C1"),
        ("a", ["b"], 3, "C2"),  # exactly C2's minimum
        ("b", ["a"], 5, "C3"),  # exactly C3's minimum
        ("a", ["c"], 8, "C4"),  # exactly C4's minimum
        ("c", ["a"], 10, "C4"),
        ("b", ["c"], 13, "C5"),  # exactly C5's minimum
        ("c", ["a", "b", "c"], 18, "C5"),
    ],
)
def test_levels_at_threshold_boundaries(
    small: Questionnaire, q1: str, q2: list[str], total: int, level: str
) -> None:
    result = score(small, {"q1": [q1], "q2": q2})
    assert (result.total, result.level) == (total, level)


@pytest.mark.parametrize(
    ("total", "level"),
    [
        (0, "C1"),
        (19, "C1"),
        (20, "C2"),
        (36, "C2"),
        (37, "C3"),
        (53, "C3"),
        (54, "C4"),
        (70, "C4"),
        (71, "C5"),
        (10_000, "C5"),
    ],
)
def test_level_for_one_below_and_at_each_shipped_threshold(total: int, level: str) -> None:
    questionnaire, _ = load_intake_content()
    assert questionnaire.level_for(total) == level


def test_result_to_dict_is_json_safe_and_a_copy(small: Questionnaire) -> None:
    result = score(small, {"q1": ["c"], "q2": ["c", "a"]})
    body = result.to_dict()
    assert json.loads(json.dumps(body)) == {
        "version": "t-1",
        "total": 18,
        "level": "C5",
        "answers": {"q1": ["c"], "q2": ["a", "c"]},
    }
    body["answers"]["q1"].append("x")
    assert result.answers["q1"] == ["c"]


# --- scoring errors --------------------------------------------------------


@pytest.mark.parametrize("missing", [None, [], "", ()])
def test_unanswered_question_is_incomplete(small: Questionnaire, missing: Any) -> None:
    answers: dict[str, Any] = {"q1": ["a"]}
    if missing is not None:
        answers["q2"] = missing
    err = _raises("suitability_incomplete", small, answers)
    assert err.details == {"question": "q2"}
    assert "第2题" in err.message_zh
    assert "Question 2" in err.message


def test_no_answers_at_all_names_the_first_question(small: Questionnaire) -> None:
    assert _raises("suitability_incomplete", small, {}).details == {"question": "q1"}


def test_unknown_question_is_refused(small: Questionnaire) -> None:
    err = _raises("suitability_unknown_question", small, {"q1": ["a"], "q2": ["a"], "q9": ["a"]})
    assert err.details == {"question": "q9"}
    assert "刷新" in err.message_zh


def test_unknown_question_wins_over_incomplete(small: Questionnaire) -> None:
    # A stale page is the likely cause of both; reloading fixes both.
    _raises("suitability_unknown_question", small, {"old": ["a"]})


def test_echoed_identifiers_are_clipped(small: Questionnaire) -> None:
    err = _raises("suitability_unknown_question", small, {"x" * 1000: ["a"]})
    assert len(err.details["question"]) <= 64


@pytest.mark.parametrize(("bad", "echo"), [("d", "d"), ("A", "A"), (1, "1"), (None, "None")])
def test_option_not_in_the_question_is_invalid(small: Questionnaire, bad: Any, echo: str) -> None:
    err = _raises("suitability_invalid_option", small, {"q1": ["a"], "q2": ["b", bad]})
    assert err.details == {"question": "q2", "option": echo}
    assert "第2题" in err.message_zh


def test_scalar_answer_that_is_not_a_string_is_invalid(small: Questionnaire) -> None:
    _raises("suitability_invalid_option", small, {"q1": 5, "q2": ["a"]})


def test_option_of_another_question_is_invalid() -> None:
    q = parse_questionnaire(
        {
            **SMALL,
            "questions": [
                SMALL["questions"][0],
                {
                    **SMALL["questions"][1],
                    "options": [
                        {**o, "id": "z" + o["id"]} for o in SMALL["questions"][1]["options"]
                    ],
                },
            ],
        }
    )
    _raises("suitability_invalid_option", q, {"q1": ["a"], "q2": ["a"]})


def test_two_options_on_a_single_choice_question_are_refused(small: Questionnaire) -> None:
    err = _raises("suitability_single_choice", small, {"q1": ["a", "b"], "q2": ["a"]})
    assert err.details == {"question": "q1"}
    assert "单选" in err.message_zh


# --- parsing questionnaire content ----------------------------------------


_DELETE = object()
Q = "questions"
OPTS = "options"


def _mutated(path: Sequence[str | int], value: Any) -> dict[str, Any]:
    """SMALL with the value at ``path`` replaced (or deleted when value is _DELETE)."""
    data = copy.deepcopy(SMALL)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            (Q, 1, OPTS, 0, "score"),
            -1,
            "questions[1].options[0].score: must be a non-negative integer",
        ),
        (
            (Q, 1, OPTS, 2, "score"),
            True,
            "questions[1].options[2].score: must be a non-negative integer",
        ),
        (
            (Q, 0, OPTS, 1, "score"),
            "3",
            "questions[0].options[1].score: must be a non-negative integer",
        ),
        (
            (Q, 0, OPTS, 1, "score"),
            2.5,
            "questions[0].options[1].score: must be a non-negative integer",
        ),
        ((Q, 1, "id"), "q1", "questions[1].id: duplicate question id 'q1'"),
        ((Q, 0, OPTS, 2, "id"), "a", "questions[0].options[2].id: duplicate option id 'a'"),
        ((Q, 0, OPTS, 2, "id"), " ", "questions[0].options[2].id: must be a non-empty string"),
        (
            (Q, 0, OPTS, 2, "text_en"),
            "",
            "questions[0].options[2].text_en: must be a non-empty string",
        ),
        ((Q, 0, "text_zh"), _DELETE, "questions[0].text_zh: is required"),
        ((Q, 1, "mutliple"), True, "questions[1].mutliple: unknown key"),
        ((Q, 1, "multiple"), "yes", "questions[1].multiple: must be true or false"),
        ((Q, 0, OPTS), [], "questions[0].options: must be a non-empty array"),
        ((Q, 0, OPTS, 1), "b", "questions[0].options[1]: must be a table"),
        ((Q, 0), ["q1"], "questions[0]: must be a table"),
        ((Q,), [], "questions: must be a non-empty array"),
        (("version",), "", "version: must be a non-empty string"),
        (("version",), _DELETE, "version: is required"),
        (("extra",), 1, "extra: unknown key"),
        (("thresholds", "C2"), -3, "thresholds.C2: must be a non-negative integer"),
        (("thresholds", "C4"), "8", "thresholds.C4: must be a non-negative integer"),
        (("thresholds", "C1"), 1, "thresholds: C1: minimum must be 0"),
        (("thresholds", "C3"), 3, "thresholds: C3: minimum must be greater than C2's (3)"),
        (("thresholds", "C5"), _DELETE, "thresholds: levels must be exactly C1, C2, C3, C4, C5"),
        (("thresholds", "C6"), 20, "thresholds: levels must be exactly C1, C2, C3, C4, C5"),
        (
            ("thresholds",),
            [["C1", 0], ["C2", 3], ["C3"]],
            "thresholds[2]: must be a [level, minimum]",
        ),
        (("thresholds",), 5, "thresholds: must be a table"),
    ],
)
def test_parse_errors_name_the_path(path: tuple[str | int, ...], value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_questionnaire(_mutated(path, value))


def test_one_option_is_not_a_question() -> None:
    options = SMALL["questions"][0]["options"][:1]
    with pytest.raises(
        ValueError, match=re.escape("questions[0].options: a question needs at least 2")
    ):
        parse_questionnaire(_mutated((Q, 0, OPTS), options))


def test_thresholds_out_of_order_are_refused() -> None:
    reordered = {"C2": 3, "C1": 0, "C3": 5, "C4": 8, "C5": 13}
    with pytest.raises(ValueError, match=r"^thresholds: levels must be exactly"):
        parse_questionnaire(_mutated(("thresholds",), reordered))


def test_thresholds_may_be_level_minimum_pairs() -> None:
    pairs = [["C1", 0], ["C2", 3], ["C3", 5], ["C4", 8], ["C5", 13]]
    assert parse_questionnaire(_mutated(("thresholds",), pairs)) == parse_questionnaire(SMALL)


def test_parse_builds_the_model() -> None:
    q = parse_questionnaire(SMALL)
    assert q.version == "t-1"
    assert q.thresholds == (("C1", 0), ("C2", 3), ("C3", 5), ("C4", 8), ("C5", 13))
    assert [x.id for x in q.questions] == ["q1", "q2"]
    assert [x.multiple for x in q.questions] == [False, True]
    assert q.questions[1].options[2] == Option("c", "丙", "C", 8)


def test_parse_does_not_mutate_its_input() -> None:
    before = copy.deepcopy(SMALL)
    parse_questionnaire(SMALL)
    assert before == SMALL


def test_model_constructors_enforce_the_invariants_score_relies_on() -> None:
    opts = (Option("a", "甲", "A", 0), Option("b", "乙", "B", 1))
    question = Question("q", "问", "Q", opts)
    good = (("C1", 0), ("C2", 1), ("C3", 2), ("C4", 3), ("C5", 4))
    assert Questionnaire("v", (question,), good).level_for(4) == "C5"
    with pytest.raises(ValueError, match="C1: minimum must be 0"):
        Questionnaire("v", (question,), (("C1", 1), *good[1:]))
    with pytest.raises(ValueError, match="levels must be exactly"):
        Questionnaire("v", (question,), good[:4])
    with pytest.raises(ValueError, match="ids are not unique"):
        Questionnaire("v", (question, question), good)
    with pytest.raises(ValueError, match="option ids are not unique"):
        Question("q", "问", "Q", (opts[0], opts[0]))
    with pytest.raises(ValueError, match="non-negative"):
        Option("a", "甲", "A", -1)


# --- disclosure ------------------------------------------------------------


def test_parse_disclosure_builds_the_document(doc: DisclosureDocument) -> None:
    assert doc == DisclosureDocument(
        "d-1", "风险揭示书", "Risk disclosure", "证券投资有风险。", "Investing involves risk.", 10
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("version", "", "version: must be a non-empty string"),
        ("version", _DELETE, "version: is required"),
        ("body_zh", "  \n", "body_zh: must be a non-empty string"),
        ("body_en", None, "body_en: must be a non-empty string"),
        ("title_zh", "", "title_zh: must be a non-empty string"),
        ("min_read_seconds", -1, "min_read_seconds: must be a non-negative integer"),
        ("min_read_seconds", 1.5, "min_read_seconds: must be a non-negative integer"),
        ("min_read_seconds", False, "min_read_seconds: must be a non-negative integer"),
        ("minimum_read_seconds", 5, "minimum_read_seconds: unknown key"),
    ],
)
def test_parse_disclosure_errors_name_the_key(key: str, value: Any, message: str) -> None:
    data = dict(DISCLOSURE)
    if value is _DELETE:
        del data[key]
    else:
        data[key] = value
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_disclosure(data)


def _ack_error(doc: DisclosureDocument, **kwargs: Any) -> InvalidInput:
    args: dict[str, Any] = {"version": "d-1", "scrolled_to_end": True, "open_seconds": 30.0}
    with pytest.raises(InvalidInput) as exc:
        check_acknowledgement(doc, **(args | kwargs))
    assert exc.value.kind is ErrorKind.INVALID
    return exc.value


@pytest.mark.parametrize("seconds", [10, 10.0, 10.5, 3600.0])
def test_acknowledgement_of_the_current_text_read_in_full(
    doc: DisclosureDocument, seconds: float
) -> None:
    check_acknowledgement(doc, version="d-1", scrolled_to_end=True, open_seconds=seconds)


def test_acknowledgement_of_an_older_version_is_refused(doc: DisclosureDocument) -> None:
    err = _ack_error(doc, version="d-0")
    assert err.code == "disclosure_version_mismatch"
    assert err.details == {"expected": "d-1", "received": "d-0"}
    assert "刷新" in err.message_zh


def test_version_mismatch_is_reported_before_anything_else(doc: DisclosureDocument) -> None:
    err = _ack_error(doc, version="d-0", scrolled_to_end=False, open_seconds=0.0)
    assert err.code == "disclosure_version_mismatch"


@pytest.mark.parametrize("scrolled", [False, 1, "true"])
def test_acknowledgement_without_scrolling_to_the_end(
    doc: DisclosureDocument, scrolled: Any
) -> None:
    err = _ack_error(doc, scrolled_to_end=scrolled)
    assert err.code == "disclosure_not_scrolled"
    assert err.message_zh == "请阅读至文末后再确认。"


@pytest.mark.parametrize("seconds", [0.0, 9.999, -5.0, math.nan])
def test_acknowledgement_too_quick(doc: DisclosureDocument, seconds: float) -> None:
    err = _ack_error(doc, open_seconds=seconds)
    assert err.code == "disclosure_too_quick"
    assert "10秒" in err.message_zh
    assert "10 seconds" in err.message
    assert err.details == {"min_read_seconds": 10}


def test_zero_minimum_reading_time_accepts_immediate_acknowledgement() -> None:
    doc = parse_disclosure(DISCLOSURE | {"min_read_seconds": 0})
    check_acknowledgement(doc, version="d-1", scrolled_to_end=True, open_seconds=0.0)


# --- the shipped content -----------------------------------------------------


def _extreme_answers(q: Questionnaire, pick: Any) -> dict[str, list[str]]:
    return {x.id: [pick(x.options, key=lambda o: o.score).id] for x in q.questions}


def test_shipped_content_loads_with_the_expected_versions() -> None:
    questionnaire, disclosure = load_intake_content()
    assert questionnaire.version == "2026-11"
    assert questionnaire.thresholds == (("C1", 0), ("C2", 20), ("C3", 37), ("C4", 54), ("C5", 71))
    assert disclosure.version == "2026-11-01"
    assert disclosure.min_read_seconds == 10
    assert disclosure.title_zh == "证券交易风险揭示书及开户协议"
    assert load_intake_content(DEFAULT_INTAKE_PATH) == (questionnaire, disclosure)


def test_shipped_questions_have_at_least_three_options() -> None:
    questionnaire, _ = load_intake_content()
    assert len(questionnaire.questions) >= 8
    for question in questionnaire.questions:
        assert len(question.options) >= 3, question.id
        assert re.search(r"[\u4e00-\u9fff]", question.text_zh), question.id


def test_shipped_lowest_answers_are_c1_and_highest_c5() -> None:
    questionnaire, _ = load_intake_content()
    lowest = score(questionnaire, _extreme_answers(questionnaire, min))
    highest = score(questionnaire, _extreme_answers(questionnaire, max))
    assert (lowest.total, lowest.level) == (4, "C1")
    assert (highest.total, highest.level) == (92, "C5")
    assert (questionnaire.min_total, questionnaire.max_total) == (4, 92)


def test_shipped_personas_land_where_expected() -> None:
    questionnaire, _ = load_intake_content()
    retired_saver = {
        "age": ["e"],
        "income_source": ["b"],
        "household_income": ["a"],
        "financial_assets": ["a"],
        "experience_years": ["a"],
        "knowledge": ["b"],
        "horizon": ["a"],
        "loss_tolerance": ["a"],
    }  # 1+2+1+1+0+3+1+0
    salaried_beginner = {
        "age": ["c"],
        "income_source": ["c"],
        "household_income": ["b"],
        "financial_assets": ["a"],
        "experience_years": ["b"],
        "knowledge": ["b"],
        "horizon": ["b"],
        "loss_tolerance": ["b"],
    }  # 6+6+4+1+3+3+4+5
    seasoned_trader = {
        "age": ["b"],
        "income_source": ["c", "d", "e"],
        "household_income": ["c"],
        "financial_assets": ["c"],
        "experience_years": ["e"],
        "knowledge": ["d"],
        "horizon": ["d"],
        "loss_tolerance": ["e"],
    }  # 10+10+7+7+12+10+10+20
    landed = {
        name: (r.total, r.level)
        for name, r in (
            ("retired_saver", score(questionnaire, retired_saver)),
            ("salaried_beginner", score(questionnaire, salaried_beginner)),
            ("seasoned_trader", score(questionnaire, seasoned_trader)),
        )
    }
    assert landed == {
        "retired_saver": (9, "C1"),
        "salaried_beginner": (32, "C2"),
        "seasoned_trader": (86, "C5"),
    }


def test_shipped_disclosure_covers_the_required_topics() -> None:
    _, disclosure = load_intake_content()
    han = re.findall(r"[\u4e00-\u9fff]", disclosure.body_zh)
    assert 1500 <= len(han) <= 2500
    for topic in ["市场风险", "政策风险", "流动性风险", "技术风险", "账户安全", "非现场"]:
        assert topic in disclosure.body_zh, topic
    assert "录制" in disclosure.body_zh  # A15/A19: the witnessing video is recorded and kept
    assert "回访" in disclosure.body_zh  # A8: callback before use
    assert "个人信息" in disclosure.body_zh
    assert 250 <= len(disclosure.body_en.split()) <= 400


# --- loader errors -----------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agency.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loader_names_file_and_path_of_a_content_error(tmp_path: Path) -> None:
    text = DEFAULT_INTAKE_PATH.read_text(encoding="utf-8").replace("score = 8", "score = -8", 1)
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        load_intake_content(path)
    assert str(exc.value) == (
        f"{path}: questionnaire.questions[0].options[0].score: must be a non-negative integer"
    )


def test_loader_names_file_and_key_of_a_disclosure_error(tmp_path: Path) -> None:
    text = DEFAULT_INTAKE_PATH.read_text(encoding="utf-8").replace(
        "min_read_seconds = 10", "min_read_seconds = -1"
    )
    with pytest.raises(ValueError, match=re.escape("disclosure.min_read_seconds: must be")):
        load_intake_content(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[questionnaire\n", "invalid TOML"),
        ('disclosure = "x"\n', "[questionnaire] is missing"),
        ('questionnaire = "x"\n', "[questionnaire] must be a table"),
    ],
)
def test_loader_structure_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        load_intake_content(path)


def test_loader_requires_the_disclosure_section(tmp_path: Path) -> None:
    text = DEFAULT_INTAKE_PATH.read_text(encoding="utf-8")
    text = text[: text.index("[disclosure]")]
    with pytest.raises(ValueError, match=re.escape("[disclosure] is missing")):
        load_intake_content(_write(tmp_path, text))


def test_loader_missing_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ValueError, match=re.escape(f"{path}: cannot read")):
        load_intake_content(path)


def test_loader_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "gbk.toml"
    path.write_bytes("version = '风险'".encode("gbk"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: not UTF-8")):
        load_intake_content(path)


# --- property ----------------------------------------------------------------

SHIPPED, _ = load_intake_content()


@st.composite
def complete_answers(draw: st.DrawFn) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {}
    for question in SHIPPED.questions:
        ids = st.sampled_from([o.id for o in question.options])
        if question.multiple:
            answers[question.id] = draw(st.lists(ids, min_size=1, max_size=6))
        else:
            answers[question.id] = [draw(ids)]
    return answers


@settings(database=None, deadline=None)
@given(complete_answers(), complete_answers())
def test_level_is_monotone_in_total(a: dict[str, list[str]], b: dict[str, list[str]]) -> None:
    ra: SuitabilityResult = score(SHIPPED, a)
    rb: SuitabilityResult = score(SHIPPED, b)
    for result, answers in ((ra, a), (rb, b)):
        # Independent recomputation: best chosen option per question.
        expected = sum(
            max(o.score for o in question.options if o.id in answers[question.id])
            for question in SHIPPED.questions
        )
        assert result.total == expected
    low, high = sorted((ra, rb), key=lambda r: r.total)
    assert LEVELS.index(low.level) <= LEVELS.index(high.level)
    if low.total == high.total:
        assert low.level == high.level
