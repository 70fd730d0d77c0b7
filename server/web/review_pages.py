"""The reviewer console (A17.5): a queue of witnessed sessions, oldest first, and one
session's recordings, timeline, documents and data. static/review/review.js drives the
review API (web/review_api.py), which is what enforces full playback."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import or_, select

from server.audit import append_audit
from server.domain.errors import NotFound
from server.domain.staff import Role
from server.services.intake import steps as intake
from server.services.retrieval import queries as retrieval
from server.services.review.desk import REJECT_REASONS
from server.store.models import Application, Review, WitnessSession
from server.web.access import allow, current_staff
from server.web.keys import RUNTIME
from server.web.render import render

routes = web.RouteTableDef()


@routes.get("/staff/review")
@allow(Role.REVIEWER)
async def review_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    me = current_staff(request)
    async with rt.db.begin() as session:
        mine = select(Review.session_id).where(
            Review.reviewer_id == me.id, Review.decision.is_(None)
        )
        rows = (
            await session.execute(
                select(WitnessSession, Application)
                .join(Application, Application.id == WitnessSession.application_id)
                .where(
                    WitnessSession.verdict == "pass",
                    or_(
                        Application.state == "witnessed",
                        (Application.state == "in_review") & WitnessSession.id.in_(mine),
                    ),
                )
                .order_by(WitnessSession.ended_at)
            )
        ).all()
    items = [
        {
            "id": ws.id,
            "ended_at": ws.ended_at,
            "name": app.investor_name,
            "own": ws.witness_id == me.id,
        }
        for ws, app in rows
    ]
    return render("review_queue.html", request, {"items": items})


@routes.get("/staff/review/{id}")
@allow(Role.REVIEWER)
async def review_session(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = request.match_info["id"]
    async with rt.db.begin() as session:
        ws = await session.get(WitnessSession, sid)
        if ws is None or ws.verdict != "pass":
            raise NotFound("not_found", "Not found.", "未找到。")
        detail = await retrieval.session_detail(session, sid, rt.protector)
        app = await session.get(Application, ws.application_id)
        assert app is not None
        form = intake.identity_summary(app, rt.protector) or {}
        suitability = app.suitability or {}
    questions = {q.id: q for q in rt.questionnaire.questions}
    answers = []
    for qid, chosen in (suitability.get("answers") or {}).items():
        question = questions.get(qid)
        if question is None:
            continue  # an older questionnaire version: shown by id below
        texts = [o.text_zh for o in question.options if o.id in chosen]
        answers.append({"question": question.text_zh, "answer": "；".join(texts)})
    return render(
        "review.html",
        request,
        {
            "detail": detail,
            "form": form,
            "suitability": suitability,
            "answers": answers,
            "reasons": sorted(REJECT_REASONS),
        },
    )


@routes.get("/staff/review/{id}/documents/{kind}")
@allow(Role.REVIEWER)
async def review_document(request: web.Request) -> web.StreamResponse:
    """An ID image for the reviewer holding the session's open review; audited (A25)."""
    rt = request.app[RUNTIME]
    me = current_staff(request)
    sid, kind = request.match_info["id"], request.match_info["kind"]
    async with rt.db.begin() as session:
        review = await session.scalar(
            select(Review).where(
                Review.session_id == sid, Review.reviewer_id == me.id, Review.decision.is_(None)
            )
        )
        if review is None or kind not in ("id_front", "id_back", "frontal_photo"):
            raise NotFound("not_found", "Not found.", "未找到。")
        docs = await intake.active_documents(session, review.application_id)
        doc = next((d for d in docs if d.kind == kind), None)
        if doc is None:
            raise NotFound("not_found", "Not found.", "未找到。")
        await append_audit(
            session,
            actor=f"staff:{me.id}",
            action="document.viewed",
            subject_type="document",
            subject_id=doc.id,
            details={"session": sid, "kind": kind, "as": "reviewer"},
        )
    return web.FileResponse(
        rt.config.recordings_path / doc.path,
        headers={"Content-Type": doc.content_type, "Cache-Control": "private, no-store"},
    )
