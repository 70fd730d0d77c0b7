"""Script progression and verdict rules (A12, A17.3, A17.4)."""

from __future__ import annotations

from typing import Any

import pytest

from server.content import load_script
from server.domain.errors import Conflict, InvalidInput
from server.domain.script import (
    FAIL_REASONS,
    Script,
    ScriptStep,
    check_verdict,
    parse_script,
    progress_from,
)

SCRIPT = Script(
    "v1",
    (
        ScriptStep("identity", "witness", "请说出姓名"),
        ScriptStep("note", "witness", "请注意", expects_answer=False),
        ScriptStep("statement", "investor", "本人自愿开户"),
    ),
)


def events(*items: tuple[str, dict[str, Any]]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(n * 1000, kind, payload) for n, (kind, payload) in enumerate(items)]


DISCLOSED = (("disclosure.shown", {}), ("disclosure.confirmed", {}))


def test_default_script_covers_the_rule() -> None:
    script = load_script()
    ids = [s.id for s in script.steps]
    for needed in ("identity", "own_account", "voluntary", "risk", "agreement"):
        assert needed in ids
    assert script.version and all(s.text_zh for s in script.steps)


def test_no_step_before_the_disclosure_is_read() -> None:
    progress = progress_from(SCRIPT, events(("disclosure.shown", {})))
    with pytest.raises(Conflict) as err:
        progress.check_start(0)
    assert err.value.code == "disclosure_first"
    progress_from(SCRIPT, events(*DISCLOSED)).check_start(0)


def test_a_step_with_an_answer_cannot_be_skipped() -> None:
    progress = progress_from(SCRIPT, events(*DISCLOSED, ("script.step_started", {"index": 0})))
    with pytest.raises(Conflict) as err:
        progress.check_start(2)
    assert err.value.code == "step_unmarked"
    progress = progress_from(
        SCRIPT,
        events(
            *DISCLOSED,
            ("script.step_started", {"index": 0}),
            ("script.step_marked", {"index": 0, "mark": "clear"}),
        ),
    )
    progress.check_start(2)  # step 1 takes no answer


def test_unclear_or_refused_needs_a_note() -> None:
    progress = progress_from(SCRIPT, events(*DISCLOSED, ("script.step_started", {"index": 0})))
    for mark in ("unclear", "refused"):
        with pytest.raises(InvalidInput) as err:
            progress.check_mark(0, mark, "  ")
        assert err.value.code == "note_required"
        progress.check_mark(0, mark, "声音断续")
    progress.check_mark(0, "clear", "")
    with pytest.raises(InvalidInput):
        progress.check_mark(0, "maybe", "x")
    with pytest.raises(Conflict):
        progress.check_mark(2, "clear", "")  # not started
    with pytest.raises(InvalidInput):
        progress.check_mark(1, "clear", "")  # takes no answer


def complete(
    *, face: str = "match", last_mark: str = "clear"
) -> list[tuple[int, str, dict[str, Any]]]:
    return events(
        *DISCLOSED,
        ("script.step_started", {"index": 0}),
        ("script.step_marked", {"index": 0, "mark": "clear"}),
        ("script.step_started", {"index": 1}),
        ("script.step_started", {"index": 2}),
        ("script.step_marked", {"index": 2, "mark": last_mark, "note": "x"}),
        ("face.judged", {"judgement": face}),
    )


def test_pass_needs_disclosure_every_clear_answer_and_a_face_match() -> None:
    check_verdict(progress_from(SCRIPT, complete()), "pass", None, "")
    for bad, problem in (
        (complete(face="uncertain"), "face_not_matched"),
        (complete(last_mark="refused"), "step_not_clear:statement"),
        (complete()[1:], "disclosure_not_done"),
        (complete()[:4], "step_not_taken:statement"),
    ):
        with pytest.raises(Conflict) as err:
            check_verdict(progress_from(SCRIPT, bad), "pass", None, "")
        assert problem in err.value.details["problems"]


def test_re_asking_an_unclear_answer_can_make_it_clear() -> None:
    evs = complete(last_mark="unclear")
    evs.append((9000, "script.step_marked", {"index": 2, "mark": "clear", "note": ""}))
    check_verdict(progress_from(SCRIPT, evs), "pass", None, "")


def test_fail_needs_a_known_reason_and_other_needs_text() -> None:
    progress = progress_from(SCRIPT, [])
    check_verdict(progress, "fail", "coerced", "")  # any time, even with nothing done
    with pytest.raises(InvalidInput):
        check_verdict(progress, "fail", None, "")
    with pytest.raises(InvalidInput):
        check_verdict(progress, "fail", "other", " ")
    check_verdict(progress, "fail", "other", "投资者中途离开")
    with pytest.raises(InvalidInput):
        check_verdict(progress, "maybe", None, "")
    assert all(zh and en for zh, en in FAIL_REASONS.values())


def test_step_times_come_from_the_events() -> None:
    progress = progress_from(SCRIPT, complete())
    assert progress.steps[0].started_ms == 2000 and progress.steps[0].ended_ms == 4000
    assert progress.current == 2


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        ({}, "script.version"),
        ({"version": "1", "steps": []}, "script.steps"),
        ({"version": "1", "steps": [{"id": "a", "speaker": "robot", "text_zh": "x"}]}, "speaker"),
        ({"version": "1", "steps": [{"id": "a", "speaker": "witness"}]}, "text_zh"),
        (
            {"version": "1", "steps": [{"id": "a", "speaker": "witness", "text_zh": "x"}] * 2},
            "id",
        ),
    ],
)
def test_bad_scripts_are_refused_naming_the_fault(data: dict[str, Any], fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        parse_script(data, where="s.toml")


def test_asking_a_step_again_needs_a_fresh_answer() -> None:
    evs = complete()
    evs.append((9000, "script.step_started", {"index": 2}))  # asked again, not re-marked
    with pytest.raises(Conflict) as err:
        check_verdict(progress_from(SCRIPT, evs), "pass", None, "")
    assert "step_not_clear:statement" in err.value.details["problems"]


def test_a_mark_for_another_script_version_is_ignored() -> None:
    evs = events(*DISCLOSED, ("script.step_started", {"index": 0}))
    evs.append((5000, "script.step_marked", {"index": 0, "step": "renamed", "mark": "clear"}))
    assert progress_from(SCRIPT, evs).steps[0].mark is None
