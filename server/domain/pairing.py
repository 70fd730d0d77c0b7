"""Pairing investors with witnesses: witness states and the assignment policy. Pure.

Investors are served first come, first served; each goes to the ready witness who has
been idle longest, or, when configured, to a random eligible ready witness so nobody can
arrange which witness they get. A witness is never paired with an investor whose phone
or ID number matches the witness's own staff record (A7: the witness must be independent).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from server.domain.errors import Conflict


class WitnessState(StrEnum):
    OFFLINE = "offline"
    NOT_READY = "not_ready"
    READY = "ready"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


class WitnessAction(StrEnum):
    CONNECT = "connect"
    GO_READY = "go_ready"
    GO_NOT_READY = "go_not_ready"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"  # also an offer that timed out
    END = "end"
    FINISH_WRAP_UP = "finish_wrap_up"
    DISCONNECT = "disconnect"  # console closed or heartbeat expired


W = WitnessState
A = WitnessAction

_WITNESS_TABLE: dict[tuple[WitnessState, WitnessAction], WitnessState] = {
    (W.OFFLINE, A.CONNECT): W.NOT_READY,
    (W.NOT_READY, A.GO_READY): W.READY,
    (W.READY, A.GO_NOT_READY): W.NOT_READY,
    (W.NOT_READY, A.GO_NOT_READY): W.NOT_READY,
    (W.READY, A.OFFER): W.OFFERED,
    (W.OFFERED, A.ACCEPT): W.BUSY,
    # An offer left unanswered means the witness is not at the desk: not ready.
    (W.OFFERED, A.DECLINE): W.NOT_READY,
    (W.BUSY, A.END): W.WRAP_UP,
    (W.WRAP_UP, A.FINISH_WRAP_UP): W.READY,
    (W.WRAP_UP, A.GO_NOT_READY): W.NOT_READY,
}


class IllegalWitnessAction(Conflict):
    def __init__(self, state: WitnessState, action: WitnessAction) -> None:
        super().__init__(
            "witness_state",
            f"Cannot '{action.value}' while '{state.value}'.",
            f"当前状态“{state.value}”下不能执行“{action.value}”。",
            details={"state": state.value, "action": action.value},
        )


def witness_transition(state: WitnessState, action: WitnessAction) -> WitnessState:
    if action is A.DISCONNECT:
        return W.OFFLINE
    try:
        return _WITNESS_TABLE[(state, action)]
    except KeyError:
        raise IllegalWitnessAction(state, action) from None


class AssignmentPolicy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    RANDOM = "random"


@dataclass(frozen=True)
class WaitingInvestor:
    application_id: str
    enqueued_at: float  # epoch seconds; FCFS order, kept across reconnects
    phone_hash: str = ""
    id_hash: str = ""
    skills: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ReadyWitness:
    staff_id: int
    idle_since: float  # epoch seconds the witness last became ready
    phone_hash: str = ""
    id_hash: str = ""
    skills: frozenset[str] = field(default_factory=frozenset)


def conflicted(investor: WaitingInvestor, witness: ReadyWitness) -> bool:
    """A7: never witness yourself (same phone or same ID number)."""
    return bool(
        (investor.phone_hash and investor.phone_hash == witness.phone_hash)
        or (investor.id_hash and investor.id_hash == witness.id_hash)
    )


def can_serve(investor: WaitingInvestor, witness: ReadyWitness, *, match_skills: bool) -> bool:
    if conflicted(investor, witness):
        return False
    return not match_skills or investor.skills <= witness.skills


def choose_pairs(
    investors: Iterable[WaitingInvestor],
    witnesses: Iterable[ReadyWitness],
    *,
    policy: AssignmentPolicy,
    match_skills: bool = False,
    rng: random.Random | None = None,
) -> list[tuple[WaitingInvestor, ReadyWitness]]:
    """Pairs to offer now. Investors in arrival order; one nobody can serve does not
    hold up those behind them."""
    free = list(witnesses)
    pairs: list[tuple[WaitingInvestor, ReadyWitness]] = []
    for investor in sorted(investors, key=lambda i: (i.enqueued_at, i.application_id)):
        if not free:
            break
        candidates = [w for w in free if can_serve(investor, w, match_skills=match_skills)]
        if not candidates:
            continue
        if policy is AssignmentPolicy.RANDOM:
            chosen = (rng or random.SystemRandom()).choice(candidates)
        else:
            chosen = min(candidates, key=lambda w: (w.idle_since, w.staff_id))
        free.remove(chosen)
        pairs.append((investor, chosen))
    return pairs


def estimate_wait_seconds(
    position: int, recent_handle_seconds: Sequence[float], witnesses_on_duty: int
) -> int | None:
    """Rough wait for the investor at 1-based ``position``; None when nothing to go on."""
    if position < 1:
        return 0
    if not recent_handle_seconds or witnesses_on_duty < 1:
        return None
    average = sum(recent_handle_seconds) / len(recent_handle_seconds)
    rounds = math.ceil(position / witnesses_on_duty)
    return round(average * rounds)
