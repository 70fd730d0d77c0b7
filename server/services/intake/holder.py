"""An existing holder's entrance to an account service (A20–A22).

A21: the identity is verified before any service, as for an opening; on top of that the
account system must confirm that the account number given belongs to that identity. The
holder signs in by SMS code (investor_auth), gives their identity and an account number
(the unified one or any securities account), and this module:

1. asks the account system for the holder's accounts (someone else's or an unknown
   number gets one and the same answer, audited, and changes nothing);
2. settles which accounts the service is for (a cancellation: every open account unless
   the holder names some) and checks A22's method rule for each;
3. asks the account system for a dry run, so the investor and the witness see a refusal
   (holdings remain…) before the call rather than after it;
4. saves identity and request together, in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the adapter's service types are data only
    from server.adapters.account_system import AccountSystem, HolderAccount

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.account_system import TRANSIENT_ERRORS
from server.audit import append_audit
from server.crypto import DataProtector, mask_id_number, mask_phone
from server.domain.application import ApplicationEvent
from server.domain.business import (
    BusinessType,
    ServiceMethod,
    ServiceOffer,
    check_accounts_method,
    check_details,
    refusal,
)
from server.domain.errors import Conflict, Forbidden, InvalidInput, Unavailable
from server.domain.intake import IdentityData
from server.services.applications import apply_event, get_application
from server.services.intake.steps import ID_CONTEXT, load_draft, save_identity
from server.services.service_requests import (
    ServiceRequest,
    mask_account,
    read_service,
    write_service,
)
from server.store.db import reading
from server.store.models import utcnow


def _audit_details(data: IdentityData, account_number: str, reason: str) -> dict[str, str]:
    return {
        "id_number": mask_id_number(data.id_number),
        "account": mask_account(account_number),
        "reason": reason,
    }


def _choose(
    kind: BusinessType, entered: str, accounts: Sequence[HolderAccount], named: Sequence[str]
) -> list[str]:
    """The accounts the service is for, in the account system's order."""
    numbers = [a.number for a in accounts]
    if named:
        unknown = [n for n in named if n not in numbers]
        if unknown:
            raise InvalidInput(
                "account_not_listed",
                "Choose only accounts of your own that were listed.",
                "只能选择列出的本人账户。",
                details={"field": "accounts", "account": mask_account(unknown[0])},
            )
        return [n for n in numbers if n in set(named)]
    if kind is BusinessType.CANCEL:
        # 销户 usually closes everything: every account not yet cancelled.
        return [a.number for a in accounts if a.status != "cancelled"]
    return [entered]


async def save_holder_identity(
    *,
    db: async_sessionmaker[AsyncSession],
    accounts: AccountSystem,
    protector: DataProtector,
    application_id: str,
    data: IdentityData,
    account_number: str,
    named: Sequence[str] = (),
    details: dict[str, str] | None = None,
) -> None:
    async with db.begin() as tx:
        app = await load_draft(tx, application_id)
        kind = BusinessType(app.business_type)
        method = ServiceMethod(app.method)
    cleaned = check_details(kind, details)
    entered = account_number.strip().upper()
    if not entered or len(entered) > 20 or not entered.isalnum():
        raise InvalidInput(
            "account_number_invalid",
            "Enter your unified account number or a securities account number.",
            "请输入一码通账户号码或证券账户号码。",
            details={"field": "account_number"},
        )

    async def refuse(error: Exception, reason: str) -> None:
        async with db.begin() as tx:
            await append_audit(
                tx,
                actor="investor",
                action="intake.holder_refused",
                subject_type="application",
                subject_id=application_id,
                details=_audit_details(data, entered, reason),
            )
        raise error

    lookup = await accounts.find_holder(id_number=data.id_number, account_number=entered)
    if not lookup.ok:
        if lookup.error_code == "not_holder":
            await refuse(
                Forbidden(
                    "not_account_holder",
                    "No account with this number belongs to this identity. Check the number "
                    "and your ID details, or call the hotline.",
                    "该账户与您的身份信息不符，请核对账户号码和证件信息，或致电客服。",
                    details={"field": "account_number"},
                ),
                "not_holder",
            )
        raise Unavailable(
            "account_system_unavailable",
            "The account system cannot be reached just now; try again in a few minutes.",
            "账户系统暂时无法访问，请稍后再试。",
            details={"error": lookup.error_code},
        )
    chosen = _choose(kind, entered, lookup.accounts, named)
    by_number = {a.number: a for a in lookup.accounts}
    if not chosen or all(by_number[n].status == "cancelled" for n in chosen):
        if kind is not BusinessType.QUERY:
            zh, en = refusal("already_cancelled")
            await refuse(
                Conflict("account_already_cancelled", en, zh, details={"field": "account_number"}),
                "already_cancelled",
            )
    try:
        check_accounts_method((by_number[n].opening_method for n in chosen), method)
    except Conflict as exc:
        await refuse(exc, "method_not_allowed")
    request_id = f"pre-{application_id}"
    checks = await accounts.precheck(
        business_type=kind.value, id_number=data.id_number, account_numbers=chosen, details=cleaned
    )
    request = ServiceRequest(
        business_type=kind.value,
        method=method.value,
        accounts=[a.as_dict() for a in lookup.accounts],
        chosen=chosen,
        unified_account_number=lookup.unified_account_number,
        details=cleaned,
        precheck=[
            {"account_number": c.account_number, "ok": c.ok, "error_code": c.error_code}
            for c in checks
        ],
        lookup_reference=lookup.reference or request_id,
        checked_at=utcnow().isoformat(),
    )
    async with db.begin() as tx:
        app = await save_identity(
            tx=tx, application_id=application_id, data=data, protector=protector
        )
        write_service(app, request, protector)
        await append_audit(
            tx,
            actor="investor",
            action="intake.holder_verified",
            subject_type="application",
            subject_id=application_id,
            details={
                "business_type": kind.value,
                "method": method.value,
                "accounts": [mask_account(n) for n in chosen],
                "precheck_refused": [
                    {"account": mask_account(c.account_number), "code": c.error_code}
                    for c in checks
                    if not c.ok
                ],
                "reference": lookup.reference,
            },
        )


async def confirm_online(*, db: async_sessionmaker[AsyncSession], application_id: str) -> None:
    """A22: an online service for accounts opened online. The identity check (A21), the
    holder check and this explicit confirmation stand in for the witnessed call; what
    follows (callback where configured, the account system, the notice) is the same."""
    async with db.begin() as tx:
        app = await get_application(tx=tx, application_id=application_id)
        if app.method != ServiceMethod.ONLINE.value or app.business_type == "open":
            raise Conflict(
                "not_an_online_service",
                "This application is done by video: join the witnessing queue.",
                "该申请须通过视频见证办理，请进入排队。",
            )
        await apply_event(
            tx=tx,
            application=app,
            event=ApplicationEvent.CONFIRM_ONLINE,
            actor="investor",
            details={"business_type": app.business_type, "method": app.method},
        )


async def check_offered(
    *,
    db: async_sessionmaker[AsyncSession],
    protector: DataProtector,
    offer: ServiceOffer,
    phone: str,
    business_type: str,
    method: ServiceMethod,
) -> BusinessType:
    """The business asked for at sign-in, if offered by that method; a refusal is audited
    (against the phone's keyed hash: there is no application yet) and changes nothing."""
    try:
        return offer.check(business_type, method)
    except Forbidden:
        async with db.begin() as tx:
            await append_audit(
                tx,
                actor="investor",
                action="intake.service_refused",
                subject_type="phone",
                subject_id=protector.lookup_hash(phone, kind="phone"),
                details={
                    "phone": mask_phone(phone),
                    "business_type": business_type[:32],
                    "method": method.value,
                    "reason": "service_not_offered",
                },
            )
        raise


async def refresh_precheck(
    *,
    db: async_sessionmaker[AsyncSession],
    accounts: AccountSystem,
    protector: DataProtector,
    application_id: str,
) -> None:
    """Ask the account system again as the holder joins the queue, so the desk shows
    today's answer (holdings sold since intake, or bought). Never fails the join: an
    account system that cannot answer leaves the earlier answer, with its time."""
    async with reading(db) as tx:  # on every join; the answer is written below
        app = await get_application(tx=tx, application_id=application_id)
        request = read_service(app, protector)
        if request is None or app.id_number_enc is None:
            return
        id_number = protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
    checks = await accounts.precheck(
        business_type=request.business_type,
        id_number=id_number,
        account_numbers=request.chosen,
        details=request.details,
    )
    if not checks or all(c.error_code in TRANSIENT_ERRORS for c in checks):
        return
    fresh = [
        {"account_number": c.account_number, "ok": c.ok, "error_code": c.error_code} for c in checks
    ]
    async with db.begin() as tx:
        app = await get_application(tx=tx, application_id=application_id)
        changed = fresh != request.precheck
        request.precheck, request.checked_at = fresh, utcnow().isoformat()
        write_service(app, request, protector)
        if changed:
            await append_audit(
                tx,
                actor="system",
                action="intake.precheck_changed",
                subject_type="application",
                subject_id=application_id,
                details={
                    "refused": [
                        {"account": mask_account(c.account_number), "code": c.error_code}
                        for c in checks
                        if not c.ok
                    ]
                },
            )
