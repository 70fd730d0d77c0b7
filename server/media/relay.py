"""Forwarding one party's media to the other party, transcoding only as a fallback.

Issue 21: the party's RTP packets are forwarded as they arrive, as an SFU does
(``forward_packet``): the header is rewritten to this leg's stream (SSRC, payload type,
sequence numbers and timestamps carried on across the sending party's reconnections, MID
and abs-send-time) and the payload goes out unchanged, with no frame assembled on the way.
The receiver still assembles frames, for the recording, the stills and the one-way checks.
This leg's sender keeps what it forwarded, so a browser's NACK is answered from it; what
was lost upstream the receiver asks the sending party for again, and its retransmission
is forwarded when it comes. Packets are forwarded for VP8 and Opus; an H.264 leg takes
the frame path below.

The frame path (``push``), also used with ``media.pipeline = "frames"``:

aiortc's sender packetizes an ``av.Packet`` a track returns instead of encoding it
(WEBRTC-NOTES), so a track that hands out the other party's VP8/Opus frames is a relay
that costs no codec work. That needs both legs on one codec: VP8, unless a browser has
none (``session.py`` sets the preferences). When the sending party's video codec is not
this leg's, the track falls back to a ``TranscodeTrack`` and hands the sender decoded
pictures, which it encodes itself; the mode is chosen again whenever the sending party
reconnects (its new leg may speak another codec).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from server.media import hooks
from server.media.codecs import VP8, VideoCodec
from server.media.recorder import AUDIO_RATE, VIDEO_RATE
from server.media.transcode import TranscodeTrack

# Frames waiting for the sender. Past this the receiving party is not keeping up: old
# frames are dropped rather than queued without bound (the relay's memory stays flat).
VIDEO_QUEUE = 30  # 2 s at 15 fps
AUDIO_QUEUE = 50  # 1 s of 20 ms Opus frames
# Video packets held from the newest keyframe while a leg is still connecting (~2 s).
HELD_PACKETS = 300


class _Wake:
    """Queued to wake a ``recv`` waiting for packets when the track starts transcoding."""


PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"


def relay_mode(sending: VideoCodec, receiving: VideoCodec) -> str:
    return PASSTHROUGH if sending.name == receiving.name else TRANSCODE


class ForwardTrack(MediaStreamTrack):
    """An outgoing track fed by ``push`` with the other party's encoded frames."""

    def __init__(
        self, kind: str, *, need_keyframe: Callable[[], None], codec: VideoCodec = VP8
    ) -> None:
        super().__init__()
        self.kind = kind
        self.codec = codec  # the video codec this leg negotiated
        self.rate = VIDEO_RATE if kind == "video" else AUDIO_RATE
        self.step = self.rate // 15 if kind == "video" else 960
        self._queue: asyncio.Queue[av.Packet[Any] | _Wake | None] = asyncio.Queue(
            VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE
        )
        self._need_keyframe = need_keyframe
        self._transcoder: TranscodeTrack | None = None
        # Makes this leg's sender encode its next picture as a keyframe (set by the
        # session once the sender exists).
        self.force_keyframe: Callable[[], None] = lambda: None
        self._waiting_for_key = kind == "video"
        self._source: object = None
        self._rebase = False
        self._base = 0
        self._last_out: int | None = None
        self.pushed = 0
        self.dropped = 0
        # Issue 21: set when the session forwards packets on this leg; None: frames only.
        self.rtp_out: hooks.RtpOut | None = None
        self._packets_waiting_for_key = kind == "video"
        # Added to the sending party's sequence numbers / timestamps (None: not yet sending).
        self._seq_offset: int | None = None
        self._ts_offset = 0
        self._held: list[RtpPacket] = []  # while this leg cannot send (``forward_packet``)

    def _forwards_packets(self, codec: VideoCodec) -> bool:
        """Whether the sending party's media (video in ``codec``) goes out as packets."""
        if self.rtp_out is None or self._transcoder is not None:
            return False
        return self.kind == "audio" or (codec.name == VP8.name and self.codec.name == VP8.name)

    def forward_packet(self, packet: RtpPacket, source: object, codec: VideoCodec = VP8) -> None:
        """Send ``packet`` from ``source`` (the sending party's current connection) on
        this leg's stream. Nothing is assembled or queued: it leaves at once, but for
        the latest keyframe and what follows it while this leg cannot send yet."""
        out = self.rtp_out
        if out is None or self.readyState != "live":
            return
        if source is not self._source:
            self._new_source(source, codec)
        if not self._forwards_packets(codec):
            return  # the frame path carries this source (``push``)
        if not out.ready():
            # The far browser is still connecting: keep the newest keyframe and what
            # follows, so its first picture comes at once rather than at the next keyframe.
            if self.kind == "video":
                if self._starts_keyframe(packet, codec):
                    self._held = [packet]
                elif self._held and len(self._held) < HELD_PACKETS:
                    self._held.append(packet)
            return
        if self._held:
            held, self._held = self._held, []
            for each in held:
                self._forward(each, codec, out)
        self._forward(packet, codec, out)

    @staticmethod
    def _starts_keyframe(packet: RtpPacket, codec: VideoCodec) -> bool:
        return hooks.starts_frame(codec.name, packet.payload[:2]) and codec.is_keyframe(
            hooks.packet_data(packet)
        )

    def _forward(self, packet: RtpPacket, codec: VideoCodec, out: hooks.RtpOut) -> None:
        payload_type = out.payload_type
        if payload_type is None:
            return
        seq = packet.sequence_number
        if self._packets_waiting_for_key:
            # A new source (or the start): the browser can decode nothing before a
            # keyframe, and its numbering goes on from ours.
            if not self._starts_keyframe(packet, codec):
                if packet.payload:
                    self._need_keyframe()
                return
        if self._seq_offset is None:
            # The stream's numbering goes on from whatever this leg sent last, forwarded
            # packets or frames (``RtpOut`` keeps one numbering for both).
            if out.last_seq is None:  # random origins, as aiortc's sender picks them
                self._seq_offset = (secrets.randbelow(0x8000) - seq) & 0xFFFF
                self._ts_offset = (secrets.randbits(32) - packet.timestamp) & 0xFFFFFFFF
            else:
                self._seq_offset = (out.last_seq + 1 - seq) & 0xFFFF
                self._ts_offset = (out.last_ts + self.step - packet.timestamp) & 0xFFFFFFFF
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        forwarded = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=out_seq,
            timestamp=out_ts,
            ssrc=out.ssrc,
            payload=packet.payload,
        )
        forwarded.padding_size = packet.padding_size
        if packet.extensions.audio_level is not None:
            forwarded.extensions.audio_level = packet.extensions.audio_level
        if not out.send(forwarded):
            return
        self._packets_waiting_for_key = False
        if packet.marker if self.kind == "video" else packet.payload:
            self.pushed += 1  # a frame's last packet (video), a frame (audio)

    @property
    def mode(self) -> str:
        return TRANSCODE if self._transcoder is not None else PASSTHROUGH

    @property
    def transcoder(self) -> TranscodeTrack | None:
        return self._transcoder

    def push(self, data: bytes, rtp_ts: int, source: object, codec: VideoCodec = VP8) -> None:
        """Queue a frame from ``source`` (the sending party's current connection), whose
        video is in ``codec``."""
        if self.readyState != "live":
            return
        if source is not self._source:
            self._new_source(source, codec)
        if self._rebase:
            # A new source's timestamps start at 0 again, ours must keep going forward
            # or the far end stalls.
            self._rebase = False
            self._base = 0 if self._last_out is None else self._last_out + self.step - rtp_ts
        if self._forwards_packets(codec):
            return  # forwarded packet by packet as they came (``forward_packet``)
        if self._transcoder is not None:
            out_ts = rtp_ts + self._base
            self._transcoder.push(data, out_ts)
            self._last_out = out_ts
            self.pushed += 1
            return
        if self._waiting_for_key:
            if not codec.is_keyframe(data):
                self._need_keyframe()
                return
            self._waiting_for_key = False
        if self._queue.full():
            self._drain()
            self.dropped += 1
            if self.kind == "video":
                # Frames after a gap cannot be decoded: wait for a fresh keyframe.
                self._waiting_for_key = True
                self._need_keyframe()
                return
        out_ts = rtp_ts + self._base
        packet = av.Packet(data)
        packet.pts = out_ts
        packet.time_base = Fraction(1, self.rate)
        self._queue.put_nowait(packet)
        self._last_out = out_ts
        self.pushed += 1

    def _new_source(self, source: object, codec: VideoCodec) -> None:
        """A new connection of the sending party (it rejoined)."""
        self._source = source
        self._rebase = True  # the frame path rebases on the source's first frame
        self._waiting_for_key = self.kind == "video"
        self._packets_waiting_for_key = self.kind == "video"
        self._seq_offset = None
        self._held = []
        if self.kind == "video":
            self._choose_mode(codec)

    def _retire_transcoder(self) -> None:
        if self._transcoder is not None:
            self._transcoder.stop()  # a recv() waiting on it comes back to ours
            self._transcoder = None

    def _choose_mode(self, codec: VideoCodec) -> None:
        self._retire_transcoder()
        if relay_mode(codec, self.codec) == TRANSCODE:
            self._drain()
            self._transcoder = TranscodeTrack(codec, need_keyframe=self._need_keyframe)
            self._queue.put_nowait(_Wake())
            # The sender's encoder may have encoded for an earlier source of this track:
            # its next picture must not refer to those.
            self.force_keyframe()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def recv(self) -> av.Packet[Any] | av.VideoFrame:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            transcoder = self._transcoder
            if transcoder is not None:
                try:
                    return await transcoder.recv()
                except MediaStreamError:
                    continue  # replaced (the sender reconnected) or this track stopped
            item = await self._queue.get()
            if item is None:
                raise MediaStreamError
            if isinstance(item, _Wake):
                continue
            return item

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._retire_transcoder()
            self._drain()
            self._queue.put_nowait(None)
