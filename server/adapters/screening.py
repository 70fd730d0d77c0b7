"""Anti-money-laundering screening (A3): sanctions, politically exposed persons and the
agency's own blocklist.

:class:`SandboxScreening` screens against list files the agency keeps (read once at
start by ``screening_lists.py``; a malformed line stops the start naming file and line);
:class:`HttpScreening` asks the agency's screening vendor through a JSON gateway. What a
hit means is decided in ``server/domain/screening.py``.

Adapters never raise for provider trouble, and nothing here ever answers CLEAR for a
check that was not made: a vendor that times out, fails or answers something unreadable
is UNAVAILABLE (retried first), so the caller holds the application.

Personal data: ``Screening.raw`` is kept for the audit trail; the investor's ID number
and name in it are masked, and nothing here logs them (A25).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from yarl import URL

from server.adapters.http_gateway import (
    GATEWAY_RULES,
    HTTP_NEEDS,
    GatewayClient,
    GatewayOutcome,
    GatewaySettings,
    Sleep,
    post_json_with_retries,
)
from server.adapters.identity_registry import mask_name
from server.adapters.kinds import AdapterConfigError, AdapterKind, BuildContext, Provider
from server.adapters.screening_lists import BUILT_IN_LISTS, load_list_file
from server.crypto import mask_id_number
from server.domain.screening import (
    ListEntry,
    ListKind,
    Match,
    MatchBasis,
    Person,
    ScreeningLists,
    ScreeningResult,
    normalise_id_number,
)

__all__ = [
    "SCREENING",
    "HttpScreening",
    "SandboxScreening",
    "Screening",
    "ScreeningService",
    "ScreeningSettings",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Screening:
    result: ScreeningResult
    matches: tuple[Match, ...]  # empty unless POSSIBLE_MATCH or MATCH
    reference: str  # provider's reference id; "local-<uuid>" if it gave none
    error_code: str | None  # why UNAVAILABLE; None otherwise
    raw: dict[str, Any]  # JSON-serialisable; the investor's ID number and name masked
    latency_ms: int
    provider: str


class ScreeningService(Protocol):
    name: str

    async def screen(self, person: Person) -> Screening:
        """Screen ``person``; UNAVAILABLE (never an exception, never CLEAR) on trouble."""
        ...

    async def close(self) -> None:
        """Release connections; called once at application shutdown."""
        ...


def _local_reference() -> str:
    return f"local-{uuid.uuid4()}"


def _mask(value: Any, person: Person) -> Any:
    """Copy of ``value`` with the person's ID number and name masked wherever they appear
    (vendors often echo the request)."""
    secrets = {person.id_number.strip(): mask_id_number(person.id_number.strip())}
    secrets[person.name.strip()] = mask_name(person.name)
    # Longest first, so a longer secret is masked before a shorter one inside it.
    ordered = [(k, secrets[k]) for k in sorted(secrets, key=len, reverse=True) if k]

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for clear, masked in ordered:
                item = item.replace(clear, masked)
            return item
        if isinstance(item, dict):
            return {str(k): walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _match_json(match: Match) -> dict[str, str]:
    return {
        "list": match.list_name,
        "entry_id": match.entry_id,
        "basis": match.basis.value,
        "result": match.result.value,
    }


# --- sandbox -----------------------------------------------------------------------------


class SandboxScreening:
    """Screens against lists in memory, answering like a vendor.

    - the decision of :meth:`ScreeningLists.screen` (docs/risk.md, "Screening (A3)")
    - with probability ``failure_rate`` -> UNAVAILABLE, error_code "upstream_busy"
    - magic rule for testers: an ID number whose sequence digits (positions 15-17,
      1-based) are "998" -> UNAVAILABLE, error_code "upstream_timeout", always
      (e.g. 110105198001019985; add it to identity.sandbox_identities_file to get there)

    Every call waits ``latency_ms`` plus a uniform jitter in [0, ``latency_jitter_ms``].
    References look like "SCR" + 16 hex digits.
    """

    name = "sandbox"

    def __init__(
        self,
        lists: ScreeningLists,
        *,
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
        self.lists = lists
        self._latency_ms = latency_ms
        self._jitter_ms = latency_jitter_ms
        self._failure_rate = failure_rate
        # Simulation only, never security: a seeded Random makes runs repeatable.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._sleep = sleep

    async def close(self) -> None:
        """Nothing to release; present so the app can close any screening service alike."""

    async def screen(self, person: Person) -> Screening:
        started = time.monotonic()
        await self._sleep((self._latency_ms + self._rng.uniform(0, self._jitter_ms)) / 1000)
        reference = f"SCR{self._rng.getrandbits(64):016X}"
        code = self._failure(person)
        if code is None:
            result, matches = self.lists.screen(person)
        else:
            result, matches = ScreeningResult.UNAVAILABLE, ()
        raw: dict[str, Any] = {
            "result": result.value,
            "reference": reference,
            "code": code,
            "matches": [_match_json(m) for m in matches],
            "lists": self.lists.counts(),
            "id_number": mask_id_number(normalise_id_number(person.id_number)),
            "name": mask_name(person.name),
        }
        return Screening(
            result=result,
            matches=matches,
            reference=reference,
            error_code=code,
            raw=raw,
            latency_ms=round((time.monotonic() - started) * 1000),
            provider=self.name,
        )

    def _failure(self, person: Person) -> str | None:
        if self._failure_rate and self._rng.random() < self._failure_rate:
            return "upstream_busy"
        if normalise_id_number(person.id_number)[14:17] == "998":
            return "upstream_timeout"
        return None


# --- the vendor's gateway ----------------------------------------------------------------

_VENDOR_RESULTS = {r.value: r for r in ScreeningResult if r is not ScreeningResult.UNAVAILABLE}
_HIT_RESULTS = (ScreeningResult.POSSIBLE_MATCH, ScreeningResult.MATCH)
_BASES = {b.value: b for b in (MatchBasis.ID_NUMBER, MatchBasis.NAME)}


def _read_answer(body: dict[str, Any]) -> tuple[ScreeningResult, tuple[Match, ...]] | None:
    """The vendor's verdict and hits, or None for anything but a consistent answer."""
    result = _VENDOR_RESULTS.get(str(body.get("result")))
    listed = body.get("matches", [])
    if result is None or not isinstance(listed, list):
        return None
    matches: list[Match] = []
    for item in listed:
        if not isinstance(item, dict):
            return None
        list_name, entry_id = item.get("list"), item.get("entry_id")
        if not (isinstance(list_name, str) and isinstance(entry_id, str)):
            return None
        if not (list_name and entry_id):
            return None
        basis = _BASES.get(str(item.get("basis")), MatchBasis.VENDOR)
        own = _VENDOR_RESULTS.get(str(item.get("result")))
        matches.append(Match(list_name, entry_id, basis, own if own in _HIT_RESULTS else result))
    if result is ScreeningResult.CLEAR and matches:
        return None  # "clear" with hits contradicts itself: not a clear
    return result, tuple(matches)


def _worth_another_try(outcome: GatewayOutcome) -> bool:
    # No answer, the vendor's "later" (429, 5xx), or a 2xx we could not read: a screening
    # query changes nothing at the vendor, so asking again is safe. Other 4xx and bad
    # credentials would fail the same way again.
    status = outcome.status
    return status is None or status == 429 or status >= 500 or 200 <= status < 300


class HttpScreening(GatewayClient):
    """Client for the agency's screening vendor: a JSON gateway.

    Request: ``POST url`` with ``{"request_id", "name", "id_type", "id_number",
    "birth_date" ("YYYY-MM-DD" or null), "nationality"}`` and ``Authorization: Bearer
    <api_key>``. Answer: ``{"result": "clear" | "possible_match" | "match", "reference":
    str, "matches": [{"list": str, "entry_id": str, "basis"?: "id_number" | "name",
    "result"?: "possible_match" | "match"}]}``.

    At most ``retries + 1`` attempts, with the gateway's exponential back-off; unlike
    the other gateways an unreadable 2xx answer is retried too. Anything else than a
    consistent answer ("clear" with hits included) ends UNAVAILABLE.
    """

    name = "http"

    async def screen(self, person: Person) -> Screening:
        request_id = uuid.uuid4().hex
        payload = {
            "request_id": request_id,
            "name": person.name,
            "id_type": person.id_type,
            "id_number": person.id_number,
            "birth_date": person.birth_date.isoformat() if person.birth_date else None,
            "nationality": person.nationality,
        }
        started = time.monotonic()
        attempts = 0
        failure = "bad_response"
        for attempt in range(max(self._retries, 0) + 1):
            if attempt:
                await self._sleep(self._backoff_seconds * 2 ** (attempt - 1))
            outcome = await post_json_with_retries(
                self._session.get(),
                self._url,
                payload,
                api_key=self._api_key,
                timeout_seconds=self._timeout_seconds,
                retries=0,
                backoff_seconds=self._backoff_seconds,
                sleep=self._sleep,
            )
            attempts += outcome.attempts
            answer = _read_answer(outcome.body) if outcome.body is not None else None
            if answer is not None:
                break
            failure = outcome.error_code or "bad_response"
            if outcome.body is not None:
                log.warning(
                    "screening answer unreadable",
                    extra={"host": URL(self._url).host or "?", "error_code": failure},
                )
            if not _worth_another_try(outcome):
                break
        latency_ms = round((time.monotonic() - started) * 1000)
        meta = {"request_id": request_id, "status": outcome.status, "attempts": attempts}
        if answer is None:
            return Screening(
                result=ScreeningResult.UNAVAILABLE,
                matches=(),
                reference=_local_reference(),
                error_code=failure,
                raw={**meta, "error_code": failure},
                latency_ms=latency_ms,
                provider=self.name,
            )
        result, matches = answer
        reference = outcome.body.get("reference") if outcome.body is not None else None
        return Screening(
            result=result,
            matches=matches,
            reference=reference if isinstance(reference, str) and reference else _local_reference(),
            error_code=None,
            raw={**meta, "response": _mask(outcome.body, person)},
            latency_ms=latency_ms,
            provider=self.name,
        )


# --- the adapter kind --------------------------------------------------------------------


class ScreeningSettings(GatewaySettings, Protocol):
    """[screening]: a gateway, plus the sandbox's list files ("" = the built-in ones)."""

    @property
    def sanctions_file(self) -> str: ...
    @property
    def pep_file(self) -> str: ...
    @property
    def blocklist_file(self) -> str: ...


_LIST_KEYS: Sequence[tuple[str, ListKind]] = (
    ("sanctions_file", ListKind.SANCTIONS),
    ("pep_file", ListKind.PEP),
    ("blocklist_file", ListKind.BLOCKLIST),
)


def _sandbox(settings: ScreeningSettings, context: BuildContext) -> SandboxScreening:
    entries: list[ListEntry] = []
    for key, kind in _LIST_KEYS:
        configured = getattr(settings, key)
        path = context.resolve_path(configured) if configured else BUILT_IN_LISTS / f"{kind}.csv"
        try:
            entries += load_list_file(path, kind)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AdapterConfigError(f"screening.{key}: {exc}") from None
    return SandboxScreening(
        ScreeningLists(tuple(entries)),
        latency_ms=settings.sandbox_latency_ms,
        failure_rate=settings.sandbox_failure_rate,
    )


SCREENING: AdapterKind[ScreeningSettings, ScreeningService] = AdapterKind(
    section="screening",
    providers={
        "sandbox": Provider(_sandbox, only=tuple(key for key, _ in _LIST_KEYS)),
        "http": Provider(HttpScreening.from_settings, needs=HTTP_NEEDS),
    },
    rules=GATEWAY_RULES,
)
