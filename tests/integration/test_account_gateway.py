"""The HTTP account system's services for existing holders (A20–A22) against a real local
fake gateway: what it sends, how it reads the answers, and that a malformed answer or
no answer is "bad_response" / "unavailable", never an exception."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from server.adapters.account_system import HolderAccount, HttpAccountSystem, ServiceResult

WANG = "330106197203180059"
UNIFIED, SH, SZ = "181000000101", "A100000101", "0100000101"


def _account(number: str, market: str, **extra: Any) -> dict[str, Any]:
    return {
        "number": number,
        "market": market,
        "status": "normal",
        "opening_method": "two_way_video_witnessing",
        **extra,
    }


HOLDER = {
    "ok": True,
    "unified_account_number": UNIFIED,
    "accounts": [
        _account(UNIFIED, "unified"),
        _account(SH, "sh", holdings=True),
        _account(SZ, "sz"),
    ],
    "reference": "CSDC1",
}


@dataclass
class FakeGateway:
    url: str = ""
    replies: list[tuple[int, Any]] = field(default_factory=list)  # (status, JSON body or text)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def gateway(aiohttp_server: AiohttpServer) -> Callable[..., Awaitable[FakeGateway]]:
    async def start(*replies: tuple[int, Any]) -> FakeGateway:
        state = FakeGateway(replies=list(replies))

        async def handle(request: web.Request) -> web.Response:
            state.requests.append((dict(request.headers), await request.json()))
            status, body = state.replies.pop(0) if len(state.replies) > 1 else state.replies[0]
            if isinstance(body, str):
                return web.Response(status=status, text=body)
            return web.json_response(body, status=status)

        app = web.Application()
        app.router.add_post("/csdc", handle)
        server = await aiohttp_server(app)
        state.url = str(server.make_url("/csdc"))
        return state

    return start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _client(gw: FakeGateway, session: aiohttp.ClientSession) -> HttpAccountSystem:
    return HttpAccountSystem(
        url=gw.url,
        api_key="csdc-key",
        timeout_seconds=1.0,
        retries=1,
        backoff_seconds=0.0,
        session=session,
    )


async def _carry_out(
    client: HttpAccountSystem, numbers: list[str], request_id: str = "svc-app-1"
) -> list[ServiceResult]:
    return await client.carry_out(
        business_type="cancel",
        id_number=WANG,
        account_numbers=numbers,
        details={},
        method="two_way_video_witnessing",
        request_id=request_id,
    )


# --- find_holder ---------------------------------------------------------------------


async def test_find_holder_sends_the_operation_and_reads_the_accounts(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway((200, HOLDER))
    lookup = await _client(gw, session).find_holder(id_number=WANG, account_number=SH)
    assert (lookup.ok, lookup.error_code, lookup.reference) == (True, None, "CSDC1")
    assert lookup.unified_account_number == UNIFIED
    assert lookup.accounts[1] == HolderAccount(
        SH, "sh", "normal", "two_way_video_witnessing", holdings=True
    )
    headers, sent = gw.requests[0]
    assert headers["Authorization"] == "Bearer csdc-key"
    assert {k: v for k, v in sent.items() if k != "request_id"} == {
        "operation": "find_holder",
        "id_number": WANG,
        "account_number": SH,
    }
    assert len(sent["request_id"]) == 32


@pytest.mark.parametrize("code", ["not_holder", "unavailable"])
async def test_find_holder_refused(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession, code: str
) -> None:
    gw = await gateway((200, {"ok": False, "code": code, "reference": "CSDC2"}))
    lookup = await _client(gw, session).find_holder(id_number=WANG, account_number=SH)
    assert (lookup.ok, lookup.error_code, lookup.accounts) == (False, code, ())


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in HOLDER.items() if k != key}


def _with_account(**changes: Any) -> dict[str, Any]:
    return {**HOLDER, "accounts": [_account(UNIFIED, "unified"), {**_account(SH, "sh"), **changes}]}


@pytest.mark.parametrize(
    "body",
    [
        {"ok": "yes"},
        {"ok": False},
        {"ok": False, "code": "secret_reason"},
        _without("accounts"),
        _without("unified_account_number"),
        {**HOLDER, "accounts": []},
        {**HOLDER, "accounts": "A100000101"},
        {**HOLDER, "accounts": [_account(UNIFIED, "unified"), "A100000101"]},
        {**HOLDER, "unified_account_number": "189999999999"},  # not among the accounts
        {**HOLDER, "accounts": [_account(UNIFIED, "unified"), _account(SZ, "sz")]},  # not SH
        {**HOLDER, "accounts": [_account(UNIFIED, "unified"), _account(SH, "sh")] * 2},
        _with_account(market="bj"),
        _with_account(status="asleep"),
        _with_account(opening_method=7),
        _with_account(holdings="true"),
        _with_account(number=None),
    ],
)
async def test_find_holder_malformed_answer_is_bad_response(
    gateway: Callable[..., Awaitable[FakeGateway]],
    session: aiohttp.ClientSession,
    body: dict[str, Any],
) -> None:
    gw = await gateway((200, body))
    lookup = await _client(gw, session).find_holder(id_number=WANG, account_number=SH)
    assert (lookup.ok, lookup.error_code, lookup.accounts) == (False, "bad_response", ())


@pytest.mark.parametrize(
    ("reply", "code", "attempts"),
    [
        ((503, {"error": "busy"}), "unavailable", 2),
        ((401, {"error": "key"}), "unavailable", 1),
        ((200, "<html>maintenance</html>"), "bad_response", 1),
        ((200, [1, 2]), "bad_response", 1),
    ],
)
async def test_find_holder_provider_trouble(
    gateway: Callable[..., Awaitable[FakeGateway]],
    session: aiohttp.ClientSession,
    reply: tuple[int, Any],
    code: str,
    attempts: int,
) -> None:
    gw = await gateway(reply)
    lookup = await _client(gw, session).find_holder(id_number=WANG, account_number=SH)
    assert (lookup.ok, lookup.error_code) == (False, code)
    assert len(gw.requests) == attempts


async def test_unreachable_gateway_is_unavailable(session: aiohttp.ClientSession) -> None:
    client = HttpAccountSystem(
        url="http://127.0.0.1:9/csdc", api_key="k", timeout_seconds=0.5, retries=0, session=session
    )
    lookup = await client.find_holder(id_number=WANG, account_number=SH)
    assert (lookup.ok, lookup.error_code) == (False, "unavailable")
    results = await _carry_out(client, [SH, SZ])
    assert [(r.account_number, r.ok, r.error_code) for r in results] == [
        (SH, False, "unavailable"),
        (SZ, False, "unavailable"),
    ]


# --- precheck and carry_out ----------------------------------------------------------------


async def test_carry_out_sends_the_request_id_and_reads_a_partial_outcome(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession
) -> None:
    answer = {
        "reference": "CSDC9",
        "results": [  # in another order than asked: matched by number
            {"account_number": SZ, "ok": True, "changes": {"status": ["normal", "cancelled"]}},
            {"account_number": SH, "ok": False, "code": "holdings_remain", "reference": "CSDC8"},
        ],
    }
    gw = await gateway((200, answer))
    client = _client(gw, session)
    results = await _carry_out(client, [SH, SZ])
    assert results == [
        ServiceResult(SH, False, "holdings_remain", reference="CSDC8"),
        ServiceResult(SZ, True, None, {"status": ["normal", "cancelled"]}, reference="CSDC9"),
    ]
    await _carry_out(client, [SH, SZ])  # a retry of the same service
    sent = [body for _, body in gw.requests]
    assert sent[0] == {
        "operation": "carry_out",
        "business_type": "cancel",
        "id_number": WANG,
        "account_numbers": [SH, SZ],
        "details": {},
        "method": "two_way_video_witnessing",
        "request_id": "svc-app-1",
    }
    assert sent[1] == sent[0]  # the gateway de-duplicates by request_id


async def test_precheck_sends_no_method_and_reads_info(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession
) -> None:
    info = _account(SH, "sh", holdings=True)
    gw = await gateway((200, {"results": [{"account_number": SH, "ok": True, "info": info}]}))
    results = await _client(gw, session).precheck(
        business_type="query", id_number=WANG, account_numbers=[SH], details={"x": "y"}
    )
    assert results == [ServiceResult(SH, True, None, {}, info)]
    sent = gw.requests[0][1]
    assert sent["operation"] == "precheck" and "method" not in sent
    assert sent["details"] == {"x": "y"} and sent["account_numbers"] == [SH]
    assert len(sent["request_id"]) == 32


async def test_an_unknown_refusal_code_is_rejected(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession
) -> None:
    answer = {
        "results": [
            {"account_number": SH, "ok": False, "code": "E1234"},
            {"account_number": SZ, "ok": False},
        ]
    }
    gw = await gateway((200, answer))
    results = await _carry_out(_client(gw, session), [SH, SZ])
    assert [r.error_code for r in results] == ["rejected", "rejected"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [("unavailable", "unavailable"), ("not_holder", "not_holder"), ("nope", "rejected")],
)
async def test_a_refusal_of_the_whole_request(
    gateway: Callable[..., Awaitable[FakeGateway]],
    session: aiohttp.ClientSession,
    code: str,
    expected: str,
) -> None:
    gw = await gateway((200, {"ok": False, "code": code}))
    results = await _carry_out(_client(gw, session), [SH, SZ])
    assert [(r.ok, r.error_code) for r in results] == [(False, expected), (False, expected)]


def _results(*items: Any) -> dict[str, Any]:
    return {"results": list(items)}


_SH_OK = {"account_number": SH, "ok": True}
_SZ_OK = {"account_number": SZ, "ok": True}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"results": "done"},
        _results(_SH_OK),  # one account missing
        _results(_SH_OK, _SZ_OK, {"account_number": UNIFIED, "ok": True}),  # one not asked
        _results(_SH_OK, _SH_OK, _SZ_OK),  # twice
        _results(_SH_OK, "ok"),
        _results(_SH_OK, {"account_number": SZ, "ok": "true"}),
        _results(_SH_OK, {"account_number": 100000101, "ok": True}),
        _results(_SH_OK, {**_SZ_OK, "changes": ["status"]}),
        _results(_SH_OK, {**_SZ_OK, "info": "normal"}),
    ],
)
async def test_a_malformed_service_answer_is_bad_response(
    gateway: Callable[..., Awaitable[FakeGateway]],
    session: aiohttp.ClientSession,
    body: dict[str, Any],
) -> None:
    gw = await gateway((200, body))
    results = await _carry_out(_client(gw, session), [SH, SZ])
    assert [(r.account_number, r.ok, r.error_code) for r in results] == [
        (SH, False, "bad_response"),
        (SZ, False, "bad_response"),
    ]


async def test_a_service_through_trouble(
    gateway: Callable[..., Awaitable[FakeGateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway((502, "bad gateway"), (200, _results(_SH_OK)))
    results = await _client(gw, session).precheck(
        business_type="reactivate", id_number=WANG, account_numbers=[SH], details={}
    )
    assert results == [ServiceResult(SH, True)]  # retried after the 502
    text = await gateway((200, "not json"))
    failed = await _carry_out(_client(text, session), [SH])
    assert [r.error_code for r in failed] == ["bad_response"]
