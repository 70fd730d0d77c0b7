"""A compliance officer opens the supervision statistics in real Chromium: the charts
draw under the CSP (script-src 'self', Chart.js from our own origin) and the tables show
the numbers written to the database."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from server.domain.staff import Role
from server.http.keys import RUNTIME
from tests.e2e.conftest import artifact
from tests.e2e.pages import LiveApp, Watch
from tests.helpers import PASSWORD, add_staff
from tests.supervision_data import FIRST_DAY, LAST_DAY, seed


async def test_supervision_page_draws_charts_and_tables(browser: Browser, live_server: Any) -> None:
    staff = LiveApp(live_server.app)
    await add_staff(staff, "comp.zhou", {Role.COMPLIANCE})  # type: ignore[arg-type]
    await add_staff(staff, "wit.wang", {Role.WITNESS})  # type: ignore[arg-type]
    await add_staff(staff, "rev.li", {Role.REVIEWER})  # type: ignore[arg-type]
    await seed(live_server.app[RUNTIME].db, witness="wit.wang", reviewer="rev.li")
    base = str(live_server.make_url("/")).rstrip("/")
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    await page.goto(f"{base}/staff/login?next=/staff/")
    await page.fill("#username", "comp.zhou")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/staff/")
    await page.click("#supervision-link")
    await expect(page.locator("h1")).to_contain_text("监督统计")
    # The last week first (empty here), then the seeded days.
    await expect(page.locator("#days-table tbody tr")).to_have_count(7)

    await page.fill("#range-from", FIRST_DAY)
    await page.fill("#range-to", LAST_DAY)
    await page.click("#supervision-range button[type=submit]")
    await expect(page.locator("#days-table tbody tr")).to_have_count(2)
    second = page.locator(f"#days-table tr[data-day='{LAST_DAY}'] td")
    await expect(second.nth(1)).to_have_text("2")  # applications
    await expect(second.nth(4)).to_have_text("1")  # failed
    await expect(second.nth(5)).to_have_text("not_own_will ×1")
    await expect(page.locator("#witness-table tbody tr")).to_contain_text("Wit.Wang")
    await expect(page.locator("#total-sessions b")).to_have_text("2")
    await expect(page.locator("#csv-link")).to_have_attribute(
        "href", f"/staff/supervision.csv?from={FIRST_DAY}&to={LAST_DAY}"
    )
    # Chart.js drew on both canvases: a chart instance each and pixels that are not blank.
    drawn = await page.evaluate(
        """() => ['chart-outcomes', 'chart-wait'].map((id) => {
            const canvas = document.getElementById(id);
            const chart = window.Chart && window.Chart.getChart(canvas);
            const data = canvas.getContext('2d')
              .getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
            return { chart: Boolean(chart), width: canvas.width, painted };
        })"""
    )
    for canvas in drawn:
        assert canvas["chart"] and canvas["width"] > 100 and canvas["painted"] > 500, drawn
    await page.screenshot(path=artifact("supervision-1280.png"), full_page=True)
    watch.assert_clean()
