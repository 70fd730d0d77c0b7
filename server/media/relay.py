"""Forwarding one party's encoded frames to the other party, transcoding only as a fallback.

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
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.codecs import VP8, VideoCodec
from server.media.recorder import AUDIO_RATE, VIDEO_RATE
from server.media.transcode import TranscodeTrack

# Frames waiting for the sender. Past this the receiving party is not keeping up: old
# frames are dropped rather than queued without bound (the relay's memory stays flat).
VIDEO_QUEUE = 30  # 2 s at 15 fps
AUDIO_QUEUE = 50  # 1 s of 20 ms Opus frames


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
        self._base = 0
        self._last_out: int | None = None
        self.pushed = 0
        self.dropped = 0

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
            # A new connection of the sending party (it rejoined): its timestamps start
            # at 0 again, ours must keep going forward or the far end stalls.
            self._source = source
            self._base = 0 if self._last_out is None else self._last_out + self.step - rtp_ts
            self._waiting_for_key = self.kind == "video"
            if self.kind == "video":
                self._choose_mode(codec)
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
