"""Nothing of a finished session stays in memory (issue 9: a soak of sessions starting and
ending must leave the server's memory flat; aiortc's receivers and relay are known to
hold frames without bound when nobody lets go of them). Each session's media objects are
watched through weak references and must all be gone once it has ended."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.http.keys import RUNTIME
from tests.call_flow import FAST_PAIRING, next_of, paired
from tests.helpers import wait_for
from tests.media_client import Party
from tests.server_config import make_config

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
async def mclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path, db_url, pairing=FAST_PAIRING, identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3},
    )  # fmt: skip
    return await aiohttp_client(create_app(cfg))


def _watch(media: Any) -> list[weakref.ref[Any]]:
    refs: list[weakref.ref[Any]] = [weakref.ref(media)]
    for leg in media.legs.values():
        refs += [weakref.ref(o) for o in (leg, leg.pc, leg.video_out, leg.audio_out)]
        if leg.writer is not None:
            refs.append(weakref.ref(leg.writer))
        refs += [weakref.ref(t.receiver) for t in leg.pc.getTransceivers()]
        refs += [weakref.ref(t.sender) for t in leg.pc.getTransceivers()]
    return refs


async def _one_session(
    mclient: Any, sid: str, w_token: str, i_token: str, wit_ws: Any
) -> list[Any]:
    """A call with media both ways, hung up by the witness; weak references to the
    server's objects for it."""
    rt = mclient.app[RUNTIME]
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 10 and investor.received["video"] >= 10)
    refs = _watch(rt.media.sessions[sid])
    assert len(refs) >= 15 and all(r() is not None for r in refs)
    await wit_ws.send_json({"type": "end", "session_id": sid})
    await wait_for(lambda: sid not in rt.media.sessions)
    await witness.close()
    await investor.close()
    return refs


async def test_a_finished_sessions_media_objects_are_released(mclient: Any) -> None:
    sid, w_token, i_token, (alive, inv_ws, wit_ws) = await paired(mclient)
    watched: list[weakref.ref[Any]] = []
    try:
        for n in range(3):
            if n:
                # The witness hung up, so the investor is queued again: the next session.
                await wit_ws.send_json({"type": "ready"})
                offer = await next_of(wit_ws, "offer")
                await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
                w_match = await next_of(wit_ws, "matched")
                sid = w_match["session_id"]
                i_match = await next_of(inv_ws, "matched")
                while i_match["session_id"] != sid:  # one announced for the last session
                    i_match = await next_of(inv_ws, "matched")
                w_token, i_token = w_match["token"], i_match["token"]
            watched += await _one_session(mclient, sid, w_token, i_token, wit_ws)
    finally:
        alive.cancel()
        await inv_ws.close()
        await wit_ws.close()
    for _ in range(20):
        await asyncio.sleep(0.2)  # aiortc's own tasks finish after close()
        gc.collect()
        if all(r() is None for r in watched):
            break
    survivors = sorted({type(r()).__name__ for r in watched if r() is not None})
    assert survivors == [], f"still referenced after their session ended: {survivors}"
