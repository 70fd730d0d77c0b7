"""The compliance desk (A3, A23): ``/staff/compliance``. Screening hits to decide are
listed and decided by ``static/compliance/screening.js`` over ``api/screenings.py``; the
alerts section is its own template (``_compliance_alerts.html``) and script."""

from __future__ import annotations

from aiohttp import web

from server.domain.staff import Role
from server.http.access import allow
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/staff/compliance")
@allow(Role.COMPLIANCE)
async def compliance_desk(request: web.Request) -> web.Response:
    return render("compliance.html", request, {})
