"""Every aiohttp AppKey / request key in one place."""

from __future__ import annotations

import weakref

from aiohttp import web

from server.services.intake.investor_auth import CurrentInvestor
from server.services.login_sessions import CurrentStaff
from server.services.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
# Open WebSockets, closed with "going away" when the node shuts down (clients reconnect).
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
CURRENT_STAFF: web.RequestKey[CurrentStaff | None] = web.RequestKey("current_staff")
CURRENT_INVESTOR: web.RequestKey[CurrentInvestor | None] = web.RequestKey("current_investor")
# How the investor authenticated: cookies need CSRF protection, bearer tokens do not.
INVESTOR_VIA_COOKIE = web.RequestKey("investor_via_cookie", bool)
REQUEST_ID = web.RequestKey("request_id", str)
# Set on the original request by the proxy middleware: response signals see that one.
VIA_HTTPS = web.RequestKey("via_https", bool)
# The retrieval API: who called ("token:<id>" / "staff:<id>") and bytes of files served.
API_CALLER = web.RequestKey("api_caller", str)
BYTES_SERVED = web.RequestKey("bytes_served", int)

__all__ = [
    "CURRENT_INVESTOR",
    "CURRENT_STAFF",
    "INVESTOR_VIA_COOKIE",
    "REQUEST_ID",
    "RUNTIME",
    "SOCKETS",
    "CurrentInvestor",
    "CurrentStaff",
]
