"""Evaluating risk rules (A23) over facts: which alerts should exist. Pure.

``evaluate(rule_set, facts, now)`` runs every enabled rule over the facts it concerns
and returns an ``AlertDraft`` for every condition that holds. It is deterministic and
does not depend on the order of the facts; ``now`` matters only to deadlines
(``callback_overdue``). Nothing here knows whether an alert already exists:
``alerts.should_raise`` decides that from the draft's ``dedup_key`` and ``observed_at``.

Boundaries, one way for every rule: counts fire at the minimum (``N`` applications in
the window fires, ``N-1`` does not); windows are closed (events exactly ``window`` apart
are in one window); "above a threshold" and "shorter than a minimum" are strict (exactly
at the threshold does not fire); peer ratios and z-scores fire at the limit.

"Departs from peers" and "much faster than peers" are defined in ``risk_peers``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from server.domain.aftercare import CallbackOutcome
from server.domain.recording import RecordingStatus
from server.domain.risk_facts import RiskFacts, SessionFacts
from server.domain.risk_peers import PeerComparison, fast_reviewers, witness_departures
from server.domain.risk_rules import (
    CallbackFailed,
    CallbackOverdue,
    FaceMismatchPass,
    FieldFlag,
    FlagOp,
    RecordingDamage,
    RepeatedFailures,
    ReviewerSpeed,
    Rule,
    RuleKind,
    RuleSet,
    Severity,
    SharedIdentifier,
    ShortSession,
    WitnessHours,
    WitnessOutlier,
)
from server.domain.session import Verdict

__all__ = ["AlertDraft", "SubjectType", "evaluate", "flag_holds"]


class SubjectType(StrEnum):
    """What an alert is about."""

    APPLICATION = "application"
    SESSION = "session"
    WITNESS = "witness"
    REVIEWER = "reviewer"
    ID_NUMBER = "id_number"  # an ID number's lookup hash
    DEVICE = "device"
    IP = "ip"
    PHONE = "phone"


@dataclass(frozen=True)
class AlertDraft:
    """An alert that should exist. ``dedup_key`` names the condition (the same condition
    evaluated again gives the same key); ``observed_at`` is the newest fact behind it, so
    a condition resolved once is raised again only on newer evidence."""

    rule_id: str
    rule_version: str
    kind: RuleKind
    severity: Severity
    subject_type: SubjectType
    subject_id: str
    dedup_key: str
    observed_at: datetime
    application_ids: tuple[str, ...]  # the applications concerned, held if hold_application
    hold_application: bool
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)  # JSON-ready


@dataclass(frozen=True)
class _Finding:
    """What one rule found, before the rule's id, severity and hold flag are added."""

    subject_type: SubjectType
    subject_id: str
    key_suffix: str  # after rule id, subject type and id; "" for most rules
    observed_at: datetime
    application_ids: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)


def evaluate(rule_set: RuleSet, facts: RiskFacts, now: datetime) -> tuple[AlertDraft, ...]:
    """Every alert the enabled rules say should exist, in rule order then by subject."""
    drafts: dict[str, AlertDraft] = {}
    for rule in rule_set.rules:
        if not rule.enabled:
            continue
        findings = sorted(
            _EVALUATORS[rule.kind](rule, facts, now),
            key=lambda f: (f.subject_type, f.subject_id, f.key_suffix, f.observed_at, repr(f)),
        )
        for found in findings:
            key = ":".join([rule.id, found.subject_type.value, found.subject_id])
            key += f":{found.key_suffix}" if found.key_suffix else ""
            drafts.setdefault(
                key,
                AlertDraft(
                    rule_id=rule.id,
                    rule_version=rule_set.version,
                    kind=rule.kind,
                    severity=rule.severity,
                    subject_type=found.subject_type,
                    subject_id=found.subject_id,
                    dedup_key=key,
                    observed_at=found.observed_at,
                    application_ids=found.application_ids,
                    hold_application=rule.hold_application,
                    details=found.details,
                ),
            )
    return tuple(drafts.values())


# ── one evaluator per kind ────────────────────────────────────────────────────────────

_Evaluator = Callable[[Rule, RiskFacts, datetime], Iterable[_Finding]]


def _latest_cluster(
    events: Iterable[tuple[datetime, str]], span: timedelta, size: int
) -> list[tuple[datetime, str]] | None:
    """The latest run of at least ``size`` events lying within ``span`` of each other."""
    ordered = sorted(set(events))
    found: list[tuple[datetime, str]] | None = None
    left = 0
    for right, (at, _) in enumerate(ordered):
        while at - ordered[left][0] > span:
            left += 1
        if right - left + 1 >= size:
            found = ordered[left : right + 1]
    return found


def _shared_identifier(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, SharedIdentifier)
    first_seen: dict[str, dict[str, datetime]] = defaultdict(dict)
    for s in facts.sightings:
        if s.identifier is p.identifier:
            seen = first_seen[s.value_hash]
            seen[s.application_id] = min(s.at, seen.get(s.application_id, s.at))
    for value_hash, seen in first_seen.items():
        cluster = _latest_cluster(
            ((at, app) for app, at in seen.items()),
            timedelta(minutes=p.window_minutes),
            p.min_applications,
        )
        if cluster:
            apps = tuple(sorted(app for _, app in cluster))
            yield _Finding(
                SubjectType(p.identifier.value),
                value_hash,
                "",
                cluster[-1][0],
                apps,
                {"applications": len(apps), "first_at": cluster[0][0].isoformat()},
            )


def _repeated_failures(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, RepeatedFailures)
    by_id: dict[str, set[tuple[datetime, str, str]]] = defaultdict(set)
    for f in facts.id_number_failures:
        if f.kind in p.failures:
            by_id[f.id_number_hash].add((f.at, f.kind.value, f.application_id))
    for id_hash, failures in by_id.items():
        cluster = _latest_cluster(
            ((at, f"{kind}:{app}") for at, kind, app in failures),
            timedelta(days=p.window_days),
            p.min_failures,
        )
        if cluster:
            apps = tuple(sorted({label.split(":", 1)[1] for _, label in cluster}))
            kinds = sorted({label.split(":", 1)[0] for _, label in cluster})
            yield _Finding(
                SubjectType.ID_NUMBER,
                id_hash,
                "",
                cluster[-1][0],
                apps,
                {"failures": len(cluster), "kinds": kinds},
            )


def _passed_sessions(facts: RiskFacts) -> Iterable[SessionFacts]:
    return (s for s in facts.sessions if s.verdict is Verdict.PASS)


def _face_mismatch_pass(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, FaceMismatchPass)
    for s in _passed_sessions(facts):
        if s.face_distance is not None and s.face_distance > p.max_distance:
            yield _Finding(
                SubjectType.SESSION,
                s.session_id,
                "",
                s.ended_at or s.started_at,
                (s.application_id,),
                {"face_distance": s.face_distance, "witness_id": s.witness_id},
            )


def _short_session(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, ShortSession)
    for s in _passed_sessions(facts):
        length = s.length_seconds
        if length is not None and length < p.min_seconds and s.ended_at is not None:
            yield _Finding(
                SubjectType.SESSION,
                s.session_id,
                "",
                s.ended_at,
                (s.application_id,),
                {"length_seconds": length, "witness_id": s.witness_id},
            )


def _recording_damage(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, RecordingDamage)
    for s in facts.sessions:
        recordings = {r.recording_id: r for r in s.recordings}.values()
        damaged = sum(r.damaged_stretches for r in recordings)
        recovered = sorted(
            r.recording_id for r in recordings if r.status is RecordingStatus.RECOVERED
        )
        if damaged >= p.min_damaged_stretches or (p.flag_recovered and recovered):
            yield _Finding(
                SubjectType.SESSION,
                s.session_id,
                "",
                s.ended_at or s.started_at,
                (s.application_id,),
                {"damaged_stretches": damaged, "recovered_recordings": recovered},
            )


def _witness_hours(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, WitnessHours)
    zone = timezone(timedelta(minutes=p.utc_offset_minutes))
    outside: dict[tuple[str, str], list[SessionFacts]] = defaultdict(list)
    for s in facts.sessions:
        local = s.started_at.astimezone(zone)
        if p.start_hour < p.end_hour:
            in_hours = p.start_hour <= local.hour < p.end_hour
        else:  # wraps past midnight, e.g. 20 to 6
            in_hours = local.hour >= p.start_hour or local.hour < p.end_hour
        if not in_hours or local.isoweekday() not in p.weekdays:
            outside[(s.witness_id, local.date().isoformat())].append(s)
    for (witness_id, day), sessions in outside.items():
        unique = {s.session_id: s for s in sessions}
        yield _Finding(
            SubjectType.WITNESS,
            witness_id,
            day,
            max(s.started_at for s in unique.values()),
            tuple(sorted({s.application_id for s in unique.values()})),
            {"local_date": day, "sessions": sorted(unique)},
        )


def _peer_finding(subject_type: SubjectType, found: PeerComparison, **extra: Any) -> _Finding:
    details = {
        "value": found.value,
        "peers_median": found.peers_median,
        "peers": found.peers,
        "sample": found.sample,
        "score": round(found.score, 3),
        **extra,
    }
    start = found.period_start
    return _Finding(subject_type, found.subject_id, start.date().isoformat(), start, (), details)


def _witness_outlier(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, WitnessOutlier)
    for found in witness_departures(facts.witness_stats, p):
        yield _peer_finding(SubjectType.WITNESS, found, metric=p.metric.value)


def _reviewer_speed(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, ReviewerSpeed)
    for found in fast_reviewers(facts.reviewer_stats, p):
        yield _peer_finding(SubjectType.REVIEWER, found, metric="median_approval_seconds")


def _callback_failed(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, CallbackFailed)
    for c in facts.callbacks:
        unreached = (
            p.include_unreachable
            and c.attempts_exhausted
            and c.outcome is not CallbackOutcome.CONFIRMED
        )
        if c.outcome is CallbackOutcome.DENIED or unreached:
            outcome = c.outcome.value if c.outcome else None
            yield _Finding(
                SubjectType.APPLICATION,
                c.application_id,
                "",
                c.approved_at,
                (c.application_id,),
                {"outcome": outcome, "attempts_exhausted": c.attempts_exhausted},
            )


def _callback_overdue(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, CallbackOverdue)
    settled = (CallbackOutcome.CONFIRMED, CallbackOutcome.DENIED)
    for c in facts.callbacks:
        overdue_at = c.deadline + timedelta(hours=p.grace_hours)
        if c.outcome not in settled and now > overdue_at:
            yield _Finding(
                SubjectType.APPLICATION,
                c.application_id,
                "",
                overdue_at,
                (c.application_id,),
                {"deadline": c.deadline.isoformat()},
            )


def flag_holds(flag: FieldFlag, actual: int | str | None) -> bool:
    """Whether one application's field meets the flag; an unknown field never does."""
    if actual is None:
        return False
    v = flag.value
    if flag.op is FlagOp.IN or flag.op is FlagOp.NOT_IN:
        inside = actual in (v if isinstance(v, tuple) else (v,))
        return inside if flag.op is FlagOp.IN else not inside
    if flag.op is FlagOp.EQ or flag.op is FlagOp.NE:
        return (actual == v) is (flag.op is FlagOp.EQ)
    if not isinstance(actual, int) or not isinstance(v, int):
        return False  # ordering is for numbers; the rule file refuses it for text
    return {
        FlagOp.LT: actual < v,
        FlagOp.LE: actual <= v,
        FlagOp.GT: actual > v,
        FlagOp.GE: actual >= v,
    }[flag.op]


def _field_flag(rule: Rule, facts: RiskFacts, now: datetime) -> Iterable[_Finding]:
    p = rule.parameters
    assert isinstance(p, FieldFlag)
    for a in facts.applications:
        actual = getattr(a, p.field)
        if flag_holds(p, actual):
            yield _Finding(
                SubjectType.APPLICATION,
                a.application_id,
                "",
                a.submitted_at,
                (a.application_id,),
                {"field": p.field, "value": actual if isinstance(actual, int) else str(actual)},
            )


_EVALUATORS: Mapping[RuleKind, _Evaluator] = {
    RuleKind.SHARED_IDENTIFIER: _shared_identifier,
    RuleKind.REPEATED_FAILURES: _repeated_failures,
    RuleKind.FACE_MISMATCH_PASS: _face_mismatch_pass,
    RuleKind.SHORT_SESSION: _short_session,
    RuleKind.RECORDING_DAMAGE: _recording_damage,
    RuleKind.WITNESS_OUTLIER: _witness_outlier,
    RuleKind.WITNESS_HOURS: _witness_hours,
    RuleKind.REVIEWER_SPEED: _reviewer_speed,
    RuleKind.CALLBACK_FAILED: _callback_failed,
    RuleKind.CALLBACK_OVERDUE: _callback_overdue,
    RuleKind.FIELD_FLAG: _field_flag,
}
