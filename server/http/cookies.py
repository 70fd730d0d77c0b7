"""Cookies both the pages and the API set or read."""

from __future__ import annotations

from aiohttp import web

from server.http.keys import RUNTIME

INVESTOR_COOKIE = "witness_investor"


def cookie_secure(request: web.Request) -> bool:
    mode = request.config_dict[RUNTIME].config.security.cookie_secure
    return mode == "always" or (mode == "auto" and request.secure)


def investor_token(request: web.Request) -> tuple[str, bool]:
    """The investor's session token and whether it came in the cookie (apps send a bearer
    token instead, which browsers never attach on their own)."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:].strip(), False
    return request.cookies.get(INVESTOR_COOKIE, ""), True
