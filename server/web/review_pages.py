"""The reviewer console (A17.5): a queue of witnessed sessions, oldest first, and one
session's recordings, timeline, documents and data. static/review/review.js drives the
review API (api/review.py), which is what enforces full playback."""

from __future__ import annotations

from aiohttp import web

from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.keys import RUNTIME
from server.services.review import console
from server.services.review.desk import REJECT_REASONS
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/staff/review")
@allow(Role.REVIEWER, Role.WITNESS)
async def review_queue(request: web.Request) -> web.Response:
    staff = current_staff(request)
    items = await console.review_queue(
        request.app[RUNTIME].db, staff_id=staff.id, roles=staff.roles
    )
    return render("review_queue.html", request, {"items": items})


@routes.get("/staff/review/{id}")
@allow(Role.REVIEWER, Role.WITNESS)
async def review_session(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    page = await console.review_page(
        rt.db,
        staff_id=current_staff(request).id,
        session_id=request.match_info["id"],
        protector=rt.protector,
        questionnaire=rt.questionnaire,
        roles=current_staff(request).roles,
    )
    return render("review.html", request, {**page, "reasons": sorted(REJECT_REASONS)})


@routes.get("/staff/review/{id}/documents/{kind}")
@allow(Role.REVIEWER, Role.WITNESS)
async def review_document(request: web.Request) -> web.StreamResponse:
    """An ID image for the reviewer holding the session's open review; audited (A25)."""
    opened = await request.app[RUNTIME].documents.for_reviewer(
        staff_id=current_staff(request).id,
        session_id=request.match_info["id"],
        kind=request.match_info["kind"],
    )
    return web.FileResponse(
        opened.path,
        headers={"Content-Type": opened.content_type, "Cache-Control": "private, no-store"},
    )
