"""Every aiohttp AppKey / request key in one place."""

from __future__ import annotations

from aiohttp import web

from server.services.login_sessions import CurrentStaff
from server.services.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
CURRENT_STAFF = "witness.current_staff"  # request-scoped: CurrentStaff | None
REQUEST_ID = "witness.request_id"

__all__ = ["CURRENT_STAFF", "REQUEST_ID", "RUNTIME", "CurrentStaff"]
