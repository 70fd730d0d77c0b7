"""One JSON POST to a vendor gateway, with bounded retries and exponential back-off.

Shared by every HTTP adapter so that retry policy, error codes and logging are the
same everywhere. It never raises for provider trouble: the outcome says what went
wrong, and the adapter maps that to its own "unavailable" answer.

Nothing here logs request or response bodies: they carry ID numbers, names, phone
numbers and one-time codes (A25). Logs name only the host, status and error code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

import aiohttp
from yarl import URL

from server.adapters.kinds import BuildContext, Needs, between, is_http_url

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class GatewaySettings(Protocol):
    """What a gateway-backed adapter reads from its config section (server.config's
    GatewayConfig: [identity], [sms], [accounts])."""

    @property
    def provider(self) -> str: ...  # "sandbox" | "http"
    @property
    def sandbox_latency_ms(self) -> int: ...
    @property
    def sandbox_failure_rate(self) -> float: ...
    @property
    def http_url(self) -> str: ...
    @property
    def http_api_key(self) -> str: ...
    @property
    def http_timeout_seconds(self) -> float: ...
    @property
    def http_retries(self) -> int: ...


# Declared once for every gateway kind (server/adapters/kinds.py): an "http" provider
# cannot work without a URL and a key, and a failure rate is a probability.
HTTP_NEEDS = (Needs(("http_url",), valid=is_http_url), Needs(("http_api_key",)))
GATEWAY_RULES = (between("sandbox_failure_rate", 0.0, 1.0),)


@dataclass(frozen=True)
class GatewayOutcome:
    """What one logical call (all attempts together) produced.

    ``body`` is set only for a 2xx answer whose body is a JSON object; then
    ``error_code`` is None. Otherwise ``error_code`` says why: "timeout",
    "connection_error", "auth_failed" (401/403), "bad_request" (400),
    "bad_response" (2xx but not a JSON object) or "http_<status>".
    """

    status: int | None  # last HTTP status seen; None if no answer arrived
    body: dict[str, Any] | None
    error_code: str | None
    attempts: int
    latency_ms: int  # wall time over all attempts, back-off included

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.body is not None


class _Retryable(Exception):
    def __init__(self, error_code: str, status: int | None) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.status = status


def _final_error(status: int) -> str:
    if status in (401, 403):
        # A wrong or expired key does not heal by retrying; repeated bad
        # credentials can also get the agency's account locked by the vendor.
        return "auth_failed"
    if status == 400:
        return "bad_request"
    return f"http_{status}"


def _is_retryable_status(status: int) -> bool:
    # 429 and 5xx are the vendor telling us to come back later; other 4xx
    # mean our request is wrong and would fail the same way again.
    return status == 429 or status >= 500


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


async def _attempt(
    session: aiohttp.ClientSession,
    url: str,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    client_timeout: aiohttp.ClientTimeout,
) -> tuple[int, dict[str, Any] | None]:
    """One POST; raises _Retryable for answers worth another try."""
    try:
        async with session.post(url, json=payload, headers=headers, timeout=client_timeout) as resp:
            status = resp.status
            if _is_retryable_status(status):
                raise _Retryable(f"http_{status}", status)
            if not 200 <= status < 300:
                return status, None
            return status, _parse_object(await resp.read())
    except TimeoutError:
        # aiohttp's own timeout errors subclass TimeoutError, so this comes
        # before the ClientError branch.
        raise _Retryable("timeout", None) from None
    except aiohttp.ClientError:
        raise _Retryable("connection_error", None) from None


async def post_json_with_retries(
    session: aiohttp.ClientSession,
    url: str,
    payload: Mapping[str, Any],
    *,
    api_key: str,
    timeout_seconds: float,
    retries: int,
    backoff_seconds: float,
    sleep: Sleep = asyncio.sleep,
) -> GatewayOutcome:
    """POST ``payload`` as JSON; retry timeouts, connection errors, 429 and 5xx.

    At most ``retries + 1`` attempts; before attempt n+1 (n from 0) it waits
    ``backoff_seconds * 2**n``. The payload is sent unchanged on every attempt, so a
    ``request_id`` in it lets the vendor de-duplicate a retried request whose first
    answer was lost (important for SMS: a timeout may still have sent the message).
    ``timeout_seconds`` bounds each attempt, not the whole call.
    """
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    host = URL(url).host or "?"
    started = time.monotonic()
    attempts = 0
    last_status: int | None = None
    error_code = "connection_error"

    def outcome(
        status: int | None, body: dict[str, Any] | None, code: str | None
    ) -> GatewayOutcome:
        return GatewayOutcome(
            status=status,
            body=body,
            error_code=code,
            attempts=attempts,
            latency_ms=round((time.monotonic() - started) * 1000),
        )

    for attempt in range(max(retries, 0) + 1):
        if attempt:
            await sleep(backoff_seconds * 2 ** (attempt - 1))
        attempts += 1
        try:
            status, body = await _attempt(session, url, payload, headers, timeout)
        except _Retryable as exc:
            last_status, error_code = exc.status, exc.error_code
            log.warning(
                "gateway attempt failed",
                extra={"host": host, "attempt": attempts, "error_code": error_code},
            )
            continue
        if not 200 <= status < 300:
            code = _final_error(status)
            log.warning(
                "gateway refused request",
                extra={"host": host, "status": status, "error_code": code},
            )
            return outcome(status, None, code)
        if body is None:
            log.warning(
                "gateway answer is not a JSON object",
                extra={"host": host, "status": status, "error_code": "bad_response"},
            )
            return outcome(status, None, "bad_response")
        return outcome(status, body, None)
    log.warning(
        "gateway gave up",
        extra={"host": host, "attempts": attempts, "error_code": error_code},
    )
    return outcome(last_status, None, error_code)


class SessionHolder:
    """An aiohttp session given by the caller, or one created on first use.

    Only a session created here is closed by :meth:`close`; a caller's session
    belongs to the caller (it may be shared by several adapters).
    """

    def __init__(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session
        self._owned = session is None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owned and self._session.closed):
            self._session = aiohttp.ClientSession()
            self._owned = True
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owned:
            self._session = None


class GatewayClient:
    """What every JSON gateway adapter shares: where, how, and the retrying post."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._timeout_seconds = timeout_seconds
        self._retries = retries
        self._backoff_seconds = backoff_seconds
        self._session = SessionHolder(session)
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: GatewaySettings, context: BuildContext) -> Self:
        """The "http" provider of a gateway kind (the signature of ``Provider.build``)."""
        return cls(
            url=settings.http_url,
            api_key=settings.http_api_key,
            timeout_seconds=settings.http_timeout_seconds,
            retries=settings.http_retries,
        )

    async def close(self) -> None:
        await self._session.close()

    async def _post(self, payload: dict[str, Any]) -> GatewayOutcome:
        return await post_json_with_retries(
            self._session.get(),
            self._url,
            payload,
            api_key=self._api_key,
            timeout_seconds=self._timeout_seconds,
            retries=self._retries,
            backoff_seconds=self._backoff_seconds,
            sleep=self._sleep,
        )
