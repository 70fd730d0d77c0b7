"""The in-process queue backend: the embedded default (one server process).

Atomicity comes from asyncio itself: no method body awaits anything, so each one runs to
completion before another task can observe or change the state. Keep it that way: an
``await`` in the middle of a read-modify-write here would reopen every race the Redis
backend closes with Lua scripts.

Pub/sub buffering (``BufferedSubscription``) also serves the Redis backend, so a slow
subscriber fails the same way on both.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections import deque
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from server.domain.pairing import WaitingInvestor, WitnessState
from server.queue.base import (
    NodeInfo,
    Offer,
    QueueBackend,
    QueueEntry,
    Subscription,
    WitnessPresence,
)

MAX_PENDING_MESSAGES = 1000  # per subscription; beyond this the subscriber is dropped
HANDLE_TIMES_KEPT = 100  # the wait estimate only ever looks at the recent ones

Message = tuple[str, dict[str, Any]]


class SubscriptionError(Exception):
    """The subscription ended abnormally; resubscribe and re-read the state."""


class SubscriptionOverflow(SubscriptionError):
    """The subscriber fell too far behind and was dropped; messages after those already
    delivered were not kept."""


class SubscriptionLost(SubscriptionError):
    """The connection carrying the subscription broke; messages may have been missed."""


class BufferedSubscription(Subscription):
    """A bounded mailbox feeding the iterator.

    Producers call ``_deliver``; a full mailbox drops the subscription instead of growing
    without bound or silently discarding messages: the iterator yields what was buffered,
    then raises ``SubscriptionOverflow``. After ``close()`` the iterator ends at once.
    """

    def __init__(self, max_pending: int = MAX_PENDING_MESSAGES) -> None:
        # None is a wake-up for a waiting iterator (close or failure), never a message.
        self._mailbox: asyncio.Queue[Message | None] = asyncio.Queue(max_pending)
        self._error: SubscriptionError | None = None
        self._closed = False

    @property
    def overflowed(self) -> bool:
        return isinstance(self._error, SubscriptionOverflow)

    @property
    def active(self) -> bool:
        """Still receiving: neither closed nor failed."""
        return not self._closed and self._error is None

    def _deliver(self, channel: str, message: dict[str, Any]) -> bool:
        """Queue one message; False if this subscription no longer takes any."""
        if not self.active:
            return False
        try:
            self._mailbox.put_nowait((channel, message))
        except asyncio.QueueFull:
            self._fail(
                SubscriptionOverflow(
                    f"subscriber fell {self._mailbox.maxsize} messages behind and was dropped"
                )
            )
            return False
        return True

    def _fail(self, error: SubscriptionError) -> None:
        if self.active:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        # A full mailbox needs no wake-up: the iterator is not waiting on it.
        try:
            self._mailbox.put_nowait(None)
        except asyncio.QueueFull:
            pass

    def _mark_closed(self) -> bool:
        """Stop delivery and wake the iterator; False if it was already closed."""
        if self._closed:
            return False
        self._closed = True
        self._wake()
        return True

    def __aiter__(self) -> BufferedSubscription:
        # The subscription is its own iterator (not an async generator) so a consumer can
        # cancel a pending __anext__, e.g. under asyncio.timeout, and keep iterating.
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None and self._mailbox.empty():
                raise self._error
            item = await self._mailbox.get()
            if item is not None:
                return item


class MemorySubscription(BufferedSubscription):
    def __init__(self, backend: MemoryBackend, channels: frozenset[str]) -> None:
        super().__init__()
        self._backend = backend
        self.channels = channels

    async def close(self) -> None:
        if self._mark_closed():
            self._backend._unsubscribe(self)


@dataclass
class _Waiting:
    investor: WaitingInvestor
    last_seen: float
    offered_to: int | None = None
    offer_id: str | None = None  # lets a withdrawal find the offer without a scan

    @property
    def order_key(self) -> tuple[float, str]:
        # Ties on arrival time go by application id, as in choose_pairs().
        return (self.investor.enqueued_at, self.investor.application_id)

    def as_entry(self) -> QueueEntry:
        return QueueEntry(self.investor, self.last_seen, self.offered_to)


class MemoryBackend(QueueBackend):
    name = "memory"

    def __init__(self) -> None:
        self._entries: dict[str, _Waiting] = {}
        self._order: list[tuple[float, str]] = []  # sorted (enqueued_at, application_id)
        self._witnesses: dict[int, WitnessPresence] = {}
        self._offers: dict[str, Offer] = {}
        self._handle_times: deque[float] = deque(maxlen=HANDLE_TIMES_KEPT)
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._subscribers: dict[str, set[MemorySubscription]] = {}

    # -- investors ----------------------------------------------------------------------
    async def enqueue(self, investor: WaitingInvestor, *, now: float) -> bool:
        if investor.application_id in self._entries:
            return False
        entry = _Waiting(investor, last_seen=now)
        self._entries[investor.application_id] = entry
        bisect.insort(self._order, entry.order_key)
        return True

    async def remove_investor(self, application_id: str) -> bool:
        entry = self._drop_entry(application_id)
        if entry is None:
            return False
        if entry.offer_id is not None:
            self._withdraw_from_witness(entry.offer_id)
        return True

    def _drop_entry(self, application_id: str) -> _Waiting | None:
        entry = self._entries.pop(application_id, None)
        if entry is not None:
            del self._order[bisect.bisect_left(self._order, entry.order_key)]
        return entry

    def _withdraw_from_witness(self, offer_id: str) -> None:
        offer = self._offers.pop(offer_id, None)
        witness = self._witnesses.get(offer.staff_id) if offer else None
        if witness is not None and witness.offer_id == offer_id:
            # No caller clock here (the interface passes none), so wall-clock time.
            self._witnesses[witness.staff_id] = replace(
                witness,
                state=WitnessState.NOT_READY,
                since=time.time(),
                offer_id=None,
                application_id=None,
            )

    async def waiting(self) -> list[QueueEntry]:
        return [self._entries[app_id].as_entry() for _, app_id in self._order]

    async def get_entry(self, application_id: str) -> QueueEntry | None:
        entry = self._entries.get(application_id)
        return entry.as_entry() if entry else None

    async def position(self, application_id: str) -> int | None:
        entry = self._entries.get(application_id)
        if entry is None:
            return None
        return bisect.bisect_left(self._order, entry.order_key) + 1

    async def touch_investor(self, application_id: str, *, now: float) -> bool:
        entry = self._entries.get(application_id)
        if entry is None:
            return False
        entry.last_seen = now
        return True

    async def stale_investors(self, *, older_than: float) -> list[str]:
        return [app_id for _, app_id in self._order if self._entries[app_id].last_seen < older_than]

    # -- witnesses ----------------------------------------------------------------------
    async def set_witness(
        self, presence: WitnessPresence, *, expect_state: WitnessState | None = None
    ) -> bool:
        if expect_state is not None:
            stored = self._witnesses.get(presence.staff_id)
            if (stored.state if stored else WitnessState.OFFLINE) is not expect_state:
                return False
        self._witnesses[presence.staff_id] = presence
        return True

    async def get_witness(self, staff_id: int) -> WitnessPresence | None:
        return self._witnesses.get(staff_id)

    async def witnesses(self) -> list[WitnessPresence]:
        return [self._witnesses[staff_id] for staff_id in sorted(self._witnesses)]

    async def touch_witness(self, staff_id: int, *, now: float) -> bool:
        witness = self._witnesses.get(staff_id)
        if witness is None:
            return False
        self._witnesses[staff_id] = replace(witness, last_seen=now)
        return True

    async def remove_witness(self, staff_id: int) -> WitnessPresence | None:
        witness = self._witnesses.pop(staff_id, None)
        if witness is None or witness.offer_id is None:
            return witness
        offer = self._offers.pop(witness.offer_id, None)
        entry = self._entries.get(offer.application_id) if offer else None
        if entry is not None and entry.offer_id == witness.offer_id:
            entry.offered_to = entry.offer_id = None  # keeps their place in the queue
        return witness

    async def stale_witnesses(self, *, older_than: float) -> list[int]:
        return [w.staff_id for w in await self.witnesses() if w.last_seen < older_than]

    # -- offers ---------------------------------------------------------------------------
    async def claim(self, offer: Offer, *, now: float) -> bool:
        entry = self._entries.get(offer.application_id)
        witness = self._witnesses.get(offer.staff_id)
        if (
            offer.offer_id in self._offers
            or entry is None
            or entry.offer_id is not None
            or witness is None
            or witness.state is not WitnessState.READY
        ):
            return False
        self._witnesses[offer.staff_id] = replace(
            witness,
            state=WitnessState.OFFERED,
            since=now,
            offer_id=offer.offer_id,
            application_id=offer.application_id,
        )
        entry.offered_to, entry.offer_id = offer.staff_id, offer.offer_id
        self._offers[offer.offer_id] = offer
        return True

    async def get_offer(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    async def expired_offers(self, *, now: float) -> list[Offer]:
        expired = [o for o in self._offers.values() if o.expires_at <= now]
        return sorted(expired, key=lambda o: (o.expires_at, o.offer_id))

    async def settle(self, offer_id: str, *, accepted: bool, now: float) -> Offer | None:
        offer = self._offers.pop(offer_id, None)
        if offer is None:
            return None
        # Each side is only touched while it still holds this very offer: a side that has
        # moved on (removed and added again, say) must not be changed by a stale offer.
        entry = self._entries.get(offer.application_id)
        if entry is not None and entry.offer_id == offer_id:
            if accepted:
                self._drop_entry(offer.application_id)
            else:
                entry.offered_to = entry.offer_id = None  # keeps their place
        witness = self._witnesses.get(offer.staff_id)
        if witness is not None and witness.offer_id == offer_id:
            self._witnesses[offer.staff_id] = replace(
                witness,
                state=WitnessState.BUSY if accepted else WitnessState.NOT_READY,
                since=now,
                offer_id=None,
                application_id=offer.application_id if accepted else None,
            )
        return offer

    # -- statistics -----------------------------------------------------------------------
    async def record_handle_time(self, seconds: float) -> None:
        self._handle_times.appendleft(seconds)

    async def handle_times(self, limit: int = 20) -> list[float]:
        return list(islice(self._handle_times, max(limit, 0)))

    # -- media node registry --------------------------------------------------------------
    async def register_node(self, node: NodeInfo, *, ttl: float) -> None:
        self._nodes[node.node_id] = (node, ttl)

    async def live_nodes(self, *, now: float) -> list[NodeInfo]:
        return [
            node
            for node_id, (node, ttl) in sorted(self._nodes.items())
            if now - node.last_seen <= ttl
        ]

    # -- coordination ---------------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> bool:
        # A lease runs on the wall clock, like Redis's PX expiry, not on a caller's clock.
        wall = time.time()
        held = self._locks.get(name)
        if held is not None and held[0] != owner and held[1] > wall:
            return False
        self._locks[name] = (owner, wall + ttl)
        return True

    async def release_lock(self, name: str, owner: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == owner:
            del self._locks[name]

    # -- pub/sub ----------------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        # The same JSON round trip as over Redis: a message that would not survive the wire
        # fails here too, and each subscriber gets its own copy to mutate.
        text = json.dumps(message, ensure_ascii=False)
        for subscription in list(self._subscribers.get(channel, ())):
            if not subscription._deliver(channel, json.loads(text)):
                self._unsubscribe(subscription)  # overflowed: dropped, never resumed

    async def subscribe(self, *channels: str) -> Subscription:
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        subscription = MemorySubscription(self, frozenset(channels))
        for channel in subscription.channels:
            self._subscribers.setdefault(channel, set()).add(subscription)
        return subscription

    def _unsubscribe(self, subscription: MemorySubscription) -> None:
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[channel]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        for subscription in {s for subs in self._subscribers.values() for s in subs}:
            await subscription.close()
