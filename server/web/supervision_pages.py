"""Supervision statistics (A23) for compliance, admins and auditors: the page, its data
as JSON and a CSV export. Every read of the numbers is audited; the page itself carries
none (its script fetches them)."""

from __future__ import annotations

from aiohttp import web

from server.domain.staff import Role
from server.domain.supervision import Report
from server.http.access import allow, current_staff
from server.http.keys import RUNTIME
from server.http.query import checked_query
from server.services import supervision
from server.web.render import render

routes = web.RouteTableDef()

READERS = (Role.COMPLIANCE, Role.ADMIN, Role.AUDITOR)
# Excel reads a CSV as the local code page unless it starts with UTF-8's byte-order mark.
UTF8_BOM = "\ufeff"


async def _report(request: web.Request, action: str) -> Report:
    params = checked_query(request)
    rt = request.app[RUNTIME]
    return await supervision.supervision_report(
        rt.db,
        staff_id=current_staff(request).id,
        first=params.get("from") or None,
        last=params.get("to") or None,
        zone=rt.config.zone,
        action=action,
    )


@routes.get("/staff/supervision")
@allow(*READERS)
async def page(request: web.Request) -> web.Response:
    return render("supervision.html", request)


@routes.get("/staff/supervision.json")
@allow(*READERS)
async def data(request: web.Request) -> web.Response:
    report = await _report(request, supervision.VIEWED)
    return web.json_response(supervision.report_json(report))


@routes.get("/staff/supervision.csv")
@allow(*READERS)
async def export(request: web.Request) -> web.Response:
    report = await _report(request, supervision.EXPORTED)
    name = f"supervision_{report.first_day.isoformat()}_{report.last_day.isoformat()}.csv"
    return web.Response(
        body=(UTF8_BOM + supervision.report_csv(report)).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
