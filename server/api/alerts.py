"""Risk alerts (A23) over JSON.

``/compliance/alerts``: the compliance desk (staff of role compliance; writes carry the
CSRF header): the inbox by deadline, one alert with its history, and its actions.
``/alerts``: the read API for the agency's own risk system (a Bearer API token with
``alerts:read``, or a compliance or auditor session), every call audited by the gate.
"""

from __future__ import annotations

from aiohttp import web

from server.api.schemas import AlertAction
from server.domain.staff import Role
from server.http.access import alerts_api, allow, current_staff
from server.http.json_body import read_model
from server.http.keys import RUNTIME
from server.http.query import checked_query
from server.http.streaming import path_id
from server.services.compliance import alert_desk

routes = web.RouteTableDef()


async def _list(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    params = checked_query(request, integers={"limit": (1, alert_desk.MAX_PAGE)})
    limit = params.get("limit") or "100"
    async with rt.db.begin() as tx:
        items = await alert_desk.list_alerts(
            tx, state=params.get("state") or None, limit=int(limit)
        )
    return web.json_response({"items": items})


async def _detail(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    async with rt.db.begin() as tx:
        body = await alert_desk.alert_detail(tx, path_id(request))
    return web.json_response(body)


@routes.get("/compliance/alerts", allow_head=False)
@allow(Role.COMPLIANCE)
async def desk_list(request: web.Request) -> web.Response:
    return await _list(request)


@routes.get("/compliance/alerts/{id}", allow_head=False)
@allow(Role.COMPLIANCE)
async def desk_detail(request: web.Request) -> web.Response:
    return await _detail(request)


@routes.post("/compliance/alerts/{id}/events")
@allow(Role.COMPLIANCE)
async def desk_act(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, AlertAction)
    answer = await rt.alert_desk.act(
        staff_id=current_staff(request).id,
        alert_id=path_id(request),
        event=body.event.value,
        note=body.note,
    )
    return web.json_response(answer)


@routes.get("/alerts", allow_head=False)
@alerts_api
async def read_list(request: web.Request) -> web.Response:
    return await _list(request)


@routes.get("/alerts/{id}", allow_head=False)
@alerts_api
async def read_detail(request: web.Request) -> web.Response:
    return await _detail(request)
