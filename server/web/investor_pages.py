"""Investor-facing pages: the landing page and the intake flow at /open.

The /open page is a shell: its scripts (static/investor/) drive the JSON API in
investor_api.py step by step, exactly as a broker's own app would (A5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web

from server.adapters.identity_registry import DEFAULT_SANDBOX_IDENTITIES
from server.domain.errors import InvalidInput
from server.domain.identity_document import DocumentType, age_on, validate_id_number
from server.http.access import public
from server.http.keys import RUNTIME
from server.services.intake.steps import today_in
from server.web.render import render

routes = web.RouteTableDef()

_PERMIT_PREFIXES = ("810000", "820000", "830000")
# Resident ID cards issued at 46 or older are valid for life (长期).
_LONG_TERM_AGE = 46


@dataclass(frozen=True)
class SandboxIdentity:
    """A fictional registry entry with what a tester needs to fill the identity form."""

    name: str
    id_number: str
    document_type: str
    sex: str
    birth_date: str
    valid_from: str
    valid_until: str  # "" = long-term


def sandbox_identities(
    entries: tuple[tuple[str, str], ...], *, today: date
) -> list[SandboxIdentity]:
    """The sandbox registry's identities, decoded from their numbers; invalid ones skipped."""
    result = []
    for name, number in entries:
        doc_type = (
            DocumentType.HMT_RESIDENCE_PERMIT
            if number.startswith(_PERMIT_PREFIXES)
            else DocumentType.RESIDENT_ID
        )
        try:
            info = validate_id_number(number, doc_type, today=today)
        except InvalidInput:
            continue
        # A plausible document: issued last year; a permit runs 5 years, a young
        # person's ID card 20, an older person's ID card for life.
        valid_from = date(today.year - 1, 6, 1)
        if doc_type is DocumentType.HMT_RESIDENCE_PERMIT:
            valid_until = f"{today.year + 4}-05-31"
        elif age_on(info.birth_date, valid_from) >= _LONG_TERM_AGE:
            valid_until = ""
        else:
            valid_until = f"{today.year + 19}-05-31"
        result.append(
            SandboxIdentity(
                name=name,
                id_number=info.number,
                document_type=doc_type.value,
                sex=info.sex,
                birth_date=info.birth_date.isoformat(),
                valid_from=valid_from.isoformat(),
                valid_until=valid_until,
            )
        )
    return result


@routes.get("/")
@public
async def index(request: web.Request) -> web.Response:
    return render("index.html", request)


@routes.get("/open")
@public
async def open_account(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    config = rt.config
    registry_sandbox = config.identity.provider == "sandbox"
    context: dict[str, Any] = {
        "sms_sandbox": config.sms.provider == "sandbox",
        "registry_sandbox": registry_sandbox,
        "sandbox_identities": (
            sandbox_identities(DEFAULT_SANDBOX_IDENTITIES, today=today_in(config.zone))
            if registry_sandbox
            else []
        ),
        "otp_length": config.intake.otp_length,
        "image_max_bytes": rt.image_limits.max_bytes,
    }
    return render("investor.html", request, context)
