"""The relay's two modes with real aiortc parties (issue 9): passthrough when both speak
VP8 (decodable video and audio both ways, a receiver's keyframe request reaching the
sending party), and the transcoding fallback when a party's browser has only H.264
(each side still sees the other, each is recorded as it sent, the H.264 one in
Matroska, and the session's events say which mode ran).

The periodic keyframe timer is set to a minute here, so every keyframe request seen is
one the test caused."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.http.keys import RUNTIME
from server.media import hooks
from server.media.codecs import H264, VP8
from server.media.relay import PASSTHROUGH, TRANSCODE
from server.store.models import Recording, SessionEvent, Still
from tests.call_flow import FAST_PAIRING, end_call, paired
from tests.helpers import decode_all, wait_for
from tests.media_client import HEIGHT, WIDTH, Party
from tests.server_config import make_config

TALK = 4.0  # seconds over which delivery is measured
SHARE = 0.6  # of the frames one party sent that the other must decode


@pytest.fixture
async def mclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        pairing=FAST_PAIRING,
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3, "keyframe_interval_seconds": 60},
    )
    return await aiohttp_client(create_app(cfg))


# The media path does not touch the database differently per engine; SQLite suffices.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def both_see_each_other(a: Party, b: Party) -> None:
    """Over TALK seconds each party decodes most of the pictures the other sent, at the
    size they were sent, and the other's voice."""
    await wait_for(lambda: a.received["video"] >= 10 and b.received["video"] >= 10)
    sent = {p: p.video.sent for p in (a, b)}
    got = {p: dict(p.received) for p in (a, b)}
    await asyncio.sleep(TALK)
    for me, other in ((a, b), (b, a)):
        video = me.received["video"] - got[me]["video"]
        audio = me.received["audio"] - got[me]["audio"]
        assert video >= SHARE * (other.video.sent - sent[other]), (video, other.video.sent)
        assert audio >= SHARE * TALK / 0.020, audio  # 20 ms Opus frames
        assert me.video_size == (WIDTH, HEIGHT)


async def test_passthrough_delivers_both_ways_and_keyframe_requests_reach_the_sender(
    mclient: Any,
) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await both_see_each_other(witness, investor)
    media = rt.media.sessions[sid]
    assert {leg.video_out.mode for leg in media.legs.values()} == {PASSTHROUGH}

    # The investor's browser reports a broken picture: the server cannot repair frames
    # it only forwards, so the witness's browser must be asked for a keyframe.
    assert investor.video_transceiver is not None
    receiver = investor.video_transceiver.receiver
    for _ in range(3):
        before = len(witness.keyframe_requests)
        await asyncio.sleep(1.0)  # longer than the server's 0.5 s rate limit
        assert len(witness.keyframe_requests) == before  # nobody asks without a cause
        asked_at = time.monotonic()
        assert await hooks.request_keyframe(receiver)  # a PLI to the server's sender
        await wait_for(lambda: len(witness.keyframe_requests) > before, within=2.0)  # noqa: B023
        assert witness.keyframe_requests[before] - asked_at < 2.0
    await end_call(mclient, sid, [witness, investor], extra)


async def test_an_h264_only_party_is_transcoded_for_a_vp8_party(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness = Party(mclient, sid, w_token)
    # An embedded browser without VP8.
    investor = Party(mclient, sid, i_token, video_codecs=("video/h264",))
    await witness.join()
    await investor.join()
    # Neither VP8 nor H.264 (VP9 only): refused, in both languages, before any leg opens.
    vp9_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n"
    await investor.ws.send_json({"type": "offer", "sdp": vp9_only})
    refused = (await investor.next_of("error"))["error"]
    assert refused["code"] == "bad_offer" and "H.264" in refused["message_zh"]
    await asyncio.gather(witness.start_media(), investor.start_media())
    t0 = asyncio.get_running_loop().time()
    await both_see_each_other(witness, investor)

    media = rt.media.sessions[sid]
    legs = media.legs
    assert (legs["investor"].video_codec, legs["witness"].video_codec) == (H264, VP8)
    assert legs["investor"].video_out.mode == legs["witness"].video_out.mode == TRANSCODE

    # The investor's browser asks for a keyframe: the server's own H.264 encoder makes
    # one, and the witness is not bothered (its frames are decoded, not forwarded).
    # aiortc's encoder also makes one by itself every 25 pictures, so the request is sent
    # just after one of those and its answer must come long before the next.
    keys = investor.keyframes_received
    gap = statistics.median(b - a for a, b in itertools.pairwise(keys))
    assert gap > 0.5, keys  # else this part of the test would prove nothing
    assert investor.video_transceiver is not None
    receiver = investor.video_transceiver.receiver
    for _ in range(3):
        seen = len(keys)
        await wait_for(lambda: len(keys) > seen, within=3 * gap)  # noqa: B023
        requests, seen = len(witness.keyframe_requests), len(keys)
        asked_at = time.monotonic()
        assert await hooks.request_keyframe(receiver)
        await wait_for(lambda: len(keys) > seen, within=gap)  # noqa: B023
        assert keys[seen] - asked_at < gap / 2, (keys[seen] - asked_at, gap)
        await asyncio.sleep(0.5)
        assert len(witness.keyframe_requests) == requests

    # A14 from an H.264 party: the still decodes from its keyframe.
    await witness.ws.send_json({"type": "capture_still"})
    still = await witness.next_still("manual")
    assert still["participant"] == "investor"
    talk = asyncio.get_running_loop().time() - t0
    await end_call(mclient, sid, [witness, investor], extra)
    sent = {"witness": witness.video.sent, "investor": investor.video.sent}

    root = rt.config.recordings_path
    async with rt.db.begin() as s:
        recs = {
            r.participant: r
            for r in (await s.scalars(select(Recording).where(Recording.session_id == sid)))
        }
        connected = (
            await s.scalars(
                select(SessionEvent).where(
                    SessionEvent.session_id == sid, SessionEvent.kind == "media.connected"
                )
            )
        ).all()
        stills = (await s.scalars(select(Still).where(Still.session_id == sid))).all()
    # A15: each party recorded as it sent: the investor's H.264 in Matroska.
    assert recs["investor"].path.endswith(".mkv") and recs["witness"].path.endswith(".webm")
    assert recs["investor"].content_type == "video/x-matroska"
    assert recs["witness"].content_type == "video/webm"
    for role, rec in recs.items():
        assert rec.status == "complete", (role, rec.status)
        path = root / rec.path
        counts = decode_all(path)
        assert counts["video"] == rec.video_frames, role
        assert rec.video_frames >= 0.9 * 30 * talk, (role, rec.video_frames, talk)
        assert rec.video_frames <= sent[role]
        assert counts["audio"] >= 0.9 * rec.duration_ms / 20
    with av.open(str(root / recs["investor"].path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    codecs = {e.actor: e.payload["video_codec"] for e in connected}
    assert codecs == {"investor": "H264", "witness": "VP8"}
    relays = [e.payload["relay"] for e in connected]
    assert "transcode" in relays and set(relays) <= {"transcode", None}
    assert sorted(s.kind for s in stills) == ["auto", "manual"]
    for st in stills:
        assert (root / st.path).read_bytes()[:2] == b"\xff\xd8"


async def test_a_party_rejoining_with_another_codec_switches_the_relay(mclient: Any) -> None:
    """The investor starts in a browser with VP8, then reopens the link in one with only
    H.264: the witness's leg, unchanged, goes from forwarding to transcoding."""
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, first = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await first.join()
    await asyncio.gather(witness.start_media(), first.start_media())
    await wait_for(lambda: witness.received["video"] >= 10 and first.received["video"] >= 10)
    witness_leg = rt.media.sessions[sid].legs["witness"]
    assert witness_leg.video_out.mode == PASSTHROUGH

    await first.close()
    await witness.next_of("peer_away")
    again = Party(mclient, sid, i_token, video_codecs=("video/h264",))
    assert (await again.join())["rejoined"] is True
    await again.start_media()
    await both_see_each_other(witness, again)
    legs = rt.media.sessions[sid].legs
    assert legs["witness"] is witness_leg and witness_leg.video_out.mode == TRANSCODE
    assert legs["investor"].video_codec is H264
    await end_call(mclient, sid, [witness, again], extra)

    async with rt.db.begin() as s:
        recs = (
            await s.scalars(
                select(Recording)
                .where(Recording.session_id == sid, Recording.participant == "investor")
                .order_by(Recording.segment)
            )
        ).all()
        connected = (
            await s.scalars(
                select(SessionEvent)
                .where(SessionEvent.session_id == sid, SessionEvent.kind == "media.connected")
                .order_by(SessionEvent.offset_ms)
            )
        ).all()
    assert [(Path(r.path).name, r.status) for r in recs] == [
        ("investor-00.webm", "complete"),
        ("investor-01.mkv", "complete"),
    ]
    last = connected[-1]
    assert last.actor == "investor" and last.payload["segment"] == 1
    assert (last.payload["video_codec"], last.payload["relay"]) == ("H264", "transcode")
