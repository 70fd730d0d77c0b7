"""Where AML screening (A3) sits in the application's flow: pure rules, no I/O.

Screening runs with the identity check (stage ``intake``, before queueing) and again when
a reviewer approves (stage ``approval``). CLEAR lets the application on; POSSIBLE_MATCH
holds it for a compliance decision; MATCH refuses it; UNAVAILABLE holds it for a retry
with back-off and is never taken as clear. A compliance officer clears or confirms a
possible match, never on a case they worked on (four eyes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

from server.domain.application import ApplicationEvent
from server.domain.screening import ScreeningResult


class ScreeningStage(StrEnum):
    INTAKE = "intake"  # after the identity check, before queueing
    APPROVAL = "approval"  # when a reviewer approves


class ComplianceDecision(StrEnum):
    """What a compliance officer answers for a possible match."""

    CLEAR = "clear"
    CONFIRM = "confirm"


class ScreeningDecision(StrEnum):
    """``Screening.decision``: how a screening that needed a decision was settled."""

    CLEARED = "cleared"  # a compliance officer cleared the possible match
    CONFIRMED = "confirmed"  # a compliance officer confirmed it: refused
    # A re-screen (at approval) finding only entries compliance already cleared for this
    # application: the earlier decision carries; nobody is asked twice about one hit.
    CARRIED = "carried"


DECISION_OF = {
    ComplianceDecision.CLEAR: ScreeningDecision.CLEARED,
    ComplianceDecision.CONFIRM: ScreeningDecision.CONFIRMED,
}
EVENT_OF_DECISION = {
    ComplianceDecision.CLEAR: ApplicationEvent.COMPLIANCE_CLEARED,
    ComplianceDecision.CONFIRM: ApplicationEvent.COMPLIANCE_CONFIRMED,
}

# A reason a compliance officer must give, and how long it may be.
MIN_REASON_CHARS = 4
MAX_REASON_CHARS = 1000

# UNAVAILABLE is retried after these delays (the last one repeats): soon at first, then
# less often, so a vendor outage is not hammered by every held application.
RETRY_DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
)


def retry_delay(failed_attempts: int) -> timedelta:
    """How long to wait after ``failed_attempts`` UNAVAILABLE answers in a row (≥ 1)."""
    index = min(max(failed_attempts, 1), len(RETRY_DELAYS)) - 1
    return RETRY_DELAYS[index]


def entries_of(matches: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str]]:
    """The (list, entry id) pairs of stored matches (``adapters.screening`` JSON)."""
    return frozenset((str(m.get("list", "")), str(m.get("entry_id", ""))) for m in matches)


def carried(
    result: ScreeningResult,
    matches: Iterable[Mapping[str, Any]],
    cleared_entries: frozenset[tuple[str, str]],
) -> bool:
    """A possible match on entries compliance already cleared for this application."""
    found = entries_of(matches)
    return result is ScreeningResult.POSSIBLE_MATCH and bool(found) and found <= cleared_entries


def event_for(result: ScreeningResult, *, carried_over: bool = False) -> ApplicationEvent:
    """The application event a screening result causes."""
    if result is ScreeningResult.CLEAR or carried_over:
        return ApplicationEvent.SCREENING_CLEAR
    if result is ScreeningResult.MATCH:
        return ApplicationEvent.SCREENING_REFUSED
    return ApplicationEvent.SCREENING_HELD  # POSSIBLE_MATCH, UNAVAILABLE


def passes(result: str, decision: str | None) -> bool:
    """Whether a stored screening lets the application on (UNAVAILABLE never does)."""
    if decision in (ScreeningDecision.CLEARED, ScreeningDecision.CARRIED):
        return True
    return result == ScreeningResult.CLEAR and decision is None


def awaits_decision(result: str, decision: str | None) -> bool:
    """A possible match nobody has decided yet: on the compliance desk."""
    return result == ScreeningResult.POSSIBLE_MATCH and decision is None


def reason_problem(reason: str) -> str | None:
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        return "too_short"
    if len(text) > MAX_REASON_CHARS:
        return "too_long"
    return None
