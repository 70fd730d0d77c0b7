"""Admin console: the staff register with witness eligibility (A7, A24)."""

from __future__ import annotations

from aiohttp import web

from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.bodies import read_form
from server.http.keys import RUNTIME
from server.services import staff as staff_service
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/staff/admin/staff")
@allow(Role.ADMIN)
async def staff_register(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    async with rt.db.begin() as tx:
        people = await staff_service.list_staff(tx=tx)
        rows = [
            {
                "person": p,
                "problems": staff_service.witness_problems(p) if "witness" in p.role_set else None,
            }
            for p in people
        ]
    return render("admin_staff.html", request, {"rows": rows})


@routes.post("/staff/admin/staff/{username}/active")
@allow(Role.ADMIN)
async def set_active(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    form = await read_form(request)
    active = str(form.get("active", "")) == "1"
    current = current_staff(request)
    async with rt.db.begin() as tx:
        await staff_service.set_staff_active(
            tx=tx,
            username=request.match_info["username"],
            active=active,
            actor=current.username,
        )
    raise web.HTTPSeeOther("/staff/admin/staff")


@routes.get("/staff/admin/notifications")
@allow(Role.ADMIN)
async def notifications(request: web.Request) -> web.Response:
    """Notices sent to investors (A9), newest first; recipients masked. With the sandbox
    gateways this is where testers read what would have been sent."""
    rows = await request.app[RUNTIME].notices.recent()
    return render("admin_notifications.html", request, {"rows": rows})
