"""The one-way mode's fake-camera clips (tests/oneway_clips.py) checked with the real
models the server uses, the way the one-way analysis uses them: dlib's frontal face
detector without upsampling on a copy halved to 320 wide (full size when that finds
nothing), its 5-point landmarks on the full picture, ``pose_from_points`` and the
face-embedding network. The clip is written as .y4m and decoded back with PyAV (FFmpeg's
reader, not ours).

Measured here (dlib-bin 20.0.1), the investor's change from her own neutral pose in the
decoded clip; her neutral: yaw +0.02, roll 0.0°, pitch 0.73, scale 0.113:

- turn left (yaw 28°):   yaw +0.33  (roll +0.9°, pitch +0.08, scale ×0.88)
- turn right (yaw -28°): yaw -0.32  (roll -1.4°, pitch +0.05, scale ×0.87)
- tilt left (roll 20°):  roll +20.2°; tilt right (roll -20°): roll -20.6°
- nod (16°):             pitch +0.15 (yaw +0.01, roll -0.4°, scale ×1.02)
- closer (×1.35):        scale ×1.35; back (×0.75): scale ×0.75
  (detection at full size only: turns +0.29 / -0.31, nod +0.17; after a JPEG quality 50
  round trip: turns +0.26 / -0.34, nod +0.15)
- Grace Hopper in the same poses: turns +0.33 / -0.28, nod +0.14, tilts +21° / -20°,
  closer ×1.34, back ×0.75.

Embedding distances from the investor's neutral face: her own warped poses 0.03–0.42
(turns 0.42 / 0.41, nod 0.42, tilts and sizes ≤ 0.07; ≤ 0.43 after JPEG 50); Grace
Hopper in any pose 0.66–0.69. The second, smaller copy of the portrait (box ~125 px
against the investor's ~150) is found beside her in every frame, whatever she does;
black frames give no face. The 13 s clip below writes in about 2 s.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server.domain.face_pose import FacePose, pose_from_points
from tests import oneway_clips as clips
from tests.conftest import IN_CI
from tests.oneway_clips import (
    BACK,
    CLOSER,
    NEUTRAL,
    NOD,
    TILT_LEFT,
    TILT_RIGHT,
    TURN_LEFT,
    TURN_RIGHT,
    Pose,
)

SEGMENTS: list[tuple[Pose, float]] = [
    (NEUTRAL, 1.0),
    (TURN_LEFT, 1.0),
    (NEUTRAL, 1.0),
    (TURN_RIGHT, 1.0),
    (NEUTRAL, 1.0),
    (TILT_LEFT, 1.0),
    (TILT_RIGHT, 1.0),
    (NEUTRAL, 1.0),
    (NOD, 1.0),
    (NEUTRAL, 1.0),
    (CLOSER, 1.0),
    (BACK, 1.0),
    (NEUTRAL, 1.0),
]
# In a second clip: the second face from 2 s, Grace Hopper from 4 s, black from 6 s.
EVENTS: list[tuple[Pose, float]] = [(NEUTRAL, 2.0), (TURN_LEFT, 2.0), (NEUTRAL, 3.0)]


@dataclass(frozen=True)
class Seen:
    faces: int
    pose: FacePose | None
    embedding: Any | None
    brightness: float


class Models:
    def __init__(self) -> None:
        import dlib  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import face_recognition_models  # type: ignore[import-not-found,import-untyped,unused-ignore]

        models = Path(face_recognition_models.__file__).parent / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def see(self, rgb: np.ndarray, *, embed: bool = False, halved: bool = True) -> Seen:
        """Faces as the one-way analysis finds them: detected (no upsampling) on a copy
        halved to 320 wide (PIL's reduce), else at full size; the largest face's
        landmarks and embedding from the full picture. ``halved=False``: full size only."""
        import dlib  # type: ignore[import-not-found,import-untyped,unused-ignore]

        brightness = float(rgb.mean())
        factor, faces = 1, []
        if halved:
            factor, faces = 2, list(self.detector(np.asarray(Image.fromarray(rgb).reduce(2)), 0))
        if not faces:
            factor, faces = 1, list(self.detector(rgb, 0))
        if not faces:
            return Seen(0, None, None, brightness)
        face = max(faces, key=lambda r: r.area())
        box = [v * factor for v in (face.left(), face.top(), face.right(), face.bottom())]
        shape = self.landmarks(rgb, dlib.rectangle(*box))
        points = [(float(shape.part(i).x), float(shape.part(i).y)) for i in range(5)]
        embedding = np.array(self.net.compute_face_descriptor(rgb, shape)) if embed else None
        return Seen(len(faces), pose_from_points(points, rgb.shape[1]), embedding, brightness)


def _distance(a: Seen, b: Seen) -> float:
    assert a.embedding is not None and b.embedding is not None
    return float(np.linalg.norm(a.embedding - b.embedding))


@pytest.fixture(scope="module")
def models() -> Models:
    try:
        return Models()
    except ImportError:
        if IN_CI:
            pytest.fail("the face extra is not installed; make test installs it")
        pytest.skip("pip install -e '.[face]' to check the clips with dlib")


def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def poses_clip(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    path = tmp_path_factory.mktemp("clips") / "poses.y4m"
    started = time.monotonic()
    clips.write_clip(path, SEGMENTS)
    assert time.monotonic() - started < 5.0
    return _decode(path)


@pytest.fixture(scope="module")
def events_clip(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    path = tmp_path_factory.mktemp("clips") / "events.y4m"
    clips.write_clip(path, EVENTS, second_face_from=2.0, swap_face_at=4.0, black_from=6.0)
    return _decode(path)


def _held(segments: list[tuple[Pose, float]], index: int, fps: int = clips.FPS) -> int:
    """The frame number of the segment's last frame (its pose fully reached)."""
    end = sum(seconds for _, seconds in segments[: index + 1])
    return round(end * fps) - 1


def _neutral(models: Models, frames: list[np.ndarray]) -> Seen:
    seen = models.see(frames[_held(SEGMENTS, 0)], embed=True)
    assert seen.faces == 1 and seen.pose is not None
    return seen


def test_the_clip_is_what_chromium_reads(poses_clip: list[np.ndarray], tmp_path: Path) -> None:
    assert len(poses_clip) == round(sum(s for _, s in SEGMENTS) * clips.FPS)
    assert poses_clip[0].shape == (clips.HEIGHT, clips.WIDTH, 3)
    header = clips.write_clip(tmp_path / "c.y4m", [(NEUTRAL, 0.2)]).read_bytes()[:64]
    assert header.startswith(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\nFRAME\n")
    # The I420 round trip keeps the picture: compare with the generator's own frame.
    direct = clips.render_frame(NEUTRAL).astype(int)
    assert np.abs(poses_clip[0].astype(int) - direct).mean() < 4


def test_neutral_is_level_and_frontal(models: Models, poses_clip: list[np.ndarray]) -> None:
    for i, (pose, _) in enumerate(SEGMENTS):
        if pose != NEUTRAL:
            continue
        seen = models.see(poses_clip[_held(SEGMENTS, i)])
        assert seen.faces == 1 and seen.pose is not None
        assert abs(seen.pose.yaw) < 0.1 and abs(seen.pose.roll) < 5


@pytest.mark.parametrize(
    ("index", "check"),
    [
        (1, lambda d: d["yaw"] > 0.22),  # turn left: nose to the picture's right
        (3, lambda d: d["yaw"] < -0.22),
        (5, lambda d: d["roll"] > 12),  # tilt left: eye line falls to the picture's right
        (6, lambda d: d["roll"] < -12),
        (8, lambda d: d["pitch"] > 0.10),  # nod: the nose drops below the eye line
        (10, lambda d: d["scale"] > 1.20),
        (11, lambda d: d["scale"] < 0.83),
    ],
    ids=["turn_left", "turn_right", "tilt_left", "tilt_right", "nod", "closer", "back"],
)
def test_each_instruction_is_seen(
    models: Models, poses_clip: list[np.ndarray], index: int, check: Any
) -> None:
    neutral = _neutral(models, poses_clip)
    seen = models.see(poses_clip[_held(SEGMENTS, index)], embed=True)
    assert seen.faces == 1 and seen.pose is not None and neutral.pose is not None
    delta = {
        "yaw": seen.pose.yaw - neutral.pose.yaw,
        "roll": seen.pose.roll - neutral.pose.roll,
        "pitch": seen.pose.pitch - neutral.pose.pitch,
        "scale": seen.pose.scale / neutral.pose.scale,
    }
    assert check(delta), delta
    # Only the instructed change: the other measures stay near neutral.
    instructed = SEGMENTS[index][0]
    if not instructed.yaw:
        assert abs(delta["yaw"]) < 0.1, delta
    if not instructed.roll:
        assert abs(delta["roll"]) < 5, delta
    # Still the same person to dlib's embeddings.
    distance = _distance(seen, neutral)
    assert distance < 0.45, distance


def test_every_frame_of_the_moves_shows_one_face(
    models: Models, poses_clip: list[np.ndarray]
) -> None:
    """In-between frames are plausible enough for the detector (every second frame)."""
    ramp = round(clips.TRANSITION_S * clips.FPS)
    starts = [_held(SEGMENTS, i) + 1 for i in range(len(SEGMENTS) - 1)]
    for start in starts:
        for n in range(start, start + ramp + 1, 2):
            assert models.see(poses_clip[n]).faces == 1, n


def test_the_turns_move_steadily(models: Models, poses_clip: list[np.ndarray]) -> None:
    """Turning left, the yaw grows from neutral through the move (not a jump at the end)."""
    start = _held(SEGMENTS, 0) + 1
    neutral = _neutral(models, poses_clip).pose
    assert neutral is not None
    yaws = []
    for n in range(start, start + round(clips.TRANSITION_S * clips.FPS) + 1):
        pose = models.see(poses_clip[n]).pose
        assert pose is not None
        yaws.append(pose.yaw - neutral.yaw)
    assert 0.05 < yaws[len(yaws) // 2] < yaws[-1]


def test_second_face_swap_and_covered_camera(models: Models, events_clip: list[np.ndarray]) -> None:
    at = [round(t * clips.FPS) for t in (1.9, 2.1, 3.9, 4.1, 5.9, 6.1)]
    before, second, held_turn, swapped, swapped_later, black = (events_clip[n] for n in at)
    alone = models.see(before, embed=True)
    assert alone.faces == 1
    assert models.see(second).faces == 2
    assert models.see(held_turn).faces == 2
    # Both faces, whatever the investor does meanwhile (every third frame).
    for n in range(round(2.0 * clips.FPS), round(6.0 * clips.FPS), 3):
        assert models.see(events_clip[n]).faces == 2, n
    other = models.see(swapped, embed=True)
    assert other.faces == 2  # the second face is still there
    assert _distance(other, alone) > 0.6
    later = models.see(swapped_later, embed=True)
    assert _distance(later, alone) > 0.6
    covered = models.see(black)
    assert covered.faces == 0 and covered.brightness < 5
    assert all(models.see(f).faces == 0 for f in events_clip[round(6.1 * clips.FPS) :: 5])


def test_the_other_face_is_another_person_in_every_pose(models: Models) -> None:
    investor = models.see(clips.render_frame(NEUTRAL), embed=True)
    for pose in (NEUTRAL, TURN_LEFT, TURN_RIGHT, TILT_LEFT, NOD, CLOSER, BACK):
        other = models.see(clips.render_frame(pose, face="grace"), embed=True)
        assert other.faces == 1
        assert _distance(other, investor) > 0.6, pose


def test_the_pose_timeline_eases_between_poses() -> None:
    segments = [(NEUTRAL, 1.0), (TURN_LEFT, 1.0), (NEUTRAL, 1.0)]
    assert clips.frame_at(segments, 0.5) == NEUTRAL
    assert clips.frame_at(segments, 1.0) == NEUTRAL
    middle = clips.frame_at(segments, 1.0 + clips.TRANSITION_S / 2)
    assert middle.yaw == pytest.approx(TURN_LEFT.yaw / 2)
    assert clips.frame_at(segments, 1.0 + clips.TRANSITION_S) == TURN_LEFT
    assert clips.frame_at(segments, 1.9) == TURN_LEFT
    assert 0 < clips.frame_at(segments, 2.1).yaw < TURN_LEFT.yaw
    assert clips.frame_at(segments, 2.9) == NEUTRAL
    assert clips.frame_at(segments, 99) == NEUTRAL


def _wav(path: Path) -> Iterator[int]:
    with wave.open(str(path)) as w:
        yield w.getframerate()
        yield w.getnchannels()
        yield w.getsampwidth()
        yield w.getnframes()


def test_silence_and_statement_sounds(tmp_path: Path) -> None:
    assert list(_wav(clips.write_silence_wav(tmp_path / "s.wav", 1.5))) == [48_000, 1, 2, 72_000]
    statement = clips.DATA / "statement-zh.wav"
    rate, channels, width, frames = _wav(statement)
    assert (rate, channels, width) == (48_000, 1, 2)
    assert 4 < frames / rate < 6.3
    assert statement.stat().st_size < 600_000
    with wave.open(str(statement)) as w:
        samples = np.frombuffer(w.readframes(frames), np.int16).astype(np.float64) / 32768
    assert 0.05 < float(np.sqrt((samples**2).mean())) and float(np.abs(samples).max()) < 0.99
