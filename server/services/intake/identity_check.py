"""Submit the application and check the investor against the identity registry (A13, A17.2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.identity_registry import IdentityRegistry, RegistryResponse, RegistryResult
from server.audit import append_audit
from server.config import Config
from server.crypto import DataProtector
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.errors import Conflict, InvalidInput, Unavailable
from server.domain.intake import missing_before_check
from server.services import rate_limit
from server.services.applications import apply_event, get_application
from server.services.intake.steps import ID_CONTEXT, progress_of
from server.store.models import IdentityCheck, utcnow


@dataclass(frozen=True)
class CheckOutcome:
    state: ApplicationState
    result: RegistryResult
    reference: str


async def submit_and_check(
    *,
    db: async_sessionmaker[AsyncSession],
    config: Config,
    protector: DataProtector,
    registry: IdentityRegistry,
    application_id: str,
    screen: Callable[[str], Awaitable[ApplicationState]] | None = None,
) -> CheckOutcome:
    """Submit (draft → submitted) and run the registry check, then (``screen``) the AML
    screening (A3), so "identity_verified" still means "may queue".

    UNAVAILABLE leaves the application submitted, records the attempt and raises
    Unavailable so the investor is told to try again later; it never verifies.
    """
    async with db.begin() as tx:
        app = await get_application(tx=tx, application_id=application_id)
        state = ApplicationState(app.state)
        if state is ApplicationState.IDENTITY_VERIFIED:
            return CheckOutcome(state, RegistryResult.MATCH, "")
        if state is ApplicationState.DRAFT:
            missing = missing_before_check(await progress_of(tx, app))
            if missing:
                raise InvalidInput(
                    "intake_incomplete",
                    "Complete every step before submitting.",
                    "请先完成所有步骤再提交。",
                    details={"missing": missing},
                )
        elif state is not ApplicationState.SUBMITTED:
            raise Conflict(
                "application_not_checkable",
                "This application is not waiting for an identity check.",
                "该申请当前不需要身份核查。",
                details={"state": app.state},
            )
        await rate_limit.hit(
            tx,
            bucket="identity_check",
            key_hash=app.id,
            limit=config.intake.identity_checks_per_hour,
            window=timedelta(hours=1),
            now=utcnow(),
        )
        if state is ApplicationState.DRAFT:
            await apply_event(
                tx=tx,
                application=app,
                event=ApplicationEvent.SUBMIT,
                actor="investor",
            )
        assert app.id_number_enc is not None and app.investor_name and app.document_type
        name, id_type = app.investor_name, app.document_type
        number = protector.decrypt(app.id_number_enc, context=ID_CONTEXT)

    # The registry is called outside any transaction: it may take seconds.
    response = await registry.verify(name=name, id_type=id_type, id_number=number)
    outcome = await _record(db=db, application_id=application_id, response=response)
    if screen is not None and outcome.state is ApplicationState.IDENTITY_VERIFIED:
        return CheckOutcome(await screen(application_id), outcome.result, outcome.reference)
    return outcome


async def _record(
    *,
    db: async_sessionmaker[AsyncSession],
    application_id: str,
    response: RegistryResponse,
) -> CheckOutcome:
    async with db.begin() as tx:
        app = await get_application(tx=tx, application_id=application_id)
        tx.add(
            IdentityCheck(
                application_id=app.id,
                provider=response.provider,
                result=response.result.value,
                reference=response.reference,
                raw_response=response.raw,
                latency_ms=response.latency_ms,
            )
        )
        await append_audit(
            tx,
            actor="system",
            action="identity.checked",
            subject_type="application",
            subject_id=app.id,
            details={
                "provider": response.provider,
                "result": response.result.value,
                "reference": response.reference,
                "error_code": response.error_code,
            },
        )
        # A concurrent submission may have finished first: the check is kept either way,
        # the state moves only from "submitted".
        if app.state == ApplicationState.SUBMITTED.value:
            if response.result is RegistryResult.MATCH:
                await apply_event(
                    tx=tx,
                    application=app,
                    event=ApplicationEvent.IDENTITY_MATCHED,
                    actor="system",
                    details={"reference": response.reference},
                )
            elif response.result in (RegistryResult.MISMATCH, RegistryResult.NOT_FOUND):
                await apply_event(
                    tx=tx,
                    application=app,
                    event=ApplicationEvent.IDENTITY_REJECTED,
                    actor="system",
                    details={"reference": response.reference, "result": response.result.value},
                )
        state = ApplicationState(app.state)
    if response.result is RegistryResult.UNAVAILABLE:
        raise Unavailable(
            "identity_registry_unavailable",
            "The identity check service is busy. Please try again in a few minutes.",
            "身份核查服务繁忙，请稍后再试。",
            details={"retry_after": 30, "reference": response.reference},
        )
    return CheckOutcome(state, response.result, response.reference)


async def correct_data(*, tx: AsyncSession, application_id: str) -> ApplicationState:
    """After a failed check the investor may correct their data and try again."""
    app = await get_application(tx=tx, application_id=application_id)
    return await apply_event(
        tx=tx, application=app, event=ApplicationEvent.CORRECT_DATA, actor="investor"
    )
