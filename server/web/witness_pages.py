"""The witness desk: go ready, take offers, hold the session (A7, A17.3).

The page is a shell; static/witness/console.js drives /ws/witness and the session socket.
"""

from __future__ import annotations

from aiohttp import web

from server.audit import append_audit
from server.domain.errors import NotFound
from server.domain.script import FAIL_REASONS
from server.domain.staff import Role
from server.services import staff as staff_service
from server.services.intake import steps as intake
from server.store.models import Still, WitnessSession
from server.web.access import allow, current_staff
from server.web.keys import RUNTIME
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
    async with rt.db.begin() as session:
        me = await staff_service.get_staff_by_username(session=session, username=current.username)
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


_DOC_KINDS = frozenset({"id_front", "id_back", "frontal_photo"})


async def _own_session(request: web.Request) -> WitnessSession:
    """The session in the path, if the caller is its witness and it is still open."""
    rt = request.app[RUNTIME]
    me = current_staff(request)
    async with rt.db.begin() as session:
        ws = await session.get(WitnessSession, request.match_info["session_id"])
    if ws is None or ws.witness_id != me.id or ws.state not in ("placed", "live"):
        # Same answer for "not yours" and "no such session": no existence leak.
        raise NotFound("session_not_found", "Session not found.", "未找到该见证会话。")
    return ws


@routes.get("/staff/witness/sessions/{session_id}/documents/{kind}")
@allow(Role.WITNESS)
async def session_document(request: web.Request) -> web.StreamResponse:
    """The investor's ID images and intake photo, beside the live video (A17.3)."""
    rt = request.app[RUNTIME]
    kind = request.match_info["kind"]
    if kind not in _DOC_KINDS:
        raise NotFound("document_not_found", "No such document.", "没有该证件影像。")
    ws = await _own_session(request)
    me = current_staff(request)
    async with rt.db.begin() as session:
        docs = await intake.active_documents(session, ws.application_id)
        doc = next((d for d in docs if d.kind == kind), None)
        if doc is None:
            raise NotFound("document_not_found", "No such document.", "没有该证件影像。")
        # A25: every read of personal data by staff is on the record.
        await append_audit(
            session,
            actor=f"staff:{me.id}",
            action="document.viewed",
            subject_type="document",
            subject_id=doc.id,
            details={"session": ws.id, "kind": kind},
        )
    return web.FileResponse(
        rt.config.recordings_path / doc.path,
        headers={"Content-Type": doc.content_type, "Cache-Control": "private, no-store"},
    )


@routes.get("/staff/witness/sessions/{session_id}/stills/{still_id}")
@allow(Role.WITNESS)
async def session_still(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    ws = await _own_session(request)
    async with rt.db.begin() as session:
        still = await session.get(Still, request.match_info["still_id"])
    if still is None or still.session_id != ws.id:
        raise NotFound("still_not_found", "No such photo.", "没有该照片。")
    async with rt.db.begin() as session:
        await append_audit(
            session,
            actor=f"staff:{current_staff(request).id}",
            action="still.viewed",
            subject_type="still",
            subject_id=still.id,
            details={"session": ws.id},
        )
    return web.FileResponse(
        rt.config.recordings_path / still.path,
        headers={"Content-Type": still.content_type, "Cache-Control": "private, no-store"},
    )
