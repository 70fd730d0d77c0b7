"""Investor-facing pages: the landing page and the intake flow at /open.

The /open page is a shell: its scripts (static/investor/) drive the JSON API in
investor_api.py step by step, exactly as a broker's own app would (A5).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.http.access import public
from server.http.keys import RUNTIME
from server.services.intake.sandbox_help import tester_identities
from server.services.intake.steps import today_in
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/")
@public
async def index(request: web.Request) -> web.Response:
    return render("index.html", request)


@routes.get("/open")
@public
async def open_account(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    config = rt.config
    registry_sandbox = config.identity.provider == "sandbox"
    context: dict[str, Any] = {
        "sms_sandbox": config.sms.provider == "sandbox",
        "registry_sandbox": registry_sandbox,
        "sandbox_identities": (
            tester_identities(today=today_in(config.zone)) if registry_sandbox else []
        ),
        "otp_length": config.intake.otp_length,
        "image_max_bytes": rt.image_limits.max_bytes,
    }
    return render("investor.html", request, context)
