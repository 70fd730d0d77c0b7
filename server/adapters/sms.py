"""SMS gateway for one-time codes and notices to investors.

:class:`HttpSms` talks to the vendor's JSON gateway; :class:`SandboxSms` keeps
messages in memory so developers and tests can read the codes "sent".

Senders never raise for provider trouble: a message that could not be handed over
comes back with ``accepted=False`` and an error code. Phone numbers and texts (which
hold one-time codes) are never logged (A25).
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from server.adapters.http_gateway import (
    GATEWAY_RULES,
    HTTP_NEEDS,
    GatewayClient,
    GatewaySettings,
    Sleep,
)
from server.adapters.kinds import AdapterKind, BuildContext, Provider

__all__ = [
    "SMS",
    "HttpSms",
    "SandboxSms",
    "SentSms",
    "SmsReceipt",
    "SmsSender",
]


@dataclass(frozen=True)
class SmsReceipt:
    accepted: bool
    message_id: str  # provider's id; "local-<uuid>" if it gave none
    error_code: str | None
    provider: str


class SmsSender(Protocol):
    name: str

    async def send(self, *, phone: str, text: str, purpose: str) -> SmsReceipt:
        """Hand one message to the gateway; accepted=False (never raises) on trouble."""
        ...

    async def close(self) -> None:
        """Release connections; called once at application shutdown."""
        ...


def _local_id() -> str:
    return f"local-{uuid.uuid4()}"


@dataclass(frozen=True)
class SentSms:
    phone: str
    text: str
    purpose: str
    at: datetime  # UTC
    message_id: str


# Mainland mobile numbers: 11 digits, 1 then 3-9. ASCII class on purpose: \d
# would also accept other Unicode digits.
_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")


class SandboxSms:
    """In-memory SMS gateway answering like the real one.

    - a mainland mobile number (``1[3-9]`` + 9 digits) is accepted and the message
      appended to a bounded outbox (oldest dropped beyond ``outbox_size``)
    - any other number -> accepted=False, error_code "invalid_number"
    - empty text -> accepted=False, error_code "empty_text"
    - magic rule for testers: a number ending in "0000" -> accepted=False,
      error_code "carrier_rejected", always (e.g. 13800000000)
    - with probability ``failure_rate`` -> accepted=False, error_code "upstream_busy"

    Every call waits ``latency_ms`` plus a uniform jitter in [0, ``latency_jitter_ms``].
    Message ids look like "SBX" + 16 hex digits.
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        latency_ms: int = 200,
        latency_jitter_ms: int = 100,
        failure_rate: float = 0.0,
        outbox_size: int = 1000,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if latency_ms < 0 or latency_jitter_ms < 0:
            raise ValueError("latencies must not be negative")
        self._latency_ms = latency_ms
        self._jitter_ms = latency_jitter_ms
        self._failure_rate = failure_rate
        self._outbox: deque[SentSms] = deque(maxlen=outbox_size)
        # Simulation only, never security: a seeded Random makes runs repeatable.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._sleep = sleep
        self._clock = clock

    async def close(self) -> None:
        """Nothing to release; present so the app can close any sender alike."""

    async def send(self, *, phone: str, text: str, purpose: str) -> SmsReceipt:
        delay_ms = self._latency_ms + self._rng.uniform(0, self._jitter_ms)
        await self._sleep(delay_ms / 1000)
        message_id = f"SBX{self._rng.getrandbits(64):016X}"
        code = self._refusal(phone, text)
        if code is not None:
            return SmsReceipt(
                accepted=False, message_id=message_id, error_code=code, provider=self.name
            )
        self._outbox.append(
            SentSms(
                phone=phone, text=text, purpose=purpose, at=self._clock(), message_id=message_id
            )
        )
        return SmsReceipt(accepted=True, message_id=message_id, error_code=None, provider=self.name)

    def _refusal(self, phone: str, text: str) -> str | None:
        if self._failure_rate and self._rng.random() < self._failure_rate:
            return "upstream_busy"
        if _MOBILE_RE.fullmatch(phone) is None:
            return "invalid_number"
        if not text:
            return "empty_text"
        if phone.endswith("0000"):
            return "carrier_rejected"
        return None

    def outbox(self) -> list[SentSms]:
        """Accepted messages, oldest first."""
        return list(self._outbox)

    def last_to(self, phone: str) -> SentSms | None:
        """The newest accepted message to ``phone``, e.g. to read a one-time code."""
        for sms in reversed(self._outbox):
            if sms.phone == phone:
                return sms
        return None


class HttpSms(GatewayClient):
    """Client for the SMS vendor's JSON gateway.

    Request: ``POST url`` with ``{"phone", "text", "purpose", "request_id"}`` and
    ``Authorization: Bearer <api_key>``. Answer: ``{"accepted": bool,
    "message_id": str, "code"?: str}``. Retries follow
    :func:`~server.adapters.http_gateway.post_json_with_retries`; the same
    ``request_id`` on every attempt lets the vendor drop a duplicate after a
    timeout, so the investor does not get the code twice.
    """

    name = "http"

    async def send(self, *, phone: str, text: str, purpose: str) -> SmsReceipt:
        outcome = await self._post(
            {"phone": phone, "text": text, "purpose": purpose, "request_id": uuid.uuid4().hex}
        )
        body = outcome.body
        accepted = body.get("accepted") if body is not None else None
        if body is None or not isinstance(accepted, bool):
            return SmsReceipt(
                accepted=False,
                message_id=_local_id(),
                error_code=outcome.error_code or "bad_response",
                provider=self.name,
            )
        message_id = body.get("message_id")
        vendor_code = body.get("code")
        code: str | None = None
        if not accepted:
            code = vendor_code if isinstance(vendor_code, str) and vendor_code else "rejected"
        return SmsReceipt(
            accepted=accepted,
            message_id=message_id if isinstance(message_id, str) and message_id else _local_id(),
            error_code=code,
            provider=self.name,
        )


def _sandbox(settings: GatewaySettings, context: BuildContext) -> SandboxSms:
    return SandboxSms(
        latency_ms=settings.sandbox_latency_ms, failure_rate=settings.sandbox_failure_rate
    )


# [sms]; its sandbox_show_code is read by intake, not here.
SMS: AdapterKind[GatewaySettings, SmsSender] = AdapterKind(
    section="sms",
    providers={
        "sandbox": Provider(_sandbox),
        "http": Provider(HttpSms.from_settings, needs=HTTP_NEEDS),
    },
    rules=GATEWAY_RULES,
)
