"""Bad input at the edge (issue 15, items 4, 6, 9): every malformed body, form, query or
header is a 4xx with a code and a message in both languages, never a 500, never a
dropped connection, never a changed row; a slow body is cut off with 408, and a client
that goes away mid-body is logged as that, not as a server error."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, Document
from tests.helpers import add_staff, csrf_from, login
from tests.intake_flow import API, ZHANG_SAN, jpeg, sign_in
from tests.server_config import make_config

JSON = {"Content-Type": "application/json"}


async def _rows(client: Any) -> tuple[int, int, int]:
    async with client.app[RUNTIME].db.begin() as tx:
        return (
            await tx.scalar(select(func.count()).select_from(Application)) or 0,
            await tx.scalar(select(func.count()).select_from(Document)) or 0,
            await tx.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


async def _identity(client: Any) -> tuple[Any, ...]:
    async with client.app[RUNTIME].db.begin() as tx:
        app = await tx.scalar(select(Application))
        assert app is not None
        return (app.version, app.investor_name, app.profile_enc, app.suitability, app.state)


async def _refused(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """A refusal in the one error body, both languages filled in."""
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    if code is not None:
        assert error["code"] == code, error
    assert error["message"] and error["message_zh"] and error["message"] != error["message_zh"]
    return error


def _served_500(client: Any) -> float:
    registry = client.app[RUNTIME].metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "witness_http_requests"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("status") == "500"
    )


# ── item 4 and 6: JSON ───────────────────────────────────────────────────────────────

DEEP = "[" * 5000 + "]" * 5000
HUGE_INT = '{"phone": "13800138000", "n": ' + "9" * 5000 + "}"
LONG_INT = '{"phone": "13800138000", "n": ' + "9" * 30 + "}"
NESTED_40 = '{"phone": "13800138000", "n": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
NON_FINITE = [
    '{"phone": "13800138000", "n": NaN}',
    '{"phone": "13800138000", "n": Infinity}',
    '{"phone": "13800138000", "n": -Infinity}',
    '{"phone": "13800138000", "n": 1e999}',
]


@pytest.mark.parametrize("body", [DEEP, HUGE_INT, LONG_INT, NESTED_40, *NON_FINITE])
async def test_json_too_deep_too_long_or_not_finite_is_json_invalid(client: Any, body: str) -> None:
    before = await _rows(client)
    # A public endpoint, an investor's write, staff's write: one reader behind them all.
    resp = await client.post(f"{API}/otp", data=body, headers=JSON)
    await _refused(resp, 400, "json_invalid")
    investor, _ = await sign_in(client)
    after_sign_in = await _rows(client)
    resp = await client.put(
        f"{API}/application/identity", data=body, headers={**JSON, **investor._h()}
    )
    await _refused(resp, 400, "json_invalid")
    assert await _rows(client) == after_sign_in
    assert after_sign_in[0] == before[0] + 1  # signing in made the one application


async def test_json_strings_that_cannot_be_stored_are_refused_naming_the_field(
    client: Any,
) -> None:
    investor, _ = await sign_in(client)
    assert (await investor.put("/application/identity", ZHANG_SAN)).status == 200
    rows, identity = await _rows(client), await _identity(client)
    # json.dumps escapes them (\ud800) as a client's encoder would.
    for field, text in (("address", "北京\ud800"), ("name", "张\udfff三"), ("email", "a\x00b")):
        resp = await investor.put("/application/identity", {**ZHANG_SAN, field: text})
        error = await _refused(resp, 400)
        assert error["details"]["field"] == field
    # Nested, and in a key.
    answers = '{"answers": {"q1": ["\\ud800"]}}'
    resp = await client.put(
        f"{API}/application/suitability", data=answers, headers={**JSON, **investor._h()}
    )
    assert (await _refused(resp, 400))["details"]["field"] == "answers.q1[0]"
    resp = await client.post(f"{API}/otp", data='{"\\ud800": 1}', headers=JSON)
    await _refused(resp, 400)
    assert await _rows(client) == rows and await _identity(client) == identity


# ── item 4: multipart and form bodies ────────────────────────────────────────────────

_PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nJPEG\r\n'
MALFORMED_MULTIPART = {
    "no boundary": ("multipart/form-data", _PART + b"--x--\r\n"),
    "wrong boundary": ("multipart/form-data; boundary=y", _PART + b"--x--\r\n"),
    "boundary too long": (f"multipart/form-data; boundary={'b' * 100}", _PART),
    # A field, not a file: aiohttp leaves a file part's spool file to the garbage
    # collector when the body ends early (a ResourceWarning, which tests make an error).
    "unterminated": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\nabc',
    ),
    "empty": ("multipart/form-data; boundary=x", b""),
    "unnamed part": (
        "multipart/form-data; boundary=x",
        b"--x\r\nContent-Disposition: form-data\r\n\r\nJPEG\r\n--x--\r\n",
    ),
    "bad part header": (
        "multipart/form-data; boundary=x",
        b"--x\r\nnot a header\r\n\r\nJPEG\r\n--x--\r\n",
    ),
    "nested multipart": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="file"\r\n'
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\nq\r\n--z--\r\n--x--\r\n",
    ),
    "invalid utf-8 field": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n\xff\xfe\r\n--x--\r\n',
    ),
    "unknown charset": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n'
        b"Content-Type: text/plain; charset=bogus\r\n\r\nabc\r\n--x--\r\n",
    ),
    "surrogate by utf-7": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n'
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2AA-\r\n--x--\r\n",
    ),
}
MALFORMED_URLENCODED = {
    "invalid utf-8": ("application/x-www-form-urlencoded", b"username=\xff\xfe&password=x"),
    "unknown charset": ("application/x-www-form-urlencoded; charset=bogus", b"username=a"),
    "nul": ("application/x-www-form-urlencoded", b"username=a%00b&password=x&csrf_token=t"),
}

# Well-formed bodies whose text cannot be stored: refused naming the field.
UNSTORABLE = frozenset({"surrogate by utf-7", "nul"})


def _code(case: str) -> str:
    return "field_invalid" if case in UNSTORABLE else "form_invalid"


@pytest.mark.parametrize("case", sorted(MALFORMED_MULTIPART))
async def test_malformed_multipart_upload_is_400_and_stores_nothing(client: Any, case: str) -> None:
    investor, _ = await sign_in(client)
    assert (await investor.upload("id_front", jpeg())).status == 200
    before = await _rows(client)
    ctype, body = MALFORMED_MULTIPART[case]
    resp = await client.put(
        f"{API}/application/documents/id_back",
        data=body,
        headers={**investor._h(), "Content-Type": ctype},
    )
    await _refused(resp, 400, _code(case))
    assert await _rows(client) == before


async def test_a_part_too_large_is_413_in_both_languages(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await aiohttp_client(
        create_app(make_config(tmp_path, db_url, server={"max_body_mb": 1}))
    )
    investor, _ = await sign_in(client)
    before = await _rows(client)
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(b"\xff" * (1024 * 1024 + 10)), filename="a.jpg")
    resp = await client.put(
        f"{API}/application/documents/id_front", data=form, headers=investor._h()
    )
    await _refused(resp, 413, "too_large")
    resp = await client.put(
        f"{API}/application/documents/id_front",
        data=io.BytesIO(b"\xff" * (1024 * 1024 + 10)),
        headers={**investor._h(), "Content-Type": "image/jpeg"},
    )
    await _refused(resp, 413, "too_large")
    assert await _rows(client) == before


@pytest.mark.parametrize(
    "case",
    [f"multipart {name}" for name in sorted(MALFORMED_MULTIPART)]
    + [f"urlencoded {name}" for name in sorted(MALFORMED_URLENCODED)],
)
async def test_malformed_login_form_is_400_not_500(client: Any, case: str) -> None:
    kind, _, name = case.partition(" ")
    ctype, body = (MALFORMED_MULTIPART if kind == "multipart" else MALFORMED_URLENCODED)[name]
    audit = (await _rows(client))[2]
    for accept in ("text/html", "application/json"):
        resp = await client.post(
            "/staff/login", data=body, headers={"Content-Type": ctype, "Accept": accept}
        )
        assert resp.status == 400, (accept, await resp.text())
        if accept == "application/json":
            await _refused(resp, 400, _code(name))
        else:
            assert "表单" in (page := await resp.text()) or "无法保存" in page
    assert (await _rows(client))[2] == audit


@pytest.mark.parametrize("case", sorted(MALFORMED_MULTIPART))
async def test_malformed_callback_audio_form_is_400(client: Any, case: str) -> None:
    await add_staff(client, "cb.wu", {Role.CALLBACK})
    assert (await login(client, "cb.wu")).status == 302
    ctype, body = MALFORMED_MULTIPART[case]
    audit = (await _rows(client))[2]
    # Without the header the CSRF check reads the form; with it, the handler does.
    token = csrf_from(await (await client.get("/staff/callbacks")).text())
    for headers in ({}, {"X-CSRF-Token": token}):
        resp = await client.post(
            f"/staff/callbacks/{'a' * 32}",
            data=body,
            headers={"Content-Type": ctype, "Accept": "application/json", **headers},
            allow_redirects=False,
        )
        await _refused(resp, 400, _code(case))
    assert (await _rows(client))[2] == audit


# ── item 4: query parameters, static paths ───────────────────────────────────────────


async def _auditor(client: Any) -> None:
    await add_staff(client, "au.li", {Role.AUDITOR})
    assert (await login(client, "au.li")).status == 302


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("witness=99999999999999999999", "witness"),
        ("witness=2147483648", "witness"),
        ("witness=-1", "witness"),
        ("limit=99999999999999999999", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("limit=1_0", "limit"),  # int() would read 10
        ("limit=%D9%A1", "limit"),  # Arabic-Indic one: int() would read 1
        ("limit=%201", "limit"),
        ("application=a%00b", "application"),
        ("cursor=" + "c" * 5000, "cursor"),
    ],
)
async def test_query_parameters_are_bounded_and_named(
    client: Any, query: str, parameter: str
) -> None:
    await _auditor(client)
    resp = await client.get(f"/api/v1/sessions?{query}")
    error = await _refused(resp, 400)
    assert error["details"]["field"] == parameter
    good = await client.get("/api/v1/sessions?witness=2147483647&limit=200")
    assert good.status == 200


async def test_overlong_static_path_is_404(client: Any) -> None:
    resp = await client.get("/static/" + "a" * 5000, headers={"Accept": "application/json"})
    await _refused(resp, 404)
    resp = await client.get("/static/" + "/".join(["b" * 200] * 30))
    assert resp.status == 404


# ── item 9: slow and vanishing clients ───────────────────────────────────────────────


async def _raw(client: Any, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def test_a_trickled_body_is_cut_off_with_408(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    config = make_config(tmp_path, db_url, server={"body_read_timeout_seconds": 1})
    client = await aiohttp_client(create_app(config))
    head = (
        f"POST {API}/otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{"
    ).encode()
    reader, writer = await _raw(client, head)
    started = asyncio.get_running_loop().time()

    async def trickle() -> None:
        for _ in range(20):
            await asyncio.sleep(0.3)
            writer.write(b" ")
            await writer.drain()

    sender = asyncio.create_task(trickle())
    answer: bytes | None = None
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    except ConnectionResetError:
        # The trickle's next byte can meet the closed socket before the 408 is read: the
        # cut-off happened, its text was lost to the reset.
        pass
    finally:
        sender.cancel()
        writer.close()
    # Cut off at ~1 s; without the cut-off the read would wait out its 10 s.
    assert asyncio.get_running_loop().time() - started < 8
    if answer is not None:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"body_timeout"' in answer and b"Connection: close" in answer
    assert _served_500(client) == 0


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_a_client_gone_mid_body_is_logged_as_such_not_as_a_500(
    config: Any, caplog: pytest.LogCaptureFixture, handler_cancellation: bool
) -> None:
    """Served as in production (aiohttp's default: the read fails with a reset) and as
    aiohttp's test server does (the handler is cancelled)."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    head = (
        f"POST {API}/otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"phone": '
    ).encode()
    registry = app[RUNTIME].metrics.registry

    def counted() -> dict[str, float]:
        return {
            sample.labels["status"]: sample.value
            for metric in registry.collect()
            if metric.name == "witness_http_requests"
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    try:
        with caplog.at_level(logging.INFO):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await writer.wait_closed()
            for _ in range(50):
                if counted():
                    break
                await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    assert counted() == {"499": 1}
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    gone = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.WARNING
