"""Outside-service adapters: identity registry (A17.2) and SMS, sandbox and HTTP; every
adapter kind built from its config section.

HTTP adapters run against a real local aiohttp server scripted per test; sandbox
adapters get a recording sleep so latency is checked without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from server.adapters.account_system import ACCOUNTS, HttpAccountSystem, SandboxAccountSystem
from server.adapters.email import EMAIL, SandboxEmail, SmtpEmail
from server.adapters.http_gateway import post_json_with_retries
from server.adapters.identity_registry import (
    DEFAULT_SANDBOX_IDENTITIES,
    IDENTITY,
    HttpRegistry,
    RegistryResult,
    SandboxRegistry,
    load_sandbox_identities,
)
from server.adapters.kinds import AdapterConfigError, AdapterKind, BuildContext, build
from server.adapters.sms import SMS, HttpSms, SandboxSms
from server.config import AccountsConfig, IdentityConfig, NoticesConfig, SmsConfig
from server.domain.identity_document import DocumentType, validate_id_number

ZHANG_ID = "11010519491231002X"
ZHANG_MASKED = "110105********002X"
TIMEOUT = 0.2
BACKOFF = 0.01


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers requested delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _sandbox(**kwargs: Any) -> tuple[SandboxRegistry, RecordingSleep]:
    sleep = RecordingSleep()
    return SandboxRegistry(rng=random.Random(7), sleep=sleep, **kwargs), sleep


# --- sandbox identity registry -------------------------------------------------------


async def test_sandbox_match_ignores_surrounding_whitespace() -> None:
    registry, _ = _sandbox()
    resp = await registry.verify(name=" 张三 ", id_type="resident_id", id_number=ZHANG_ID)
    assert resp.result is RegistryResult.MATCH
    assert resp.error_code is None
    assert resp.provider == "sandbox"
    assert re.fullmatch(r"SBX[0-9A-F]{16}", resp.reference)


async def test_sandbox_mismatch_and_not_found() -> None:
    registry, _ = _sandbox()
    wrong = await registry.verify(name="李四", id_type="resident_id", id_number=ZHANG_ID)
    assert (wrong.result, wrong.error_code) == (RegistryResult.MISMATCH, "name_mismatch")
    unknown = await registry.verify(
        name="张三", id_type="resident_id", id_number="440306199001011244"
    )
    assert (unknown.result, unknown.error_code) == (RegistryResult.NOT_FOUND, "no_record")


async def test_sandbox_custom_identities_replace_defaults() -> None:
    registry, _ = _sandbox(identities=[("王小明", "110105198001019028")])
    own = await registry.verify(
        name="王小明", id_type="resident_id", id_number="110105198001019028"
    )
    assert own.result is RegistryResult.MATCH
    default = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert default.result is RegistryResult.NOT_FOUND


async def test_sandbox_sequence_999_is_always_unavailable() -> None:
    number = "110105198001019993"  # positions 15-17 are 999
    registry, _ = _sandbox(identities=[("张三", number)])
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=number)
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "upstream_timeout")
    assert resp.reference  # even a failed check has a reference for the audit trail


async def test_sandbox_failure_rate_one_is_always_busy() -> None:
    registry, _ = _sandbox(failure_rate=1.0)
    for _ in range(5):
        resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
        assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "upstream_busy")


async def test_sandbox_failure_rate_is_a_probability() -> None:
    registry, _ = _sandbox(failure_rate=0.3)
    results = [
        (await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)).result
        for _ in range(200)
    ]
    busy = results.count(RegistryResult.UNAVAILABLE)
    assert 30 < busy < 90
    assert results.count(RegistryResult.MATCH) == 200 - busy


def test_sandbox_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError):
        SandboxRegistry(failure_rate=1.5)
    with pytest.raises(ValueError):
        SandboxRegistry(latency_ms=-1)


async def test_sandbox_waits_latency_plus_jitter() -> None:
    fixed, fixed_sleep = _sandbox(latency_ms=300, latency_jitter_ms=0)
    await fixed.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert fixed_sleep.delays == [pytest.approx(0.3)]
    jittery, sleep = _sandbox(latency_ms=300, latency_jitter_ms=200)
    for _ in range(20):
        await jittery.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert len(sleep.delays) == 20
    assert all(0.3 <= d <= 0.5 for d in sleep.delays)
    assert len(set(sleep.delays)) > 1  # jitter actually varies


async def test_sandbox_raw_response_masks_personal_data() -> None:
    registry, _ = _sandbox()
    for name in ("张三", "李四"):
        resp = await registry.verify(name=name, id_type="resident_id", id_number=ZHANG_ID)
        text = json.dumps(resp.raw, ensure_ascii=False)
        assert ZHANG_ID not in text and name not in text
        assert resp.raw["id_number"] == ZHANG_MASKED
        assert resp.raw["name"] == name[0] + "*"


def test_default_identities_have_valid_numbers() -> None:
    assert ("张三", ZHANG_ID) in DEFAULT_SANDBOX_IDENTITIES
    today = date(2026, 1, 1)
    births = set()
    for name, number in DEFAULT_SANDBOX_IDENTITIES:
        kind = (
            DocumentType.HMT_RESIDENCE_PERMIT
            if number.startswith("81")
            else DocumentType.RESIDENT_ID
        )
        info = validate_id_number(number, kind, today=today)  # raises on a bad check digit
        births.add((info.region_code, info.birth_date))
        if kind is DocumentType.HMT_RESIDENCE_PERMIT:
            assert (name, info.region_code) == ("陈大文", "810000")
    assert ("110101", date(2000, 1, 1)) in births


# --- a scripted vendor gateway -----------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless ``text`` is given
    text: str | None = None
    delay: float = 0.0


@dataclass
class Gateway:
    """A real local HTTP server answering each request with the next scripted reply."""

    url: str
    replies: list[Reply]
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
async def gateway(
    aiohttp_server: AiohttpServer,
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    release = asyncio.Event()  # lets slow handlers finish when the test ends

    async def start(*replies: Reply) -> Gateway:
        state = Gateway(url="", replies=list(replies))

        async def handle(request: web.Request) -> web.StreamResponse:
            state.requests.append((dict(request.headers), await request.json()))
            # The last reply repeats: "always 503" is one Reply.
            reply = state.replies.pop(0) if len(state.replies) > 1 else state.replies[0]
            if reply.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), reply.delay)
            if reply.text is not None:
                return web.Response(status=reply.status, text=reply.text)
            return web.json_response(reply.body, status=reply.status)

        app = web.Application()
        app.router.add_post("/check", handle)
        server = await aiohttp_server(app)
        state.url = str(server.make_url("/check"))
        return state

    yield start
    release.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _http_registry(url: str, session: aiohttp.ClientSession, **kwargs: Any) -> HttpRegistry:
    options: dict[str, Any] = {
        "api_key": "test-key",
        "timeout_seconds": TIMEOUT,
        "retries": 2,
        "backoff_seconds": BACKOFF,
        "session": session,
        **kwargs,
    }
    return HttpRegistry(url=url, **options)


def _http_sms(url: str, session: aiohttp.ClientSession, **kwargs: Any) -> HttpSms:
    options: dict[str, Any] = {
        "api_key": "test-key",
        "timeout_seconds": TIMEOUT,
        "retries": 2,
        "backoff_seconds": BACKOFF,
        "session": session,
        **kwargs,
    }
    return HttpSms(url=url, **options)


MATCH_BODY = {"result": "match", "reference": "R-1"}


# --- shared retry logic ---------------------------------------------------------------


async def test_gateway_retries_5xx_with_exponential_backoff(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(503), Reply(502), Reply(500), Reply(200, {"ok": True}))
    sleep = RecordingSleep()
    outcome = await post_json_with_retries(
        session,
        gw.url,
        {"request_id": "r1"},
        api_key="k",
        timeout_seconds=TIMEOUT,
        retries=3,
        backoff_seconds=0.5,
        sleep=sleep,
    )
    assert outcome.ok and outcome.body == {"ok": True}
    assert (outcome.status, outcome.attempts) == (200, 4)
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert [body for _, body in gw.requests] == [{"request_id": "r1"}] * 4


async def test_gateway_does_not_retry_other_4xx(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(404, {"error": "nope"}))
    outcome = await post_json_with_retries(
        session,
        gw.url,
        {},
        api_key="k",
        timeout_seconds=TIMEOUT,
        retries=2,
        backoff_seconds=BACKOFF,
    )
    assert (outcome.error_code, outcome.status, outcome.attempts) == ("http_404", 404, 1)
    assert not outcome.ok and len(gw.requests) == 1


# --- HTTP identity registry -----------------------------------------------------------


async def test_http_registry_success_sends_request_and_key(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, MATCH_BODY))
    registry = _http_registry(gw.url, session)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert (resp.result, resp.reference, resp.error_code) == (RegistryResult.MATCH, "R-1", None)
    assert resp.provider == "http" and resp.raw["attempts"] == 1
    [(headers, body)] = gw.requests
    assert headers["Authorization"] == "Bearer test-key"
    assert body["name"] == "张三" and body["id_number"] == ZHANG_ID
    assert body["id_type"] == "resident_id"
    assert body["request_id"] == resp.raw["request_id"]  # traceable with the vendor


async def test_http_registry_mismatch_not_found_and_vendor_codes(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        Reply(200, {"result": "mismatch", "reference": "R-2"}),
        Reply(200, {"result": "not_found", "reference": "R-3", "code": "id_cancelled"}),
        Reply(200, {"result": "match", "reference": "R-4", "code": "0000"}),
    )
    registry = _http_registry(gw.url, session)
    got = [
        await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
        for _ in range(3)
    ]
    assert [(r.result, r.error_code) for r in got] == [
        (RegistryResult.MISMATCH, "name_mismatch"),
        (RegistryResult.NOT_FOUND, "id_cancelled"),
        (RegistryResult.MATCH, None),
    ]


async def test_http_registry_masks_echoed_personal_data(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    echo = {
        "result": "match",
        "request": {"name": "张三", "id_number": ZHANG_ID},
        "note": f"checked {ZHANG_ID} for 张三",
    }
    gw = await gateway(Reply(200, echo))
    registry = _http_registry(gw.url, session)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    text = json.dumps(resp.raw, ensure_ascii=False)
    assert ZHANG_ID not in text and "张三" not in text
    assert resp.raw["response"]["request"] == {"name": "张*", "id_number": ZHANG_MASKED}
    assert resp.reference.startswith("local-")  # the vendor gave none


async def test_http_registry_retries_503_then_succeeds(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(503), Reply(503), Reply(200, MATCH_BODY))
    sleep = RecordingSleep()
    registry = _http_registry(gw.url, session, sleep=sleep)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert resp.result is RegistryResult.MATCH
    assert resp.raw["attempts"] == 3 and len(gw.requests) == 3
    assert sleep.delays == [BACKOFF, BACKOFF * 2]
    # One logical request: the vendor can de-duplicate by request_id.
    assert len({body["request_id"] for _, body in gw.requests}) == 1


async def test_http_registry_retries_429(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(429), Reply(200, MATCH_BODY))
    resp = await _http_registry(gw.url, session).verify(
        name="张三", id_type="resident_id", id_number=ZHANG_ID
    )
    assert resp.result is RegistryResult.MATCH and len(gw.requests) == 2


async def test_http_registry_gives_up_after_retries(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(503))
    registry = _http_registry(gw.url, session, retries=2)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "http_503")
    assert len(gw.requests) == 3 and resp.raw["attempts"] == 3
    assert resp.reference.startswith("local-")


@pytest.mark.parametrize(
    ("status", "code"), [(401, "auth_failed"), (403, "auth_failed"), (400, "bad_request")]
)
async def test_http_registry_client_errors_are_not_retried(
    gateway: Callable[..., Awaitable[Gateway]],
    session: aiohttp.ClientSession,
    status: int,
    code: str,
) -> None:
    gw = await gateway(Reply(status, {"error": "x"}))
    resp = await _http_registry(gw.url, session).verify(
        name="张三", id_type="resident_id", id_number=ZHANG_ID
    )
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, code)
    assert len(gw.requests) == 1 and resp.raw["attempts"] == 1


async def test_http_registry_slow_answer_times_out(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, MATCH_BODY, delay=5.0))
    registry = _http_registry(gw.url, session, retries=1)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "timeout")
    assert len(gw.requests) == 2  # timeouts are retried
    assert resp.latency_ms >= 2 * TIMEOUT * 1000


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, text="<html>gateway error</html>"),
        Reply(200, ["match"]),
        Reply(200, {"result": "probably", "reference": "R-9"}),
    ],
    ids=["not-json", "not-an-object", "unknown-result"],
)
async def test_http_registry_bad_answers(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession, reply: Reply
) -> None:
    gw = await gateway(reply)
    resp = await _http_registry(gw.url, session).verify(
        name="张三", id_type="resident_id", id_number=ZHANG_ID
    )
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "bad_response")
    assert len(gw.requests) == 1


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/check"


async def test_http_registry_connection_refused(session: aiohttp.ClientSession) -> None:
    registry = _http_registry(_closed_port_url(), session, retries=1)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert (resp.result, resp.error_code) == (RegistryResult.UNAVAILABLE, "connection_error")
    assert resp.raw["attempts"] == 2


async def test_http_registry_never_logs_personal_data(
    gateway: Callable[..., Awaitable[Gateway]],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await gateway(Reply(503), Reply(200, text="not json"))
    caplog.set_level(logging.DEBUG)
    registry = _http_registry(gw.url, session)
    resp = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert resp.error_code == "bad_response"
    assert caplog.records  # the failures were logged ...
    for record in caplog.records:  # ... without the request, extras included
        dump = repr(vars(record)) + record.getMessage()
        assert ZHANG_ID not in dump and "张三" not in dump and "test-key" not in dump


async def test_http_registry_owns_only_its_own_session(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, MATCH_BODY))
    shared = _http_registry(gw.url, session)
    await shared.close()
    assert not session.closed  # the caller's session stays usable
    own = HttpRegistry(url=gw.url, api_key="k", timeout_seconds=TIMEOUT)
    resp = await own.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert resp.result is RegistryResult.MATCH
    await own.close()  # an unclosed session would fail the run (ResourceWarning)


# --- SMS -----------------------------------------------------------------------------


def _sandbox_sms(**kwargs: Any) -> tuple[SandboxSms, RecordingSleep]:
    sleep = RecordingSleep()
    return SandboxSms(rng=random.Random(7), sleep=sleep, **kwargs), sleep


async def test_sandbox_sms_outbox_and_last_to() -> None:
    sms, sleep = _sandbox_sms(latency_ms=150, latency_jitter_ms=0)
    first = await sms.send(phone="13812345678", text="验证码 111111", purpose="otp")
    second = await sms.send(phone="13812345678", text="验证码 222222", purpose="otp")
    await sms.send(phone="15900001111", text="notice", purpose="notice")
    assert first.accepted and first.error_code is None and first.provider == "sandbox"
    assert re.fullmatch(r"SBX[0-9A-F]{16}", first.message_id)
    last = sms.last_to("13812345678")
    assert last is not None and last.text == "验证码 222222"
    assert last.message_id == second.message_id and last.at.tzinfo is UTC
    assert [m.purpose for m in sms.outbox()] == ["otp", "otp", "notice"]
    assert sms.last_to("13900000001") is None
    assert sleep.delays == [pytest.approx(0.15)] * 3


@pytest.mark.parametrize(
    ("phone", "text", "code"),
    [
        ("12812345678", "hi", "invalid_number"),
        ("1381234567", "hi", "invalid_number"),
        ("+8613812345678", "hi", "invalid_number"),
        ("1381234567８", "hi", "invalid_number"),  # full-width digit
        ("13812340000", "hi", "carrier_rejected"),
        ("13812345678", "", "empty_text"),
    ],
)
async def test_sandbox_sms_refusals(phone: str, text: str, code: str) -> None:
    sms, _ = _sandbox_sms()
    receipt = await sms.send(phone=phone, text=text, purpose="otp")
    assert (receipt.accepted, receipt.error_code) == (False, code)
    assert sms.outbox() == []


async def test_sandbox_sms_failure_rate_and_bounded_outbox() -> None:
    busy, _ = _sandbox_sms(failure_rate=1.0)
    receipt = await busy.send(phone="13812345678", text="x", purpose="otp")
    assert (receipt.accepted, receipt.error_code) == (False, "upstream_busy")
    small, _ = _sandbox_sms(outbox_size=2)
    for i in range(3):
        await small.send(phone="13812345678", text=f"m{i}", purpose="otp")
    assert [m.text for m in small.outbox()] == ["m1", "m2"]


async def test_http_sms_success(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(200, {"accepted": True, "message_id": "M-1"}))
    receipt = await _http_sms(gw.url, session).send(
        phone="13812345678", text="验证码 123456", purpose="otp"
    )
    assert (receipt.accepted, receipt.message_id, receipt.error_code) == (True, "M-1", None)
    [(headers, body)] = gw.requests
    assert headers["Authorization"] == "Bearer test-key"
    assert {k: body[k] for k in ("phone", "text", "purpose")} == {
        "phone": "13812345678",
        "text": "验证码 123456",
        "purpose": "otp",
    }
    assert body["request_id"]


async def test_http_sms_vendor_refusal(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        Reply(200, {"accepted": False, "message_id": "M-2", "code": "blacklisted"}),
        Reply(200, {"accepted": False}),
    )
    sms = _http_sms(gw.url, session)
    refused = await sms.send(phone="13812345678", text="x", purpose="otp")
    assert (refused.accepted, refused.message_id, refused.error_code) == (
        False,
        "M-2",
        "blacklisted",
    )
    bare = await sms.send(phone="13812345678", text="x", purpose="otp")
    assert (bare.accepted, bare.error_code) == (False, "rejected")
    assert bare.message_id.startswith("local-")


async def test_http_sms_retries_503_then_succeeds(
    gateway: Callable[..., Awaitable[Gateway]], session: aiohttp.ClientSession
) -> None:
    gw = await gateway(Reply(503), Reply(503), Reply(200, {"accepted": True, "message_id": "M"}))
    receipt = await _http_sms(gw.url, session).send(phone="13812345678", text="x", purpose="otp")
    assert receipt.accepted and len(gw.requests) == 3
    assert len({body["request_id"] for _, body in gw.requests}) == 1


@pytest.mark.parametrize(
    ("reply", "code", "requests"),
    [
        (Reply(503), "http_503", 3),
        (Reply(401), "auth_failed", 1),
        (Reply(200, text="{oops"), "bad_response", 1),
        (Reply(200, {"accepted": "yes", "message_id": "M"}), "bad_response", 1),
        (Reply(200, {"accepted": True}, delay=5.0), "timeout", 3),
    ],
    ids=["always-503", "401", "not-json", "accepted-not-bool", "slow"],
)
async def test_http_sms_failures(
    gateway: Callable[..., Awaitable[Gateway]],
    session: aiohttp.ClientSession,
    reply: Reply,
    code: str,
    requests: int,
) -> None:
    gw = await gateway(reply)
    receipt = await _http_sms(gw.url, session).send(phone="13812345678", text="x", purpose="otp")
    assert (receipt.accepted, receipt.error_code) == (False, code)
    assert len(gw.requests) == requests


# --- configuration: every adapter built one way (server/adapters/kinds.py) --------------

_QUICK: dict[str, Any] = {"sandbox_latency_ms": 0, "http_timeout_seconds": 1.0, "http_retries": 0}
_HTTP: dict[str, Any] = {
    "provider": "http",
    "http_url": "http://127.0.0.1:9/x",
    "http_api_key": "k",
}
_GATEWAY_KINDS = [(IDENTITY, IdentityConfig), (SMS, SmsConfig), (ACCOUNTS, AccountsConfig)]


async def test_build_chooses_the_configured_provider() -> None:
    assert isinstance(build(IDENTITY, IdentityConfig(**_QUICK)), SandboxRegistry)
    assert isinstance(build(SMS, SmsConfig(**_QUICK)), SandboxSms)
    assert isinstance(build(ACCOUNTS, AccountsConfig(**_QUICK)), SandboxAccountSystem)
    assert isinstance(build(EMAIL, NoticesConfig()), SandboxEmail)
    smtp = NoticesConfig(email_provider="smtp", smtp_host="mail.example.cn", smtp_from="a@b.cn")
    assert isinstance(build(EMAIL, smtp), SmtpEmail)
    registry = build(IDENTITY, IdentityConfig(**_QUICK, **_HTTP))
    sender = build(SMS, SmsConfig(**_QUICK, **_HTTP))
    accounts = build(ACCOUNTS, AccountsConfig(**_QUICK, **_HTTP))
    assert isinstance(registry, HttpRegistry) and isinstance(sender, HttpSms)
    assert isinstance(accounts, HttpAccountSystem)
    await registry.close()
    await sender.close()
    await accounts.close()


async def test_built_http_adapter_uses_its_sections_gateway(
    gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gw = await gateway(Reply(body={"accepted": True, "message_id": "M1"}))
    sender = build(SMS, SmsConfig(provider="http", http_url=gw.url, http_api_key="sms-key"))
    receipt = await sender.send(phone="13812345678", text="x", purpose="otp")
    await sender.close()
    assert (receipt.accepted, receipt.message_id) == (True, "M1")
    assert gw.requests[0][0]["Authorization"] == "Bearer sms-key"


@pytest.mark.parametrize(("kind", "section"), _GATEWAY_KINDS, ids=["registry", "sms", "accounts"])
def test_build_refuses_bad_configuration(kind: AdapterKind[Any, Any], section: type[Any]) -> None:
    name = kind.section
    with pytest.raises(
        AdapterConfigError, match=rf"^{name}\.provider: must be 'sandbox' or 'http', got 'pigeon'$"
    ):
        build(kind, section(provider="pigeon"))
    with pytest.raises(AdapterConfigError, match=rf"^{name}\.http_url: required when"):
        build(kind, section(**{**_HTTP, "http_url": ""}))
    with pytest.raises(AdapterConfigError, match=rf"^{name}\.http_url: required when"):
        build(kind, section(**{**_HTTP, "http_url": "ftp://gw.example.cn"}))
    with pytest.raises(AdapterConfigError, match=rf"^{name}\.http_api_key: required when"):
        build(kind, section(**{**_HTTP, "http_api_key": ""}))
    with pytest.raises(AdapterConfigError, match=rf"^{name}\.sandbox_failure_rate: must be"):
        build(kind, section(sandbox_failure_rate=1.5))


async def test_sandbox_identities_file_adds_testers_identities(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "# extra identities for testers\n\n"
        "测甲甲乙,110101196001020113\n王 小明 , 11010119600101010x\n",
        encoding="utf-8",
    )
    extra = load_sandbox_identities(people)
    assert extra == [("测甲甲乙", "110101196001020113"), ("王 小明", "11010119600101010X")]
    # A relative file name resolves the way the context says (against config.toml's folder).
    section = IdentityConfig(sandbox_latency_ms=0, sandbox_identities_file="people.csv")
    registry = build(IDENTITY, section, BuildContext(resolve_path=lambda name: tmp_path / name))
    got = await registry.verify(name="测甲甲乙", id_type="resident_id", id_number=extra[0][1])
    assert got.result is RegistryResult.MATCH
    other = await registry.verify(name="张三", id_type="resident_id", id_number=extra[0][1])
    assert other.result is RegistryResult.MISMATCH
    # The built-in ones stay.
    zhang = await registry.verify(name="张三", id_type="resident_id", id_number=ZHANG_ID)
    assert zhang.result is RegistryResult.MATCH
    with pytest.raises(AdapterConfigError, match=r"^identity\.sandbox_identities_file: "):
        build(IDENTITY, IdentityConfig(sandbox_identities_file=str(tmp_path / "none.csv")))
    with pytest.raises(
        AdapterConfigError,
        match=r"^identity\.sandbox_identities_file: only with identity\.provider = 'sandbox'$",
    ):
        build(IDENTITY, IdentityConfig(**_HTTP, sandbox_identities_file="people.csv"))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("测甲甲乙,110101196001020114", "checksum"),
        ("测甲甲乙,1101011960", "18-character"),
        ("测甲甲乙", "expected 'name,id_number'"),
        (",110101196001020113", "expected 'name,id_number'"),
    ],
)
def test_sandbox_identities_file_names_the_bad_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(f"测甲甲乙,110101196001020113\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"people.csv:2: .*{problem}"):
        load_sandbox_identities(people)
