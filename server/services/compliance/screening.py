"""AML screening in the flow (A3): screen, hold, refuse, and the compliance decision.

``screen`` asks the screening adapter outside any transaction (a vendor may take
seconds), then stores the ``Screening`` row, its audit entry and the application's event
in one transaction. It runs with the identity check (before queueing) and when a reviewer
approves; the rules are ``domain/screening_flow.py``. A possible match waits on the
compliance desk (``screening_desk.py``), which clears or confirms it. UNAVAILABLE is
retried with back-off by ``retry_due`` (a background loop) and on the investor's next try
to queue; it is never cleared by anyone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.screening import Screening as ScreeningAnswer
from server.adapters.screening import ScreeningService
from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.application import (
    SCREENING_HELD_STATES,
    ApplicationState,
    allowed_events,
)
from server.domain.errors import Conflict
from server.domain.screening import Person, ScreeningResult
from server.domain.screening_flow import (
    ScreeningDecision,
    ScreeningStage,
    carried,
    entries_of,
    event_for,
    passes,
    retry_delay,
)
from server.services.applications import apply_event, get_application
from server.store.db import reading
from server.store.models import Application, utcnow
from server.store.risk_models import Screening

log = logging.getLogger(__name__)

# The encrypted columns' contexts, as intake binds them (services/intake/steps.py).
ID_CONTEXT = "applications.id_number"
_PROFILE_CONTEXT = "applications.profile"
# How often the background loop looks for UNAVAILABLE screenings due a retry.
RETRY_SWEEP_SECONDS = 15.0


@dataclass(frozen=True)
class ScreeningOutcome:
    screening_id: str
    result: ScreeningResult
    state: ApplicationState
    passed: bool  # the application may go on (queue, or approval)


def on_hold_error() -> Conflict:
    """What the investor is told when held: neutral, never "you are on a list" (A3)."""
    return Conflict(
        "application_on_hold",
        "Your application needs further checks before it can continue. We will contact you.",
        "您的申请需要进一步审核，暂时无法继续办理，我们会与您联系。",
    )


def refused_error() -> Conflict:
    return Conflict(
        "application_not_accepted",
        "We cannot proceed with your application. Please contact customer service.",
        "很抱歉，我们暂时无法受理您的开户申请。如有疑问，请联系客服。",
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _match_json(answer: ScreeningAnswer) -> list[dict[str, Any]]:
    return [
        {
            "list": m.list_name,
            "entry_id": m.entry_id,
            "basis": m.basis.value,
            "result": m.result.value,
        }
        for m in answer.matches
    ]


def screening_summary(row: Screening) -> dict[str, Any]:
    """A stored screening for staff, evidence and the retrieval API (no raw answer)."""
    return {
        "id": row.id,
        "stage": row.stage,
        "provider": row.provider,
        "result": row.result,
        "matches": row.matches,
        "reference": row.reference,
        "latency_ms": row.latency_ms,
        "at": _utc(row.created_at).isoformat(),
        "decision": row.decision,
        "decided_by": row.decided_by,
        "decided_at": _utc(row.decided_at).isoformat() if row.decided_at else None,
        "decision_reason": row.decision_reason,
    }


async def screenings_of(tx: AsyncSession, application_id: str) -> list[Screening]:
    found = await tx.scalars(
        select(Screening)
        .where(Screening.application_id == application_id)
        .order_by(Screening.created_at, Screening.id)
    )
    return list(found)


class Screener:
    """One per process: the screening adapter and the compliance decisions."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        adapter: ScreeningService,
    ) -> None:
        self.db = db
        self.protector = protector
        self.adapter = adapter
        self._stopping = asyncio.Event()

    # -- screening ------------------------------------------------------------------------
    def _person(self, app: Application) -> Person:
        if app.id_number_enc is None or not app.investor_name:
            raise Conflict(
                "application_not_screenable",
                "The application has no identity to screen yet.",
                "该申请尚无可筛查的身份信息。",
            )
        profile = (
            self.protector.decrypt_json(app.profile_enc, context=_PROFILE_CONTEXT)
            if app.profile_enc
            else {}
        )
        try:
            born = date.fromisoformat(str(profile.get("birth_date", "")))
        except ValueError:
            born = None
        return Person(
            name=app.investor_name,
            id_number=self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT),
            birth_date=born,
            nationality=str(profile.get("nationality", "")),
            id_type=app.document_type or "",
        )

    async def screen(self, application_id: str, stage: ScreeningStage) -> ScreeningOutcome:
        """Screen the application's investor; store, audit and apply the result."""
        async with self.db.begin() as tx:
            person = self._person(await get_application(tx=tx, application_id=application_id))
        answer = await self.adapter.screen(person)
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            matches = _match_json(answer)
            cleared = frozenset[tuple[str, str]]()
            for earlier in await screenings_of(tx, app.id):
                if earlier.decision == ScreeningDecision.CLEARED:
                    cleared |= entries_of(earlier.matches)
            carry = carried(answer.result, matches, cleared)
            row = Screening(
                application_id=app.id,
                stage=stage.value,
                provider=answer.provider,
                result=answer.result.value,
                matches=matches,
                reference=answer.reference[:100],
                raw_response=answer.raw,
                latency_ms=answer.latency_ms,
                decision=ScreeningDecision.CARRIED.value if carry else None,
                decided_at=utcnow() if carry else None,
            )
            tx.add(row)
            await tx.flush()
            await append_audit(
                tx,
                actor="system",
                action="screening.screened",
                subject_type="application",
                subject_id=app.id,
                details={
                    "screening": row.id,
                    "stage": stage.value,
                    "provider": answer.provider,
                    "result": answer.result.value,
                    "reference": row.reference,
                    "error_code": answer.error_code,
                    "entries": sorted(f"{lst}:{entry}" for lst, entry in entries_of(matches)),
                    "carried": carry,
                },
            )
            event = event_for(answer.result, carried_over=carry)
            state = ApplicationState(app.state)
            # A clear result where the application already may go on changes nothing; an
            # application that moved on meanwhile keeps its state (the row is kept).
            if event in allowed_events(state):
                state = await apply_event(
                    tx=tx,
                    application=app,
                    event=event,
                    actor="system",
                    details={"screening": row.id, "stage": stage.value},
                )
            return ScreeningOutcome(row.id, answer.result, state, passes(row.result, row.decision))

    async def after_identity(self, application_id: str) -> ApplicationState:
        """The intake screening, right after the registry verified the identity."""
        return (await self.screen(application_id, ScreeningStage.INTAKE)).state

    async def before_queue(self, application_id: str) -> None:
        """Queueing needs a screening that lets the application on; one is made (or an
        UNAVAILABLE one retried) now if there is none. Raises the investor's neutral
        409 when held or refused."""
        # A read, on every join: screen() writes when a screening is to be made.
        async with reading(self.db) as tx:
            app = await get_application(tx=tx, application_id=application_id)
            state = ApplicationState(app.state)
            rows = await screenings_of(tx, app.id)
            latest = rows[-1] if rows else None
            if state is ApplicationState.SCREENING_REFUSED:
                raise refused_error()
            if state is ApplicationState.IDENTITY_VERIFIED and (
                latest is not None and passes(latest.result, latest.decision)
            ):
                return
            if state not in (ApplicationState.IDENTITY_VERIFIED, ApplicationState.SCREENING_HOLD):
                return  # the state machine answers (already queued, not verified, ...)
            if state is ApplicationState.SCREENING_HOLD and (
                latest is None or latest.result != ScreeningResult.UNAVAILABLE
            ):
                raise on_hold_error()
        outcome = await self.screen(application_id, ScreeningStage.INTAKE)
        if outcome.state is ApplicationState.SCREENING_REFUSED:
            raise refused_error()
        if not outcome.passed:
            raise on_hold_error()

    async def before_approval(self, application_id: str) -> None:
        """Screen again at approval (lists change); a hold or refusal blocks it (409)."""
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            state = ApplicationState(app.state)
        if state is ApplicationState.IN_REVIEW:
            outcome = await self.screen(application_id, ScreeningStage.APPROVAL)
            if outcome.passed:
                return
            result, state = outcome.result.value, outcome.state
        else:  # already held or refused: not screened again (nor put twice on the desk)
            result = ""
        refused = state is ApplicationState.SCREENING_REFUSED
        raise Conflict(
            "screening_refused" if refused else "screening_hold",
            "Screening at approval found a match: the application is refused."
            if refused
            else "Screening at approval held the application for compliance; "
            "approve again once it is cleared.",
            "审批前的反洗钱筛查命中名单，申请已终止。"
            if refused
            else "审批前的反洗钱筛查需合规人员处理，合规放行后方可再次审批。",
            details={"result": result, "application_state": state.value},
        )

    # -- retries --------------------------------------------------------------------------
    async def retry_due(self, now: datetime | None = None) -> int:
        """Screen again every held application whose latest answer was UNAVAILABLE and
        whose back-off has passed; returns how many were retried."""
        now = now or utcnow()
        due: list[tuple[str, ScreeningStage]] = []
        # A read: the sweep mostly finds nothing; screen() writes for each one due.
        async with reading(self.db) as tx:
            held = await tx.scalars(
                select(Application.id).where(
                    Application.state.in_([s.value for s in SCREENING_HELD_STATES])
                )
            )
            for application_id in held:
                rows = await screenings_of(tx, application_id)
                failed = 0
                for row in reversed(rows):
                    if row.result != ScreeningResult.UNAVAILABLE:
                        break
                    failed += 1
                if failed and _utc(rows[-1].created_at) + retry_delay(failed) <= now:
                    due.append((application_id, ScreeningStage(rows[-1].stage)))
        for application_id, stage in due:
            await self.screen(application_id, stage)
        return len(due)

    async def run_forever(self, interval: float = RETRY_SWEEP_SECONDS) -> None:
        while not self._stopping.is_set():
            try:
                await self.retry_due()
            except Exception:  # a sweep that fails is logged; the next one tries again
                log.exception("screening retry sweep failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
