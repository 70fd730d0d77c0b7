"""The compliance desk's side of screening (A3): possible matches waiting for a decision,
the raw answer on demand (audited), and the decision itself: clear or confirm, with a
reason, never by someone who witnessed or reviewed the application (four eyes). Every
decision is audited with who, when and why, with the application's event in one
transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.identity_registry import mask_name
from server.audit import append_audit
from server.crypto import DataProtector, mask_id_number
from server.domain.application import SCREENING_HELD_STATES
from server.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.domain.screening import ScreeningResult
from server.domain.screening_flow import (
    DECISION_OF,
    EVENT_OF_DECISION,
    ComplianceDecision,
    awaits_decision,
    entries_of,
    reason_problem,
)
from server.services.applications import apply_event, get_application
from server.services.compliance.screening import ID_CONTEXT, screening_summary
from server.store.models import Review, WitnessSession, utcnow
from server.store.risk_models import Screening

_HELD = frozenset(s.value for s in SCREENING_HELD_STATES)


class ScreeningDesk:
    """One per process: what /staff/compliance and its API do with screenings."""

    def __init__(self, *, db: async_sessionmaker[AsyncSession], protector: DataProtector) -> None:
        self.db = db
        self.protector = protector

    async def pending(self) -> list[dict[str, Any]]:
        """Possible matches waiting for a decision, oldest first, ID numbers masked."""
        async with self.db.begin() as tx:
            rows = await tx.scalars(
                select(Screening)
                .where(
                    Screening.result == ScreeningResult.POSSIBLE_MATCH.value,
                    Screening.decision.is_(None),
                )
                .order_by(Screening.created_at)
            )
            waiting: list[dict[str, Any]] = []
            for row in rows:
                app = await get_application(tx=tx, application_id=row.application_id)
                if app.state not in _HELD:
                    continue
                number = (
                    self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
                    if app.id_number_enc
                    else ""
                )
                waiting.append(
                    {
                        **screening_summary(row),
                        "application_id": app.id,
                        "application_state": app.state,
                        "investor_name": mask_name(app.investor_name or ""),
                        "id_number_masked": mask_id_number(number) if number else "",
                    }
                )
            return waiting

    async def raw(self, *, screening_id: str, staff_id: int) -> dict[str, Any]:
        """The provider's answer as stored (already masked), on demand and audited."""
        async with self.db.begin() as tx:
            row = await self._get(tx, screening_id)
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="screening.raw_viewed",
                subject_type="screening",
                subject_id=row.id,
                details={"application": row.application_id},
            )
            return {"id": row.id, "raw": row.raw_response}

    async def _get(self, tx: AsyncSession, screening_id: str) -> Screening:
        row = await tx.get(Screening, screening_id)
        if row is None:
            raise NotFound("not_found", "No such screening.", "未找到该筛查记录。")
        return row

    async def _worked_on(self, tx: AsyncSession, application_id: str) -> set[int]:
        witnesses = await tx.scalars(
            select(WitnessSession.witness_id).where(WitnessSession.application_id == application_id)
        )
        reviewers = await tx.scalars(
            select(Review.reviewer_id).where(Review.application_id == application_id)
        )
        return {w for w in witnesses if w is not None} | set(reviewers)

    async def decide(
        self, *, screening_id: str, staff_id: int, decision: str, reason: str
    ) -> dict[str, Any]:
        """Clear or confirm a possible match, with a reason; audited (who, when, why)."""
        if decision not in frozenset(ComplianceDecision):
            raise InvalidInput("bad_decision", "clear or confirm.", "结论只能为放行或确认命中。")
        if reason_problem(reason):
            raise InvalidInput(
                "reason_required",
                "Give the reason for the decision.",
                "请填写处理理由。",
            )
        choice = ComplianceDecision(decision)
        async with self.db.begin() as tx:
            row = await tx.get(Screening, screening_id, with_for_update=True)
            if row is None:
                raise NotFound("not_found", "No such screening.", "未找到该筛查记录。")
            if staff_id in await self._worked_on(tx, row.application_id):
                raise Forbidden(
                    "four_eyes",
                    "You worked on this application; another compliance officer must decide.",
                    "您参与过该申请的见证或复核，须由其他合规人员处理。",
                )
            app = await get_application(tx=tx, application_id=row.application_id)
            if not awaits_decision(row.result, row.decision) or (app.state not in _HELD):
                raise Conflict(
                    "screening_decided",
                    "This screening is not waiting for a decision.",
                    "该筛查记录无需处理或已处理。",
                )
            row.decision = DECISION_OF[choice].value
            row.decided_by = staff_id
            row.decided_at = utcnow()
            row.decision_reason = reason.strip()
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="screening.decided",
                subject_type="screening",
                subject_id=row.id,
                details={
                    "application": app.id,
                    "decision": row.decision,
                    "reason": row.decision_reason,
                    "result": row.result,
                    "entries": sorted(f"{lst}:{e}" for lst, e in entries_of(row.matches)),
                },
            )
            state = await apply_event(
                tx=tx,
                application=app,
                event=EVENT_OF_DECISION[choice],
                actor=f"staff:{staff_id}",
                details={"screening": row.id, "reason": row.decision_reason},
            )
            return {**screening_summary(row), "application_state": state.value}
