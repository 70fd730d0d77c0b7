"""The CSDC account system (A9, A20–A22, A26): opening the investor's unified account and
the Shanghai and Shenzhen securities accounts under it, and the account services of
existing holders (cancellation, change of information, reactivation, query, lifting a
loss report, transfer of the associated relationship, the Beijing-market mark).

:class:`HttpAccountSystem` talks to the agency's gateway to the CSDC system;
:class:`SandboxAccountSystem` answers like it (latency, failures, error codes, number
formats) for development and tests. The opening method is always recorded: two-way
video witnessing (A26).

A service is asked for per account and answered per account (:class:`ServiceResult`):
one account done and another refused is a normal outcome. Refusal codes are the keys of
``server.domain.business.REFUSALS``; "unavailable" and "bad_response" say nothing about
the account (nothing was changed, the same request may be retried).
"""

from __future__ import annotations

import asyncio
import random
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
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
from server.domain.business import OPENED_BY, REFUSALS
from server.domain.errors import DomainError
from server.domain.identity_document import check_character, normalize_id_number

OPENING_METHOD = "two_way_video_witnessing"
DEFAULT_SANDBOX_HOLDERS = (
    Path(__file__).resolve().parent.parent / "content" / "sandbox_holders.toml"
)

MARKETS = ("unified", "sh", "sz")
STATUSES = ("normal", "dormant", "loss_reported", "cancelled")
_NUMBER_FORMS = {"unified": ("18", 10), "sh": ("A", 9), "sz": ("0", 9)}
_FLAGS = ("holdings", "unsettled_trades", "designated_trading", "beijing_mark")
_INFO_FIELDS = ("phone", "address", "email", "occupation")
# Answers that say nothing about the account.
# Answers that say nothing about the account: the same request may simply be retried.
TRANSIENT_ERRORS = frozenset({"unavailable", "bad_response"})


@dataclass(frozen=True)
class AccountResult:
    ok: bool
    unified_account_number: str | None  # 一码通账户号码: 12 digits
    sub_accounts: dict[str, str] = field(default_factory=dict)  # {"sh": "A…", "sz": "0…"}
    reference: str = ""
    error_code: str | None = None  # unavailable | duplicate_investor | rejected | bad_response


@dataclass(frozen=True)
class HolderAccount:
    number: str  # unified "18"+10 digits, Shanghai "A"+9 digits, Shenzhen "0"+9 digits
    market: str  # "unified" | "sh" | "sz"
    status: str  # "normal" | "dormant" | "loss_reported" | "cancelled"
    opening_method: str  # "two_way_video_witnessing" | "one_way_video" | "online" | "counter"
    holdings: bool = False
    unsettled_trades: bool = False
    designated_trading: bool = False
    beijing_mark: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HolderLookup:
    ok: bool
    error_code: str | None  # not_holder | unavailable | bad_response
    unified_account_number: str | None = None
    accounts: tuple[HolderAccount, ...] = ()  # every account of the holder incl. the unified one
    reference: str = ""


@dataclass(frozen=True)
class ServiceResult:
    account_number: str
    ok: bool
    error_code: str | None = None  # a key of server.domain.business.REFUSALS
    changes: dict[str, Any] = field(default_factory=dict)  # {"status": ["normal", "cancelled"]}
    info: dict[str, Any] = field(default_factory=dict)  # what a query returns (as_dict())
    reference: str = ""


class AccountSystem(Protocol):
    name: str

    async def open_account(
        self, *, application_id: str, id_number: str, name: str, document_type: str
    ) -> AccountResult: ...

    async def find_holder(self, *, id_number: str, account_number: str) -> HolderLookup:
        """The holder's accounts if ``account_number`` (unified or any securities account)
        is theirs; "not_holder" whether it is unknown or someone else's."""
        ...

    async def precheck(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
    ) -> list[ServiceResult]:
        """A dry run of :meth:`carry_out`: what would be refused and why; changes nothing."""
        ...

    async def carry_out(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
        method: str,
        request_id: str,
    ) -> list[ServiceResult]:
        """One result per account number, in order; the same ``request_id`` again gives
        the same results without a second change."""
        ...

    async def close(self) -> None: ...


def _normal_number(number: str) -> str:
    return number.strip().upper()


def number_fits(market: str, number: str) -> bool:
    """Whether ``number`` has the form of an account number of ``market``."""
    form = _NUMBER_FORMS.get(market)
    if form is None:
        return False
    prefix, digits = form
    rest = number[len(prefix) :]
    return number.startswith(prefix) and len(rest) == digits and rest.isascii() and rest.isdigit()


# --- the sandbox's test holders --------------------------------------------------------


@dataclass(frozen=True)
class SandboxHolder:
    """A holder seeded into the sandbox: one unified account and the accounts under it."""

    name: str
    id_number: str
    accounts: tuple[HolderAccount, ...]
    associated_agency: str = "sandbox-agency"


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _string(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{where}.{key}", "must be a non-empty string")
    return value.strip()


def _choice(
    table: Mapping[str, Any],
    key: str,
    where: str,
    allowed: Sequence[str],
    default: str | None = None,
) -> str:
    value = _string(table, key, where, default)
    if value not in allowed:
        raise _fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(f"{where}.{key}", "unknown key")


_HOLDER_KEYS = ("name", "id_number", "opening_method", "associated_agency", "accounts")
_ACCOUNT_KEYS = ("number", "market", "status", "opening_method", *_FLAGS)


def _parse_account(raw: Any, where: str, opened_by: str) -> HolderAccount:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    _check_keys(raw, _ACCOUNT_KEYS, where)
    market = _choice(raw, "market", where, MARKETS)
    number = _string(raw, "number", where)
    if not number_fits(market, number):
        prefix, digits = _NUMBER_FORMS[market]
        raise _fail(
            f"{where}.number",
            f"a {market} account number is {prefix!r} + {digits} digits, got {number!r}",
        )
    flags = {}
    for flag in _FLAGS:
        value = raw.get(flag, False)
        if not isinstance(value, bool):
            raise _fail(f"{where}.{flag}", "must be true or false")
        flags[flag] = value
    return HolderAccount(
        number=number,
        market=market,
        status=_choice(raw, "status", where, STATUSES, "normal"),
        opening_method=_choice(raw, "opening_method", where, tuple(OPENED_BY), opened_by),
        **flags,
    )


def parse_sandbox_holders(data: Mapping[str, Any], where: str) -> tuple[SandboxHolder, ...]:
    """``[[holders]]`` of a sandbox holders file; ValueError naming ``where`` and the key."""
    _check_keys(data, ("holders",), where)
    holders = data.get("holders", [])
    if not isinstance(holders, list):
        raise _fail(f"{where}: holders", "must be an array of tables ([[holders]])")
    out: list[SandboxHolder] = []
    seen_ids: set[str] = set()
    seen_numbers: set[str] = set()
    for i, raw in enumerate(holders):
        at = f"{where}: holders[{i}]"
        if not isinstance(raw, dict):
            raise _fail(at, "must be a table")
        _check_keys(raw, _HOLDER_KEYS, at)
        number = normalize_id_number(_string(raw, "id_number", at))
        try:
            check = check_character(number[:17]) if len(number) == 18 else None
        except DomainError:
            check = None
        if check is None or check != number[17]:
            raise _fail(f"{at}.id_number", "not an 18-character ID number with a valid checksum")
        if number in seen_ids:
            raise _fail(f"{at}.id_number", "already given for another holder")
        seen_ids.add(number)
        opened_by = _choice(raw, "opening_method", at, tuple(OPENED_BY))
        accounts_raw = raw.get("accounts")
        if not isinstance(accounts_raw, list) or not accounts_raw:
            raise _fail(f"{at}.accounts", "at least one account ([[holders.accounts]])")
        accounts = [
            _parse_account(a, f"{at}.accounts[{j}]", opened_by) for j, a in enumerate(accounts_raw)
        ]
        if sum(a.market == "unified" for a in accounts) != 1:
            raise _fail(f"{at}.accounts", 'exactly one account with market = "unified"')
        for j, account in enumerate(accounts):
            if account.number in seen_numbers:
                raise _fail(f"{at}.accounts[{j}].number", f"{account.number} is already used")
            seen_numbers.add(account.number)
        # The unified account first, as the account system lists them.
        accounts.sort(key=lambda a: a.market != "unified")
        out.append(
            SandboxHolder(
                name=_string(raw, "name", at),
                id_number=number,
                accounts=tuple(accounts),
                associated_agency=_string(raw, "associated_agency", at, "sandbox-agency"),
            )
        )
    return tuple(out)


def load_sandbox_holders(path: Path = DEFAULT_SANDBOX_HOLDERS) -> tuple[SandboxHolder, ...]:
    """The test holders of a sandbox holders file (format: server/content/sandbox_holders.toml);
    any problem is a ValueError naming the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    return parse_sandbox_holders(data, str(path))


# --- the sandbox -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """One account as the sandbox keeps it."""

    id_number: str
    unified: str  # the number of the unified account it belongs to (itself for that one)
    account: HolderAccount
    associated_agency: str
    contact: Mapping[str, str] = field(default_factory=dict)


_Decision = tuple[str | None, dict[str, Any], dict[str, Any], _Record | None]


class SandboxAccountSystem:
    """In-memory CSDC stand-in.

    Opening:

    - unified account numbers: "18" + 10 digits; Shanghai A-share accounts "A" + 9
      digits; Shenzhen A-share accounts "0" + 9 digits; references "CSDC" + 12 hex
    - the same ID number again → error "duplicate_investor" (one unified account each);
      the same application again → the same numbers
    - an ID number whose sequence digits (15–17) are "998" → "rejected", always
    - with probability ``failure_rate`` → "unavailable" (try again later)

    Account services: the holders come from ``holders`` (by default the built-in file
    server/content/sandbox_holders.toml, whose comments list them), and every account
    this sandbox opens becomes a holder's too (opened by two-way video witnessing, no
    holdings, nothing unsettled), so an investor who opened an account can then cancel it.
    State is per process and in memory: a restart forgets every change and opening.

    Rules (the HTTP gateway answers with the same codes):

    - an account number not of this ID number (unknown, or someone else's) →
      "not_holder", for that account only; ``find_holder`` says the same either way
    - query: ok, ``info`` = the account's ``as_dict()``, no changes; every other service
      on a cancelled account, or on any account of a holder whose unified account is
      cancelled → "already_cancelled"
    - cancel: "holdings_remain", "unsettled_trades", "designated_trading" (the first that
      applies); the unified account while a securities account under it stays open →
      "sub_accounts_open" (securities accounts cancelled in the same request are
      decided first and do not count); changes ``{"status": [old, "cancelled"]}``
    - reactivate: dormant → normal, else "not_dormant"; lift_loss_report:
      loss_reported → normal, else "not_loss_reported"; changes ``{"status": …}``
    - change_info: ``details`` phone/address/email/occupation; changes ``{"fields":
      [names changed]}`` (values are not echoed)
    - transfer_relationship: ``details["to_agency"]``; "unsettled_trades" refuses;
      changes ``{"associated_agency": [old, new]}``
    - beijing_mark: ``details["action"]`` "add" | "remove": "already_marked" /
      "not_marked"; changes ``{"beijing_mark": [old, new]}``
    - an unknown business type or missing details → "rejected"
    - ``precheck`` decides the same way and changes nothing; ``carry_out`` with a
      ``request_id`` already carried out returns the first results again
    - every call waits ``latency_ms``; with probability ``failure_rate`` a call answers
      "unavailable" for every account and changes nothing
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        latency_ms: int = 300,
        failure_rate: float = 0.0,
        holders: Sequence[SandboxHolder] | None = None,
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
        self._opened_results: dict[str, AccountResult] = {}
        self._records: dict[str, _Record] = {}  # by account number
        self._groups: dict[str, list[str]] = {}  # unified number → its accounts, unified first
        self._done: dict[str, list[ServiceResult]] = {}  # request_id → results
        for holder in load_sandbox_holders() if holders is None else holders:
            self._add_holder(holder.id_number, holder.accounts, holder.associated_agency)

    async def close(self) -> None:
        """Nothing to release."""

    def _digits(self, n: int) -> str:
        return "".join(str(self._rng.randrange(10)) for _ in range(n))

    def _reference(self) -> str:
        return f"CSDC{self._rng.getrandbits(48):012X}"

    def _unavailable(self) -> bool:
        return bool(self._failure_rate) and self._rng.random() < self._failure_rate

    def _add_holder(self, id_number: str, accounts: Sequence[HolderAccount], agency: str) -> None:
        unified = next(a.number for a in accounts if a.market == "unified")
        owner = normalize_id_number(id_number)
        for account in accounts:
            self._records[account.number] = _Record(owner, unified, account, agency)
        self._groups[unified] = [a.number for a in accounts]

    def _new_number(self, prefix: str, digits: int) -> str:
        while True:
            number = prefix + self._digits(digits)
            if number not in self._records:
                return number

    async def open_account(
        self, *, application_id: str, id_number: str, name: str, document_type: str
    ) -> AccountResult:
        await self._sleep(self._latency_ms / 1000)
        reference = self._reference()
        if self._unavailable():
            return AccountResult(False, None, reference=reference, error_code="unavailable")
        if id_number[14:17] == "998":
            return AccountResult(False, None, reference=reference, error_code="rejected")
        if id_number in self._opened and self._opened[id_number] != application_id:
            return AccountResult(False, None, reference=reference, error_code="duplicate_investor")
        if application_id in self._opened_results:
            return self._opened_results[application_id]
        self._opened[id_number] = application_id
        unified = self._new_number("18", 10)
        result = AccountResult(
            ok=True,
            unified_account_number=unified,
            sub_accounts={"sh": self._new_number("A", 9), "sz": self._new_number("0", 9)},
            reference=reference,
        )
        self._opened_results[application_id] = result
        numbers = [("unified", unified), *result.sub_accounts.items()]
        self._add_holder(
            id_number,
            [HolderAccount(n, market, "normal", OPENING_METHOD) for market, n in numbers],
            "sandbox-agency",
        )
        return result

    async def find_holder(self, *, id_number: str, account_number: str) -> HolderLookup:
        await self._sleep(self._latency_ms / 1000)
        reference = self._reference()
        if self._unavailable():
            return HolderLookup(False, "unavailable", reference=reference)
        record = self._records.get(_normal_number(account_number))
        if record is None or record.id_number != normalize_id_number(id_number):
            return HolderLookup(False, "not_holder", reference=reference)
        accounts = tuple(self._records[n].account for n in self._groups[record.unified])
        return HolderLookup(True, None, record.unified, accounts, reference=reference)

    async def precheck(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
    ) -> list[ServiceResult]:
        await self._sleep(self._latency_ms / 1000)
        if self._unavailable():
            return self._all_failed(account_numbers, "unavailable")
        results, _ = self._decide_all(business_type, id_number, account_numbers, details)
        return results

    async def carry_out(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
        method: str,
        request_id: str,
    ) -> list[ServiceResult]:
        await self._sleep(self._latency_ms / 1000)
        if self._unavailable():
            return self._all_failed(account_numbers, "unavailable")
        if request_id in self._done:
            return list(self._done[request_id])
        results, changed = self._decide_all(business_type, id_number, account_numbers, details)
        self._records.update(changed)
        self._done[request_id] = results
        return list(results)

    def _all_failed(self, numbers: Sequence[str], code: str) -> list[ServiceResult]:
        return [ServiceResult(n, False, code, reference=self._reference()) for n in numbers]

    def _decide_all(
        self,
        business_type: str,
        id_number: str,
        numbers: Sequence[str],
        details: Mapping[str, Any],
    ) -> tuple[list[ServiceResult], dict[str, _Record]]:
        """Results in the order asked, and the records they change (not yet applied)."""
        owner = normalize_id_number(id_number)
        changed: dict[str, _Record] = {}

        def get(number: str) -> _Record | None:
            return changed.get(number) or self._records.get(number)

        results: list[ServiceResult | None] = [None] * len(numbers)

        # Securities accounts before unified ones: cancelling a unified account depends on
        # whether the accounts under it, named in the same request, were cancelled.
        def unified_last(i: int) -> bool:
            record = get(_normal_number(numbers[i]))
            return record is not None and record.account.market == "unified"

        order = sorted(range(len(numbers)), key=unified_last)
        for i in order:
            number = _normal_number(numbers[i])
            record = get(number)
            if record is None or record.id_number != owner:
                code: str | None = "not_holder"
                changes: dict[str, Any] = {}
                info: dict[str, Any] = {}
            else:
                code, changes, info, new = self._decide(business_type, record, get, details)
                if code is None and new is not None:
                    changed[number] = new
            results[i] = ServiceResult(
                numbers[i], code is None, code, changes, info, reference=self._reference()
            )
        return [r for r in results if r is not None], changed

    def _decide(
        self,
        kind: str,
        record: _Record,
        get: Callable[[str], _Record | None],
        details: Mapping[str, Any],
    ) -> _Decision:
        account = record.account
        if kind == "query":
            return None, {}, account.as_dict(), None
        unified = get(record.unified)
        if account.status == "cancelled" or (
            unified is not None and unified.account.status == "cancelled"
        ):
            return "already_cancelled", {}, {}, None

        def status(new_status: str) -> _Decision:
            new = replace(record, account=replace(account, status=new_status))
            return None, {"status": [account.status, new_status]}, {}, new

        if kind == "cancel":
            for flag, code in (
                ("holdings", "holdings_remain"),
                ("unsettled_trades", "unsettled_trades"),
                ("designated_trading", "designated_trading"),
            ):
                if getattr(account, flag):
                    return code, {}, {}, None
            if account.market == "unified":
                for number in self._groups.get(account.number, []):
                    sub = get(number)
                    if number != account.number and sub and sub.account.status != "cancelled":
                        return "sub_accounts_open", {}, {}, None
            return status("cancelled")
        if kind == "reactivate":
            return (
                status("normal") if account.status == "dormant" else ("not_dormant", {}, {}, None)
            )
        if kind == "lift_loss_report":
            if account.status != "loss_reported":
                return "not_loss_reported", {}, {}, None
            return status("normal")
        if kind == "change_info":
            given = {k: str(v) for k, v in details.items() if k in _INFO_FIELDS}
            if not given:
                return "rejected", {}, {}, None
            names = sorted(k for k, v in given.items() if record.contact.get(k) != v)
            new = replace(record, contact={**record.contact, **given})
            return None, {"fields": names}, {}, new
        if kind == "transfer_relationship":
            to_agency = details.get("to_agency")
            if not isinstance(to_agency, str) or not to_agency.strip():
                return "rejected", {}, {}, None
            if account.unsettled_trades:
                return "unsettled_trades", {}, {}, None
            new = replace(record, associated_agency=to_agency.strip())
            return (
                None,
                {"associated_agency": [record.associated_agency, to_agency.strip()]},
                {},
                new,
            )
        if kind == "beijing_mark":
            action = details.get("action")
            if action not in ("add", "remove"):
                return "rejected", {}, {}, None
            wanted = action == "add"
            if account.beijing_mark == wanted:
                return ("already_marked" if wanted else "not_marked"), {}, {}, None
            new = replace(record, account=replace(account, beijing_mark=wanted))
            return None, {"beijing_mark": [account.beijing_mark, wanted]}, {}, new
        return "rejected", {}, {}, None


# --- the HTTP gateway ------------------------------------------------------------------


def _holder_account(raw: Any) -> HolderAccount | None:
    if not isinstance(raw, dict):
        return None
    number, market, status, opened = (
        raw.get("number"),
        raw.get("market"),
        raw.get("status"),
        raw.get("opening_method"),
    )
    if not isinstance(number, str) or not number or market not in MARKETS:
        return None
    if status not in STATUSES or not isinstance(opened, str) or not opened:
        return None
    flags = {flag: raw.get(flag, False) for flag in _FLAGS}
    if not all(isinstance(v, bool) for v in flags.values()):
        return None
    return HolderAccount(number, str(market), str(status), opened, **flags)


def _lookup(body: dict[str, Any], account_number: str) -> HolderLookup:
    reference = body.get("reference")
    reference = reference if isinstance(reference, str) else ""
    if body.get("ok") is not True:
        code = body.get("code")
        known = code if code in ("not_holder", "unavailable") else "bad_response"
        return HolderLookup(False, known, reference=reference)
    unified = body.get("unified_account_number")
    raw_accounts = body.get("accounts")
    if not isinstance(unified, str) or not isinstance(raw_accounts, list):
        return HolderLookup(False, "bad_response", reference=reference)
    accounts = [_holder_account(a) for a in raw_accounts]
    numbers = {a.number for a in accounts if a is not None}
    if (
        not accounts
        or any(a is None for a in accounts)
        or len(numbers) != len(accounts)
        or unified not in numbers
        or _normal_number(account_number) not in {_normal_number(n) for n in numbers}
    ):
        return HolderLookup(False, "bad_response", reference=reference)
    return HolderLookup(
        True, None, unified, tuple(a for a in accounts if a is not None), reference=reference
    )


def _code(value: Any) -> str:
    return value if isinstance(value, str) and value in REFUSALS else "rejected"


def _service_results(body: dict[str, Any], numbers: Sequence[str]) -> list[ServiceResult] | None:
    """One result per number asked for, or None if the answer does not give exactly that."""
    raw = body.get("results")
    if not isinstance(raw, list):
        return None
    by_number: dict[str, ServiceResult] = {}
    for item in raw:
        if not isinstance(item, dict):
            return None
        number, ok = item.get("account_number"), item.get("ok")
        changes, info = item.get("changes", {}), item.get("info", {})
        reference = item.get("reference", body.get("reference", ""))
        if not isinstance(number, str) or not isinstance(ok, bool) or number in by_number:
            return None
        if not isinstance(changes, dict) or not isinstance(info, dict):
            return None
        by_number[number] = ServiceResult(
            number,
            ok,
            None if ok else _code(item.get("code")),
            {str(k): v for k, v in changes.items()},
            {str(k): v for k, v in info.items()},
            reference=reference if isinstance(reference, str) else "",
        )
    if set(by_number) != set(numbers):
        return None
    return [replace(by_number[n], account_number=n) for n in numbers]


class HttpAccountSystem(GatewayClient):
    """The agency's JSON gateway to the CSDC system: one URL, ``POST`` with
    ``Authorization: Bearer <api_key>``.

    Opening: ``{"application_id", "id_number", "name", "document_type",
    "opening_method", "request_id"}``; answer ``{"ok": bool, "unified_account_number",
    "sub_accounts": {...}, "reference", "code"?}``.

    Finding a holder: ``{"operation": "find_holder", "id_number", "account_number",
    "request_id"}``; answer ``{"ok": true, "unified_account_number", "accounts": [{"number",
    "market": "unified"|"sh"|"sz", "status": "normal"|"dormant"|"loss_reported"|
    "cancelled", "opening_method", "holdings"?, "unsettled_trades"?, "designated_trading"?,
    "beijing_mark"?}], "reference"}`` listing every account of the holder, the unified one
    and the one asked about included; or ``{"ok": false, "code": "not_holder" |
    "unavailable", "reference"}``.

    A service: ``{"operation": "precheck" | "carry_out", "business_type", "id_number",
    "account_numbers": [...], "details": {...}, "method" (carry_out only),
    "request_id"}``; a precheck changes nothing, a carry_out with a ``request_id`` seen
    before must answer as the first time. Answer ``{"results": [{"account_number", "ok":
    bool, "code"? (a refusal code), "changes"?: {...}, "info"?: {...}, "reference"?}],
    "reference"?}`` with exactly one result per account asked for; or ``{"ok": false,
    "code"}`` for every account at once.

    Nothing raises for provider trouble: no answer → "unavailable"; an answer that is
    not of this form → "bad_response"; a refusal code this server does not know →
    "rejected".
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

    async def _ask(self, payload: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The answer's body, or None and why: "unavailable" or "bad_response"."""
        outcome = await self._post(payload)
        if outcome.body is None:
            return None, "bad_response" if outcome.error_code == "bad_response" else "unavailable"
        return outcome.body, ""

    async def find_holder(self, *, id_number: str, account_number: str) -> HolderLookup:
        body, failure = await self._ask(
            {
                "operation": "find_holder",
                "id_number": id_number,
                "account_number": account_number,
                "request_id": uuid.uuid4().hex,
            }
        )
        if body is None:
            return HolderLookup(False, failure)
        if not isinstance(body.get("ok"), bool):
            return HolderLookup(False, "bad_response")
        return _lookup(body, account_number)

    async def _service(
        self, operation: str, numbers: Sequence[str], payload: dict[str, Any]
    ) -> list[ServiceResult]:
        body, failure = await self._ask({"operation": operation, **payload})
        if body is not None and body.get("ok") is False and "results" not in body:
            failure = _code(body.get("code"))
            if body.get("code") in TRANSIENT_ERRORS:
                failure = str(body["code"])
        elif body is not None:
            results = _service_results(body, numbers)
            if results is not None:
                return results
            failure = "bad_response"
        return [ServiceResult(n, False, failure) for n in numbers]

    async def precheck(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
    ) -> list[ServiceResult]:
        return await self._service(
            "precheck",
            account_numbers,
            {
                "business_type": business_type,
                "id_number": id_number,
                "account_numbers": list(account_numbers),
                "details": dict(details),
                "request_id": uuid.uuid4().hex,
            },
        )

    async def carry_out(
        self,
        *,
        business_type: str,
        id_number: str,
        account_numbers: Sequence[str],
        details: Mapping[str, Any],
        method: str,
        request_id: str,
    ) -> list[ServiceResult]:
        return await self._service(
            "carry_out",
            account_numbers,
            {
                "business_type": business_type,
                "id_number": id_number,
                "account_numbers": list(account_numbers),
                "details": dict(details),
                "method": method,
                "request_id": request_id,
            },
        )


# --- the adapter kind ------------------------------------------------------------------


class AccountsSettings(GatewaySettings, Protocol):
    """[accounts]: a gateway, plus the sandbox's holders file ("" = the built-in one)."""

    @property
    def sandbox_holders_file(self) -> str: ...


def _sandbox(settings: AccountsSettings, context: BuildContext) -> SandboxAccountSystem:
    configured = settings.sandbox_holders_file
    path = context.resolve_path(configured) if configured else DEFAULT_SANDBOX_HOLDERS
    try:
        holders = load_sandbox_holders(path)
    except ValueError as exc:
        raise AdapterConfigError(f"accounts.sandbox_holders_file: {exc}") from None
    return SandboxAccountSystem(
        latency_ms=settings.sandbox_latency_ms,
        failure_rate=settings.sandbox_failure_rate,
        holders=holders,
    )


# [accounts]
ACCOUNTS: AdapterKind[AccountsSettings, AccountSystem] = AdapterKind(
    section="accounts",
    providers={
        "sandbox": Provider(_sandbox, only=("sandbox_holders_file",)),
        "http": Provider(HttpAccountSystem.from_settings, needs=HTTP_NEEDS),
    },
    rules=GATEWAY_RULES,
)
