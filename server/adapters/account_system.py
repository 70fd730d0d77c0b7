"""The CSDC account system (A9, A26): opening the investor's unified account and the
Shanghai and Shenzhen securities accounts under it.

:class:`HttpAccountSystem` talks to the agency's gateway to the CSDC system;
:class:`SandboxAccountSystem` answers like it (latency, failures, error codes, number
formats) for development and tests. The opening method is always recorded: two-way
video witnessing (A26).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.adapters.http_gateway import (
    GATEWAY_RULES,
    HTTP_NEEDS,
    GatewayClient,
    GatewaySettings,
    Sleep,
)
from server.adapters.kinds import AdapterKind, BuildContext, Provider

OPENING_METHOD = "two_way_video_witnessing"


@dataclass(frozen=True)
class AccountResult:
    ok: bool
    unified_account_number: str | None  # 一码通账户号码: 12 digits
    sub_accounts: dict[str, str] = field(default_factory=dict)  # {"sh": "A…", "sz": "0…"}
    reference: str = ""
    error_code: str | None = None  # unavailable | duplicate_investor | rejected | bad_response


class AccountSystem(Protocol):
    name: str

    async def open_account(
        self, *, application_id: str, id_number: str, name: str, document_type: str
    ) -> AccountResult: ...

    async def close(self) -> None: ...


class SandboxAccountSystem:
    """In-memory CSDC stand-in.

    - unified account numbers: "18" + 10 digits; Shanghai A-share accounts "A" + 9
      digits; Shenzhen A-share accounts "0" + 9 digits; references "CSDC" + 12 hex
    - the same ID number again → error "duplicate_investor" (one unified account each)
    - an ID number whose sequence digits (15–17) are "998" → "rejected", always
    - with probability ``failure_rate`` → "unavailable" (try again later)
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        latency_ms: int = 300,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        self._latency_ms = latency_ms
        self._failure_rate = failure_rate
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - simulation
        self._sleep = sleep
        self._opened: dict[str, str] = {}

    async def close(self) -> None:
        """Nothing to release."""

    def _digits(self, n: int) -> str:
        return "".join(str(self._rng.randrange(10)) for _ in range(n))

    async def open_account(
        self, *, application_id: str, id_number: str, name: str, document_type: str
    ) -> AccountResult:
        await self._sleep(self._latency_ms / 1000)
        reference = f"CSDC{self._rng.getrandbits(48):012X}"
        if self._failure_rate and self._rng.random() < self._failure_rate:
            return AccountResult(False, None, reference=reference, error_code="unavailable")
        if id_number[14:17] == "998":
            return AccountResult(False, None, reference=reference, error_code="rejected")
        if id_number in self._opened and self._opened[id_number] != application_id:
            return AccountResult(False, None, reference=reference, error_code="duplicate_investor")
        self._opened[id_number] = application_id
        return AccountResult(
            ok=True,
            unified_account_number="18" + self._digits(10),
            sub_accounts={"sh": "A" + self._digits(9), "sz": "0" + self._digits(9)},
            reference=reference,
        )


class HttpAccountSystem(GatewayClient):
    """The agency's JSON gateway to the CSDC system.

    Request: ``POST url`` with ``{"application_id", "id_number", "name", "document_type",
    "opening_method", "request_id"}``; answer ``{"ok": bool, "unified_account_number",
    "sub_accounts": {...}, "reference", "code"?}``.
    """

    name = "http"

    async def open_account(
        self, *, application_id: str, id_number: str, name: str, document_type: str
    ) -> AccountResult:
        outcome = await self._post(
            {
                "application_id": application_id,
                "id_number": id_number,
                "name": name,
                "document_type": document_type,
                "opening_method": OPENING_METHOD,
                "request_id": uuid.uuid4().hex,
            }
        )
        body: dict[str, Any] | None = outcome.body
        if body is None or not isinstance(body.get("ok"), bool):
            return AccountResult(False, None, error_code=outcome.error_code or "bad_response")
        if not body["ok"]:
            code = body.get("code")
            return AccountResult(
                False,
                None,
                reference=str(body.get("reference", "")),
                error_code=code if isinstance(code, str) and code else "rejected",
            )
        number = body.get("unified_account_number")
        subs = body.get("sub_accounts")
        if not isinstance(number, str) or not isinstance(subs, dict):
            return AccountResult(False, None, error_code="bad_response")
        return AccountResult(
            True,
            number,
            {str(k): str(v) for k, v in subs.items()},
            reference=str(body.get("reference", "")),
        )


def _sandbox(settings: GatewaySettings, context: BuildContext) -> SandboxAccountSystem:
    return SandboxAccountSystem(
        latency_ms=settings.sandbox_latency_ms, failure_rate=settings.sandbox_failure_rate
    )


# [accounts]
ACCOUNTS: AdapterKind[GatewaySettings, AccountSystem] = AdapterKind(
    section="accounts",
    providers={
        "sandbox": Provider(_sandbox),
        "http": Provider(HttpAccountSystem.from_settings, needs=HTTP_NEEDS),
    },
    rules=GATEWAY_RULES,
)
