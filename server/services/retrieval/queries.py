"""What the retrieval API serves (issue: recording retrieval; A15, A19, A25): session
lists and metadata, and the contents of evidence packages. Reading only; the web layer
streams files and writes the access log."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.crypto import DataProtector, mask_id_number
from server.domain.business import BusinessType
from server.domain.errors import InvalidInput, NotFound
from server.domain.recording import PLAYABLE
from server.domain.session import SessionState
from server.evidence import PackageFile
from server.services.compliance.alerts import alert_view, alerts_about
from server.services.compliance.screening import screening_summary, screenings_of
from server.services.intake.steps import ID_CONTEXT, active_documents
from server.services.service_requests import service_view
from server.store.models import (
    Account,
    Application,
    AuditEntry,
    Callback,
    IdentityCheck,
    NetworkCheck,
    OneWayAttempt,
    Recording,
    Review,
    ServiceOutcome,
    SessionEvent,
    Staff,
    Still,
    WitnessSession,
)

MAX_PAGE = 200


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_when(text: str, field: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "bad_date", f"{field}: not an ISO 8601 date or time.", f"{field} 日期格式错误。",
            details={"field": field},
        ) from None  # fmt: skip
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cursor(created: datetime, session_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_iso(created)}|{session_id}".encode()).decode()


def _uncursor(text: str) -> tuple[datetime, str]:
    try:
        when, sid = base64.urlsafe_b64decode(text.encode()).decode().split("|", 1)
        return _parse_when(when, "cursor"), sid
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidInput):
        raise InvalidInput("bad_cursor", "Invalid cursor.", "分页游标无效。") from None


@dataclass(frozen=True)
class SessionQuery:
    date_from: datetime | None = None
    date_to: datetime | None = None
    status: str | None = None
    witness_id: int | None = None
    application_id: str | None = None
    business_type: str | None = None
    cursor: str | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Any) -> SessionQuery:
        status = params.get("status") or None
        if status is not None and status not in frozenset(SessionState):
            raise InvalidInput(
                "bad_status", f"status: one of {', '.join(sorted(SessionState))}.", "状态无效。"
            )
        business_type = params.get("business_type") or None
        if business_type is not None and business_type not in frozenset(BusinessType):
            raise InvalidInput(
                "bad_business_type",
                f"business_type: one of {', '.join(BusinessType)}.",
                "业务类型无效。",
            )
        witness = params.get("witness")
        try:
            witness_id = int(witness) if witness else None
            limit = int(params.get("limit", 50))
        except ValueError:
            raise InvalidInput(
                "bad_number", "witness and limit are numbers.", "参数须为数字。"
            ) from None
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("bad_limit", f"limit: 1..{MAX_PAGE}.", f"每页 1 至 {MAX_PAGE} 条。")
        return cls(
            date_from=_parse_when(params["from"], "from") if params.get("from") else None,
            date_to=_parse_when(params["to"], "to") if params.get("to") else None,
            status=status,
            witness_id=witness_id,
            application_id=params.get("application") or None,
            business_type=business_type,
            cursor=params.get("cursor") or None,
            limit=limit,
        )


def _masked_id(app: Application, protector: DataProtector) -> str | None:
    if app.id_number_enc is None:
        return None
    return mask_id_number(protector.decrypt(app.id_number_enc, context=ID_CONTEXT))


async def list_sessions(
    tx: AsyncSession, query: SessionQuery, protector: DataProtector
) -> dict[str, Any]:
    stmt = select(WitnessSession, Application).join(
        Application, Application.id == WitnessSession.application_id
    )
    if query.date_from:
        stmt = stmt.where(WitnessSession.created_at >= query.date_from)
    if query.date_to:
        stmt = stmt.where(WitnessSession.created_at < query.date_to)
    if query.status:
        stmt = stmt.where(WitnessSession.state == query.status)
    if query.witness_id is not None:
        stmt = stmt.where(WitnessSession.witness_id == query.witness_id)
    if query.application_id:
        stmt = stmt.where(WitnessSession.application_id == query.application_id)
    if query.business_type:
        stmt = stmt.where(WitnessSession.business_type == query.business_type)
    if query.cursor:
        created, sid = _uncursor(query.cursor)
        stmt = stmt.where(
            or_(
                WitnessSession.created_at < created,
                and_(WitnessSession.created_at == created, WitnessSession.id < sid),
            )
        )
    stmt = stmt.order_by(WitnessSession.created_at.desc(), WitnessSession.id.desc())
    rows = (await tx.execute(stmt.limit(query.limit + 1))).all()
    items = [
        {
            "id": witness_session.id,
            "state": witness_session.state,
            "verdict": witness_session.verdict,
            "created_at": _iso(witness_session.created_at),
            "started_at": _iso(witness_session.started_at),
            "ended_at": _iso(witness_session.ended_at),
            "witness_id": witness_session.witness_id,
            "business_type": witness_session.business_type,  # A20–A22
            "application": {
                "id": app.id,
                "state": app.state,
                "investor_name": app.investor_name,
                "id_number_masked": _masked_id(app, protector),
            },
        }
        for witness_session, app in rows[: query.limit]
    ]
    more = len(rows) > query.limit
    last = rows[query.limit - 1][0] if more else None
    return {"items": items, "next_cursor": _cursor(last.created_at, last.id) if last else None}


def _review_view(review: Review | None) -> dict[str, Any] | None:
    if review is None:
        return None
    return {
        "decision": review.decision,
        "reason_code": review.reason_code,
        "coverage": review.coverage,
        "decided_at": _iso(review.decided_at),
    }


async def session_detail(
    tx: AsyncSession, session_id: str, protector: DataProtector
) -> dict[str, Any]:
    witness_session = await tx.get(WitnessSession, session_id)
    if witness_session is None:
        raise NotFound("not_found", "Not found.", "未找到。")
    app = await tx.get(Application, witness_session.application_id)
    # A18: a one-way session has a witness only once one has taken its recording.
    witness = (
        await tx.get(Staff, witness_session.witness_id)
        if witness_session.witness_id is not None
        else None
    )
    assert app is not None
    events = (
        await tx.scalars(
            select(SessionEvent)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.id)
        )
    ).all()
    recordings = (
        await tx.scalars(
            select(Recording)
            .where(Recording.session_id == session_id)
            .order_by(Recording.participant, Recording.segment)
        )
    ).all()
    stills = (
        await tx.scalars(
            select(Still).where(Still.session_id == session_id).order_by(Still.offset_ms)
        )
    ).all()
    check = await tx.scalar(
        select(IdentityCheck)
        .where(IdentityCheck.application_id == app.id)
        .order_by(IdentityCheck.created_at.desc())
        .limit(1)
    )
    reviews = (
        await tx.scalars(
            select(Review).where(Review.session_id == session_id).order_by(Review.created_at)
        )
    ).all()
    # The reviewer's review (A17.5); a one-way session's witness review (A18.6) apart.
    review = next((r for r in reviews if r.stage != "witness"), None)
    witness_review = next((r for r in reviews if r.stage == "witness"), None)
    attempt = await tx.scalar(select(OneWayAttempt).where(OneWayAttempt.session_id == session_id))
    callbacks = (await tx.scalars(select(Callback).where(Callback.application_id == app.id))).all()
    account = await tx.scalar(select(Account).where(Account.application_id == app.id))
    screenings = await screenings_of(tx, app.id)
    outcomes = (
        await tx.scalars(
            select(ServiceOutcome)
            .where(ServiceOutcome.application_id == app.id)
            .order_by(ServiceOutcome.created_at, ServiceOutcome.id)
        )
    ).all()
    network_checks = (
        await tx.scalars(
            select(NetworkCheck)
            .where(NetworkCheck.application_id == app.id)
            .order_by(NetworkCheck.created_at, NetworkCheck.id)
        )
    ).all()
    alerts = await alerts_about(tx, application_id=app.id, session_id=session_id)
    disclosure = next((e for e in events if e.kind == "disclosure.shown"), None)
    confirmed = next((e for e in events if e.kind == "disclosure.confirmed"), None)
    steps = [
        {"offset_ms": e.offset_ms, "kind": e.kind, **(e.payload or {})}
        for e in events
        if e.kind.startswith("script.")
    ]
    return {
        "id": witness_session.id,
        "state": witness_session.state,
        "node_id": witness_session.node_id,
        "verdict": witness_session.verdict,
        "reason_code": witness_session.reason_code,
        "created_at": _iso(witness_session.created_at),
        "queued_at": _iso(witness_session.queued_at),
        "started_at": _iso(witness_session.started_at),
        "ended_at": _iso(witness_session.ended_at),
        "clock_started_at": _iso(
            next((e.at for e in events if e.kind == "media.clock_started"), None)
        ),
        # A20–A22: the business the session witnessed, the accounts it was for (masked)
        # with the account system's check before the call, and what was done after.
        "business": {
            **service_view(app, protector),
            "outcomes": [
                {
                    "account_masked": o.account_masked,
                    "status": o.status,
                    "error_code": o.error_code,
                    "reference": o.reference,
                    "at": _iso(o.created_at),
                }
                for o in outcomes
            ],
        },
        "participants": {
            "investor": {
                "application_id": app.id,
                "application_state": app.state,
                "name": app.investor_name,
                "document_type": app.document_type,
                "id_number_masked": _masked_id(app, protector),
            },
            "witness": {
                "id": witness.id,
                "name": witness.display_name,
                "employee_number": witness.employee_number,
                "licence_number": witness.licence_number,
            }
            if witness is not None
            else None,
        },
        "disclosure": {
            "shown_offset_ms": disclosure.offset_ms if disclosure else None,
            "shown_at": _iso(disclosure.at) if disclosure else None,
            "card": disclosure.payload if disclosure else None,
            "confirmed_offset_ms": confirmed.offset_ms if confirmed else None,
        },
        "script": {
            "version": (disclosure.payload or {}).get("script_version") if disclosure else None,
            "events": steps,
        },
        "face": [
            {"offset_ms": e.offset_ms, "kind": e.kind, **(e.payload or {})}
            for e in events
            if e.kind.startswith("face.")
        ],
        "stills": [
            {
                "id": s.id,
                "participant": s.participant,
                "kind": s.kind,
                "offset_ms": s.offset_ms,
                "content_type": s.content_type,
                "bytes": s.bytes,
                "sha256": s.sha256,
                "taken_by": s.taken_by,
            }
            for s in stills
        ],
        "identity_check": {
            "provider": check.provider,
            "result": check.result,
            "reference": check.reference,
            "at": _iso(check.created_at),
        }
        if check
        else None,
        # Issue 16: the investor's pre-call checks (devices, the path a test connection
        # took, round trip, upstream), oldest first: why a weak call was let through.
        "network_checks": [
            {
                "id": n.id,
                "at": _iso(n.created_at),
                "verdict": n.verdict,
                "path": n.path,
                "protocol": n.protocol,
                "rtt_ms": n.rtt_ms,
                "upstream_kbps": n.upstream_kbps,
                "camera_ok": n.camera_ok,
                "microphone_ok": n.microphone_ok,
                "reasons": [r for r in (n.details or {}).get("reasons", []) if isinstance(r, str)],
            }
            for n in network_checks
        ],
        # A3: every AML screening of the application, with any compliance decision.
        "screenings": [screening_summary(row) for row in screenings],
        # A23: the risk alerts raised about the application or this session.
        "alerts": [alert_view(row, datetime.now(UTC)) for row in alerts],
        "review": _review_view(review),
        # A18: how the session was held; for one-way, the attempt's instructions as drawn,
        # what the liveness check, the face comparison and each statement take found, and
        # the witness's review of the recording.
        "mode": witness_session.mode,
        "oneway": {
            "attempt": attempt.number,
            "state": attempt.state,
            "reason": attempt.reason,
            "sequence": attempt.sequence,
            "liveness": attempt.liveness,
            "face": attempt.face,
            "statement": attempt.statement,
            "started_at": _iso(attempt.started_at),
            "ended_at": _iso(attempt.ended_at),
            "witness_review": _review_view(witness_review),
        }
        if attempt is not None
        else None,
        "callbacks": [
            {"outcome": c.outcome, "attempts": c.attempts, "at": _iso(c.created_at)}
            for c in callbacks
        ],
        "account": {
            "unified_account_number": account.unified_account_number,
            "opening_method": account.opening_method,
            "status": account.status,
            "opened_at": _iso(account.opened_at),
        }
        if account
        else None,
        "recordings": [
            {
                "id": r.id,
                "participant": r.participant,
                "segment": r.segment,
                "content_type": r.content_type,
                "status": r.status,
                "bytes": r.bytes,
                "start_ms": r.start_ms,
                "duration_ms": r.duration_ms,
                "video_frames": r.video_frames,
                "audio_frames": r.audio_frames,
                "cues": r.cues,
                "sha256": r.sha256,
                "legal_hold": r.legal_hold,
                # Issue 16 (A15, A19): where the file is not what the party sent — stretches
                # of missing or damaged video/audio on the file's own clock (ms from its
                # first frame); None when not measured (finalized after a crash).
                "damage": r.damage,
                "damaged_ms": r.damaged_ms,
                "frames_lost": r.frames_lost,
            }
            for r in recordings
        ],
        "events": [
            {"offset_ms": e.offset_ms, "at": _iso(e.at), "kind": e.kind, "actor": e.actor}
            for e in events
        ],
    }


def _within(root: Path, relative: str) -> Path:
    """Stored paths are relative to the recordings root; anything else is never packed."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else root / "__outside_root__"


async def package_contents(
    tx: AsyncSession, session_id: str, root: Path
) -> tuple[list[PackageFile], list[dict[str, Any]], dict[str, Any] | None]:
    """The files of a session's evidence package, the audit entries about it, and the
    chain's head when packed (a later truncation of the chain is then detectable)."""
    witness_session = await tx.get(WitnessSession, session_id)
    if witness_session is None:
        raise NotFound("not_found", "Not found.", "未找到。")
    recordings = (
        await tx.scalars(select(Recording).where(Recording.session_id == session_id))
    ).all()
    stills = (await tx.scalars(select(Still).where(Still.session_id == session_id))).all()
    docs = await active_documents(tx, witness_session.application_id)
    files = [
        PackageFile(
            f"recordings/{r.participant}-{r.segment:02d}-{r.id}{PurePath(r.path).suffix}",
            _within(root, r.path),
        )
        for r in recordings
        if r.status in PLAYABLE
    ]
    files += [
        PackageFile(f"stills/{s.participant}-{s.offset_ms:09d}-{s.id}.jpg", _within(root, s.path))
        for s in stills
    ]
    files += [PackageFile(f"documents/{d.kind}-{d.id}.jpg", _within(root, d.path)) for d in docs]
    subjects = [("witness_session", session_id), ("application", witness_session.application_id)]
    subjects += [("recording", r.id) for r in recordings]
    subjects += [("still", s.id) for s in stills]
    subjects += [("document", d.id) for d in docs]
    subjects += [
        ("screening", row.id) for row in await screenings_of(tx, witness_session.application_id)
    ]
    subjects += [
        ("alert", row.id)
        for row in await alerts_about(
            tx, application_id=witness_session.application_id, session_id=session_id
        )
    ]
    entries = (
        await tx.scalars(
            select(AuditEntry)
            .where(
                or_(
                    *(
                        and_(AuditEntry.subject_type == t, AuditEntry.subject_id == i)
                        for t, i in subjects
                    )
                )
            )
            .order_by(AuditEntry.seq)
        )
    ).all()
    head = await tx.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    audit = [
        {
            "seq": e.seq,
            "at": _iso(e.at),
            "actor": e.actor,
            "action": e.action,
            "subject_type": e.subject_type,
            "subject_id": e.subject_id,
            "details": e.details,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        for e in entries
    ]
    chain_head = {"seq": head.seq, "hash": head.hash} if head is not None else None
    return files, audit, chain_head


@dataclass(frozen=True)
class StoredFile:
    """A recorded file to stream: its place under the recordings root, type and hash."""

    path: str
    content_type: str
    sha256: str | None


async def playable_recording(tx: AsyncSession, recording_id: str) -> StoredFile | None:
    """A recording that can be served whole (complete or recovered), else None."""
    rec = await tx.get(Recording, recording_id)
    if rec is None or rec.status not in PLAYABLE:
        return None
    return StoredFile(rec.path, rec.content_type, rec.sha256)


async def still_file(tx: AsyncSession, still_id: str) -> StoredFile | None:
    still = await tx.get(Still, still_id)
    return None if still is None else StoredFile(still.path, still.content_type, still.sha256)
