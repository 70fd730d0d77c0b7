"""No log line carries a query string or the bytes of a refused request (issue 15 item 8):
aiohttp's own error log for an over-long URL or header quoted them (a phone number was
seen)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from server.app import create_app
from server.config import Config
from server.logsetup import scrub, setup_logging

PHONE = "13800138000"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await reader.read(200)
    writer.close()
    return head


async def test_refused_requests_leave_no_personal_data_in_the_log(
    capsys: pytest.CaptureFixture[str], aiohttp_server: Any, config: Config, restore_logging: None
) -> None:
    setup_logging("INFO", "json")  # here: its handler writes to this phase's captured stderr
    server = await aiohttp_server(create_app(config))
    long_url = f"GET /open?phone={PHONE}&pad=".encode() + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"
    assert (await _raw(server.port, long_url)).startswith(b"HTTP/1.0 400")
    long_header = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: witness_investor=" + b"t" * 9000 + b"\r\n\r\n"
    )
    assert (await _raw(server.port, long_header)).startswith(b"HTTP/1.0 400")
    await asyncio.sleep(0.1)
    err = capsys.readouterr().err
    assert "bad request refused by the HTTP parser: LineTooLong" in err
    assert PHONE not in err
    assert "tttttttt" not in err


def test_scrub_removes_any_query_string() -> None:
    assert scrub(f"fetching /api/v1/x?phone={PHONE}&a=1 failed") == (
        "fetching /api/v1/x?[query removed] failed"
    )
    assert scrub(f"b'/x?phone={PHONE}aaaa'") == "b'/x?[query removed]'"
    assert scrub("is this a question? yes") == "is this a question? yes"
