"""The sandbox account system's services for existing holders (A20–A22): finding a
holder, the rules of each service, dry runs, idempotent retries, partial outcomes, the
seeded holders file and its mistakes, and the ACCOUNTS kind building it."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from server.adapters.account_system import (
    ACCOUNTS,
    DEFAULT_SANDBOX_HOLDERS,
    HolderAccount,
    SandboxAccountSystem,
    SandboxHolder,
    ServiceResult,
    load_sandbox_holders,
    number_fits,
)
from server.adapters.identity_registry import DEFAULT_SANDBOX_IDENTITIES
from server.adapters.kinds import AdapterConfigError, BuildContext, build
from server.config import AccountsConfig
from server.domain.business import OPENED_BY, REFUSALS

WANG = "330106197203180059"  # unified + sh with holdings + sz clean
ZHAO = "320102198807070026"  # unified + sh + sz, all clean
CHEN = "810000198503150033"  # sh dormant, sz loss-reported, opened at the counter
LI = "110101200001010010"  # opened online; sz has unsettled trades
ZHANG = "11010519491231002X"  # sh designated trading, sz Beijing mark, one-way video


class FlakyRandom(random.Random):
    """random() from a script (the sandbox's failure draws); the last value repeats."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(5)
        self.draws = draws

    def random(self) -> float:
        return self.draws.pop(0) if len(self.draws) > 1 else self.draws[0]


def _sandbox(**kwargs: Any) -> SandboxAccountSystem:
    return SandboxAccountSystem(latency_ms=0, rng=random.Random(3), **kwargs)


async def _run(
    accounts: SandboxAccountSystem,
    kind: str,
    id_number: str,
    numbers: list[str],
    details: dict[str, Any] | None = None,
    request_id: str = "r1",
) -> list[ServiceResult]:
    return await accounts.carry_out(
        business_type=kind,
        id_number=id_number,
        account_numbers=numbers,
        details=details or {},
        method="two_way_video_witnessing",
        request_id=request_id,
    )


def _codes(results: list[ServiceResult]) -> list[str | None]:
    return [r.error_code for r in results]


async def _account(accounts: SandboxAccountSystem, id_number: str, number: str) -> HolderAccount:
    lookup = await accounts.find_holder(id_number=id_number, account_number=number)
    assert lookup.ok
    return next(a for a in lookup.accounts if a.number == number)


# --- the seeded holders ---------------------------------------------------------------


def test_seeded_holders_are_the_registrys_identities_with_valid_numbers() -> None:
    holders = load_sandbox_holders()
    known = {number: name for name, number in DEFAULT_SANDBOX_IDENTITIES}
    assert {h.id_number for h in holders} >= {WANG, ZHAO, CHEN, LI}
    text = DEFAULT_SANDBOX_HOLDERS.read_text(encoding="utf-8")
    for holder in holders:
        assert known[holder.id_number] == holder.name  # passes the identity check too
        assert holder.accounts[0].market == "unified"
        for account in holder.accounts:
            assert number_fits(account.market, account.number), account
            assert account.opening_method in OPENED_BY
            assert account.number in text.split("[[holders]]")[0]  # listed for testers
    by_id = {h.id_number: h for h in holders}
    assert [a.holdings for a in by_id[WANG].accounts] == [False, True, False]
    assert {a.opening_method for a in by_id[WANG].accounts} == {"two_way_video_witnessing"}
    assert {a.status for a in by_id[CHEN].accounts} == {"normal", "dormant", "loss_reported"}
    assert {a.opening_method for a in by_id[CHEN].accounts} == {"counter"}
    assert {a.opening_method for a in by_id[LI].accounts} == {"online"}
    assert [a.unsettled_trades for a in by_id[LI].accounts] == [False, False, True]


def test_number_forms() -> None:
    assert number_fits("unified", "180000000001") and not number_fits("unified", "170000000001")
    assert number_fits("sh", "A123456789") and not number_fits("sh", "A12345678")
    assert number_fits("sz", "0123456789") and not number_fits("sz", "B123456789")
    assert not number_fits("sz", "0١٢٣٤٥٦٧٨٩") and not number_fits("bj", "0123456789")


# --- find_holder --------------------------------------------------------------------


async def test_find_holder_by_the_unified_or_any_securities_account() -> None:
    accounts = _sandbox()
    for entered in ("181000000101", "A100000101", " a100000101 ", "0100000101"):
        lookup = await accounts.find_holder(id_number=WANG, account_number=entered)
        assert lookup.ok and lookup.error_code is None
        assert lookup.unified_account_number == "181000000101"
        assert [a.number for a in lookup.accounts] == ["181000000101", "A100000101", "0100000101"]
        assert lookup.reference.startswith("CSDC")
    sh = lookup.accounts[1]
    assert sh.as_dict() == {
        "number": "A100000101",
        "market": "sh",
        "status": "normal",
        "opening_method": "two_way_video_witnessing",
        "holdings": True,
        "unsettled_trades": False,
        "designated_trading": False,
        "beijing_mark": False,
    }
    # A lower-case final x in the ID number is the same person.
    zhang = await accounts.find_holder(id_number=ZHANG.lower(), account_number="A100000501")
    assert zhang.ok


async def test_find_holder_says_not_holder_alike_for_unknown_and_someone_elses() -> None:
    accounts = _sandbox()
    someone_elses = await accounts.find_holder(id_number=WANG, account_number="A100000201")
    unknown = await accounts.find_holder(id_number=WANG, account_number="A999999999")
    stranger = await accounts.find_holder(
        id_number="110101196001020113", account_number="A100000101"
    )
    for lookup in (someone_elses, unknown, stranger):
        assert (lookup.ok, lookup.error_code) == (False, "not_holder")
        assert lookup.unified_account_number is None and lookup.accounts == ()


async def test_unavailable_never_raises_and_changes_nothing() -> None:
    rng = FlakyRandom([0.0] * 3 + [0.99])
    accounts = SandboxAccountSystem(latency_ms=0, failure_rate=0.5, rng=rng)
    lookup = await accounts.find_holder(id_number=ZHAO, account_number="181000000201")
    assert (lookup.ok, lookup.error_code) == (False, "unavailable")
    numbers = ["A100000201", "0100000201"]
    pre = await accounts.precheck(
        business_type="cancel", id_number=ZHAO, account_numbers=numbers, details={}
    )
    done = await _run(accounts, "cancel", ZHAO, numbers)
    assert _codes(pre) == _codes(done) == ["unavailable", "unavailable"]
    assert [r.account_number for r in done] == numbers and not any(r.ok for r in done)
    # The service comes back: the same request now goes through.
    again = await _run(accounts, "cancel", ZHAO, numbers)
    assert all(r.ok for r in again)


async def test_latency_is_waited_on_every_call() -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    accounts = SandboxAccountSystem(latency_ms=250, sleep=sleep)
    await accounts.find_holder(id_number=WANG, account_number="A100000101")
    await accounts.precheck(
        business_type="query", id_number=WANG, account_numbers=["A100000101"], details={}
    )
    await _run(accounts, "query", WANG, ["A100000101"])
    assert delays == [0.25, 0.25, 0.25]


# --- cancellation ---------------------------------------------------------------------


async def test_cancel_everything_of_a_clean_holder() -> None:
    accounts = _sandbox()
    numbers = ["181000000201", "A100000201", "0100000201"]  # the unified one first
    results = await _run(accounts, "cancel", ZHAO, numbers)
    assert [r.account_number for r in results] == numbers
    assert all(r.ok and r.error_code is None for r in results)
    assert all(r.changes == {"status": ["normal", "cancelled"]} for r in results)
    lookup = await accounts.find_holder(id_number=ZHAO, account_number="A100000201")
    assert lookup.ok  # a cancelled holder can still be found (and queried)
    assert {a.status for a in lookup.accounts} == {"cancelled"}
    # Any account of a cancelled holder: already cancelled, except a query.
    for kind, details in (
        ("cancel", {}),
        ("reactivate", {}),
        ("change_info", {"phone": "13800000000"}),
        ("beijing_mark", {"action": "add"}),
    ):
        again = await _run(accounts, kind, ZHAO, ["0100000201"], details, request_id=kind)
        assert _codes(again) == ["already_cancelled"], kind
    query = await _run(accounts, "query", ZHAO, ["0100000201"], request_id="q")
    assert query[0].ok and query[0].info["status"] == "cancelled"


async def test_cancel_refusals_in_order_and_a_partial_outcome() -> None:
    accounts = _sandbox()
    numbers = ["181000000101", "A100000101", "0100000101"]
    results = await _run(accounts, "cancel", WANG, numbers)
    # sz is clean and cancelled; sh still holds securities; so the unified account keeps
    # an open securities account under it.
    assert _codes(results) == ["sub_accounts_open", "holdings_remain", None]
    assert [r.ok for r in results] == [False, False, True]
    assert results[0].changes == {} and results[1].changes == {}
    assert (await _account(accounts, WANG, "0100000101")).status == "cancelled"
    assert (await _account(accounts, WANG, "A100000101")).status == "normal"
    assert (await _account(accounts, WANG, "181000000101")).status == "normal"
    again = await _run(accounts, "cancel", WANG, ["0100000101"], request_id="r2")
    assert _codes(again) == ["already_cancelled"]


async def test_cancel_unified_alone_while_sub_accounts_stay_open() -> None:
    accounts = _sandbox()
    results = await _run(accounts, "cancel", ZHAO, ["181000000201", "A100000201"])
    assert _codes(results) == ["sub_accounts_open", None]


async def test_cancel_unsettled_trades_and_designated_trading() -> None:
    accounts = _sandbox()
    li = await _run(accounts, "cancel", LI, ["A100000401", "0100000401"])
    assert _codes(li) == [None, "unsettled_trades"]
    zhang = await _run(accounts, "cancel", ZHANG, ["A100000501", "0100000501"], request_id="r2")
    assert _codes(zhang) == ["designated_trading", None]


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (
            {"holdings": True, "unsettled_trades": True, "designated_trading": True},
            "holdings_remain",
        ),
        ({"unsettled_trades": True, "designated_trading": True}, "unsettled_trades"),
        ({"designated_trading": True}, "designated_trading"),
    ],
)
async def test_cancel_names_the_first_reason_that_applies(
    flags: dict[str, bool], code: str
) -> None:
    holder = SandboxHolder(
        name="测试",
        id_number=WANG,
        accounts=(
            HolderAccount("180000000009", "unified", "normal", "online"),
            HolderAccount("A000000009", "sh", "normal", "online", **flags),
        ),
    )
    accounts = _sandbox(holders=[holder])
    assert _codes(await _run(accounts, "cancel", WANG, ["A000000009"])) == [code]


# --- the other services ---------------------------------------------------------------


async def test_reactivate_and_lift_loss_report() -> None:
    accounts = _sandbox()
    react = await _run(accounts, "reactivate", CHEN, ["A100000301", "0100000301"], request_id="a")
    assert _codes(react) == [None, "not_dormant"]
    assert react[0].changes == {"status": ["dormant", "normal"]}
    lift = await _run(
        accounts, "lift_loss_report", CHEN, ["A100000301", "0100000301"], request_id="b"
    )
    assert _codes(lift) == ["not_loss_reported", None]
    assert lift[1].changes == {"status": ["loss_reported", "normal"]}
    lookup = await accounts.find_holder(id_number=CHEN, account_number="181000000301")
    assert {a.status for a in lookup.accounts} == {"normal"}
    twice = await _run(accounts, "reactivate", CHEN, ["A100000301"], request_id="c")
    assert _codes(twice) == ["not_dormant"]


async def test_change_info_lists_field_names_only() -> None:
    accounts = _sandbox()
    details = {"phone": "13912345678", "address": "深圳市南山区1号"}
    first = await _run(accounts, "change_info", WANG, ["181000000101"], details, request_id="a")
    assert first[0].ok and first[0].changes == {"fields": ["address", "phone"]}
    assert "13912345678" not in repr(first[0])  # values are not echoed
    # Only what differs from what the account system holds counts as changed.
    second = await _run(
        accounts,
        "change_info",
        WANG,
        ["181000000101"],
        {**details, "email": "w@x.cn"},
        request_id="b",
    )
    assert second[0].changes == {"fields": ["email"]}
    await _run(accounts, "cancel", ZHAO, ["0100000201"], request_id="c")
    cancelled = await _run(accounts, "change_info", ZHAO, ["0100000201"], details, request_id="d")
    assert _codes(cancelled) == ["already_cancelled"]
    assert _codes(
        await _run(accounts, "change_info", WANG, ["181000000101"], {}, request_id="e")
    ) == ["rejected"]


async def test_query_returns_the_account_and_changes_nothing() -> None:
    accounts = _sandbox()
    results = await _run(accounts, "query", WANG, ["A100000101", "A100000201"])
    assert results[0].ok and results[0].changes == {}
    assert results[0].info == (await _account(accounts, WANG, "A100000101")).as_dict()
    assert results[0].info["holdings"] is True
    assert (results[1].ok, results[1].error_code, results[1].info) == (False, "not_holder", {})


async def test_transfer_relationship() -> None:
    accounts = _sandbox()
    details = {"to_agency": "某某证券上海营业部"}
    results = await _run(
        accounts, "transfer_relationship", LI, ["A100000401", "0100000401"], details
    )
    assert _codes(results) == [None, "unsettled_trades"]
    assert results[0].changes == {"associated_agency": ["sandbox-agency", "某某证券上海营业部"]}
    back = await _run(
        accounts, "transfer_relationship", LI, ["A100000401"], {"to_agency": "乙"}, request_id="b"
    )
    assert back[0].changes == {"associated_agency": ["某某证券上海营业部", "乙"]}
    missing = await _run(accounts, "transfer_relationship", LI, ["A100000401"], {}, request_id="c")
    assert _codes(missing) == ["rejected"]


async def test_beijing_mark_add_and_remove() -> None:
    accounts = _sandbox()
    add = {"action": "add"}
    remove = {"action": "remove"}
    marked = await _run(accounts, "beijing_mark", ZHANG, ["0100000501"], add, request_id="a")
    assert _codes(marked) == ["already_marked"]
    unmarked = await _run(accounts, "beijing_mark", ZHANG, ["A100000501"], remove, request_id="b")
    assert _codes(unmarked) == ["not_marked"]
    off = await _run(accounts, "beijing_mark", ZHANG, ["0100000501"], remove, request_id="c")
    assert off[0].ok and off[0].changes == {"beijing_mark": [True, False]}
    on = await _run(accounts, "beijing_mark", ZHANG, ["0100000501"], add, request_id="d")
    assert on[0].ok and on[0].changes == {"beijing_mark": [False, True]}
    assert (await _account(accounts, ZHANG, "0100000501")).beijing_mark is True
    odd = await _run(
        accounts, "beijing_mark", ZHANG, ["0100000501"], {"action": "x"}, request_id="e"
    )
    assert _codes(odd) == ["rejected"]


async def test_unknown_business_type_is_rejected() -> None:
    accounts = _sandbox()
    assert _codes(await _run(accounts, "open", WANG, ["A100000101"])) == ["rejected"]


async def test_every_code_is_a_known_refusal() -> None:
    for code in (
        "holdings_remain",
        "unsettled_trades",
        "designated_trading",
        "sub_accounts_open",
        "already_cancelled",
        "not_dormant",
        "not_loss_reported",
        "already_marked",
        "not_marked",
        "not_holder",
        "unavailable",
        "rejected",
    ):
        assert code in REFUSALS


# --- holder checks, dry runs, retries -------------------------------------------------


async def test_someone_elses_account_in_a_request_is_refused_alone() -> None:
    accounts = _sandbox()
    results = await _run(accounts, "cancel", ZHAO, ["A100000201", "A100000101", "X1"])
    assert _codes(results) == [None, "not_holder", "not_holder"]
    assert [r.account_number for r in results] == ["A100000201", "A100000101", "X1"]
    assert (await _account(accounts, WANG, "A100000101")).status == "normal"  # untouched


async def test_precheck_is_a_dry_run() -> None:
    accounts = _sandbox()
    numbers = ["181000000101", "A100000101", "0100000101"]
    pre = await accounts.precheck(
        business_type="cancel", id_number=WANG, account_numbers=numbers, details={}
    )
    assert _codes(pre) == ["sub_accounts_open", "holdings_remain", None]
    assert pre[2].changes == {"status": ["normal", "cancelled"]}
    again = await accounts.precheck(
        business_type="cancel", id_number=WANG, account_numbers=numbers, details={}
    )
    assert _codes(again) == _codes(pre)  # nothing was cancelled
    assert (await _account(accounts, WANG, "0100000101")).status == "normal"
    # A dry run of cancelling everything of a clean holder says all would go through.
    zhao = await accounts.precheck(
        business_type="cancel",
        id_number=ZHAO,
        account_numbers=["181000000201", "A100000201", "0100000201"],
        details={},
    )
    assert all(r.ok for r in zhao)
    done = await _run(accounts, "cancel", WANG, numbers)
    assert _codes(done) == _codes(pre)


async def test_same_request_id_gives_the_same_results_without_a_second_change() -> None:
    accounts = _sandbox()
    first = await _run(accounts, "reactivate", CHEN, ["A100000301"], request_id="svc-1")
    assert first[0].ok
    retried = await _run(accounts, "reactivate", CHEN, ["A100000301"], request_id="svc-1")
    assert retried == first  # not "not_dormant": the retry is the same request
    other = await _run(accounts, "reactivate", CHEN, ["A100000301"], request_id="svc-2")
    assert _codes(other) == ["not_dormant"]
    add = {"action": "remove"}
    one = await _run(accounts, "beijing_mark", ZHANG, ["0100000501"], add, request_id="bj")
    two = await _run(accounts, "beijing_mark", ZHANG, ["0100000501"], add, request_id="bj")
    assert one == two and one[0].ok


# --- opened here, then served ----------------------------------------------------------


async def test_an_account_opened_by_the_sandbox_can_be_served() -> None:
    accounts = _sandbox()
    opened = await accounts.open_account(
        application_id="app-1", id_number=ZHAO, name="孙七", document_type="resident_id"
    )
    assert opened.ok and opened.unified_account_number is not None
    same = await accounts.open_account(
        application_id="app-1", id_number=ZHAO, name="孙七", document_type="resident_id"
    )
    assert same == opened  # the same application again: the same numbers
    lookup = await accounts.find_holder(id_number=ZHAO, account_number=opened.sub_accounts["sz"])
    assert lookup.ok and lookup.unified_account_number == opened.unified_account_number
    assert [(a.market, a.status, a.opening_method) for a in lookup.accounts] == [
        ("unified", "normal", "two_way_video_witnessing"),
        ("sh", "normal", "two_way_video_witnessing"),
        ("sz", "normal", "two_way_video_witnessing"),
    ]
    # The seeded accounts of the same person stay theirs, apart from the new ones.
    seeded = await accounts.find_holder(id_number=ZHAO, account_number="A100000201")
    assert seeded.unified_account_number == "181000000201"
    numbers = [a.number for a in lookup.accounts]
    results = await _run(accounts, "cancel", ZHAO, numbers)
    assert all(r.ok for r in results)
    other = await accounts.find_holder(id_number=WANG, account_number=numbers[0])
    assert other.error_code == "not_holder"


async def test_no_holders_at_all() -> None:
    accounts = _sandbox(holders=())
    lookup = await accounts.find_holder(id_number=WANG, account_number="A100000101")
    assert lookup.error_code == "not_holder"


# --- the holders file -------------------------------------------------------------------

_GOOD = """
[[holders]]
name = "周八"
id_number = "330106197203180059"
opening_method = "online"
associated_agency = "甲证券"

[[holders.accounts]]
number = "A000000001"
market = "sh"
status = "dormant"
opening_method = "counter"

[[holders.accounts]]
number = "180000000001"
market = "unified"
"""


def test_a_holders_file_of_ones_own(tmp_path: Path) -> None:
    path = tmp_path / "holders.toml"
    path.write_text(_GOOD, encoding="utf-8")
    (holder,) = load_sandbox_holders(path)
    assert holder.associated_agency == "甲证券"
    assert [a.number for a in holder.accounts] == ["180000000001", "A000000001"]  # unified first
    assert [(a.status, a.opening_method) for a in holder.accounts] == [
        ("normal", "online"),
        ("dormant", "counter"),
    ]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("[[holders]]", "[holders]"), r"holders: must be an array"),
        (
            ('id_number = "330106197203180059"', 'id_number = "440306199001011237"'),
            r"holders\[0\]\.id_number",
        ),
        (
            ('opening_method = "online"', 'opening_method = "pigeon"'),
            r"holders\[0\]\.opening_method: must be one of",
        ),
        (('name = "周八"', 'nom = "周八"'), r"holders\[0\]\.nom: unknown key"),
        (('market = "sh"', 'market = "bj"'), r"holders\[0\]\.accounts\[0\]\.market"),
        (
            ('number = "A000000001"', 'number = "A00000001"'),
            r"holders\[0\]\.accounts\[0\]\.number: a sh account number is 'A' \+ 9 digits",
        ),
        (('status = "dormant"', 'status = "asleep"'), r"holders\[0\]\.accounts\[0\]\.status"),
        (
            ('status = "dormant"', "holdings = 1"),
            r"holders\[0\]\.accounts\[0\]\.holdings: must be true or false",
        ),
        (
            ('"A000000001"\nmarket = "sh"', '"180000000002"\nmarket = "unified"'),
            r"holders\[0\]\.accounts: exactly one",
        ),
        (
            ('number = "180000000001"', 'number = "18000000001"'),
            r"holders\[0\]\.accounts\[1\]\.number",
        ),
        (("[[holders.accounts]]", "[[holders.acounts]]"), r"holders\[0\]\.acounts: unknown key"),
        (('name = "周八"', 'name = "周八"\nname2 = ['), r"invalid TOML"),
    ],
)
def test_a_bad_holders_file_names_the_file_and_key(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    path = tmp_path / "holders.toml"
    path.write_text(_GOOD.replace(*change, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: .*{where}"):
        load_sandbox_holders(path)


def test_duplicates_in_a_holders_file(tmp_path: Path) -> None:
    path = tmp_path / "holders.toml"
    path.write_text(_GOOD + _GOOD, encoding="utf-8")
    with pytest.raises(ValueError, match=r"holders\[1\]\.id_number: already given"):
        load_sandbox_holders(path)
    other = _GOOD.replace("330106197203180059", "320102198807070026")
    path.write_text(_GOOD + other, encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"holders\[1\]\.accounts\[0\]\.number: A000000001 is already"
    ):
        load_sandbox_holders(path)


async def test_the_kind_builds_the_sandbox_from_the_configured_file(tmp_path: Path) -> None:
    (tmp_path / "holders.toml").write_text(_GOOD, encoding="utf-8")
    context = BuildContext(resolve_path=lambda name: tmp_path / name)
    own = build(
        ACCOUNTS, AccountsConfig(sandbox_latency_ms=0, sandbox_holders_file="holders.toml"), context
    )
    assert (await own.find_holder(id_number=WANG, account_number="A000000001")).ok
    assert not (await own.find_holder(id_number=WANG, account_number="A100000101")).ok
    built_in = build(ACCOUNTS, AccountsConfig(sandbox_latency_ms=0))
    assert (await built_in.find_holder(id_number=WANG, account_number="A100000101")).ok
    (tmp_path / "bad.toml").write_text(
        _GOOD.replace('market = "sh"', 'market = "bj"'), encoding="utf-8"
    )
    with pytest.raises(
        AdapterConfigError,
        match=rf"^accounts\.sandbox_holders_file: {re.escape(str(tmp_path))}/bad\.toml: "
        r"holders\[0\]\.accounts\[0\]\.market",
    ):
        build(ACCOUNTS, AccountsConfig(sandbox_holders_file="bad.toml"), context)
    with pytest.raises(AdapterConfigError, match=r"^accounts\.sandbox_holders_file: .*cannot read"):
        build(ACCOUNTS, AccountsConfig(sandbox_holders_file="none.toml"), context)
    http: dict[str, Any] = {
        "provider": "http",
        "http_url": "https://gw.example.cn/csdc",
        "http_api_key": "k",
    }
    with pytest.raises(
        AdapterConfigError,
        match=r"^accounts\.sandbox_holders_file: only with accounts\.provider = 'sandbox'$",
    ):
        build(ACCOUNTS, AccountsConfig(**http, sandbox_holders_file="holders.toml"), context)
