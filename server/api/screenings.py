"""The compliance desk's JSON API for AML screening hits (A3). Staff of role
``compliance``; writes need the session's CSRF token (header ``X-CSRF-Token``). The page
``/staff/compliance`` (``static/compliance/screening.js``) drives it."""

from __future__ import annotations

from aiohttp import web

from server.api.schemas import ScreeningDecisionBody
from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.json_body import read_model
from server.http.keys import RUNTIME
from server.http.streaming import path_id

routes = web.RouteTableDef()
_BASE = "/compliance/screenings"


@routes.get(_BASE, allow_head=False)
@allow(Role.COMPLIANCE)
async def waiting(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    return web.json_response({"items": await rt.screening_desk.pending()})


@routes.get(_BASE + "/{id}/raw", allow_head=False)
@allow(Role.COMPLIANCE)
async def raw(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await rt.screening_desk.raw(
        screening_id=path_id(request), staff_id=current_staff(request).id
    )
    return web.json_response(body)


@routes.post(_BASE + "/{id}/decision")
@allow(Role.COMPLIANCE)
async def decision(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    data = await read_model(request, ScreeningDecisionBody)
    body = await rt.screening_desk.decide(
        screening_id=path_id(request),
        staff_id=current_staff(request).id,
        decision=data.decision,
        reason=data.reason,
    )
    return web.json_response(body)
