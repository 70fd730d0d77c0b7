"""An aiortc investor for one-way attempts (A18): sends a synthetic clip from
``tests/oneway_clips.py`` as its camera (looping, as Chromium's fake camera does) and a
wav file (or silence) as its microphone, over ``/ws/oneway/<id>``."""

from __future__ import annotations

import asyncio
import fractions
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from tests.media_client import Party
from tests.oneway_clips import FPS, HEIGHT, WIDTH, Pose, clip_frames

STATEMENT_WAV = Path(__file__).resolve().parent / "data" / "statement-zh.wav"


def _frame(rgb: np.ndarray | None) -> av.VideoFrame:
    if rgb is None:  # a covered camera
        rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


class ClipTrack(VideoStreamTrack):
    """The clip's frames at its own rate, looping. Frames are converted once, up front,
    so the test's event loop (which also runs the server) only paces them."""

    def __init__(self, segments: Sequence[tuple[Pose, float]], **options: Any) -> None:
        super().__init__()
        # Unchanged poses yield the same picture object: convert it once. The pictures are
        # kept alive with their frames, or a freed one's id could be reused by another.
        cache: dict[int, tuple[np.ndarray | None, av.VideoFrame]] = {}
        self.frames: list[av.VideoFrame] = []
        for _t, rgb in clip_frames(segments, **options):
            key = id(rgb)
            if key not in cache:
                cache[key] = (rgb, _frame(rgb))
            self.frames.append(cache[key][1])
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self.sent / FPS - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        source = self.frames[self.sent % len(self.frames)]
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, data in zip(frame.planes, source.planes, strict=True):
            plane.update(bytes(data))
        frame.pts = self.sent * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


class WavTrack(AudioStreamTrack):
    """A mono 16-bit wav in 20 ms frames, looping; silence when no file is given."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        if path is None:
            self.rate, self.pcm = 48_000, np.zeros(48_000, dtype=np.int16)
        else:
            with wave.open(str(path), "rb") as wav:
                self.rate = wav.getframerate()
                self.pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        self.at = 0
        self.samples = self.rate // 50
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self.sent * 0.02 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = np.take(self.pcm, range(self.at, self.at + self.samples), mode="wrap")
        self.at = (self.at + self.samples) % len(self.pcm)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.sent * self.samples
        frame.time_base = fractions.Fraction(1, self.rate)
        self.sent += 1
        return frame


class OneWayParty(Party):
    """The investor of a one-way attempt."""

    def __init__(
        self,
        client: Any,
        session_id: str,
        token: str,
        segments: Sequence[tuple[Pose, float]],
        *,
        wav: Path | None = STATEMENT_WAV,
        **clip: Any,
    ) -> None:
        super().__init__(client, session_id, token)
        self.video = ClipTrack(segments, **clip)  # type: ignore[assignment]
        self.audio = WavTrack(wav)  # type: ignore[assignment]

    async def next_of(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        try:
            return await super().next_of(kind, within)
        except TimeoutError:
            raise AssertionError(f"no {kind} within {within} s; got {self.messages}") from None

    async def join(self) -> dict[str, Any]:
        self.ws = await self.client.ws_connect(f"/ws/oneway/{self.session_id}?token={self.token}")
        self._tasks.append(asyncio.create_task(self._read()))
        return await self.next_of("joined")
