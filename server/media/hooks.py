"""The only place that reaches into aiortc's and aioice's internals.

aiortc exposes a receiver's media only as *decoded* frames, and its sender only tells
its own encoder about keyframe requests. Relaying and recording without re-encoding
(DESIGN: Media; A15: the recording is what each party sent) needs three things it does
not offer publicly:

1. the depacketized encoded frames, taken where the receiver hands them to its decoder
   thread (``RTCRtpReceiver.__decoder_queue``). We swap that queue for one that gives
   each frame to us instead, so nothing is decoded and no decoded frame queues up;
2. a way to send a picture-loss indication (PLI) upstream (``_send_rtcp_pli``);
3. a way to learn that a downstream browser asked our sender for a keyframe
   (``RTCRtpSender._send_keyframe``), to pass the request on to the sending party, and
   to make our sender's own encoder produce one when it transcodes;
4. the bitrate the downstream browser can take (REMB it sends our sender), and a way to
   hold the REMB our receiver sends the sending party to it (``_handle_rtcp_packet``,
   ``_send_rtcp``): a forwarded stream cannot be re-encoded to fit, so the sender must fit;
5. sending RTP packets we build on a sender's stream (issue 21: an SFU forwards packets,
   it does not re-assemble frames and packetize them again). ``RtpOut`` learns the
   sender's SSRC, payload type, MID and header extension ids when aiortc starts it,
   encrypts with the DTLS transport's SRTP session and sends on the nominated ICE pair
   synchronously (no task or coroutine per packet), keeps each packet in the sender's
   own history so aiortc answers the browser's NACKs from it (with RTX where
   negotiated), and keeps the counters its sender reports go from (RTCP SR);
6. a shorter way in for media datagrams: aioice tries to parse every datagram as STUN
   and hands it on only when that fails (an exception per RTP packet). RFC 7983 tells
   them apart by the first byte (128–191 is RTP or RTCP, STUN is 0–3), so
   ``fast_media_datagrams`` hands those on at once;
7. media handled where the datagram arrives (``receive_eagerly``): aioice queues every
   datagram for the DTLS transport's receive task, which wakes, decrypts and passes it
   on, one task wake-up per packet. For a connection registered here, an SRTP/SRTCP
   datagram that arrives while nothing is queued is decrypted and handled at once, as
   that task would have (``_recv_next``), in the datagram callback; if the handling
   has to wait (it sends RTCP, which never waits in practice), it is finished in a task;
8. the receiver's packets as they arrive, after SRTP, RTX unwrapping and depayloading
   (``on_packet``, called where they enter the jitter buffer);
9. what was lost on the way (issue 16): aiortc's ``JitterBuffer`` hands on only frames
   whose packets are all there, but when a lost packet is not retransmitted in time it
   *discards* the frame (``smart_remove``) and carries on with the next one, saying
   nothing to the receiver. We swap the receiver's jitter buffer for a subclass that
   notes the RTP sequence numbers each frame spans, so every frame handed on says how
   many packets went missing before it, and whether it starts mid-frame. For audio the
   subclass replaces aiortc's buffering too: aiortc's audio buffer discards the good
   packets queued before a gap (about 100 ms per lost Opus packet); here a lost packet
   costs only its own frame.

Written for aiortc 1.16.0 / aioice 0.10. ``check_internals`` verifies every name used
here and runs at start-up and in the test suite, so an upgrade that moves them fails
loudly instead of silently recording nothing.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTP_HISTORY_SIZE,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
)

AIORTC_VERSION = "1.16.0"

log = logging.getLogger(__name__)

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_ACTIVE_SSRC = "_RTCRtpReceiver__active_ssrc"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_CODECS = "_RTCRtpReceiver__codecs"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_FIR_SEQ = "_witness_fir_seq"  # ours, on the receiver: the last FIR sequence number
_DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_UNIX = 2208988800


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the receiver knows about how a frame arrived."""

    # RTP packets between the previous frame handed on and this one that never reached
    # the decoder queue: lost and not retransmitted in time, or discarded with the
    # incomplete frame they belonged to by aiortc's jitter buffer.
    packets_missing: int = 0
    # The frame's first packet is not the start of a frame (its head was discarded).
    incomplete: bool = False


INTACT = Arrival()

# How long a video gap may wait for its retransmission (aiortc NACKs it as soon as a later
# packet shows the gap, so one round trip, or two if the first retransmission is lost)
# before the frames after it go on without it. Longer stalls the picture (the relay and
# the recording both wait); shorter gives up on packets that would still come.
LOSS_WAIT_SECONDS = 0.4

# How long an audio gap waits for a late or reordered packet: until this many packets
# queue behind it, or this long since it showed (whichever comes first; the time matters
# when packets come slowly, e.g. Opus DTX in silence). aiortc sends no NACK for audio, so
# nothing else will fill it: then the missing sequence numbers, and only they, are skipped.
# At 20 ms a packet both mean the missing one is ~60 ms late.
AUDIO_LOSS_WAIT_PACKETS = 3
AUDIO_LOSS_WAIT_SECONDS = 0.06

# (codec name, e.g. "VP8" / "opus", frame payload, RTP timestamp rebased to 0)
FrameSink = Callable[[str, bytes, int], None]
# An RTP packet as the receiver got it (decrypted, RTX unwrapped, payload depayloaded
# into ``packet_data``); it must not be changed (the jitter buffer keeps it).
PacketSink = Callable[[RtpPacket], None]
# The same, with how the frame arrived.
WatchedSink = Callable[[str, bytes, int, Arrival], None]


def _half_range(n: int) -> int:
    """A 16-bit sequence-number distance, or 0 if it points backwards (a reset)."""
    n &= 0xFFFF
    return n if n < 0x8000 else 0


class _WatchedJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer that marks every frame it hands on with the sequence numbers
    it spans (``_remove_frame`` only ever returns the frame starting at ``_origin``, and
    moves ``_origin`` past it), and, for video, gives up on a lost packet in time.

    aiortc's own buffer waits for a missing video packet until 512 later ones have come
    (seconds at a browser's rate; measured: a whole 8 s call frozen after the first packet
    lost without retransmission), so a keyframe asked for on loss would queue behind the
    gap. Here a gap older than ``LOSS_WAIT_SECONDS`` is skipped up to the next frame start.

    aiortc's receiver takes at most one frame per packet from the buffer: frames queued
    behind a gap (waiting, or until a retransmission) would then leave one per packet,
    and with one-packet frames never catch up (measured: the delay grew by the wait at
    every loss). Every complete frame is handed on at once here, through ``deliver``.

    Audio does not go through aiortc's buffering at all. aiortc's audio buffer (16 slots,
    prefetch 4) waits on a gap until the newest packet is 16 ahead, then frees room by
    *discarding* the oldest queued packets, good ones included: every lost Opus packet
    cost about five frames (measured: 14 lost, 72 missing). Here one packet is one frame
    (Opus frames are independent): frames leave in order keeping aiortc's prefetch (the
    same delay, and reordering within it costs nothing); a gap waits
    ``AUDIO_LOSS_WAIT_PACKETS`` / ``AUDIO_LOSS_WAIT_SECONDS`` for the packet, then the
    frames before it leave, exactly the missing sequence numbers are skipped, and the
    next frame says how many (``packets_missing``). No good packet is ever dropped: when a
    packet lands too far ahead (a jump, a restart), the queue is handed on first.
    """

    def __init__(
        self,
        original: JitterBuffer,
        starts: Callable[[RtpPacket], bool],
        deliver: Callable[[JitterFrame], None],
    ) -> None:
        super().__init__(
            capacity=original._capacity,
            prefetch=original._prefetch,
            is_video=original._is_video,
        )
        self._starts = starts
        self._deliver = deliver
        self._expected: int | None = None  # first sequence number of the next frame
        self._gap_since: float | None = None  # when the oldest waiting gap was first seen
        # Told of every packet before it is buffered (issue 21: forwarded as it came).
        self.on_packet: PacketSink | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self.on_packet is not None:
            self.on_packet(packet)
        if not self._is_video:
            return False, self._hand_on(self._add_audio(packet))
        pli_flag, frame = super().add(packet)
        if self._origin is None:
            return pli_flag, frame
        ready: list[JitterFrame] = []
        if frame is None and self._waits_on_gap(packet.sequence_number):
            now = time.monotonic()
            if self._gap_since is None:
                self._gap_since = now
            elif now - self._gap_since >= LOSS_WAIT_SECONDS:
                self._gap_since = None
                ready += self._skip_gap(packet.sequence_number)
        else:
            self._gap_since = None
            if frame is not None:
                ready.append(frame)
        while (more := self._remove_frame(packet.sequence_number)) is not None:
            ready.append(more)
        return pli_flag, self._hand_on(ready)

    def _hand_on(self, ready: list[JitterFrame]) -> JitterFrame | None:
        """One frame goes back to the receiver (the usual case: it hands it on); several
        go through ``deliver``, in order, and the receiver gets none."""
        if len(ready) == 1:
            return ready[0]
        for each in ready:
            self._deliver(each)
        return None

    # ── audio: one packet, one frame ────────────────────────────────────────────────
    def _add_audio(self, packet: RtpPacket) -> list[JitterFrame]:
        seq = packet.sequence_number
        if self._origin is None:
            self._origin = seq
        ready: list[JitterFrame] = []
        ahead = (seq - self._origin) & 0xFFFF
        behind = (self._origin - seq) & 0xFFFF
        if behind < ahead:  # before the next frame due
            if behind < MAX_MISORDER:
                # Too late (its slot was skipped and counted missing), or a duplicate.
                return ready
            ahead = self._capacity  # the sender started again: queued frames leave first
        if ahead >= self._capacity:
            # No room (a jump beyond the queue): hand on every queued frame, in order;
            # the next frame counts the sequence numbers jumped over.
            ready += self._take_audio(self._capacity)
            self._origin = seq
            self._gap_since = None
        self._packets[seq % self._capacity] = packet
        now = time.monotonic()
        while True:
            run, gap, waiting = self._audio_queue()
            # Frames in order, keeping aiortc's prefetch (its delay) behind them.
            ready += self._take_audio(max(0, run - self._prefetch))
            if not waiting:
                self._gap_since = None
                return ready
            if self._gap_since is None:
                self._gap_since = now
            if (
                waiting < AUDIO_LOSS_WAIT_PACKETS
                and now - self._gap_since < AUDIO_LOSS_WAIT_SECONDS
            ):
                return ready  # a late or reordered packet may still fill it
            # Given up: the frames before the gap leave, its sequence numbers are skipped.
            ready += self._take_audio(min(run, self._prefetch) + gap)
            self._gap_since = None  # a gap further on waits from now

    def _audio_queue(self) -> tuple[int, int, int]:
        """(packets queued in sequence from the origin, empty slots after them up to the
        next packet, packets queued after that)."""
        assert self._origin is not None
        run = gap = waiting = 0
        for count in range(self._capacity):
            present = self._packets[(self._origin + count) % self._capacity] is not None
            if present and not gap:
                run += 1
            elif present:
                waiting += 1
            elif not waiting:
                gap += 1
        return run, (gap if waiting else 0), waiting

    def _take_audio(self, count: int) -> list[JitterFrame]:
        """The frames in the next ``count`` slots, in order; empty slots are passed over."""
        assert self._origin is not None
        frames: list[JitterFrame] = []
        for _ in range(count):
            packet = self._packets[self._origin % self._capacity]
            if packet is not None:
                frame = JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
                self._mark(frame, packet, (packet.sequence_number + 1) & 0xFFFF)
                frames.append(frame)
            self.remove(1)
        return frames

    def _waits_on_gap(self, newest: int) -> bool:
        """A slot between the origin and the newest packet is empty."""
        assert self._origin is not None
        for count in range(_half_range(newest - self._origin)):
            if self._packets[(self._origin + count) % self._capacity] is None:
                return True
        return False

    def _skip_gap(self, newest: int) -> list[JitterFrame]:
        """Drop everything up to the first present packet after the (first) gap that starts
        a frame; the frame torn by the gap goes too (counted as missing when the next frame
        leaves). A frame just before the gap whose last packet carries the marker bit is
        whole (only the next frame's first packet, which would have shown it, is lost):
        it is returned, not dropped."""
        assert self._origin is not None
        run: list[RtpPacket] = []  # the packets before the gap (one frame at most)
        whole: list[JitterFrame] = []
        seen_gap = False
        while self._origin != newest:
            packet = self._packets[self._origin % self._capacity]
            if packet is None and not seen_gap:
                seen_gap = True
                if run and run[-1].marker and self._starts(run[0]):
                    frame = JitterFrame(
                        data=b"".join(p._data for p in run),  # type: ignore[attr-defined]
                        timestamp=run[0].timestamp,
                    )
                    self._mark(frame, run[0], self._origin)
                    whole.append(frame)
            elif packet is not None and seen_gap and self._starts(packet):
                break
            elif packet is not None and not seen_gap:
                run.append(packet)
            self.remove(1)
        return whole

    def _mark(self, frame: JitterFrame, first: RtpPacket | None, after: int) -> None:
        """Note on ``frame`` the packets missing before it (``first`` is its first packet,
        ``after`` the sequence number following its last)."""
        start = first.sequence_number if first is not None else after
        missing = 0 if self._expected is None else _half_range(start - self._expected)
        self._expected = after
        frame.packets_missing = missing  # type: ignore[attr-defined]
        frame.head = first.payload[:2] if first is not None else b""  # type: ignore[attr-defined]
        frame.payload_type = first.payload_type if first is not None else -1  # type: ignore[attr-defined]

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        origin = self._origin
        first = self._packets[origin % self._capacity] if origin is not None else None
        frame = super()._remove_frame(sequence_number)
        if frame is None or origin is None or self._origin is None:
            return frame
        self._mark(frame, first, self._origin)
        return frame


def starts_frame(codec: str, head: bytes) -> bool:
    """Whether an RTP payload beginning ``head`` is the first packet of a frame."""
    if not head:
        return False
    name = codec.lower()
    if name == "vp8":
        # RFC 7741 payload descriptor: S bit set and partition index 0.
        return bool(head[0] & 0x10) and head[0] & 0x07 == 0
    if name == "h264":
        # RFC 6184: a fragmentation unit (FU-A, type 28) starts a NAL unit only with
        # its S bit; single NAL units and aggregation packets always start one.
        if head[0] & 0x1F == 28:
            return len(head) > 1 and bool(head[1] & 0x80)
        return True
    return True  # audio: one packet is one frame


class InternalsChanged(RuntimeError):
    """aiortc no longer looks like the version this module was written for."""


class _TapQueue(queue.Queue[Any]):
    """Stands in for the receiver's decoder queue: encoded frames go to the sink, only
    the end-of-stream marker reaches the decoder thread (so it exits as before)."""

    def __init__(self, sink: WatchedSink) -> None:
        super().__init__()
        self.sink = sink

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, frame = item
        missing = getattr(frame, "packets_missing", 0)
        head = getattr(frame, "head", None)
        incomplete = head is not None and not starts_frame(codec.name, head)
        arrival = Arrival(missing, incomplete) if missing or incomplete else INTACT
        # Called on the event loop thread, from RTCRtpReceiver._handle_rtp_packet.
        self.sink(codec.name, frame.data, frame.timestamp, arrival)


def check_internals() -> None:
    if aiortc.__version__ != AIORTC_VERSION:
        raise InternalsChanged(
            f"server/media/hooks.py was written for aiortc {AIORTC_VERSION}, "
            f"found {aiortc.__version__}: re-check the receiver tap before upgrading"
        )
    import inspect

    src = inspect.getsource(RTCRtpReceiver)
    for needle in (
        "self.__decoder_queue.put((codec, encoded_frame))",
        "self.__decoder_queue",
        # _WatchedJitterBuffer stands in for the buffer and hands frames on as the receiver
        # would, mapping timestamps with its mapper.
        "self.__jitter_buffer.add(packet)",
        "self.__timestamp_mapper.map(",
        # Audio frames are made here from the packets' depayloaded data.
        "packet._data = depayload(",
    ):
        if needle not in src:
            raise InternalsChanged(f"RTCRtpReceiver no longer contains {needle!r}")
    for name in ("_capacity", "_prefetch", "_is_video", "_origin", "_packets", "remove"):
        if not hasattr(JitterBuffer(capacity=16), name):
            raise InternalsChanged(f"JitterBuffer.{name} is gone")
    frame = JitterFrame(data=b"", timestamp=0)
    if frame.data != b"" or frame.timestamp != 0:
        raise InternalsChanged("JitterFrame no longer holds data and timestamp")
    if "self._remove_frame(packet.sequence_number)" not in inspect.getsource(JitterBuffer):
        raise InternalsChanged("JitterBuffer no longer hands frames on via _remove_frame")
    if "self.__rtcp_ssrc = ssrc" not in src:
        raise InternalsChanged("RTCRtpReceiver no longer keeps its RTCP SSRC (FIR needs it)")
    for cls, name in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_handle_rtcp_packet"),
    ):
        if not callable(getattr(cls, name, None)):
            raise InternalsChanged(f"{cls.__name__}.{name} is gone")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise InternalsChanged("aioice.ice.get_host_addresses is gone")
    _check_send_path(src)
    _check_receive_path()
    dgram = inspect.getsource(_original_datagram_received)
    for needle in (
        "message = stun.parse_message(data)",
        "self.receiver.data_received(data, self.local_candidate.component)",
    ):
        if needle not in dgram:
            raise InternalsChanged(f"StunProtocol.datagram_received lost {needle!r}")


def _check_receive_path() -> None:
    """What ``receive_eagerly`` does in place of the DTLS transport's receive task."""
    import inspect

    for owner, needles in (
        (aioice.ice.Connection.data_received, ("self._queue.put_nowait((data, component))",)),
        (
            RTCDtlsTransport._recv_next,
            (
                "self.__rx_bytes += len(data)",
                "self.__rx_packets += 1",
                "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:",
                "arrival_time_ms = clock.current_ms()",
                "if is_rtcp(data):",
                "data = self._rx_srtp.unprotect_rtcp(data)",
                "await self._handle_rtcp_data(data)",
                "data = self._rx_srtp.unprotect(data)",
                "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
                "except pylibsrtp.Error as exc:",
            ),
        ),
    ):
        source = inspect.getsource(owner)
        for needle in needles:
            if needle not in source:
                raise InternalsChanged(f"{owner.__qualname__} no longer contains {needle!r}")


def _check_send_path(receiver_src: str) -> None:
    """What ``RtpOut`` and ``on_packet`` rely on: the path aiortc's own sender takes,
    step by step, and where the sender keeps what its NACK answers and reports use."""
    import inspect

    if "packet._data = depayload(" not in receiver_src:
        raise InternalsChanged("RTCRtpReceiver no longer depayloads into packet._data")
    expected: list[tuple[Any, tuple[str, ...]]] = [
        (
            RTCRtpSender,
            (
                "self.__rtp_history[packet.sequence_number % RTP_HISTORY_SIZE]",
                "packet = self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)",
                "self.__ntp_timestamp = clock.current_ntp_time()",
                "self.__rtp_timestamp = packet.timestamp",
                "self.__octet_count += len(payload)",
                "self.__packet_count += 1",
                "self.__rtp_header_extensions_map.configure(parameters)",
                "self._run_rtp(parameters.codecs[0])",
                "self.__mid = parameters.muxId",
            ),
        ),
        (
            RTCDtlsTransport._send_rtp,
            ("data = self._tx_srtp.protect(data)", "await self.transport._send(data)"),
        ),
        (RTCIceTransport, ("self._send = self._connection.send",)),
        (aioice.ice.Connection.send, ("await self.sendto(data, 1)",)),
        (
            aioice.ice.Connection.sendto,
            (
                "active_pair = self._nominated.get(component)",
                "await active_pair.protocol.send_data(data, active_pair.remote_addr)",
            ),
        ),
        (aioice.ice.StunProtocol.send_data, ("self.transport.sendto(data, addr)",)),
    ]
    for owner, needles in expected:
        source = inspect.getsource(owner)
        for needle in needles:
            if needle not in source:
                raise InternalsChanged(f"{owner.__qualname__} no longer contains {needle!r}")


def tap_receiver(receiver: RTCRtpReceiver, sink: FrameSink) -> None:
    """Route the receiver's encoded frames to ``sink``. Call before the receiver starts
    (in the ``track`` event, which aiortc fires before ``receive()``)."""
    tap_receiver_watched(receiver, lambda codec, data, ts, _arrival: sink(codec, data, ts))


def tap_receiver_watched(
    receiver: RTCRtpReceiver, sink: WatchedSink, on_packet: PacketSink | None = None
) -> None:
    """``tap_receiver``, telling ``sink`` also how each frame arrived (``Arrival``), and
    ``on_packet`` every RTP packet as it arrives (before the frame it belongs to)."""
    if getattr(receiver, _DECODER_THREAD, "missing") is not None:
        raise InternalsChanged("receiver already started, or its decoder thread moved")
    if not isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue):
        raise InternalsChanged("RTCRtpReceiver has no decoder queue to tap")
    jitter = getattr(receiver, _JITTER_BUFFER, None)
    codecs = getattr(receiver, _CODECS, None)
    mapper = getattr(receiver, _TIMESTAMP_MAPPER, None)
    if (
        not isinstance(jitter, JitterBuffer)
        or not isinstance(codecs, dict)
        or not callable(getattr(mapper, "map", None))
    ):
        raise InternalsChanged("RTCRtpReceiver has no jitter buffer, codecs or clock to watch")
    tap = _TapQueue(sink)

    def deliver(frame: JitterFrame) -> None:
        # What the receiver does with the frame ``add`` returns (rtcrtpreceiver.py).
        codec = codecs.get(getattr(frame, "payload_type", -1))
        if codec is not None:
            frame.timestamp = mapper.map(frame.timestamp)  # type: ignore[union-attr]
            tap.put((codec, frame))

    def starts(packet: RtpPacket) -> bool:
        # The receiver fills its codecs dict when it starts; this reads it then.
        codec = codecs.get(packet.payload_type)
        return codec is None or starts_frame(codec.name, packet.payload[:2])

    watched = _WatchedJitterBuffer(jitter, starts, deliver)
    watched.on_packet = on_packet
    setattr(receiver, _JITTER_BUFFER, watched)
    setattr(receiver, _DECODER_QUEUE, tap)


def packet_data(packet: RtpPacket) -> bytes:
    """The packet's payload as depayloaded by the receiver (for VP8, without the payload
    descriptor: a frame's first packet starts with the frame's own header)."""
    data: bytes = getattr(packet, "_data", b"")
    return data


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (aiortc's goes through datetime, about
    ten times slower, and runs twice per packet sent)."""
    return int((time.time() + _NTP_UNIX) * 4294967296.0)


class RtpOut:
    """Sends RTP packets built here on ``sender``'s stream, as its own loop would.

    The packet's SSRC and payload type must be ``ssrc`` / ``payload_type``; ``send`` sets
    the MID and abs-send-time extensions (the browser's bandwidth estimate reads the
    latter), keeps the packet for retransmission, encrypts and sends it. Nothing is sent
    before DTLS is up and a pair is nominated (``send`` says False)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender = sender
        self.ssrc: int = sender._ssrc
        self.payload_type: int | None = None  # known once aiortc starts the sender
        self.mid: str | None = None
        self.extensions = HeaderExtensionsMap()
        self._history: dict[int, RtpPacket] = getattr(sender, _SENDER_HISTORY)
        original = sender.send

        async def send(parameters: Any) -> None:
            self.payload_type = parameters.codecs[0].payloadType
            self.mid = parameters.muxId
            self.extensions.configure(parameters)
            await original(parameters)

        sender.send = send  # type: ignore[method-assign]

    def send(self, packet: RtpPacket) -> bool:
        sender = self._sender
        dtls = sender.transport
        if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        ntp = ntp_now()
        packet.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        packet.extensions.mid = self.mid
        self._history[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        data = dtls._tx_srtp.protect(packet.serialize(self.extensions))
        pair.protocol.transport.sendto(data, pair.remote_addr)
        # What the sender's RTCP sender reports say (aiortc's loop keeps them the same way).
        setattr(sender, _SENDER_NTP, ntp)
        setattr(sender, _SENDER_RTP_TS, packet.timestamp)
        setattr(sender, _SENDER_OCTETS, getattr(sender, _SENDER_OCTETS) + len(packet.payload))
        setattr(sender, _SENDER_PACKETS, getattr(sender, _SENDER_PACKETS) + 1)
        return True


async def request_keyframe(receiver: RTCRtpReceiver, *, fir: bool = False) -> bool:
    """Send a PLI for every source the receiver is hearing; False if none yet.

    ``fir``: a Full Intra Request (RFC 5104) too. A still must not depend on one RTCP
    packet (issue 17): PLI and FIR are separate feedback messages a browser answers
    alike, and each FIR carries a new sequence number, so a repeated one is a new
    request, not a retransmission the sender may ignore."""
    ssrcs = list(getattr(receiver, _ACTIVE_SSRC, {}).keys())
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
        if fir:
            await _send_fir(receiver, ssrc)
    return bool(ssrcs)


async def _send_fir(receiver: RTCRtpReceiver, ssrc: int) -> None:
    rtcp_ssrc = getattr(receiver, _RTCP_SSRC, None)
    if rtcp_ssrc is None:
        return
    seq = (getattr(receiver, _FIR_SEQ, -1) + 1) & 0xFF
    setattr(receiver, _FIR_SEQ, seq)
    # FCI: the media sender's SSRC, the command sequence number, 24 reserved bits; the
    # packet's own media SSRC field is 0 for FIR (RFC 5104 §4.3.1.1).
    fci = ssrc.to_bytes(4, "big") + bytes([seq, 0, 0, 0])
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
    await receiver._send_rtcp(packet)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the far end sends this sender a PLI or FIR."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def force_keyframe(sender: RTCRtpSender) -> None:
    """Make the next picture the sender encodes a keyframe, as a PLI from the far end
    would (a callback set with ``on_keyframe_request`` hears of it too). No effect on
    packets the sender only forwards."""
    sender._send_keyframe()


def remb_bitrate(packet: Any) -> tuple[int, list[int]] | None:
    """(bits per second, media SSRCs) of a REMB packet; None for any other RTCP."""
    if not isinstance(packet, RtcpPsfbPacket) or packet.fmt != RTCP_PSFB_APP:
        return None
    try:
        return unpack_remb_fci(packet.fci)
    except ValueError:
        return None  # an APP feedback that is not REMB


def clamp_remb(packet: Any, limit: int | None) -> Any:
    """The same REMB with its bitrate lowered to ``limit`` (a copy); anything else as is."""
    remb = remb_bitrate(packet)
    if remb is None or limit is None or remb[0] <= limit:
        return packet
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP,
        ssrc=packet.ssrc,
        media_ssrc=packet.media_ssrc,
        fci=pack_remb_fci(limit, remb[1]),
    )


def on_remb(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """Call ``callback(bps)`` whenever the far end sends this sender a REMB for it."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is not None and sender._ssrc in remb[1]:
            callback(remb[0])
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def limit_remb(receiver: RTCRtpReceiver, limit: Callable[[], int | None]) -> None:
    """Every REMB this receiver sends says at most ``limit()`` bits per second."""
    original = receiver._send_rtcp

    async def send(packet: Any) -> None:
        await original(clamp_remb(packet, limit()))

    receiver._send_rtcp = send  # type: ignore[method-assign]


_original_host_addresses = aioice.ice.get_host_addresses
_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def _datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    # RFC 7983: a first byte of 128–191 is RTP/RTCP, never STUN (whose first two bits are
    # 0): straight to the connection, as aioice does once the STUN parse has failed.
    if data and 127 < data[0] < 192:
        self.receiver.data_received(data, self.local_candidate.component)
        return
    _original_datagram_received(self, data, addr)


# ICE connections whose SRTP is handled where it arrives, and their DTLS transports.
_eager: weakref.WeakKeyDictionary[Any, RTCDtlsTransport] = weakref.WeakKeyDictionary()
# A DTLS transport whose eager handling had to wait: later packets queue behind it.
_finishing: weakref.WeakKeyDictionary[RTCDtlsTransport, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)
_original_data_received = aioice.ice.Connection.data_received
_eager_failures = 0


def now_ms() -> int:
    """aiortc's ``clock.current_ms`` (milliseconds since the NTP epoch), without datetime."""
    return int((time.time() + _NTP_UNIX) * 1000)


def _data_received(self: Any, data: bytes, component: int) -> None:
    dtls = _eager.get(self)
    if (
        dtls is not None
        and 127 < data[0] < 192
        and dtls._rx_srtp is not None
        and self._queue.empty()
        and dtls not in _finishing
    ):
        _handle_srtp(dtls, data)
        return
    _original_data_received(self, data, component)


def _handle_srtp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """What ``RTCDtlsTransport._recv_next`` does with an SRTP/SRTCP datagram."""
    global _eager_failures
    setattr(dtls, _DTLS_RX_BYTES, getattr(dtls, _DTLS_RX_BYTES) + len(data))
    setattr(dtls, _DTLS_RX_PACKETS, getattr(dtls, _DTLS_RX_PACKETS) + 1)
    arrival_time_ms = now_ms()
    coro: Coroutine[Any, Any, None]
    try:
        if is_rtcp(data):
            coro = dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data))
        else:
            plain = dtls._rx_srtp.unprotect(data)
            coro = dtls._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms)
    except pylibsrtp.Error:
        return  # as aiortc: a packet that does not decrypt is dropped
    try:
        waiting = coro.send(None)
    except StopIteration:
        return  # the usual case: handled without waiting
    except Exception:
        # aiortc's receive task would die of it and take the connection with it; here the
        # packet is lost and the call goes on. Logged once, then counted.
        _eager_failures += 1
        if _eager_failures == 1 or _eager_failures % 1000 == 0:
            log.exception("media packet handling failed", extra={"failures": _eager_failures})
        return
    task = asyncio.ensure_future(_Resume(coro, waiting).run())
    _finishing[dtls] = task
    task.add_done_callback(lambda t: _finished(dtls, t))


def _finished(dtls: RTCDtlsTransport, task: asyncio.Task[None]) -> None:
    if _finishing.get(dtls) is task:
        del _finishing[dtls]
    if not task.cancelled() and task.exception() is not None:
        log.error("media packet handling failed", exc_info=task.exception())


class _Resume:
    """Finishes, in a task, a coroutine that was started outside one and had to wait:
    hands the task what it waits on, and resumes it when the task is woken."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    async def run(self) -> None:
        await self

    def __await__(self) -> Generator[Any, None, None]:
        waiting = self._waiting
        while True:
            try:
                yield waiting
            except BaseException as exc:  # the task is cancelled: into the coroutine
                try:
                    waiting = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting = self._coro.send(None)
            except StopIteration:
                return


def receive_eagerly(pc: RTCPeerConnection) -> None:
    """Handle this connection's SRTP where each datagram arrives (call once both
    descriptions are set, when its transports are final). Needs ``eager_receive()``."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if connection is not None:
            _eager[connection] = dtls


def eager_receive(enabled: bool = True) -> None:
    """Let connections registered with ``receive_eagerly`` be handled on arrival.
    Process-wide."""
    chosen = _data_received if enabled else _original_data_received
    setattr(aioice.ice.Connection, "data_received", chosen)  # noqa: B010


def fast_media_datagrams(enabled: bool = True) -> None:
    """Hand RTP/RTCP datagrams to the ICE connection without a STUN parse first.
    Process-wide (every connection of the process)."""
    chosen = _datagram_received if enabled else _original_datagram_received
    setattr(aioice.ice.StunProtocol, "datagram_received", chosen)  # noqa: B010


def restrict_host_addresses(addresses: list[str]) -> None:
    """Offer only these local addresses as ICE host candidates (empty: all, aioice's
    default, which never includes 127.0.0.1). Process-wide: one media node per process."""
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
