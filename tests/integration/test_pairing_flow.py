"""Queue, witness presence and signalling end to end over HTTP and WebSockets (A7, A17.3)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, WitnessSession
from tests.call_flow import FAST_PAIRING, keep_alive, next_of
from tests.helpers import add_staff, login
from tests.intake_flow import ZHANG_SAN, verified_investor
from tests.server_config import make_config

LI_SI = {
    **ZHANG_SAN,
    "name": "李四",
    "id_number": "110101200001010010",
    "sex": "M",
    "birth_date": "2000-01-01",
}


def _app(tmp_path: Path, db_url: str, investor_grace_seconds: int) -> Any:
    cfg = make_config(
        tmp_path,
        db_url,
        pairing={**FAST_PAIRING, "investor_grace_seconds": investor_grace_seconds},
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 1},
    )
    return create_app(cfg)


@pytest.fixture
async def pclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    # An investor's grace far longer than a loaded CI box can hold the loop: with 2 s, a
    # queued investor whose pings were held up was swept between a witness's decline and
    # the next witness's ready (no offer, queue_length 0). The expiry itself is tested
    # with a short grace (short_grace_client).
    return await aiohttp_client(_app(tmp_path, db_url, 30))


@pytest.fixture
async def short_grace_client(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(_app(tmp_path, db_url, FAST_PAIRING["investor_grace_seconds"]))


async def state_is(ws: Any, state: str) -> None:
    while (await next_of(ws, "state"))["state"] != state:
        pass


async def state_of(client: Any, application_id: str) -> str:
    async with client.app[RUNTIME].db.begin() as s:
        app = await s.get(Application, application_id)
        assert app is not None
        return app.state


async def test_investor_and_witness_paired_and_signalling(pclient: Any) -> None:
    investor = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    joined = await investor.post("/application/queue")
    assert joined.status == 200
    status = await joined.json()
    assert status["queued"] and status["position"] == 1
    app_id = (await investor.app())["id"]
    assert await state_of(pclient, app_id) == "queued"

    inv_ws = await pclient.ws_connect("/ws/investor")
    assert (await next_of(inv_ws, "queue"))["position"] == 1
    await pclient.app[RUNTIME].dispatcher.run_once()
    metrics = await (await pclient.get("/metrics")).text()
    assert "witness_queue_length 1.0" in metrics

    alive = keep_alive(inv_ws)  # before the witness's login, which hashes a password
    await add_staff(pclient, "wang.wei", {Role.WITNESS})
    await login(pclient, "wang.wei")
    wit_ws = await pclient.ws_connect("/ws/witness")
    alive.add(wit_ws)
    assert (await next_of(wit_ws, "state"))["state"] == "not_ready"
    await wit_ws.send_json({"type": "ready"})
    offer = await next_of(wit_ws, "offer")
    assert offer["application"]["id_number_masked"] == "110105********002X"
    assert offer["application"]["name"] == "张三"
    await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
    w_match = await next_of(wit_ws, "matched")
    i_match = await next_of(inv_ws, "matched")
    assert w_match["session_id"] == i_match["session_id"]
    assert w_match["token"] != i_match["token"]
    assert await state_of(pclient, app_id) == "witnessing"

    sid = w_match["session_id"]
    w_sess = await pclient.ws_connect(f"/ws/session/{sid}?token={w_match['token']}")
    i_sess = await pclient.ws_connect(f"/ws/session/{sid}?token={i_match['token']}")
    assert (await next_of(w_sess, "peer_joined"))["role"] == "investor"
    assert "witness_live_sessions 2.0" in await (await pclient.get("/metrics")).text()
    await w_sess.send_json({"type": "mute", "audio": True, "video": False})
    got = await next_of(i_sess, "mute")
    assert got == {"type": "mute", "audio": True, "video": False, "from": "witness"}
    await i_sess.send_json({"type": "offer", "sdp": "no media here"})
    assert (await next_of(i_sess, "error"))["error"]["code"] == "bad_offer"
    await i_sess.send_json({"type": "answer", "sdp": "v=0"})  # the server answers, not peers
    assert (await next_of(i_sess, "error"))["error"]["code"] == "unknown_message"

    # A witness token does not open another session, nor does a forged one.
    bad = await pclient.ws_connect(f"/ws/session/{sid}?token=forged.token")
    assert (await next_of(bad, "error"))["error"]["code"] == "session_token_invalid"

    # The investor drops and does not come back within the grace period: witness told,
    # investor back at the head.
    await i_sess.close()
    assert (await next_of(w_sess, "peer_away"))["grace_seconds"] == 1
    assert (await next_of(w_sess, "peer_left"))["reason"] == "investor_left"
    assert (await next_of(inv_ws, "peer_left"))["requeued"] is True
    assert await state_of(pclient, app_id) == "queued"
    rt = pclient.app[RUNTIME]
    assert await rt.queue.position(app_id) == 1
    presence = await rt.queue.get_witness(next(iter([1])))
    assert presence is not None and presence.state.value == "not_ready"
    async with rt.db.begin() as s:
        ws_row = await s.scalar(select(WitnessSession))
        assert ws_row is not None and ws_row.state == "aborted"
        actions = (await s.scalars(select(AuditEntry.action))).all()
    for action in ("pairing.offered", "pairing.accepted", "session.joined", "session.aborted"):
        assert action in actions
    alive.cancel()
    for ws in (inv_ws, wit_ws, w_sess):
        await ws.close()


async def test_ineligible_witness_cannot_go_ready(pclient: Any) -> None:
    await add_staff(pclient, "sales.li", {Role.WITNESS}, is_marketing=True)
    await login(pclient, "sales.li")
    ws = await pclient.ws_connect("/ws/witness")
    await next_of(ws, "state")
    await ws.send_json({"type": "ready"})
    err = await next_of(ws, "error")
    assert err["error"]["code"] == "witness_not_eligible"
    assert "marketing_staff" in err["error"]["details"]["problems"]
    presence = await pclient.app[RUNTIME].queue.get_witness(1)
    assert presence is not None and presence.state.value == "not_ready"
    await ws.close()


async def test_non_witness_refused_socket(pclient: Any) -> None:
    await add_staff(pclient, "reviewer1", {Role.REVIEWER})
    await login(pclient, "reviewer1")
    resp = await pclient.get("/ws/witness")
    assert resp.status == 403


async def test_unanswered_offer_moves_on_and_investor_keeps_place(pclient: Any) -> None:
    investor = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    await investor.post("/application/queue")
    app_id = (await investor.app())["id"]
    inv_ws = await pclient.ws_connect("/ws/investor")
    alive = keep_alive(inv_ws)
    await add_staff(pclient, "slow.witness", {Role.WITNESS})
    await login(pclient, "slow.witness")
    ws = await pclient.ws_connect("/ws/witness")
    alive.add(ws)
    await ws.send_json({"type": "ready"})
    offer = await next_of(ws, "offer")
    closed = await next_of(ws, "offer_closed", within=6)
    assert closed["offer_id"] == offer["offer_id"] and closed["reason"] == "timeout"
    rt = pclient.app[RUNTIME]
    presence = await rt.queue.get_witness(1)
    assert presence is not None and presence.state.value == "not_ready"
    assert await rt.queue.position(app_id) == 1
    entry = await rt.queue.get_entry(app_id)
    assert entry is not None and entry.offered_to is None
    alive.cancel()
    await ws.close()
    await inv_ws.close()


async def test_decline_then_next_witness_gets_the_offer(pclient: Any) -> None:
    investor = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    await investor.post("/application/queue")
    inv_ws = await pclient.ws_connect("/ws/investor")
    alive = keep_alive(inv_ws)
    await add_staff(pclient, "first", {Role.WITNESS})
    await login(pclient, "first")
    first = await pclient.ws_connect("/ws/witness")
    alive.add(first)
    await first.send_json({"type": "ready"})
    offer = await next_of(first, "offer")
    await first.send_json({"type": "decline", "offer_id": offer["offer_id"]})
    assert (await next_of(first, "offer_closed"))["reason"] == "declined"
    # A second witness on another login takes it.
    other = TestClient(pclient.server)
    await other.start_server()
    try:
        await add_staff(pclient, "second", {Role.WITNESS})
        await login(other, "second")
        second = await other.ws_connect("/ws/witness")
        await second.send_json({"type": "ready"})
        offer2 = await next_of(second, "offer")
        assert offer2["application"]["application_id"] == offer["application"]["application_id"]
        for ws in (first, second, inv_ws):
            await ws.close()
    finally:
        # Closed even when the test fails: left open, its session's warning failed the
        # next test on the worker.
        alive.cancel()
        await other.close()


async def test_reload_keeps_place_and_grace_expiry_releases_it(
    short_grace_client: Any,
) -> None:
    pclient = short_grace_client
    a = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    await a.post("/application/queue")
    a_id = (await a.app())["id"]
    pclient.session.cookie_jar.clear()
    b = await verified_investor(pclient, "13700137000", LI_SI)
    await b.post("/application/queue")
    b_id = (await b.app())["id"]
    rt = pclient.app[RUNTIME]
    assert await rt.queue.position(b_id) == 2
    # B's page reloads: a new socket, the same place.
    ws1 = await pclient.ws_connect("/ws/investor")
    assert (await next_of(ws1, "queue"))["position"] == 2
    await ws1.close()
    ws2 = await pclient.ws_connect("/ws/investor")
    assert (await next_of(ws2, "queue"))["position"] == 2
    await ws2.close()
    # A's page is gone for longer than the grace period: A leaves the queue, B moves up.
    deadline = time.monotonic() + 10
    while await rt.queue.position(a_id) is not None and time.monotonic() < deadline:
        await rt.queue.touch_investor(b_id, now=time.time())
        await asyncio.sleep(0.2)
    assert await rt.queue.position(a_id) is None
    assert await rt.queue.position(b_id) == 1
    # The sweep takes A off the queue, then returns the application in its own
    # transaction: the state may trail the queue by a moment.
    for _ in range(50):
        if await state_of(pclient, a_id) == "identity_verified":
            break
        await asyncio.sleep(0.1)
    assert await state_of(pclient, a_id) == "identity_verified"


async def test_dead_console_is_never_offered(pclient: Any) -> None:
    rt = pclient.app[RUNTIME]
    await add_staff(pclient, "ghost", {Role.WITNESS})
    await login(pclient, "ghost")
    ws = await pclient.ws_connect("/ws/witness")
    await ws.send_json({"type": "ready"})
    await state_is(ws, "ready")
    # The console's machine dies: no close frame, no heartbeats.
    from dataclasses import replace

    presence = await rt.queue.get_witness(1)
    assert presence is not None
    await rt.queue.set_witness(replace(presence, last_seen=time.time() - 60))
    investor = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    await investor.post("/application/queue")
    await rt.dispatcher.run_once()
    assert await rt.queue.expired_offers(now=time.time() + 3600) == []
    assert await rt.queue.get_witness(1) is None  # swept as offline
    await ws.close()


async def test_join_queue_needs_verified_identity(pclient: Any) -> None:
    from tests.intake_flow import sign_in

    investor, _ = await sign_in(pclient)
    resp = await investor.post("/application/queue")
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "illegal_transition"


async def test_cross_site_websocket_refused(pclient: Any) -> None:
    await add_staff(pclient, "w.one", {Role.WITNESS})
    await login(pclient, "w.one")
    resp = await pclient.get("/ws/witness", headers={"Origin": "https://evil.example"})
    assert resp.status == 403


CHAN_TAI_MAN = {
    **ZHANG_SAN,
    "name": "陈大文",
    "document_type": "hmt_residence_permit",
    "id_number": "810000198503150033",
    "sex": "M",
    "birth_date": "1985-03-15",
    "valid_from": "2023-01-01",
    "valid_until_long_term": False,
    "valid_until": "2028-01-01",
    "nationality": "HKG",
}


async def test_skills_route_permit_holders_to_hmt_witnesses(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    cfg = make_config(
        tmp_path,
        db_url,
        pairing={**FAST_PAIRING, "match_skills": True, "dispatch_interval_seconds": 5},
        identity={"sandbox_latency_ms": 0},
    )
    client = await aiohttp_client(create_app(cfg))
    rt = client.app[RUNTIME]
    investor = await verified_investor(client, "13600136000", CHAN_TAI_MAN)
    await investor.post("/application/queue")
    await add_staff(client, "plain.witness", {Role.WITNESS})
    await add_staff(client, "hmt.witness", {Role.WITNESS}, skills=frozenset({"hmt"}))
    for staff_id in (1, 2):
        await rt.pairing.witness_connect(staff_id)
    await rt.pairing.witness_ready(1, actor="plain.witness")
    await rt.dispatcher.run_once()
    assert (await rt.queue.get_witness(1)).state.value == "ready"  # type: ignore[union-attr]
    await rt.pairing.witness_ready(2, actor="hmt.witness")
    await rt.dispatcher.run_once()
    offered = await rt.queue.get_witness(2)
    assert offered is not None and offered.state.value == "offered"
    assert (await rt.queue.get_witness(1)).state.value == "ready"  # type: ignore[union-attr]


async def test_match_reaches_an_investor_who_reconnects_later(pclient: Any) -> None:
    investor = await verified_investor(pclient, "13800138000", ZHANG_SAN)
    await investor.post("/application/queue")  # no socket open: the page is reloading
    await add_staff(pclient, "wang.wei", {Role.WITNESS})
    await login(pclient, "wang.wei")
    wit_ws = await pclient.ws_connect("/ws/witness")
    await wit_ws.send_json({"type": "ready"})
    offer = await next_of(wit_ws, "offer")
    await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
    w_match = await next_of(wit_ws, "matched")
    # The investor's page comes back: the match is delivered again, with its own token.
    inv_ws = await pclient.ws_connect("/ws/investor")
    again = await next_of(inv_ws, "matched")
    assert again["session_id"] == w_match["session_id"] and again["token"] != w_match["token"]
    i_sess = await pclient.ws_connect(f"/ws/session/{again['session_id']}?token={again['token']}")
    assert (await next_of(i_sess, "joined"))["role"] == "investor"
    for ws in (i_sess, inv_ws, wit_ws):
        await ws.close()
