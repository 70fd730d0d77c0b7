"""Carrying out a holder's approved service at the account system (A20–A22).

Runs after the review approved (and after the phone callback where ``services.callback``
asks for one). The account system answers per account; a partial outcome (one account
cancelled, another refused because holdings remain) is recorded as such: one
``service_outcomes`` row per account, the application ``completed`` when any account was
served, ``service_refused`` when none was. An account system that cannot be reached
changes nothing: the state stays, and the same request id makes the retry idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the adapter's service types are data only
    from server.adapters.account_system import AccountSystem, ServiceResult

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.account_system import TRANSIENT_ERRORS
from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.aftercare import AccountStatus
from server.domain.application import ApplicationEvent, ApplicationState, CallbackOrder
from server.domain.business import BusinessType, ServiceOffer
from server.domain.errors import Conflict, NotFound, Unavailable
from server.services.applications import apply_event, get_application
from server.services.compliance.holds import ensure_not_held
from server.services.intake.steps import ID_CONTEXT
from server.services.service_requests import SERVICE_CONTEXT, mask_account, read_service
from server.store.models import Account, ServiceOutcome, utcnow

log = logging.getLogger(__name__)
METHOD_NAMES = {"witnessed": "two_way_video_witnessing", "online": "online"}


def outcome_status(result: ServiceResult) -> str:
    if result.ok:
        return "done"
    return "failed" if result.error_code in TRANSIENT_ERRORS else "refused"


class AccountServices:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        accounts: AccountSystem,
        offer: ServiceOffer,
        on_concluded: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.db, self.protector, self.accounts, self.offer = db, protector, accounts, offer
        self.on_concluded = on_concluded

    def ready_state(self, business_type: str) -> ApplicationState:
        """Where a service waits to be carried out: after its callback, if it has one."""
        if self.offer.needs_callback(BusinessType(business_type)):
            return ApplicationState.CALLBACK_CONFIRMED
        return ApplicationState.APPROVED

    async def carry_out(self, application_id: str, *, actor: str) -> dict[str, Any]:
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.business_type == BusinessType.OPEN.value:
                raise Conflict(
                    "not_a_service", "An opening is not a service.", "开户申请不是账户业务。"
                )
            await ensure_not_held(tx, application_id)  # A23: a risk alert holds it
            if app.state != self.ready_state(app.business_type).value:
                raise Conflict(
                    "not_ready_to_carry_out",
                    "The service cannot be carried out at this stage.",
                    "当前阶段不能办理该业务。",
                    details={"state": app.state},
                )
            request = read_service(app, self.protector)
            if request is None or app.id_number_enc is None:
                raise NotFound(
                    "service_request_missing", "No service request on file.", "没有业务申请信息。"
                )
            id_number = self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
            kind, method = app.business_type, app.method
        results = await self.accounts.carry_out(
            business_type=kind,
            id_number=id_number,
            account_numbers=request.chosen,
            details=request.details,
            method=METHOD_NAMES.get(method, method),
            request_id=f"svc-{application_id}",
        )
        if not results or all(outcome_status(r) == "failed" for r in results):
            codes = sorted({r.error_code or "unavailable" for r in results}) or ["unavailable"]
            async with self.db.begin() as tx:
                await append_audit(
                    tx,
                    actor=actor,
                    action="service.attempt_failed",
                    subject_type="application",
                    subject_id=application_id,
                    details={"errors": codes},
                )
            log.warning("account service failed", extra={"error": ",".join(codes)})
            raise Unavailable(
                "account_system_error",
                f"The account system is unavailable ({', '.join(codes)}); retry later.",
                "账户系统暂不可用，请稍后重试。",
                details={"errors": codes},
            )
        served = [r for r in results if r.ok]
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            for r in results:
                tx.add(
                    ServiceOutcome(
                        application_id=application_id,
                        business_type=kind,
                        method=method,
                        account_masked=mask_account(r.account_number),
                        status=outcome_status(r),
                        error_code=r.error_code,
                        reference=r.reference[:100],
                        details_enc=self.protector.encrypt_json(
                            {
                                "account_number": r.account_number,
                                "changes": r.changes,
                                "info": r.info,
                            },
                            context=SERVICE_CONTEXT,
                        ),
                    )
                )
            if kind == BusinessType.CANCEL.value:
                await self._mark_closed(tx, served, method)
            await apply_event(
                tx=tx,
                application=app,
                event=(
                    ApplicationEvent.SERVICE_DONE if served else ApplicationEvent.SERVICE_DECLINED
                ),
                actor=actor,
                order=CallbackOrder.CALLBACK_FIRST,
                details={
                    "business_type": kind,
                    "done": [mask_account(r.account_number) for r in served],
                    "refused": [
                        {"account": mask_account(r.account_number), "code": r.error_code}
                        for r in results
                        if not r.ok
                    ],
                },
            )
            state = app.state
        if self.on_concluded is not None:
            try:
                await self.on_concluded(application_id)
            except Exception:  # a failed notice is recorded there; never undoes the service
                log.exception("service notice failed")
        return {
            "state": state,
            "results": [
                {
                    "account_masked": mask_account(r.account_number),
                    "status": outcome_status(r),
                    "error_code": r.error_code,
                }
                for r in results
            ],
        }

    async def _mark_closed(
        self, tx: AsyncSession, served: list[ServiceResult], method: str
    ) -> None:
        """A22, A26: an account opened here and now cancelled records when and how."""
        numbers = {r.account_number for r in served}
        if not numbers:
            return
        rows = await tx.scalars(
            select(Account).where(Account.unified_account_number.in_(sorted(numbers)))
        )
        for account in rows.all():
            account.status = AccountStatus.CANCELLED
            account.closed_at = utcnow()
            account.closing_method = METHOD_NAMES.get(method, method)
