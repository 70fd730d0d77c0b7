"""A witness and an investor paired through the queue and in a call, over the sockets of
an app under test (shared by the pairing, media and API tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, WitnessSession
from tests.helpers import add_staff, csrf_from, login, wait_for
from tests.intake_flow import ZHANG_SAN, verified_investor
from tests.media_client import Party

# [pairing] timings short enough for tests.
FAST_PAIRING = {
    "dispatch_interval_seconds": 0.05,
    "offer_timeout_seconds": 2,
    "heartbeat_seconds": 1,
    # Long enough that a loaded CI box (a loop held up for seconds) cannot sweep a live
    # test console between its connect and its first ping; the expiry itself is tested
    # by backdating last_seen (test_pairing_flow) and in the queue contract.
    "witness_presence_ttl_seconds": 10,
    "investor_grace_seconds": 2,
}


async def next_of(ws: Any, kind: str, within: float = 5.0) -> dict[str, Any]:
    """The next message of a type, skipping others (state updates, queue positions); on
    timeout, the messages skipped say what came instead (an error, a state)."""
    deadline = time.monotonic() + within
    skipped: list[str] = []
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(
                f"no {kind!r} message within {within} s; skipped: {skipped[-10:]}"
            ) from None
        assert msg.type.name == "TEXT", msg
        data = json.loads(msg.data)
        if data.get("type") == kind:
            return data  # type: ignore[no-any-return]
        skipped.append(msg.data[:300])


class KeepAlive:
    """Pings like a live page does, so presence and the queue place are kept; sockets
    join as they open (a queued investor left without pings for the grace period, e.g.
    while a witness logs in on a loaded machine, leaves the queue)."""

    def __init__(self, sockets: tuple[Any, ...]) -> None:
        self.sockets = list(sockets)
        self.task = asyncio.create_task(self._beat())

    def add(self, ws: Any) -> None:
        self.sockets.append(ws)

    def cancel(self) -> None:
        self.task.cancel()

    def __await__(self) -> Generator[Any, None, None]:
        return self.task.__await__()

    async def _beat(self) -> None:
        while True:
            for ws in list(self.sockets):
                with contextlib.suppress(ConnectionError):  # the test is closing it
                    if not ws.closed:
                        await ws.send_json({"type": "ping"})
            await asyncio.sleep(0.5)


def keep_alive(*sockets: Any) -> KeepAlive:
    return KeepAlive(sockets)


async def paired(
    client: Any, before_queue: Callable[[], Awaitable[None]] | None = None
) -> tuple[str, str, str, list[Any]]:
    """Queue an investor, have a witness accept: (session id, witness token, investor
    token, sockets to close). ``before_queue`` runs once the application is verified."""
    investor = await verified_investor(client, "13800138000", ZHANG_SAN)
    if before_queue is not None:
        await before_queue()
    assert (await investor.post("/application/queue")).status == 200
    inv_ws = await client.ws_connect("/ws/investor")
    alive = keep_alive(inv_ws)  # before the witness's login, which hashes a password
    await add_staff(client, "wang.wei", {Role.WITNESS})
    await login(client, "wang.wei")
    wit_ws = await client.ws_connect("/ws/witness")
    alive.add(wit_ws)
    await next_of(wit_ws, "state", within=15)
    await wit_ws.send_json({"type": "ready"})
    # Waits, not measurements: a loaded CI box has taken over 5 s to get here.
    try:
        offer = await next_of(wit_ws, "offer", within=15)
    except AssertionError as exc:
        rt = client.app[RUNTIME]
        raise AssertionError(
            f"{exc}\nqueue: {await rt.queue.waiting()}\nwitnesses: {await rt.queue.witnesses()}"
        ) from None
    await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
    w_match = await next_of(wit_ws, "matched", within=15)
    i_match = await next_of(inv_ws, "matched", within=15)
    return w_match["session_id"], w_match["token"], i_match["token"], [alive, inv_ws, wit_ws]


async def end_call(mclient: Any, sid: str, parties: list[Party], extra: list[Any]) -> None:
    rt = mclient.app[RUNTIME]
    await extra[2].send_json({"type": "end", "session_id": sid})
    await wait_for(lambda: sid not in rt.media.sessions)
    for party in parties:
        await party.close()
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()


async def recorded_session(client: Any) -> str:
    """A short real call with a still, ended by the witness."""
    rt = client.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(client)
    witness, investor = Party(client, sid, w_token), Party(client, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 20 and investor.received["video"] >= 20)
    await witness.ws.send_json({"type": "capture_still"})
    await witness.next_still("manual")
    await extra[2].send_json({"type": "end", "session_id": sid})
    await wait_for(lambda: sid not in rt.media.sessions)
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()
    return sid


async def witnessed(client: Any) -> str:
    """A real recorded call, then marked passed (the witnessing flow is tested elsewhere)."""
    sid = await recorded_session(client)
    async with client.app[RUNTIME].db.begin() as s:
        ws = await s.get(WitnessSession, sid)
        assert ws is not None
        ws.state, ws.verdict = "ended", "pass"
        app = await s.get(Application, ws.application_id)
        assert app is not None
        app.state = "witnessed"
    return sid


async def as_staff(client: Any, username: str) -> dict[str, str]:
    client.session.cookie_jar.clear()
    await login(client, username)
    page = await client.get("/staff/")
    return {"X-CSRF-Token": csrf_from(await page.text())}
