"""The alerts inbox on the compliance desk (A23), in real Chromium: a shared-phone alert
raised by the risk hooks shows in the inbox (severity, rule, masked application, state,
deadline); a compliance officer acknowledges it, is refused resolving without a note (the
server's message in both languages), resolves it with one; the database holds the new
state, the note and the audit entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, expect
from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, Staff
from server.store.risk_models import Alert, AlertEvent
from tests.e2e.conftest import artifact
from tests.e2e.pages import LiveApp, Watch, url
from tests.helpers import PASSWORD, add_staff

NOTE = "两笔申请为同一家庭成员，已电话核实。Same family, confirmed by phone."


def _beijing(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(ZoneInfo("Asia/Shanghai"))


async def _shared_phone_alert(rt: Any) -> tuple[Alert, list[str]]:
    """Two applications behind one phone, seen by the hooks: RiskWatch raises the alert."""
    ids = []
    async with rt.db.begin() as tx:
        for _ in range(2):
            app = Application(state="submitted", phone_hash="e" * 64, phone_enc=b"x")
            tx.add(app)
            await tx.flush()
            ids.append(app.id)
    for app_id in ids:
        await rt.risk.saw_phone(app_id)
    raised = await rt.risk.after_identity_check(ids[1])
    (alert,) = [a for a in raised if a.rule_id == "shared_phone"]
    return alert, ids


async def test_alert_acknowledged_and_resolved_in_the_compliance_desk(
    browser: Browser, live_server: Any
) -> None:
    rt = live_server.app[RUNTIME]
    await add_staff(LiveApp(live_server.app), "comp.qian", {Role.COMPLIANCE})  # type: ignore[arg-type]
    alert, app_ids = await _shared_phone_alert(rt)

    context = await browser.new_context(
        viewport={"width": 1280, "height": 720}, timezone_id="Asia/Shanghai"
    )
    officer = await context.new_page()
    seen = Watch(officer)
    await officer.goto(url(live_server, "/staff/login"))
    await officer.fill("#username", "comp.qian")
    await officer.fill("#password", PASSWORD)
    await officer.click("button[type=submit]")
    await expect(officer).to_have_url(url(live_server, "/staff/"))
    await officer.goto(url(live_server, "/staff/compliance"))

    row = officer.locator(f'#alerts-list tr[data-alert="{alert.id}"]')
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("高")
    await expect(row).to_contain_text("shared_phone")
    await expect(row).to_contain_text("待处理")
    await expect(row).to_contain_text("Open")
    await expect(row).to_contain_text("未认领")
    masked = f"{app_ids[0][:4]}…{app_ids[0][-4:]}"
    await expect(row).to_contain_text(masked)
    assert app_ids[0] not in await row.inner_text()
    due = _beijing(alert.due_at)  # shown in the browser's time zone
    await expect(row.locator("time")).to_have_text(due.strftime("%Y/%m/%d %H:%M"))
    await expect(officer.locator("#alerts-state")).to_be_enabled()
    await officer.locator("#alerts-desk").scroll_into_view_if_needed()
    await officer.screenshot(path=artifact("compliance-alerts-inbox.png"))

    # The filter: none resolved yet.
    await officer.select_option("#alerts-state", "resolved")
    await expect(officer.locator("#alerts-empty")).to_be_visible()
    await officer.select_option("#alerts-state", "")
    await expect(row).to_have_count(1)

    # Keyboard: the row's details button opens the alert with its history.
    await row.locator("button.open-alert").focus()
    await officer.keyboard.press("Enter")
    detail = officer.locator("#alert-detail")
    await expect(detail).to_be_visible()
    await expect(detail).to_be_focused()
    await expect(detail.locator("ol.events li")).to_have_count(1)
    await expect(detail.locator("ol.events")).to_contain_text("系统提出")
    raised = _beijing(alert.created_at)
    await expect(detail.locator("ol.events li time")).to_have_text(
        raised.strftime("%Y/%m/%d %H:%M")
    )

    await detail.locator("button.acknowledge").click()
    await expect(detail).to_have_attribute("data-state", "acknowledged")
    await expect(row).to_contain_text("已认领")
    await expect(row).to_contain_text("员工 #")

    await detail.locator("button.resolve").click()  # no note: the server refuses
    refusal = detail.locator(".action-error")
    await expect(refusal).to_be_visible()
    await expect(refusal).to_contain_text("请填写说明")
    await expect(refusal).to_contain_text("needs a note")
    await expect(detail).to_have_attribute("data-state", "acknowledged")
    await officer.screenshot(path=artifact("compliance-alerts-refused.png"))

    await detail.locator("textarea").fill(NOTE)
    await detail.locator("button.resolve").click()
    await expect(detail).to_have_attribute("data-state", "resolved")
    await expect(detail.locator("ol.events li")).to_have_count(3)
    await expect(detail.locator("ol.events")).to_contain_text(NOTE)
    await expect(detail.locator("button.reopen")).to_be_visible()
    await expect(row).to_contain_text("已解决")
    await officer.screenshot(path=artifact("compliance-alerts-resolved.png"), full_page=True)

    async with rt.db.begin() as tx:
        staff_id = await tx.scalar(select(Staff.id).where(Staff.username == "comp.qian"))
        stored = await tx.get(Alert, alert.id)
        events = (
            await tx.scalars(
                select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.id)
            )
        ).all()
        audit = (
            await tx.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject_type == "alert", AuditEntry.subject_id == alert.id)
                .order_by(AuditEntry.seq)
            )
        ).all()
    assert stored is not None and stored.state == "resolved" and stored.owner_id == staff_id
    assert [(e.event, e.actor, e.note) for e in events] == [
        ("raised", "system", None),
        ("acknowledge", f"staff:{staff_id}", None),
        ("resolve", f"staff:{staff_id}", NOTE),
    ]
    assert [a.action for a in audit] == ["alert.raised", "alert.acknowledge", "alert.resolve"]
    assert audit[-1].actor == f"staff:{staff_id}"
    assert audit[-1].details == {"from": "acknowledged", "to": "resolved", "note": True}
    seen.assert_clean()
