"""Investor-facing pages (the intake flow itself arrives with the intake issue)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from server.web.access import public

routes = web.RouteTableDef()


@routes.get("/")
@public
@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, object]:
    return {}
