"""The Redis queue backend: several server processes on several machines share one queue.

Every decision that reads and then writes runs as one Lua script (redis_scripts.py), so
two nodes can never both offer the same investor or the same witness. Keys all live under
``key_prefix`` so deployments (and test runs) can share one Redis server:

- ``q`` ZSET application id -> enqueued_at; ``qi:{app}`` HASH of the entry
- ``w`` SET of staff ids; ``wi:{staff}`` HASH of the presence
- ``offer:{id}`` HASH; ``offers`` ZSET offer id -> expires_at
- ``handle`` LIST, newest first; ``nodes`` ZSET node id -> last_seen; ``node:{id}`` HASH
- ``lock:{name}`` string holding the owner, with a PX lease

Pub/sub channels carry the same prefix; messages are JSON objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from server.domain.pairing import WaitingInvestor, WitnessState
from server.queue import redis_scripts as lua
from server.queue.base import (
    NodeInfo,
    Offer,
    QueueBackend,
    QueueEntry,
    Subscription,
    WitnessPresence,
)
from server.queue.memory import HANDLE_TIMES_KEPT, BufferedSubscription, SubscriptionLost

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0  # seconds to wait for Redis to confirm a SUBSCRIBE
PING_TIMEOUT = 2.0  # a health check must answer, not hang on a black-holed host
# Open sockets a process may hold (each subscribes once): a Redis connection each, under
# Redis's own maxclients (10 000 by default) across all processes (redis.max_subscriptions).
DEFAULT_MAX_SUBSCRIPTIONS = 2000


def _num(value: float) -> str:
    # repr() is the shortest string that parses back to the same float: exact round trip.
    return repr(float(value))


def _skills(skills: frozenset[str]) -> str:
    return json.dumps(sorted(skills), ensure_ascii=False)


def _presence(staff_id: str, values: Sequence[str | None]) -> WitnessPresence:
    f = dict(zip(lua.WITNESS_FIELDS, values, strict=True))
    return WitnessPresence(
        staff_id=int(staff_id),
        state=WitnessState(f["state"] or WitnessState.OFFLINE.value),
        node_id=f["node_id"] or "",
        since=float(f["since"] or 0.0),
        last_seen=float(f["last_seen"] or 0.0),
        phone_hash=f["phone_hash"] or "",
        id_hash=f["id_hash"] or "",
        skills=frozenset(json.loads(f["skills"] or "[]")),
        offer_id=f["offer_id"] or None,
        application_id=f["application_id"] or None,
    )


def _entry(application_id: str, values: Sequence[str | None]) -> QueueEntry:
    f = dict(zip(lua.ENTRY_FIELDS, values, strict=True))
    investor = WaitingInvestor(
        application_id=application_id,
        enqueued_at=float(f["enqueued_at"] or 0.0),
        phone_hash=f["phone_hash"] or "",
        id_hash=f["id_hash"] or "",
        skills=frozenset(json.loads(f["skills"] or "[]")),
    )
    offered_to = f["offered_to"]
    return QueueEntry(
        investor, float(f["last_seen"] or 0.0), int(offered_to) if offered_to else None
    )


def _offer(offer_id: str, values: Sequence[str | None]) -> Offer:
    application_id, staff_id, expires_at = values
    return Offer(offer_id, application_id or "", int(staff_id or 0), float(expires_at or 0.0))


def _rows(flat: Sequence[str | None], width: int) -> Iterable[tuple[str, list[str | None]]]:
    """Split a READ_INDEXED reply into (id, field values) rows."""
    for start in range(0, len(flat), width + 1):
        yield cast(str, flat[start]), list(flat[start + 1 : start + 1 + width])


class RedisSubscription(BufferedSubscription):
    """One pub/sub connection; a reader task moves messages into the bounded mailbox.

    The reader task (rather than reading in ``__anext__``) means ``close()`` is safe from
    any task, and a consumer that stops reading is dropped after MAX_PENDING_MESSAGES just
    as in memory, instead of making Redis buffer for it.
    """

    def __init__(self, backend: RedisBackend, pubsub: PubSub) -> None:
        super().__init__()
        self._backend = backend
        self._pubsub = pubsub
        self._reader: asyncio.Task[None] | None = None

    async def _start(self, channels: Iterable[str]) -> None:
        names = {self._backend.key_prefix + channel for channel in channels}
        await self._pubsub.subscribe(*names)
        # SUBSCRIBE only sends; the contract is "subscribed when this returns", so wait
        # for Redis to confirm every channel. (Redis confirms all channels of one SUBSCRIBE
        # before any message, but a message read here is delivered, never dropped.)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            while names:
                reply = await self._pubsub.get_message(timeout=None)
                if reply is not None and reply["type"] == "subscribe":
                    names.discard(reply["channel"])
                elif reply is not None:
                    self._handle(reply)
        self._reader = asyncio.create_task(self._read(), name="redis-subscription-reader")

    def _handle(self, reply: dict[str, Any]) -> bool:
        """Pass a pub/sub reply on; False once the mailbox takes no more."""
        if reply["type"] != "message":
            return True
        try:
            message = json.loads(reply["data"])
        except ValueError:
            log.warning("dropped a non-JSON message on %s", reply["channel"])
            return True
        return self._deliver(reply["channel"][len(self._backend.key_prefix) :], message)

    async def _read(self) -> None:
        try:
            while self.active:
                reply = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if reply is not None and not self._handle(reply):
                    break
        except (RedisError, OSError) as exc:
            # redis-py may reconnect and resubscribe on its own, but whatever was published
            # meanwhile is gone: the consumer must know, resubscribe and re-read the state.
            # (A silent half-open connection surfaces here too, via redis-py's default TCP
            # keepalive of 30 s idle + 3 probes 5 s apart.)
            error = SubscriptionLost(f"pub/sub connection lost: {exc}")
            error.__cause__ = exc
            self._fail(error)
        if not self._closed:
            # Overflowed or lost: let go of the connection now rather than at close().
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if not self._mark_closed():
            return
        self._backend._subscriptions.discard(self)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        connection = self._pubsub.connection
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            if connection is not None and connection.is_connected:
                async with asyncio.timeout(1.0):
                    await self._pubsub.unsubscribe()
        # aclose() disconnects and hands the connection back to the pool.
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisBackend(QueueBackend):
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "witness:",
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    ) -> None:
        self.key_prefix = key_prefix
        # No client-side retries: a script resent after a lost reply would run twice (a
        # second claim answers False for an offer that was in fact made). Errors surface
        # to the caller instead, who re-reads the state.
        self._client: Redis = Redis.from_url(
            url, decode_responses=True, retry=Retry(NoBackoff(), 0)
        )
        # A subscription keeps its connection for as long as it lives (every open socket
        # has one), so subscriptions get a pool of their own: in the commands' pool (100
        # connections by default, and redis-py refuses the 101st at once) 24 sessions'
        # sockets took them all, and the dispatcher's next command failed with "Too many
        # connections" (issue 21, bench.load on PostgreSQL + Redis).
        self._subscriber: Redis = Redis.from_url(
            url,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_subscriptions,
        )
        self._subscriptions: set[RedisSubscription] = set()
        register = self._client.register_script
        self._enqueue = register(lua.ENQUEUE)
        self._remove_investor = register(lua.REMOVE_INVESTOR)
        self._claim = register(lua.CLAIM)
        self._settle = register(lua.SETTLE)
        self._set_witness = register(lua.SET_WITNESS)
        self._remove_witness = register(lua.REMOVE_WITNESS)
        self._touch = register(lua.TOUCH)
        self._read_indexed = register(lua.READ_INDEXED)
        self._acquire_lock = register(lua.ACQUIRE_LOCK)
        self._release_lock = register(lua.RELEASE_LOCK)

    def _key(self, *parts: str) -> str:
        return self.key_prefix + "".join(parts)

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        return await script(keys=keys, args=args)

    async def _hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        # decode_responses=True: every value is a str (or None for a missing field).
        return cast(list[str | None], await self._client.hmget(key, list(fields)))

    async def _indexed(
        self, index: str, kind: str, item: str, fields: Sequence[str], until: str = "+inf"
    ) -> list[tuple[str, list[str | None]]]:
        reply = await self._run(
            self._read_indexed, [self._key(index)], [self._key(item), kind, until, *fields]
        )
        # JSON false marks a missing field; the decoders treat it like None.
        flat = [value or None for value in json.loads(reply)]
        return list(_rows(flat, len(fields)))

    # -- investors ----------------------------------------------------------------------
    async def enqueue(self, investor: WaitingInvestor, *, now: float) -> bool:
        app = investor.application_id
        args = [app, _num(investor.enqueued_at), _num(now), investor.phone_hash]
        args += [investor.id_hash, _skills(investor.skills)]
        return bool(await self._run(self._enqueue, [self._key("q"), self._key("qi:", app)], args))

    async def remove_investor(self, application_id: str) -> bool:
        # The interface passes no clock here; the witness's NOT_READY since is wall time.
        now = _num(time.time())
        keys = [self._key("q"), self._key("qi:", application_id)]
        return bool(
            await self._run(self._remove_investor, keys, [self.key_prefix, application_id, now])
        )

    async def waiting(self) -> list[QueueEntry]:
        rows = await self._indexed("q", "zset", "qi:", lua.ENTRY_FIELDS)
        return [_entry(app, values) for app, values in rows]

    async def get_entry(self, application_id: str) -> QueueEntry | None:
        values = await self._hmget(self._key("qi:", application_id), lua.ENTRY_FIELDS)
        return _entry(application_id, values) if values[0] is not None else None

    async def position(self, application_id: str) -> int | None:
        # The ZSET orders by (enqueued_at, application id): the FCFS order itself.
        rank = cast(int | None, await self._client.zrank(self._key("q"), application_id))
        return None if rank is None else int(rank) + 1

    async def touch_investor(self, application_id: str, *, now: float) -> bool:
        return bool(await self._run(self._touch, [self._key("qi:", application_id)], [_num(now)]))

    async def stale_investors(self, *, older_than: float) -> list[str]:
        return [e.investor.application_id for e in await self.waiting() if e.last_seen < older_than]

    # -- witnesses ----------------------------------------------------------------------
    async def set_witness(
        self, presence: WitnessPresence, *, expect_state: WitnessState | None = None
    ) -> bool:
        staff = str(presence.staff_id)
        values = {
            "state": presence.state.value,
            "node_id": presence.node_id,
            "since": _num(presence.since),
            "last_seen": _num(presence.last_seen),
            "phone_hash": presence.phone_hash,
            "id_hash": presence.id_hash,
            "skills": _skills(presence.skills),
            "offer_id": presence.offer_id or "",
            "application_id": presence.application_id or "",
        }
        args = [staff, expect_state.value if expect_state is not None else ""]
        args += [part for field in lua.WITNESS_FIELDS for part in (field, values[field])]
        keys = [self._key("w"), self._key("wi:", staff)]
        return bool(await self._run(self._set_witness, keys, args))

    async def get_witness(self, staff_id: int) -> WitnessPresence | None:
        values = await self._hmget(self._key("wi:", str(staff_id)), lua.WITNESS_FIELDS)
        return _presence(str(staff_id), values) if values[0] is not None else None

    async def witnesses(self) -> list[WitnessPresence]:
        rows = await self._indexed("w", "set", "wi:", lua.WITNESS_FIELDS)
        return sorted((_presence(s, v) for s, v in rows), key=lambda w: w.staff_id)

    async def touch_witness(self, staff_id: int, *, now: float) -> bool:
        return bool(await self._run(self._touch, [self._key("wi:", str(staff_id))], [_num(now)]))

    async def remove_witness(self, staff_id: int) -> WitnessPresence | None:
        staff = str(staff_id)
        values = await self._run(
            self._remove_witness,
            [self._key("w"), self._key("wi:", staff)],
            [self.key_prefix, staff, *lua.WITNESS_FIELDS],
        )
        return _presence(staff, values) if values else None

    async def stale_witnesses(self, *, older_than: float) -> list[int]:
        return [w.staff_id for w in await self.witnesses() if w.last_seen < older_than]

    # -- offers ---------------------------------------------------------------------------
    async def claim(self, offer: Offer, *, now: float) -> bool:
        staff = str(offer.staff_id)
        keys = [
            self._key("qi:", offer.application_id),
            self._key("wi:", staff),
            self._key("offer:", offer.offer_id),
            self._key("offers"),
        ]
        args = [offer.application_id, staff, offer.offer_id, _num(offer.expires_at), _num(now)]
        return bool(await self._run(self._claim, keys, args))

    async def get_offer(self, offer_id: str) -> Offer | None:
        values = await self._hmget(self._key("offer:", offer_id), lua.OFFER_FIELDS)
        return _offer(offer_id, values) if values[0] is not None else None

    async def expired_offers(self, *, now: float) -> list[Offer]:
        rows = await self._indexed("offers", "zset", "offer:", lua.OFFER_FIELDS, _num(now))
        return [_offer(offer_id, values) for offer_id, values in rows]

    async def settle(self, offer_id: str, *, accepted: bool, now: float) -> Offer | None:
        keys = [self._key("offer:", offer_id), self._key("offers"), self._key("q")]
        args = [self.key_prefix, offer_id, "1" if accepted else "0", _num(now)]
        values = await self._run(self._settle, keys, args)
        return _offer(offer_id, values) if values else None

    # -- statistics -----------------------------------------------------------------------
    async def record_handle_time(self, seconds: float) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lpush(self._key("handle"), _num(seconds))
            pipe.ltrim(self._key("handle"), 0, HANDLE_TIMES_KEPT - 1)
            await pipe.execute()

    async def handle_times(self, limit: int = 20) -> list[float]:
        if limit <= 0:
            return []
        values = await self._client.lrange(self._key("handle"), 0, limit - 1)
        return [float(v) for v in values]

    # -- media node registry --------------------------------------------------------------
    async def register_node(self, node: NodeInfo, *, ttl: float) -> None:
        fields = ["url", node.url, "load", str(node.load)]
        fields += ["last_seen", _num(node.last_seen), "ttl", _num(ttl)]
        fields += ["internal_url", node.internal_url, "machine", node.machine]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("node:", node.node_id), items=fields)
            pipe.zadd(self._key("nodes"), {node.node_id: node.last_seen})
            await pipe.execute()

    async def live_nodes(self, *, now: float) -> list[NodeInfo]:
        live = []
        for node_id, values in await self._indexed("nodes", "zset", "node:", lua.NODE_FIELDS):
            url, load, last_seen, ttl, internal_url, machine = values
            node = NodeInfo(
                node_id,
                url or "",
                int(load or 0),
                float(last_seen or 0.0),
                internal_url=internal_url or "",
                machine=machine or "",
            )
            if now - node.last_seen <= float(ttl or 0.0):
                live.append(node)
        return sorted(live, key=lambda n: n.node_id)

    # -- coordination ---------------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> bool:
        lease_ms = str(max(1, math.ceil(ttl * 1000)))
        return bool(
            await self._run(self._acquire_lock, [self._key("lock:", name)], [owner, lease_ms])
        )

    async def release_lock(self, name: str, owner: str) -> None:
        await self._run(self._release_lock, [self._key("lock:", name)], [owner])

    # -- pub/sub ----------------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        await self._client.publish(self._key(channel), json.dumps(message, ensure_ascii=False))

    async def subscribe(self, *channels: str) -> Subscription:
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        subscription = RedisSubscription(self, self._subscriber.pubsub())
        try:
            await subscription._start(channels)
        except BaseException:
            await subscription.close()
            raise
        self._subscriptions.add(subscription)
        return subscription

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        # from_url: each client owns and closes its pool.
        await self._subscriber.aclose()
        await self._client.aclose()
