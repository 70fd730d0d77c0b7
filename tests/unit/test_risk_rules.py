"""Risk rules (A23): the rule file, and each rule firing or not on facts made for it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.content import load_risk_rules
from server.domain.aftercare import CallbackOutcome
from server.domain.identity_document import DocumentType
from server.domain.recording import RecordingStatus
from server.domain.risk_evaluation import AlertDraft, SubjectType, evaluate
from server.domain.risk_facts import (
    ApplicationFacts,
    ApplicationSighting,
    CallbackFacts,
    FailureKind,
    Identifier,
    IdNumberFailure,
    RecordingFacts,
    ReviewerStats,
    RiskFacts,
    SessionFacts,
    WitnessStats,
)
from server.domain.risk_peers import robust_z
from server.domain.risk_rule_file import KEYS, RuleFileError, parse_rule_set, rule_set_from_toml
from server.domain.risk_rules import PARAMETERS, RuleKind, RuleSet, Severity, period_of
from server.domain.session import Verdict

T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Beijing
RESPONSE = {"high": 4, "medium": 24, "low": 72}


def rule(kind: str, rule_id: str = "r", severity: str = "medium", **params: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "kind": kind,
        "severity": severity,
        "description_zh": "说明",
        "description_en": "What",
        **params,
    }


def rules(*tables: dict[str, Any]) -> RuleSet:
    return parse_rule_set({"version": "t1", "response_hours": RESPONSE, "rules": list(tables)})


def fired(rule_set: RuleSet, facts: RiskFacts, now: datetime = T0) -> list[AlertDraft]:
    return list(evaluate(rule_set, facts, now))


def refusal(data: dict[str, Any]) -> RuleFileError:
    with pytest.raises(RuleFileError) as err:
        parse_rule_set(data)
    return err.value


# ── the shipped file ──────────────────────────────────────────────────────────────────


def test_the_shipped_rules_load_and_cover_every_kind() -> None:
    shipped = load_risk_rules()
    assert shipped.version
    assert {r.kind for r in shipped.rules} == set(RuleKind)
    assert set(KEYS) == set(PARAMETERS) == set(RuleKind)
    assert all(r.description_zh and r.description_en for r in shipped.rules)
    assert shipped.deadline(Severity.HIGH) == timedelta(hours=4)
    senior = shipped.rule("senior_investor")
    assert senior is not None and senior.severity is Severity.LOW
    assert all(r.severity is Severity.HIGH for r in shipped.rules if r.hold_application)


def test_a_bad_rule_file_is_named_by_path_and_key(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "server/content/risk_rules.toml").read_text()
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace("window_minutes = 60", "window_minutes = -60"))
    with pytest.raises(RuleFileError) as err:
        load_risk_rules(bad)
    assert err.value.key == "rules[1].window_minutes"
    assert str(err.value) == f"{bad}: rules[1].window_minutes: must be a positive integer"
    with pytest.raises(RuleFileError, match="cannot read"):
        load_risk_rules(tmp_path / "missing.toml")


# ── parsing: unknown keys, unknown kinds, impossible parameters ──────────────────────


def _nth_rule_broken(**change: Any) -> RuleFileError:
    good = [rule("short_session", f"r{n}", min_seconds=60) for n in range(3)]
    broken = {**rule("shared_identifier", "r3"), "identifier": "ip"}
    broken |= {"min_applications": 3, "window_minutes": 60, **change}
    return refusal({"version": "1", "response_hours": RESPONSE, "rules": [*good, broken]})


def test_a_negative_window_is_refused_by_key() -> None:
    err = _nth_rule_broken(window_minutes=-5)
    assert str(err) == "rules[3].window_minutes: must be a positive integer"
    assert _nth_rule_broken(window_minutes=0).key == "rules[3].window_minutes"
    assert _nth_rule_broken(window_minutes=True).key == "rules[3].window_minutes"
    assert _nth_rule_broken(min_applications=1).key == "rules[3].min_applications"


def test_unknown_keys_are_refused_before_missing_ones() -> None:
    err = refusal(
        {
            "version": "1",
            "response_hours": RESPONSE,
            "rules": [rule("short_session", min_second=60)],
        }
    )
    assert (err.key, err.reason) == ("rules[0].min_second", "unknown key")
    assert _nth_rule_broken(colour="red").key == "rules[3].colour"
    # A parameter of another kind is as unknown as a typo.
    assert _nth_rule_broken(min_seconds=5).key == "rules[3].min_seconds"
    top = refusal({"version": "1", "response_hours": RESPONSE, "rules": [], "extra": 1})
    assert top.key == "extra"
    hours = refusal({"version": "1", "response_hours": {**RESPONSE, "urgent": 1}, "rules": []})
    assert hours.key == "response_hours.urgent"


def test_unknown_kinds_and_choices_are_refused() -> None:
    assert _nth_rule_broken(kind="gut_feeling").key == "rules[3].kind"
    assert _nth_rule_broken(identifier="email").key == "rules[3].identifier"
    assert _nth_rule_broken(severity="critical").key == "rules[3].severity"
    err = refusal(
        {"version": "1", "response_hours": RESPONSE, "rules": [rule("repeated_failures")]}
    )
    assert err.key == "rules[0].failures"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (rule("face_mismatch_pass", max_distance=0), "rules[0].max_distance"),
        (rule("face_mismatch_pass", max_distance=2.5), "rules[0].max_distance"),
        (rule("short_session", min_seconds=-1), "rules[0].min_seconds"),
        (rule("recording_damage", min_damaged_stretches=0), "rules[0].min_damaged_stretches"),
        (rule("witness_hours", start_hour=8, end_hour=24), "rules[0].end_hour"),
        (rule("witness_hours", start_hour=-1, end_hour=8), "rules[0].start_hour"),
        (rule("witness_hours", start_hour=8, end_hour=8), "rules[0].end_hour"),
        (rule("witness_hours", start_hour=8, end_hour=9, weekdays=[0]), "rules[0].weekdays"),
        (
            rule("witness_hours", start_hour=8, end_hour=9, utc_offset_minutes=900),
            "rules[0].utc_offset_minutes",
        ),
        (
            rule("reviewer_speed", max_ratio=1.0, min_approvals=5, min_peers=2, period_days=30),
            "rules[0].max_ratio",
        ),
        (
            rule(
                "witness_outlier",
                metric="pass_rate",
                max_z=3,
                min_spread=1.5,
                min_sessions=5,
                min_peers=2,
                period_days=30,
            ),
            "rules[0].min_spread",
        ),
        (
            rule(
                "witness_outlier",
                metric="pass_rate",
                max_z=3,
                min_spread=0.1,
                min_sessions=5,
                min_peers=1,
                period_days=30,
            ),
            "rules[0].min_peers",
        ),
        (
            rule(
                "witness_outlier",
                metric="pass_rate",
                max_z=3,
                min_spread=0.1,
                min_sessions=5,
                min_peers=3,
                period_days=400,
            ),
            "rules[0].period_days",
        ),
        (rule("callback_overdue", grace_hours=-1), "rules[0].grace_hours"),
        (
            rule("repeated_failures", failures=["bad"], min_failures=2, window_days=1),
            "rules[0].failures",
        ),
        (rule("field_flag", field="income", op=">=", value=1), "rules[0].field"),
        (rule("field_flag", field="age", op=">=", value=200), "rules[0].value"),
        (rule("field_flag", field="age", op=">=", value="70"), "rules[0].value"),
        (rule("field_flag", field="age", op="in", value=70), "rules[0].value"),
        (rule("field_flag", field="age", op="~", value=70), "rules[0].op"),
        (rule("field_flag", field="occupation", op=">", value="a"), "rules[0].op"),
        (rule("field_flag", field="risk_level", op="==", value="C9"), "rules[0].value"),
        (
            rule("short_session", min_seconds=60, hold_application=True),
            "rules[0].hold_application",
        ),
        (
            rule(
                "reviewer_speed",
                severity="high",
                hold_application=True,
                max_ratio=0.5,
                min_approvals=5,
                min_peers=2,
                period_days=30,
            ),
            "rules[0].hold_application",
        ),
        (rule("short_session", rule_id="Bad Id", min_seconds=60), "rules[0].id"),
        (rule("short_session", min_seconds=60, description_en=" "), "rules[0].description_en"),
    ],
)
def test_impossible_parameters_are_refused_by_key(table: dict[str, Any], key: str) -> None:
    err = refusal({"version": "1", "response_hours": RESPONSE, "rules": [table]})
    assert err.key == key, str(err)


def test_the_file_as_a_whole_is_checked() -> None:
    twice = [rule("short_session", min_seconds=60)] * 2
    assert refusal({"version": "1", "response_hours": RESPONSE, "rules": twice}).key == (
        "rules[1].id"
    )
    slow_high = {**RESPONSE, "high": 48}
    assert refusal({"version": "1", "response_hours": slow_high, "rules": twice}).key == (
        "response_hours.high"
    )
    assert refusal({"response_hours": RESPONSE, "rules": twice}).key == "version"
    assert refusal({"version": "1", "response_hours": RESPONSE, "rules": []}).key == "rules"
    with pytest.raises(RuleFileError, match="invalid TOML"):
        rule_set_from_toml("version = ")


def test_a_disabled_rule_raises_nothing() -> None:
    session = SessionFacts("s1", "a1", "w1", T0, T0 + timedelta(seconds=10), Verdict.PASS)
    on = rules(rule("short_session", min_seconds=60))
    off = rules(rule("short_session", min_seconds=60, enabled=False))
    assert fired(on, RiskFacts(sessions=(session,)))
    assert fired(off, RiskFacts(sessions=(session,))) == []


# ── shared_identifier ─────────────────────────────────────────────────────────────────

SHARED = rules(
    rule(
        "shared_identifier",
        "shared_device",
        severity="high",
        hold_application=True,
        identifier="device",
        min_applications=3,
        window_minutes=60,
    )
)


def seen(
    app: str, minutes: float, identifier: Identifier = Identifier.DEVICE
) -> ApplicationSighting:
    return ApplicationSighting(app, identifier, "dev-hash", T0 + timedelta(minutes=minutes))


def test_shared_identifier_fires_at_n_applications_not_n_minus_one() -> None:
    assert fired(SHARED, RiskFacts(sightings=(seen("a1", 0), seen("a2", 10)))) == []
    [draft] = fired(SHARED, RiskFacts(sightings=(seen("a1", 0), seen("a2", 10), seen("a3", 20))))
    assert draft.dedup_key == "shared_device:device:dev-hash"
    assert (draft.subject_type, draft.subject_id) == (SubjectType.DEVICE, "dev-hash")
    assert draft.application_ids == ("a1", "a2", "a3")
    assert draft.hold_application and draft.severity is Severity.HIGH
    assert draft.observed_at == T0 + timedelta(minutes=20)
    assert draft.rule_version == "t1"


def test_shared_identifier_window_is_closed() -> None:
    exactly = RiskFacts(sightings=(seen("a1", 0), seen("a2", 30), seen("a3", 60)))
    assert len(fired(SHARED, exactly)) == 1
    beyond = RiskFacts(sightings=(seen("a1", 0), seen("a2", 30), seen("a3", 60.01)))
    assert fired(SHARED, beyond) == []


def test_shared_identifier_counts_applications_not_sightings_nor_other_identifiers() -> None:
    again = RiskFacts(sightings=(seen("a1", 0), seen("a1", 5), seen("a2", 10)))
    assert fired(SHARED, again) == []
    other = RiskFacts(sightings=(seen("a1", 0), seen("a2", 5), seen("a3", 10, Identifier.IP)))
    assert fired(SHARED, other) == []


def test_the_dedup_key_is_stable_as_the_cluster_grows() -> None:
    three = RiskFacts(sightings=(seen("a1", 0), seen("a2", 10), seen("a3", 20)))
    four = replace(three, sightings=(*three.sightings, seen("a4", 30)))
    [before], [after] = fired(SHARED, three), fired(SHARED, four)
    assert before.dedup_key == after.dedup_key
    assert after.observed_at > before.observed_at


# ── repeated_failures ─────────────────────────────────────────────────────────────────

REPEATED = rules(
    rule(
        "repeated_failures",
        "repeat",
        failures=["identity_check", "witnessing"],
        min_failures=3,
        window_days=7,
    )
)


def failure(
    app: str, days: float, kind: FailureKind = FailureKind.IDENTITY_CHECK
) -> IdNumberFailure:
    return IdNumberFailure("id-hash", kind, app, T0 + timedelta(days=days))


def test_repeated_failures_fire_at_the_minimum_within_the_window() -> None:
    two = (failure("a1", 0), failure("a2", 1, FailureKind.WITNESSING))
    assert fired(REPEATED, RiskFacts(id_number_failures=two)) == []
    [draft] = fired(REPEATED, RiskFacts(id_number_failures=(*two, failure("a3", 7))))
    assert draft.dedup_key == "repeat:id_number:id-hash"
    assert draft.application_ids == ("a1", "a2", "a3")
    assert draft.details["kinds"] == ["identity_check", "witnessing"]
    late = (*two, failure("a3", 7.001))
    assert fired(REPEATED, RiskFacts(id_number_failures=late)) == []


def test_repeated_failures_count_only_the_chosen_kinds() -> None:
    only_identity = rules(
        rule("repeated_failures", failures=["identity_check"], min_failures=2, window_days=7)
    )
    mixed = (failure("a1", 0), failure("a2", 1, FailureKind.WITNESSING))
    assert fired(only_identity, RiskFacts(id_number_failures=mixed)) == []
    assert fired(only_identity, RiskFacts(id_number_failures=(*mixed, failure("a3", 2))))


# ── the session: face aid, length, recording ─────────────────────────────────────────


def session(
    verdict: Verdict | None = Verdict.PASS,
    seconds: float = 600,
    face: float | None = 0.3,
    recordings: tuple[RecordingFacts, ...] = (),
    session_id: str = "s1",
    started: datetime = T0,
) -> SessionFacts:
    end = started + timedelta(seconds=seconds)
    return SessionFacts(session_id, "a1", "w1", started, end, verdict, face, recordings)


FACE = rules(rule("face_mismatch_pass", "face", severity="high", max_distance=0.6))


def test_face_mismatch_pass_fires_strictly_above_the_threshold() -> None:
    [draft] = fired(FACE, RiskFacts(sessions=(session(face=0.61),)))
    assert draft.dedup_key == "face:session:s1"
    assert draft.application_ids == ("a1",)
    assert fired(FACE, RiskFacts(sessions=(session(face=0.6),))) == []
    assert fired(FACE, RiskFacts(sessions=(session(face=None),))) == []
    assert fired(FACE, RiskFacts(sessions=(session(Verdict.FAIL, face=0.9),))) == []


SHORT = rules(rule("short_session", "short", min_seconds=180))


def test_short_session_fires_below_the_minimum_for_a_pass() -> None:
    [draft] = fired(SHORT, RiskFacts(sessions=(session(seconds=179),)))
    assert draft.dedup_key == "short:session:s1"
    assert draft.details["length_seconds"] == 179
    assert fired(SHORT, RiskFacts(sessions=(session(seconds=180),))) == []
    assert fired(SHORT, RiskFacts(sessions=(session(Verdict.FAIL, seconds=30),))) == []
    live = replace(session(seconds=30), ended_at=None, verdict=None)
    assert fired(SHORT, RiskFacts(sessions=(live,))) == []


DAMAGE = rules(rule("recording_damage", "damage", min_damaged_stretches=2, flag_recovered=True))


def test_recording_damage_fires_on_damage_or_recovery() -> None:
    one = RecordingFacts("r1", RecordingStatus.COMPLETE, damaged_stretches=1)
    two = RecordingFacts("r2", RecordingStatus.COMPLETE, damaged_stretches=1)
    recovered = RecordingFacts("r3", RecordingStatus.RECOVERED)
    assert fired(DAMAGE, RiskFacts(sessions=(session(recordings=(one,)),))) == []
    [draft] = fired(DAMAGE, RiskFacts(sessions=(session(recordings=(one, two)),)))
    assert draft.details == {"damaged_stretches": 2, "recovered_recordings": []}
    assert draft.dedup_key == "damage:session:s1"
    [draft] = fired(DAMAGE, RiskFacts(sessions=(session(Verdict.FAIL, recordings=(recovered,)),)))
    assert draft.details["recovered_recordings"] == ["r3"]
    quiet = rules(rule("recording_damage", min_damaged_stretches=1, flag_recovered=False))
    assert fired(quiet, RiskFacts(sessions=(session(recordings=(recovered,)),))) == []


# ── witness_hours ─────────────────────────────────────────────────────────────────────

HOURS = rules(rule("witness_hours", "hours", start_hour=8, end_hour=22, weekdays=[1, 2, 3, 4, 5]))


def at_beijing(day: int, hour: int, minute: int = 0) -> datetime:
    """2 June 2025 is a Monday; Beijing is UTC+8."""
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize(
    ("start", "fires"),
    [
        (at_beijing(2, 8, 0), False),
        (at_beijing(2, 7, 59), True),
        (at_beijing(2, 21, 59), False),
        (at_beijing(2, 22, 0), True),
        (at_beijing(7, 10, 0), True),  # Saturday
    ],
)
def test_witness_hours_boundaries(start: datetime, fires: bool) -> None:
    drafts = fired(HOURS, RiskFacts(sessions=(session(started=start),)))
    assert bool(drafts) is fires


def test_witness_hours_one_alert_per_witness_per_local_day() -> None:
    night = (
        session(session_id="s1", started=at_beijing(2, 23, 0)),
        session(session_id="s2", started=at_beijing(2, 23, 30)),
        session(session_id="s3", started=at_beijing(3, 6, 0)),
    )
    drafts = fired(HOURS, RiskFacts(sessions=night))
    assert [d.dedup_key for d in drafts] == [
        "hours:witness:w1:2025-06-02",
        "hours:witness:w1:2025-06-03",
    ]
    assert drafts[0].details["sessions"] == ["s1", "s2"]
    assert drafts[0].subject_type is SubjectType.WITNESS


def test_witness_hours_may_wrap_past_midnight() -> None:
    nights = rules(rule("witness_hours", start_hour=20, end_hour=6))
    assert fired(nights, RiskFacts(sessions=(session(started=at_beijing(2, 23)),))) == []
    assert fired(nights, RiskFacts(sessions=(session(started=at_beijing(3, 5, 59)),))) == []
    assert fired(nights, RiskFacts(sessions=(session(started=at_beijing(3, 6)),)))


# ── witness_outlier and reviewer_speed: peers ────────────────────────────────────────

PERIOD = period_of(T0, 30)


def outlier(metric: str, direction: str = "either", **extra: Any) -> RuleSet:
    params = {"max_z": 3, "min_spread": 60, "min_sessions": 10, "min_peers": 3, "period_days": 30}
    return rules(
        rule("witness_outlier", "outlier", metric=metric, direction=direction, **(params | extra))
    )


def witness(wid: str, mean_seconds: float, sessions: int = 20, passes: int = 18) -> WitnessStats:
    return WitnessStats(wid, PERIOD, sessions, passes, mean_seconds * sessions)


PEERS = tuple(witness(f"p{n}", 300) for n in range(3))


def test_the_robust_z_score() -> None:
    assert robust_z(480, [300, 300, 300], 60) == 3.0
    # MAD of (280, 300, 320) is 20: spread 1.4826 × 20 > 10.
    assert robust_z(300 + 29.652, [280, 300, 320], 10) == pytest.approx(1.0)


def test_witness_call_length_departing_by_max_z_fires() -> None:
    [draft] = fired(
        outlier("mean_call_seconds"), RiskFacts(witness_stats=(*PEERS, witness("w1", 480)))
    )
    assert draft.dedup_key == f"outlier:witness:w1:{PERIOD.date().isoformat()}"
    assert draft.details["score"] == 3.0 and draft.details["peers"] == 3
    assert draft.application_ids == () and draft.observed_at == PERIOD
    assert (
        fired(outlier("mean_call_seconds"), RiskFacts(witness_stats=(*PEERS, witness("w1", 479))))
        == []
    )


def test_witness_outlier_direction() -> None:
    short = RiskFacts(witness_stats=(*PEERS, witness("w1", 120)))
    assert fired(outlier("mean_call_seconds", "below"), short)
    assert fired(outlier("mean_call_seconds", "either"), short)
    assert fired(outlier("mean_call_seconds", "above"), short) == []


def test_witness_outlier_needs_a_sample_and_peers() -> None:
    few_sessions = RiskFacts(witness_stats=(*PEERS, witness("w1", 900, sessions=9)))
    assert fired(outlier("mean_call_seconds"), few_sessions) == []
    two_peers = RiskFacts(witness_stats=(*PEERS[:2], witness("w1", 900)))
    assert fired(outlier("mean_call_seconds"), two_peers) == []
    other_period = replace(witness("w1", 900), period_start=PERIOD - timedelta(days=30))
    assert (
        fired(outlier("mean_call_seconds"), RiskFacts(witness_stats=(*PEERS, other_period))) == []
    )


def test_witness_pass_rate_departing_fires() -> None:
    rule_set = outlier("pass_rate", min_spread=0.05)
    peers = tuple(witness(f"p{n}", 300, passes=16) for n in range(4))  # 80 %
    everyone_passes = witness("w1", 300, passes=20)  # 100 %: z = 0.2 / 0.05 = 4
    [draft] = fired(rule_set, RiskFacts(witness_stats=(*peers, everyone_passes)))
    assert draft.subject_id == "w1" and draft.details["metric"] == "pass_rate"
    at_the_limit = outlier("pass_rate", min_spread=0.05, direction="above")
    peers = tuple(witness(f"p{n}", 300, passes=16) for n in range(4))  # 80 %
    # 95 %: z = 0.15 / 0.05 = 3, although the floats make it 2.9999999999999982.
    assert fired(at_the_limit, RiskFacts(witness_stats=(*peers, witness("w1", 300, passes=19))))
    usual = witness("w1", 300, passes=17)  # 85 %: z = 1
    assert fired(rule_set, RiskFacts(witness_stats=(*peers, usual))) == []


SPEED = rules(
    rule("reviewer_speed", "speed", max_ratio=0.5, min_approvals=10, min_peers=2, period_days=30)
)


def reviewer(rid: str, median: float, approvals: int = 20) -> ReviewerStats:
    return ReviewerStats(rid, PERIOD, approvals, median)


def test_reviewer_speed_fires_at_the_ratio() -> None:
    peers = (reviewer("p1", 600), reviewer("p2", 600))
    [draft] = fired(SPEED, RiskFacts(reviewer_stats=(*peers, reviewer("r1", 300))))
    assert draft.dedup_key == f"speed:reviewer:r1:{PERIOD.date().isoformat()}"
    assert draft.details["score"] == 0.5
    assert fired(SPEED, RiskFacts(reviewer_stats=(*peers, reviewer("r1", 301)))) == []
    too_few = RiskFacts(reviewer_stats=(*peers, reviewer("r1", 10, approvals=9)))
    assert fired(SPEED, too_few) == []
    assert fired(SPEED, RiskFacts(reviewer_stats=(peers[0], reviewer("r1", 10)))) == []


def test_statistics_periods_are_fixed() -> None:
    start = period_of(T0, 30)
    assert start <= T0 < start + timedelta(days=30)
    assert period_of(start + timedelta(days=29, hours=23), 30) == start
    assert period_of(start + timedelta(days=30), 30) == start + timedelta(days=30)


# ── callbacks ─────────────────────────────────────────────────────────────────────────

DEADLINE = T0 + timedelta(days=3)


def callback(outcome: CallbackOutcome | None = None, exhausted: bool = False) -> CallbackFacts:
    return CallbackFacts("a1", T0, DEADLINE, outcome, exhausted)


def test_callback_failed_on_denial_or_exhausted_attempts() -> None:
    failed = rules(rule("callback_failed", "cb", severity="high", hold_application=True))
    [draft] = fired(failed, RiskFacts(callbacks=(callback(CallbackOutcome.DENIED),)))
    assert draft.dedup_key == "cb:application:a1" and draft.hold_application
    gave_up = callback(CallbackOutcome.UNREACHABLE, exhausted=True)
    assert fired(failed, RiskFacts(callbacks=(gave_up,)))
    assert fired(failed, RiskFacts(callbacks=(callback(CallbackOutcome.UNREACHABLE),))) == []
    assert fired(failed, RiskFacts(callbacks=(callback(CallbackOutcome.CONFIRMED),))) == []
    lenient = rules(rule("callback_failed", include_unreachable=False))
    assert fired(lenient, RiskFacts(callbacks=(gave_up,))) == []


def test_callback_overdue_strictly_past_deadline_and_grace() -> None:
    overdue = rules(rule("callback_overdue", "late", grace_hours=2))
    waiting = RiskFacts(callbacks=(callback(CallbackOutcome.UNREACHABLE),))
    edge = DEADLINE + timedelta(hours=2)
    assert fired(overdue, waiting, now=edge) == []
    [draft] = fired(overdue, waiting, now=edge + timedelta(seconds=1))
    assert draft.dedup_key == "late:application:a1" and draft.observed_at == edge
    untried = RiskFacts(callbacks=(callback(),))
    assert fired(overdue, untried, now=edge + timedelta(seconds=1))
    done = RiskFacts(callbacks=(callback(CallbackOutcome.CONFIRMED),))
    assert fired(overdue, done, now=edge + timedelta(days=9)) == []


# ── field_flag ────────────────────────────────────────────────────────────────────────


def application(**fields: Any) -> ApplicationFacts:
    return ApplicationFacts("a1", T0, **fields)


def test_field_flag_age_at_seventy() -> None:
    senior = rules(rule("field_flag", "senior", severity="low", field="age", op=">=", value=70))
    [draft] = fired(senior, RiskFacts(applications=(application(age=70),)))
    assert draft.dedup_key == "senior:application:a1"
    assert draft.details == {"field": "age", "value": 70}
    assert fired(senior, RiskFacts(applications=(application(age=69),))) == []
    assert fired(senior, RiskFacts(applications=(application(),))) == []


@pytest.mark.parametrize(
    ("op", "value", "facts", "fires"),
    [
        ("in", ["C4", "C5"], {"risk_level": "C5"}, True),
        ("in", ["C4", "C5"], {"risk_level": "C1"}, False),
        ("not_in", ["C4", "C5"], {"risk_level": "C1"}, True),
        ("==", "C1", {"risk_level": "C1"}, True),
        ("!=", "C1", {"risk_level": "C1"}, False),
    ],
)
def test_field_flag_operators_on_text(
    op: str, value: Any, facts: dict[str, Any], fires: bool
) -> None:
    flag = rules(rule("field_flag", field="risk_level", op=op, value=value))
    assert bool(fired(flag, RiskFacts(applications=(application(**facts),)))) is fires


def test_field_flag_on_an_enum_field_and_a_number_range() -> None:
    permit = rules(rule("field_flag", field="document_type", op="==", value="hmt_residence_permit"))
    facts = application(document_type=DocumentType.HMT_RESIDENCE_PERMIT)
    assert fired(permit, RiskFacts(applications=(facts,)))
    expiring = rules(rule("field_flag", field="id_expires_in_days", op="<", value=30))
    assert fired(expiring, RiskFacts(applications=(application(id_expires_in_days=29),)))
    assert fired(expiring, RiskFacts(applications=(application(id_expires_in_days=30),))) == []


# ── properties ────────────────────────────────────────────────────────────────────────

SHIPPED = load_risk_rules()
minutes = st.integers(min_value=0, max_value=3 * 24 * 60)
apps = st.sampled_from([f"a{n}" for n in range(6)])


@st.composite
def risk_facts(draw: st.DrawFn) -> RiskFacts:
    sightings = draw(
        st.lists(
            st.builds(
                lambda app, ident, h, m: ApplicationSighting(
                    app, ident, h, T0 + timedelta(minutes=m)
                ),
                apps,
                st.sampled_from(list(Identifier)),
                st.sampled_from(["h1", "h2"]),
                minutes,
            ),
            max_size=12,
        )
    )
    failures = draw(
        st.lists(
            st.builds(
                lambda app, kind, m: IdNumberFailure("id1", kind, app, T0 + timedelta(minutes=m)),
                apps,
                st.sampled_from(list(FailureKind)),
                st.integers(min_value=0, max_value=20 * 24 * 60),
            ),
            max_size=8,
        )
    )
    sessions = draw(
        st.lists(
            st.builds(
                lambda sid, wid, m, length, verdict, face, damaged: SessionFacts(
                    sid,
                    "a1",
                    wid,
                    T0 + timedelta(minutes=m),
                    T0 + timedelta(minutes=m, seconds=length),
                    verdict,
                    face,
                    (RecordingFacts(f"r-{sid}", RecordingStatus.COMPLETE, damaged),),
                ),
                st.sampled_from(["s1", "s2", "s3", "s4"]),
                st.sampled_from(["w1", "w2"]),
                minutes,
                st.integers(min_value=0, max_value=900),
                st.sampled_from([Verdict.PASS, Verdict.FAIL]),
                st.none() | st.floats(min_value=0, max_value=1),
                st.integers(min_value=0, max_value=2),
            ),
            max_size=6,
            unique_by=lambda s: s.session_id,
        )
    )
    stats = draw(
        st.lists(
            st.builds(
                lambda wid, n, mean: WitnessStats(wid, PERIOD, n, n // 2, mean * n),
                st.sampled_from([f"w{n}" for n in range(6)]),
                st.integers(min_value=0, max_value=40),
                st.integers(min_value=60, max_value=1200),
            ),
            max_size=6,
            unique_by=lambda w: w.witness_id,
        )
    )
    return RiskFacts(
        sightings=tuple(sightings),
        id_number_failures=tuple(failures),
        sessions=tuple(sessions),
        witness_stats=tuple(stats),
    )


@given(risk_facts(), st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_order_independent(facts: RiskFacts, rnd: Any) -> None:
    def shuffled(items: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    mixed = RiskFacts(
        sightings=shuffled(facts.sightings),
        id_number_failures=shuffled(facts.id_number_failures),
        sessions=shuffled(facts.sessions),
        witness_stats=shuffled(facts.witness_stats),
    )
    first = evaluate(SHIPPED, facts, T0)
    assert first == evaluate(SHIPPED, facts, T0)
    assert first == evaluate(SHIPPED, mixed, T0)
    assert len({d.dedup_key for d in first}) == len(first)


@given(st.lists(st.tuples(apps, minutes), max_size=10))
def test_shared_identifier_agrees_with_brute_force(seen_at: list[tuple[str, int]]) -> None:
    window, size = 60, 3
    rule_set = rules(
        rule("shared_identifier", identifier="phone", min_applications=size, window_minutes=window)
    )
    sightings = tuple(
        ApplicationSighting(app, Identifier.PHONE, "h", T0 + timedelta(minutes=m))
        for app, m in seen_at
    )
    first: dict[str, int] = {}
    for app, m in seen_at:
        first[app] = min(m, first.get(app, m))
    expected = any(
        sum(1 for m in first.values() if start <= m <= start + window) >= size
        for start in first.values()
    )
    assert bool(fired(rule_set, RiskFacts(sightings=sightings))) is expected
