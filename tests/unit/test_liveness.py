"""A18.3 liveness: the draw's rules, the baseline, each instruction passed and not, the
opposite movement, one held pose for two instructions, time limits, and the investor not
alone (no face, a second face, a different face, leaving)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Mapping
from typing import Any

import pytest

from server.domain.face_pose import FacePose, FaceSample
from server.domain.liveness import (
    LABELS,
    MESSAGES,
    FailReason,
    Instruction,
    LivenessCheck,
    LivenessPolicy,
    LivenessState,
    Progress,
    ProgressKind,
    draw_sequence,
    frontal,
    sequence_allowed,
)

P = LivenessPolicy()
IN = Instruction
# The investor's neutral pose in these tests (every value exact in binary where it matters).
BASE = FacePose(yaw=0.0, pitch=0.5, roll=0.0, scale=0.25)
STEP = 200  # ms between sampled frames (~5 a second)

# A pose that clearly carries out each instruction against BASE.
DONE: dict[Instruction, dict[str, float]] = {
    IN.TURN_LEFT: {"yaw": 0.30},
    IN.TURN_RIGHT: {"yaw": -0.30},
    IN.TILT: {"roll": 16.0},
    IN.NOD: {"pitch": 0.65},
    IN.CLOSER: {"scale": 0.32},
    IN.BACK: {"scale": 0.19},
}


def face(at: int, faces: int = 1, drift: float | None = None, **pose: float) -> FaceSample:
    values = {"yaw": BASE.yaw, "pitch": BASE.pitch, "roll": BASE.roll, "scale": BASE.scale}
    values |= pose
    return FaceSample(
        at_ms=at,
        width=640,
        height=480,
        faces=faces,
        pose=FacePose(**values),
        box=(200, 120, 440, 400),
        brightness=120.0,
        drift=drift,
    )


def posed(at: int, pose: Mapping[str, float]) -> FaceSample:
    return face(
        at,
        yaw=pose.get("yaw", BASE.yaw),
        pitch=pose.get("pitch", BASE.pitch),
        roll=pose.get("roll", BASE.roll),
        scale=pose.get("scale", BASE.scale),
    )


def empty(at: int) -> FaceSample:
    return FaceSample(at_ms=at, width=640, height=480, faces=0, brightness=3.0)


def kinds(events: list[Progress]) -> list[ProgressKind]:
    return [e.kind for e in events]


def feed_all(check: LivenessCheck, samples: list[FaceSample]) -> list[Progress]:
    out: list[Progress] = []
    for sample in samples:
        out += check.feed(sample)
    return out


def started(
    sequence: tuple[Instruction, ...], policy: LivenessPolicy = P
) -> tuple[LivenessCheck, int]:
    """A check past its baseline (three frontal samples); returns it and the next time."""
    check = LivenessCheck(sequence, policy, started_ms=0)
    events = feed_all(check, [face(0), face(STEP), face(2 * STEP)])
    assert kinds(events) == [ProgressKind.BASELINE_DONE, ProgressKind.INSTRUCTION_STARTED]
    return check, 3 * STEP


def hold(t: int, n: int, **pose: float) -> list[FaceSample]:
    return [posed(t + i * STEP, pose) for i in range(n)]


# --- policy --------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    assert (P.count, P.seconds, P.baseline_seconds) == (3, 8.0, 6.0)
    assert (P.yaw, P.roll, P.pitch, P.closer, P.back) == (0.22, 12.0, 0.10, 1.20, 0.83)
    assert (P.samples_in_row, P.no_face_ms, P.second_face_samples) == (2, 1500, 2)
    assert P.drift_limit == 0.55
    assert P.settle_seconds == 1.5
    assert [P.threshold(i) for i in IN] == [0.22, 0.22, 12.0, 0.10, 1.20, 0.83]


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"count": 0}, "count"),
        ({"count": 7}, "count"),
        ({"seconds": 0}, "seconds"),
        ({"baseline_seconds": -1}, "baseline_seconds"),
        ({"baseline_samples": 0}, "baseline_samples"),
        ({"yaw": 0}, "yaw"),
        ({"roll": 0}, "roll"),
        ({"roll": 90}, "roll"),
        ({"pitch": -0.1}, "pitch"),
        ({"closer": 1.0}, "closer"),
        ({"back": 1.0}, "back"),
        ({"back": 0}, "back"),
        ({"steady_yaw": 0}, "steady_yaw"),
        ({"samples_in_row": 0}, "samples_in_row"),
        ({"no_face_ms": -1}, "no_face_ms"),
        ({"second_face_samples": 0}, "second_face_samples"),
        ({"drift_limit": 0}, "drift_limit"),
        ({"settle_seconds": -0.5}, "settle_seconds"),
        ({"frontal_yaw": 0}, "frontal_yaw"),
        ({"frontal_roll": 0}, "frontal_roll"),
    ],
)
def test_policy_rejects_bad_values(kw: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        LivenessPolicy(**kw)


def test_policy_accepts_its_edges() -> None:
    LivenessPolicy(count=1, no_face_ms=0, settle_seconds=0)
    LivenessPolicy(count=6)


# --- the draw -------------------------------------------------------------------------------


@pytest.mark.parametrize("count", range(1, 7))
def test_the_draw_keeps_its_rules_over_many_seeds(count: int) -> None:
    policy = LivenessPolicy(count=count)
    seen: set[tuple[Instruction, ...]] = set()
    for seed in range(400):
        sequence = draw_sequence(random.Random(seed), policy)
        assert len(sequence) == count
        assert len(set(sequence)) == count
        for a, b in itertools.pairwise(sequence):
            assert {a, b} != {IN.TURN_LEFT, IN.TURN_RIGHT}
            assert {a, b} != {IN.CLOSER, IN.BACK}
        assert sequence_allowed(sequence)
        seen.add(sequence)
    if count >= 2:
        assert len(seen) > 20  # random, not a handful of fixed orders
    assert {i for s in seen for i in s} == set(IN)  # every instruction is drawn


def test_the_draw_is_reproducible_with_a_seed_and_works_with_system_random() -> None:
    assert draw_sequence(random.Random(7), P) == draw_sequence(random.Random(7), P)
    assert sequence_allowed(draw_sequence(random.SystemRandom(), P))


def test_the_first_instruction_is_spread_over_all_six() -> None:
    firsts = [draw_sequence(random.Random(seed), P)[0] for seed in range(600)]
    for instruction in IN:
        assert firsts.count(instruction) > 50  # ~100 each if uniform


@pytest.mark.parametrize(
    ("sequence", "ok"),
    [
        ((IN.TURN_LEFT, IN.TILT, IN.TURN_RIGHT), True),
        ((IN.CLOSER, IN.NOD, IN.BACK), True),
        ((IN.TURN_LEFT, IN.TURN_RIGHT), False),
        ((IN.TURN_RIGHT, IN.TURN_LEFT), False),
        ((IN.NOD, IN.CLOSER, IN.BACK), False),
        ((IN.BACK, IN.CLOSER), False),
        ((IN.NOD, IN.NOD), False),
        ((), False),
    ],
)
def test_sequence_allowed(sequence: tuple[Instruction, ...], ok: bool) -> None:
    assert sequence_allowed(sequence) is ok


def test_the_check_refuses_a_sequence_the_draw_would_not_make() -> None:
    with pytest.raises(ValueError, match="opposite"):
        LivenessCheck((IN.CLOSER, IN.BACK), P, started_ms=0)
    with pytest.raises(ValueError):
        LivenessCheck((), P, started_ms=0)


def test_every_instruction_and_reason_has_both_languages() -> None:
    assert set(LABELS) == set(IN)
    assert set(MESSAGES) == set(FailReason)
    for zh, en in [*LABELS.values(), *MESSAGES.values()]:
        assert zh and en and zh != en
    assert LABELS[IN.TURN_LEFT] == ("请向左转头", "Turn your head to your left")


# --- the baseline ---------------------------------------------------------------------------


def test_a_new_check_is_in_its_baseline() -> None:
    check = LivenessCheck([IN.NOD, IN.TILT], P, started_ms=500)
    assert check.state is LivenessState.BASELINE and check.current == 0
    assert check.sequence == (IN.NOD, IN.TILT) and check.baseline is None
    assert not check.finished and not check.settling
    assert check.tick(6500) == []


def test_the_baseline_is_the_median_of_frontal_samples() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=1000)
    events = feed_all(
        check,
        [
            face(1000, yaw=0.10, pitch=0.50, roll=2.0, scale=0.24),
            face(1200, yaw=0.40),  # turned: not frontal, not counted
            face(1400, faces=2),  # two faces: not counted (one sample does not fail)
            face(1600, yaw=-0.05, pitch=0.56, roll=-4.0, scale=0.26),
            face(1800, yaw=0.02, pitch=0.52, roll=1.0, scale=0.25),
        ],
    )
    assert kinds(events) == [ProgressKind.BASELINE_DONE, ProgressKind.INSTRUCTION_STARTED]
    assert check.baseline == FacePose(yaw=0.02, pitch=0.52, roll=1.0, scale=0.25)
    assert check.state is LivenessState.INSTRUCTION
    begun = events[1]
    assert (begun.index, begun.instruction, begun.at_ms) == (0, IN.TILT, 1800)
    assert begun.deadline_ms == 1800 + 8000


def test_no_face_during_the_baseline_fails_no_face_at_its_deadline() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    assert feed_all(check, [empty(t) for t in range(0, 6001, STEP)]) == []
    assert check.tick(6000) == []  # the deadline itself is still in time
    events = check.tick(6001)
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.NO_FACE
    assert check.state is LivenessState.FAILED


def test_a_face_never_frontal_fails_not_frontal() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    samples = [face(t, yaw=0.15) for t in range(0, 6001, STEP)]  # |yaw| < 0.15 needed
    samples += [face(t, roll=10.0) for t in range(100, 6001, STEP)]
    samples.sort(key=lambda s: s.at_ms)
    assert feed_all(check, samples) == []
    events = check.feed(face(6200))  # in time order; past the deadline: fails, not counted
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.NOT_FRONTAL
    assert check.baseline is None


def test_a_sample_at_the_baseline_deadline_still_counts() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    feed_all(check, [face(5000), face(5500)])
    events = check.feed(face(6000))
    assert kinds(events) == [ProgressKind.BASELINE_DONE, ProgressKind.INSTRUCTION_STARTED]


# --- each instruction, performed and not -----------------------------------------------------


@pytest.mark.parametrize("instruction", list(IN))
def test_each_instruction_passes_when_performed(instruction: Instruction) -> None:
    check, t = started((instruction,))
    events = feed_all(check, hold(t, 2, **DONE[instruction]))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]
    measurement = events[0].measurement
    assert measurement is not None
    assert measurement.passed and measurement.instruction is instruction
    assert (measurement.started_ms, measurement.ended_ms) == (2 * STEP, t + STEP)
    assert measurement.samples == 3  # the baseline's last sample is its first
    assert measurement.threshold == P.threshold(instruction)
    result = check.result()
    assert result.passed and result.reason is None and result.ended_ms == t + STEP
    assert check.state is LivenessState.PASSED


@pytest.mark.parametrize(
    ("instruction", "peak"),
    [
        (IN.TURN_LEFT, 0.30),
        (IN.TURN_RIGHT, 0.30),
        (IN.TILT, 16.0),
        (IN.NOD, 0.15),
        (IN.CLOSER, 1.28),
        (IN.BACK, 0.76),
    ],
)
def test_the_peak_is_in_the_instructions_own_direction(
    instruction: Instruction, peak: float
) -> None:
    check, t = started((instruction,))
    events = feed_all(check, hold(t, 2, **DONE[instruction]))
    measurement = events[0].measurement
    assert measurement is not None and measurement.peak == pytest.approx(peak)


@pytest.mark.parametrize("instruction", list(IN))
def test_each_instruction_fails_when_not_performed(instruction: Instruction) -> None:
    check, t = started((instruction,))
    deadline = 2 * STEP + 8000
    assert feed_all(check, [face(x) for x in range(t, deadline + 1, STEP)]) == []
    assert check.tick(deadline) == []
    events = check.tick(deadline + 1)
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.NOT_PERFORMED
    result = check.result()
    assert not result.passed and result.reason is FailReason.NOT_PERFORMED
    (measurement,) = result.measurements
    assert not measurement.passed and measurement.ended_ms == deadline + 1
    assert measurement.peak == (1.0 if instruction in (IN.CLOSER, IN.BACK) else 0.0)


def test_a_late_sample_fails_the_instruction_without_counting() -> None:
    check, _ = started((IN.TURN_LEFT,))
    deadline = 2 * STEP + 8000
    check.feed(face(deadline - 100, yaw=0.3))
    events = check.feed(face(deadline + 100, yaw=0.3))  # the second of the run, too late
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.NOT_PERFORMED


def test_a_pose_must_be_held_samples_in_a_row() -> None:
    check, t = started((IN.TURN_LEFT,))
    samples = [face(t, yaw=0.3), face(t + 200), face(t + 400, yaw=0.3), empty(t + 600)]
    samples += [face(t + 800, yaw=0.3)]
    assert feed_all(check, samples) == []
    events = check.feed(face(t + 1000, yaw=0.3))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]
    three = LivenessPolicy(samples_in_row=3)
    check, t = started((IN.TURN_LEFT,), three)
    assert feed_all(check, hold(t, 2, yaw=0.3)) == []
    assert kinds(check.feed(face(t + 400, yaw=0.3)))[0] is ProgressKind.INSTRUCTION_PASSED


def test_a_second_face_sample_resets_the_run() -> None:
    check, t = started((IN.TURN_LEFT,))
    samples = [face(t, yaw=0.3), face(t + 200, faces=2, yaw=0.3), face(t + 400, yaw=0.3)]
    assert feed_all(check, samples) == []


# Thresholds exact in binary, so the boundary itself is tested, not a rounding of it.
EXACT = LivenessPolicy(yaw=0.25, roll=12.0, pitch=0.125, closer=1.25, back=0.75)


@pytest.mark.parametrize(
    ("instruction", "at", "below"),
    [
        (IN.TURN_LEFT, {"yaw": 0.25}, {"yaw": 0.2499}),
        (IN.TURN_RIGHT, {"yaw": -0.25}, {"yaw": -0.2499}),
        (IN.TILT, {"roll": 12.0}, {"roll": 11.99}),
        (IN.TILT, {"roll": -12.0}, {"roll": -11.99}),
        (IN.NOD, {"pitch": 0.625}, {"pitch": 0.6249}),
        (IN.NOD, {"pitch": 0.375}, {"pitch": 0.3751}),
        (IN.CLOSER, {"scale": 0.3125}, {"scale": 0.3124}),
        (IN.BACK, {"scale": 0.1875}, {"scale": 0.1876}),
    ],
)
def test_thresholds_are_inclusive(
    instruction: Instruction, at: dict[str, float], below: dict[str, float]
) -> None:
    check, t = started((instruction,), EXACT)
    assert feed_all(check, hold(t, 5, **below)) == []
    events = feed_all(check, hold(t + 1000, 2, **at))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]


def test_tilt_to_either_shoulder_and_nod_either_way_pass() -> None:
    for instruction, pose in [
        (IN.TILT, {"roll": -16.0}),
        (IN.TILT, {"roll": 16.0}),
        (IN.NOD, {"pitch": 0.62}),  # bows
        (IN.NOD, {"pitch": 0.35}),  # tips back
    ]:
        check, t = started((instruction,))
        assert check.feed(posed(t, pose)) == []
        assert ProgressKind.PASSED in kinds(check.feed(posed(t + STEP, pose)))


# --- the opposite movement and movements that must not count ---------------------------------


@pytest.mark.parametrize(
    ("instruction", "opposite"),
    [
        (IN.TURN_LEFT, IN.TURN_RIGHT),
        (IN.TURN_RIGHT, IN.TURN_LEFT),
        (IN.CLOSER, IN.BACK),
        (IN.BACK, IN.CLOSER),
    ],
)
def test_the_opposite_movement_fails(instruction: Instruction, opposite: Instruction) -> None:
    check, t = started((instruction,))
    assert check.feed(posed(t, DONE[opposite])) == []  # one sample is not enough
    events = check.feed(posed(t + STEP, DONE[opposite]))
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.WRONG_MOVEMENT
    (measurement,) = check.result().measurements
    assert not measurement.passed and measurement.ended_ms == t + STEP


def test_a_small_opposite_movement_is_not_wrong() -> None:
    check, t = started((IN.TURN_LEFT,))
    assert feed_all(check, hold(t, 10, yaw=-0.2)) == []
    assert check.state is LivenessState.INSTRUCTION


@pytest.mark.parametrize("instruction", [IN.CLOSER, IN.BACK])
def test_a_turn_shrinking_the_eye_distance_neither_passes_nor_fails_scale(
    instruction: Instruction,
) -> None:
    # Turned ~35°: the eye distance shortens to ×0.8 (looks like "back"), nose drops.
    check, t = started((instruction,))
    assert feed_all(check, hold(t, 10, yaw=0.3, scale=0.20, pitch=0.6)) == []
    assert feed_all(check, hold(t + 2000, 10, yaw=-0.3, scale=0.20)) == []
    assert check.state is LivenessState.INSTRUCTION
    # Read only at the start, facing forward: never while turned.
    assert check.result().measurements[0].peak == 1.0


@pytest.mark.parametrize("instruction", [IN.TILT, IN.NOD])
def test_turns_do_not_fail_tilt_or_nod(instruction: Instruction) -> None:
    check, t = started((instruction,))
    samples = hold(t, 5, yaw=0.1) + hold(t + 1000, 5, yaw=-0.35) + hold(t + 2000, 5, yaw=0.35)
    assert feed_all(check, samples) == []
    assert check.state is LivenessState.INSTRUCTION


def test_a_turn_does_not_pass_nod_by_raising_pitch() -> None:
    check, t = started((IN.NOD,))
    assert feed_all(check, hold(t, 5, yaw=0.3, pitch=0.62)) == []
    # With the head facing forward (a little turn allowed), the same pitch counts.
    events = feed_all(check, hold(t + 1000, 2, yaw=0.08, pitch=0.62))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]


def test_tilt_passes_while_a_little_turned() -> None:
    check, t = started((IN.TILT,))
    events = feed_all(check, hold(t, 2, yaw=0.12, roll=-14.0))
    assert ProgressKind.PASSED in kinds(events)


# --- several instructions: settling, and one held pose ----------------------------------------


def test_the_next_instruction_starts_once_back_near_neutral() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT, IN.CLOSER))
    events = feed_all(check, hold(t, 2, yaw=0.3))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED]
    assert check.settling and check.current == 0
    assert check.feed(face(t + 400, yaw=0.2)) == []  # on the way back
    assert check.feed(face(t + 600)) == []  # neutral once
    events = check.feed(face(t + 800))  # neutral twice: the next is shown
    assert kinds(events) == [ProgressKind.INSTRUCTION_STARTED]
    assert (events[0].index, events[0].instruction) == (1, IN.TILT)
    assert events[0].deadline_ms == t + 800 + 8000
    assert check.current == 1 and not check.settling
    events = feed_all(check, hold(t + 1000, 2, **DONE[IN.TILT]))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED]
    events = feed_all(check, hold(t + 1400, 2) + hold(t + 1800, 2, **DONE[IN.CLOSER]))
    assert kinds(events) == [
        ProgressKind.INSTRUCTION_STARTED,
        ProgressKind.INSTRUCTION_PASSED,
        ProgressKind.PASSED,
    ]
    result = check.result()
    assert result.passed and [m.instruction for m in result.measurements] == [
        IN.TURN_LEFT,
        IN.TILT,
        IN.CLOSER,
    ]
    assert all(m.passed for m in result.measurements)


def test_settling_ends_after_its_time_even_without_neutral() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT))
    feed_all(check, hold(t, 2, yaw=0.3))
    passed_at = t + STEP
    assert check.tick(passed_at + 1499) == []
    events = check.tick(passed_at + 1500)
    assert kinds(events) == [ProgressKind.INSTRUCTION_STARTED]
    assert events[0].deadline_ms == passed_at + 1500 + 8000


def test_settling_ends_on_a_sample_after_its_time() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT))
    feed_all(check, hold(t, 2, yaw=0.3))
    events = feed_all(check, hold(t + 400, 8, yaw=0.3))  # still turned at t+1800
    assert kinds(events) == [ProgressKind.INSTRUCTION_STARTED]
    assert events[0].at_ms == t + STEP + 1600


def test_no_settling_time_starts_the_next_at_once() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT), LivenessPolicy(settle_seconds=0))
    events = feed_all(check, hold(t, 2, yaw=0.3))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.INSTRUCTION_STARTED]


def test_one_held_pose_does_not_pass_two_instructions() -> None:
    # Turned left and tilted at once, and held: turn_left passes; tilt is shown after the
    # settling time, but the roll held from before does not count until the head has been
    # upright again.
    check, t = started((IN.TURN_LEFT, IN.TILT))
    held = {"yaw": 0.3, "roll": 16.0}
    events = feed_all(check, hold(t, 40, **held))  # 8 s held
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.INSTRUCTION_STARTED]
    tilt_started = events[1].at_ms
    events = check.tick(tilt_started + 8001)
    assert events[0].reason is FailReason.NOT_PERFORMED
    tilt = check.result().measurements[1]
    assert tilt.instruction is IN.TILT and not tilt.passed and tilt.peak is None


def test_a_held_pose_counts_again_once_the_axis_was_at_rest() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT))
    feed_all(check, hold(t, 10, yaw=0.3, roll=16.0))  # tilt shown after settling
    assert check.current == 1
    assert feed_all(check, hold(t + 2000, 2, yaw=0.3, roll=3.0)) == []  # upright again
    events = feed_all(check, hold(t + 2400, 2, yaw=0.3, roll=16.0))
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]


def test_a_pose_held_from_two_instructions_back_is_not_wrong() -> None:
    # turn_left, then nod (done while still turned left? not read: then done facing
    # forward), then turn_right shown while the head is turned left again: not wrong
    # until the head has been through the middle.
    check, t = started((IN.TURN_LEFT, IN.NOD, IN.TURN_RIGHT))
    feed_all(check, hold(t, 2, yaw=0.3))  # turn_left passed
    feed_all(check, hold(t + 400, 2))  # neutral: nod shown
    feed_all(check, hold(t + 800, 2, pitch=0.62))  # nod passed
    events = feed_all(check, hold(t + 1200, 10, yaw=0.3))  # turned left again, held
    assert kinds(events) == [ProgressKind.INSTRUCTION_STARTED]
    assert check.state is LivenessState.INSTRUCTION
    events = feed_all(check, [face(t + 3200), *hold(t + 3400, 2, yaw=-0.3)])
    assert kinds(events) == [ProgressKind.INSTRUCTION_PASSED, ProgressKind.PASSED]


@pytest.mark.parametrize("seed", range(25))
def test_drawn_sequences_pass_when_performed(seed: int) -> None:
    sequence = draw_sequence(random.Random(seed), P)
    check, t = started(sequence)
    for instruction in sequence:
        feed_all(check, hold(t, 2, **DONE[instruction]) + hold(t + 400, 2))
        t += 800
    result = check.result()
    assert result.passed, result
    assert [m.instruction for m in result.measurements] == list(sequence)


@pytest.mark.parametrize("seed", range(25))
def test_drawn_sequences_fail_when_the_last_is_not_performed(seed: int) -> None:
    sequence = draw_sequence(random.Random(seed), P)
    check, t = started(sequence)
    for instruction in sequence[:-1]:
        feed_all(check, hold(t, 2, **DONE[instruction]) + hold(t + 400, 2))
        t += 800
    assert check.current == len(sequence) - 1
    check.tick(t + 9000)
    result = check.result()
    assert not result.passed and result.reason is FailReason.NOT_PERFORMED
    assert [m.passed for m in result.measurements] == [True, True, False]


# --- not alone, not there ------------------------------------------------------------------


def test_no_face_longer_than_the_tolerance_fails() -> None:
    check, t = started((IN.TURN_LEFT,))
    last_face = t - STEP  # the baseline's last sample
    events = feed_all(check, [empty(x) for x in range(t, last_face + 1501, 100)])
    assert events == []  # 1500 ms without a face is tolerated
    events = check.feed(empty(last_face + 1501))
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.NO_FACE


def test_a_face_in_between_restarts_the_no_face_tolerance() -> None:
    check, t = started((IN.TURN_LEFT,))
    samples = [empty(x) for x in range(t, t + 1200, STEP)] + [face(t + 1200)]
    samples += [empty(x) for x in range(t + 1400, t + 2700, STEP)]
    assert feed_all(check, samples) == []


def test_no_face_while_settling_fails_too() -> None:
    check, t = started((IN.TURN_LEFT, IN.TILT))
    feed_all(check, hold(t, 2, yaw=0.3))
    events = feed_all(check, [empty(x) for x in range(t + 400, t + 2000, 100)])
    assert ProgressKind.FAILED in kinds(events)
    assert check.result().reason is FailReason.NO_FACE


@pytest.mark.parametrize("in_baseline", [True, False])
def test_a_second_face_in_a_row_fails(in_baseline: bool) -> None:
    if in_baseline:
        check, t = LivenessCheck((IN.TILT,), P, started_ms=0), 0
    else:
        check, t = started((IN.TILT,))
    assert check.feed(face(t, faces=2)) == []
    assert check.feed(face(t + STEP)) == []  # one alone is tolerated (a false detection)
    assert check.feed(face(t + 2 * STEP, faces=2)) == []
    events = check.feed(face(t + 3 * STEP, faces=3))
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.SECOND_FACE


def test_a_different_person_fails_face_changed() -> None:
    check, t = started((IN.TILT,))
    assert check.feed(face(t, drift=0.55)) == []  # at the limit: still the same person
    events = check.feed(face(t + STEP, drift=0.56))
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.FACE_CHANGED
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    assert check.feed(face(0, drift=0.9))[0].reason is FailReason.FACE_CHANGED


def test_leaving_the_page_abandons_the_check() -> None:
    check, t = started((IN.TILT, IN.NOD))
    check.feed(face(t))
    events = check.abandon()
    assert kinds(events) == [ProgressKind.FAILED]
    assert events[0].reason is FailReason.LEFT and events[0].at_ms == t
    result = check.result()
    assert result.reason is FailReason.LEFT and result.ended_ms == t
    assert len(result.measurements) == 1 and not result.measurements[0].passed
    # Once over, nothing more happens.
    assert check.abandon() == []
    assert check.feed(posed(t + STEP, DONE[IN.TILT])) == []
    assert check.tick(t + 60_000) == []
    assert check.result().reason is FailReason.LEFT


def test_abandon_with_a_reason_and_time() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    events = check.abandon(FailReason.NO_FACE, at_ms=900)
    assert events[0].reason is FailReason.NO_FACE and events[0].at_ms == 900


def test_abandon_takes_a_reasons_value() -> None:
    check = LivenessCheck((IN.TILT,), P, started_ms=0)
    with pytest.raises(ValueError):
        check.abandon("gone fishing")
    assert not check.finished
    events = check.abandon("left", at_ms=300)
    assert events[0].reason is FailReason.LEFT
    assert check.result().as_dict()["reason"] == "left"


def test_a_passed_check_ignores_further_input() -> None:
    check, t = started((IN.TILT,))
    feed_all(check, hold(t, 2, **DONE[IN.TILT]))
    assert check.feed(face(t + 400, faces=2)) == []
    assert check.feed(face(t + 600, faces=2)) == []
    assert check.abandon() == []
    assert check.result().passed


# --- frontal stills and what is kept -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "baseline", "expected"),
    [
        (face(0), None, True),
        (face(0, yaw=0.149, roll=-9.9), None, True),
        (face(0, yaw=0.15), None, False),
        (face(0, yaw=-0.15), None, False),
        (face(0, roll=10.0), None, False),
        (face(0, faces=2), None, False),
        (empty(0), None, False),
        (face(0, pitch=0.549), BASE, True),
        (face(0, pitch=0.56), BASE, False),  # mid-nod
        (face(0, pitch=0.9), None, True),  # no baseline: pitch means nothing alone
    ],
)
def test_frontal(sample: FaceSample, baseline: FacePose | None, expected: bool) -> None:
    assert frontal(sample, baseline, P) is expected


def test_the_result_is_kept_as_json() -> None:
    check, t = started((IN.TURN_LEFT, IN.NOD))
    feed_all(check, hold(t, 2, yaw=0.3) + hold(t + 400, 2))
    check.tick(t + 20_000)
    stored = json.loads(json.dumps(check.result().as_dict()))
    assert stored["passed"] is False and stored["reason"] == "not_performed"
    assert stored["sequence"] == ["turn_left", "nod"]
    assert stored["baseline"] == {"yaw": 0.0, "pitch": 0.5, "roll": 0.0, "scale": 0.25}
    assert stored["started_ms"] == 0 and stored["ended_ms"] == t + 20_000
    first, second = stored["measurements"]
    assert first == {
        "instruction": "turn_left",
        "started_ms": 2 * STEP,
        "deadline_ms": 2 * STEP + 8000,
        "ended_ms": t + STEP,
        "passed": True,
        "peak": 0.3,
        "threshold": 0.22,
        "samples": 3,
    }
    assert second["instruction"] == "nod" and second["passed"] is False
    assert second["peak"] == 0.0 and second["samples"] == 1


def test_the_result_while_running() -> None:
    check, t = started((IN.TILT,))
    check.feed(face(t, roll=5.0))
    result = check.result()
    assert not result.passed and result.reason is None and result.ended_ms is None
    (running,) = result.measurements
    assert running.ended_ms is None and running.peak == 5.0 and running.samples == 2


def test_progress_for_the_page() -> None:
    check = LivenessCheck((IN.CLOSER,), P, started_ms=0)
    events = feed_all(check, [face(0), face(200), face(400)])
    shown = json.loads(json.dumps(events[1].as_dict()))
    assert shown == {
        "kind": "instruction_started",
        "at_ms": 400,
        "index": 0,
        "instruction": "closer",
        "label_zh": "请靠近摄像头",
        "label_en": "Move closer to the camera",
        "deadline_ms": 8400,
    }
    assert events[0].detail == {"baseline": {"yaw": 0.0, "pitch": 0.5, "roll": 0.0, "scale": 0.25}}
    assert events[0].as_dict()["baseline"] == events[0].detail["baseline"]
    assert events[1].detail == {}
    passed = feed_all(check, hold(600, 2, **DONE[IN.CLOSER]))
    assert passed[0].detail == passed[0].as_dict()["measurement"]
    assert passed[0].detail["passed"] is True
    check = LivenessCheck((IN.CLOSER,), P, started_ms=0)
    failed = check.abandon()[0].as_dict()
    assert failed["reason"] == "left"
    assert failed["message_zh"] == MESSAGES[FailReason.LEFT][0]
    assert failed["message_en"] == MESSAGES[FailReason.LEFT][1]
