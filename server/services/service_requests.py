"""A holder's service request (A20–A22), kept encrypted with the application.

Account numbers are personal data: the request lives in ``applications.service_enc``,
and what staff and the investor see comes from :func:`service_view`, with account
numbers masked unless the caller's role needs them whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from server.crypto import DataProtector
from server.domain.business import BusinessType, label, refusal
from server.store.models import Application

SERVICE_CONTEXT = "applications.service"


@dataclass
class ServiceRequest:
    business_type: str
    method: str
    # Every account of the holder as the account system listed it (HolderAccount.as_dict).
    accounts: list[dict[str, Any]]
    # The account numbers the service is for, in the holder's order.
    chosen: list[str]
    unified_account_number: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # The account system's dry run: [{"account_number", "ok", "error_code"}].
    precheck: list[dict[str, Any]] = field(default_factory=list)
    lookup_reference: str = ""
    # When the account system last answered the precheck (ISO 8601, UTC).
    checked_at: str | None = None


def mask_account(number: str) -> str:
    """Enough to tell a holder's accounts apart, not enough to use one."""
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 6) + number[-4:]


def write_service(app: Application, request: ServiceRequest, protector: DataProtector) -> None:
    app.service_enc = protector.encrypt_json(asdict(request), context=SERVICE_CONTEXT)


def read_service(app: Application, protector: DataProtector) -> ServiceRequest | None:
    if app.service_enc is None:
        return None
    raw = protector.decrypt_json(app.service_enc, context=SERVICE_CONTEXT)
    return ServiceRequest(**raw)


def service_view(
    app: Application, protector: DataProtector, *, full_numbers: bool = False
) -> dict[str, Any]:
    """The business and, for a holder's service, its accounts with the account system's
    precheck in both languages (the witness and the investor see a refusal before the
    call ends, not after)."""
    kind = BusinessType(app.business_type)
    zh, en = label(kind)
    view: dict[str, Any] = {
        "business_type": kind.value,
        "label_zh": zh,
        "label_en": en,
        "method": app.method,
        "accounts": [],
        "details": {},
        "checked_at": None,
    }
    request = read_service(app, protector)
    if request is None:
        return view
    view["checked_at"] = request.checked_at
    checks = {c["account_number"]: c for c in request.precheck}
    by_number = {a["number"]: a for a in request.accounts}
    for number in request.chosen:
        account = by_number.get(number, {})
        check = checks.get(number)
        item: dict[str, Any] = {
            "number_masked": mask_account(number),
            "market": account.get("market"),
            "status": account.get("status"),
            "opening_method": account.get("opening_method"),
            "precheck": None,
        }
        if full_numbers:
            item["number"] = number
        if check is not None:
            ok = bool(check.get("ok"))
            item["precheck"] = {"ok": ok, "error_code": None if ok else check.get("error_code")}
            if not ok:
                item["precheck"]["message_zh"], item["precheck"]["message_en"] = refusal(
                    check.get("error_code")
                )
        view["accounts"].append(item)
    # Field names only: the new values are personal data shown where the role needs them.
    view["details"] = {k: (v if full_numbers else "…") for k, v in request.details.items()}
    return view
