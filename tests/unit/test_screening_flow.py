"""Where screening sits in the application's flow (A3): pure rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.domain.application import ApplicationEvent as E
from server.domain.application import ApplicationState as S
from server.domain.application import IllegalTransition, allowed_events, transition
from server.domain.screening import ScreeningResult as R
from server.domain.screening_flow import (
    awaits_decision,
    carried,
    event_for,
    passes,
    reason_problem,
    retry_delay,
)

HIT = [{"list": "sanctions", "entry_id": "SBX-S-0002", "basis": "name"}]


def test_screening_sits_between_identity_and_queue() -> None:
    assert transition(S.IDENTITY_VERIFIED, E.SCREENING_HELD) is S.SCREENING_HOLD
    assert transition(S.IDENTITY_VERIFIED, E.SCREENING_REFUSED) is S.SCREENING_REFUSED
    assert transition(S.SCREENING_HOLD, E.COMPLIANCE_CLEARED) is S.IDENTITY_VERIFIED
    assert transition(S.SCREENING_HOLD, E.COMPLIANCE_CONFIRMED) is S.SCREENING_REFUSED
    assert transition(S.SCREENING_HOLD, E.SCREENING_CLEAR) is S.IDENTITY_VERIFIED
    with pytest.raises(IllegalTransition):
        transition(S.SCREENING_HOLD, E.JOIN_QUEUE)
    assert allowed_events(S.SCREENING_REFUSED) == frozenset()


def test_screening_at_approval_returns_to_the_review() -> None:
    assert transition(S.IN_REVIEW, E.SCREENING_HELD) is S.APPROVAL_HOLD
    assert transition(S.IN_REVIEW, E.SCREENING_REFUSED) is S.SCREENING_REFUSED
    assert transition(S.APPROVAL_HOLD, E.COMPLIANCE_CLEARED) is S.IN_REVIEW
    assert transition(S.APPROVAL_HOLD, E.COMPLIANCE_CONFIRMED) is S.SCREENING_REFUSED
    with pytest.raises(IllegalTransition):
        transition(S.APPROVAL_HOLD, E.APPROVE)


def test_results_and_decisions() -> None:
    assert event_for(R.CLEAR) is E.SCREENING_CLEAR
    assert event_for(R.POSSIBLE_MATCH) is E.SCREENING_HELD
    assert event_for(R.UNAVAILABLE) is E.SCREENING_HELD
    assert event_for(R.MATCH) is E.SCREENING_REFUSED
    assert event_for(R.POSSIBLE_MATCH, carried_over=True) is E.SCREENING_CLEAR
    assert passes("clear", None) and passes("possible_match", "cleared")
    assert not passes("unavailable", None) and not passes("possible_match", "confirmed")
    assert not passes("possible_match", None)
    assert awaits_decision("possible_match", None) and not awaits_decision("unavailable", None)


def test_a_cleared_hit_carries_only_for_the_same_entries() -> None:
    cleared = frozenset({("sanctions", "SBX-S-0002")})
    assert carried(R.POSSIBLE_MATCH, HIT, cleared)
    other = [{"list": "pep", "entry_id": "SBX-P-0001"}]
    assert not carried(R.POSSIBLE_MATCH, HIT + other, cleared)
    assert not carried(R.MATCH, HIT, cleared)  # a match is never carried
    assert not carried(R.POSSIBLE_MATCH, [], cleared)


def test_unavailable_backs_off() -> None:
    assert retry_delay(1) == timedelta(seconds=30)
    assert retry_delay(2) > retry_delay(1)
    assert retry_delay(99) == retry_delay(4)


def test_a_decision_needs_a_reason() -> None:
    assert reason_problem("  ") == "too_short"
    assert reason_problem("x" * 1001) == "too_long"
    assert reason_problem("Different birth date.") is None
