"""The application state machine (DESIGN.md): legal paths, illegal transitions, A8 orders."""

from __future__ import annotations

import pytest

from server.domain.application import (
    ABANDONABLE,
    TERMINAL,
    CallbackOrder,
    IllegalTransition,
    account_blocked,
    allowed_events,
    transition,
    transition_table,
)
from server.domain.application import (
    ApplicationEvent as E,
)
from server.domain.application import (
    ApplicationState as S,
)
from server.domain.errors import ErrorKind

HAPPY_PREFIX = [
    (S.DRAFT, E.SUBMIT, S.SUBMITTED),
    (S.SUBMITTED, E.IDENTITY_MATCHED, S.IDENTITY_VERIFIED),
    (S.IDENTITY_VERIFIED, E.JOIN_QUEUE, S.QUEUED),
    (S.QUEUED, E.START_WITNESSING, S.WITNESSING),
    (S.WITNESSING, E.WITNESS_PASSED, S.WITNESSED),
    (S.WITNESSED, E.START_REVIEW, S.IN_REVIEW),
    (S.IN_REVIEW, E.APPROVE, S.APPROVED),
]


def _walk(order: CallbackOrder, steps: list[tuple[S, E, S]]) -> S:
    state = S.DRAFT
    for before, event, after in steps:
        assert state is before
        state = transition(state, event, order)
        assert state is after
    return state


def test_a8_callback_first_path_reaches_active() -> None:
    steps = [
        *HAPPY_PREFIX,
        (S.APPROVED, E.CALLBACK_CONFIRMED, S.CALLBACK_CONFIRMED),
        (S.CALLBACK_CONFIRMED, E.OPEN_ACCOUNT, S.ACTIVE),
    ]
    assert _walk(CallbackOrder.CALLBACK_FIRST, steps) is S.ACTIVE


def test_a17_6_open_first_keeps_account_blocked_until_callback() -> None:
    state = _walk(CallbackOrder.OPEN_FIRST, HAPPY_PREFIX)
    state = transition(state, E.OPEN_ACCOUNT, CallbackOrder.OPEN_FIRST)
    assert state is S.ACCOUNT_OPENED and account_blocked(state)
    assert transition(state, E.CALLBACK_CONFIRMED, CallbackOrder.OPEN_FIRST) is S.ACTIVE
    assert transition(state, E.CALLBACK_DENIED, CallbackOrder.OPEN_FIRST) is S.CALLBACK_FAILED


def test_a8_orders_do_not_mix() -> None:
    with pytest.raises(IllegalTransition):
        transition(S.APPROVED, E.OPEN_ACCOUNT, CallbackOrder.CALLBACK_FIRST)
    with pytest.raises(IllegalTransition):
        transition(S.APPROVED, E.CALLBACK_CONFIRMED, CallbackOrder.OPEN_FIRST)


def test_a17_5_review_rejection_is_terminal() -> None:
    assert transition(S.IN_REVIEW, E.REJECT) is S.REVIEW_REJECTED
    assert allowed_events(S.REVIEW_REJECTED) == frozenset()


def test_a17_2_unverified_application_cannot_queue() -> None:
    for state in (S.DRAFT, S.SUBMITTED, S.IDENTITY_FAILED):
        with pytest.raises(IllegalTransition):
            transition(state, E.JOIN_QUEUE)


def test_interrupted_session_returns_investor_to_queue() -> None:
    assert transition(S.WITNESSING, E.SESSION_INTERRUPTED) is S.QUEUED


@pytest.mark.parametrize("order", list(CallbackOrder))
def test_every_pair_not_in_table_is_illegal(order: CallbackOrder) -> None:
    table = transition_table(order)
    for state in S:
        for event in E:
            if (state, event) in table:
                assert transition(state, event, order) is table[(state, event)]
            else:
                with pytest.raises(IllegalTransition) as info:
                    transition(state, event, order)
                assert info.value.kind is ErrorKind.CONFLICT
                assert info.value.details == {"state": state.value, "event": event.value}


@pytest.mark.parametrize("order", list(CallbackOrder))
def test_terminal_states_have_no_way_out(order: CallbackOrder) -> None:
    for state in TERMINAL:
        assert allowed_events(state, order) == frozenset()


def test_abandon_only_before_witnessing() -> None:
    for state in S:
        if state in ABANDONABLE:
            assert transition(state, E.ABANDON) is S.ABANDONED
        else:
            with pytest.raises(IllegalTransition):
                transition(state, E.ABANDON)
    assert S.WITNESSING not in ABANDONABLE


@pytest.mark.parametrize("order", list(CallbackOrder))
def test_every_state_is_reachable_from_draft(order: CallbackOrder) -> None:
    table = transition_table(order)
    seen = {S.DRAFT}
    frontier = [S.DRAFT]
    while frontier:
        state = frontier.pop()
        for (src, _event), dst in table.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    unreachable_in_order = (
        {S.ACCOUNT_OPENED} if order is CallbackOrder.CALLBACK_FIRST else {S.CALLBACK_CONFIRMED}
    )
    assert seen == set(S) - unreachable_in_order
