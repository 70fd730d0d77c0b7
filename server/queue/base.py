"""The queue, witness presence, node registry and pub/sub behind one interface.

Two backends implement it: ``memory`` (one process, the embedded default) and ``redis``
(several processes or machines). Nothing above this interface knows which one runs; one
contract test suite (tests/integration/test_queue_contract.py) holds both to it.

Every method that decides who gets whom is atomic in the backend (a lock in memory, a
Lua script in Redis): two nodes can never offer the same investor or the same witness.
Times are epoch seconds (float) passed in by the caller, so tests control the clock.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from server.domain.pairing import WaitingInvestor, WitnessState


@dataclass(frozen=True)
class QueueEntry:
    investor: WaitingInvestor
    last_seen: float
    offered_to: int | None = None  # staff id holding an open offer for this investor


@dataclass(frozen=True)
class WitnessPresence:
    staff_id: int
    state: WitnessState
    node_id: str
    since: float  # when the state last changed; for READY the idle-since time
    last_seen: float  # last heartbeat from the console
    phone_hash: str = ""
    id_hash: str = ""
    skills: frozenset[str] = field(default_factory=frozenset)
    offer_id: str | None = None  # set while OFFERED
    application_id: str | None = None  # set while OFFERED, BUSY, WRAP_UP


@dataclass(frozen=True)
class Offer:
    offer_id: str
    application_id: str
    staff_id: int
    expires_at: float


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str  # public base URL participants are sent to
    load: int  # live sessions on the node
    last_seen: float
    # A worker's loopback URL, where the other workers of its machine hand it the session
    # sockets of its sessions; "" for a single process (nothing to hand over).
    internal_url: str = ""
    machine: str = ""  # host name: an internal URL is reachable only from the same machine


class Subscription(abc.ABC):
    """Messages published to the subscribed channels, in order, as (channel, message)."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class QueueBackend(abc.ABC):
    name: str

    # -- investors ----------------------------------------------------------------------
    @abc.abstractmethod
    async def enqueue(self, investor: WaitingInvestor, *, now: float) -> bool:
        """Add to the tail (by ``investor.enqueued_at``). False if already queued: the same
        application can never be queued twice."""

    @abc.abstractmethod
    async def remove_investor(self, application_id: str) -> bool:
        """Take out of the queue (left, timed out, or paired). False if not queued. An
        open offer for the investor is withdrawn and its witness set NOT_READY."""

    @abc.abstractmethod
    async def waiting(self) -> list[QueueEntry]:
        """Everyone queued, first come first served (offered ones included, flagged)."""

    @abc.abstractmethod
    async def get_entry(self, application_id: str) -> QueueEntry | None: ...

    @abc.abstractmethod
    async def position(self, application_id: str) -> int | None:
        """1-based place in the queue, or None if not queued."""

    @abc.abstractmethod
    async def touch_investor(self, application_id: str, *, now: float) -> bool:
        """Heartbeat from the investor's page; False if not queued."""

    @abc.abstractmethod
    async def stale_investors(self, *, older_than: float) -> list[str]:
        """Queued application ids whose last heartbeat is before ``older_than``."""

    # -- witnesses ----------------------------------------------------------------------
    @abc.abstractmethod
    async def set_witness(
        self, presence: WitnessPresence, *, expect_state: WitnessState | None = None
    ) -> bool:
        """Write the presence. With ``expect_state``, only if the stored state is that one
        (OFFLINE matches a witness with no stored presence); False otherwise."""

    @abc.abstractmethod
    async def get_witness(self, staff_id: int) -> WitnessPresence | None: ...

    @abc.abstractmethod
    async def witnesses(self) -> list[WitnessPresence]: ...

    @abc.abstractmethod
    async def touch_witness(self, staff_id: int, *, now: float) -> bool:
        """Heartbeat from the console; False if the witness has no presence."""

    @abc.abstractmethod
    async def remove_witness(self, staff_id: int) -> WitnessPresence | None:
        """Forget the presence (console gone); returns what it was. An open offer to the
        witness is withdrawn: the investor keeps their place."""

    @abc.abstractmethod
    async def stale_witnesses(self, *, older_than: float) -> list[int]: ...

    # -- offers ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, offer: Offer, *, now: float) -> bool:
        """Atomically: if the investor is queued without an open offer and the witness is
        READY, mark the witness OFFERED (offer_id, application_id, since=now), the entry
        offered_to the witness, and store the offer. False, changing nothing, otherwise."""

    @abc.abstractmethod
    async def get_offer(self, offer_id: str) -> Offer | None: ...

    @abc.abstractmethod
    async def expired_offers(self, *, now: float) -> list[Offer]: ...

    @abc.abstractmethod
    async def settle(self, offer_id: str, *, accepted: bool, now: float) -> Offer | None:
        """Atomically close an open offer, once. Accepted: the investor leaves the queue and
        the witness becomes BUSY with that application. Not accepted (declined or timed
        out): the investor keeps their place (offered_to cleared) and the witness becomes
        NOT_READY. Returns the offer, or None if it was already settled or withdrawn."""

    # -- statistics for the wait estimate -------------------------------------------------
    @abc.abstractmethod
    async def record_handle_time(self, seconds: float) -> None: ...

    @abc.abstractmethod
    async def handle_times(self, limit: int = 20) -> list[float]:
        """The most recent handling times, newest first."""

    # -- media node registry --------------------------------------------------------------
    @abc.abstractmethod
    async def register_node(self, node: NodeInfo, *, ttl: float) -> None: ...

    @abc.abstractmethod
    async def live_nodes(self, *, now: float) -> list[NodeInfo]:
        """Nodes seen within their ttl."""

    # -- coordination ---------------------------------------------------------------------
    @abc.abstractmethod
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take or extend a lease; True if ``owner`` holds it afterwards."""

    @abc.abstractmethod
    async def release_lock(self, name: str, owner: str) -> None: ...

    # -- pub/sub ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, *channels: str) -> Subscription:
        """Subscribed when this returns: messages published afterwards are delivered."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True if the backend answers (health check)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
