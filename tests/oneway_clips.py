"""Fake-camera clips for the one-way video mode (A18): a public-domain portrait on a plain
background carrying out the liveness instructions, written as YUV4MPEG2 (.y4m) files that
Chromium plays as its camera (``--use-file-for-fake-video-capture=clip.y4m``).

The picture is 640×480 at 15 fps, I420. The investor is NASA's portrait of Eileen Collins
(``tests/data/astronaut-face.jpg``); a different person (Grace Hopper,
``tests/data/grace-hopper-face.jpg``) can be swapped in. Both are placed so that their eyes
land on the same spots (level, 72 px apart, centred at (320, 200)).

Poses follow ``server/domain/face_pose.py`` (measured in the camera's own, unmirrored
picture):

- ``TURN_LEFT``: the investor turns to **their own left**, so the nose moves to the
  picture's right (yaw > 0); ``TURN_RIGHT`` the other way. A turn is a perspective
  warp of the head (the side turning away recedes) plus a smooth displacement field that
  carries the nose and mouth sideways relative to the eyes: a flat warp alone barely
  moves the nose off the eyes' midpoint, which is what the yaw measures.
- ``TILT_LEFT``: the head tips towards the investor's own left shoulder, the eye line
  falling to the picture's right (roll > 0); ``TILT_RIGHT`` the other way.
- ``NOD``: the head bows: the forehead comes towards the camera (vertical perspective)
  and the nose drops further below the eye line (pitch grows).
- ``CLOSER`` / ``BACK``: the head and shoulders grow ×1.35 / shrink ×0.75 about the face.

``write_clip(path, [(NEUTRAL, 2), (TURN_LEFT, 2), (NEUTRAL, 2)])`` holds each pose for
its seconds; the move into a pose takes the first ``TRANSITION_S`` (0.4 s, eased in and
out) of its segment, so in-between frames look like a head moving, not a cut. **Chromium
loops the file**: after the last frame it jumps back to the first, so end on the pose the
clip starts with (usually ``NEUTRAL``) unless a jump is what the test wants, and choose
lengths knowing the sequence repeats (the session clock is not the clip's clock).

Writing is numpy + PIL only (a mesh warp per distinct pose, frames of an unchanged pose
reused): a 13 s clip of every pose takes about 2 s, a 20 s one 2.5 s. The measured
effect of each pose on dlib's landmarks is recorded in tests/unit/test_oneway_clips.py.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "BACK",
    "CLOSER",
    "FPS",
    "GRACE_HOPPER",
    "HEIGHT",
    "INSTRUCTIONS",
    "NEUTRAL",
    "NOD",
    "PORTRAIT",
    "STATEMENT_ZH",
    "TILT_LEFT",
    "TILT_RIGHT",
    "TRANSITION_S",
    "TURN_LEFT",
    "TURN_RIGHT",
    "WIDTH",
    "Pose",
    "clip_frames",
    "frame_at",
    "render_frame",
    "synthesize_statement",
    "write_clip",
    "write_silence_wav",
    "write_y4m_frames",
]

DATA = Path(__file__).resolve().parent / "data"
PORTRAIT = DATA / "astronaut-face.jpg"
GRACE_HOPPER = DATA / "grace-hopper-face.jpg"
STATEMENT_ZH = "本人已知晓证券市场风险，已阅读并充分理解开户协议条款，自愿在本机构开立证券账户。"

WIDTH, HEIGHT, FPS = 640, 480, 15
TRANSITION_S = 0.4
BACKGROUND = (190, 192, 198)  # a plain light grey wall

# Where the eyes land (their midpoint) and how far apart they are, in the picture.
EYES_AT = (320.0, 200.0)
EYE_DISTANCE = 72.0
# The second face (someone behind the investor, a little smaller; still big enough for
# the 320-wide copy the one-way analysis detects on): its eyes' midpoint and distance.
SECOND_EYES_AT = (556.0, 165.0)
SECOND_EYE_DISTANCE = 58.0

Point = tuple[float, float]

# dlib's 5-point landmarks in the source images: the mean of each eye's two corners
# (picture-left eye, picture-right eye) and the nose base, measured once with dlib.
_LANDMARKS: dict[str, tuple[Point, Point, Point]] = {
    "astronaut": ((203.5, 102.0), (246.0, 104.5), (224.0, 135.0)),
    "grace": ((158.5, 182.0), (241.5, 177.5), (205.0, 241.0)),
}
_SOURCES = {"astronaut": PORTRAIT, "grace": GRACE_HOPPER}


@dataclass(frozen=True)
class Pose:
    """A head pose as the clip draws it: ``yaw`` > 0 turns to the investor's own left
    (nose to the picture's right), ``nod`` > 0 bows, ``roll`` > 0 tips towards the
    investor's own left shoulder (eye line falls to the picture's right), all in degrees
    of the drawing (not of a real head); ``scale`` is the size against neutral."""

    yaw: float = 0.0
    nod: float = 0.0
    roll: float = 0.0
    scale: float = 1.0

    def towards(self, other: Pose, t: float) -> Pose:
        """The pose a share ``t`` (0–1) of the way to ``other``."""
        return Pose(
            yaw=self.yaw + (other.yaw - self.yaw) * t,
            nod=self.nod + (other.nod - self.nod) * t,
            roll=self.roll + (other.roll - self.roll) * t,
            scale=self.scale + (other.scale - self.scale) * t,
        )


NEUTRAL = Pose()
TURN_LEFT = Pose(yaw=28.0)
TURN_RIGHT = Pose(yaw=-28.0)
TILT_LEFT = Pose(roll=20.0)
TILT_RIGHT = Pose(roll=-20.0)
NOD = Pose(nod=16.0)
CLOSER = Pose(scale=1.35)
BACK = Pose(scale=0.75)
# The server's liveness instructions (A18.3) and the pose that carries each out; "tilt"
# either way (TILT_RIGHT is the other).
INSTRUCTIONS: dict[str, Pose] = {
    "turn_left": TURN_LEFT,
    "turn_right": TURN_RIGHT,
    "tilt": TILT_LEFT,
    "nod": NOD,
    "closer": CLOSER,
    "back": BACK,
}

# The warps' strength, in eye distances: the nose's sideways shift at yaw 28° and its drop
# at nod 16° (measured with dlib: see tests/unit/test_oneway_clips.py), the camera's
# distance for the perspective; the warp's mesh cell, in pixels.
_YAW_SHIFT = 0.38
_NOD_DROP = 0.24
_CAMERA = 8.0
_MESH_STEP = 16


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    smooth: np.ndarray = t * t * (3 - 2 * t)
    return smooth


def _ease(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


# ---- the base pictures: a portrait placed on the plain background ----------------------


def _mask(eyes_at: Point, d: float) -> Image.Image:
    """Head, neck and shoulders around eyes at ``eyes_at`` ``d`` apart (feathered)."""
    ex, ey = eyes_at
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(mask)
    head = (ex - 1.95 * d, ey - 2.5 * d, ex + 1.95 * d, ey + 2.2 * d)
    draw.ellipse(head, fill=255)
    draw.rectangle((ex - 0.8 * d, ey + 1.2 * d, ex + 0.8 * d, ey + 3.2 * d), fill=255)
    draw.ellipse((ex - 4.2 * d, ey + 2.3 * d, ex + 4.2 * d, ey + 9.3 * d), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(2.0, d / 14)))


def _placed(face: str, eyes_at: Point, d: float) -> tuple[Image.Image, Image.Image]:
    """The portrait moved, turned and scaled (a similarity) so that its eyes lie level,
    ``d`` apart, centred on ``eyes_at``; with its mask."""
    (lx, ly), (rx, ry), _ = _LANDMARKS[face]
    src_l, src_r = complex(lx, ly), complex(rx, ry)
    dst_l = complex(eyes_at[0] - d / 2, eyes_at[1])
    dst_r = complex(eyes_at[0] + d / 2, eyes_at[1])
    # Inverse map (picture → source): z_src = a·z + b.
    a = (src_r - src_l) / (dst_r - dst_l)
    b = src_l - a * dst_l
    coeffs = (a.real, -a.imag, b.real, a.imag, a.real, b.imag)
    with Image.open(_SOURCES[face]) as img:
        placed = img.convert("RGB").transform(
            (WIDTH, HEIGHT),
            Image.Transform.AFFINE,
            coeffs,
            Image.Resampling.BICUBIC,
            fillcolor=BACKGROUND,
        )
    return placed, _mask(eyes_at, d)


@functools.cache
def _base(face: str) -> Image.Image:
    """The investor (``face``) alone on the plain background, neutral."""
    placed, mask = _placed(face, EYES_AT, EYE_DISTANCE)
    return Image.composite(placed, Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND), mask)


@functools.cache
def _second_face() -> Image.Image:
    """A smaller copy of the portrait beside the investor, as an RGBA layer."""
    placed, mask = _placed("astronaut", SECOND_EYES_AT, SECOND_EYE_DISTANCE)
    placed.putalpha(mask)
    return placed


# ---- the pose warp ----------------------------------------------------------------------


_Field = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _fixed_point(
    x: np.ndarray, y: np.ndarray, disp: _Field, rounds: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Invert ``p ↦ p + disp(p)`` at (x, y): the u with u + disp(u) = (x, y). Converges
    while the field stretches less than 1:1 along its own direction (ours: ≤ ~0.7)."""
    ux, uy = x.copy(), y.copy()
    for _ in range(rounds):
        dx, dy = disp(ux, uy)
        ux, uy = x - dx, y - dy
    return ux, uy


def _source_of(pose: Pose, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each picture point (x, y) of ``pose`` comes from in the neutral picture.

    Forward, the neutral picture goes through: (1) a smooth displacement that shifts the
    nose, mouth and chin (sideways for a turn, down for a nod) but not the eyes, (2) the
    head's perspective (a plane turned about the face's centre, faded out below the chin
    so the shoulders stay), (3) the roll and scale about the face's centre. Here each
    step is undone in reverse."""
    d = EYE_DISTANCE
    px, py = EYES_AT[0], EYES_AT[1] + 0.5 * d  # the face's centre: the pivot
    nx = EYES_AT[0]  # the nose base is below the eyes' midpoint

    # (3) roll and scale: analytic inverse.
    a = math.radians(pose.roll)
    cos, sin = math.cos(a), math.sin(a)
    rx, ry = (x - px) / pose.scale, (y - py) / pose.scale
    x1, y1 = px + rx * cos + ry * sin, py - rx * sin + ry * cos

    # (2) the head's perspective.
    th, ph = math.radians(pose.yaw), math.radians(pose.nod)
    z0 = _CAMERA * d

    def head(qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        big_x, big_y = qx - px, qy - py
        x_1, z_1 = big_x * math.cos(th), big_x * math.sin(th)
        y_2 = big_y * math.cos(ph) - z_1 * math.sin(ph)
        z_2 = big_y * math.sin(ph) + z_1 * math.cos(ph)
        k = z0 / (z0 + z_2)
        t = np.clip((qy - (py + 1.5 * d)) / (1.7 * d), 0.0, 1.0)
        w = 1.0 - t * t * (3 - 2 * t)
        return w * (x_1 * k - big_x), w * (y_2 * k - big_y)

    x2, y2 = _fixed_point(x1, y1, head) if pose.yaw or pose.nod else (x1, y1)

    # (1) the displacement. A turn: the middle of the face below the eyes (nose, mouth,
    # chin; a flat top 0.5 eye distances wide) slides sideways, fading out towards the
    # cheeks, the eyes and the neck. A nod: the face below the eyes slides down as a
    # whole (the span between the eyes and the nose stretches), fading out to the sides
    # and at the neck.
    ax = _YAW_SHIFT * d * math.sin(th) / math.sin(math.radians(28))
    ay = _NOD_DROP * d * math.sin(ph) / math.sin(math.radians(16))
    ey = EYES_AT[1]

    def bump(qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = 1 - _smooth((np.abs(qx - nx) - 0.25 * d) / (0.8 * d))
        g = g * _smooth((qy - (ey + 0.05 * d)) / (0.5 * d))
        g = g * (1 - _smooth((qy - (ey + 2.0 * d)) / (0.8 * d)))
        down = _smooth((qy - (ey + 0.1 * d)) / (0.55 * d))
        down = down * (1 - _smooth((qy - (ey + 2.2 * d)) / (0.8 * d)))
        down = down * np.exp(-(((qx - nx) / (1.1 * d)) ** 2) / 2)
        return ax * g, ay * down

    return _fixed_point(x2, y2, bump) if ax or ay else (x2, y2)


@functools.lru_cache(maxsize=64)
def _mesh(pose: Pose) -> list[tuple[tuple[int, int, int, int], tuple[float, ...]]]:
    step = _MESH_STEP
    gx, gy = np.meshgrid(
        np.arange(0, WIDTH + 1, step, dtype=np.float64),
        np.arange(0, HEIGHT + 1, step, dtype=np.float64),
    )
    sx, sy = _source_of(pose, gx, gy)
    # Past the picture's edges, its edge rows and columns carry on (the background, and at
    # the bottom the shoulders: a person moving back does not end at the waist).
    sx, sy = np.clip(sx, 0, WIDTH - 1), np.clip(sy, 0, HEIGHT - 1)
    # Each cell's box and the source quad its corners come from (PIL's order: upper
    # left, lower left, lower right, upper right).
    boxes = np.stack([gx[:-1, :-1], gy[:-1, :-1], gx[1:, 1:], gy[1:, 1:]], axis=-1)
    quads = np.stack(
        [
            sx[:-1, :-1], sy[:-1, :-1],
            sx[1:, :-1], sy[1:, :-1],
            sx[1:, 1:], sy[1:, 1:],
            sx[:-1, 1:], sy[:-1, 1:],
        ],
        axis=-1,
    )  # fmt: skip
    return [
        (tuple(box), tuple(quad))
        for box, quad in zip(
            boxes.reshape(-1, 4).astype(int).tolist(), quads.reshape(-1, 8).tolist(), strict=True
        )
    ]


def render_frame(
    pose: Pose = NEUTRAL, *, face: str = "astronaut", second_face: bool = False
) -> np.ndarray:
    """One picture (H×W×3 RGB, uint8) of ``face`` ("astronaut" or "grace") in ``pose``,
    with the smaller second face beside when asked."""
    base = _base(face)
    if pose == NEUTRAL:
        img = base.copy()
    else:
        img = base.transform(
            (WIDTH, HEIGHT),
            Image.Transform.MESH,
            _mesh(pose),
            Image.Resampling.BILINEAR,
            fillcolor=BACKGROUND,
        )
    if second_face:
        img.paste(_second_face(), (0, 0), _second_face())
    return np.asarray(img)


# ---- clips --------------------------------------------------------------------------


def frame_at(segments: Sequence[tuple[Pose, float]], t: float) -> Pose:
    """The pose at ``t`` seconds into the sequence (the last pose after its end)."""
    previous: Pose | None = None
    start = 0.0
    for n, (pose, seconds) in enumerate(segments):
        if t < start + seconds or n == len(segments) - 1:
            if previous is None or previous == pose:
                return pose
            ramp = min(TRANSITION_S, seconds / 2)
            return previous.towards(pose, _ease((t - start) / ramp))
        previous, start = pose, start + seconds
    return NEUTRAL


_Key = tuple[Pose, str, bool]  # a frame's pose, face and whether the second face shows


def _timeline(
    segments: Sequence[tuple[Pose, float]],
    fps: int,
    second_face_from: float | None,
    swap_face_at: float | None,
    black_from: float | None,
    black_until: float | None,
) -> Iterator[tuple[float, _Key | None]]:
    total = sum(seconds for _, seconds in segments)
    for n in range(round(total * fps)):
        t = n / fps
        if black_from is not None and black_from <= t and (black_until is None or t < black_until):
            yield t, None
            continue
        pose = frame_at(segments, t)
        pose = Pose(*(round(v, 4) for v in (pose.yaw, pose.nod, pose.roll, pose.scale)))
        face = "grace" if swap_face_at is not None and t >= swap_face_at else "astronaut"
        yield t, (pose, face, second_face_from is not None and t >= second_face_from)


def clip_frames(
    segments: Sequence[tuple[Pose, float]],
    *,
    fps: int = FPS,
    second_face_from: float | None = None,
    swap_face_at: float | None = None,
    black_from: float | None = None,
    black_until: float | None = None,
) -> Iterator[tuple[float, np.ndarray | None]]:
    """Each frame's time (s) and picture (H×W×3 RGB; None for a black, covered-camera
    frame), as ``write_clip`` writes them."""
    for t, key in _timeline(segments, fps, second_face_from, swap_face_at, black_from, black_until):
        yield t, None if key is None else _cached_frame(key)


@functools.lru_cache(maxsize=16)
def _cached_frame(key: _Key) -> np.ndarray:
    pose, face, second = key
    return render_frame(pose, face=face, second_face=second)


@functools.lru_cache(maxsize=16)
def _cached_i420(key: _Key | None) -> bytes:
    return _i420(None if key is None else _cached_frame(key))


def _i420(rgb: np.ndarray | None) -> bytes:
    """BT.601 limited-range I420 planes of an RGB picture (black when None)."""
    if rgb is None:
        y = np.full((HEIGHT, WIDTH), 16, np.uint8)
        c = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)
        return y.tobytes() + c.tobytes() + c.tobytes()
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.2568 * r + 0.5041 * g + 0.0979 * b
    small = (f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]) / 4
    sr, sg, sb = small[..., 0], small[..., 1], small[..., 2]
    u = 128 - 0.1482 * sr - 0.2910 * sg + 0.4392 * sb
    v = 128 + 0.4392 * sr - 0.3678 * sg - 0.0714 * sb
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, u, v))


def _y4m_header(fps: int) -> bytes:
    return f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode()


def write_y4m_frames(path: Path, frames: Iterator[np.ndarray | None], *, fps: int = FPS) -> Path:
    """Write RGB pictures (None = black) as a 640×480 I420 .y4m clip."""
    path = Path(path)
    with path.open("wb") as out:
        out.write(_y4m_header(fps))
        for rgb in frames:
            out.write(b"FRAME\n")
            out.write(_i420(rgb))
    return path


def write_clip(
    path: Path,
    segments: list[tuple[Pose, float]],
    *,
    fps: int = FPS,
    second_face_from: float | None = None,
    swap_face_at: float | None = None,
    black_from: float | None = None,
    black_until: float | None = None,
) -> Path:
    """Write the sequence of ``(pose, seconds)`` segments as a .y4m clip for Chromium's
    fake camera and return its path. From ``second_face_from`` seconds a smaller copy of
    the portrait stands beside the investor; from ``swap_face_at`` a different person
    (Grace Hopper) takes the investor's place, in the same poses; from ``black_from``
    (until ``black_until``, or the end) the camera is covered (black frames). Chromium
    loops the clip: see the module's note."""
    path = Path(path)
    timeline = _timeline(segments, fps, second_face_from, swap_face_at, black_from, black_until)
    with path.open("wb") as out:
        out.write(_y4m_header(fps))
        for _, key in timeline:
            out.write(b"FRAME\n")
            out.write(_cached_i420(key))
    return path


# ---- sound --------------------------------------------------------------------------


def write_silence_wav(path: Path, seconds: float, *, rate: int = 48_000) -> Path:
    """Mono 16-bit silence for Chromium's fake microphone."""
    path = Path(path)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * round(seconds * rate))
    return path


def synthesize_statement(
    path: Path, text: str = STATEMENT_ZH, *, speed: int = 420, rate: int = 48_000
) -> Path:
    """Speak ``text`` with espeak-ng's Mandarin voice (``cmn``) into a mono 16-bit wav at
    ``rate``, trimmed of leading and trailing silence. How
    ``tests/data/statement-zh.wav`` was made; needs the espeak-ng program."""
    import av

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        spoken = Path(tmp) / "spoken.wav"
        subprocess.run(
            ["espeak-ng", "-v", "cmn", "-s", str(speed), "-w", str(spoken), text], check=True
        )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = []
        with av.open(str(spoken)) as container:
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    samples = np.concatenate(chunks).astype(np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    if loud.size:
        pad = rate // 20
        samples = samples[max(0, loud[0] - pad) : loud[-1] + pad]
    path = Path(path)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path
