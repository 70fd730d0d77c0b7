"""Issue 21: forwarding RTP packets as they come (server/media/relay.py ``forward_packet``,
server/media/hooks ``RtpOut``): header rewritten onto this leg's stream, payload
untouched, numbering carried across a party's rejoin, NACKs answered from what was sent."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtpPacket

from server.media import hooks
from server.media.codecs import H264
from server.media.hooks import transport
from server.media.relay import ForwardTrack

VP8_KEY_HEAD = bytes([0x10])  # payload descriptor: S bit, partition 0
# A VP8 key frame header (RFC 6386 §9.1): frame tag with bit 0 clear, start code, size.
VP8_KEY_DATA = bytes([0x50, 0x2A, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
VP8_DELTA_DATA = bytes([0x51, 0x2A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])


@dataclass
class FakeOut:
    """Stands in for ``hooks.RtpOut``: what the leg's sender would send."""

    payload_type: int | None = 96
    ssrc: int = 0xABCDEF01
    up: bool = True
    sent: list[RtpPacket] = field(default_factory=list)
    last_seq: int | None = None
    last_ts: int = 0

    def ready(self) -> bool:
        return self.up and self.payload_type is not None

    def send(self, packet: RtpPacket) -> bool:
        if self.up:
            self.sent.append(packet)
            seq = packet.sequence_number
            if self.last_seq is None or (seq - self.last_seq) & 0xFFFF < 0x8000:
                self.last_seq, self.last_ts = seq, packet.timestamp
        return self.up


def _packet(seq: int, ts: int, *, key: bool = False, start: bool = True, marker: int = 1,
            pt: int = 120, payload: bytes | None = None) -> RtpPacket:  # fmt: skip
    data = VP8_KEY_DATA if key else VP8_DELTA_DATA
    head = VP8_KEY_HEAD if start else bytes([0x00])
    body = payload if payload is not None else head + data
    packet = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts,
                       ssrc=0x11111111, payload=body)  # fmt: skip
    packet._data = data if start else b"\x00" * 10  # type: ignore[attr-defined]
    return packet


def _video_track(asked: list[int]) -> tuple[ForwardTrack, FakeOut]:
    track = ForwardTrack("video", need_keyframe=lambda: asked.append(1))
    out = FakeOut()
    track.rtp_out = out  # type: ignore[assignment]
    return track, out


async def test_video_waits_for_a_keyframe_then_forwards_every_packet_rewritten() -> None:
    asked: list[int] = []
    track, out = _video_track(asked)
    source = object()
    track.forward_packet(_packet(100, 9000), source)  # a delta frame: not decodable yet
    assert out.sent == [] and asked == [1]
    key_first = _packet(101, 12000, key=True, marker=0)
    key_rest = _packet(102, 12000, start=False, marker=1)
    delta = _packet(103, 18000)
    for p in (key_first, key_rest, delta):
        track.forward_packet(p, source)
    assert len(out.sent) == 3 and asked == [1]
    first = out.sent[0]
    assert [p.ssrc for p in out.sent] == [out.ssrc] * 3
    assert [p.payload_type for p in out.sent] == [96] * 3  # this leg's payload type
    assert [p.marker for p in out.sent] == [0, 1, 1]
    assert [(p.sequence_number - first.sequence_number) & 0xFFFF for p in out.sent] == [0, 1, 2]
    assert first.sequence_number < 0x8000  # a fresh origin, kept clear of SRTP's rollover
    assert [(p.timestamp - first.timestamp) & 0xFFFFFFFF for p in out.sent] == [0, 0, 6000]
    # The payload goes out as it came, byte for byte (no frame assembled, no re-packetizing).
    assert [p.payload for p in out.sent] == [key_first.payload, key_rest.payload, delta.payload]
    assert track.pushed == 2  # frames: counted at their last packet
    # The received packets are not touched (the jitter buffer still holds them).
    assert key_first.sequence_number == 101 and key_first.ssrc == 0x11111111


async def test_numbering_goes_on_across_a_rejoin_and_late_packets_keep_theirs() -> None:
    asked: list[int] = []
    track, out = _video_track(asked)
    old, new = object(), object()
    track.forward_packet(_packet(5000, 1000, key=True), old)
    track.forward_packet(_packet(5002, 7000), old)
    track.forward_packet(_packet(5001, 4000), old)  # late (a retransmission): behind
    seqs = [p.sequence_number for p in out.sent]
    assert (seqs[2] - seqs[0]) & 0xFFFF == 1 and (seqs[1] - seqs[0]) & 0xFFFF == 2
    last_seq, last_ts = out.sent[1].sequence_number, out.sent[1].timestamp
    # The party rejoins: a new connection, its own random numbering.
    track.forward_packet(_packet(60000, 123456789), new)  # no keyframe yet
    assert len(out.sent) == 3 and asked
    track.forward_packet(_packet(60001, 123459789, key=True), new)
    resumed = out.sent[-1]
    assert resumed.sequence_number == (last_seq + 1) & 0xFFFF
    assert resumed.timestamp == (last_ts + track.step) & 0xFFFFFFFF
    track.forward_packet(_packet(60002, 123465789), new)
    assert out.sent[-1].sequence_number == (last_seq + 2) & 0xFFFF
    assert out.sent[-1].timestamp == (last_ts + track.step + 6000) & 0xFFFFFFFF


async def test_sequence_numbers_wrap() -> None:
    track, out = _video_track([])
    source = object()
    track.forward_packet(_packet(0xFFFE, 0xFFFFFF00, key=True), source)
    for seq in (0xFFFF, 0, 1):
        track.forward_packet(_packet(seq, 0xFFFFFF00), source)
    base = out.sent[0].sequence_number
    assert [(p.sequence_number - base) & 0xFFFF for p in out.sent] == [0, 1, 2, 3]


async def test_padding_and_audio_level_pass_through() -> None:
    track = ForwardTrack("audio", need_keyframe=lambda: None)
    out = FakeOut(payload_type=111)
    track.rtp_out = out  # type: ignore[assignment]
    source = object()
    speech = RtpPacket(payload_type=109, sequence_number=7, timestamp=960, payload=b"\xfc\x01")
    speech.extensions.audio_level = (True, 30)
    padding = RtpPacket(payload_type=109, sequence_number=8, timestamp=960, payload=b"")
    padding.padding_size = 200
    for p in (speech, padding):
        p._data = p.payload  # type: ignore[attr-defined]
        track.forward_packet(p, source)
    assert [p.payload_type for p in out.sent] == [111, 111]
    assert out.sent[0].extensions.audio_level == (True, 30)
    assert out.sent[1].padding_size == 200 and out.sent[1].payload == b""
    assert track.pushed == 1  # padding is no frame


async def test_frames_are_not_forwarded_twice_and_h264_takes_the_frame_path() -> None:
    track, out = _video_track([])
    source = object()
    track.forward_packet(_packet(1, 0, key=True), source)
    track.push(VP8_KEY_DATA, 0, source)  # the same frame, assembled: already sent
    assert track._queue.empty() and len(out.sent) == 1
    h264 = ForwardTrack("video", need_keyframe=lambda: None, codec=H264)
    h264_out = FakeOut()
    h264.rtp_out = h264_out  # type: ignore[assignment]
    h264.forward_packet(_packet(1, 0, key=True), source, H264)
    assert h264_out.sent == []
    idr = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x65" + b"\x88" * 20
    h264.push(idr, 0, source, H264)
    assert not h264._queue.empty()  # frames, packetized by aiortc's sender
    track.stop()
    h264.stop()


async def test_the_newest_keyframe_waits_for_a_leg_still_connecting() -> None:
    asked: list[int] = []
    track, out = _video_track(asked)
    out.up = False  # the far browser's DTLS is not up yet
    source = object()
    track.forward_packet(_packet(10, 0, key=True, marker=0), source)  # an older keyframe
    track.forward_packet(_packet(11, 0, start=False), source)
    track.forward_packet(_packet(12, 3000, key=True, marker=0), source)  # the newest
    track.forward_packet(_packet(13, 3000, start=False), source)
    track.forward_packet(_packet(14, 6000), source)
    assert out.sent == [] and asked == []
    out.up = True
    track.forward_packet(_packet(15, 9000), source)
    # The newest keyframe and what followed it go first, then the packet that came now.
    assert [p.sequence_number - out.sent[0].sequence_number for p in out.sent] == [0, 1, 2, 3]
    assert out.sent[0].timestamp == out.sent[1].timestamp and asked == []


async def test_nothing_is_sent_before_the_sender_starts_or_after_the_track_stops() -> None:
    track, out = _video_track([])
    out.payload_type = None
    track.forward_packet(_packet(1, 0, key=True), object())
    assert out.sent == []
    out.payload_type = 96
    track.stop()
    track.forward_packet(_packet(2, 0, key=True), object())
    assert out.sent == []


class _Srtp:
    def protect(self, data: bytes) -> bytes:
        return b"srtp:" + data


def _fake_dtls(sent: list[bytes]) -> Any:
    udp = SimpleNamespace(sendto=lambda data, addr: sent.append(data))
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=udp), remote_addr=("10.0.0.9", 5))
    ice = SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair}))
    dtls = SimpleNamespace(state="connected", _state=DtlsState.CONNECTED, _tx_srtp=_Srtp(),
                           transport=ice, _register_rtp_sender=lambda *a: None,
                           _unregister_rtp_sender=lambda *a: None)  # fmt: skip

    async def send_rtp(data: bytes) -> None:  # aiortc's own path (retransmissions)
        sent.append(b"srtp:" + data)

    dtls._send_rtp = send_rtp
    return dtls


async def test_rtp_out_sends_on_the_senders_stream_and_answers_its_nacks() -> None:
    sent: list[bytes] = []
    sender = RTCRtpSender("video", _fake_dtls(sent))
    out = hooks.RtpOut(sender)
    packet = RtpPacket(payload_type=0, sequence_number=0, timestamp=0)
    assert out.payload_type is None
    parameters = RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(uri="urn:ietf:params:rtp-hdrext:sdes:mid", id=4),
            RTCRtpHeaderExtensionParameters(
                uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", id=2
            ),
        ],
        muxId="1",
        rtcp=RTCRtcpParameters(cname="c"),
    )
    await sender.send(parameters)  # aiortc starts the sender: the stream's details are known
    try:
        assert (out.payload_type, out.mid, out.ssrc) == (97, "1", sender._ssrc)
        packet = RtpPacket(payload_type=97, marker=1, sequence_number=4242, timestamp=90000,
                           ssrc=out.ssrc, payload=b"\x10payload")  # fmt: skip
        assert out.send(packet)
        assert len(sent) == 1 and sent[0].startswith(b"srtp:")
        wire = RtpPacket.parse(sent[0][5:], out.extensions)
        assert (wire.ssrc, wire.sequence_number, wire.payload_type) == (out.ssrc, 4242, 97)
        assert wire.extensions.mid == "1" and wire.extensions.abs_send_time is not None
        assert wire.payload == b"\x10payload"
        # What the sender's RTCP sender reports are made from.
        assert sender._RTCRtpSender__packet_count == 1
        assert sender._RTCRtpSender__octet_count == len(b"\x10payload")
        assert sender._RTCRtpSender__rtp_timestamp == 90000
        # The browser lost it and asks again: aiortc's sender answers from what we sent.
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=out.ssrc)
        nack.lost = [4242, 4243]  # the second was never sent: no answer for it
        await sender._handle_rtcp_packet(nack)
        assert len(sent) == 2
        again = RtpPacket.parse(sent[1][5:], out.extensions)
        assert again.sequence_number == 4242 and again.payload == b"\x10payload"
    finally:
        await sender.stop()


def _parameters(kind: str) -> RTCRtpSendParameters:
    mime = "video/VP8" if kind == "video" else "audio/opus"
    return RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=97)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(uri="urn:ietf:params:rtp-hdrext:sdes:mid", id=9),
            RTCRtpHeaderExtensionParameters(
                uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", id=3
            ),
            RTCRtpHeaderExtensionParameters(
                uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level", id=1
            ),
        ],
        muxId="audio0",
        rtcp=RTCRtcpParameters(cname="c"),
    )


async def test_the_wire_format_reads_as_aiortcs_own() -> None:
    out = hooks.RtpOut(RTCRtpSender("audio", _fake_dtls([])))
    out.configure(_parameters("audio"))
    cases = []
    plain = RtpPacket(payload_type=97, marker=1, sequence_number=65535, timestamp=2**32 - 1,
                      ssrc=out.ssrc, payload=b"\xfc" * 80)  # fmt: skip
    cases.append(plain)
    loud = RtpPacket(payload_type=97, sequence_number=1, timestamp=960, ssrc=out.ssrc,
                     payload=b"\xfc\x01")  # fmt: skip
    loud.extensions.audio_level = (True, 127)
    cases.append(loud)
    padded = RtpPacket(payload_type=97, sequence_number=2, timestamp=960, ssrc=out.ssrc)
    padded.padding_size = 37
    padded.csrc = [7, 8]
    cases.append(padded)
    for packet in cases:
        wire = out.wire(packet, 0xABCDEF)
        ours = RtpPacket.parse(wire, out.extensions)
        packet.extensions.abs_send_time, packet.extensions.mid = 0xABCDEF, "audio0"
        theirs = RtpPacket.parse(packet.serialize(out.extensions), out.extensions)
        for name in ("version", "marker", "payload_type", "sequence_number", "timestamp",
                     "ssrc", "csrc", "payload", "padding_size"):  # fmt: skip
            assert getattr(ours, name) == getattr(theirs, name), name
        for name in ("abs_send_time", "mid", "audio_level"):
            assert getattr(ours.extensions, name) == getattr(theirs.extensions, name), name
        assert len(wire) % 4 == len(packet.serialize(out.extensions)) % 4


async def test_sender_reports_count_every_packet_forwarded() -> None:
    sender = RTCRtpSender("audio", _fake_dtls([]))
    out = hooks.RtpOut(sender)
    out.configure(_parameters("audio"))
    for seq in range(20):  # Opus: no marker bit
        out.send(RtpPacket(payload_type=97, sequence_number=seq, timestamp=seq * 960,
                           ssrc=out.ssrc, payload=b"\xfc\x00\x00"))  # fmt: skip
    assert sender._RTCRtpSender__packet_count == 16  # handed over every 16 packets
    assert sender._RTCRtpSender__octet_count == 16 * 3
    assert sender._RTCRtpSender__rtp_timestamp == 15 * 960
    out.send(RtpPacket(payload_type=97, marker=1, sequence_number=20, timestamp=20 * 960,
                       ssrc=out.ssrc, payload=b"\xfc"))  # fmt: skip
    assert sender._RTCRtpSender__packet_count == 21  # and at a frame's end
    assert sender._RTCRtpSender__octet_count == 20 * 3 + 1


async def test_audio_keeps_no_retransmission_history() -> None:
    """No NACK is negotiated for Opus (aiortc offers it for video only): an audio
    sender's packets are not kept for a resend nobody will ask for (issue 21: memory)."""
    sender = RTCRtpSender("audio", _fake_dtls([]))
    out = hooks.RtpOut(sender)
    out.configure(_parameters("audio"))
    for seq in range(40):
        assert out.send(RtpPacket(payload_type=97, sequence_number=seq, timestamp=seq * 960,
                                  ssrc=out.ssrc, payload=b"\xfc"))  # fmt: skip
    assert sender._RTCRtpSender__rtp_history == {}


async def test_rtp_out_holds_packets_until_dtls_is_up() -> None:
    sent: list[bytes] = []
    dtls = _fake_dtls(sent)
    dtls._state = DtlsState.CONNECTING
    out = hooks.RtpOut(RTCRtpSender("audio", dtls))
    out.payload_type = 111
    assert not out.send(RtpPacket(payload_type=111, sequence_number=1, ssrc=out.ssrc))
    dtls._state = DtlsState.CONNECTED
    dtls.transport._connection._nominated.clear()  # no ICE pair (yet, or any more)
    assert not out.send(RtpPacket(payload_type=111, sequence_number=1, ssrc=out.ssrc))
    assert sent == []


def test_ntp_clock_matches_aiortcs() -> None:
    from aiortc import clock

    assert abs(hooks.ntp_now() - clock.current_ntp_time()) < (1 << 32) // 100  # 10 ms


async def test_packets_reach_the_sink_before_the_jitter_buffer() -> None:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        seen: list[int] = []
        hooks.tap_receiver_watched(
            receiver, lambda *_: None, on_packet=lambda p: seen.append(p.sequence_number)
        )
        buffer = receiver._RTCRtpReceiver__jitter_buffer
        packet = _packet(77, 0, key=True)
        buffer.add(packet)
        assert seen == [77]
    finally:
        await pc.close()
        await asyncio.sleep(0)


async def test_media_datagrams_skip_the_stun_parse_and_stun_still_gets_it() -> None:
    import aioice.ice
    from aioice import stun

    got: list[tuple[bytes, int]] = []
    requests: list[Any] = []
    receiver = SimpleNamespace(
        data_received=lambda data, component: got.append((data, component)),
        request_received=lambda message, addr, protocol: requests.append(message),
    )
    protocol = aioice.ice.StunProtocol(receiver)
    protocol.local_candidate = SimpleNamespace(component=1)
    hooks.fast_media_datagrams()
    try:
        parsed: list[bytes] = []
        original = stun.parse_message

        def spy(data: bytes) -> Any:
            parsed.append(data)
            return original(data)

        stun.parse_message = spy  # type: ignore[assignment]
        try:
            rtp = RtpPacket(payload_type=96, sequence_number=1).serialize()
            protocol.datagram_received(rtp, ("10.0.0.1", 1))
            assert got == [(rtp, 1)] and parsed == []  # no STUN parse for RTP
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            protocol.datagram_received(bytes(request), ("10.0.0.1", 1))
            assert len(parsed) == 1 and len(requests) == 1  # STUN as before
            dtls = bytes([22, 254, 253]) + b"\x00" * 30
            protocol.datagram_received(dtls, ("10.0.0.1", 1))
            assert got[-1] == (dtls, 1)  # DTLS: parsed as STUN first, then handed on
        finally:
            stun.parse_message = original  # type: ignore[assignment]
    finally:
        hooks.fast_media_datagrams(False)


class _FakeDtls:
    """What ``hooks.transport._handle_srtp`` uses of an RTCDtlsTransport."""

    def __init__(self) -> None:
        self._rx_srtp = SimpleNamespace(
            unprotect=lambda data: b"rtp:" + data, unprotect_rtcp=lambda data: b"rtcp:" + data
        )
        self._RTCDtlsTransport__rx_bytes = 0
        self._RTCDtlsTransport__rx_packets = 0
        self.handled: list[tuple[bytes, int | None]] = []
        self.hold: asyncio.Future[None] | None = None

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        if self.hold is not None:
            await self.hold  # as if sending RTCP had to wait
        self.handled.append((data, arrival_time_ms))

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.handled.append((data, None))


async def test_srtp_is_handled_where_it_arrives_and_in_order_when_it_must_wait() -> None:
    import aioice.ice

    class Connection:  # aioice's, as far as data_received goes
        def __init__(self) -> None:
            self._queue: asyncio.Queue[Any] = asyncio.Queue()

    dtls = _FakeDtls()
    connection = Connection()
    transport._eager[connection] = weakref.ref(dtls)  # type: ignore[index]
    hooks.eager_receive()
    try:
        receive = aioice.ice.Connection.data_received
        rtp = bytes([0x80, 96]) + b"\x00" * 10
        rtcp = bytes([0x80, 200]) + b"\x00" * 6
        receive(connection, rtp, 1)
        assert dtls.handled[0][0] == b"rtp:" + rtp  # at once: no task, nothing queued
        assert abs(dtls.handled[0][1] - hooks.now_ms()) < 1000  # type: ignore[operator]
        receive(connection, rtcp, 1)
        assert dtls.handled[1] == (b"rtcp:" + rtcp, None)
        assert connection._queue.empty()
        assert dtls._RTCDtlsTransport__rx_packets == 2
        # DTLS (first byte 20..63) goes to aiortc's receive task as before.
        receive(connection, bytes([22]) + b"\x00" * 12, 1)
        assert connection._queue.qsize() == 1
        connection._queue.get_nowait()
        # Handling that has to wait is finished in a task; packets meanwhile queue for
        # aiortc's receive task, behind it.
        dtls.hold = asyncio.get_running_loop().create_future()
        receive(connection, rtp, 1)
        assert len(dtls.handled) == 2 and dtls in transport._finishing
        receive(connection, rtp, 1)
        assert connection._queue.qsize() == 1
        dtls.hold.set_result(None)
        dtls.hold = None
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(dtls.handled) == 3 and dtls not in transport._finishing
    finally:
        hooks.eager_receive(False)
        transport._eager.pop(connection, None)  # type: ignore[call-overload]


def test_now_ms_matches_aiortcs_clock() -> None:
    from aiortc import clock

    assert abs(hooks.now_ms() - clock.current_ms()) < 50


def test_the_check_still_passes_once_the_fast_paths_are_in_place() -> None:
    # The server installs them at start-up; a second app in the same process (the tests)
    # checks again with them installed.
    hooks.fast_media_datagrams()
    hooks.eager_receive()
    try:
        hooks.check_internals()
    finally:
        hooks.eager_receive(False)
        hooks.fast_media_datagrams(False)


async def test_frames_and_forwarded_packets_share_one_numbering() -> None:
    """A party rejoins with another codec: this leg goes from forwarding packets to
    sending frames (transcoded), and back. SRTP refuses a sequence number far behind the
    last one sent, so the frame path must go on from the forwarded packets, not start a
    numbering of its own as aiortc's sender loop would."""
    sent: list[bytes] = []
    sender = RTCRtpSender("video", _fake_dtls(sent))
    out = hooks.RtpOut(sender)
    track = ForwardTrack("video", need_keyframe=lambda: None)
    track.rtp_out = out
    sender.replaceTrack(track)
    await sender.send(_parameters("video"))  # starts our loop in place of aiortc's
    try:
        source = object()
        track.forward_packet(_packet(100, 1000, key=True, marker=0), source)
        track.forward_packet(_packet(101, 1000, start=False), source)
        assert out.last_seq is not None
        last_seq, last_ts = out.last_seq, out.last_ts
        # Frames from the track (what the frame path queues), packed by the sender.
        out.send_frame([b"\x10a", b"\x00b"], 0, None)
        wire = [RtpPacket.parse(data[5:], out.extensions) for data in sent[2:]]
        assert [p.sequence_number for p in wire] == [
            (last_seq + 1) & 0xFFFF,
            (last_seq + 2) & 0xFFFF,
        ]
        assert wire[0].timestamp == (last_ts + 3000) & 0xFFFFFFFF and wire[1].marker == 1
        out.send_frame([b"\x10c"], 6000, None)  # the next frame, 6000 ticks on
        assert (
            RtpPacket.parse(sent[-1][5:], out.extensions).timestamp == (last_ts + 9000) & 0xFFFFFFFF
        )
        # Back to forwarding (the party rejoined with VP8): numbering goes on again.
        again = object()
        track.forward_packet(_packet(5, 777, key=True), again)
        back = RtpPacket.parse(sent[-1][5:], out.extensions)
        assert back.sequence_number == (last_seq + 4) & 0xFFFF
        # Frames queued on the track reach the wire through our loop, numbered on.
        track._transcoder = None
        track.rtp_out = None  # the frame path for this source
        track.push(VP8_KEY_DATA, 0, object())
        for _ in range(20):
            await asyncio.sleep(0.01)
            if len(sent) > 6:
                break
        assert (
            RtpPacket.parse(sent[-1][5:], out.extensions).sequence_number == (last_seq + 5) & 0xFFFF
        )
    finally:
        track.stop()
        await sender.stop()
