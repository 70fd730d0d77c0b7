"""The alert life cycle (A23): states, deadlines per severity, escalation when overdue."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.content import load_risk_rules
from server.domain.alerts import (
    ACTIVE,
    Alert,
    AlertEvent,
    AlertState,
    IllegalAlertTransition,
    allowed_events,
    apply,
    escalate_overdue,
    overdue,
    raise_alert,
    should_raise,
    transition,
)
from server.domain.errors import Conflict, ErrorKind, InvalidInput
from server.domain.risk_evaluation import AlertDraft, SubjectType
from server.domain.risk_rules import RuleKind, Severity

T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)
RESPONSE = load_risk_rules().response
S, E = AlertState, AlertEvent

LEGAL = {
    (S.OPEN, E.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.OPEN, E.RESOLVE): S.RESOLVED,
    (S.OPEN, E.ESCALATE): S.ESCALATED,
    (S.ACKNOWLEDGED, E.RESOLVE): S.RESOLVED,
    (S.ACKNOWLEDGED, E.ESCALATE): S.ESCALATED,
    (S.ESCALATED, E.RESOLVE): S.RESOLVED,
    (S.RESOLVED, E.REOPEN): S.OPEN,
}


def draft(
    severity: Severity = Severity.HIGH, key: str = "r:session:s1", observed: datetime = T0
) -> AlertDraft:
    return AlertDraft(
        rule_id="r",
        rule_version="t1",
        kind=RuleKind.SHORT_SESSION,
        severity=severity,
        subject_type=SubjectType.SESSION,
        subject_id="s1",
        dedup_key=key,
        observed_at=observed,
        application_ids=("a1",),
        hold_application=False,
        details={"length_seconds": 30},
    )


def raised(severity: Severity = Severity.HIGH, at: datetime = T0, alert_id: str = "al1") -> Alert:
    return raise_alert(draft(severity), alert_id=alert_id, at=at, response=RESPONSE)


@pytest.mark.parametrize("state", list(AlertState))
@pytest.mark.parametrize("event", list(AlertEvent))
def test_the_state_table(state: AlertState, event: AlertEvent) -> None:
    if (state, event) in LEGAL:
        assert transition(state, event) is LEGAL[(state, event)]
        assert event in allowed_events(state)
    else:
        with pytest.raises(IllegalAlertTransition) as err:
            transition(state, event)
        assert isinstance(err.value, Conflict) and err.value.kind is ErrorKind.CONFLICT
        assert err.value.details == {"state": state.value, "event": event.value}
        assert event not in allowed_events(state)


@pytest.mark.parametrize(
    ("severity", "hours"), [(Severity.HIGH, 4), (Severity.MEDIUM, 24), (Severity.LOW, 72)]
)
def test_the_deadline_follows_the_severity(severity: Severity, hours: int) -> None:
    alert = raised(severity)
    assert alert.state is S.OPEN and alert.owner is None
    assert alert.due_at == T0 + timedelta(hours=hours)
    assert alert.dedup_key == "r:session:s1" and alert.application_ids == ("a1",)


def test_acknowledging_makes_an_owner_and_keeps_the_clock() -> None:
    alert = apply(raised(), E.ACKNOWLEDGE, actor="c1", at=T0 + timedelta(minutes=5))
    assert alert.state is S.ACKNOWLEDGED and alert.owner == "c1"
    assert alert.due_at == T0 + timedelta(hours=4)
    assert [n.event for n in alert.notes] == [E.ACKNOWLEDGE]


def test_resolving_needs_a_note() -> None:
    taken = apply(raised(), E.ACKNOWLEDGE, actor="c1", at=T0)
    with pytest.raises(InvalidInput) as err:
        apply(taken, E.RESOLVE, actor="c1", at=T0, note="  ")
    assert err.value.code == "note_required"
    done = apply(taken, E.RESOLVE, actor="c1", at=T0 + timedelta(hours=1), note="family device")
    assert done.state is S.RESOLVED and done.resolved_at == T0 + timedelta(hours=1)
    assert done.notes[-1].text == "family device" and done.owner == "c1"
    with pytest.raises(InvalidInput):
        apply(raised(), E.ESCALATE, actor="c1", at=T0)
    with pytest.raises(InvalidInput) as who:
        apply(raised(), E.ACKNOWLEDGE, actor="", at=T0)
    assert who.value.code == "actor_required"


def test_illegal_moves_raise_conflict() -> None:
    with pytest.raises(IllegalAlertTransition):
        apply(raised(), E.REOPEN, actor="c1", at=T0, note="again", response=RESPONSE)
    done = apply(raised(), E.RESOLVE, actor="c1", at=T0, note="false alarm")
    with pytest.raises(IllegalAlertTransition):
        apply(done, E.ACKNOWLEDGE, actor="c1", at=T0)
    up = apply(raised(), E.ESCALATE, actor="c1", at=T0, note="needs the head of compliance")
    with pytest.raises(IllegalAlertTransition):
        apply(up, E.ESCALATE, actor="c1", at=T0, note="again")


def test_reopening_gives_a_fresh_deadline() -> None:
    done = apply(raised(Severity.MEDIUM), E.RESOLVE, actor="c1", at=T0, note="ok")
    later = T0 + timedelta(days=2)
    again = apply(
        done, E.REOPEN, actor="c2", at=later, note="the device came back", response=RESPONSE
    )
    assert again.state is S.OPEN and again.resolved_at is None
    assert again.due_at == later + timedelta(hours=24)
    assert [n.event for n in again.notes] == [E.RESOLVE, E.REOPEN]


def test_overdue_is_strictly_past_the_deadline_for_open_and_acknowledged_only() -> None:
    high = raised(Severity.HIGH, alert_id="h")
    low = raised(Severity.LOW, alert_id="l")
    taken = apply(raised(Severity.HIGH, alert_id="t"), E.ACKNOWLEDGE, actor="c1", at=T0)
    done = apply(raised(Severity.HIGH, alert_id="d"), E.RESOLVE, actor="c1", at=T0, note="ok")
    up = apply(raised(Severity.HIGH, alert_id="u"), E.ESCALATE, actor="c1", at=T0, note="up")
    alerts = [low, done, up, taken, high]
    due = T0 + timedelta(hours=4)
    assert overdue(alerts, due) == []
    assert [a.id for a in overdue(alerts, due + timedelta(seconds=1))] == ["h", "t"]
    assert [a.id for a in overdue(alerts, T0 + timedelta(days=4))] == ["h", "t", "l"]


def test_overdue_alerts_escalate_by_the_clock() -> None:
    late = T0 + timedelta(hours=5)
    [escalated] = escalate_overdue(
        [raised(Severity.HIGH), raised(Severity.LOW, alert_id="l")], late
    )
    assert escalated.id == "al1" and escalated.state is S.ESCALATED
    note = escalated.notes[-1]
    assert (note.actor, note.event, note.at) == ("system", E.ESCALATE, late)
    assert "Overdue since" in note.text
    assert overdue([escalated], late + timedelta(days=9)) == []


def test_should_raise_once_per_condition() -> None:
    assert should_raise(draft(), [])
    active = raised()
    assert not should_raise(draft(), [active])
    for state in ACTIVE:
        assert not should_raise(draft(), [replace(active, state=state)])
    resolved = apply(active, E.RESOLVE, actor="c1", at=T0 + timedelta(hours=1), note="ok")
    # The same evidence again is not news; evidence newer than the resolution is.
    assert not should_raise(draft(observed=T0), [resolved])
    assert not should_raise(draft(observed=T0 + timedelta(hours=1)), [resolved])
    assert should_raise(draft(observed=T0 + timedelta(hours=2)), [resolved])
    assert should_raise(draft(key="r:session:s2"), [active])


@given(st.lists(st.sampled_from(list(AlertEvent)), max_size=12))
def test_any_walk_keeps_the_alert_consistent(events: list[AlertEvent]) -> None:
    alert = raised()
    at = T0
    for event in events:
        at += timedelta(minutes=10)
        if event not in allowed_events(alert.state):
            with pytest.raises(IllegalAlertTransition):
                apply(alert, event, actor="c1", at=at, note="n", response=RESPONSE)
            continue
        alert = apply(alert, event, actor="c1", at=at, note="n", response=RESPONSE)
        assert (alert.resolved_at is not None) is (alert.state is S.RESOLVED)
        assert alert.due_at > alert.raised_at
    assert len(alert.notes) == sum(1 for n in alert.notes if n.actor == "c1")
