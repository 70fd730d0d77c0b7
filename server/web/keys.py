"""Every aiohttp AppKey / request key in one place."""

from __future__ import annotations

from aiohttp import web

from server.services.login_sessions import CurrentStaff
from server.services.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
CURRENT_STAFF: web.RequestKey[CurrentStaff | None] = web.RequestKey("current_staff")
REQUEST_ID = web.RequestKey("request_id", str)
# Set on the original request by the proxy middleware: response signals see that one.
VIA_HTTPS = web.RequestKey("via_https", bool)

__all__ = ["CURRENT_STAFF", "REQUEST_ID", "RUNTIME", "CurrentStaff"]
