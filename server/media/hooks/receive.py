"""The receiver's side: encoded frames taken before aiortc's decoder, the jitter buffer
that says what was lost, and every packet as it arrives (see the package's docstring)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from server.media.hooks.checks import InternalsChanged

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_CODECS = "_RTCRtpReceiver__codecs"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"


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
