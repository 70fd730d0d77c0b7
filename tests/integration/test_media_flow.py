"""Two aiortc participants through the server: relay, recording, stills, rejoin (issue 5;
A14, A15, A17.3, A19). The browser version of this is tests/e2e/test_call_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from sqlalchemy import select

from server.domain.errors import Conflict
from server.http.keys import RUNTIME
from server.services.witnessing import media_manager
from server.store.models import AuditEntry, Recording, SessionEvent, Still, WitnessSession
from tests.call_flow import paired
from tests.helpers import decode_all, wait_for
from tests.media_client import Party


async def _recordings(rt: Any, sid: str) -> list[Recording]:
    """The session's recordings, by party and segment."""
    async with rt.db.begin() as s:
        rows = await s.scalars(
            select(Recording)
            .where(Recording.session_id == sid)
            .order_by(Recording.participant, Recording.segment)
        )
        return list(rows.all())


async def _clock_starts(rt: Any, sid: str) -> list[tuple[int, Any]]:
    """The session's media.clock_started events: (offset, wall time)."""
    async with rt.db.begin() as s:
        rows = await s.execute(
            select(SessionEvent.offset_ms, SessionEvent.at).where(
                SessionEvent.session_id == sid, SessionEvent.kind == "media.clock_started"
            )
        )
        return [(offset, at) for offset, at in rows.all()]


async def test_two_parties_see_each_other_and_both_are_recorded(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    joined = await witness.join()
    assert joined["ice_servers"] == []  # never a public default
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 10 and investor.received["video"] >= 10)
    t0 = asyncio.get_running_loop().time()
    await asyncio.sleep(4)

    # A14: the witness takes a frontal photo of the investor from the live stream.
    await witness.ws.send_json({"type": "capture_still"})
    still = await witness.next_still("manual")
    assert still["participant"] == "investor" and still["kind"] == "manual"
    # The investor may not.
    await investor.ws.send_json({"type": "capture_still"})
    assert (await investor.next_of("error"))["error"]["code"] == "witness_only"
    rt.media.sessions[sid].add_cue(1000, 2000, "请确认您是本人自愿开户")
    talk = asyncio.get_running_loop().time() - t0

    # The witness hangs up: both legs close and the recordings are finalized.
    await extra[2].send_json({"type": "end", "session_id": sid})
    await witness.next_of("peer_left")
    await wait_for(lambda: sid not in rt.media.sessions)
    for party in (witness, investor):
        assert party.received["audio"] > 100, party.received
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    sent = {"witness": witness.video.sent, "investor": investor.video.sent}

    root = rt.config.recordings_path
    async with rt.db.begin() as s:
        recs = (await s.scalars(select(Recording).where(Recording.session_id == sid))).all()
        stills = (await s.scalars(select(Still).where(Still.session_id == sid))).all()
        actions = (await s.scalars(select(AuditEntry.action))).all()
        events = (await s.scalars(select(SessionEvent.kind))).all()
    assert sorted(r.participant for r in recs) == ["investor", "witness"]
    for rec in recs:
        path = root / rec.path
        assert rec.status == "complete", rec.status
        assert rec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert rec.bytes == path.stat().st_size and rec.cues == 1
        counts = decode_all(path)
        assert counts["video"] == rec.video_frames
        # ≥ 90% of the frames the party sent while talking (30 fps), audio throughout.
        assert rec.video_frames >= 0.9 * 30 * talk, (rec.participant, rec.video_frames, talk)
        assert rec.duration_ms >= (talk - 0.5) * 1000
        assert counts["audio"] >= 0.9 * rec.duration_ms / 20
        assert rec.video_frames <= sent[rec.participant]  # nothing invented
    # One session clock: both files start within 200 ms of each other.
    assert abs(recs[0].start_ms - recs[1].start_ms) <= 200
    kinds = sorted(s.kind for s in stills)
    assert kinds == ["auto", "manual"]
    for st in stills:
        data = (root / st.path).read_bytes()
        assert data[:2] == b"\xff\xd8" and hashlib.sha256(data).hexdigest() == st.sha256
    assert actions.count("recording.closed") == 2 and actions.count("still.taken") == 2
    for kind in ("media.clock_started", "media.connected", "media.disconnected", "still.taken"):
        assert kind in events
    for ws in extra[1:]:
        await ws.close()


async def test_rejoin_within_grace_continues_in_a_new_segment(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 10)

    await investor.close()  # network gone
    away = await witness.next_of("peer_away")
    assert away["role"] == "investor" and away["grace_seconds"] == 3
    before = witness.received["video"]

    again = Party(mclient, sid, i_token)
    assert (await again.join())["rejoined"] is True
    await witness.next_of("peer_joined")
    await again.start_media()
    await wait_for(
        lambda: witness.received["video"] >= before + 20 and again.received["video"] >= 20
    )
    await asyncio.sleep(2.5)  # past the first grace period: nothing may end the session

    async with rt.db.begin() as s:
        state = (await s.get(WitnessSession, sid)).state  # type: ignore[union-attr]
    assert state == "live"
    await extra[2].send_json({"type": "end", "session_id": sid})
    await wait_for(lambda: sid not in rt.media.sessions)
    recs = await _recordings(rt, sid)
    assert [(r.participant, r.segment, r.status) for r in recs] == [
        ("investor", 0, "complete"),
        ("investor", 1, "complete"),
        ("witness", 0, "complete"),
    ]
    # The second segment continues on the same clock, after the first.
    assert recs[1].start_ms >= recs[0].start_ms + recs[0].duration_ms
    for party in (witness, again):
        await party.close()
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()


async def test_party_gone_past_grace_ends_the_session(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 10)
    await investor.close()
    await witness.next_of("peer_away")
    left = await witness.next_of("peer_left", within=10)
    assert left["reason"] == "investor_left"
    await wait_for(lambda: sid not in rt.media.sessions)
    async with rt.db.begin() as s:
        assert (await s.get(WitnessSession, sid)).state == "aborted"  # type: ignore[union-attr]
        statuses = (
            await s.scalars(select(Recording.status).where(Recording.session_id == sid))
        ).all()
    assert sorted(statuses) == ["complete", "complete"]
    await witness.close()
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()


def _without_opus(sdp: str) -> str:
    """An aiortc offer whose audio offers only G.711: VP8 video passes the first checks,
    the answer is refused after the leg is opened."""
    lines = sdp.split("\r\n")
    opus = next(ln.split()[0].split(":")[1] for ln in lines if ln.endswith("opus/48000/2"))
    out = []
    for ln in lines:
        if ln.startswith("m=audio "):
            head, fmts = ln.split()[:3], ln.split()[3:]
            ln = " ".join(head + [f for f in fmts if f != opus])
        elif ln.startswith((f"a=rtpmap:{opus} ", f"a=fmtp:{opus} ", f"a=rtcp-fb:{opus} ")):
            continue
        out.append(ln)
    return "\r\n".join(out)


async def test_a_refused_offer_keeps_its_segment_and_a_connected_leg_has_its_row_first(
    mclient: Any,
) -> None:
    """A15/A17.5: every segment number has a row, the refused leg's too (empty), so an
    auditor never sees a gap; a negotiated leg's row and media.connected event are in the
    store before its answer leaves (issue 21 wrote them in one transaction)."""
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    probe = RTCPeerConnection()
    probe.addTransceiver("audio", direction="sendrecv")
    probe.addTransceiver("video", direction="sendrecv")
    await probe.setLocalDescription(await probe.createOffer())
    await investor.ws.send_json({"type": "offer", "sdp": _without_opus(probe.localDescription.sdp)})
    refused = (await investor.next_of("error"))["error"]
    assert refused["code"] == "bad_offer" and "Opus" in refused["message_zh"], refused
    await probe.close()
    # The session's clock started with that first offer; the refused leg's write logged it
    # (the first leg write carries it: issue 21), at the clock's own wall time.
    media = rt.media.sessions[sid]
    starts = [(offset, at if at.tzinfo else at.replace(tzinfo=UTC)) for offset, at in
              await _clock_starts(rt, sid)]  # fmt: skip
    assert starts == [(0, media.origin_at)]

    await investor.start_media()  # returns once the answer is in
    rows = await _recordings(rt, sid)
    async with rt.db.begin() as s:
        connected = (
            await s.scalars(
                select(SessionEvent.payload).where(
                    SessionEvent.session_id == sid, SessionEvent.kind == "media.connected"
                )
            )
        ).all()
    assert [(r.participant, r.segment, r.status) for r in rows] == [
        ("investor", 0, "empty"),
        ("investor", 1, "recording"),
    ]
    assert [c["segment"] for c in connected] == [1]
    assert len(await _clock_starts(rt, sid)) == 1  # once, not again by the next leg
    # The node's metric of how long offers take to answer: the answered one (not the
    # refused one).
    answered = rt.metrics.registry.get_sample_value("witness_media_answer_seconds_count")
    assert answered == 1

    await witness.start_media()
    await wait_for(lambda: witness.received["video"] >= 10 and investor.received["video"] >= 10)
    await extra[2].send_json({"type": "end", "session_id": sid})
    await wait_for(lambda: sid not in rt.media.sessions)
    rows = await _recordings(rt, sid)
    async with rt.db.begin() as s:
        gone = (
            await s.scalars(
                select(SessionEvent.payload).where(
                    SessionEvent.session_id == sid,
                    SessionEvent.kind == "media.disconnected",
                    SessionEvent.actor == "investor",
                )
            )
        ).all()
    assert [(r.participant, r.segment, r.status) for r in rows] == [
        ("investor", 0, "empty"),
        ("investor", 1, "complete"),
        ("witness", 0, "complete"),
    ]
    assert sorted((g["segment"], g["reason"]) for g in gone)[0] == (0, "negotiation_failed")
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()


async def test_a_session_being_opened_holds_up_no_other_session(mclient: Any) -> None:
    """Issue 21: one lock for every opening held each party's first offer on the node
    behind every other session's database round trips. Now a session opening waits for
    no other, and both parties of one session get the same media session (opened once;
    its clock's start is logged by the first leg's write)."""
    rt = mclient.app[RUNTIME]
    slow, _w, _i, extra = await paired(mclient)
    gate = asyncio.Event()
    read = media_manager.reading
    readings = 0

    @contextlib.asynccontextmanager
    async def held(db: Any) -> AsyncIterator[Any]:
        nonlocal readings
        readings += 1
        if readings == 1:  # the slow session's one opening
            await gate.wait()
        async with read(db) as tx:
            yield tx

    media_manager.reading = held  # type: ignore[assignment]
    try:
        both = [asyncio.create_task(rt.media.session(slow)) for _ in range(2)]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in both)
        # Another session's opening goes through meanwhile (this one is refused: it
        # does not exist), and the held one still waits.
        with pytest.raises(Conflict):
            await asyncio.wait_for(rt.media.session("0" * 32), 5)
        assert not any(t.done() for t in both)
        gate.set()
        first, second = await asyncio.wait_for(asyncio.gather(*both), 5)
        assert first is second is rt.media.sessions[slow]
    finally:
        media_manager.reading = read  # type: ignore[assignment]
        gate.set()
    assert readings == 2  # one opening for the two parties, one for the refused session
    await rt.media.end(slow, "test")
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()


async def test_a_stale_socket_closing_late_does_not_touch_the_new_one(mclient: Any) -> None:
    """A phone changes network: the page reconnects at once, the server notices the old
    socket's death only later. That late close must not end or drop anything."""
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, old = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await old.join()
    await asyncio.gather(witness.start_media(), old.start_media())
    await wait_for(lambda: witness.received["video"] >= 10)

    new = Party(mclient, sid, i_token)
    await new.join()  # while the old socket is still open
    await new.start_media()
    await wait_for(lambda: new.received["video"] >= 10)
    await old.close()  # the old socket's death, noticed late
    before = witness.received["video"]
    await asyncio.sleep(4.5)  # longer than the grace period (3 s)
    assert witness.received["video"] > before + 20  # the new leg still flows
    assert not any(m["type"] in ("peer_away", "peer_left") for m in witness.messages)
    async with rt.db.begin() as s:
        assert (await s.get(WitnessSession, sid)).state == "live"  # type: ignore[union-attr]

    # One camera and one microphone per party.
    two_videos = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    await new.ws.send_json({"type": "offer", "sdp": two_videos})
    assert (await new.next_of("error"))["error"]["code"] == "bad_offer"
    for party in (witness, new):
        await party.close()
    extra[0].cancel()
    for ws in extra[1:]:
        await ws.close()
