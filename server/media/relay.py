"""Forwarding one party's encoded frames to the other party, without transcoding.

aiortc's sender packetizes an ``av.Packet`` a track returns instead of encoding it
(WEBRTC-NOTES), so a track that hands out the other party's VP8/Opus frames is a relay
that costs no codec work. Both legs negotiate the same codecs (``session.py`` sets the
preferences), so what one browser sent is what the other can decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.recorder import AUDIO_RATE, VIDEO_RATE, is_vp8_keyframe

# Frames waiting for the sender. Past this the receiving party is not keeping up: old
# frames are dropped rather than queued without bound (the relay's memory stays flat).
VIDEO_QUEUE = 30  # 2 s at 15 fps
AUDIO_QUEUE = 50  # 1 s of 20 ms Opus frames


class ForwardTrack(MediaStreamTrack):
    """An outgoing track fed by ``push`` with the other party's encoded frames."""

    def __init__(self, kind: str, *, need_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self.rate = VIDEO_RATE if kind == "video" else AUDIO_RATE
        self.step = self.rate // 15 if kind == "video" else 960
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(
            VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE
        )
        self._need_keyframe = need_keyframe
        self._waiting_for_key = kind == "video"
        self._source: object = None
        self._base = 0
        self._last_out: int | None = None
        self.pushed = 0
        self.dropped = 0

    def push(self, data: bytes, rtp_ts: int, source: object) -> None:
        """Queue a frame from ``source`` (the sending party's current connection)."""
        if self.readyState != "live":
            return
        if source is not self._source:
            # A new connection of the sending party (it rejoined): its timestamps start
            # at 0 again, ours must keep going forward or the far end stalls.
            self._source = source
            self._base = 0 if self._last_out is None else self._last_out + self.step - rtp_ts
            self._waiting_for_key = self.kind == "video"
        if self._waiting_for_key:
            if not is_vp8_keyframe(data):
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

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._drain()
            self._queue.put_nowait(None)
