"""After approval: the callback (A8, A17.6) and the account opening (A9, A26).

A8 allows two orders, chosen by ``callback.order``:
- ``callback_first``: approved → call back → confirmed → open the account (active);
- ``open_first``: approved → open the account *blocked* → call back → confirmed →
  the account becomes usable (A17.6: not before the callback succeeded).
A denial, or ``callback.max_attempts`` unreachable attempts, ends the application.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.account_system import OPENING_METHOD, AccountSystem
from server.audit import append_audit
from server.config import CallbackConfig
from server.crypto import DataProtector, mask_id_number
from server.domain.aftercare import AccountStatus, CallbackOutcome
from server.domain.application import ApplicationEvent, ApplicationState, CallbackOrder
from server.domain.business import BusinessType, label
from server.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from server.files import write_durably
from server.services.aftercare.account_services import AccountServices
from server.services.applications import apply_event, get_application
from server.services.compliance.holds import ensure_not_held
from server.services.intake.steps import ID_CONTEXT
from server.store.models import Account, Application, Callback

log = logging.getLogger(__name__)


def audio_kind(data: bytes) -> str | None:
    """The file extension for a supported audio format, from its first bytes."""
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[4:8] == b"ftyp":
        return "m4a"
    return None


class Aftercare:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        accounts: AccountSystem,
        config: CallbackConfig,
        on_active: Callable[[str], Awaitable[None]] | None = None,
        on_callback: Callable[[str], Awaitable[object]] | None = None,
        services: AccountServices | None = None,
    ) -> None:
        # A20–A22: a holder's service is carried out here instead of an opening.
        self.services = services
        self.on_active = on_active
        # A23: risk rules evaluated once a callback is recorded (never raises).
        self.on_callback = on_callback
        self.db = db
        self.protector = protector
        self.accounts = accounts
        self.config = config
        self.order = CallbackOrder(config.order)

    @property
    def _awaiting_callback(self) -> ApplicationState:
        return (
            ApplicationState.APPROVED
            if self.order is CallbackOrder.CALLBACK_FIRST
            else ApplicationState.ACCOUNT_OPENED
        )

    def _service_callbacks(self) -> list[str]:
        return sorted(t.value for t in self.services.offer.callback) if self.services else []

    def _awaiting(self, app: Application) -> bool:
        """Whether a callback is due: an opening as A8 orders it; a holder's service
        after approval, where ``services.callback`` names it (nothing to block first)."""
        if app.business_type == "open":
            return app.state == self._awaiting_callback.value
        return (
            app.business_type in self._service_callbacks()
            and app.state == ApplicationState.APPROVED.value
        )

    def _order_of(self, app: Application) -> CallbackOrder:
        return self.order if app.business_type == "open" else CallbackOrder.CALLBACK_FIRST

    async def account_of(self, application_id: str) -> Account | None:
        """The account opened for an application (A9), if any."""
        async with self.db.begin() as tx:
            return await tx.scalar(select(Account).where(Account.application_id == application_id))

    async def worklist(self) -> list[dict[str, Any]]:
        """Applications waiting for their callback, oldest change first; ID masked."""
        async with self.db.begin() as tx:
            apps = (
                await tx.scalars(
                    select(Application)
                    .where(
                        or_(
                            and_(
                                Application.business_type == "open",
                                Application.state == self._awaiting_callback.value,
                            ),
                            and_(
                                Application.business_type.in_(self._service_callbacks()),
                                Application.state.in_(
                                    [
                                        ApplicationState.APPROVED.value,
                                        ApplicationState.CALLBACK_CONFIRMED.value,
                                    ]
                                ),
                            ),
                            # A service with no callback still approved: the account
                            # system could not take it at approval (a retry is due).
                            and_(
                                Application.business_type != "open",
                                Application.business_type.not_in(self._service_callbacks()),
                                Application.state == ApplicationState.APPROVED.value,
                            ),
                        )
                    )
                    .order_by(Application.updated_at)
                )
            ).all()
            counts = dict(
                (
                    await tx.execute(
                        select(Callback.application_id, func.count())
                        .where(Callback.application_id.in_([a.id for a in apps]))
                        .group_by(Callback.application_id)
                    )
                ).all()
            )
        return [
            {
                "application_id": a.id,
                "investor_name": a.investor_name,
                "id_number_masked": mask_id_number(
                    self.protector.decrypt(a.id_number_enc, context=ID_CONTEXT)
                )
                if a.id_number_enc
                else None,
                "state": a.state,
                "business_type": a.business_type,
                "business_label": label(a.business_type),
                # A20–A22: called back (or none needed), but not yet carried out.
                "carry_out_due": a.business_type != "open" and not self._awaiting(a),
                "attempts": counts.get(a.id, 0),
            }
            for a in apps
        ]

    async def carry_out(self, application_id: str, *, actor: str) -> dict[str, Any]:
        """Carry out a holder's approved service (A20–A22); the retry path too."""
        if self.services is None:
            raise Conflict("services_off", "Account services are not set up.", "未启用账户业务。")
        return await self.services.carry_out(application_id, actor=actor)

    async def after_approval(self, application_id: str, *, actor: str) -> None:
        """Called once a review approved: with ``open_first`` the account opens now; a
        holder's service without a callback is carried out now."""
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            business_type = app.business_type
        if business_type != "open":
            if self.services is not None and not self.services.offer.needs_callback(
                BusinessType(business_type)
            ):
                try:
                    await self.services.carry_out(application_id, actor=actor)
                except Unavailable:
                    # The approval stands; the attempt is audited and listed for a retry
                    # (worklist "carry_out_due", POST /api/v1/services/{id}/carry-out).
                    log.warning("service left for a retry after approval")
            return
        if self.order is CallbackOrder.OPEN_FIRST:
            await self.open_account(application_id, actor=actor)

    async def record(
        self,
        *,
        staff_id: int,
        application_id: str,
        outcome: str,
        notes: str,
        audio: bytes | None = None,
        files_root: Path | None = None,
    ) -> dict[str, Any]:
        """One call's outcome; ``audio`` optionally the call's recording (kept with its
        SHA-256 beside the session evidence)."""
        kind = audio_kind(audio) if audio else None
        if audio and kind is None:
            raise InvalidInput(
                "bad_audio",
                "The call recording must be MP3, WAV, OGG, WebM or M4A audio.",
                "回访录音须为 MP3、WAV、OGG、WebM 或 M4A 格式。",
                details={"field": "audio"},
            )
        if outcome not in frozenset(CallbackOutcome):
            raise InvalidInput(
                "bad_outcome", f"outcome: {', '.join(CallbackOutcome)}.", "回访结果无效。"
            )
        actor = f"staff:{staff_id}"
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            order = self._order_of(app)
            is_service = app.business_type != "open"
            if not self._awaiting(app):
                raise Conflict(
                    "not_awaiting_callback",
                    "No callback is due for this application.",
                    "该申请当前无需回访。",
                )
            attempts = (
                await tx.scalar(
                    select(func.count()).where(Callback.application_id == application_id)
                )
                or 0
            ) + 1
            row = Callback(
                application_id=application_id,
                staff_id=staff_id,
                outcome=outcome,
                attempts=attempts,
                notes=notes[:1000] or None,
            )
            tx.add(row)
            await tx.flush()
            if audio and kind and files_root is not None:
                rel = f"callbacks/{application_id}/{row.id}.{kind}"
                await asyncio.to_thread(write_durably, files_root / rel, audio)
                row.audio_path = rel
                row.audio_sha256 = hashlib.sha256(audio).hexdigest()
                await append_audit(
                    tx,
                    actor=actor,
                    action="callback.audio_stored",
                    subject_type="application",
                    subject_id=application_id,
                    details={"callback": row.id, "sha256": row.audio_sha256, "bytes": len(audio)},
                )
            event: ApplicationEvent | None = None
            if outcome == CallbackOutcome.CONFIRMED:
                event = ApplicationEvent.CALLBACK_CONFIRMED
            elif outcome == CallbackOutcome.DENIED or attempts >= self.config.max_attempts:
                event = ApplicationEvent.CALLBACK_DENIED
            if event is not None:
                await apply_event(
                    tx=tx,
                    application=app,
                    event=event,
                    actor=actor,
                    order=order,
                    details={"outcome": outcome, "attempts": attempts},
                )
            else:
                await append_audit(
                    tx,
                    actor=actor,
                    action="callback.attempted",
                    subject_type="application",
                    subject_id=application_id,
                    details={"outcome": outcome, "attempts": attempts},
                )
            if event is ApplicationEvent.CALLBACK_CONFIRMED and order is CallbackOrder.OPEN_FIRST:
                # A17.6: the blocked account becomes usable only now.
                account = await tx.scalar(
                    select(Account).where(Account.application_id == application_id)
                )
                if account is not None:
                    account.status = AccountStatus.ACTIVE
            state = app.state
        if event is ApplicationEvent.CALLBACK_CONFIRMED and is_service:
            if self.services is not None:
                try:
                    await self.services.carry_out(application_id, actor=actor)
                except Unavailable:
                    # The callback stands; the service is listed for a retry.
                    log.warning("service left for a retry after its callback")
            async with self.db.begin() as tx:
                state = (await get_application(tx=tx, application_id=application_id)).state
        elif (
            event is ApplicationEvent.CALLBACK_CONFIRMED
            and self.order is CallbackOrder.CALLBACK_FIRST
        ):
            await self.open_account(application_id, actor=actor)
            async with self.db.begin() as tx:
                state = (await get_application(tx=tx, application_id=application_id)).state
        if self.on_callback is not None:
            await self.on_callback(application_id)
        return {"application_id": application_id, "attempts": attempts, "state": state}

    async def open_account(self, application_id: str, *, actor: str) -> dict[str, Any]:
        """Open the account with the CSDC system and record it, marked by its opening
        method (A26); blocked until the callback with ``open_first``."""
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.business_type != "open":
                raise Conflict(
                    "not_an_opening",
                    "This application is for an account service, not an opening.",
                    "该申请为账户业务，不是开户。",
                    details={"business_type": app.business_type},
                )
            ready = (
                ApplicationState.CALLBACK_CONFIRMED
                if self.order is CallbackOrder.CALLBACK_FIRST
                else ApplicationState.APPROVED
            )
            await ensure_not_held(tx, application_id)  # A23: a risk alert holds it
            if app.state != ready.value:
                raise Conflict(
                    "not_ready_to_open",
                    "The account cannot be opened at this stage.",
                    "当前阶段不能开户。",
                )
            if app.id_number_enc is None:
                raise NotFound("id_number_missing", "No ID number on file.", "没有证件号码。")
            id_number = self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
            name, document_type = app.investor_name or "", app.document_type or ""
        result = await self.accounts.open_account(
            application_id=application_id,
            id_number=id_number,
            name=name,
            document_type=document_type,
        )
        if not result.ok or result.unified_account_number is None:
            async with self.db.begin() as tx:
                await append_audit(
                    tx,
                    actor=actor,
                    action="account.open_failed",
                    subject_type="application",
                    subject_id=application_id,
                    details={"error": result.error_code, "reference": result.reference},
                )
            log.warning("account opening failed", extra={"error": result.error_code})
            raise Unavailable(
                "account_system_error",
                f"The account system refused or is unavailable ({result.error_code}); retry later.",
                "开户系统暂不可用或拒绝开户，请稍后重试。",
                details={"error": result.error_code},
            )
        status = (
            AccountStatus.ACTIVE
            if self.order is CallbackOrder.CALLBACK_FIRST
            else AccountStatus.BLOCKED
        )
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            tx.add(
                Account(
                    application_id=application_id,
                    unified_account_number=result.unified_account_number,
                    sub_accounts=result.sub_accounts,
                    opening_method=OPENING_METHOD,
                    status=status,
                )
            )
            await apply_event(
                tx=tx,
                application=app,
                event=ApplicationEvent.OPEN_ACCOUNT,
                actor=actor,
                order=self.order,
                details={"reference": result.reference, "status": status, "method": OPENING_METHOD},
            )
        if status == AccountStatus.ACTIVE:
            await self._notify(application_id)
        return {"unified_account_number": result.unified_account_number, "status": status}

    async def _notify(self, application_id: str) -> None:
        """A9: tell the investor the numbers once the account is usable. A failed notice
        is recorded (notifications) and never undoes the opening."""
        if self.on_active is None:
            return
        try:
            await self.on_active(application_id)
        except Exception:
            log.exception("account notice failed")
