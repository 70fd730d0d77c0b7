"""The reviewer's JSON API (A17.5), also the witness's review of a one-way recording
(A18.6: the desk checks at the claim which role may take which session). Staff of role
``reviewer`` or ``witness``; writes need the session's
CSRF token (header ``X-CSRF-Token``). The reviewer console (issue 7) drives it: the
player posts playback reports while it plays, the page posts each document it opens,
and approval is refused here until ``status`` shows no ``approve_problems``."""

from __future__ import annotations

from aiohttp import web

from server.api.schemas import Decision, OpenedDocument, PlaybackReport
from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.json_body import read_model
from server.http.keys import RUNTIME
from server.http.streaming import path_id, send_stored

routes = web.RouteTableDef()
_BASE = "/review/sessions/{id}"


@routes.post(_BASE + "/claim")
@allow(Role.REVIEWER, Role.WITNESS)
async def claim(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    staff = current_staff(request)
    body = await rt.review.claim(staff_id=staff.id, session_id=path_id(request), roles=staff.roles)
    return web.json_response(body)


@routes.get(_BASE + "/status")
@allow(Role.REVIEWER, Role.WITNESS)
async def status(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await rt.review.status(staff_id=current_staff(request).id, session_id=path_id(request))
    return web.json_response(body)


@routes.post(_BASE + "/playback")
@allow(Role.REVIEWER, Role.WITNESS)
async def playback(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    span = await read_model(request, PlaybackReport)
    body = await rt.review.report(
        staff_id=current_staff(request).id,
        session_id=path_id(request),
        recording_id=span.recording_id,
        start_ms=span.from_ms,
        end_ms=span.to_ms,
        rate=span.rate,
        visible=span.visible,
    )
    return web.json_response(body)


@routes.post(_BASE + "/opened")
@allow(Role.REVIEWER, Role.WITNESS)
async def opened(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    data = await read_model(request, OpenedDocument)
    body = await rt.review.opened(
        staff_id=current_staff(request).id, session_id=path_id(request), item=data.item
    )
    return web.json_response(body)


@routes.post(_BASE + "/decision")
@allow(Role.REVIEWER, Role.WITNESS)
async def decision(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    data = await read_model(request, Decision)
    body = await rt.review.decide(
        staff_id=current_staff(request).id,
        session_id=path_id(request),
        decision=data.decision,
        reason_code=data.reason_code or None,
        notes=data.notes,
    )
    return web.json_response(body)


@routes.get("/review/recordings/{id}", allow_head=False)
@allow(Role.REVIEWER, Role.WITNESS)
async def recording(request: web.Request) -> web.StreamResponse:
    """A recording for the reviewer who holds its session's open review (Range, ETag)."""
    stored = await request.config_dict[RUNTIME].review.recording_for(
        staff_id=current_staff(request).id, recording_id=path_id(request)
    )
    return await send_stored(request, stored)
