"""Pairing policy (A7): FCFS, longest idle or random, never oneself, skills, wait estimate."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from server.domain.pairing import (
    AssignmentPolicy,
    IllegalWitnessAction,
    ReadyWitness,
    WaitingInvestor,
    choose_pairs,
    estimate_wait_seconds,
    witness_transition,
)
from server.domain.pairing import (
    WitnessAction as A,
)
from server.domain.pairing import (
    WitnessState as W,
)


def inv(app: str, at: float, **kw: object) -> WaitingInvestor:
    return WaitingInvestor(app, at, **kw)  # type: ignore[arg-type]


def wit(staff: int, idle: float, **kw: object) -> ReadyWitness:
    return ReadyWitness(staff, idle, **kw)  # type: ignore[arg-type]


def test_first_come_first_served_to_longest_idle() -> None:
    pairs = choose_pairs(
        [inv("late", 30), inv("early", 10), inv("middle", 20)],
        [wit(1, 500), wit(2, 100)],
        policy=AssignmentPolicy.LONGEST_IDLE,
    )
    assert [(i.application_id, w.staff_id) for i, w in pairs] == [("early", 2), ("middle", 1)]


def test_a7_never_paired_with_own_phone_or_id() -> None:
    investors = [inv("a", 1, phone_hash="p1"), inv("b", 2, id_hash="i2")]
    witnesses = [wit(1, 0, phone_hash="p1"), wit(2, 5, id_hash="i2")]
    pairs = choose_pairs(investors, witnesses, policy=AssignmentPolicy.LONGEST_IDLE)
    assert {(i.application_id, w.staff_id) for i, w in pairs} == {("a", 2), ("b", 1)}
    # With only the conflicted witness ready, nobody is paired.
    assert choose_pairs([investors[0]], [witnesses[0]], policy=AssignmentPolicy.RANDOM) == []


def test_unservable_investor_does_not_block_the_queue() -> None:
    pairs = choose_pairs(
        [inv("needs-en", 1, skills=frozenset({"en"})), inv("any", 2)],
        [wit(1, 0)],
        policy=AssignmentPolicy.LONGEST_IDLE,
        match_skills=True,
    )
    assert [(i.application_id, w.staff_id) for i, w in pairs] == [("any", 1)]


def test_skills_ignored_unless_configured() -> None:
    pairs = choose_pairs(
        [inv("needs-en", 1, skills=frozenset({"en"}))],
        [wit(1, 0)],
        policy=AssignmentPolicy.LONGEST_IDLE,
    )
    assert len(pairs) == 1


def test_random_policy_spreads_over_all_ready_witnesses() -> None:
    rng = random.Random(7)
    counts: Counter[int] = Counter()
    for _ in range(600):
        [(_, w)] = choose_pairs(
            [inv("a", 1)],
            [wit(1, 0), wit(2, 1), wit(3, 2)],
            policy=AssignmentPolicy.RANDOM,
            rng=rng,
        )
        counts[w.staff_id] += 1
    assert set(counts) == {1, 2, 3} and min(counts.values()) > 150


def test_no_witness_used_twice_in_one_round() -> None:
    pairs = choose_pairs(
        [inv(str(n), n) for n in range(10)],
        [wit(s, s) for s in range(3)],
        policy=AssignmentPolicy.RANDOM,
        rng=random.Random(1),
    )
    assert len(pairs) == 3 and len({w.staff_id for _, w in pairs}) == 3
    assert [i.application_id for i, _ in pairs] == ["0", "1", "2"]


def test_witness_states() -> None:
    s = witness_transition(W.OFFLINE, A.CONNECT)
    assert s is W.NOT_READY
    s = witness_transition(s, A.GO_READY)
    s = witness_transition(s, A.OFFER)
    assert witness_transition(s, A.DECLINE) is W.NOT_READY  # unanswered offer: not at desk
    s = witness_transition(s, A.ACCEPT)
    s = witness_transition(s, A.END)
    assert s is W.WRAP_UP
    assert witness_transition(s, A.FINISH_WRAP_UP) is W.READY
    assert witness_transition(W.BUSY, A.DISCONNECT) is W.OFFLINE
    with pytest.raises(IllegalWitnessAction):
        witness_transition(W.NOT_READY, A.OFFER)  # only a ready witness is offered
    with pytest.raises(IllegalWitnessAction):
        witness_transition(W.OFFLINE, A.GO_READY)


def test_wait_estimate() -> None:
    assert estimate_wait_seconds(1, [300, 500], 2) == 400
    assert estimate_wait_seconds(3, [300, 500], 2) == 800
    assert estimate_wait_seconds(2, [], 2) is None
    assert estimate_wait_seconds(2, [100], 0) is None
