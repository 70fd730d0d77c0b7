"""The second person's review (A17.5): claim a witnessed session (never one's own —
four eyes), play every recording, open every document, then approve or reject.

The **server** refuses an approval until each recording of the session is covered
(``domain.coverage``: played at most ``review.max_rate``, tab visible, within real time,
no unplayed stretch of ``review.max_gap_ms`` or more) and every document was opened; the
decision is audited with the coverage that backed it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import ReviewConfig
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.coverage import (
    Interval,
    accepted_span,
    coverage,
    merge,
    play_budget,
)
from server.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.domain.recording import PLAYABLE
from server.domain.review import ReviewDecision
from server.domain.session import SessionMode, Verdict
from server.domain.staff import Role
from server.services.aftercare.callback import Aftercare
from server.services.applications import apply_event, get_application
from server.services.compliance.holds import ensure_not_held
from server.services.retrieval.queries import StoredFile, playable_recording
from server.services.review.oneway_stage import (
    REVIEW_STAGE_WITNESS,
    claim_recording,
    close_review,
    decide_recording,
)
from server.store.models import (
    Recording,
    Review,
    ReviewPlayback,
    ReviewView,
    WitnessSession,
)

DOCUMENTS = ("id_front", "id_back", "frontal_photo", "application_data")
REJECT_REASONS = frozenset(
    {
        "identity_doubt",
        "not_voluntary",
        "script_incomplete",
        "recording_defective",
        "documents_defective",
        "witness_error",
        "other",
    }
)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ReviewDesk:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        config: ReviewConfig,
        aftercare: Aftercare | None = None,
        before_approval: Callable[[str], Awaitable[None]] | None = None,
        on_decided: Callable[[str], Awaitable[object]] | None = None,
        on_verdict: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.aftercare = aftercare
        # A3: screening again before approval; raises (409) when it holds or refuses.
        self.before_approval = before_approval
        # A23: risk rules evaluated once the decision is recorded (never raises).
        self.on_decided = on_decided
        # A23: risk rules on a witness's verdict, as for a two-way call's (A18.6).
        self.on_verdict = on_verdict

    async def _open_review(self, tx: AsyncSession, staff_id: int, session_id: str) -> Review:
        review = await tx.scalar(
            select(Review).where(
                Review.session_id == session_id,
                Review.reviewer_id == staff_id,
                Review.decision.is_(None),
            )
        )
        if review is None:
            raise Conflict(
                "review_not_claimed", "Claim this session for review first.", "请先领取该复核任务。"
            )
        return review

    async def recording_for(self, *, staff_id: int, recording_id: str) -> StoredFile:
        """A playable recording of a session this reviewer holds or held the review of."""
        async with self.db.begin() as tx:
            rec = await tx.get(Recording, recording_id)
            holds = rec is not None and await tx.scalar(
                select(Review.id).where(
                    Review.session_id == rec.session_id, Review.reviewer_id == staff_id
                )
            )
            stored = await playable_recording(tx, recording_id) if holds else None
        if stored is None:
            raise NotFound("not_found", "Not found.", "未找到。")
        return stored

    async def claim(
        self,
        *,
        staff_id: int,
        session_id: str,
        roles: frozenset[str] = frozenset({Role.REVIEWER}),
    ) -> dict[str, Any]:
        async with self.db.begin() as tx:
            witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
            if (
                witness_session is not None
                and witness_session.mode == SessionMode.ONE_WAY
                and witness_session.verdict is None
            ):
                # A18.6: a one-way recording is first reviewed by a witness.
                await claim_recording(tx, witness_session, staff_id=staff_id, roles=roles)
                return await self._status(tx, staff_id, session_id)
            if Role.REVIEWER not in roles:
                raise Forbidden(
                    "reviewer_only",
                    "Only a reviewer may review a witnessed session.",
                    "仅复核人员可复核见证会话。",
                )
            if witness_session is None or witness_session.verdict != Verdict.PASS:
                raise NotFound("not_found", "No such witnessed session.", "未找到该见证会话。")
            if witness_session.witness_id == staff_id:
                # A17.5: the reviewer is a second person, never the session's witness.
                raise Forbidden(
                    "four_eyes",
                    "You witnessed this session; another reviewer must review it.",
                    "您是本次见证人员，须由其他人员复核。",
                )
            app = await get_application(tx=tx, application_id=witness_session.application_id)
            mine = await tx.scalar(
                select(Review).where(
                    Review.session_id == session_id,
                    Review.reviewer_id == staff_id,
                    Review.decision.is_(None),
                )
            )
            if mine is None:
                if app.state != ApplicationState.WITNESSED.value:
                    raise Conflict(
                        "review_taken",
                        "This session is being or was reviewed.",
                        "该会话已由他人复核或正在复核。",
                    )
                await apply_event(
                    tx=tx,
                    application=app,
                    event=ApplicationEvent.START_REVIEW,
                    actor=f"staff:{staff_id}",
                    details={"session": session_id},
                )
                tx.add(Review(application_id=app.id, session_id=session_id, reviewer_id=staff_id))
        return await self.status(staff_id=staff_id, session_id=session_id)

    async def report(
        self,
        *,
        staff_id: int,
        session_id: str,
        recording_id: str,
        start_ms: int,
        end_ms: int,
        rate: float,
        visible: bool,
    ) -> dict[str, Any]:
        """A playback report from the reviewer's player; returns the new status."""
        if (
            not all(isinstance(v, int) and not isinstance(v, bool) for v in (start_ms, end_ms))
            or start_ms < 0
        ):
            raise InvalidInput("bad_report", "Positions are whole milliseconds.", "播放位置无效。")
        async with self.db.begin() as tx:
            review = await self._open_review(tx, staff_id, session_id)
            rec = await tx.get(Recording, recording_id)
            if rec is None or rec.session_id != session_id:
                raise NotFound(
                    "not_found", "No such recording in this session.", "该会话没有此录像。"
                )
            row = await tx.scalar(
                select(ReviewPlayback)
                .where(
                    ReviewPlayback.reviewer_id == staff_id,
                    ReviewPlayback.recording_id == recording_id,
                )
                .with_for_update()
            )
            now = datetime.now(UTC)
            if row is None:
                row = ReviewPlayback(
                    reviewer_id=staff_id,
                    recording_id=recording_id,
                    intervals=[],
                    counted_ms=0,
                    first_report_at=now,
                    reports=0,
                )
                tx.add(row)
            # Real time since the review was claimed bounds what any recording's reports
            # may add up to (the players run side by side, each within it).
            elapsed = int((now - _utc(review.created_at)).total_seconds() * 1000)
            span = accepted_span(
                start_ms=start_ms,
                end_ms=end_ms
                if end_ms <= rec.duration_ms + 1000
                else start_ms,  # past the end: void
                rate=float(rate),
                visible=bool(visible),
                max_rate=self.config.max_rate,
                budget_ms=play_budget(
                    elapsed_ms=elapsed, max_rate=self.config.max_rate, counted_ms=row.counted_ms
                ),
            )
            row.reports = (row.reports or 0) + 1
            if span is not None:
                merged = merge([*(Interval(a, b) for a, b in row.intervals or []), span])
                row.intervals = [[i.start, i.end] for i in merged]
                row.counted_ms = (row.counted_ms or 0) + span.length
        return await self.status(staff_id=staff_id, session_id=session_id)

    async def opened(self, *, staff_id: int, session_id: str, item: str) -> dict[str, Any]:
        if item not in DOCUMENTS:
            raise InvalidInput("bad_item", "Unknown document.", "未知的资料。")
        async with self.db.begin() as tx:
            await self._open_review(tx, staff_id, session_id)
            seen = await tx.scalar(
                select(ReviewView.id).where(
                    ReviewView.reviewer_id == staff_id,
                    ReviewView.session_id == session_id,
                    ReviewView.item == item,
                )
            )
            if seen is None:
                tx.add(ReviewView(reviewer_id=staff_id, session_id=session_id, item=item))
                await append_audit(
                    tx,
                    actor=f"staff:{staff_id}",
                    action="review.document_opened",
                    subject_type="witness_session",
                    subject_id=session_id,
                    details={"item": item},
                )
        return await self.status(staff_id=staff_id, session_id=session_id)

    async def _status(self, tx: AsyncSession, staff_id: int, session_id: str) -> dict[str, Any]:
        recs = (
            await tx.scalars(
                select(Recording)
                .where(Recording.session_id == session_id, Recording.status.in_(PLAYABLE))
                .order_by(Recording.participant, Recording.segment)
            )
        ).all()
        plays = {
            p.recording_id: p
            for p in (
                await tx.scalars(
                    select(ReviewPlayback).where(ReviewPlayback.reviewer_id == staff_id)
                )
            ).all()
        }
        views = set(
            (
                await tx.scalars(
                    select(ReviewView.item).where(
                        ReviewView.reviewer_id == staff_id, ReviewView.session_id == session_id
                    )
                )
            ).all()
        )
        recordings = []
        for rec in recs:
            row = plays.get(rec.id)
            merged = merge(Interval(a, b) for a, b in (row.intervals if row else []))
            cov = coverage(merged, rec.duration_ms, max_gap_ms=self.config.max_gap_ms)
            recordings.append(
                {
                    "id": rec.id,
                    "participant": rec.participant,
                    "segment": rec.segment,
                    "duration_ms": rec.duration_ms,
                    "played": [[i.start, i.end] for i in merged],
                    "fraction": round(cov.fraction, 4),
                    "largest_gap_ms": cov.largest_gap_ms,
                    "complete": cov.complete,
                }
            )
        problems = [f"recording_not_covered:{r['id']}" for r in recordings if not r["complete"]]
        problems += [f"document_not_opened:{d}" for d in DOCUMENTS if d not in views]
        if not recordings:
            problems.append("no_recordings")
        return {
            "session_id": session_id,
            "recordings": recordings,
            "opened": sorted(views),
            "approve_problems": problems,
        }

    async def status(self, *, staff_id: int, session_id: str) -> dict[str, Any]:
        async with self.db.begin() as tx:
            return await self._status(tx, staff_id, session_id)

    async def decide(
        self, *, staff_id: int, session_id: str, decision: str, reason_code: str | None, notes: str
    ) -> dict[str, Any]:
        if decision not in frozenset(ReviewDecision):
            raise InvalidInput("bad_decision", "approve or reject.", "结论只能为通过或驳回。")
        if decision == ReviewDecision.REJECT and reason_code not in REJECT_REASONS:
            raise InvalidInput("reason_required", "Choose a reason.", "请选择驳回原因。")
        if decision == ReviewDecision.APPROVE and self.before_approval is not None:
            async with self.db.begin() as tx:
                review = await self._open_review(tx, staff_id, session_id)
                problems = (await self._status(tx, staff_id, session_id))["approve_problems"]
            if not problems and review.stage != REVIEW_STAGE_WITNESS:
                # The screening's own transaction: a hold or refusal stays when this raises.
                await self.before_approval(review.application_id)
        witness_state: str | None = None
        async with self.db.begin() as tx:
            review = await self._open_review(tx, staff_id, session_id)
            if review.stage == REVIEW_STAGE_WITNESS:
                # A18.6: the witness's verdict on a one-way recording, under the same
                # coverage rule; the reviewer's review follows (four eyes).
                witness_state = await decide_recording(
                    tx,
                    review,
                    staff_id=staff_id,
                    passed=decision == ReviewDecision.APPROVE,
                    reason_code=reason_code,
                    notes=notes,
                    status=await self._status(tx, staff_id, session_id),
                )
        if witness_state is not None:
            if self.on_verdict is not None:
                await self.on_verdict(session_id)
            return {"decision": decision, "application_state": witness_state}
        async with self.db.begin() as tx:
            review = await self._open_review(tx, staff_id, session_id)
            status = await self._status(tx, staff_id, session_id)
            if decision == ReviewDecision.APPROVE and status["approve_problems"]:
                # Enforced here, not only by a disabled button (A17.5).
                raise Conflict(
                    "review_incomplete",
                    "Play every recording through and open every document before approving.",
                    "须完整播放全部录像并查看全部资料后方可通过。",
                    details={"problems": status["approve_problems"]},
                )
            if decision == ReviewDecision.APPROVE:
                await ensure_not_held(tx, review.application_id)  # A23: a risk alert holds it
            app = await get_application(tx=tx, application_id=review.application_id)
            await apply_event(
                tx=tx,
                application=app,
                event=ApplicationEvent.APPROVE
                if decision == ReviewDecision.APPROVE
                else ApplicationEvent.REJECT,
                actor=f"staff:{staff_id}",
                details={"session": session_id, "reason": reason_code},
            )
            close_review(
                review, decision=decision, reason_code=reason_code, notes=notes, status=status
            )
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="review.decided",
                subject_type="witness_session",
                subject_id=session_id,
                details={
                    "decision": decision,
                    "reason": review.reason_code,
                    "coverage": review.coverage,
                },
            )
            state = app.state
        if decision == ReviewDecision.APPROVE and self.aftercare is not None:
            # With callback.order = open_first the account opens (blocked) right away.
            await self.aftercare.after_approval(review.application_id, actor=f"staff:{staff_id}")
            async with self.db.begin() as tx:
                state = (await get_application(tx=tx, application_id=review.application_id)).state
        if self.on_decided is not None:
            await self.on_decided(review.application_id)
        return {"decision": decision, "application_state": state}
