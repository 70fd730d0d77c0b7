"""Quality control of the one-way statement (A18.5): usable, or redone and why. Pure.

A18.5: the investor records, live, a statement that they know the market's risks, have
read and understood the account agreement and open the account of their own free will;
the agency must control the recording's quality by technical means so that it is
complete and valid. This module judges one take from what the analyzer measured over the
statement's window: sampled frames (:class:`FaceSample`), voice windows
(:class:`VoiceSample`) and the video's own facts (:class:`VideoFacts`). Every problem is a
:class:`Finding` the investor is shown before redoing the take, so one retry can fix them
all; a take with no finding is usable and goes to the witness's review (A18.6).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.domain.face_pose import FacePose, FaceSample
from server.domain.voice_sample import VoiceSample

__all__ = [
    "MESSAGES",
    "Finding",
    "FindingCode",
    "QualityPolicy",
    "QualityReport",
    "VideoFacts",
    "assess_statement",
]


class FindingCode(StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LOW_RESOLUTION = "low_resolution"
    LOW_FRAME_RATE = "low_frame_rate"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    FACE_MISSING = "face_missing"
    NOT_FRONTAL = "not_frontal"
    SECOND_FACE = "second_face"
    NO_VOICE = "no_voice"
    VOICE_CLIPPED = "voice_clipped"


# (zh, en): what to do differently on the next take.
MESSAGES: dict[FindingCode, tuple[str, str]] = {
    FindingCode.TOO_SHORT: (
        "录制时间太短。请完整地朗读全部声明后再结束录制。",
        "The recording is too short. Read the whole statement aloud before you stop.",
    ),
    FindingCode.TOO_LONG: (
        "录制时间太长。请只朗读声明，读完后立即结束录制。",
        "The recording is too long. Read only the statement, and stop as soon as you finish.",
    ),
    FindingCode.LOW_RESOLUTION: (
        "画面分辨率太低。请换用更清晰的摄像头或设备后重新录制。",
        "The picture's resolution is too low. Use a better camera or another device.",
    ),
    FindingCode.LOW_FRAME_RATE: (
        "画面卡顿。请关闭其他应用、换用更好的网络后重新录制。",
        "The video stuttered. Close other apps and use a better network, then record again.",
    ),
    FindingCode.TOO_DARK: (
        "画面太暗。请到光线更好的地方，让光照在脸上后重新录制。",
        "The picture is too dark. Move somewhere brighter, with light on your face.",
    ),
    FindingCode.TOO_BRIGHT: (
        "画面太亮。请避开强光或逆光（不要背对窗户）后重新录制。",
        "The picture is too bright. Move out of strong light and do not sit with a window "
        "behind you.",
    ),
    FindingCode.FACE_MISSING: (
        "录制中经常看不到您的脸。请让整张脸始终保持在画面中。",
        "Your face was often out of the picture. Keep your whole face in view throughout.",
    ),
    FindingCode.NOT_FRONTAL: (
        "录制中您的脸经常没有正对摄像头。朗读时请正对摄像头。",
        "Your face was often not turned to the camera. Face the camera while you read.",
    ),
    FindingCode.SECOND_FACE: (
        "画面中出现了其他人。请独自录制，确保画面中只有您本人。",
        "Someone else appeared in the picture. Record alone, with only you in view.",
    ),
    FindingCode.NO_VOICE: (
        "没有听清您的声音。请在安静的地方，清楚、大声地朗读全部声明。",
        "We could not hear you clearly. In a quiet place, read the whole statement aloud, clearly.",
    ),
    FindingCode.VOICE_CLIPPED: (
        "声音过大，已失真。请离麦克风稍远一些，或把音量放低一些。",
        "Your voice was too loud and distorted. Hold the device a little further away or "
        "speak a little more softly.",
    ),
}


@dataclass(frozen=True)
class QualityPolicy:
    """What a usable take needs (A18.5). Built from ``[oneway]`` by the caller."""

    # Sides of the picture; either orientation (a phone held upright sends 360×480).
    min_width: int = 480
    min_height: int = 360
    min_fps: float = 10.0
    # Median frame brightness (luma, 0–255) must lie within these.
    min_brightness: float = 40.0
    max_brightness: float = 230.0
    # Shares of the sampled frames: a face in view, and (of those with a face) facing the
    # camera.
    min_face_share: float = 0.90
    min_frontal_share: float = 0.80
    # Near-frontal: absolute yaw (eye distances) and roll (degrees); pitch relative to the
    # investor's baseline when known. Looser in pitch than the liveness stills: people
    # glance down at the statement on the screen while reading it.
    frontal_yaw: float = 0.15
    frontal_roll: float = 10.0
    frontal_pitch: float = 0.15
    # This many sampled frames in a row with two or more faces fail the take.
    second_face_samples: int = 2
    # A voice window is speech at or above this probability (silero's usual cut-off).
    speech_probability: float = 0.5
    # Share of the voice windows' time that is speech, and speech in total.
    min_speech_share: float = 0.35
    min_speech_seconds: float = 3.0
    # Share of the speech windows' samples that are clipped, at or above which the take
    # fails (time-weighted).
    max_clipped: float = 0.01
    min_seconds: float = 5.0
    max_seconds: float = 90.0

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.min_width > 0 and self.min_height > 0, "minimum sides must be positive"),
            (self.min_fps > 0, "min_fps must be positive"),
            (
                0 <= self.min_brightness < self.max_brightness <= 255,
                "brightness must satisfy 0 <= min_brightness < max_brightness <= 255",
            ),
            (0 < self.min_face_share <= 1, "min_face_share must be in (0, 1]"),
            (0 < self.min_frontal_share <= 1, "min_frontal_share must be in (0, 1]"),
            (self.frontal_yaw > 0, "frontal_yaw must be positive"),
            (0 < self.frontal_roll < 90, "frontal_roll must be between 0 and 90 degrees"),
            (self.frontal_pitch > 0, "frontal_pitch must be positive"),
            (self.second_face_samples >= 1, "second_face_samples must be at least 1"),
            (0 < self.speech_probability < 1, "speech_probability must be in (0, 1)"),
            (0 <= self.min_speech_share <= 1, "min_speech_share must be in [0, 1]"),
            (self.min_speech_seconds >= 0, "min_speech_seconds must not be negative"),
            (0 < self.max_clipped <= 1, "max_clipped must be in (0, 1]"),
            (
                0 < self.min_seconds < self.max_seconds,
                "durations must satisfy 0 < min_seconds < max_seconds",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"statement quality policy: {message}")


@dataclass(frozen=True)
class VideoFacts:
    """The statement window's video as the analyzer counted it."""

    width: int
    height: int
    frames: int  # frames received within the window
    first_ms: int | None  # session clock of the first and last of them
    last_ms: int | None


@dataclass(frozen=True)
class Finding:
    code: FindingCode
    message_en: str
    message_zh: str
    # What was measured and the bound it failed (a minimum or a maximum, by code):
    # seconds, "W×H", frames a second, luma, shares 0–1, sampled frames in a row.
    measured: float | str
    limit: float | str

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message_en": self.message_en,
            "message_zh": self.message_zh,
            "measured": _rounded(self.measured),
            "limit": _rounded(self.limit),
        }


@dataclass(frozen=True)
class QualityReport:
    passed: bool
    findings: tuple[Finding, ...]
    # Everything measured, failed or not, for the reviewer and the evidence package.
    measured: dict[str, float | str | None] = field(default_factory=dict)

    @property
    def codes(self) -> tuple[FindingCode, ...]:
        return tuple(f.code for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": [f.as_dict() for f in self.findings],
            "measured": {k: _rounded(v) for k, v in self.measured.items()},
        }


def _rounded(value: float | str | None) -> float | str | None:
    return round(value, 4) if isinstance(value, float) else value


def _finding(code: FindingCode, measured: float | str, limit: float | str) -> Finding:
    zh, en = MESSAGES[code]
    return Finding(code, en, zh, measured, limit)


def _frontal(pose: FacePose, baseline: FacePose | None, p: QualityPolicy) -> bool:
    if abs(pose.yaw) >= p.frontal_yaw or abs(pose.roll) >= p.frontal_roll:
        return False
    return baseline is None or abs(pose.pitch - baseline.pitch) < p.frontal_pitch


def _longest_run(flags: Iterable[bool]) -> int:
    longest = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest


def assess_statement(
    face_samples: Iterable[FaceSample],
    voice_samples: Iterable[VoiceSample],
    facts: VideoFacts,
    window_start_ms: int,
    window_end_ms: int,
    baseline: FacePose | None,
    policy: QualityPolicy,
) -> QualityReport:
    """A18.5: every finding against the take recorded from ``window_start_ms`` (inclusive)
    to ``window_end_ms`` (exclusive); samples outside the window are ignored. ``baseline``
    is the investor's neutral pose from the liveness check, when there was one."""
    if window_end_ms < window_start_ms:
        raise ValueError("the statement window ends before it starts")
    p = policy
    faces = [s for s in face_samples if window_start_ms <= s.at_ms < window_end_ms]
    voices = [v for v in voice_samples if window_start_ms <= v.at_ms < window_end_ms]
    findings: list[Finding] = []
    measured: dict[str, float | str | None] = {}

    # A18.5 complete: the whole statement, and only it.
    seconds = (window_end_ms - window_start_ms) / 1000
    measured["seconds"] = seconds
    if seconds < p.min_seconds:
        findings.append(_finding(FindingCode.TOO_SHORT, seconds, p.min_seconds))
    elif seconds > p.max_seconds:
        findings.append(_finding(FindingCode.TOO_LONG, seconds, p.max_seconds))

    # A19 clear and legible: the picture itself. Sides compared whatever the orientation.
    size = f"{facts.width}x{facts.height}"
    measured["resolution"] = size
    short_side, long_side = sorted((facts.width, facts.height))
    need_short, need_long = sorted((p.min_width, p.min_height))
    if short_side < need_short or long_side < need_long:
        findings.append(_finding(FindingCode.LOW_RESOLUTION, size, f"{p.min_width}x{p.min_height}"))
    # Frames over the whole window, not between the first and last frame: a stall at
    # either end (the picture froze, or came late) lowers it too.
    fps = facts.frames * 1000 / (window_end_ms - window_start_ms) if seconds > 0 else 0.0
    measured["fps"] = fps
    if fps < p.min_fps:
        findings.append(_finding(FindingCode.LOW_FRAME_RATE, fps, p.min_fps))

    brightness = statistics.median(s.brightness for s in faces) if faces else None
    measured["brightness"] = brightness
    if brightness is not None and brightness < p.min_brightness:
        findings.append(_finding(FindingCode.TOO_DARK, brightness, p.min_brightness))
    elif brightness is not None and brightness > p.max_brightness:
        findings.append(_finding(FindingCode.TOO_BRIGHT, brightness, p.max_brightness))

    # The investor in view, facing the camera, alone.
    with_face = [s for s in faces if s.faces >= 1 and s.pose is not None]
    face_share = len(with_face) / len(faces) if faces else 0.0
    measured["face_share"] = face_share
    if face_share < p.min_face_share:
        findings.append(_finding(FindingCode.FACE_MISSING, face_share, p.min_face_share))
    if with_face:
        facing = sum(1 for s in with_face if s.pose and _frontal(s.pose, baseline, p))
        frontal_share = facing / len(with_face)
        measured["frontal_share"] = frontal_share
        if frontal_share < p.min_frontal_share:
            findings.append(_finding(FindingCode.NOT_FRONTAL, frontal_share, p.min_frontal_share))
    else:
        measured["frontal_share"] = None  # no face at all: face_missing says it
    second_run = _longest_run(s.faces >= 2 for s in faces)
    measured["second_face_run"] = second_run
    if second_run >= p.second_face_samples:
        findings.append(
            _finding(FindingCode.SECOND_FACE, float(second_run), float(p.second_face_samples))
        )

    # The statement heard: enough speech, not distorted.
    speech = [v for v in voices if v.speech >= p.speech_probability]
    voice_ms = sum(v.duration_ms for v in voices)
    speech_ms = sum(v.duration_ms for v in speech)
    speech_share = speech_ms / voice_ms if voice_ms > 0 else 0.0
    speech_seconds = speech_ms / 1000
    measured["speech_share"] = speech_share
    measured["speech_seconds"] = speech_seconds
    if speech_seconds < p.min_speech_seconds:
        findings.append(_finding(FindingCode.NO_VOICE, speech_seconds, p.min_speech_seconds))
    elif speech_share < p.min_speech_share:
        findings.append(_finding(FindingCode.NO_VOICE, speech_share, p.min_speech_share))
    if speech_ms > 0:
        clipped = sum(v.clipped * v.duration_ms for v in speech) / speech_ms
        measured["clipped"] = clipped
        if clipped >= p.max_clipped:
            findings.append(_finding(FindingCode.VOICE_CLIPPED, clipped, p.max_clipped))
    else:
        measured["clipped"] = None

    return QualityReport(passed=not findings, findings=tuple(findings), measured=measured)
