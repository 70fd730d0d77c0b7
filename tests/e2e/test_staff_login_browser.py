"""A staff member logs in and an admin manages the register, in real Chromium."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from server.domain.staff import Role
from tests.e2e.conftest import artifact
from tests.e2e.pages import LiveApp
from tests.helpers import PASSWORD, add_staff


async def test_admin_logs_in_and_disables_a_witness(browser: Browser, live_server: Any) -> None:
    staff = LiveApp(live_server.app)
    await add_staff(staff, "admin", {Role.ADMIN})  # type: ignore[arg-type]
    await add_staff(staff, "zhang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    await add_staff(  # type: ignore[arg-type]
        staff, "sales.li", {Role.WITNESS}, is_marketing=True
    )
    base = str(live_server.make_url("/")).rstrip("/")
    page = await browser.new_page(viewport={"width": 375, "height": 740})
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    await page.goto(f"{base}/staff/")
    await expect(page).to_have_url(f"{base}/staff/login?next=/staff/")
    await page.fill("#username", "admin")
    await page.fill("#password", "wrong password!!")
    await page.click("button[type=submit]")
    await expect(page.locator(".alert")).to_contain_text("用户名或密码错误")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/staff/")
    await expect(page.locator("h1")).to_contain_text("工作台")
    await page.screenshot(path=artifact("staff-console-375.png"), full_page=True)

    await page.click("text=员工管理")
    rows = page.locator("#staff-table tbody tr")
    await expect(rows).to_have_count(3)
    await expect(page.locator("tr[data-username='sales.li']")).to_contain_text("marketing_staff")
    await expect(page.locator("tr[data-username='zhang.wei']")).to_contain_text("合格 Eligible")
    await page.locator("tr[data-username='zhang.wei'] button").click()
    await expect(page.locator("tr[data-username='zhang.wei']")).to_contain_text("停用 Disabled")
    await page.screenshot(path=artifact("staff-register-375.png"), full_page=True)

    await page.click("text=退出 / Log out")
    await expect(page).to_have_url(f"{base}/staff/login")
    assert csp_errors == []


async def test_disabled_witness_cannot_log_in(browser: Browser, live_server: Any) -> None:
    staff = LiveApp(live_server.app)
    await add_staff(staff, "wu.min", {Role.WITNESS}, has_labour_contract=False)  # type: ignore[arg-type]
    base = str(live_server.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await page.goto(f"{base}/staff/login")
    await page.fill("#username", "wu.min")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    # Logged in, but told plainly why they cannot witness yet (A7).
    await expect(page.locator("#witness-problems")).to_contain_text("no_labour_contract")
