"""Investor-facing pages (the intake flow itself arrives with the intake issue)."""

from __future__ import annotations

from aiohttp import web

from server.web.access import public
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/")
@public
async def index(request: web.Request) -> web.Response:
    return render("index.html", request)
