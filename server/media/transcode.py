"""Decoding one party's video for the other party when their codecs differ (issue 9).

The relay forwards encoded frames unchanged, which needs both legs to speak one codec.
An investor whose embedded browser has only H.264 can still be witnessed from a VP8
console: that party's frames are decoded here, off the event loop in one thread per
direction, and the pictures handed to the other leg's aiortc sender, which encodes them
with its own negotiated codec (in its executor) and answers that browser's keyframe
requests itself. Audio is Opus on every leg and never comes here.

``FrameDecoder`` is the blocking part; ``TranscodeTrack`` queues around it: encoded
frames in (bounded; a gap restarts at a keyframe), pictures out (at most
``OUTPUT_QUEUE``; when the encoder lags, the oldest picture goes, never the newest).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import av.error
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.codecs import VideoCodec

VIDEO_TIME_BASE = Fraction(1, 90_000)
INPUT_QUEUE = 30  # encoded frames waiting for the decoder: 2 s at 15 fps
OUTPUT_QUEUE = 2  # pictures waiting for the other leg's encoder


class FrameDecoder:
    """Decodes one party's encoded frames into pictures. Blocking and stateful: one
    thread at a time."""

    def __init__(self, codec: VideoCodec) -> None:
        self.context = codec.open_decoder()
        # Frame threads would each hold a frame back: latency for a relay, and CPU taken
        # from the other sessions on the node. One thread decodes 640×480 in a few ms.
        self.context.thread_count = 1

    def decode(self, data: bytes, pts: int) -> list[av.VideoFrame]:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = VIDEO_TIME_BASE
        pictures = []
        for frame in self.context.decode(packet):
            if frame.pts is None:
                frame.pts = pts
            frame.time_base = VIDEO_TIME_BASE
            # The other leg's encoder places its own keyframes (on that browser's
            # requests); copying the sender's would only spend the receiver's bitrate.
            frame.pict_type = av.video.frame.PictureType.NONE
            pictures.append(frame)
        return pictures


class TranscodeTrack(MediaStreamTrack):
    """Pictures of one party's video, decoded from the encoded frames ``push`` gets."""

    kind = "video"

    def __init__(self, codec: VideoCodec, *, need_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.codec = codec  # what the sending party sends
        self._need_keyframe = need_keyframe
        self._decoder = FrameDecoder(codec)
        self._pending: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue(INPUT_QUEUE)
        self._pictures: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="transcode")
        self._worker: asyncio.Task[None] | None = None
        self._waiting_for_key = True
        self.decoded = 0
        self.dropped_frames = 0  # encoded frames never decoded (backlog, damage)
        self.dropped_pictures = 0  # decoded pictures the encoder had no time for
        self.decode_seconds = 0.0  # thread time spent decoding

    def push(self, data: bytes, pts: int) -> None:
        """Queue an encoded frame (event loop; never blocks). ``pts`` at 90 kHz."""
        if self.readyState != "live":
            return
        if self._waiting_for_key:
            if not self.codec.is_keyframe(data):
                self._need_keyframe()
                return
            self._waiting_for_key = False
        if self._pending.full():
            # The decoder is 2 s behind: that backlog is stale, and frames after a gap
            # cannot be decoded, so start again from a fresh keyframe.
            self.dropped_frames += self._drain_pending() + 1
            self._restart()
            return
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._decode_loop())
        self._pending.put_nowait((data, pts))

    def _restart(self) -> None:
        self._waiting_for_key = True
        self._need_keyframe()

    def _drain_pending(self) -> int:
        count = 0
        while not self._pending.empty():
            if self._pending.get_nowait() is not None:
                count += 1
        return count

    def _timed_decode(self, data: bytes, pts: int) -> tuple[list[av.VideoFrame], float]:
        start = time.thread_time()
        pictures = self._decoder.decode(data, pts)
        return pictures, time.thread_time() - start

    async def _decode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._pending.get()
            if item is None:
                return
            try:
                pictures, spent = await loop.run_in_executor(
                    self._executor, self._timed_decode, *item
                )
            except av.error.FFmpegError:
                # A damaged frame: the ones queued behind it refer to it.
                self.dropped_frames += self._drain_pending() + 1
                self._restart()
                continue
            self.decode_seconds += spent
            for picture in pictures:
                self._offer(picture)

    def _offer(self, picture: av.VideoFrame) -> None:
        if self.readyState != "live":
            return
        self.decoded += 1
        while self._pictures.qsize() >= OUTPUT_QUEUE:
            self._pictures.get_nowait()
            self.dropped_pictures += 1
        self._pictures.put_nowait(picture)

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        picture = await self._pictures.get()
        if picture is None:
            raise MediaStreamError
        return picture

    def stop(self) -> None:
        if self.readyState != "live":
            return
        super().stop()
        self._drain_pending()
        self._pending.put_nowait(None)
        while not self._pictures.empty():
            self._pictures.get_nowait()
        self._pictures.put_nowait(None)  # wakes a recv() waiting for a picture
        if self._worker is not None:
            self._worker.cancel()
        # A decode in progress finishes in its thread; nothing waits for it.
        self._executor.shutdown(wait=False)
