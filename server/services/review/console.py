"""What the reviewer console's pages show (A17.5): the queue of witnessed sessions,
oldest first, and one session's recordings, data and suitability answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.application import ApplicationState
from server.domain.business import label
from server.domain.errors import NotFound
from server.domain.field_labels import application_rows, value_text
from server.domain.recording import PLAYABLE
from server.domain.session import SessionMode, SessionState, Verdict
from server.domain.staff import Role
from server.domain.suitability import Questionnaire
from server.services.intake.steps import identity_summary
from server.services.retrieval.queries import session_detail
from server.store.models import Application, Review, WitnessSession


async def review_queue(
    db: async_sessionmaker[AsyncSession],
    *,
    staff_id: int,
    roles: frozenset[str] = frozenset({Role.REVIEWER}),
) -> list[dict[str, Any]]:
    """Passed sessions waiting for a reviewer, plus those this reviewer holds; the
    reviewer's own witnessed sessions are listed but marked (four eyes: not reviewable).
    A witness sees the one-way recordings waiting for their review (A18.6) first."""
    items = await _recordings_for_witness(db, staff_id) if Role.WITNESS in roles else []
    if Role.REVIEWER not in roles:
        return items
    async with db.begin() as tx:
        mine = select(Review.session_id).where(
            Review.reviewer_id == staff_id, Review.decision.is_(None)
        )
        rows = (
            await tx.execute(
                select(WitnessSession, Application)
                .join(Application, Application.id == WitnessSession.application_id)
                .where(
                    WitnessSession.verdict == Verdict.PASS,
                    or_(
                        Application.state == ApplicationState.WITNESSED,
                        (Application.state == ApplicationState.IN_REVIEW)
                        & WitnessSession.id.in_(mine),
                    ),
                )
                .order_by(WitnessSession.ended_at)
            )
        ).all()
    return items + [
        {
            "id": witness_session.id,
            "ended_at": witness_session.ended_at,
            "name": app.investor_name,
            "business": label(app.business_type),  # A20–A22: (zh, en)
            "own": witness_session.witness_id == staff_id,
            "stage": "reviewer",
        }
        for witness_session, app in rows
    ]


async def _recordings_for_witness(
    db: async_sessionmaker[AsyncSession], staff_id: int
) -> list[dict[str, Any]]:
    async with db.begin() as tx:
        rows = (
            await tx.execute(
                select(WitnessSession, Application)
                .join(Application, Application.id == WitnessSession.application_id)
                .where(
                    WitnessSession.mode == SessionMode.ONE_WAY,
                    # A passed attempt only: a failed one's recording is evidence of the
                    # failure, never something to pass.
                    WitnessSession.state == SessionState.ENDED,
                    WitnessSession.verdict.is_(None),
                    Application.state == ApplicationState.ONE_WAY_RECORDED,
                    or_(
                        WitnessSession.witness_id.is_(None),
                        WitnessSession.witness_id == staff_id,
                    ),
                )
                .order_by(WitnessSession.ended_at)
            )
        ).all()
    return [
        {
            "id": witness_session.id,
            "ended_at": witness_session.ended_at,
            "name": app.investor_name,
            "business": label(app.business_type),
            "own": False,
            "stage": "witness",
        }
        for witness_session, app in rows
    ]


async def review_page(
    db: async_sessionmaker[AsyncSession],
    *,
    staff_id: int,
    session_id: str,
    protector: DataProtector,
    questionnaire: Questionnaire,
    roles: frozenset[str] = frozenset({Role.REVIEWER}),
) -> dict[str, Any]:
    """A session's page for a reviewer: while it waits for one, or when this reviewer
    holds (or held) its review; never a session another reviewer holds. The page shows
    personal data (address, birth date, email), so every view is audited (A25)."""
    async with db.begin() as tx:
        witness_session = await tx.get(WitnessSession, session_id)
        if witness_session is None:
            raise NotFound("not_found", "Not found.", "未找到。")
        # A18.6: a one-way recording not yet passed is a witness's to review.
        stage = (
            "witness"
            if witness_session.mode == SessionMode.ONE_WAY and witness_session.verdict is None
            else "reviewer"
        )
        if (
            Role(stage) not in roles
            or (stage == "reviewer" and witness_session.verdict != Verdict.PASS)
            or (stage == "witness" and witness_session.state != SessionState.ENDED)
        ):
            raise NotFound("not_found", "Not found.", "未找到。")
        app = await tx.get(Application, witness_session.application_id)
        assert app is not None
        mine = await tx.scalar(
            select(Review.id).where(Review.session_id == session_id, Review.reviewer_id == staff_id)
        )
        waiting = (
            ApplicationState.ONE_WAY_RECORDED
            if stage == "witness" and witness_session.witness_id in (None, staff_id)
            else ApplicationState.WITNESSED
        )
        if mine is None and app.state != waiting:
            # Same answer as "no such session": another reviewer's case is not shown.
            raise NotFound("not_found", "Not found.", "未找到。")
        detail = await session_detail(tx, session_id, protector)
        await append_audit(
            tx,
            actor=f"staff:{staff_id}",
            action="review_page.viewed",
            subject_type="application",
            subject_id=app.id,
            details={"session": session_id},
        )
        form = identity_summary(app, protector) or {}
        suitability = app.suitability or {}
    questions = {q.id: q for q in questionnaire.questions}
    answers = []
    for qid, chosen in (suitability.get("answers") or {}).items():
        question = questions.get(qid)
        if question is None:
            continue  # an older questionnaire version: shown by id below
        texts = [o.text_zh for o in question.options if o.id in chosen]
        answers.append({"question": question.text_zh, "answer": "；".join(texts)})
    # The players show what can be played; the page never compares statuses itself.
    playable = [r for r in detail["recordings"] if r["status"] in PLAYABLE]
    return {
        "stage": stage,
        "detail": detail,
        "playable": playable,
        "form": form,
        "document_type": value_text("document_type", form.get("document_type")),
        "application_rows": application_rows(form),
        "suitability": suitability,
        "answers": answers,
    }
