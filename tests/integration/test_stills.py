"""Stills that do not fail (issue 17; A14, A17.3): many stills in one call, all made,
when the investor's sender loses keyframe requests, never answers them, or sends over a
lossy link; the automatic still reaches the witness's desk with its face score; a miss
is logged with its reason.

The investor is the Python aiortc client (tests/media_client.py). Periodic keyframes are
far apart here (60 s), so every still depends on its own request or on the frames kept.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, is_rtcp
from PIL import Image
from sqlalchemy import select

from server.app import create_app
from server.http.keys import RUNTIME
from server.media.session import STILL_TIMEOUT
from server.services.witnessing import face
from server.store.models import Document, SessionEvent, Still, WitnessSession
from tests.call_flow import FAST_PAIRING, end_call, paired
from tests.helpers import wait_for
from tests.media_client import Party
from tests.server_config import make_config

# The picture is obtained within STILL_TIMEOUT (the server's ``ready_ms``); the desk's
# wait adds the store (file fsync, database, audit) and the socket, which on this 2-core
# machine shared with other test runs (load 10+) took seconds at times: a still that
# comes late is still a success, one that does not come is the failure tested for.
ANSWER_WITHIN = STILL_TIMEOUT + 6
PHOTO = Path(__file__).resolve().parents[1] / "data" / "astronaut-face.jpg"
READY_WITHIN_MS = (STILL_TIMEOUT + 1.5) * 1000


@pytest.fixture
async def kclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        pairing=FAST_PAIRING,
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3, "keyframe_interval_seconds": 60},
    )
    return await aiohttp_client(create_app(cfg))  # type: ignore[no-any-return]


async def _call(client: Any) -> tuple[str, Party, Party, list[Any]]:
    sid, w_token, i_token, extra = await paired(client)
    witness, investor = Party(client, sid, w_token), Party(client, sid, i_token)
    await witness.join()
    await investor.join()
    return sid, witness, investor, extra


async def _still(witness: Party) -> tuple[dict[str, Any], float]:
    """One "take frontal photo": the still and how long the desk waited for it."""
    asked = time.monotonic()
    await witness.ws.send_json({"type": "capture_still"})
    still = await witness.next_still("manual", within=ANSWER_WITHIN + 5)
    return still, time.monotonic() - asked


def _is_jpeg(client: Any, still_path: str) -> None:
    data = (client.app[RUNTIME].config.recordings_path / still_path).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (320, 240)


async def _rows(client: Any, sid: str) -> tuple[list[Still], list[dict[str, Any]]]:
    rt = client.app[RUNTIME]
    async with rt.db.begin() as s:
        stills = list((await s.scalars(select(Still).where(Still.session_id == sid))).all())
        events = [
            e.payload
            for e in (
                await s.scalars(
                    select(SessionEvent).where(
                        SessionEvent.session_id == sid, SessionEvent.kind == "still.taken"
                    )
                )
            ).all()
        ]
    return stills, events


async def test_stills_come_when_keyframe_requests_are_lost_or_never_answered(
    kclient: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.media.session")
    sid, witness, investor, extra = await _call(kclient)
    await witness.start_media()
    # No video from the investor yet: a miss, said to the witness and logged with why.
    await witness.ws.send_json({"type": "capture_still"})
    assert (await witness.next_of("error"))["error"]["code"] == "no_video"
    missed = [r for r in caplog.records if r.getMessage().startswith("still missed")]
    assert missed and missed[-1].levelno == logging.WARNING
    assert missed[-1].reason == "no_video"  # type: ignore[attr-defined]

    await investor.start_media()
    await wait_for(lambda: witness.received["video"] >= 10)
    # The automatic still at session start reaches the desk, then its face score.
    auto = await witness.next_still("auto")
    score = await witness.next_of("face_score", within=30)  # dlib loads on first use
    assert score["still"] == auto["id"] and set(score["distances"]) == {"id_front", "frontal_photo"}
    assert auto["participant"] == "investor" and auto["source"] == "keyframe"

    # 24 stills; every third has its first keyframe request lost, every third the first
    # two (PLI and FIR both lost each time, as a dropped RTCP packet would be).
    taken: list[tuple[dict[str, Any], float, int]] = []
    for i in range(24):
        lost = i % 3
        investor.lose_keyframe_requests = lost
        still, waited = await _still(witness)
        taken.append((still, waited, lost))
        await asyncio.sleep(0.3)  # past STILL_RECENT: each still asks for its own keyframe
    for still, waited, _lost in taken:
        assert waited < ANSWER_WITHIN and still["ready_ms"] < READY_WITHIN_MS, (waited, still)
        # (A keyframe answering an earlier still's re-sent request may come just before.)
        assert still["source"] in ("keyframe", "recent_keyframe"), still
        # A recent keyframe came before the request (negative delay), never long before.
        floor = -250 if still["source"] == "recent_keyframe" else 0
        assert still["delay_ms"] >= floor, still
    # A lost request costs a re-send (0.5 s later), not the still. (Not exactly ``lost``
    # re-sends each: aiortc's receiver sends a PLI of its own on loss, which the client
    # loses in their place.) A still served by a recent keyframe sent no request, so its
    # planned losses never happened (on a loaded box an earlier re-send's keyframe can
    # arrive just before the next still is asked for).
    requested = [(s, lost) for s, _w, lost in taken if s["source"] == "keyframe"]
    assert len(requested) >= 16, [s["source"] for s, _w, _l in taken]
    assert investor.keyframe_requests_lost >= sum(lost for _s, lost in requested)
    resent = [s["keyframe_requests"] for s, lost in requested if lost]
    assert sum(resent) > len(resent), resent

    # The investor's sender never answers: the picture of now from the frames kept.
    investor.lose_keyframe_requests = 10**6
    for _ in range(3):
        still, waited = await _still(witness)
        assert waited < ANSWER_WITHIN and still["source"] == "gop", (waited, still)
        assert 1500 <= still["delay_ms"] <= STILL_TIMEOUT * 1000, still
        taken.append((still, waited, -1))
    investor.lose_keyframe_requests = 0

    print(  # numbers (pytest -s)
        "\n(waited s, delay ms, ready ms, requests, source):",
        [
            (round(w, 2), s["delay_ms"], s["ready_ms"], s["keyframe_requests"], s["source"])
            for s, w, _l in taken
        ],
    )
    await end_call(kclient, sid, [witness, investor], extra)
    stills, events = await _rows(kclient, sid)
    assert len(stills) == 28  # the automatic one and 27 taken
    for still in stills:
        _is_jpeg(kclient, still.path)
    # How each was obtained is kept with it (its still.taken event).
    assert all(e["source"] in ("keyframe", "recent_keyframe", "gop") for e in events)
    assert all("delay_ms" in e and "keyframe_requests" in e for e in events)


class LossyLink:
    """A share of the investor's outgoing RTP never leaves (its sender ignores NACKs, as
    the field's browser nearly did), and the same share of the keyframe requests coming
    to it is lost."""

    def __init__(self, party: Party, share: float, seed: int = 17) -> None:
        assert party.pc is not None
        self.rng = random.Random(seed)
        self.share = share
        self.dropped = {"rtp": 0, "requests": 0}
        senders = {t.kind: t.sender for t in party.pc.getTransceivers()}
        video = senders["video"]
        transport = video.transport
        send_rtp = transport._send_rtp

        async def lossy_send(data: bytes) -> None:
            if not is_rtcp(data) and self.rng.random() < self.share:
                self.dropped["rtp"] += 1
                return
            await send_rtp(data)

        transport._send_rtp = lossy_send

        async def no_retransmission(_seq: int) -> None:
            return None

        video._retransmit = no_retransmission  # type: ignore[method-assign]
        handle = video._handle_rtcp_packet

        async def lossy_rtcp(packet: Any) -> None:
            if (
                isinstance(packet, RtcpPsfbPacket)
                and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR)
                and self.rng.random() < self.share
            ):
                self.dropped["requests"] += 1
                return
            await handle(packet)

        video._handle_rtcp_packet = lossy_rtcp  # type: ignore[method-assign]


async def test_twenty_stills_over_a_link_losing_three_percent(kclient: Any) -> None:
    sid, witness, investor, extra = await _call(kclient)
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 10)
    link = LossyLink(investor, 0.03)
    waits: list[float] = []
    sources: list[str] = []
    for _ in range(20):
        still, waited = await _still(witness)
        assert waited < ANSWER_WITHIN and still["ready_ms"] < READY_WITHIN_MS, (waited, still)
        waits.append(waited)
        sources.append(f"{still['source']} {still['delay_ms']}/{still['ready_ms']}")
        await asyncio.sleep(0.3)
    link.share = 0.0
    print("\nloss:", link.dropped, "waited s:", sorted(round(w, 2) for w in waits), sources)
    assert link.dropped["rtp"] > 0
    await end_call(kclient, sid, [witness, investor], extra)
    stills, _events = await _rows(kclient, sid)
    manual = [s for s in stills if s.kind == "manual"]
    assert len(manual) == 20
    for still in manual:
        _is_jpeg(kclient, still.path)


async def test_the_automatic_still_waits_for_the_witness_to_be_on_the_call(
    kclient: Any,
) -> None:
    rt = kclient.app[RUNTIME]
    sid, witness, investor, extra = await _call(kclient)
    await investor.start_media()  # the investor's video flows before the witness's call
    await wait_for(lambda: rt.media.sessions[sid].auto_still_taken)
    await witness.start_media()
    # (Read from every message the socket brought: the still may come before the answer
    # to the witness's offer, which the client's wait for that answer passes over.)

    def seen(kind: str) -> list[dict[str, Any]]:
        return [m for m in witness.messages if m.get("type") == kind]

    await wait_for(lambda: any(m.get("kind") == "auto" for m in seen("still")), within=15)
    await wait_for(lambda: bool(seen("face_score")), within=30)  # dlib loads on first use
    (auto,) = seen("still")
    assert auto["kind"] == "auto" and seen("face_score")[0]["still"] == auto["id"]
    await end_call(kclient, sid, [witness, investor], extra)
    stills, _events = await _rows(kclient, sid)
    assert [s.kind for s in stills] == ["auto"]


async def test_face_score_embeds_each_reference_once_per_call(
    kclient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A17.3: with a face in the still, the score gives each reference's distance; the
    references (the ID image, the intake photo) are embedded once, not at every still;
    and all in the embedding process, never in the server's (where dlib's ~140 ms holding
    the GIL would stall every call's media)."""

    def not_here(*_: Any) -> None:
        raise AssertionError("embedded in the server process")

    monkeypatch.setattr(face.FaceMatcher, "embedding", not_here)
    rt = kclient.app[RUNTIME]
    sid, witness, investor, extra = await _call(kclient)
    await witness.start_media()
    await investor.start_media()
    auto = await witness.next_still("auto", within=15)
    await witness.next_of("face_score", within=30)  # dlib loads on first use
    computed = rt.witnessing.references.computed
    # The synthetic video shows no face: put one in the still and in both references.
    root = rt.config.recordings_path
    async with rt.db.begin() as s:
        still = await s.get(Still, auto["id"])
        assert still is not None
        still_path = root / still.path
        app_id = (await s.get(WitnessSession, sid)).application_id  # type: ignore[union-attr]
        docs = (await s.scalars(select(Document).where(Document.application_id == app_id))).all()
    with Image.open(PHOTO) as img:
        frame = Image.new("RGB", (320, 240), "#202020")
        frame.paste(img.resize((200, 200)), (60, 20))
        buf = io.BytesIO()
        frame.save(buf, "JPEG")
        still_path.write_bytes(buf.getvalue())
    for doc in docs:
        if doc.kind in ("id_front", "frontal_photo"):
            (root / doc.path).write_bytes(PHOTO.read_bytes())
    for _ in range(2):
        score = await rt.witnessing.face_score(session_id=sid, still=auto, offset_ms=0)
        assert score is not None and score["likely_same"] is True
        assert set(score["distances"]) == {"id_front", "frontal_photo"}
        assert all(d < score["threshold"] for d in score["distances"].values())
    assert rt.witnessing.references.computed == computed + 2
    assert face.embedder_pids(face.ADVICE)  # the advice lane's process, at its priority
    await end_call(kclient, sid, [witness, investor], extra)
