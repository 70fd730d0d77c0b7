"""The review page shows personal data: only a session waiting for a reviewer, or the
reviewer's own, is shown, and every view is audited (A25; issue 15 item 7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import AuditEntry, NetworkCheck, Recording, Staff, WitnessSession
from tests.call_flow import as_staff, witnessed
from tests.helpers import add_staff


async def _views_by(client: Any, username: str) -> int:
    async with client.app[RUNTIME].db.begin() as tx:
        staff_id = await tx.scalar(select(Staff.id).where(Staff.username == username))
        rows = await tx.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "review_page.viewed",
                AuditEntry.actor == f"staff:{staff_id}",
            )
        )
        return len(rows.all())


async def test_another_reviewers_case_is_not_shown_and_views_are_audited(mclient: Any) -> None:
    sid = await witnessed(mclient)
    await add_staff(mclient, "rev.li", {Role.REVIEWER})
    await add_staff(mclient, "rev.zhao", {Role.REVIEWER})

    h = await as_staff(mclient, "rev.li")
    page = await mclient.get(f"/staff/review/{sid}", headers={"Accept": "text/html"})
    assert page.status == 200
    assert await _views_by(mclient, "rev.li") == 1
    claim = await mclient.post(f"/api/v1/review/sessions/{sid}/claim", headers=h)
    assert claim.status == 200

    await as_staff(mclient, "rev.zhao")
    page = await mclient.get(f"/staff/review/{sid}", headers={"Accept": "text/html"})
    assert page.status == 404
    assert await _views_by(mclient, "rev.zhao") == 0

    await as_staff(mclient, "rev.li")
    page = await mclient.get(f"/staff/review/{sid}", headers={"Accept": "text/html"})
    assert page.status == 200
    assert await _views_by(mclient, "rev.li") == 2


async def test_damaged_stretches_are_marked_for_the_reviewer(mclient: Any) -> None:
    """Issue 16: the reviewer sees where loss damaged a recording, and can jump there."""
    sid = await witnessed(mclient)
    stretch = {"start_ms": 1200, "length_ms": 500, "kind": "video", "reason": "packets_lost"}
    async with mclient.app[RUNTIME].db.begin() as tx:
        recs = (
            await tx.scalars(
                select(Recording).where(Recording.session_id == sid).order_by(Recording.participant)
            )
        ).all()
        investor, witness = recs
        assert investor.damage is not None and witness.damage is not None  # measured
        investor.damage, investor.damaged_ms = [stretch], 500
        witness.damage = []
        start = investor.start_ms
    await add_staff(mclient, "rev.wu", {Role.REVIEWER})
    await as_staff(mclient, "rev.wu")
    page = await mclient.get(f"/staff/review/{sid}", headers={"Accept": "text/html"})
    html = await page.text()
    assert page.status == 200
    assert "受损片段 1 处，共 0.5 秒" in html and "1 damaged stretch, 0.5 s" in html
    assert html.count(f'data-seek="{start + 1200}"') == 2  # under the player and on the timeline
    assert "packets lost" in html and "无丢包损伤" in html  # the witness's file is clean
    assert "视频受损：丢包后画面不正确" in html and "Audio missing: lost speech" in html
    assert "data-damage='[{" in html


async def test_the_investors_network_check_is_shown_to_the_reviewer(mclient: Any) -> None:
    """Issue 16: the reviewer sees the pre-call check the investor passed (why a call may
    have been poor), the latest one."""
    sid = await witnessed(mclient)
    async with mclient.app[RUNTIME].db.begin() as tx:
        row = await tx.get(WitnessSession, sid)
        assert row is not None
        tx.add(NetworkCheck(application_id=row.application_id, verdict="weak", path="relay",
                            protocol="tls", rtt_ms=640, upstream_kbps=280, camera_ok=True,
                            microphone_ok=False))  # fmt: skip
    await add_staff(mclient, "rev.qian", {Role.REVIEWER})
    await as_staff(mclient, "rev.qian")
    page = await mclient.get(f"/staff/review/{sid}", headers={"Accept": "text/html"})
    html = await page.text()
    assert page.status == 200
    assert "weak · relay/tls · 640 ms · 280 kbit/s" in html
    assert "麦克风异常" in html and "摄像头异常" not in html
