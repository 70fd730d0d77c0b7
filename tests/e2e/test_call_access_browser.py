"""The witness desk and the call for everyone (issue 17): axe-core finds no serious or
critical violation on the desk idle and in a call, nor on the investor's call page; the
quality badge says "connecting" (never "not connected") until its first measurement; the
desk tells "the investor has joined" apart from "their picture is arriving"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, expect

from server.domain.staff import Role
from tests.e2e.axe import report, violations
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    FAST,
    LiveApp,
    Watch,
    call_server,
    remote_playing,
    verified_investor,
    witness_desk,
)
from tests.helpers import add_staff

# Every change of the session status and of the quality badge, from the page's first
# moment (before any script of the page runs).
HISTORY = """
window.__hist = { phase: [], quality: [] };
new MutationObserver((changes) => {
  for (const m of changes) {
    const t = m.target;
    if (m.attributeName === 'data-level' && t.dataset.call === 'quality') {
      window.__hist.quality.push(t.dataset.level);
    } else if (m.attributeName === 'data-phase' && t.id === 'session-status') {
      const v = document.querySelector(
        '#work-session [data-call=remote], #queue-session [data-call=remote]');
      window.__hist.phase.push([t.dataset.phase, v ? v.videoWidth : -1]);
    }
  }
}).observe(document,
  { attributes: true, subtree: true, attributeFilter: ['data-level', 'data-phase'] });
"""
MEASURED = ("good", "fair", "poor")


async def test_desk_and_call_pass_axe_and_say_what_is_happening(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, call_browser: Browser
) -> None:
    server = await call_server(aiohttp_server, tmp_path, sqlite_template)
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    # The pages' CSP allows no inline script: only this test lets axe in.
    inv_ctx = await call_browser.new_context(
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        bypass_csp=True,
    )
    wit_ctx = await call_browser.new_context(
        viewport={"width": 1280, "height": 860}, locale="zh-CN", bypass_csp=True
    )
    await inv_ctx.add_init_script(HISTORY)
    await wit_ctx.add_init_script(HISTORY)
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)
    log: list[str] = []
    severe: list[str] = []

    async def axe(page: Any, where: str) -> None:
        found = await violations(page)
        log.append(report(where, found))
        if found:
            severe.append(report(where, found))

    try:
        await witness_desk(server, wit, "wang.wei")
        await axe(wit, "desk idle")
        await wit.click("#toggle")
        await axe(wit, "desk ready")

        await verified_investor(server, inv)
        await inv.click("#join-queue")
        await expect(inv.locator("#queue-position")).to_have_text("1")
        await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
        await axe(wit, "desk offer")
        await wit.click("#offer-accept")

        await remote_playing(inv, "#queue-session")
        await remote_playing(wit, "#work-session")
        status = wit.locator("#session-status")
        await expect(status).to_have_attribute("data-phase", "live", timeout=10_000)
        await expect(status).to_contain_text("音视频已送达")
        await expect(wit.locator("#work-session [data-call=quality]")).to_have_attribute(
            "data-level", "good", timeout=10_000
        )
        await axe(wit, "desk in a call")
        await axe(inv, "investor in a call")
        await wit.screenshot(path=artifact("access-desk-call.png"))
        await inv.screenshot(path=artifact("access-investor-call.png"))

        # The desk said "joined" first, and "live" only with the investor's picture in.
        phases = await wit.evaluate("window.__hist.phase")
        names = [p for p, _ in phases]
        assert "joined" in names, phases
        assert names.index("joined") < names.index("live"), phases
        assert all(width > 0 for p, width in phases if p == "live"), phases
        # Both badges: "connecting" until measured, never "not connected" before.
        for page, who in ((wit, "witness"), (inv, "investor")):
            levels = await page.evaluate("window.__hist.quality")
            first = next(i for i, v in enumerate(levels) if v in MEASURED)
            assert first > 0 and set(levels[:first]) == {"connecting"}, (who, levels)
        print("\n".join(log))
        assert not severe, "\n".join(severe)
        await wit.click("#session-end")
        back = inv.locator("#queue-alert")
        await expect(back).to_contain_text("您已回到队列最前", timeout=10_000)
        inv_watch.assert_clean()
        wit_watch.assert_clean()
    finally:
        await inv_ctx.close()
        await wit_ctx.close()


async def test_staff_login_and_console_pass_axe(start_server: Any, browser: Browser) -> None:
    from tests.helpers import PASSWORD

    server = await start_server(**FAST)
    await add_staff(
        LiveApp(server.app),  # type: ignore[arg-type]
        "multi.li",
        {Role.WITNESS, Role.REVIEWER, Role.CALLBACK},
    )
    ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = await ctx.new_page()
    try:
        await page.goto(str(server.make_url("/staff/login")))
        found = await violations(page)
        assert not found, report("staff login", found)
        await page.fill("#username", "multi.li")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#review-link")).to_have_count(1)
        await expect(page.locator("#callbacks-link")).to_have_count(1)
        found = await violations(page)
        assert not found, report("console", found)
        icon = await page.request.get(str(server.make_url("/favicon.ico")))
        assert icon.status == 200
    finally:
        await ctx.close()
