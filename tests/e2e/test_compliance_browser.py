"""A screening hit held and decided in the compliance desk (A3), in real Chromium: the
investor 王五 (a possible match in the built-in sandbox lists) is told neutrally that
further checks are needed; a compliance officer sees the masked hit, opens the raw answer,
is refused without a reason, clears with one; the investor may then queue."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from server.domain.staff import Role
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    API_INTAKE,
    LiveApp,
    Watch,
    identity,
    short_disclosure,
    sign_in,
    url,
)
from tests.helpers import PASSWORD, add_staff

WANG_WU = identity("王五", "440306199001011236", "1990-01-01", "M")


async def test_screening_hit_held_and_cleared_in_the_compliance_desk(
    browser: Browser, live_server: Any
) -> None:
    short_disclosure(live_server, 0)
    await add_staff(LiveApp(live_server.app), "comp.zhou", {Role.COMPLIANCE})  # type: ignore[arg-type]

    investor = await (await browser.new_context()).new_page()
    seen = Watch(investor)
    await investor.goto(url(live_server, "/open"))
    await sign_in(investor, "13800138011")
    await expect(investor.locator("#step-identity")).to_be_visible()
    await investor.evaluate(API_INTAKE, WANG_WU)
    await investor.reload()
    await investor.click("#check-submit")
    status = investor.locator("#check-status")
    await expect(status).to_be_visible(timeout=15_000)
    await expect(status).to_contain_text("进一步审核")
    await expect(status).to_contain_text("further checks")
    text = (await status.inner_text()).lower()
    assert not any(word in text for word in ("名单", "制裁", "list", "sanction", "match"))
    await investor.screenshot(path=artifact("screening-hold-investor.png"), full_page=True)

    officer = await (await browser.new_context()).new_page()
    desk_seen = Watch(officer)
    await officer.goto(url(live_server, "/staff/login"))
    await officer.fill("#username", "comp.zhou")
    await officer.fill("#password", PASSWORD)
    await officer.click("button[type=submit]")
    await expect(officer).to_have_url(url(live_server, "/staff/"))
    await officer.goto(url(live_server, "/staff/compliance"))
    hit = officer.locator("article.screening")
    await expect(hit).to_have_count(1)
    await expect(hit.locator("h3")).to_contain_text("440306********1236")
    await expect(hit.locator(".list-name")).to_have_text("sanctions")
    await expect(officer.locator("section#alerts")).to_be_attached()

    await hit.locator("button.show-raw").click()
    await expect(hit.locator("pre.raw")).to_contain_text("possible_match")
    await hit.locator("button.clear").click()  # no reason: refused here and by the server
    await expect(hit.locator("[role=alert]")).to_contain_text("处理理由")
    await hit.locator("textarea").fill("出生日期与地址均不符，非同一人。Not the listed person.")
    await hit.locator("button.clear").click()
    await expect(officer.locator(".decided")).to_contain_text("已放行")
    await officer.screenshot(path=artifact("compliance-desk-cleared.png"), full_page=True)
    await officer.reload()
    await expect(officer.locator("#screening-empty")).to_be_visible()

    await investor.reload()
    await expect(investor.locator("#check-verified")).to_be_visible()
    await investor.click("#join-queue")
    await expect(investor.locator("#step-queue")).to_be_visible(timeout=10_000)
    seen.assert_clean()
    desk_seen.assert_clean()
