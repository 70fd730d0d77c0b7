"""Request bodies read at the edge, for pages and API alike: raw bytes and forms
(urlencoded or multipart), each within the body read deadline and the size limit, and
every malformed body a 400 in both languages rather than a library's exception.

aiohttp has no read timeout of its own for bodies (``keepalive_timeout`` is for the idle
time between requests, ``lingering_time`` for a body nobody read), so the deadline is
kept here: ``server.body_read_timeout_seconds`` for the whole body, then 408.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from server.domain.errors import InvalidInput
from server.http.errors import EdgeRefusal
from server.http.keys import RUNTIME

# What PostgreSQL text and UTF-8 (logs, files) cannot hold: NUL and lone surrogates
# (which JSON's \ud800 and some charsets, e.g. utf-7, can produce).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Longest field name quoted back in a refusal.
_NAME_SHOWN = 100

FormValue = str | bytes | bytearray | web.FileField


def storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def shown_name(name: str) -> str:
    """A field's name as it can be quoted back (it may itself be what was refused)."""
    return _UNSTORABLE.sub("\ufffd", name)[:_NAME_SHOWN]


def unstorable_field(name: str) -> InvalidInput:
    field = shown_name(name)
    return InvalidInput(
        "field_invalid",
        f"'{field}': contains a character that cannot be stored (NUL or a lone surrogate).",
        f"“{field}”含有无法保存的字符。",
        details={"field": field},
    )


def too_large(request: web.Request) -> EdgeRefusal:
    limit_mb = request.client_max_size / (1024 * 1024)
    return EdgeRefusal(
        413,
        "too_large",
        f"The request body is larger than {limit_mb:g} MB.",
        f"请求内容超过 {limit_mb:g} MB。",
    )


def form_invalid() -> InvalidInput:
    return InvalidInput("form_invalid", "The form data is malformed.", "表单数据格式错误。")


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Reading inside this block ends with 408 once the configured time has passed."""
    seconds = request.config_dict[RUNTIME].config.server.body_read_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise EdgeRefusal(
            408,
            "body_timeout",
            f"The request body did not arrive within {seconds:g} s.",
            f"请求内容未能在 {seconds:g} 秒内传完，请检查网络后重试。",
        ) from None


async def read_bytes(request: web.Request) -> bytes:
    """The whole body, within the deadline and the size limit."""
    try:
        async with body_deadline(request):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request) from None


async def read_form(request: web.Request) -> MultiDictProxy[FormValue]:
    """A form post's fields (urlencoded or multipart; files spooled by aiohttp), read once
    (aiohttp keeps it for later calls). Malformed multipart, undecodable text and
    unstorable characters answer 400 ``form_invalid`` or name the field."""
    try:
        async with body_deadline(request):
            form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request) from None
    # ValueError: no/wrong/overlong boundary, unterminated body, an unnamed or nested part,
    # undecodable text (UnicodeDecodeError); LookupError: an unknown charset;
    # HttpProcessingError: a part's malformed headers.
    except (ValueError, LookupError, HttpProcessingError):
        raise form_invalid() from None
    for name, value in form.items():
        if not storable(name) or (isinstance(value, str) and not storable(value)):
            raise unstorable_field(name)
    return form
