"""Investor intake use cases: identity data, images, suitability, disclosure (A4, A6, A17.1).

Each step loads the application the investor's session owns, checks it with the domain,
and writes data plus audit entry in one transaction. Data can change only while the
application is a draft; after submission it is evidence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.crypto import DataProtector, mask_id_number
from server.domain.application import ApplicationState
from server.domain.errors import Conflict
from server.domain.intake import IdentityData, IntakeProgress
from server.domain.suitability import (
    DisclosureDocument,
    Questionnaire,
    check_acknowledgement,
    score,
)
from server.services.applications import get_application
from server.services.intake.decode_budget import DecodeBudget, check_upload
from server.services.intake.images import (
    CheckedImage,
    ImageKind,
    ImageLimits,
    remove_stored,
    store_image,
)
from server.store.models import Application, Document, utcnow

ID_CONTEXT = "applications.id_number"
PROFILE_CONTEXT = "applications.profile"
# Applications that hold an ID number "in use": another draft may not claim the same person.
_ACTIVE_STATES = [
    s.value
    for s in ApplicationState
    if s
    not in (
        ApplicationState.ABANDONED,
        ApplicationState.WITNESS_FAILED,
        ApplicationState.REVIEW_REJECTED,
        ApplicationState.CALLBACK_FAILED,
        ApplicationState.IDENTITY_FAILED,
        ApplicationState.ACTIVE,
        ApplicationState.COMPLETED,
        ApplicationState.SERVICE_REFUSED,
    )
]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _locked(app: Application) -> Conflict:
    return Conflict(
        "application_locked",
        "This application has been submitted and can no longer be changed.",
        "申请已提交，不能再修改。",
        details={"state": app.state},
    )


async def load_draft(tx: AsyncSession, application_id: str) -> Application:
    app = await get_application(tx=tx, application_id=application_id)
    if app.state != ApplicationState.DRAFT.value:
        raise _locked(app)
    return app


async def active_documents(tx: AsyncSession, application_id: str) -> list[Document]:
    rows = await tx.scalars(
        select(Document)
        .where(Document.application_id == application_id, Document.active.is_(True))
        .order_by(Document.created_at)
    )
    return list(rows.all())


async def progress_of(tx: AsyncSession, app: Application) -> IntakeProgress:
    kinds = {d.kind for d in await active_documents(tx, app.id)}
    holder_service = app.business_type != "open"
    return IntakeProgress(
        state=ApplicationState(app.state),
        business_type=app.business_type,
        # A21: a holder's identity step is done only once the account system confirmed
        # the accounts are theirs (the request is kept with the identity).
        identity=app.id_number_enc is not None
        and (not holder_service or app.service_enc is not None),
        id_front=ImageKind.ID_FRONT.value in kinds,
        id_back=ImageKind.ID_BACK.value in kinds,
        frontal_photo=ImageKind.FRONTAL_PHOTO.value in kinds,
        suitability=app.risk_level is not None,
        disclosure=bool(app.disclosure and app.disclosure.get("acknowledged_at")),
    )


async def save_identity(
    *,
    tx: AsyncSession,
    application_id: str,
    data: IdentityData,
    protector: DataProtector,
) -> Application:
    app = await load_draft(tx, application_id)
    id_hash = protector.lookup_hash(data.id_number, kind="id_number")
    other = await tx.scalar(
        select(Application.id).where(
            Application.id_number_hash == id_hash,
            Application.id != app.id,
            Application.state.in_(_ACTIVE_STATES),
        )
    )
    if other is not None:
        raise Conflict(
            "id_number_in_use",
            "Another application with this ID is in progress. Sign in with the phone number "
            "used for it, or call the hotline.",
            "该证件号码已有进行中的开户申请，请使用当时的手机号登录继续，或致电客服。",
            details={"field": "id_number"},
        )
    app.investor_name = data.name
    app.document_type = data.document_type.value
    app.id_number_hash = id_hash
    app.id_number_enc = protector.encrypt(data.id_number, context=ID_CONTEXT)
    app.profile_enc = protector.encrypt_json(data.profile(), context=PROFILE_CONTEXT)
    await tx.flush()
    await append_audit(
        tx,
        actor="investor",
        action="intake.identity_saved",
        subject_type="application",
        subject_id=app.id,
        details={
            "document_type": data.document_type.value,
            "id_number": mask_id_number(data.id_number),
        },
    )
    return app


async def save_image(
    *,
    db: async_sessionmaker[AsyncSession],
    application_id: str,
    kind: ImageKind,
    raw: bytes,
    limits: ImageLimits,
    root: Path,
    slots: DecodeBudget,
) -> Document:
    """Validate (off the event loop), store the file, then record it; never a half state."""
    async with db.begin() as tx:
        await load_draft(tx, application_id)  # fail fast before decoding anything
    # Decoding waits for its share of memory (decode_budget.py); storing needs none.
    image: CheckedImage = await check_upload(raw, limits=limits, budget=slots)
    relative = await asyncio.to_thread(
        store_image, root, application_id=application_id, kind=kind, image=image
    )
    try:
        async with db.begin() as tx:
            await load_draft(tx, application_id)
            await tx.execute(
                update(Document)
                .where(
                    Document.application_id == application_id,
                    Document.kind == kind.value,
                    Document.active.is_(True),
                )
                .values(active=False)
            )
            doc = Document(
                application_id=application_id,
                kind=kind.value,
                path=str(relative),
                content_type=image.content_type,
                bytes=len(image.data),
                sha256=image.sha256,
                width=image.width,
                height=image.height,
                active=True,
            )
            tx.add(doc)
            await tx.flush()
            await append_audit(
                tx,
                actor="investor",
                action="intake.image_stored",
                subject_type="application",
                subject_id=application_id,
                details={"kind": kind.value, "document": doc.id, "sha256": image.sha256},
            )
    except BaseException:
        # The file is only evidence once the database says so.
        await asyncio.to_thread(remove_stored, root, str(relative))
        raise
    return doc


async def save_suitability(
    *,
    tx: AsyncSession,
    application_id: str,
    questionnaire: Questionnaire,
    answers: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    app = await load_draft(tx, application_id)
    result = score(questionnaire, answers)  # A4: know the investor
    app.suitability = result.to_dict()
    app.risk_level = result.level
    await tx.flush()
    await append_audit(
        tx,
        actor="investor",
        action="intake.suitability_answered",
        subject_type="application",
        subject_id=app.id,
        details={"version": result.version, "total": result.total, "level": result.level},
    )
    return result.to_dict()


async def serve_disclosure(
    *, tx: AsyncSession, application_id: str, document: DisclosureDocument
) -> None:
    """Remember when this version was shown, so the time it was open is measured here."""
    app = await get_application(tx=tx, application_id=application_id)
    if app.state != ApplicationState.DRAFT.value:
        return  # read-only view after submission
    current = dict(app.disclosure or {})
    if current.get("acknowledged_at") and current.get("version") == document.version:
        return
    app.disclosure = {"version": document.version, "served_at": utcnow().isoformat()}


async def acknowledge_disclosure(
    *,
    tx: AsyncSession,
    application_id: str,
    document: DisclosureDocument,
    version: str,
    scrolled_to_end: bool,
) -> dict[str, Any]:
    app = await load_draft(tx, application_id)
    served = (app.disclosure or {}).get("served_at")
    now = utcnow()
    open_seconds = (now - _utc(datetime.fromisoformat(served))).total_seconds() if served else 0.0
    if served is None or (app.disclosure or {}).get("version") != document.version:
        open_seconds = 0.0
    # A4: the investor must have had the current text open, to its end, long enough.
    check_acknowledgement(
        document, version=version, scrolled_to_end=scrolled_to_end, open_seconds=open_seconds
    )
    record = {
        "version": document.version,
        "served_at": served,
        "acknowledged_at": now.isoformat(),
        "open_seconds": round(open_seconds, 1),
        "scrolled_to_end": True,
    }
    app.disclosure = record
    await tx.flush()
    await append_audit(
        tx,
        actor="investor",
        action="intake.disclosure_acknowledged",
        subject_type="application",
        subject_id=app.id,
        details={"version": document.version, "open_seconds": record["open_seconds"]},
    )
    return record


def identity_summary(app: Application, protector: DataProtector) -> dict[str, Any] | None:
    """The investor's own identity data for display: ID number masked (A25)."""
    if app.id_number_enc is None:
        return None
    number = protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
    profile = (
        protector.decrypt_json(app.profile_enc, context=PROFILE_CONTEXT) if app.profile_enc else {}
    )
    return {
        "name": app.investor_name,
        "document_type": app.document_type,
        "id_number_masked": mask_id_number(number),
        **profile,
    }


def today_in(zone: Any) -> date:
    return datetime.now(zone).date()
