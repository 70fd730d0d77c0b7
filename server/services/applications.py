"""Application life cycle use cases: every state change persisted with its audit entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.application import (
    ApplicationEvent,
    ApplicationState,
    CallbackOrder,
    transition,
)
from server.domain.errors import NotFound
from server.store.db import reading
from server.store.models import Application


def _not_found() -> NotFound:
    return NotFound("application_not_found", "Application not found.", "未找到该开户申请。")


async def create_application(
    *,
    tx: AsyncSession,
    phone: str,
    protector: DataProtector,
    actor: str,
    business_type: str = "open",
    method: str = "witnessed",
) -> Application:
    app = Application(
        state=ApplicationState.DRAFT.value,
        phone_hash=protector.lookup_hash(phone, kind="phone"),
        phone_enc=protector.encrypt(phone, context="applications.phone"),
        business_type=business_type,
        method=method,
    )
    tx.add(app)
    await tx.flush()
    await append_audit(
        tx,
        actor=actor,
        action="application.create",
        subject_type="application",
        subject_id=app.id,
        details={"state": app.state, "business_type": business_type, "method": method},
    )
    return app


async def get_application(*, tx: AsyncSession, application_id: str) -> Application:
    app = await tx.get(Application, application_id)
    if app is None:
        raise _not_found()
    return app


async def application_state(
    db: async_sessionmaker[AsyncSession], application_id: str
) -> ApplicationState:
    """The application's state, read without queueing behind writers (store.db.reading)."""
    async with reading(db) as tx:
        return ApplicationState((await get_application(tx=tx, application_id=application_id)).state)


async def apply_event(
    *,
    tx: AsyncSession,
    application: Application,
    event: ApplicationEvent,
    actor: str,
    order: CallbackOrder = CallbackOrder.CALLBACK_FIRST,
    details: dict[str, Any] | None = None,
) -> ApplicationState:
    """Check the transition, change the state and write the audit entry, in the caller's
    transaction. The row's version column makes a concurrent change fail, not overwrite."""
    current = ApplicationState(application.state)
    new = transition(current, event, order)
    application.state = new.value
    await tx.flush()
    await append_audit(
        tx,
        actor=actor,
        action=f"application.{event.value}",
        subject_type="application",
        subject_id=application.id,
        details={"from": current.value, "to": new.value, **(details or {})},
    )
    return new
