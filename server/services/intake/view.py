"""What the investor (and their app) sees of their own application."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.crypto import DataProtector
from server.domain.business import refusal
from server.domain.intake import completed_steps, next_step
from server.services.applications import get_application
from server.services.intake.steps import active_documents, identity_summary, progress_of
from server.services.service_requests import service_view
from server.store.db import reading
from server.store.models import IdentityCheck, ServiceOutcome


async def application_view(
    *, tx: AsyncSession, application_id: str, protector: DataProtector
) -> dict[str, Any]:
    app = await get_application(tx=tx, application_id=application_id)
    progress = await progress_of(tx, app)
    docs = {
        d.kind: {
            "sha256": d.sha256,
            "bytes": d.bytes,
            "width": d.width,
            "height": d.height,
            "uploaded_at": d.created_at.isoformat(),
        }
        for d in await active_documents(tx, app.id)
    }
    check = await tx.scalar(
        select(IdentityCheck)
        .where(IdentityCheck.application_id == app.id)
        .order_by(IdentityCheck.created_at.desc())
        .limit(1)
    )
    suitability = app.suitability or None
    outcomes = [
        {
            "account_masked": o.account_masked,
            "status": o.status,
            "error_code": o.error_code,
            **(
                dict(zip(("message_zh", "message_en"), refusal(o.error_code), strict=True))
                if o.status != "done"
                else {}
            ),
        }
        for o in (
            await tx.scalars(
                select(ServiceOutcome)
                .where(ServiceOutcome.application_id == app.id)
                .order_by(ServiceOutcome.created_at, ServiceOutcome.id)
            )
        ).all()
    ]
    return {
        "id": app.id,
        "state": app.state,
        "next_step": next_step(progress).value,
        "completed": sorted(s.value for s in completed_steps(progress)),
        "identity": identity_summary(app, protector),
        "documents": docs,
        "suitability": (
            {k: suitability[k] for k in ("version", "total", "level")} if suitability else None
        ),
        "disclosure": (
            app.disclosure if app.disclosure and app.disclosure.get("acknowledged_at") else None
        ),
        "business_type": app.business_type,
        "method": app.method,
        # The holder sees their own accounts masked like staff lists do; the precheck's
        # refusals (holdings remain…) in both languages.
        "service": (
            {**service_view(app, protector), "outcomes": outcomes}
            if app.business_type != "open"
            else None
        ),
        "identity_check": (
            {
                "result": check.result,
                "reference": check.reference,
                "at": check.created_at.isoformat(),
            }
            if check
            else None
        ),
    }


async def read_application_view(
    db: async_sessionmaker[AsyncSession], *, application_id: str, protector: DataProtector
) -> dict[str, Any]:
    """``application_view`` in a read of its own that never queues behind writers
    (store.db.reading): the investor's page asks for it after every step (issue 21: 168
    of ~1 800 transactions while 24 investors went through intake and joined)."""
    async with reading(db) as tx:
        return await application_view(tx=tx, application_id=application_id, protector=protector)
