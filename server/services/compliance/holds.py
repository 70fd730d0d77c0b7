"""A held application (A23): an active alert whose rule holds it blocks approval and
account opening until the alert is resolved. Not an application state: the hold is the
alert."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.domain.alerts import ACTIVE
from server.domain.errors import Conflict
from server.store.risk_models import Alert


def held_applications(row: Alert) -> list[str]:
    """The applications an alert concerns (the first is also ``application_id``)."""
    ids = row.details.get("application_ids") if isinstance(row.details, dict) else None
    if isinstance(ids, list):
        return [str(i) for i in ids]
    return [row.application_id] if row.application_id else []


async def holding_alerts(tx: AsyncSession, application_id: str) -> list[Alert]:
    rows = (
        await tx.scalars(
            select(Alert).where(Alert.hold.is_(True), Alert.state.in_([s.value for s in ACTIVE]))
        )
    ).all()
    return [r for r in rows if application_id in held_applications(r)]


async def ensure_not_held(tx: AsyncSession, application_id: str) -> None:
    """Raise ``risk_hold`` (409) while an active holding alert concerns the application."""
    holding = await holding_alerts(tx, application_id)
    if holding:
        raise Conflict(
            "risk_hold",
            "A risk alert holds this application until compliance resolves it.",
            "该申请因风险预警被暂停，须待合规处理完毕。",
            details={"alerts": sorted(r.id for r in holding)},
        )
