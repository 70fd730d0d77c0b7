"""The facts risk rules (A23) look at, loaded from the database for the event at hand.

Each loader fills one part of ``domain.risk_facts.RiskFacts``; ``alerts.RiskWatch``
combines them per hook (identity check, verdict, review, callback) and per sweep.
Identifiers, phone and ID numbers appear only as their lookup hashes.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.adapters.identity_registry import RegistryResult
from server.crypto import DataProtector
from server.domain.aftercare import CallbackOutcome
from server.domain.application import ApplicationState
from server.domain.identity_document import DocumentType
from server.domain.recording import RecordingStatus
from server.domain.review import ReviewDecision
from server.domain.risk_facts import (
    ApplicationFacts,
    ApplicationSighting,
    CallbackFacts,
    FailureKind,
    Identifier,
    IdNumberFailure,
    RecordingFacts,
    ReviewerStats,
    SessionFacts,
    WitnessStats,
)
from server.domain.risk_rules import (
    RepeatedFailures,
    ReviewerSpeed,
    RuleSet,
    SharedIdentifier,
    WitnessOutlier,
    period_of,
)
from server.domain.session import Verdict
from server.store.models import (
    Application,
    Callback,
    IdentityCheck,
    Recording,
    Review,
    SessionEvent,
    WitnessSession,
)
from server.store.risk_models import ApplicationSighting as SightingRow

# The intake profile's key in the encryption context (services/intake/steps.py).
PROFILE_CONTEXT = "applications.profile"
_FAILED_CHECKS = (RegistryResult.MISMATCH.value, RegistryResult.NOT_FOUND.value)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _longest(rule_set: RuleSet, kind: type[object], attribute: str, unit: timedelta) -> timedelta:
    spans = [
        getattr(r.parameters, attribute) * unit
        for r in rule_set.rules
        if r.enabled and isinstance(r.parameters, kind)
    ]
    return max(spans, default=timedelta(0))


async def sightings(
    tx: AsyncSession, *, application_id: str, rule_set: RuleSet, now: datetime
) -> tuple[ApplicationSighting, ...]:
    """Every sighting of the application's identifiers within the longest window."""
    window = _longest(rule_set, SharedIdentifier, "window_minutes", timedelta(minutes=1))
    own = (
        await tx.scalars(select(SightingRow).where(SightingRow.application_id == application_id))
    ).all()
    if not own or window <= timedelta(0):
        return ()
    hashes = {row.key_hash for row in own}
    rows = (
        await tx.scalars(
            select(SightingRow).where(
                SightingRow.key_hash.in_(hashes), SightingRow.at >= now - 2 * window
            )
        )
    ).all()
    return tuple(
        ApplicationSighting(r.application_id, Identifier(r.kind), r.key_hash, _utc(r.at))
        for r in rows
        if r.kind in frozenset(Identifier)
    )


async def id_number_failures(
    tx: AsyncSession, *, id_number_hash: str | None, rule_set: RuleSet, now: datetime
) -> tuple[IdNumberFailure, ...]:
    """Failed identity checks and failed sessions of one ID number, longest window."""
    window = _longest(rule_set, RepeatedFailures, "window_days", timedelta(days=1))
    if not id_number_hash or window <= timedelta(0):
        return ()
    since = now - window
    apps = select(Application.id).where(Application.id_number_hash == id_number_hash)
    checks = (
        await tx.execute(
            select(IdentityCheck.application_id, IdentityCheck.created_at).where(
                IdentityCheck.application_id.in_(apps),
                IdentityCheck.result.in_(_FAILED_CHECKS),
                IdentityCheck.created_at >= since,
            )
        )
    ).all()
    sessions = (
        await tx.execute(
            select(WitnessSession.application_id, WitnessSession.ended_at).where(
                WitnessSession.application_id.in_(apps),
                WitnessSession.verdict == Verdict.FAIL.value,
                WitnessSession.ended_at >= since,
            )
        )
    ).all()
    return tuple(
        [
            IdNumberFailure(id_number_hash, FailureKind.IDENTITY_CHECK, a, _utc(at))
            for a, at in checks
        ]
        + [
            IdNumberFailure(id_number_hash, FailureKind.WITNESSING, a, _utc(at))
            for a, at in sessions
            if at is not None
        ]
    )


def _age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _iso_date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def application_facts(
    app: Application, protector: DataProtector, now: datetime
) -> ApplicationFacts:
    """The ``field_flag`` fields, from the application and its encrypted profile."""
    profile = (
        protector.decrypt_json(app.profile_enc, context=PROFILE_CONTEXT) if app.profile_enc else {}
    )
    today = now.date()
    birth = _iso_date(profile.get("birth_date"))
    expires = _iso_date(profile.get("valid_until"))
    nationality = profile.get("nationality")
    occupation = profile.get("occupation")
    return ApplicationFacts(
        application_id=app.id,
        submitted_at=_utc(app.created_at),
        age=_age_on(birth, today) if birth else None,
        risk_level=app.risk_level,
        document_type=DocumentType(app.document_type)
        if app.document_type in frozenset(DocumentType)
        else None,
        nationality=nationality if isinstance(nationality, str) and nationality else None,
        occupation=occupation if isinstance(occupation, str) and occupation else None,
        id_expires_in_days=(expires - today).days if expires else None,
    )


async def session_facts(tx: AsyncSession, session_id: str) -> SessionFacts | None:
    """A session with its verdict, face aid scores and recordings; None before it started."""
    row = await tx.get(WitnessSession, session_id)
    if row is None or row.started_at is None:
        return None
    events = (
        await tx.scalars(
            select(SessionEvent.payload).where(
                SessionEvent.session_id == session_id, SessionEvent.kind == "face.scored"
            )
        )
    ).all()
    distances = [
        float(v)
        for payload in events
        if isinstance(payload, dict)
        for v in (payload.get("distances") or {}).values()
        if isinstance(v, int | float)
    ]
    recordings = (
        await tx.scalars(select(Recording).where(Recording.session_id == session_id))
    ).all()
    return SessionFacts(
        session_id=row.id,
        application_id=row.application_id,
        witness_id=str(row.witness_id),
        started_at=_utc(row.started_at),
        ended_at=_utc(row.ended_at) if row.ended_at else None,
        verdict=Verdict(row.verdict) if row.verdict in frozenset(Verdict) else None,
        # The best match the aid saw: a pass is questionable only if no still matched.
        face_distance=min(distances) if distances else None,
        recordings=tuple(
            RecordingFacts(r.id, RecordingStatus(r.status))
            for r in recordings
            if r.status in frozenset(RecordingStatus)
        ),
    )


def _periods(rule_set: RuleSet, kind: type[object], now: datetime) -> set[tuple[int, datetime]]:
    found: set[tuple[int, datetime]] = set()
    for rule in rule_set.rules:
        params = rule.parameters
        if (
            rule.enabled
            and isinstance(params, WitnessOutlier | ReviewerSpeed)
            and isinstance(params, kind)
        ):
            found.add((params.period_days, period_of(now, params.period_days)))
    return found


async def witness_stats(
    tx: AsyncSession, *, rule_set: RuleSet, now: datetime
) -> tuple[WitnessStats, ...]:
    """Every witness's ended sessions in each current ``witness_outlier`` period."""
    out: list[WitnessStats] = []
    for days, start in sorted(_periods(rule_set, WitnessOutlier, now)):
        rows = (
            await tx.execute(
                select(
                    WitnessSession.witness_id,
                    WitnessSession.verdict,
                    WitnessSession.started_at,
                    WitnessSession.ended_at,
                ).where(
                    WitnessSession.verdict.is_not(None),
                    WitnessSession.ended_at >= start,
                    WitnessSession.ended_at < start + timedelta(days=days),
                )
            )
        ).all()
        per: dict[int, list[tuple[bool, float]]] = defaultdict(list)
        for witness, verdict, started, ended in rows:
            if witness is None:  # A18: a one-way session not yet reviewed by a witness
                continue
            seconds = (_utc(ended) - _utc(started)).total_seconds() if started and ended else 0.0
            per[witness].append((verdict == Verdict.PASS.value, seconds))
        out.extend(
            WitnessStats(str(w), start, len(v), sum(1 for p, _ in v if p), sum(s for _, s in v))
            for w, v in sorted(per.items())
        )
    return tuple(out)


async def reviewer_stats(
    tx: AsyncSession, *, rule_set: RuleSet, now: datetime
) -> tuple[ReviewerStats, ...]:
    """Every reviewer's approvals (claim to approval) in each current period."""
    out: list[ReviewerStats] = []
    for days, start in sorted(_periods(rule_set, ReviewerSpeed, now)):
        rows = (
            await tx.execute(
                select(Review.reviewer_id, Review.created_at, Review.decided_at).where(
                    Review.decision == ReviewDecision.APPROVE.value,
                    Review.decided_at >= start,
                    Review.decided_at < start + timedelta(days=days),
                )
            )
        ).all()
        per: dict[int, list[float]] = defaultdict(list)
        for reviewer, claimed, decided in rows:
            if decided is None:
                continue
            per[reviewer].append((_utc(decided) - _utc(claimed)).total_seconds())
        out.extend(
            ReviewerStats(str(r), start, len(v), statistics.median(v))
            for r, v in sorted(per.items())
        )
    return tuple(out)


async def callback_facts(
    tx: AsyncSession,
    *,
    application_ids: Iterable[str],
    deadline: timedelta,
    max_attempts: int,
) -> tuple[CallbackFacts, ...]:
    """The callback of each approved application: approval time, deadline, last outcome."""
    out: list[CallbackFacts] = []
    for application_id in sorted(set(application_ids)):
        approved: datetime | None = await tx.scalar(
            select(Review.decided_at)
            .where(
                Review.application_id == application_id,
                Review.decision == ReviewDecision.APPROVE.value,
            )
            .order_by(Review.decided_at.desc())
            .limit(1)
        )
        if approved is None:
            continue
        calls = (
            await tx.scalars(
                select(Callback)
                .where(Callback.application_id == application_id)
                .order_by(Callback.created_at, Callback.id)
            )
        ).all()
        last = calls[-1] if calls else None
        outcome = (
            CallbackOutcome(last.outcome)
            if last is not None and last.outcome in frozenset(CallbackOutcome)
            else None
        )
        out.append(
            CallbackFacts(
                application_id=application_id,
                approved_at=_utc(approved),
                deadline=_utc(approved) + deadline,
                outcome=outcome,
                attempts_exhausted=outcome is CallbackOutcome.UNREACHABLE
                and len(calls) >= max_attempts,
            )
        )
    return tuple(out)


async def awaiting_callback(tx: AsyncSession) -> list[str]:
    """Applications approved and not yet called back (either callback order)."""
    waiting = (ApplicationState.APPROVED.value, ApplicationState.ACCOUNT_OPENED.value)
    return list(
        (await tx.scalars(select(Application.id).where(Application.state.in_(waiting)))).all()
    )
