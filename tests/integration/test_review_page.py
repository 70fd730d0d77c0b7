"""The review page shows personal data: only a session waiting for a reviewer, or the
reviewer's own, is shown, and every view is audited (A25; issue 15 item 7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import AuditEntry, Staff
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
