"""The witness desk: go ready, take offers, hold the session (A7, A17.3).

The page is a shell; static/witness/main.js (desk.js, offer.js, session.js, script.js)
drives /ws/witness and the session socket.
"""

from __future__ import annotations

from aiohttp import web

from server.domain.script import FAIL_REASONS
from server.domain.staff import Role
from server.http.access import allow, current_staff
from server.http.keys import RUNTIME
from server.services import staff as staff_service
from server.web.render import render

routes = web.RouteTableDef()

# Eligibility problem codes (server.domain.staff.eligibility_problems), for people.
PROBLEM_LABELS: dict[str, tuple[str, str]] = {
    "not_a_witness": ("您的账户没有见证人员角色", "Your account does not hold the witness role"),
    "staff_disabled": ("您的账户已停用", "Your account is disabled"),
    "no_labour_contract": (
        "未登记与本公司签订的劳动合同",
        "No labour contract with the agency is on record",
    ),
    "training_not_passed": ("未登记见证业务培训合格记录", "No passed witness training on record"),
    "marketing_staff": ("营销人员不得担任见证人员", "Marketing staff may not act as witnesses"),
    "no_licence_number": ("未登记执业编号", "No licence number on record"),
}


def problem_label(code: str) -> dict[str, str]:
    zh, en = PROBLEM_LABELS.get(code, (code, code))
    return {"code": code, "zh": zh, "en": en}


@routes.get("/staff/witness")
@allow(Role.WITNESS)
async def witness_desk(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    current = current_staff(request)
    async with rt.db.begin() as tx:
        me = await staff_service.get_staff_by_username(tx=tx, username=current.username)
        problems = staff_service.witness_problems(me)
    return render(
        "witness.html",
        request,
        {
            "witness_problems": [problem_label(p) for p in problems],
            "problem_labels": {code: problem_label(code) for code in PROBLEM_LABELS},
            "fail_reasons": FAIL_REASONS,
        },
    )


_NO_STORE = {"Cache-Control": "private, no-store"}


@routes.get("/staff/witness/sessions/{session_id}/documents/{kind}")
@allow(Role.WITNESS)
async def session_document(request: web.Request) -> web.StreamResponse:
    """The investor's ID images and intake photo, beside the live video (A17.3)."""
    opened = await request.app[RUNTIME].documents.for_witness(
        staff_id=current_staff(request).id,
        session_id=request.match_info["session_id"],
        kind=request.match_info["kind"],
    )
    return web.FileResponse(opened.path, headers={"Content-Type": opened.content_type, **_NO_STORE})


@routes.get("/staff/witness/sessions/{session_id}/stills/{still_id}")
@allow(Role.WITNESS)
async def session_still(request: web.Request) -> web.StreamResponse:
    opened = await request.app[RUNTIME].documents.still_for_witness(
        staff_id=current_staff(request).id,
        session_id=request.match_info["session_id"],
        still_id=request.match_info["still_id"],
    )
    return web.FileResponse(opened.path, headers={"Content-Type": opened.content_type, **_NO_STORE})
