"""The aiortc internals the recorder and relay depend on: if an upgrade moves them,
these fail loudly (server/media/hooks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import queue

import aioice.ice
import aiortc
import aiortc.rate
import pytest
from aiortc import RTCPeerConnection
from hypothesis import given, settings
from hypothesis import strategies as st

from server.config import MediaConfig
from server.media import hooks
from server.media.relay import AUDIO_QUEUE, VIDEO_QUEUE, ForwardTrack
from server.services.witnessing.turn import ice_servers_for, turn_credentials
from tests.media_samples import vp8_frames


def test_pinned_aiortc_internals_are_present() -> None:
    hooks.check_internals()


def test_another_aiortc_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "9.9.9")
    with pytest.raises(hooks.InternalsChanged, match=r"written for aiortc 1\.16\.0"):
        hooks.check_internals()


class _Codec:
    name = "VP8"


class _Frame:
    def __init__(self, data: bytes, timestamp: int) -> None:
        self.data, self.timestamp = data, timestamp


async def test_tap_takes_encoded_frames_before_the_decoder() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        receiver = transceiver.receiver
        got: list[tuple[str, bytes, int]] = []
        hooks.tap_receiver(receiver, lambda c, d, t: got.append((c, d, t)))
        tap = receiver._RTCRtpReceiver__decoder_queue
        # What RTCRtpReceiver._handle_rtp_packet does with a complete frame:
        tap.put((_Codec(), _Frame(b"\x10abc", 3000)))
        assert got == [("VP8", b"\x10abc", 3000)]
        assert tap.qsize() == 0  # nothing queued for decoding
        tap.put(None)  # the stop marker still reaches the decoder thread
        assert tap.get_nowait() is None
    finally:
        await pc.close()


async def test_tap_refuses_a_started_receiver() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        receiver._RTCRtpReceiver__decoder_thread = object()
        with pytest.raises(hooks.InternalsChanged):
            hooks.tap_receiver(receiver, lambda *_: None)
        receiver._RTCRtpReceiver__decoder_thread = None
        receiver._RTCRtpReceiver__decoder_queue = None
        with pytest.raises(hooks.InternalsChanged):
            hooks.tap_receiver(receiver, lambda *_: None)
        receiver._RTCRtpReceiver__decoder_queue = queue.Queue()
    finally:
        await pc.close()


async def test_keyframe_requests_from_the_far_end_are_seen() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        calls: list[int] = []
        hooks.on_keyframe_request(sender, lambda: calls.append(1))
        sender._send_keyframe()  # what a PLI or FIR from the browser triggers
        assert calls == [1]
        assert await hooks.request_keyframe(pc.getTransceivers()[0].receiver) is False
    finally:
        await pc.close()


async def test_a_transcoding_sender_can_be_made_to_encode_a_keyframe() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        calls: list[int] = []
        hooks.on_keyframe_request(sender, lambda: calls.append(1))
        assert sender._RTCRtpSender__force_keyframe is False
        hooks.force_keyframe(sender)
        # The flag aiortc's sender reads before its next encode; the session's callback
        # hears of it like of a browser's request (and ignores it on a transcoded leg).
        assert sender._RTCRtpSender__force_keyframe is True and calls == [1]
    finally:
        await pc.close()


def test_host_addresses_can_be_pinned() -> None:
    try:
        hooks.restrict_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    finally:
        hooks.restrict_host_addresses([])
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    user, password = turn_credentials("s3cret", "investor:app1", ttl=600, now=1_000_000.5)
    assert user == "1000600:investor:app1"
    expected = hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected
    cfg = MediaConfig(
        ice_servers=("stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp"),
        turn_secret="s3cret",
    )
    servers = ice_servers_for(cfg, "witness:7", now=0)
    assert servers[0] == {"urls": "stun:stun.example.com:3478"}
    assert servers[1]["username"].endswith(":witness:7") and servers[1]["credential"]


# ── the forwarding track ────────────────────────────────────────────────────────────
def _key_and_delta() -> tuple[bytes, bytes]:
    return vp8_frames()[0][0], vp8_frames()[1][0]


async def test_forward_track_starts_on_a_keyframe_and_asks_for_one() -> None:
    asked: list[int] = []
    track = ForwardTrack("video", need_keyframe=lambda: asked.append(1))
    key, delta = _key_and_delta()
    source = object()
    track.push(delta, 0, source)
    assert asked and track.pushed == 0
    track.push(key, 6000, source)
    track.push(delta, 12000, source)
    first = await track.recv()
    assert bytes(first) == key and first.pts == 6000
    track.stop()


async def test_forward_track_is_bounded_and_recovers_with_a_keyframe() -> None:
    asked: list[int] = []
    track = ForwardTrack("video", need_keyframe=lambda: asked.append(1))
    key, delta = _key_and_delta()
    source = object()
    track.push(key, 0, source)
    for i in range(1, VIDEO_QUEUE + 5):
        track.push(delta, i * 6000, source)
    assert track.dropped == 1 and asked  # overflowed: dropped, asked for a keyframe
    assert track._queue.qsize() <= VIDEO_QUEUE
    track.push(key, 999_000, source)
    packet = await track.recv()
    assert bytes(packet) == key
    track.stop()


async def test_forward_track_keeps_time_moving_across_a_rejoin() -> None:
    track = ForwardTrack("audio", need_keyframe=lambda: None)
    first, second = object(), object()
    for i in range(3):
        track.push(b"\x01", i * 960, first)
    track.push(b"\x02", 0, second)  # the sender reconnected: its clock restarts at 0
    stamps = [(await track.recv()).pts for _ in range(4)]
    assert stamps == [0, 960, 1920, 2880]
    for i in range(AUDIO_QUEUE + 3):
        track.push(b"\x03", 3000 + i * 960, second)
    assert track._queue.qsize() <= AUDIO_QUEUE
    track.stop()
    with pytest.raises(aiortc.mediastreams.MediaStreamError):
        await asyncio.wait_for(track.recv(), 1)


def test_remb_clamped_only_when_above_the_limit() -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(900_000, [7, 8])
    )
    assert hooks.remb_bitrate(remb) == (pytest.approx(900_000, rel=0.01), [7, 8])
    lowered = hooks.clamp_remb(remb, 300_000)
    assert hooks.remb_bitrate(lowered) == (pytest.approx(300_000, rel=0.01), [7, 8])
    assert lowered.ssrc == 1 and hooks.remb_bitrate(remb)[0] > 800_000  # original intact
    assert hooks.clamp_remb(remb, 2_000_000) is remb
    assert hooks.clamp_remb(remb, None) is remb
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=7)
    assert hooks.remb_bitrate(pli) is None and hooks.clamp_remb(pli, 1) is pli
    not_remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"XXXX0000")
    assert hooks.remb_bitrate(not_remb) is None


# What a REMB estimator's counter sees: packets at non-decreasing milliseconds (gaps of
# 0 up to past the 1 s window), rates read between them, and a reset now and then, as the
# estimator does when the stream has paused. Each step: (gap ms, bytes, what happens).
_COUNTER_STEPS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 5), st.integers(6, 120), st.integers(900, 2500)),
        st.integers(1, 1500),
        st.sampled_from(["add"] * 8 + ["read", "reset"]),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(_COUNTER_STEPS)
def test_lean_rate_counter_gives_aiortcs_rates(steps: list[tuple[int, int, str]]) -> None:
    theirs, ours = aiortc.rate.RateCounter(1000, 8000), hooks.LeanRateCounter(1000, 8000)
    now = 10_000
    assert ours.rate(now) is theirs.rate(now) is None  # nothing counted yet
    for gap, size, action in steps:
        now += gap
        if action == "reset":
            theirs.reset()
            ours.reset()
        elif action == "add":
            theirs.add(size, now)
            ours.add(size, now)
        assert ours.rate(now) == theirs.rate(now)


def test_remb_estimates_are_the_same_with_the_lean_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole estimator, fed a 15 fps stream of five-packet frames with a pause: the
    same REMB values at the same packets, with aiortc's counter and with ours."""

    def estimates() -> list[tuple[int, list[int]] | None]:
        estimator = aiortc.rate.RemoteBitrateEstimator()
        out = []
        for frame in range(600):
            sent = frame * 66 + (3000 if frame > 300 else 0)  # a 3 s pause mid-way
            for n in range(5):
                arrival = 1_000 + sent + n + (frame % 4)  # some jitter
                abs_send_time = ((sent + n) * 262) & 0xFFFFFF  # 6.18 fixed point
                out.append(estimator.add(arrival, abs_send_time, 1100, 0x1234))
        return out

    # Restored afterwards to whatever the process had (a server started in it installs ours).
    monkeypatch.setattr(aiortc.rate, "RateCounter", aiortc.rate.RateCounter)
    hooks.lean_rate_counter(False)
    expected = estimates()
    hooks.lean_rate_counter(True)
    estimator = aiortc.rate.RemoteBitrateEstimator()
    assert isinstance(estimator.incoming_bitrate, hooks.LeanRateCounter)
    got = estimates()
    assert sum(e is not None for e in expected) > 10
    assert got == expected


def test_the_rate_counter_check_notices_a_changed_estimator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Estimator:
        def __init__(self) -> None:
            self.incoming_bitrate = aiortc.rate.RateCounter(1000, 8000)

        def add(self) -> None:
            self.incoming_bitrate.window()  # type: ignore[attr-defined]

    monkeypatch.setattr(aiortc.rate, "RemoteBitrateEstimator", Estimator)
    with pytest.raises(hooks.InternalsChanged, match="RateCounter"):
        hooks.check_internals()
