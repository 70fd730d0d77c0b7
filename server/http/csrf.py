"""Cross-site request checks: the Origin header and the one CSRF token comparison."""

from __future__ import annotations

import secrets

from aiohttp import web

from server.domain.errors import Forbidden
from server.http.bodies import read_form

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def check_origin(request: web.Request) -> None:
    # A cross-site form post carries the attacker's Origin; same-origin requests carry ours.
    origin = request.headers.get("Origin")
    if origin is None:  # non-browser clients; browsers always send Origin on POST
        return
    expected = f"{request.scheme}://{request.host}"
    if origin != expected:
        raise Forbidden("origin_mismatch", "Cross-site request refused.", "拒绝跨站请求。")


def tokens_match(sent: str, expected: str) -> bool:
    # Constant time, and an empty token never matches (a missing cookie must not pass).
    return bool(sent) and bool(expected) and secrets.compare_digest(sent, expected)


async def require_csrf(request: web.Request, expected: str, *, accept_form: bool) -> None:
    """Refuse a write whose token (header, or a form's csrf_token field where the page
    posts plain forms) does not match the session's."""
    sent = request.headers.get("X-CSRF-Token", "")
    if not sent and accept_form and request.content_type in _FORM_TYPES:
        form = await read_form(request)
        sent = str(form.get("csrf_token", ""))
    if not tokens_match(sent, expected):
        raise Forbidden(
            "csrf_failed",
            "Security token missing or wrong; reload the page.",
            "安全令牌无效，请刷新页面后重试。",
        )
