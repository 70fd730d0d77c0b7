"""One contract for both queue backends (server/queue/base.py): in-memory and Redis.

Every contract test runs against each backend. Redis tests use the real server (DB 15)
under a key prefix of their own, deleted afterwards by SCAN: the server may be shared with
other runs, so never FLUSHDB. Concurrency is tested for real: over Redis, gathered calls
run on separate connections, and the race runs on two backends as two nodes would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio

from server.domain.pairing import WaitingInvestor, WitnessState
from server.queue import SubscriptionLost, SubscriptionOverflow, create_backend
from server.queue.base import NodeInfo, Offer, QueueBackend, Subscription, WitnessPresence
from server.queue.memory import MAX_PENDING_MESSAGES, BufferedSubscription, MemoryBackend
from server.queue.redis import RedisBackend
from tests.conftest import REDIS_URL, service_missing

W = WitnessState
NOW = 1_700_000_000.0
# Values that only survive storage if floats are kept exactly (repr), not rounded.
ODD = 1_700_000_000.123456789 + 0.1
TINY = 0.1 + 0.2

Message = tuple[str, dict[str, Any]]


def waiting_investor(app: str, enqueued_at: float, **kwargs: Any) -> WaitingInvestor:
    return WaitingInvestor(app, enqueued_at, **kwargs)


def presence(staff_id: int, state: WitnessState = W.READY, **kwargs: Any) -> WitnessPresence:
    fields: dict[str, Any] = {"node_id": "node-a", "since": NOW, "last_seen": NOW}
    return WitnessPresence(staff_id, state, **(fields | kwargs))


def offer_for(app: str, staff_id: int, *, expires_at: float = NOW + 30) -> Offer:
    return Offer(uuid.uuid4().hex, app, staff_id, expires_at)


# -- fixtures -----------------------------------------------------------------------------


async def _delete_prefix(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def fresh_redis() -> AsyncIterator[RedisBackend]:
    prefix = f"witness-test:{uuid.uuid4().hex}:"
    backend = RedisBackend(REDIS_URL, key_prefix=prefix)
    if not await backend.ping():
        await backend.close()
        service_missing("Redis", REDIS_URL)
    try:
        yield backend
    finally:
        await backend.close()
        await _delete_prefix(prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[QueueBackend]:
    if request.param == "memory":
        memory = MemoryBackend()
        yield memory
        await memory.close()
        return
    async with fresh_redis() as backend:
        yield backend


@pytest.fixture
async def redis_backend() -> AsyncIterator[RedisBackend]:
    async with fresh_redis() as backend:
        yield backend


async def take(subscription: Subscription, count: int, within: float = 3.0) -> list[Message]:
    received: list[Message] = []
    async with asyncio.timeout(within):
        async for item in subscription:
            received.append(item)
            if len(received) == count:
                break
    return received


async def snapshot(backend: QueueBackend) -> tuple[Any, ...]:
    return (
        await backend.waiting(),
        await backend.witnesses(),
        await backend.expired_offers(now=1e18),
    )


# -- investors ----------------------------------------------------------------------------


async def test_waiting_is_first_come_first_served_by_enqueued_at(backend: QueueBackend) -> None:
    for app, at in [
        ("late", 30.0),
        ("early", 10.0),
        ("middle", 20.0),
        ("tie-b", 40.0),
        ("tie-a", 40.0),
    ]:
        assert await backend.enqueue(waiting_investor(app, at), now=NOW)
    order = [e.investor.application_id for e in await backend.waiting()]
    # Call order does not count; arrival time does, ties by application id (as choose_pairs).
    assert order == ["early", "middle", "late", "tie-a", "tie-b"]


async def test_enqueue_twice_is_refused_and_changes_nothing(backend: QueueBackend) -> None:
    assert await backend.enqueue(waiting_investor("a", 10.0), now=NOW)
    assert not await backend.enqueue(waiting_investor("a", 5.0, phone_hash="x"), now=NOW + 9)
    entries = await backend.waiting()
    assert len(entries) == 1
    assert entries[0].investor == waiting_investor("a", 10.0)
    assert entries[0].last_seen == NOW


async def test_entry_round_trips_every_field(backend: QueueBackend) -> None:
    investor = waiting_investor(
        "申请-1", ODD, phone_hash="ph", id_hash="ih", skills=frozenset({"hk", "粤语"})
    )
    await backend.enqueue(investor, now=TINY)
    entry = await backend.get_entry("申请-1")
    assert entry is not None
    assert entry.investor == investor
    assert entry.last_seen == TINY
    assert entry.offered_to is None
    assert await backend.get_entry("nobody") is None
    assert await backend.waiting() == [entry]


async def test_position_is_one_based_and_follows_removals(backend: QueueBackend) -> None:
    for i, app in enumerate(["a", "b", "c", "d"]):
        await backend.enqueue(waiting_investor(app, 100.0 + i), now=NOW)
    assert [await backend.position(app) for app in "abcd"] == [1, 2, 3, 4]
    assert await backend.remove_investor("b")
    assert not await backend.remove_investor("b")
    assert [await backend.position(app) for app in "abcd"] == [1, None, 2, 3]
    await backend.remove_investor("a")
    assert await backend.position("d") == 2
    assert await backend.position("nobody") is None


async def test_touch_and_stale_investors(backend: QueueBackend) -> None:
    await backend.enqueue(waiting_investor("a", 1.0), now=NOW)
    await backend.enqueue(waiting_investor("b", 2.0), now=NOW)
    assert await backend.touch_investor("a", now=NOW + 60)
    assert not await backend.touch_investor("nobody", now=NOW)
    assert await backend.get_entry("nobody") is None  # a heartbeat never creates an entry
    assert await backend.stale_investors(older_than=NOW + 30) == ["b"]
    assert await backend.stale_investors(older_than=NOW) == []  # "before", not "at"
    assert await backend.stale_investors(older_than=NOW + 61) == ["a", "b"]


# -- witnesses ----------------------------------------------------------------------------


async def test_presence_round_trips_every_field(backend: QueueBackend) -> None:
    full = presence(
        7, W.BUSY, node_id="节点-b", since=ODD, last_seen=TINY, phone_hash="p", id_hash="i",
        skills=frozenset({"hk", "en"}), offer_id="o1", application_id="app-1",
    )  # fmt: skip
    bare = presence(3, W.NOT_READY)
    assert await backend.set_witness(full)
    assert await backend.set_witness(bare)
    assert await backend.get_witness(7) == full
    assert await backend.get_witness(3) == bare
    assert await backend.get_witness(99) is None
    assert await backend.witnesses() == [bare, full]  # by staff id


async def test_set_witness_compare_and_set(backend: QueueBackend) -> None:
    # OFFLINE matches a witness with no stored presence, and nothing else matches it.
    assert not await backend.set_witness(presence(1, W.READY), expect_state=W.READY)
    assert await backend.get_witness(1) is None
    assert await backend.set_witness(presence(1, W.NOT_READY), expect_state=W.OFFLINE)
    assert not await backend.set_witness(presence(1, W.READY), expect_state=W.OFFLINE)
    assert (await backend.get_witness(1)) == presence(1, W.NOT_READY)
    assert await backend.set_witness(presence(1, W.READY, since=NOW + 1), expect_state=W.NOT_READY)
    assert await backend.get_witness(1) == presence(1, W.READY, since=NOW + 1)
    assert await backend.set_witness(presence(1, W.WRAP_UP))  # unconditional
    assert (await backend.get_witness(1)) == presence(1, W.WRAP_UP)


async def test_concurrent_compare_and_set_has_one_winner(backend: QueueBackend) -> None:
    await backend.set_witness(presence(1, W.NOT_READY))
    results = await asyncio.gather(
        *(
            backend.set_witness(presence(1, W.READY, node_id=f"n{i}"), expect_state=W.NOT_READY)
            for i in range(8)
        )
    )
    assert sum(results) == 1
    stored = await backend.get_witness(1)
    assert stored is not None and stored.node_id == f"n{results.index(True)}"


async def test_touch_and_stale_witnesses(backend: QueueBackend) -> None:
    await backend.set_witness(presence(1, W.READY))
    await backend.set_witness(presence(2, W.BUSY, application_id="x"))
    assert await backend.touch_witness(1, now=NOW + 60)
    assert not await backend.touch_witness(9, now=NOW)
    assert await backend.get_witness(9) is None
    touched = await backend.get_witness(1)
    assert touched == presence(1, W.READY, last_seen=NOW + 60)  # only last_seen changes
    assert await backend.stale_witnesses(older_than=NOW + 30) == [2]
    assert await backend.stale_witnesses(older_than=NOW) == []
    assert await backend.stale_witnesses(older_than=NOW + 61) == [1, 2]


# -- offers -------------------------------------------------------------------------------


async def test_claim_marks_both_sides_and_stores_the_offer(backend: QueueBackend) -> None:
    await backend.enqueue(waiting_investor("a", 1.0), now=NOW)
    await backend.set_witness(presence(1, W.READY))
    offer = offer_for("a", 1, expires_at=ODD)
    assert await backend.claim(offer, now=NOW + 5)
    assert await backend.get_offer(offer.offer_id) == offer
    assert await backend.get_witness(1) == presence(
        1, W.OFFERED, since=NOW + 5, offer_id=offer.offer_id, application_id="a"
    )
    entry = await backend.get_entry("a")
    assert entry is not None and entry.offered_to == 1
    assert await backend.position("a") == 1  # offered investors are still queued


@pytest.mark.parametrize(
    "case",
    [
        "witness_not_ready",
        "witness_absent",
        "investor_absent",
        "investor_offered",
        "witness_offered",
        "offer_id_taken",
    ],
)
async def test_claim_refused_changes_nothing(backend: QueueBackend, case: str) -> None:
    await backend.enqueue(waiting_investor("a", 1.0), now=NOW)
    await backend.enqueue(waiting_investor("b", 2.0), now=NOW)
    await backend.set_witness(presence(1, W.NOT_READY if case == "witness_not_ready" else W.READY))
    await backend.set_witness(presence(2, W.READY))
    await backend.set_witness(presence(3, W.READY))
    target = offer_for("a", 1)
    if case == "witness_absent":
        target = offer_for("a", 9)
    elif case == "investor_absent":
        target = offer_for("nobody", 1)
    elif case == "investor_offered":
        assert await backend.claim(offer_for("a", 2), now=NOW)
    elif case == "witness_offered":
        assert await backend.claim(offer_for("b", 1), now=NOW)
    elif case == "offer_id_taken":
        first = offer_for("b", 2)
        assert await backend.claim(first, now=NOW)
        target = replace(target, offer_id=first.offer_id)
    before = await snapshot(backend)
    assert not await backend.claim(target, now=NOW + 1)
    assert await snapshot(backend) == before


async def test_one_investor_claimed_for_two_witnesses_goes_to_one(backend: QueueBackend) -> None:
    await backend.enqueue(waiting_investor("a", 1.0), now=NOW)
    for staff_id in range(1, 6):
        await backend.set_witness(presence(staff_id, W.READY))
    offers = [offer_for("a", staff_id) for staff_id in range(1, 6)]
    results = await asyncio.gather(*(backend.claim(o, now=NOW) for o in offers))
    assert sum(results) == 1
    winner = offers[results.index(True)]
    offered = [w.staff_id for w in await backend.witnesses() if w.state is W.OFFERED]
    assert offered == [winner.staff_id]
    assert [o.offer_id for o in await backend.expired_offers(now=1e18)] == [winner.offer_id]


async def test_one_witness_claimed_for_two_investors_gets_one(backend: QueueBackend) -> None:
    for i in range(5):
        await backend.enqueue(waiting_investor(f"app-{i}", float(i)), now=NOW)
    await backend.set_witness(presence(1, W.READY))
    offers = [offer_for(f"app-{i}", 1) for i in range(5)]
    results = await asyncio.gather(*(backend.claim(o, now=NOW) for o in offers))
    assert sum(results) == 1
    offered_to = [e.offered_to for e in await backend.waiting()]
    assert offered_to.count(1) == 1 and offered_to.count(None) == 4


async def _offered(backend: QueueBackend, apps: Sequence[str] = ("a", "b")) -> Offer:
    """Investors queued in order, witness 1 offered the first of them."""
    for i, app in enumerate(apps):
        await backend.enqueue(waiting_investor(app, float(i)), now=NOW)
    await backend.set_witness(presence(1, W.READY))
    offer = offer_for(apps[0], 1)
    assert await backend.claim(offer, now=NOW)
    return offer


async def test_settle_accepted(backend: QueueBackend) -> None:
    offer = await _offered(backend)
    assert await backend.settle(offer.offer_id, accepted=True, now=NOW + 3) == offer
    assert await backend.get_entry("a") is None
    assert await backend.position("b") == 1
    assert await backend.get_witness(1) == presence(1, W.BUSY, since=NOW + 3, application_id="a")
    assert await backend.get_offer(offer.offer_id) is None
    assert await backend.expired_offers(now=1e18) == []


async def test_settle_declined_keeps_the_investors_place(backend: QueueBackend) -> None:
    offer = await _offered(backend)
    assert await backend.settle(offer.offer_id, accepted=False, now=NOW + 3) == offer
    entry = await backend.get_entry("a")
    assert entry is not None and entry.offered_to is None
    assert await backend.position("a") == 1
    assert await backend.get_witness(1) == presence(1, W.NOT_READY, since=NOW + 3)
    assert await backend.get_offer(offer.offer_id) is None
    # Free again: another witness can be offered the same investor.
    await backend.set_witness(presence(2, W.READY))
    assert await backend.claim(offer_for("a", 2), now=NOW + 4)


async def test_settle_only_once(backend: QueueBackend) -> None:
    offer = await _offered(backend)
    assert await backend.settle(offer.offer_id, accepted=True, now=NOW) == offer
    after_first = await snapshot(backend)
    assert await backend.settle(offer.offer_id, accepted=True, now=NOW + 1) is None
    assert await backend.settle(offer.offer_id, accepted=False, now=NOW + 1) is None
    assert await snapshot(backend) == after_first
    assert await backend.settle("no-such-offer", accepted=False, now=NOW) is None


async def test_accept_racing_timeout_has_exactly_one_winner(backend: QueueBackend) -> None:
    outcomes = Counter[bool]()
    for round_ in range(12):
        app = f"app-{round_}"
        await backend.enqueue(waiting_investor(app, float(round_)), now=NOW)
        await backend.set_witness(presence(1, W.READY))
        offer = offer_for(app, 1)
        assert await backend.claim(offer, now=NOW)
        calls = [(True, NOW + 1), (False, NOW + 2)]
        random.Random(round_).shuffle(calls)
        results = await asyncio.gather(
            *(backend.settle(offer.offer_id, accepted=a, now=t) for a, t in calls)
        )
        assert sorted(r is None for r in results) == [False, True]
        accepted = calls[[r is not None for r in results].index(True)][0]
        outcomes[accepted] += 1
        witness = await backend.get_witness(1)
        assert witness is not None
        if accepted:  # the state is the winner's, whole
            assert (witness.state, witness.application_id) == (W.BUSY, app)
            assert await backend.get_entry(app) is None
        else:
            assert (witness.state, witness.application_id) == (W.NOT_READY, None)
            entry = await backend.get_entry(app)
            assert entry is not None and entry.offered_to is None
            await backend.remove_investor(app)
    assert sum(outcomes.values()) == 12


async def test_remove_investor_withdraws_the_open_offer(backend: QueueBackend) -> None:
    offer = await _offered(backend)
    before = time.time()
    assert await backend.remove_investor("a")
    assert await backend.get_offer(offer.offer_id) is None
    assert await backend.expired_offers(now=1e18) == []
    witness = await backend.get_witness(1)
    assert witness is not None
    assert (witness.state, witness.offer_id, witness.application_id) == (W.NOT_READY, None, None)
    assert before <= witness.since <= time.time()  # no caller clock here: wall time
    assert await backend.settle(offer.offer_id, accepted=True, now=NOW) is None
    assert await backend.position("b") == 1


async def test_remove_witness_withdraws_the_offer_investor_keeps_place(
    backend: QueueBackend,
) -> None:
    offer = await _offered(backend, ("a", "b", "c"))
    held = await backend.get_witness(1)
    assert await backend.remove_witness(1) == held
    assert held is not None and held.offer_id == offer.offer_id
    assert await backend.get_witness(1) is None
    assert await backend.witnesses() == []
    assert await backend.get_offer(offer.offer_id) is None
    entry = await backend.get_entry("a")
    assert entry is not None and entry.offered_to is None
    assert await backend.position("a") == 1
    assert await backend.settle(offer.offer_id, accepted=True, now=NOW) is None
    assert await backend.remove_witness(1) is None


async def test_remove_witness_without_offer_touches_no_investor(backend: QueueBackend) -> None:
    offer = await _offered(backend)
    await backend.set_witness(presence(2, W.BUSY, application_id="z"))
    queue_before = await backend.waiting()
    assert await backend.remove_witness(2) == presence(2, W.BUSY, application_id="z")
    assert await backend.waiting() == queue_before
    assert await backend.get_offer(offer.offer_id) == offer


async def test_expired_offers(backend: QueueBackend) -> None:
    for i, app in enumerate("abc"):
        await backend.enqueue(waiting_investor(app, float(i)), now=NOW)
        await backend.set_witness(presence(i + 1, W.READY))
    late, early, never = (
        offer_for("a", 1, expires_at=NOW + 20),
        offer_for("b", 2, expires_at=ODD),
        offer_for("c", 3, expires_at=NOW + 99),
    )
    for offer in (late, early, never):
        assert await backend.claim(offer, now=NOW)
    assert await backend.expired_offers(now=NOW) == []
    assert await backend.expired_offers(now=ODD) == [early]  # expires_at itself is expired
    assert await backend.expired_offers(now=NOW + 50) == [early, late]  # soonest first
    await backend.settle(early.offer_id, accepted=False, now=NOW + 50)
    assert await backend.expired_offers(now=NOW + 50) == [late]


# -- statistics, nodes, locks -------------------------------------------------------------


async def test_handle_times_newest_first_and_bounded(backend: QueueBackend) -> None:
    assert await backend.handle_times() == []
    for seconds in (1.5, 2.0, TINY, 4.0):
        await backend.record_handle_time(seconds)
    assert await backend.handle_times(limit=3) == [4.0, TINY, 2.0]
    assert await backend.handle_times() == [4.0, TINY, 2.0, 1.5]
    for i in range(150):
        await backend.record_handle_time(float(i))
    kept = await backend.handle_times(limit=1000)
    assert len(kept) == 100 and kept[:2] == [149.0, 148.0]


async def test_node_registry_honours_each_ttl(backend: QueueBackend) -> None:
    await backend.register_node(NodeInfo("n1", "https://n1.example", 2, NOW), ttl=10)
    await backend.register_node(NodeInfo("n2", "https://n2.example", 0, NOW + 5), ttl=30)
    assert [n.node_id for n in await backend.live_nodes(now=NOW + 10)] == ["n1", "n2"]
    assert await backend.live_nodes(now=NOW + 10.5) == [
        NodeInfo("n2", "https://n2.example", 0, NOW + 5)
    ]
    assert await backend.live_nodes(now=NOW + 36) == []
    await backend.register_node(NodeInfo("n1", "https://n1b.example", 3, NOW + 40), ttl=10)
    assert await backend.live_nodes(now=NOW + 41) == [
        NodeInfo("n1", "https://n1b.example", 3, NOW + 40)
    ]


async def test_node_registry_keeps_a_workers_internal_url_and_machine(
    backend: QueueBackend,
) -> None:
    worker = NodeInfo(
        "box-w1", "https://kaihu.example", 1, NOW, internal_url="http://127.0.0.1:8082",
        machine="box",
    )  # fmt: skip
    await backend.register_node(worker, ttl=10)
    await backend.register_node(NodeInfo("single", "https://n2.example", 0, NOW), ttl=10)
    assert await backend.live_nodes(now=NOW + 1) == [
        worker,
        NodeInfo("single", "https://n2.example", 0, NOW),  # no internal URL: never handed to
    ]


async def test_lock_is_exclusive_and_released_only_by_its_owner(backend: QueueBackend) -> None:
    assert await backend.acquire_lock("dispatch", "node-a", ttl=30)
    assert not await backend.acquire_lock("dispatch", "node-b", ttl=30)
    assert await backend.acquire_lock("dispatch", "node-a", ttl=30)  # extend own
    assert await backend.acquire_lock("other", "node-b", ttl=30)  # names are independent
    await backend.release_lock("dispatch", "node-b")
    assert not await backend.acquire_lock("dispatch", "node-b", ttl=30)
    await backend.release_lock("dispatch", "node-a")
    assert await backend.acquire_lock("dispatch", "node-b", ttl=30)


async def test_lock_lease_expires_unless_extended(backend: QueueBackend) -> None:
    assert await backend.acquire_lock("a", "node-a", ttl=0.5)
    assert await backend.acquire_lock("b", "node-a", ttl=0.5)
    await asyncio.sleep(0.35)
    assert await backend.acquire_lock("a", "node-a", ttl=0.5)  # extended to ~0.85 s
    await asyncio.sleep(0.35)
    assert await backend.acquire_lock("b", "node-b", ttl=0.5)  # lapsed at 0.5 s
    assert not await backend.acquire_lock("a", "node-b", ttl=0.5)


# -- pub/sub ------------------------------------------------------------------------------


async def test_pubsub_delivers_in_order_with_payload_intact(backend: QueueBackend) -> None:
    payload = {"type": "offer", "名字": "张三", "nested": {"xs": [1, 2.5, None, True]}, "f": ODD}
    async with await backend.subscribe("witness:7") as sub:
        for i in range(100):
            await backend.publish("witness:7", {**payload, "seq": i})
        received = await take(sub, 100)
    assert [channel for channel, _ in received] == ["witness:7"] * 100  # no key prefix
    assert [m["seq"] for _, m in received] == list(range(100))
    assert received[0][1] == {**payload, "seq": 0}


async def test_pubsub_only_subscribed_channels(backend: QueueBackend) -> None:
    async with await backend.subscribe("a", "b") as sub:
        await backend.publish("a", {"n": 1})
        await backend.publish("c", {"n": 2})
        await backend.publish("b", {"n": 3})
        await backend.publish("a", {"n": 4})
        # In-order delivery means "c" would have shown up before n=4 if it were delivered.
        assert await take(sub, 3) == [("a", {"n": 1}), ("b", {"n": 3}), ("a", {"n": 4})]


async def test_pubsub_two_subscribers_each_get_everything(backend: QueueBackend) -> None:
    async with await backend.subscribe("q") as one, await backend.subscribe("q", "x") as two:
        for i in range(5):
            await backend.publish("q", {"i": i})
        expected = [("q", {"i": i}) for i in range(5)]
        assert await take(one, 5) == expected
        assert await take(two, 5) == expected


async def test_no_delivery_after_close(backend: QueueBackend) -> None:
    closed = await backend.subscribe("q")
    async with await backend.subscribe("q") as open_:
        await closed.close()
        await closed.close()  # idempotent
        await backend.publish("q", {"after": True})
        assert await take(open_, 1) == [("q", {"after": True})]  # it was published
    async with asyncio.timeout(2):  # a closed subscription ends, it does not wait
        assert [item async for item in closed] == []


async def test_subscribed_when_subscribe_returns(backend: QueueBackend) -> None:
    for i in range(20):
        async with await backend.subscribe(f"fresh:{i}") as sub:
            await backend.publish(f"fresh:{i}", {"i": i})
            assert await take(sub, 1, within=2) == [(f"fresh:{i}", {"i": i})]


async def test_slow_subscriber_is_dropped_loudly(backend: QueueBackend) -> None:
    sub = await backend.subscribe("busy")
    assert isinstance(sub, BufferedSubscription)
    for i in range(MAX_PENDING_MESSAGES + 5):
        await backend.publish("busy", {"i": i})
    async with asyncio.timeout(5):
        # Over Redis the reader task is still catching up; nothing signals it, so poll.
        while not sub.overflowed:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    received: list[int] = []
    with pytest.raises(SubscriptionOverflow):
        async for _, message in sub:
            received.append(message["i"])
    assert received == list(range(MAX_PENDING_MESSAGES))  # all buffered, then the error
    with pytest.raises(SubscriptionOverflow):
        await anext(aiter(sub))
    await sub.close()
    async with await backend.subscribe("busy") as again:  # resubscribing works
        await backend.publish("busy", {"i": -1})
        assert await take(again, 1) == [("busy", {"i": -1})]


async def test_ping(backend: QueueBackend) -> None:
    assert await backend.ping()


# -- the race: dispatchers competing, as several nodes would ------------------------------


async def _race(nodes: Sequence[QueueBackend], *, investors: int = 50, witnesses: int = 5) -> None:
    """Dispatchers pair, accept and free witnesses while a sweeper times offers out."""
    first = nodes[0]
    apps = [f"app-{i:03d}" for i in range(investors)]
    for i, app in enumerate(apps):
        assert await first.enqueue(waiting_investor(app, NOW + i), now=NOW)
    for staff_id in range(1, witnesses + 1):
        assert await first.set_witness(presence(staff_id, W.READY))
    served: dict[str, list[int]] = defaultdict(list)
    holding: dict[int, str] = {}  # staff id -> the offer it holds, per the claims that won
    wins: Counter[str] = Counter()
    claimed: set[str] = set()
    problems: list[str] = []
    deadline = time.monotonic() + 10

    def done() -> bool:
        return len(served) == investors or time.monotonic() > deadline

    async def back_to_ready(node: QueueBackend, staff_id: int, expect: WitnessState) -> None:
        current = await node.get_witness(staff_id)
        assert current is not None and current.state is expect, current
        ready = replace(current, state=W.READY, offer_id=None, application_id=None)
        assert await node.set_witness(ready, expect_state=expect)

    async def dispatcher(k: int) -> None:
        node, rng = nodes[k % len(nodes)], random.Random(k)
        while not done():
            free = [e.investor.application_id for e in await node.waiting() if e.offered_to is None]
            ready = [w.staff_id for w in await node.witnesses() if w.state is W.READY]
            rng.shuffle(ready)  # different dispatchers go for the same pairs in other orders
            for app, staff_id in zip(free, ready, strict=False):
                offer = offer_for(app, staff_id)
                if not await node.claim(offer, now=NOW):
                    continue
                claimed.add(offer.offer_id)
                if staff_id in holding:
                    problems.append(
                        f"witness {staff_id} got {offer.offer_id} holding {holding[staff_id]}"
                    )
                holding[staff_id] = offer.offer_id
                # Sometimes dawdle, so the sweeper gets to time the offer out first.
                await asyncio.sleep(0.005 if rng.random() < 0.3 else 0)
                if await node.settle(offer.offer_id, accepted=True, now=NOW) is None:
                    continue  # the sweeper won; it frees the witness
                wins[offer.offer_id] += 1
                served[app].append(staff_id)
                del holding[staff_id]
                await back_to_ready(node, staff_id, W.BUSY)
            await asyncio.sleep(0)  # memory never yields by itself

    async def sweeper() -> None:
        node, rng = nodes[-1], random.Random(99)
        while not done():
            for offer in await node.expired_offers(now=NOW + 60):
                # Only offers whose claim the test has seen, so `holding` stays exact.
                if holding.get(offer.staff_id) != offer.offer_id or rng.random() < 0.5:
                    continue
                if await node.settle(offer.offer_id, accepted=False, now=NOW) is None:
                    continue
                wins[offer.offer_id] += 1
                del holding[offer.staff_id]
                await back_to_ready(node, offer.staff_id, W.NOT_READY)
            await asyncio.sleep(0)

    await asyncio.gather(*(dispatcher(k) for k in range(6)), sweeper())
    assert problems == []
    assert sorted(served) == apps, "someone was never served"
    assert {app: s for app, s in served.items() if len(s) != 1} == {}, "paired twice"
    assert set(wins) == claimed and set(wins.values()) == {1}, "an offer settled twice or never"
    assert len(claimed) > investors, "no offer ever timed out: the race was not exercised"
    assert await first.waiting() == []
    assert await first.expired_offers(now=1e18) == []
    assert {w.state for w in await first.witnesses()} == {W.READY}


async def test_race_of_dispatchers(backend: QueueBackend) -> None:
    await _race([backend])


@pytest.mark.redis
async def test_race_of_two_redis_nodes(redis_backend: RedisBackend) -> None:
    # A second client with its own connection pool stands in for a second server process.
    other = RedisBackend(REDIS_URL, key_prefix=redis_backend.key_prefix)
    try:
        await _race([redis_backend, other])
    finally:
        await other.close()


# -- Redis only ---------------------------------------------------------------------------


class TcpProxy:
    """Forwards to Redis, optionally delaying what clients send (a slow network);
    `cut()` breaks every connection as a network failure would."""

    def __init__(self, url: str, *, upstream_delay: float = 0.0) -> None:
        self.target = urlsplit(url)
        self.upstream_delay = upstream_delay
        self._links: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = (self.target.hostname or "127.0.0.1", self.target.port or 6379)
        up_reader, up_writer = await asyncio.open_connection(*target)
        self._links += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    await asyncio.sleep(delay)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, self.upstream_delay), pipe(up_reader, writer, 0.0)
        )

    def cut(self) -> None:
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, port: int) -> str:
        userinfo = self.target.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return urlunsplit(self.target._replace(netloc=netloc))


@pytest.mark.redis
async def test_redis_subscription_raises_when_the_connection_drops(
    redis_backend: RedisBackend,
) -> None:
    proxy = TcpProxy(REDIS_URL)
    proxied = RedisBackend(proxy.url(await proxy.start()), key_prefix=redis_backend.key_prefix)
    try:
        sub = await proxied.subscribe("events")
        await redis_backend.publish("events", {"n": 1})
        assert await take(sub, 1) == [("events", {"n": 1})]
        proxy.cut()
        with pytest.raises(SubscriptionLost):
            async with asyncio.timeout(5):
                await anext(aiter(sub))
        await sub.close()
        async with await proxied.subscribe("events") as again:  # callers resubscribe
            await redis_backend.publish("events", {"n": 2})
            assert await take(again, 1) == [("events", {"n": 2})]
    finally:
        await proxied.close()
        await proxy.close()


@pytest.mark.redis
async def test_redis_subscribe_returns_only_once_confirmed(redis_backend: RedisBackend) -> None:
    # The subscriber's commands reach Redis late; a publish from elsewhere right after
    # subscribe() returns must still find the subscription in place.
    proxy = TcpProxy(REDIS_URL, upstream_delay=0.05)
    proxied = RedisBackend(proxy.url(await proxy.start()), key_prefix=redis_backend.key_prefix)
    try:
        for i in range(3):
            async with await proxied.subscribe(f"slow:{i}", "other") as sub:
                await redis_backend.publish(f"slow:{i}", {"i": i})
                assert await take(sub, 1) == [(f"slow:{i}", {"i": i})]
    finally:
        await proxied.close()
        await proxy.close()


async def test_redis_ping_is_false_when_unreachable() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens on the port now
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0")
    try:
        assert await backend.ping() is False
    finally:
        await backend.close()


async def test_create_backend() -> None:
    memory = create_backend("memory")
    assert isinstance(memory, MemoryBackend) and memory.name == "memory"
    remote = create_backend("redis", redis_url=REDIS_URL, key_prefix="p:")
    assert isinstance(remote, RedisBackend) and remote.name == "redis"
    assert remote.key_prefix == "p:"
    await remote.close()
    with pytest.raises(ValueError, match="unknown queue backend"):
        create_backend("kafka")
    with pytest.raises(ValueError, match="redis_url"):
        create_backend("redis")


async def test_redis_subscriptions_do_not_take_the_connections_commands_need() -> None:
    """Issue 21: each open socket subscribes and keeps a connection; in the commands' pool
    (redis-py: 100, the 101st refused at once) 24 sessions' sockets took them all and the
    dispatcher's next command failed. Subscriptions now have a pool of their own."""
    backend = create_backend(
        "redis", redis_url=REDIS_URL, key_prefix="pool-test:", max_subscriptions=150
    )
    subscriptions = []
    try:
        for n in range(120):  # more than the commands' pool holds
            subscriptions.append(await backend.subscribe(f"socket-{n}"))
        # Commands still go through, and a message still reaches its subscriber.
        assert await backend.ping()
        await backend.publish("socket-7", {"n": 7})
        got = await asyncio.wait_for(anext(aiter(subscriptions[7])), 5)
        assert got == ("socket-7", {"n": 7})
    finally:
        for subscription in subscriptions:
            await subscription.close()
        await backend.close()
