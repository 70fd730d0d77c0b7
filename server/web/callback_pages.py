"""The callback worklist page (A8, A17.6) for staff of role ``callback``: who to call, how
many attempts so far, and a form to record each call's outcome."""

from __future__ import annotations

from aiohttp import web

from server.domain.errors import InvalidInput
from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.bodies import read_form
from server.http.keys import RUNTIME
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/staff/callbacks")
@allow(Role.CALLBACK)
async def worklist(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return render(
        "callbacks.html",
        request,
        {
            "items": await rt.aftercare.worklist(),
            "order": rt.aftercare.order.value,
            "done": request.query.get("done", ""),
        },
    )


@routes.post("/staff/callbacks/{application_id}")
@allow(Role.CALLBACK)
async def record(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    form = await read_form(request)
    app_id = request.match_info["application_id"]
    if len(app_id) != 32 or not app_id.isalnum():
        raise InvalidInput("bad_id", "Unknown application.", "未知的申请。")
    upload = form.get("audio")
    audio = upload.file.read() if isinstance(upload, web.FileField) else None
    result = await rt.aftercare.record(
        staff_id=current_staff(request).id,
        application_id=app_id,
        outcome=str(form.get("outcome", "")),
        notes=str(form.get("notes", "")),
        audio=audio or None,
        files_root=rt.config.recordings_path,
    )
    raise web.HTTPSeeOther(f"/staff/callbacks?done={result['state']}")


@routes.post("/staff/callbacks/{application_id}/carry-out")
@allow(Role.CALLBACK)
async def carry_out(request: web.Request) -> web.StreamResponse:
    """A20–A22: retry a service the account system could not take."""
    rt = request.app[RUNTIME]
    await read_form(request)  # the CSRF token travels in the form
    app_id = request.match_info["application_id"]
    if len(app_id) != 32 or not app_id.isalnum():
        raise InvalidInput("bad_id", "Unknown application.", "未知的申请。")
    result = await rt.aftercare.carry_out(app_id, actor=f"staff:{current_staff(request).id}")
    raise web.HTTPSeeOther(f"/staff/callbacks?done={result['state']}")
