"""AML screening in the flow (A3): with the identity check before queueing, again before
approval; a possible match held for compliance (four eyes), a match refused, an
unavailable check held and retried, never cleared. The investor is told neutrally."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.adapters.screening import SandboxScreening
from server.domain.errors import Conflict
from server.domain.screening import ListEntry, ListKind, ScreeningLists
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, utcnow
from server.store.risk_models import Screening
from tests.intake_flow import ZHANG_SAN
from tests.screening_flow import (
    WANG_WU,
    ZHAO_LIU,
    assert_neutral,
    staff,
    state_of,
    submitted,
)


async def test_clear_identity_queues_as_before(sclient: Any) -> None:
    investor = await submitted(sclient, ZHANG_SAN, "13800138001")
    app = await investor.app()
    assert app["state"] == "identity_verified"
    assert (await investor.post("/application/queue")).status == 200
    async with sclient.app[RUNTIME].db.begin() as tx:
        rows = (await tx.scalars(select(Screening))).all()
    assert [(r.stage, r.result, r.decision) for r in rows] == [("intake", "clear", None)]


async def test_possible_match_is_held_then_cleared_by_compliance(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    investor = await submitted(sclient, WANG_WU, "13800138002")
    app = await investor.app()
    assert app["state"] == "screening_hold" and app["next_step"] == "beyond"
    resp = await investor.post("/application/queue")
    assert resp.status == 409
    body = await resp.json()
    assert body["error"]["code"] == "application_on_hold"
    assert_neutral(body)

    waiting = await rt.screening_desk.pending()
    assert len(waiting) == 1 and waiting[0]["application_id"] == app["id"]
    assert waiting[0]["id_number_masked"].count("*") >= 8
    assert waiting[0]["matches"][0]["list"] == "sanctions"
    officer = await staff(sclient, "comp.zhou", {Role.COMPLIANCE})
    with pytest.raises(Exception, match="reason"):
        await rt.screening_desk.decide(
            screening_id=waiting[0]["id"], staff_id=officer, decision="clear", reason=""
        )
    done = await rt.screening_desk.decide(
        screening_id=waiting[0]["id"],
        staff_id=officer,
        decision="clear",
        reason="Born 1990-01-01 in Shenzhen; the listed WANG Wu is another person.",
    )
    assert done["application_state"] == "identity_verified" and done["decided_by"] == officer
    assert await rt.screening_desk.pending() == []
    assert (await investor.post("/application/queue")).status == 200
    async with rt.db.begin() as tx:
        audit = await tx.scalar(select(AuditEntry).where(AuditEntry.action == "screening.decided"))
    assert audit is not None and audit.actor == f"staff:{officer}"
    assert audit.details["reason"].startswith("Born") and audit.details["decision"] == "cleared"


async def test_possible_match_confirmed_refuses(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    investor = await submitted(sclient, WANG_WU, "13800138003")
    [waiting] = await rt.screening_desk.pending()
    officer = await staff(sclient, "comp.qian", {Role.COMPLIANCE})
    await rt.screening_desk.decide(
        screening_id=waiting["id"], staff_id=officer, decision="confirm", reason="Same person."
    )
    assert (await investor.app())["state"] == "screening_refused"
    resp = await investor.post("/application/queue")
    assert resp.status == 409 or resp.status == 401  # refused: not resumable


async def test_match_refuses_neutrally(sclient: Any) -> None:
    investor = await submitted(sclient, ZHAO_LIU, "13800138004")
    app = await investor.app()
    assert app["state"] == "screening_refused"
    resp = await investor.post("/application/queue")
    assert resp.status == 409
    assert_neutral(await resp.json())
    assert await sclient.app[RUNTIME].screening_desk.pending() == []


async def test_unavailable_is_held_retried_and_never_cleared(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    working = rt.screener.adapter
    down = SandboxScreening(ScreeningLists(()), latency_ms=0, latency_jitter_ms=0, failure_rate=1)
    rt.screener.adapter = down
    investor = await submitted(sclient, ZHANG_SAN, "13800138005")
    app = await investor.app()
    assert app["state"] == "screening_hold"
    # Not on the desk: nobody may clear a check that was not made.
    assert await rt.screening_desk.pending() == []
    async with rt.db.begin() as tx:
        row = await tx.scalar(select(Screening))
        assert row is not None and row.result == "unavailable"
    officer = await staff(sclient, "comp.sun", {Role.COMPLIANCE})
    with pytest.raises(Exception, match="not waiting"):
        await rt.screening_desk.decide(
            screening_id=row.id, staff_id=officer, decision="clear", reason="looks fine"
        )
    # Back-off: not yet due; due later, and still unavailable stays held.
    assert await rt.screener.retry_due(now=utcnow()) == 0
    assert await rt.screener.retry_due(now=utcnow() + timedelta(seconds=31)) == 1
    assert await state_of(sclient, app["id"]) == "screening_hold"
    # Two failures in a row: the next wait is longer.
    assert await rt.screener.retry_due(now=utcnow() + timedelta(seconds=31)) == 0
    # The vendor is back: the next retry clears, and the investor may queue.
    rt.screener.adapter = working
    assert await rt.screener.retry_due(now=utcnow() + timedelta(minutes=3)) == 1
    assert await state_of(sclient, app["id"]) == "identity_verified"
    assert (await investor.post("/application/queue")).status == 200


async def test_unavailable_retried_on_the_investors_next_try(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    working = rt.screener.adapter
    rt.screener.adapter = SandboxScreening(
        ScreeningLists(()), latency_ms=0, latency_jitter_ms=0, failure_rate=1
    )
    investor = await submitted(sclient, ZHANG_SAN, "13800138006")
    resp = await investor.post("/application/queue")
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "application_on_hold"
    rt.screener.adapter = working
    assert (await investor.post("/application/queue")).status == 200


async def test_four_eyes_no_decision_on_ones_own_case(sclient: Any) -> None:
    from server.store.models import Review, WitnessSession

    rt = sclient.app[RUNTIME]
    investor = await submitted(sclient, WANG_WU, "13800138007")
    app = await investor.app()
    both = await staff(sclient, "comp.wit", {Role.COMPLIANCE, Role.WITNESS})
    reviewer = await staff(sclient, "comp.rev", {Role.COMPLIANCE, Role.REVIEWER})
    async with rt.db.begin() as tx:
        ws = WitnessSession(application_id=app["id"], witness_id=both, state="ended")
        tx.add(ws)
        await tx.flush()
        tx.add(Review(application_id=app["id"], session_id=ws.id, reviewer_id=reviewer))
    [waiting] = await rt.screening_desk.pending()
    for staff_id in (both, reviewer):
        with pytest.raises(Exception, match="another compliance officer"):
            await rt.screening_desk.decide(
                screening_id=waiting["id"], staff_id=staff_id, decision="clear", reason="fine"
            )
    assert await state_of(sclient, app["id"]) == "screening_hold"


def listing_zhang_san(kind: ListKind, **entry: str) -> SandboxScreening:
    lists = ScreeningLists((ListEntry(kind=kind, entry_id="T-1", name="ZHANG, San", **entry),))
    return SandboxScreening(lists, latency_ms=0, latency_jitter_ms=0)


async def in_review(client: Any, phone: str) -> str:
    investor = await submitted(client, ZHANG_SAN, phone)
    app_id: str = (await investor.app())["id"]
    async with client.app[RUNTIME].db.begin() as tx:
        app = await tx.get(Application, app_id)
        assert app is not None
        app.state = "in_review"  # the call and the review's claim are other tests' business
    return app_id


async def test_approval_rescreen_holds_then_carries_the_clearance(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    app_id = await in_review(sclient, "13800138008")
    rt.screener.adapter = listing_zhang_san(ListKind.SANCTIONS, birth_date="1949")
    with pytest.raises(Conflict) as held:
        await rt.screener.before_approval(app_id)
    assert held.value.code == "screening_hold"
    assert await state_of(sclient, app_id) == "approval_hold"
    # Trying again while held does not screen again nor put it twice on the desk.
    with pytest.raises(Conflict):
        await rt.screener.before_approval(app_id)
    [waiting] = await rt.screening_desk.pending()
    assert waiting["stage"] == "approval"
    officer = await staff(sclient, "comp.li", {Role.COMPLIANCE})
    await rt.screening_desk.decide(
        screening_id=waiting["id"], staff_id=officer, decision="clear", reason="Other person."
    )
    assert await state_of(sclient, app_id) == "in_review"
    await rt.screener.before_approval(app_id)  # the same entry again: the clearance carries
    async with rt.db.begin() as tx:
        last = (await tx.scalars(select(Screening).order_by(Screening.created_at))).all()[-1]
    assert (last.result, last.decision) == ("possible_match", "carried")


async def test_approval_rescreen_match_refuses(sclient: Any) -> None:
    rt = sclient.app[RUNTIME]
    app_id = await in_review(sclient, "13800138009")
    rt.screener.adapter = listing_zhang_san(ListKind.BLOCKLIST, id_number="11010519491231002X")
    with pytest.raises(Conflict) as refused:
        await rt.screener.before_approval(app_id)
    assert refused.value.code == "screening_refused"
    assert await state_of(sclient, app_id) == "screening_refused"
