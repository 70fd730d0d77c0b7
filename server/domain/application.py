"""The application's life cycle as a pure state machine (DESIGN.md, "Application states").

Every change of state is a named event; ``transition`` either returns the next state or
raises ``IllegalTransition``. The service layer persists the new state together with an
audit entry in one transaction.
"""

from __future__ import annotations

from enum import StrEnum

from server.domain.errors import Conflict


class ApplicationState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IDENTITY_VERIFIED = "identity_verified"
    QUEUED = "queued"
    WITNESSING = "witnessing"
    WITNESSED = "witnessed"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    # A8 allows two orders; each has its own intermediate state.
    CALLBACK_CONFIRMED = "callback_confirmed"  # callback first, account not yet opened
    ACCOUNT_OPENED = "account_opened"  # account opened but blocked until callback (A17.6)
    ACTIVE = "active"
    # Side exits.
    IDENTITY_FAILED = "identity_failed"
    WITNESS_FAILED = "witness_failed"
    REVIEW_REJECTED = "review_rejected"
    CALLBACK_FAILED = "callback_failed"
    ABANDONED = "abandoned"
    # A3 screening: held for compliance (a possible match) or for a retry (the check could
    # not be made); before queueing, or at approval (back to the review when cleared).
    SCREENING_HOLD = "screening_hold"
    APPROVAL_HOLD = "approval_hold"
    SCREENING_REFUSED = "screening_refused"  # a match, or a possible match confirmed
    # A20–A22: a holder's service carried out by the account system (wholly or in part),
    # or refused by it for every account named.
    COMPLETED = "completed"
    SERVICE_REFUSED = "service_refused"
    # A18: a one-way recording whose machine checks passed, waiting for a witness to
    # review it in full (A18.6) before the reviewer's review.
    ONE_WAY_RECORDED = "one_way_recorded"


class ApplicationEvent(StrEnum):
    SUBMIT = "submit"
    IDENTITY_MATCHED = "identity_matched"
    IDENTITY_REJECTED = "identity_rejected"
    CORRECT_DATA = "correct_data"
    JOIN_QUEUE = "join_queue"
    LEAVE_QUEUE = "leave_queue"
    START_WITNESSING = "start_witnessing"
    SESSION_INTERRUPTED = "session_interrupted"
    WITNESS_PASSED = "witness_passed"
    WITNESS_FAILED = "witness_failed"
    START_REVIEW = "start_review"
    RELEASE_REVIEW = "release_review"
    APPROVE = "approve"
    REJECT = "reject"
    CALLBACK_CONFIRMED = "callback_confirmed"
    CALLBACK_DENIED = "callback_denied"
    OPEN_ACCOUNT = "open_account"
    ABANDON = "abandon"
    SCREENING_CLEAR = "screening_clear"
    SCREENING_HELD = "screening_held"
    SCREENING_REFUSED = "screening_refused"
    COMPLIANCE_CLEARED = "compliance_cleared"
    COMPLIANCE_CONFIRMED = "compliance_confirmed"
    SERVICE_DONE = "service_done"
    SERVICE_DECLINED = "service_declined"  # the account system refused every account
    CONFIRM_ONLINE = "confirm_online"  # A22: an online service, confirmed without video
    # A18: one-way video. An attempt that fails (liveness, face, statement, or the
    # investor leaving) puts the application back where it may try again or queue for a
    # two-way call (A18.4); one that passes waits for the witness's review.
    START_ONE_WAY = "start_one_way"
    ONE_WAY_FAILED = "one_way_failed"
    ONE_WAY_RECORDED = "one_way_recorded"


class CallbackOrder(StrEnum):
    """A8: call back before opening, or open first and keep the account blocked."""

    CALLBACK_FIRST = "callback_first"
    OPEN_FIRST = "open_first"


S = ApplicationState
E = ApplicationEvent

_COMMON: dict[tuple[ApplicationState, ApplicationEvent], ApplicationState] = {
    (S.DRAFT, E.SUBMIT): S.SUBMITTED,
    # A17.2: only a registry MATCH verifies; UNAVAILABLE leaves the state unchanged.
    (S.SUBMITTED, E.IDENTITY_MATCHED): S.IDENTITY_VERIFIED,
    (S.SUBMITTED, E.IDENTITY_REJECTED): S.IDENTITY_FAILED,
    (S.SUBMITTED, E.CORRECT_DATA): S.DRAFT,
    (S.IDENTITY_FAILED, E.CORRECT_DATA): S.DRAFT,
    (S.IDENTITY_VERIFIED, E.JOIN_QUEUE): S.QUEUED,
    (S.QUEUED, E.LEAVE_QUEUE): S.IDENTITY_VERIFIED,
    (S.QUEUED, E.START_WITNESSING): S.WITNESSING,
    # A lost call puts the investor back in the queue rather than failing them.
    (S.WITNESSING, E.SESSION_INTERRUPTED): S.QUEUED,
    (S.WITNESSING, E.WITNESS_PASSED): S.WITNESSED,
    (S.WITNESSING, E.WITNESS_FAILED): S.WITNESS_FAILED,
    (S.IDENTITY_VERIFIED, E.START_ONE_WAY): S.WITNESSING,
    (S.WITNESSING, E.ONE_WAY_FAILED): S.IDENTITY_VERIFIED,
    (S.WITNESSING, E.ONE_WAY_RECORDED): S.ONE_WAY_RECORDED,
    # A18.6: the witness's review of the recording stands in for the witnessed call.
    (S.ONE_WAY_RECORDED, E.WITNESS_PASSED): S.WITNESSED,
    (S.ONE_WAY_RECORDED, E.WITNESS_FAILED): S.WITNESS_FAILED,
    (S.WITNESSED, E.START_REVIEW): S.IN_REVIEW,
    (S.IN_REVIEW, E.RELEASE_REVIEW): S.WITNESSED,
    (S.IN_REVIEW, E.APPROVE): S.APPROVED,
    # A17.5: anomalies found in review end the application.
    (S.IN_REVIEW, E.REJECT): S.REVIEW_REJECTED,
    # A3: screening runs with the identity check, so "identity_verified" keeps meaning
    # "may queue" (a clear result changes nothing); a hit or an unavailable check holds.
    (S.IDENTITY_VERIFIED, E.SCREENING_HELD): S.SCREENING_HOLD,
    (S.IDENTITY_VERIFIED, E.SCREENING_REFUSED): S.SCREENING_REFUSED,
    (S.SCREENING_HOLD, E.SCREENING_CLEAR): S.IDENTITY_VERIFIED,  # a retry came back clear
    (S.SCREENING_HOLD, E.SCREENING_REFUSED): S.SCREENING_REFUSED,
    (S.SCREENING_HOLD, E.COMPLIANCE_CLEARED): S.IDENTITY_VERIFIED,
    (S.SCREENING_HOLD, E.COMPLIANCE_CONFIRMED): S.SCREENING_REFUSED,
    # Again before approval (lists change): the reviewer keeps the claim while held.
    (S.IN_REVIEW, E.SCREENING_HELD): S.APPROVAL_HOLD,
    (S.IN_REVIEW, E.SCREENING_REFUSED): S.SCREENING_REFUSED,
    (S.APPROVAL_HOLD, E.SCREENING_CLEAR): S.IN_REVIEW,
    (S.APPROVAL_HOLD, E.SCREENING_REFUSED): S.SCREENING_REFUSED,
    (S.APPROVAL_HOLD, E.COMPLIANCE_CLEARED): S.IN_REVIEW,
    (S.APPROVAL_HOLD, E.COMPLIANCE_CONFIRMED): S.SCREENING_REFUSED,
    # A20–A22, holders' services only (the service layer checks the business type): no
    # account is opened, so there is nothing to block; a callback, where the agency's
    # rules want one, always comes first.
    (S.APPROVED, E.SERVICE_DONE): S.COMPLETED,
    (S.APPROVED, E.SERVICE_DECLINED): S.SERVICE_REFUSED,
    (S.CALLBACK_CONFIRMED, E.SERVICE_DONE): S.COMPLETED,
    (S.CALLBACK_CONFIRMED, E.SERVICE_DECLINED): S.SERVICE_REFUSED,
    # Online (no video) service for an account opened online: the identity check, the
    # holder check and the investor's confirmation stand in for the witnessed call.
    (S.IDENTITY_VERIFIED, E.CONFIRM_ONLINE): S.APPROVED,
}

_CALLBACK_FIRST: dict[tuple[ApplicationState, ApplicationEvent], ApplicationState] = {
    (S.APPROVED, E.CALLBACK_CONFIRMED): S.CALLBACK_CONFIRMED,
    (S.APPROVED, E.CALLBACK_DENIED): S.CALLBACK_FAILED,
    (S.CALLBACK_CONFIRMED, E.OPEN_ACCOUNT): S.ACTIVE,
}

_OPEN_FIRST: dict[tuple[ApplicationState, ApplicationEvent], ApplicationState] = {
    (S.APPROVED, E.OPEN_ACCOUNT): S.ACCOUNT_OPENED,
    # A17.6: the account becomes usable only after the callback succeeds.
    (S.ACCOUNT_OPENED, E.CALLBACK_CONFIRMED): S.ACTIVE,
    (S.ACCOUNT_OPENED, E.CALLBACK_DENIED): S.CALLBACK_FAILED,
}

# The investor may give up at any point before a witness has seen them.
ABANDONABLE = frozenset(
    {S.DRAFT, S.SUBMITTED, S.IDENTITY_VERIFIED, S.QUEUED, S.IDENTITY_FAILED, S.SCREENING_HOLD}
)

TERMINAL = frozenset(
    {
        S.ACTIVE,
        S.WITNESS_FAILED,
        S.REVIEW_REJECTED,
        S.CALLBACK_FAILED,
        S.ABANDONED,
        S.SCREENING_REFUSED,
        S.COMPLETED,
        S.SERVICE_REFUSED,
    }
)

# A3: held for screening; only compliance or a clear retry moves it on.
SCREENING_HELD_STATES = frozenset({S.SCREENING_HOLD, S.APPROVAL_HOLD})


class IllegalTransition(Conflict):
    """The event is not allowed in the application's current state."""

    def __init__(self, state: ApplicationState, event: ApplicationEvent) -> None:
        super().__init__(
            "illegal_transition",
            f"Cannot '{event.value}' an application in state '{state.value}'.",
            f"当前状态“{state.value}”下不能执行“{event.value}”。",
            details={"state": state.value, "event": event.value},
        )
        self.state = state
        self.event = event


def transition_table(
    order: CallbackOrder,
) -> dict[tuple[ApplicationState, ApplicationEvent], ApplicationState]:
    table = dict(_COMMON)
    table.update(_CALLBACK_FIRST if order is CallbackOrder.CALLBACK_FIRST else _OPEN_FIRST)
    for state in ABANDONABLE:
        table[(state, E.ABANDON)] = S.ABANDONED
    return table


_TABLES = {order: transition_table(order) for order in CallbackOrder}


def transition(
    state: ApplicationState,
    event: ApplicationEvent,
    order: CallbackOrder = CallbackOrder.CALLBACK_FIRST,
) -> ApplicationState:
    """Return the state after ``event``, or raise IllegalTransition."""
    try:
        return _TABLES[order][(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def allowed_events(
    state: ApplicationState, order: CallbackOrder = CallbackOrder.CALLBACK_FIRST
) -> frozenset[ApplicationEvent]:
    return frozenset(ev for (st, ev) in _TABLES[order] if st is state)


def account_blocked(state: ApplicationState) -> bool:
    """A17.6: an opened account stays blocked until the callback has succeeded."""
    return state is S.ACCOUNT_OPENED
