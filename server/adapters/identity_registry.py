"""Government identity registry check (公安部身份信息核查), rules A13 and A17.2.

A17.2: before witnessing, the investor's name and ID number must be checked against
the public-security registry. The registry is reached through a vendor gateway
(:class:`HttpRegistry`); :class:`SandboxRegistry` answers like it for development and
tests, including latency and busy answers.

Adapters never raise for provider trouble. A check that could not be made is
UNAVAILABLE with an error code, so the caller can retry later or route the case to
manual review; it must never be treated as a MATCH.

Personal data: ``RegistryResponse.raw`` is kept for the audit trail, so the ID number
and name in it are always masked, and nothing here logs them (A25).
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from server.adapters.http_gateway import (
    GATEWAY_RULES,
    HTTP_NEEDS,
    GatewayClient,
    GatewaySettings,
    Sleep,
)
from server.adapters.kinds import AdapterConfigError, AdapterKind, BuildContext, Provider
from server.crypto import mask_id_number
from server.domain.errors import DomainError
from server.domain.identity_document import check_character, normalize_id_number

__all__ = [
    "DEFAULT_SANDBOX_IDENTITIES",
    "IDENTITY",
    "HttpRegistry",
    "IdentityRegistry",
    "IdentitySettings",
    "RegistryResponse",
    "RegistryResult",
    "SandboxRegistry",
    "load_sandbox_identities",
    "mask_name",
]


class RegistryResult(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class RegistryResponse:
    result: RegistryResult
    reference: str  # provider's reference id; "local-<uuid>" if it gave none
    error_code: str | None
    raw: dict[str, Any]  # JSON-serialisable; ID number and name masked
    latency_ms: int
    provider: str


class IdentityRegistry(Protocol):
    name: str

    async def verify(self, *, name: str, id_type: str, id_number: str) -> RegistryResponse:
        """Check name + ID number; UNAVAILABLE (never an exception) on provider trouble."""
        ...

    async def close(self) -> None:
        """Release connections; called once at application shutdown."""
        ...


def mask_name(name: str) -> str:
    """A25: keep the first character only (张三 -> 张*)."""
    text = name.strip()
    return text[:1] + "*" * (len(text) - 1) if text else ""


def _local_reference() -> str:
    return f"local-{uuid.uuid4()}"


def _canonical_name(name: str) -> str:
    # Outer whitespace dropped and inner runs collapsed: "张三 " and "张三" are
    # the same person, a typed double space in a Latin name is not a mismatch.
    return " ".join(name.split())


def _scrub(value: Any, secrets: dict[str, str]) -> Any:
    """Copy of ``value`` with every occurrence of each secret replaced by its mask."""
    if isinstance(value, str):
        for clear, masked in secrets.items():
            value = value.replace(clear, masked)
        return value
    if isinstance(value, dict):
        return {str(k): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _secrets_of(name: str, id_number: str) -> dict[str, str]:
    pairs = {
        id_number.strip(): mask_id_number(id_number.strip()),
        _canonical_name(name): mask_name(name),
        name.strip(): mask_name(name),
    }
    # Longest first, so the full ID number is replaced before any shorter secret
    # that might be part of it; empty strings would match everywhere.
    return {k: pairs[k] for k in sorted(pairs, key=len, reverse=True) if k}


# GB 11643 checksums verified: 11010519491231002X (the GB 11643 example number),
# a Beijing resident born 2000-01-01, a Shenzhen and a Shanghai resident, and a
# Hong Kong residence permit (prefix 810000).
DEFAULT_SANDBOX_IDENTITIES: tuple[tuple[str, str], ...] = (
    ("张三", "11010519491231002X"),
    ("李四", "110101200001010010"),
    ("王五", "440306199001011236"),
    ("赵六", "310104197506150045"),
    ("陈大文", "810000198503150033"),
    # Account holders of the sandbox account system (server/content/sandbox_holders.toml),
    # on no screening list: 孙七's accounts are all clean, 周八's Shanghai one holds shares.
    ("孙七", "320102198807070026"),
    ("周八", "330106197203180059"),
)


class SandboxRegistry:
    """In-memory registry answering like the real one.

    - known ID number + same name -> MATCH
    - known ID number + other name -> MISMATCH, error_code "name_mismatch"
    - unknown ID number -> NOT_FOUND, error_code "no_record"
    - with probability ``failure_rate`` -> UNAVAILABLE, error_code "upstream_busy"
    - magic rule for testers: an ID number whose sequence digits (positions 15-17,
      1-based) are "999" -> UNAVAILABLE, error_code "upstream_timeout", always.
      Example: 110105198001019993.

    Names are compared with outer whitespace stripped and inner runs collapsed;
    ID numbers with outer whitespace stripped and a final "x" upper-cased. Every
    call waits ``latency_ms`` plus a uniform jitter in [0, ``latency_jitter_ms``].
    Reference ids look like "SBX" + 16 hex digits.
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        identities: Sequence[tuple[str, str]] = DEFAULT_SANDBOX_IDENTITIES,
        latency_ms: int = 300,
        latency_jitter_ms: int = 200,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if latency_ms < 0 or latency_jitter_ms < 0:
            raise ValueError("latencies must not be negative")
        self._names = {number.upper(): _canonical_name(n) for n, number in identities}
        self._latency_ms = latency_ms
        self._jitter_ms = latency_jitter_ms
        self._failure_rate = failure_rate
        # Simulation only, never security: a seeded Random makes runs repeatable.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._sleep = sleep

    async def close(self) -> None:
        """Nothing to release; present so the app can close any registry alike."""

    async def verify(self, *, name: str, id_type: str, id_number: str) -> RegistryResponse:
        started = time.monotonic()
        delay_ms = self._latency_ms + self._rng.uniform(0, self._jitter_ms)
        await self._sleep(delay_ms / 1000)
        number = id_number.strip().upper()
        result, code = self._decide(name, number)
        reference = f"SBX{self._rng.getrandbits(64):016X}"
        raw: dict[str, Any] = {
            "result": result.value,
            "reference": reference,
            "code": code,
            "id_type": id_type,
            "id_number": mask_id_number(number),
            "name": mask_name(name),
        }
        return RegistryResponse(
            result=result,
            reference=reference,
            error_code=code,
            raw=raw,
            # Measured, not the requested delay: with an injected sleep it is ~0.
            latency_ms=round((time.monotonic() - started) * 1000),
            provider=self.name,
        )

    def _decide(self, name: str, number: str) -> tuple[RegistryResult, str | None]:
        if self._failure_rate and self._rng.random() < self._failure_rate:
            return RegistryResult.UNAVAILABLE, "upstream_busy"
        if number[14:17] == "999":
            return RegistryResult.UNAVAILABLE, "upstream_timeout"
        known = self._names.get(number)
        if known is None:
            return RegistryResult.NOT_FOUND, "no_record"
        if known != _canonical_name(name):
            return RegistryResult.MISMATCH, "name_mismatch"
        return RegistryResult.MATCH, None


_RESULTS = {
    "match": RegistryResult.MATCH,
    "mismatch": RegistryResult.MISMATCH,
    "not_found": RegistryResult.NOT_FOUND,
}
_DEFAULT_CODES: dict[RegistryResult, str | None] = {
    RegistryResult.MATCH: None,
    RegistryResult.MISMATCH: "name_mismatch",
    RegistryResult.NOT_FOUND: "no_record",
}


class HttpRegistry(GatewayClient):
    """Client for the agency's registry vendor: a JSON gateway.

    Request: ``POST url`` with ``{"name", "id_type", "id_number", "request_id"}`` and
    ``Authorization: Bearer <api_key>``. Answer: ``{"result": "match" | "mismatch" |
    "not_found", "reference": str, "code"?: str}``. Retries follow
    :func:`~server.adapters.http_gateway.post_json_with_retries`.
    """

    name = "http"

    async def verify(self, *, name: str, id_type: str, id_number: str) -> RegistryResponse:
        request_id = uuid.uuid4().hex
        outcome = await self._post(
            {"name": name, "id_type": id_type, "id_number": id_number, "request_id": request_id}
        )
        meta = {"request_id": request_id, "status": outcome.status, "attempts": outcome.attempts}
        body = outcome.body
        result = _RESULTS.get(str(body.get("result"))) if body is not None else None
        if body is None or result is None:
            failure = outcome.error_code or "bad_response"
            return RegistryResponse(
                result=RegistryResult.UNAVAILABLE,
                reference=_local_reference(),
                error_code=failure,
                raw={**meta, "error_code": failure},
                latency_ms=outcome.latency_ms,
                provider=self.name,
            )
        reference = body.get("reference")
        code = _DEFAULT_CODES[result]
        vendor_code = body.get("code")
        if code is not None and isinstance(vendor_code, str) and vendor_code:
            # The vendor's finer reason (e.g. "id_cancelled") beats our default;
            # a MATCH keeps error_code None whatever the vendor put there.
            code = vendor_code
        return RegistryResponse(
            result=result,
            reference=reference if isinstance(reference, str) and reference else _local_reference(),
            error_code=code,
            # Vendors often echo the request: mask it wherever it appears.
            raw={**meta, "response": _scrub(body, _secrets_of(name, id_number))},
            latency_ms=outcome.latency_ms,
            provider=self.name,
        )


def load_sandbox_identities(path: Path) -> list[tuple[str, str]]:
    """Extra sandbox identities from a UTF-8 CSV file: ``name,id_number`` per line, ``#``
    comments and blank lines allowed. Each number must pass the GB 11643 checksum, so the
    sandbox never answers MATCH for a number the intake form would refuse."""
    found: list[tuple[str, str]] = []
    text = path.read_text(encoding="utf-8-sig")
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2 or not row[0].strip():
            raise ValueError(f"{path}:{lineno}: expected 'name,id_number'")
        number = normalize_id_number(row[1])
        try:
            check = check_character(number[:17]) if len(number) == 18 else None
        except DomainError:
            check = None
        if check is None:
            raise ValueError(f"{path}:{lineno}: not an 18-character ID number")
        if check != number[17]:
            raise ValueError(f"{path}:{lineno}: ID number fails its GB 11643 checksum")
        found.append((row[0].strip(), number))
    return found


class IdentitySettings(GatewaySettings, Protocol):
    """[identity]: a gateway, plus testers' identities for the sandbox."""

    @property
    def sandbox_identities_file(self) -> str: ...


def _sandbox(settings: IdentitySettings, context: BuildContext) -> SandboxRegistry:
    extra: list[tuple[str, str]] = []
    if settings.sandbox_identities_file:
        try:
            extra = load_sandbox_identities(context.resolve_path(settings.sandbox_identities_file))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AdapterConfigError(f"identity.sandbox_identities_file: {exc}") from None
    return SandboxRegistry(
        identities=(*DEFAULT_SANDBOX_IDENTITIES, *extra),
        latency_ms=settings.sandbox_latency_ms,
        failure_rate=settings.sandbox_failure_rate,
    )


IDENTITY: AdapterKind[IdentitySettings, IdentityRegistry] = AdapterKind(
    section="identity",
    providers={
        "sandbox": Provider(_sandbox, only=("sandbox_identities_file",)),
        "http": Provider(HttpRegistry.from_settings, needs=HTTP_NEEDS),
    },
    rules=GATEWAY_RULES,
)
