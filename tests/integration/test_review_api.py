"""The reviewer's API (A17.5): four eyes, and approval refused by the server until every
recording was really played (not too fast, tab visible, within real time) and every
document opened."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, Recording, Staff
from tests.call_flow import as_staff, witnessed
from tests.helpers import add_staff


async def test_review_needs_full_playback_and_documents(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid = await witnessed(mclient)
    base = f"/api/v1/review/sessions/{sid}"

    # Four eyes: the session's own witness may not review it, even holding the role.
    async with rt.db.begin() as s:
        witness = await s.scalar(select(Staff).where(Staff.username == "wang.wei"))
        assert witness is not None
        witness.roles = "witness,reviewer"
    h = await as_staff(mclient, "wang.wei")
    resp = await mclient.post(base + "/claim", headers=h)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "four_eyes"

    await add_staff(mclient, "rev.li", {Role.REVIEWER})
    h = await as_staff(mclient, "rev.li")
    assert (await mclient.post(base + "/claim")).status == 403  # no CSRF token
    claimed_before = time.monotonic()  # the server's budget starts after this
    status = await (await mclient.post(base + "/claim", headers=h)).json()
    assert len(status["recordings"]) == 2 and status["approve_problems"]
    async with rt.db.begin() as s:
        assert (await s.scalar(select(Application.state))) == "in_review"

    # Approve now: refused by the server, with what is missing.
    resp = await mclient.post(base + "/decision", json={"decision": "approve"}, headers=h)
    assert resp.status == 409
    problems = (await resp.json())["error"]["details"]["problems"]
    assert any(p.startswith("recording_not_covered:") for p in problems)
    assert "document_not_opened:id_front" in problems

    recs = status["recordings"]
    for rec in recs:
        whole = {"recording_id": rec["id"], "from_ms": 0, "to_ms": rec["duration_ms"]}
        # Too fast, hidden tab, or more than real time allows: none of it counts.
        for bad in ({"rate": 4.0, "visible": True}, {"rate": 1.0, "visible": False}):
            got = await mclient.post(base + "/playback", json={**whole, **bad}, headers=h)
            assert got.status == 200
        got = await mclient.post(
            base + "/playback", json={**whole, "rate": 1.0, "visible": True}, headers=h
        )
        played = next(r for r in (await got.json())["recordings"] if r["id"] == rec["id"])
        # The budget is real time since the claim × max_rate plus 1.5 s of slack: a
        # recording longer than that (however slow this machine was) must not count.
        elapsed_ms = (time.monotonic() - claimed_before) * 1000
        if rec["duration_ms"] > elapsed_ms * rt.config.review.max_rate + 1500:
            assert played["played"] == [] and not played["complete"]
    # Real time passes (at 2× the recordings need about half their length).
    await asyncio.sleep(max(r["duration_ms"] for r in recs) / 2000 + 0.5)
    for rec in recs:
        got = await mclient.post(
            base + "/playback",
            json={"recording_id": rec["id"], "from_ms": 0, "to_ms": rec["duration_ms"],
                  "rate": 2.0, "visible": True},
            headers=h,
        )  # fmt: skip
        assert got.status == 200
    status = await (await mclient.get(base + "/status")).json()
    assert all(r["complete"] for r in status["recordings"])
    assert all(p.startswith("document_not_opened") for p in status["approve_problems"])

    # The reviewer may stream the recordings of the session they hold; nobody else.
    media = await mclient.get(
        f"/api/v1/review/recordings/{recs[0]['id']}", headers={"Range": "bytes=0-99"}
    )
    assert media.status == 206 and len(await media.read()) == 100

    for item in ("id_front", "id_back", "frontal_photo", "application_data"):
        got = await mclient.post(base + "/opened", json={"item": item}, headers=h)
        assert got.status == 200
    assert (await mclient.post(base + "/opened", json={"item": "../x"}, headers=h)).status == 400
    resp = await mclient.post(base + "/decision", json={"decision": "approve"}, headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["application_state"] == "approved"
    async with rt.db.begin() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "review.decided"))
        assert entry is not None and entry.details["decision"] == "approve"
        assert set(entry.details["coverage"]["recordings"]) == {r["id"] for r in recs}

    # Another reviewer cannot reach those recordings.
    await add_staff(mclient, "rev.zhou", {Role.REVIEWER})
    await as_staff(mclient, "rev.zhou")
    assert (await mclient.get(f"/api/v1/review/recordings/{recs[0]['id']}")).status == 404


async def test_reject_needs_a_reason_and_ends_the_application(mclient: Any) -> None:
    sid = await witnessed(mclient)
    base = f"/api/v1/review/sessions/{sid}"
    await add_staff(mclient, "rev.li", {Role.REVIEWER})
    h = await as_staff(mclient, "rev.li")
    unclaimed = {"decision": "reject", "reason_code": "other"}
    resp = await mclient.post(base + "/decision", json=unclaimed, headers=h)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "review_not_claimed"
    await mclient.post(base + "/claim", headers=h)
    resp = await mclient.post(base + "/decision", json={"decision": "reject"}, headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "reason_required"
    resp = await mclient.post(
        base + "/decision", json={"decision": "reject", "reason_code": "identity_doubt"}, headers=h
    )
    assert (await resp.json())["application_state"] == "review_rejected"
    assert (await mclient.post(base + "/claim", headers=h)).status == 409  # nothing left to review
    async with mclient.app[RUNTIME].db.begin() as s:
        assert (await s.scalar(select(Recording.status))) == "complete"
