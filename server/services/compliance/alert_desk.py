"""What a compliance officer does with risk alerts (A23): list them, take one, resolve,
escalate or reopen it with a note. Four eyes: never on a case they witnessed or
reviewed. Every action is one tx with its alert event and audit entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.domain import alerts as life
from server.domain.errors import Forbidden, InvalidInput, NotFound
from server.domain.risk_evaluation import SubjectType
from server.domain.risk_rules import RuleSet
from server.services.compliance.alerts import RiskCounters, alert_view, resolved_at, to_domain
from server.services.compliance.holds import held_applications
from server.store.models import Review, WitnessSession
from server.store.risk_models import Alert, AlertEvent

MAX_PAGE = 200
MAX_NOTE = 2000


async def _own_case(tx: AsyncSession, row: Alert, staff_id: int) -> bool:
    if row.subject_type in (SubjectType.WITNESS, SubjectType.REVIEWER) and row.subject_id == str(
        staff_id
    ):
        return True
    apps = held_applications(row)
    if not apps:
        return False
    witnessed = await tx.scalar(
        select(WitnessSession.id)
        .where(WitnessSession.application_id.in_(apps), WitnessSession.witness_id == staff_id)
        .limit(1)
    )
    reviewed = await tx.scalar(
        select(Review.id)
        .where(Review.application_id.in_(apps), Review.reviewer_id == staff_id)
        .limit(1)
    )
    return witnessed is not None or reviewed is not None


async def list_alerts(
    tx: AsyncSession, *, state: str | None = None, limit: int = 100, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Alerts by deadline, soonest first; ``state`` one of the alert states or None."""
    now = now or datetime.now(UTC)
    query = select(Alert).order_by(Alert.due_at, Alert.id).limit(min(limit, MAX_PAGE))
    if state is not None:
        if state not in frozenset(life.AlertState):
            raise InvalidInput(
                "bad_state",
                f"state: {', '.join(life.AlertState)}.",
                "状态无效。",
                details={"field": "state"},
            )
        query = query.where(Alert.state == state)
    return [alert_view(r, now) for r in (await tx.scalars(query)).all()]


def _utc_iso(value: datetime) -> str:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


async def alert_detail(
    tx: AsyncSession, alert_id: str, now: datetime | None = None
) -> dict[str, Any]:
    row = await tx.get(Alert, alert_id)
    if row is None:
        raise NotFound("alert_not_found", "No such alert.", "没有该预警。")
    events = (
        await tx.scalars(
            select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
        )
    ).all()
    return {
        **alert_view(row, now or datetime.now(UTC)),
        "events": [
            {"event": e.event, "actor": e.actor, "note": e.note, "at": _utc_iso(e.at)}
            for e in events
        ],
    }


class AlertDesk:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        rule_set: RuleSet,
        counters: RiskCounters,
    ) -> None:
        self.db = db
        self.rules = rule_set
        self.counters = counters

    async def act(self, *, staff_id: int, alert_id: str, event: str, note: str) -> dict[str, Any]:
        if event not in frozenset(life.AlertEvent):
            raise InvalidInput(
                "bad_event",
                f"event: {', '.join(life.AlertEvent)}.",
                "操作无效。",
                details={"field": "event"},
            )
        now = datetime.now(UTC)
        async with self.db.begin() as tx:
            row = await tx.get(Alert, alert_id)
            if row is None:
                raise NotFound("alert_not_found", "No such alert.", "没有该预警。")
            if await _own_case(tx, row, staff_id):
                raise Forbidden(
                    "own_case",
                    "Someone else must handle an alert on a case you witnessed or reviewed.",
                    "您见证或复核过的案件，须由他人处理其预警。",
                )
            before = to_domain(row, await resolved_at(tx, row.id))
            after = life.apply(
                before,
                life.AlertEvent(event),
                actor=str(staff_id),
                at=now,
                note=note[:MAX_NOTE],
                response=self.rules.response,
            )
            row.state = after.state.value
            row.due_at = after.due_at
            row.updated_at = now
            if after.owner is not None and after.owner.isdigit():
                row.owner_id = int(after.owner)
            last = after.notes[-1]
            tx.add(
                AlertEvent(
                    alert_id=row.id,
                    event=last.event.value,
                    actor=f"staff:{staff_id}",
                    note=last.text or None,
                    at=now,
                )
            )
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action=f"alert.{event}",
                subject_type="alert",
                subject_id=row.id,
                details={
                    "from": before.state.value,
                    "to": after.state.value,
                    "note": bool(last.text),
                },
            )
            body = await alert_detail(tx, row.id, now)
        if event == life.AlertEvent.ESCALATE:
            self.counters.escalated.labels("staff").inc()
        return body
