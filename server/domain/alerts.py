"""A risk alert's life cycle (A23) as a pure state machine, like ``application.py``.

An alert is raised open from an ``AlertDraft`` with a response deadline set by its
severity (the rule file's ``[response_hours]``). Someone takes it (acknowledge: they
become its owner), and it is either resolved (a note says what was found and done) or
escalated (by a person with a note, or by the clock: ``overdue`` lists the open and
acknowledged alerts past their deadline). Acknowledging does not stop the clock: the
deadline is for a response that closes the matter. An escalated alert is resolved by
whoever it was escalated to; a resolved alert may be reopened with a note, with a fresh
deadline. Illegal moves raise ``IllegalAlertTransition`` (a ``Conflict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from server.domain.errors import Conflict, InvalidInput
from server.domain.risk_evaluation import AlertDraft, SubjectType
from server.domain.risk_rules import Severity

__all__ = [
    "ACTIVE",
    "Alert",
    "AlertEvent",
    "AlertNote",
    "AlertState",
    "IllegalAlertTransition",
    "allowed_events",
    "apply",
    "escalate_overdue",
    "overdue",
    "raise_alert",
    "should_raise",
    "transition",
]


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class AlertEvent(StrEnum):
    ACKNOWLEDGE = "acknowledge"  # someone takes the alert: they become its owner
    RESOLVE = "resolve"  # closed, with a note saying what was found and done
    ESCALATE = "escalate"  # past its deadline, or handed up by its owner with a note
    REOPEN = "reopen"  # a resolved alert turns out not to be, with a note


S = AlertState
E = AlertEvent

_TABLE: dict[tuple[AlertState, AlertEvent], AlertState] = {
    (S.OPEN, E.ACKNOWLEDGE): S.ACKNOWLEDGED,
    # A plain false alarm may be closed at once, with its note.
    (S.OPEN, E.RESOLVE): S.RESOLVED,
    (S.OPEN, E.ESCALATE): S.ESCALATED,
    (S.ACKNOWLEDGED, E.RESOLVE): S.RESOLVED,
    (S.ACKNOWLEDGED, E.ESCALATE): S.ESCALATED,
    (S.ESCALATED, E.RESOLVE): S.RESOLVED,
    (S.RESOLVED, E.REOPEN): S.OPEN,
}

# Still waiting for someone: a new draft with the same key adds nothing.
ACTIVE = frozenset({S.OPEN, S.ACKNOWLEDGED, S.ESCALATED})
# Watched by the clock: these escalate when their deadline passes.
ON_THE_CLOCK = frozenset({S.OPEN, S.ACKNOWLEDGED})
# Who acts when the clock escalates an alert.
SYSTEM_ACTOR = "system"
# Events a person must explain in a note (escalation by the clock writes its own).
NEEDS_NOTE = frozenset({E.RESOLVE, E.ESCALATE, E.REOPEN})


class IllegalAlertTransition(Conflict):
    """The event is not allowed in the alert's current state."""

    def __init__(self, state: AlertState, event: AlertEvent) -> None:
        super().__init__(
            "illegal_alert_transition",
            f"Cannot '{event.value}' an alert that is '{state.value}'.",
            f"预警当前状态“{state.value}”下不能执行“{event.value}”。",
            details={"state": state.value, "event": event.value},
        )
        self.state = state
        self.event = event


def transition(state: AlertState, event: AlertEvent) -> AlertState:
    """Return the state after ``event``, or raise IllegalAlertTransition."""
    try:
        return _TABLE[(state, event)]
    except KeyError:
        raise IllegalAlertTransition(state, event) from None


def allowed_events(state: AlertState) -> frozenset[AlertEvent]:
    return frozenset(ev for (st, ev) in _TABLE if st is state)


@dataclass(frozen=True)
class AlertNote:
    at: datetime
    actor: str  # a staff id, or "system" for the clock
    event: AlertEvent
    text: str


@dataclass(frozen=True)
class Alert:
    id: str
    rule_id: str
    rule_version: str
    severity: Severity
    subject_type: SubjectType
    subject_id: str
    dedup_key: str
    observed_at: datetime
    application_ids: tuple[str, ...]
    hold_application: bool
    state: AlertState
    raised_at: datetime
    due_at: datetime
    owner: str | None = None
    resolved_at: datetime | None = None
    notes: tuple[AlertNote, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)


def raise_alert(
    draft: AlertDraft, *, alert_id: str, at: datetime, response: Mapping[Severity, timedelta]
) -> Alert:
    """A new open alert for ``draft``, due ``response[severity]`` after ``at``."""
    return Alert(
        id=alert_id,
        rule_id=draft.rule_id,
        rule_version=draft.rule_version,
        severity=draft.severity,
        subject_type=draft.subject_type,
        subject_id=draft.subject_id,
        dedup_key=draft.dedup_key,
        observed_at=draft.observed_at,
        application_ids=draft.application_ids,
        hold_application=draft.hold_application,
        state=AlertState.OPEN,
        raised_at=at,
        due_at=at + response[draft.severity],
        details=draft.details,
    )


def should_raise(draft: AlertDraft, existing: Iterable[Alert]) -> bool:
    """Whether ``draft`` is news: no alert with its key is still active, and it rests on
    evidence newer than the last time an alert with its key was resolved."""
    same = [a for a in existing if a.dedup_key == draft.dedup_key]
    if any(a.state in ACTIVE for a in same):
        return False
    resolved = [a.resolved_at for a in same if a.resolved_at is not None]
    return not resolved or draft.observed_at > max(resolved)


def apply(
    alert: Alert,
    event: AlertEvent,
    *,
    actor: str,
    at: datetime,
    note: str = "",
    response: Mapping[Severity, timedelta] | None = None,
) -> Alert:
    """The alert after ``event`` by ``actor``: the new state, its note, its owner.

    Acknowledging makes ``actor`` the owner. Resolving, escalating and reopening need a
    note. Reopening needs ``response`` for the fresh deadline.
    """
    state = transition(alert.state, event)
    text = note.strip()
    if event in NEEDS_NOTE and not text:
        raise InvalidInput(
            "note_required",
            f"Say why ('{event.value}' needs a note).",
            "请填写说明。",
            details={"field": "note", "event": event.value},
        )
    if not actor.strip():
        raise InvalidInput("actor_required", "Who did this?", "缺少操作人。")
    changed = replace(alert, state=state, notes=(*alert.notes, AlertNote(at, actor, event, text)))
    if event is E.ACKNOWLEDGE:
        return replace(changed, owner=actor)
    if event is E.RESOLVE:
        return replace(changed, resolved_at=at)
    if event is E.REOPEN:
        if response is None:
            raise ValueError("reopening needs the response deadlines")
        return replace(changed, resolved_at=None, due_at=at + response[alert.severity])
    return changed


def overdue(alerts: Iterable[Alert], now: datetime) -> list[Alert]:
    """The open and acknowledged alerts whose deadline has passed, oldest deadline first:
    the ones to escalate (``apply(a, ESCALATE, actor="system", note=...)``)."""
    late = [a for a in alerts if a.state in ON_THE_CLOCK and now > a.due_at]
    return sorted(late, key=lambda a: (a.due_at, a.id))


def escalate_overdue(alerts: Iterable[Alert], now: datetime) -> list[Alert]:
    """``overdue`` alerts, escalated by the clock with a note saying since when."""
    return [
        apply(
            a,
            E.ESCALATE,
            actor=SYSTEM_ACTOR,
            at=now,
            note=f"Overdue since {a.due_at.isoformat()} / 超过处理时限",
        )
        for a in overdue(alerts, now)
    ]
