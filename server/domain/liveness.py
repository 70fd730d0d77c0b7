"""Liveness for one-way video (A18.3): a random sequence of head movements, checked live.

A18.3: the investor carries out "a series of random instructions" in real time, in the
agency's own technical environment. The server draws the sequence (:func:`draw_sequence`,
with ``random.SystemRandom`` in production so it cannot be predicted), and
:class:`LivenessCheck` follows the sampled live frames (:class:`FaceSample`, ~5 a second)
through it:

1. **baseline**: the investor looks at the camera; a few near-frontal samples with exactly
   one face give their own neutral pose (the median of each measure). Every instruction
   is measured against it, because faces and camera angles differ;
2. **instructions**, one at a time, each with its own time limit from the moment it is
   shown. A movement counts when its measure passes the threshold in
   ``samples_in_row`` samples in a row, and only after the instruction has seen the face
   at rest on that axis: a pose held over from the previous instruction cannot pass the
   next one. After a pass, the next instruction is shown once the face is back near
   neutral, or after ``settle_seconds`` at the latest.

Pure: samples and times in, :class:`Progress` events and a :class:`LivenessResult` out.
The caller owns the clock (``tick``) and the drawing of stills; :func:`frontal` says which
frames are straight-on enough for the face comparison (A18.4).

Pose conventions are :mod:`server.domain.face_pose`'s: yaw positive is the investor
turning to their own left, roll is the eye line's angle, pitch grows as the head bows,
scale is the eye distance over the picture's width.
"""

from __future__ import annotations

import functools
import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.domain.face_pose import FacePose, FaceSample

__all__ = [
    "LABELS",
    "MESSAGES",
    "FailReason",
    "Instruction",
    "LivenessCheck",
    "LivenessPolicy",
    "LivenessResult",
    "LivenessState",
    "Measurement",
    "Progress",
    "ProgressKind",
    "draw_sequence",
    "frontal",
    "sequence_allowed",
]


class Instruction(StrEnum):
    TURN_LEFT = "turn_left"  # the investor's own left: yaw grows
    TURN_RIGHT = "turn_right"  # yaw falls
    TILT = "tilt"  # towards either shoulder: |roll| grows
    NOD = "nod"  # the head bows (or tips back): pitch moves
    CLOSER = "closer"  # scale grows
    BACK = "back"  # scale falls


# (zh, en) as the investor reads them. Left and right are the investor's own: the preview
# they see is mirrored, the picture the server measures is not (face_pose.py).
LABELS: dict[Instruction, tuple[str, str]] = {
    Instruction.TURN_LEFT: ("请向左转头", "Turn your head to your left"),
    Instruction.TURN_RIGHT: ("请向右转头", "Turn your head to your right"),
    Instruction.TILT: ("请把头歪向一侧肩膀", "Tilt your head towards one shoulder"),
    Instruction.NOD: ("请点头", "Nod your head"),
    Instruction.CLOSER: ("请靠近摄像头", "Move closer to the camera"),
    Instruction.BACK: ("请离摄像头远一些", "Move back from the camera"),
}

# Opposite movements on one axis. Next to each other in a sequence, one movement and the
# return from it would count twice (turn left, then "turn right" back to the middle and a
# little beyond), so the draw never puts them side by side; the check fails the opposite
# movement as a wrong one.
_OPPOSITE: dict[Instruction, Instruction] = {
    Instruction.TURN_LEFT: Instruction.TURN_RIGHT,
    Instruction.TURN_RIGHT: Instruction.TURN_LEFT,
    Instruction.CLOSER: Instruction.BACK,
    Instruction.BACK: Instruction.CLOSER,
}


class FailReason(StrEnum):
    NOT_PERFORMED = "not_performed"  # the instruction's time ran out
    WRONG_MOVEMENT = "wrong_movement"  # the opposite movement on the same axis
    NO_FACE = "no_face"  # no face for longer than the tolerance (camera covered, left)
    SECOND_FACE = "second_face"  # another face in the picture, samples in a row
    FACE_CHANGED = "face_changed"  # a different person from the attempt's first face
    LEFT = "left"  # the investor left the page (the caller's abandon)
    NOT_FRONTAL = "not_frontal"  # no straight-on baseline in time


# (zh, en): what went wrong and what to do on the next attempt.
MESSAGES: dict[FailReason, tuple[str, str]] = {
    FailReason.NOT_PERFORMED: (
        "没有在规定时间内完成指令。请看清每条提示，按提示做出明显的动作后重试。",
        "An instruction was not carried out in time. Read each instruction and make the "
        "movement clearly, then try again.",
    ),
    FailReason.WRONG_MOVEMENT: (
        "动作与提示相反。请看清提示的方向（以您自己的左右为准）后重试。",
        "You made the opposite movement. Check the direction asked (your own left and "
        "right), then try again.",
    ),
    FailReason.NO_FACE: (
        "看不到您的脸。请让整张脸保持在画面中，不要遮挡摄像头，然后重试。",
        "Your face could not be seen. Keep your whole face in the picture and do not "
        "cover the camera, then try again.",
    ),
    FailReason.SECOND_FACE: (
        "画面中出现了其他人。请独自完成，确保画面中只有您本人，然后重试。",
        "Someone else appeared in the picture. Do this alone, with only you in view, "
        "then try again.",
    ),
    FailReason.FACE_CHANGED: (
        "画面中的人与开始时不一致。必须由本人独自完成全部步骤。",
        "The person in the picture changed. Every step must be done by you alone.",
    ),
    FailReason.LEFT: (
        "您离开了页面，检测已中断。请重新开始。",
        "You left the page, so the check stopped. Please start again.",
    ),
    FailReason.NOT_FRONTAL: (
        "没有拍到您的正脸。请正对摄像头，让脸位于画面中间，然后重试。",
        "We could not see your face straight on. Face the camera with your face in the "
        "middle of the picture, then try again.",
    ),
}

# A movement's axis is "at rest" within this share of its threshold of the baseline.
_REST = 0.5


@dataclass(frozen=True)
class LivenessPolicy:
    """How the check is run and judged (A18.3). The caller builds it from ``[oneway]``."""

    count: int = 3  # instructions per attempt, distinct
    seconds: float = 8.0  # time allowed for each instruction, from when it is shown
    baseline_seconds: float = 6.0  # time allowed to look at the camera first
    baseline_samples: int = 3  # near-frontal one-face samples the baseline takes
    # Thresholds, relative to the baseline. Tuned on synthetic video only (rendered heads
    # turned by known angles): check them against real recordings before relying on them.
    yaw: float = 0.22  # eye distances of nose offset (~25–35° of head turn)
    roll: float = 12.0  # degrees of eye-line tilt
    pitch: float = 0.10  # eye distances of nose drop, either way
    closer: float = 1.20  # eye distance × this or more
    back: float = 0.83  # eye distance × this or less
    # While the head is turned more than this (yaw from baseline), scale and pitch are not
    # read: a turn shortens the eye distance, which would look like moving back and like
    # the nose dropping.
    steady_yaw: float = 0.11
    samples_in_row: int = 2  # a pose counts when held this many samples in a row
    no_face_ms: int = 1500  # after the baseline, longer without a face fails
    second_face_samples: int = 2  # samples in a row with 2+ faces that fail
    drift_limit: float = 0.55  # embedding distance from the first face that fails
    settle_seconds: float = 1.5  # the longest wait for neutral before the next instruction
    # Near-frontal, absolute (for the baseline and the A18.4 stills).
    frontal_yaw: float = 0.15
    frontal_roll: float = 10.0

    def __post_init__(self) -> None:
        kinds = len(Instruction)
        checks: list[tuple[bool, str]] = [
            (1 <= self.count <= kinds, f"count must be between 1 and {kinds}"),
            (self.seconds > 0, "seconds must be positive"),
            (self.baseline_seconds > 0, "baseline_seconds must be positive"),
            (self.baseline_samples >= 1, "baseline_samples must be at least 1"),
            (self.yaw > 0, "yaw must be positive"),
            (0 < self.roll < 90, "roll must be between 0 and 90 degrees"),
            (self.pitch > 0, "pitch must be positive"),
            (self.closer > 1, "closer must be above 1"),
            (0 < self.back < 1, "back must be between 0 and 1"),
            (0 < self.steady_yaw, "steady_yaw must be positive"),
            (self.samples_in_row >= 1, "samples_in_row must be at least 1"),
            (self.no_face_ms >= 0, "no_face_ms must not be negative"),
            (self.second_face_samples >= 1, "second_face_samples must be at least 1"),
            (self.drift_limit > 0, "drift_limit must be positive"),
            (self.settle_seconds >= 0, "settle_seconds must not be negative"),
            (self.frontal_yaw > 0, "frontal_yaw must be positive"),
            (0 < self.frontal_roll < 90, "frontal_roll must be between 0 and 90 degrees"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"liveness policy: {message}")

    def threshold(self, instruction: Instruction) -> float:
        """The value the instruction's measure must reach (BACK: fall to)."""
        return {
            Instruction.TURN_LEFT: self.yaw,
            Instruction.TURN_RIGHT: self.yaw,
            Instruction.TILT: self.roll,
            Instruction.NOD: self.pitch,
            Instruction.CLOSER: self.closer,
            Instruction.BACK: self.back,
        }[instruction]


# --- the draw ----------------------------------------------------------------------------


def sequence_allowed(sequence: Sequence[Instruction]) -> bool:
    """Non-empty, distinct, and no instruction next to its opposite."""
    if not sequence or len(set(sequence)) != len(sequence):
        return False
    return all(_OPPOSITE.get(a) is not b for a, b in itertools.pairwise(sequence))


@functools.cache
def _allowed_sequences(count: int) -> tuple[tuple[Instruction, ...], ...]:
    # At most 6!/0! = 720 orders: listing them all makes the draw uniform over the allowed
    # ones with no retry loop.
    return tuple(s for s in itertools.permutations(Instruction, count) if sequence_allowed(s))


def draw_sequence(rng: random.Random, policy: LivenessPolicy) -> tuple[Instruction, ...]:
    """A18.3: ``policy.count`` distinct instructions in a random allowed order.

    Pass ``random.SystemRandom()`` in production (the sequence must not be predictable)
    and a seeded ``random.Random`` in tests."""
    return rng.choice(_allowed_sequences(policy.count))


# --- the pose relative to the baseline ---------------------------------------------------


def frontal(sample: FaceSample, baseline: FacePose | None, policy: LivenessPolicy) -> bool:
    """Exactly one face, looking at the camera: usable for the baseline and as a still for
    the face comparison (A18.4). Yaw and roll are absolute (straight-on is what the face
    comparison needs); pitch only means something against the investor's own neutral, so
    it is checked when a baseline is known (not mid-nod)."""
    if sample.faces != 1 or sample.pose is None:
        return False
    pose = sample.pose
    if abs(pose.yaw) >= policy.frontal_yaw or abs(pose.roll) >= policy.frontal_roll:
        return False
    return baseline is None or abs(pose.pitch - baseline.pitch) < policy.pitch * _REST


@dataclass(frozen=True)
class _Delta:
    yaw: float
    pitch: float
    roll: float
    ratio: float  # scale over the baseline's


def _delta(pose: FacePose, baseline: FacePose) -> _Delta:
    return _Delta(
        yaw=pose.yaw - baseline.yaw,
        pitch=pose.pitch - baseline.pitch,
        roll=pose.roll - baseline.roll,
        ratio=pose.scale / baseline.scale,
    )


def _scale_at_rest(d: _Delta, p: LivenessPolicy) -> bool:
    return 1 - (1 - p.back) * _REST <= d.ratio <= 1 + (p.closer - 1) * _REST


def _near_neutral(d: _Delta, p: LivenessPolicy) -> bool:
    return (
        abs(d.yaw) <= p.yaw * _REST
        and abs(d.roll) <= p.roll * _REST
        and abs(d.pitch) <= p.pitch * _REST
        and _scale_at_rest(d, p)
    )


@dataclass(frozen=True)
class _Reading:
    value: float | None  # the instruction's measure; None when not read (head turned)
    met: bool
    wrong: bool  # the opposite movement met its threshold
    at_rest: bool  # the instruction's axis is near the baseline


def _read(instruction: Instruction, d: _Delta, p: LivenessPolicy) -> _Reading:
    steady = abs(d.yaw) <= p.steady_yaw
    match instruction:
        case Instruction.TURN_LEFT | Instruction.TURN_RIGHT:
            value = d.yaw if instruction is Instruction.TURN_LEFT else -d.yaw
            # A18.3: turned the other way is the wrong movement; only the yaw axis.
            return _Reading(value, value >= p.yaw, value <= -p.yaw, abs(d.yaw) <= p.yaw * _REST)
        case Instruction.TILT:
            # Either shoulder; a turn does not move the eye line's angle, nothing is wrong.
            value = abs(d.roll)
            return _Reading(value, value >= p.roll, False, value <= p.roll * _REST)
        case Instruction.NOD:
            # Bowing and tipping back both count; a turn foreshortens the eye distance and
            # so raises pitch: only read with the head facing forward. Never wrong.
            rest = abs(d.pitch) <= p.pitch * _REST
            if not steady:
                return _Reading(None, False, False, rest)
            value = abs(d.pitch)
            return _Reading(value, value >= p.pitch, False, rest)
        case Instruction.CLOSER | Instruction.BACK:
            # A turn shortens the eye distance too: neither a pass nor a wrong movement.
            rest = _scale_at_rest(d, p)
            if not steady:
                return _Reading(None, False, False, rest)
            closer, back = d.ratio >= p.closer, d.ratio <= p.back
            if instruction is Instruction.CLOSER:
                return _Reading(d.ratio, closer, back, rest)
            return _Reading(d.ratio, back, closer, rest)
    raise AssertionError(instruction)  # pragma: no cover


# --- results -----------------------------------------------------------------------------


def _pose_dict(pose: FacePose) -> dict[str, float]:
    return {
        "yaw": round(pose.yaw, 4),
        "pitch": round(pose.pitch, 4),
        "roll": round(pose.roll, 4),
        "scale": round(pose.scale, 6),
    }


@dataclass(frozen=True)
class Measurement:
    """One instruction as carried out: what was reached against what was needed."""

    instruction: Instruction
    started_ms: int
    deadline_ms: int
    ended_ms: int | None  # None while it runs
    passed: bool
    # The furthest the measure went in the instruction's direction once the face had been
    # at rest: yaw change for turns (turn_right: its negative), |roll change| in degrees
    # for tilt, |pitch change| for nod, scale ratio for closer (highest) and back
    # (lowest). None when no sample was read.
    peak: float | None
    threshold: float
    samples: int  # samples fed while it ran

    def as_dict(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction.value,
            "started_ms": self.started_ms,
            "deadline_ms": self.deadline_ms,
            "ended_ms": self.ended_ms,
            "passed": self.passed,
            "peak": None if self.peak is None else round(self.peak, 4),
            "threshold": self.threshold,
            "samples": self.samples,
        }


class LivenessState(StrEnum):
    BASELINE = "baseline"
    INSTRUCTION = "instruction"
    PASSED = "passed"
    FAILED = "failed"


class ProgressKind(StrEnum):
    BASELINE_DONE = "baseline_done"
    INSTRUCTION_STARTED = "instruction_started"
    INSTRUCTION_PASSED = "instruction_passed"
    FAILED = "failed"
    PASSED = "passed"


@dataclass(frozen=True)
class Progress:
    """One step of the check, for the investor's page and the attempt's events."""

    kind: ProgressKind
    at_ms: int
    index: int | None = None
    instruction: Instruction | None = None
    deadline_ms: int | None = None  # instruction_started
    measurement: Measurement | None = None  # instruction_passed
    reason: FailReason | None = None  # failed
    baseline: FacePose | None = None  # baseline_done

    @property
    def detail(self) -> dict[str, Any]:
        """What the step measured, for the attempt's event log: the measurement of a
        passed instruction, the neutral pose of a finished baseline; else empty."""
        if self.measurement is not None:
            return self.measurement.as_dict()
        if self.baseline is not None:
            return {"baseline": _pose_dict(self.baseline)}
        return {}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "at_ms": self.at_ms}
        if self.index is not None:
            out["index"] = self.index
        if self.instruction is not None:
            zh, en = LABELS[self.instruction]
            out |= {"instruction": self.instruction.value, "label_zh": zh, "label_en": en}
        if self.deadline_ms is not None:
            out["deadline_ms"] = self.deadline_ms
        if self.measurement is not None:
            out["measurement"] = self.measurement.as_dict()
        if self.baseline is not None:
            out["baseline"] = _pose_dict(self.baseline)
        if self.reason is not None:
            zh, en = MESSAGES[self.reason]
            out |= {"reason": self.reason.value, "message_zh": zh, "message_en": en}
        return out


@dataclass(frozen=True)
class LivenessResult:
    """The check's outcome, kept with the attempt and in the evidence package."""

    passed: bool
    reason: FailReason | None  # set when failed; None when passed or still running
    sequence: tuple[Instruction, ...]
    measurements: tuple[Measurement, ...]  # the instructions shown, in order
    baseline: FacePose | None
    started_ms: int
    ended_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": None if self.reason is None else self.reason.value,
            "sequence": [i.value for i in self.sequence],
            "measurements": [m.as_dict() for m in self.measurements],
            "baseline": None if self.baseline is None else _pose_dict(self.baseline),
            "started_ms": self.started_ms,
            "ended_ms": self.ended_ms,
        }


# --- the check ---------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class _Attempt:
    """The instruction being carried out (mutable; Measurement is its snapshot)."""

    instruction: Instruction
    started_ms: int
    deadline_ms: int
    threshold: float
    armed: bool = False  # the face has been at rest on this axis since it started
    peak: float | None = None
    samples: int = 0
    met_run: int = 0
    wrong_run: int = 0

    def snapshot(self, ended_ms: int | None, passed: bool) -> Measurement:
        return Measurement(
            instruction=self.instruction,
            started_ms=self.started_ms,
            deadline_ms=self.deadline_ms,
            ended_ms=ended_ms,
            passed=passed,
            peak=self.peak,
            threshold=self.threshold,
            samples=self.samples,
        )


@dataclass
class _Baselining:
    deadline_ms: int
    poses: list[FacePose] = field(default_factory=list)
    saw_face: bool = False


class LivenessCheck:
    """A18.3: follows one attempt's samples through the baseline and the sequence.

    ``feed`` each sampled frame in time order and ``tick`` on a timer (time limits run out
    without frames too); both return the :class:`Progress` steps they caused. Once passed
    or failed, the check ignores further input."""

    def __init__(
        self, sequence: Sequence[Instruction], policy: LivenessPolicy, started_ms: int
    ) -> None:
        sequence = tuple(Instruction(i) for i in sequence)
        if not sequence_allowed(sequence):
            raise ValueError(
                "liveness sequence: instructions must be distinct, at least one, and none "
                "next to its opposite"
            )
        self._sequence = sequence
        self._policy = policy
        self._started_ms = started_ms
        self._now = started_ms
        self._state = LivenessState.BASELINE
        self._baselining = _Baselining(started_ms + _ms(policy.baseline_seconds))
        self._baseline: FacePose | None = None
        self._current = 0
        self._attempt: _Attempt | None = None
        self._measurements: list[Measurement] = []
        self._settle_from: int | None = None  # when the last pass happened, while settling
        self._neutral_run = 0
        self._second_face_run = 0
        self._last_face_ms = started_ms
        self._reason: FailReason | None = None
        self._ended_ms: int | None = None

    # -- what callers read

    @property
    def state(self) -> LivenessState:
        return self._state

    @property
    def current(self) -> int:
        """Index of the instruction shown last (0 during the baseline)."""
        return self._current

    @property
    def sequence(self) -> tuple[Instruction, ...]:
        return self._sequence

    @property
    def baseline(self) -> FacePose | None:
        return self._baseline

    @property
    def settling(self) -> bool:
        """Between a passed instruction and the next one being shown."""
        return self._settle_from is not None

    @property
    def finished(self) -> bool:
        return self._state in (LivenessState.PASSED, LivenessState.FAILED)

    def result(self) -> LivenessResult:
        """The outcome so far; ``passed`` and ``reason`` are final once ``finished``."""
        measurements = list(self._measurements)
        if self._attempt is not None:
            measurements.append(self._attempt.snapshot(None, False))
        return LivenessResult(
            passed=self._state is LivenessState.PASSED,
            reason=self._reason,
            sequence=self._sequence,
            measurements=tuple(measurements),
            baseline=self._baseline,
            started_ms=self._started_ms,
            ended_ms=self._ended_ms,
        )

    # -- input

    def feed(self, sample: FaceSample) -> list[Progress]:
        if self.finished:
            return []
        out = self._expire(sample.at_ms)
        if self.finished:
            return out
        p = self._policy
        # A18.3 done by the investor alone, in any phase.
        if sample.faces >= 2:
            self._second_face_run += 1
            if self._second_face_run >= p.second_face_samples:
                return self._fail(FailReason.SECOND_FACE, sample.at_ms, out)
        else:
            self._second_face_run = 0
        if sample.drift is not None and sample.drift > p.drift_limit:
            return self._fail(FailReason.FACE_CHANGED, sample.at_ms, out)
        if self._state is LivenessState.BASELINE:
            # The sample that completes the baseline is also the first instruction's first:
            # the face at rest when the instruction is shown.
            self._baseline_sample(sample, out)
        elif sample.faces >= 1 and sample.pose is not None:
            self._last_face_ms = sample.at_ms
        elif sample.at_ms - self._last_face_ms > p.no_face_ms:
            return self._fail(FailReason.NO_FACE, sample.at_ms, out)
        if self._settle_from is not None:
            self._settle(sample, out)
        if self._attempt is not None:
            self._measure(self._attempt, sample, out)
        return out

    def tick(self, now_ms: int) -> list[Progress]:
        """Time limits: the baseline's, the instruction's, and the end of settling."""
        if self.finished:
            return []
        return self._expire(now_ms)

    def abandon(
        self, reason: FailReason | str = FailReason.LEFT, at_ms: int | None = None
    ) -> list[Progress]:
        """The caller ends the check (the investor left the page, the call dropped).
        ``reason`` is a FailReason or its value (ValueError otherwise); ``at_ms`` defaults
        to the latest time the check has seen."""
        reason = FailReason(reason)
        if self.finished:
            return []
        return self._fail(reason, self._now if at_ms is None else at_ms, [])

    # -- phases

    def _expire(self, now: int) -> list[Progress]:
        self._now = max(self._now, now)
        out: list[Progress] = []
        if self._state is LivenessState.BASELINE:
            if now > self._baselining.deadline_ms:
                # Inclusive deadline: a sample at the deadline itself still counts.
                seen = self._baselining.saw_face
                return self._fail(FailReason.NOT_FRONTAL if seen else FailReason.NO_FACE, now, out)
            return out
        settle_ms = _ms(self._policy.settle_seconds)
        if self._settle_from is not None and now - self._settle_from >= settle_ms:
            self._start_next(now, out)
        if self._attempt is not None and now > self._attempt.deadline_ms:
            return self._fail(FailReason.NOT_PERFORMED, now, out)
        return out

    def _baseline_sample(self, sample: FaceSample, out: list[Progress]) -> None:
        b = self._baselining
        if sample.faces >= 1 and sample.pose is not None:
            b.saw_face = True
        if not frontal(sample, None, self._policy):
            return
        assert sample.pose is not None  # frontal() checked it
        b.poses.append(sample.pose)
        if len(b.poses) < self._policy.baseline_samples:
            return
        self._baseline = FacePose(
            yaw=statistics.median(q.yaw for q in b.poses),
            pitch=statistics.median(q.pitch for q in b.poses),
            roll=statistics.median(q.roll for q in b.poses),
            scale=statistics.median(q.scale for q in b.poses),
        )
        self._state = LivenessState.INSTRUCTION
        self._last_face_ms = sample.at_ms
        out.append(Progress(ProgressKind.BASELINE_DONE, sample.at_ms, baseline=self._baseline))
        self._start(0, sample.at_ms, out)

    def _start(self, index: int, now: int, out: list[Progress]) -> None:
        instruction = self._sequence[index]
        deadline = now + _ms(self._policy.seconds)
        self._current = index
        self._settle_from = None
        self._neutral_run = 0
        self._attempt = _Attempt(instruction, now, deadline, self._policy.threshold(instruction))
        out.append(
            Progress(
                ProgressKind.INSTRUCTION_STARTED,
                now,
                index=index,
                instruction=instruction,
                deadline_ms=deadline,
            )
        )

    def _start_next(self, now: int, out: list[Progress]) -> None:
        self._start(self._current + 1, now, out)

    def _settle(self, sample: FaceSample, out: list[Progress]) -> None:
        """After a pass: wait for the face to come back near neutral (samples in a row)."""
        assert self._baseline is not None
        neutral = (
            sample.faces == 1
            and sample.pose is not None
            and _near_neutral(_delta(sample.pose, self._baseline), self._policy)
        )
        self._neutral_run = self._neutral_run + 1 if neutral else 0
        if self._neutral_run >= self._policy.samples_in_row:
            self._start_next(sample.at_ms, out)

    def _measure(self, a: _Attempt, sample: FaceSample, out: list[Progress]) -> None:
        assert self._baseline is not None
        p = self._policy
        a.samples += 1
        if sample.faces != 1 or sample.pose is None:
            a.met_run = a.wrong_run = 0
            return
        reading = _read(a.instruction, _delta(sample.pose, self._baseline), p)
        if reading.at_rest:
            a.armed = True
        if not a.armed:
            # A pose held over from before this instruction was shown does not count,
            # either way: the movement must start from rest.
            return
        if reading.value is not None:
            if a.peak is None:
                a.peak = reading.value
            elif a.instruction is Instruction.BACK:
                a.peak = min(a.peak, reading.value)
            else:
                a.peak = max(a.peak, reading.value)
        a.met_run = a.met_run + 1 if reading.met else 0
        a.wrong_run = a.wrong_run + 1 if reading.wrong else 0
        if a.met_run >= p.samples_in_row:
            self._pass(a, sample.at_ms, out)
        elif a.wrong_run >= p.samples_in_row:
            self._fail(FailReason.WRONG_MOVEMENT, sample.at_ms, out)

    def _pass(self, a: _Attempt, now: int, out: list[Progress]) -> None:
        measurement = a.snapshot(now, True)
        self._measurements.append(measurement)
        self._attempt = None
        out.append(
            Progress(
                ProgressKind.INSTRUCTION_PASSED,
                now,
                index=self._current,
                instruction=a.instruction,
                measurement=measurement,
            )
        )
        if self._current + 1 >= len(self._sequence):
            self._state = LivenessState.PASSED
            self._ended_ms = now
            out.append(Progress(ProgressKind.PASSED, now))
            return
        self._settle_from = now
        self._neutral_run = 0
        if self._policy.settle_seconds <= 0:
            self._start_next(now, out)

    def _fail(self, reason: FailReason, now: int, out: list[Progress]) -> list[Progress]:
        if self._attempt is not None:
            self._measurements.append(self._attempt.snapshot(now, False))
            self._attempt = None
        self._settle_from = None
        self._state = LivenessState.FAILED
        self._reason = reason
        self._ended_ms = now
        out.append(Progress(ProgressKind.FAILED, now, reason=reason))
        return out
