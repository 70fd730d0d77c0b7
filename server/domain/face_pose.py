"""A face's pose from dlib's 5-point landmarks (A18.3). Pure: numbers in, numbers out.

dlib's 5-point model (the only landmark model we may use: the 68-point one's training
data forbids commercial use) gives two corners of each eye and the base of the nose. From
them, measured in the picture the server receives (the camera's own picture, not the
mirrored preview the investor sees):

- ``roll``: the eye line's angle, in degrees; positive when the line falls to the
  picture's right (the investor tilts their head towards their own left shoulder);
- ``yaw``: the nose's sideways offset from the point between the eyes, in eye distances,
  measured along the (un-rolled) eye line; positive when the nose moves to the picture's
  right, which is the investor turning to **their own left**;
- ``pitch``: the nose's drop below the eye line, in eye distances. Only its change from
  the investor's own neutral means anything (faces differ): it grows as the head bows
  and shrinks as the head tips back;
- ``scale``: the eye distance as a share of the picture's width (closer → larger).

These are 2-D proxies, not angles of a head model: good enough to tell whether an
instruction was carried out against the investor's own neutral pose, not to measure it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FacePose", "FaceSample", "pose_from_points"]

Point = tuple[float, float]


@dataclass(frozen=True)
class FacePose:
    yaw: float
    pitch: float
    roll: float
    scale: float


@dataclass(frozen=True)
class FaceSample:
    """One sampled video frame as the liveness and quality checks see it."""

    # Session clock (ms since the session started) of the frame.
    at_ms: int
    width: int
    height: int
    # Faces the detector found; the pose and box are of the largest one.
    faces: int
    pose: FacePose | None = None
    # The largest face's box (left, top, right, bottom) in pixels.
    box: tuple[int, int, int, int] | None = None
    # Mean luma of the frame, 0–255 (a covered camera is near 0).
    brightness: float = 0.0
    # Distance of the largest face's embedding from the attempt's first face embedding,
    # when one was computed for this frame (dlib's embeddings: same person ≲ 0.45).
    drift: float | None = None


def pose_from_points(points: list[Point], frame_width: int) -> FacePose:
    """The pose from the five points in dlib's order: two corners of one eye, two of the
    other, then the nose base. Which eye comes first does not matter."""
    if len(points) != 5 or frame_width <= 0:
        raise ValueError("five landmarks and a positive frame width are needed")
    a = ((points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2)
    b = ((points[2][0] + points[3][0]) / 2, (points[2][1] + points[3][1]) / 2)
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    dx, dy = right[0] - left[0], right[1] - left[1]
    eye_distance = math.hypot(dx, dy)
    if eye_distance <= 0:
        raise ValueError("the eyes coincide")
    roll = math.degrees(math.atan2(dy, dx))
    mid = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2)
    nx, ny = points[4][0] - mid[0], points[4][1] - mid[1]
    # Into the eye line's frame: along it (yaw) and perpendicular, downwards (pitch).
    cos, sin = dx / eye_distance, dy / eye_distance
    along = nx * cos + ny * sin
    across = -nx * sin + ny * cos
    return FacePose(
        yaw=along / eye_distance,
        pitch=across / eye_distance,
        roll=roll,
        scale=eye_distance / frame_width,
    )
