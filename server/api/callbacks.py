"""The callback worklist and outcomes (A8, A17.6), and retrying an account opening the
CSDC system refused or could not take (A9). Staff JSON API; writes need the CSRF header."""

from __future__ import annotations

from aiohttp import web

from server.api.schemas import CallbackRecord
from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.json_body import read_model
from server.http.keys import RUNTIME
from server.http.streaming import path_id

routes = web.RouteTableDef()


@routes.get("/callbacks")
@allow(Role.CALLBACK)
async def worklist(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    return web.json_response(
        {"order": rt.aftercare.order.value, "items": await rt.aftercare.worklist()}
    )


@routes.post("/callbacks/{id}")
@allow(Role.CALLBACK)
async def record(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    data = await read_model(request, CallbackRecord)
    body = await rt.aftercare.record(
        staff_id=current_staff(request).id,
        application_id=path_id(request),
        outcome=data.outcome.value,
        notes=data.notes,
    )
    return web.json_response(body)


@routes.post("/accounts/{id}/open")
@allow(Role.CALLBACK, Role.ADMIN)
async def open_account(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await rt.aftercare.open_account(
        path_id(request), actor=f"staff:{current_staff(request).id}"
    )
    return web.json_response(body)


@routes.post("/services/{id}/carry-out")
@allow(Role.CALLBACK, Role.ADMIN)
async def carry_out(request: web.Request) -> web.Response:
    """A20–A22: retry a holder's approved service the account system could not take."""
    rt = request.config_dict[RUNTIME]
    body = await rt.aftercare.carry_out(
        path_id(request), actor=f"staff:{current_staff(request).id}"
    )
    return web.json_response(body)
