"""The investor's pages for everyone (issue 17 items 4 and 5), in real Chromium on a
360-wide phone: axe-core finds no serious or critical violation at any step, every step
stays usable at 200% text (WCAG 1.4.4) and in the large-text mode, the disclosure cannot
be confirmed before its text has loaded (and no script error reaches the investor), and
a browser without WebRTC is told what to do before it can join the queue."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from playwright.async_api import Browser, Page, Route, expect
from sqlalchemy import select

from server.http.keys import RUNTIME
from server.store.models import NetworkCheck
from tests.e2e.axe import report, violations
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    API_STEP,
    FAST,
    ZHANG,
    Watch,
    pass_precall,
    short_disclosure,
    sign_in,
    url,
)

WIDTH = 360
QUICK_CHECK = {"require_network_check": True, "network_check_seconds": 2.0}


async def phone_page(browser: Browser, **extra: Any) -> Page:
    ctx = await browser.new_context(
        viewport={"width": WIDTH, "height": 640},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        **extra,
    )
    return await ctx.new_page()


async def large_text_fits(page: Page, where: str) -> list[str]:
    """200% text (the browser's text zoom: the root font size doubled), then the page's own
    large-text mode: no horizontal overflow at 360 wide, the step's buttons still in view."""
    problems = []
    for how in ("200%", "mode"):
        if how == "200%":
            await page.evaluate("document.documentElement.style.fontSize = '200%'")
        else:
            await page.evaluate("document.documentElement.style.fontSize = ''")
            await page.click("#text-size")
            await expect(page.locator("html")).to_have_attribute("data-text", "large")
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        if scroll > WIDTH:
            wide = await page.evaluate(
                """(w) => Array.from(document.querySelectorAll('body *'))
                  .filter((e) => e.getClientRects().length
                    && e.getBoundingClientRect().right > w + 1)
                  .slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' + e.className)""",
                WIDTH,
            )
            problems.append(f"{where} at {how}: {scroll}px wide in {WIDTH}: {wide}")
        await page.screenshot(path=artifact(f"access-{where}-{how}.png"), full_page=True)
        if how == "mode":
            await page.click("#text-size")
            await expect(page.locator("html")).not_to_have_attribute("data-text", "large")
    return problems


async def test_every_investor_step_passes_axe_and_large_text(
    start_server: Any, call_browser: Browser
) -> None:
    server = await start_server(**FAST, intake=QUICK_CHECK, media={"host_addresses": ["127.0.0.1"]})
    short_disclosure(server, 0)
    # The pages' CSP allows no inline script: only this test lets axe in.
    page = await phone_page(call_browser, bypass_csp=True)
    watch = Watch(page)
    log: list[str] = []
    severe: list[str] = []
    big: list[str] = []

    async def at(step: str) -> None:
        found = await violations(page)
        log.append(report(step, found))
        if found:
            severe.append(report(step, found))
        big.extend(await large_text_fits(page, step))

    await page.goto(url(server, "/open"))
    await expect(page.locator("#step-phone")).to_be_visible()
    # axe is really in and looking: an image without a text alternative is caught.
    await page.evaluate(
        "document.body.append(Object.assign(document.createElement('img'), {id: 'probe'}))"
    )
    assert any(v["id"] == "image-alt" for v in await violations(page))
    await page.evaluate("document.getElementById('probe').remove()")
    await at("sign-in")
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    await expect(page.locator("#identity-form")).to_be_visible()
    await at("identity")
    for step, following in (
        ("identity", "id_images"),
        ("id_images", "frontal_photo"),
        ("frontal_photo", "suitability"),
        ("suitability", "disclosure"),
    ):
        await page.evaluate(API_STEP, [step, ZHANG])
        await page.reload()
        await expect(page.locator(f"#step-{following}")).to_be_visible()
        if following == "disclosure":
            await expect(page.locator("#disc-box p").first).to_be_visible()
        await at(following)
    await page.evaluate(API_STEP, ["disclosure", ZHANG])
    await page.reload()
    await expect(page.locator("#step-check")).to_be_visible()
    await at("check")
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)
    await at("pre-call check")
    await pass_precall(page)
    await at("pre-call result")
    await page.click("#join-queue")
    await expect(page.locator("#step-queue")).to_be_visible()
    await at("queue")
    print("\n".join(log))
    assert not severe, "\n".join(severe)
    assert not big, "\n".join(big)
    watch.assert_clean()


async def test_disclosure_cannot_be_confirmed_before_its_text_has_loaded(
    start_server: Any, browser: Browser
) -> None:
    server = await start_server(**FAST)
    short_disclosure(server, 0)
    page = await phone_page(browser)
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    for step in ("identity", "id_images", "frontal_photo", "suitability"):
        await page.evaluate(API_STEP, [step, ZHANG])

    # A slow link: the disclosure's text takes 4 s to arrive.
    release = asyncio.Event()
    posted: list[str] = []

    async def slow(route: Route) -> None:
        if route.request.method == "GET":
            await release.wait()
        else:
            posted.append(route.request.method)
        await route.continue_()

    await page.route(re.compile(r".*/api/v1/investor/(application/)?disclosure$"), slow)
    await page.reload()
    await expect(page.locator("#step-disclosure")).to_be_visible()
    agree = page.locator("#disc-agree")
    confirm = page.locator("#disc-confirm")
    await expect(page.locator("#disc-box")).to_have_attribute("aria-busy", "true")
    # The empty box is not "read to the end": scrolling, language switches, clicks do nothing.
    await page.evaluate("document.querySelector('#disc-box').dispatchEvent(new Event('scroll'))")
    await page.click("[data-set-lang=en]")
    await page.click("[data-set-lang=zh]")
    await asyncio.sleep(1)
    await expect(agree).to_be_disabled()
    await expect(agree).not_to_be_checked()
    await expect(confirm).to_be_disabled()
    await page.evaluate("document.querySelector('#disc-confirm').disabled = false")
    await page.evaluate("document.querySelector('#disc-confirm').click()")
    await asyncio.sleep(0.5)
    assert posted == []
    await expect(page.locator("#disc-alert")).to_be_hidden()
    assert "Cannot read" not in await page.locator("body").inner_text()

    release.set()
    await expect(page.locator("#disc-box p").first).to_be_visible()
    await expect(page.locator("#disc-box")).not_to_have_attribute("aria-busy", "true")
    await page.locator("#disc-box").evaluate("b => { b.scrollTop = b.scrollHeight; }")
    await expect(agree).to_be_enabled()
    await agree.check()
    await confirm.click()
    await expect(page.locator("#step-check")).to_be_visible()
    assert posted == ["POST"]
    watch.assert_clean()


async def test_questionnaire_cannot_be_sent_before_its_questions_have_loaded(
    start_server: Any, browser: Browser
) -> None:
    server = await start_server(**FAST)
    page = await phone_page(browser)
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    for step in ("identity", "id_images", "frontal_photo"):
        await page.evaluate(API_STEP, [step, ZHANG])
    release = asyncio.Event()
    sent: list[str] = []

    async def slow(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/v1/investor/questionnaire", slow)
    page.on(
        "request",
        lambda r: sent.append(r.method) if r.url.endswith("/application/suitability") else None,
    )
    await page.reload()
    await expect(page.locator("#step-suitability")).to_be_visible()
    await expect(page.locator("#suit-submit")).to_be_disabled()
    await page.evaluate("document.querySelector('#suit-form').requestSubmit()")
    await asyncio.sleep(0.5)
    assert sent == []
    release.set()
    await expect(page.locator("#suit-questions fieldset").first).to_be_visible()
    await expect(page.locator("#suit-submit")).to_be_enabled()
    watch.assert_clean()


async def test_a_script_error_is_never_shown_raw(start_server: Any, browser: Browser) -> None:
    server = await start_server(**FAST)
    page = await phone_page(browser)
    await page.goto(url(server, "/open"))
    shown = await page.evaluate(
        """() => import('/static/js/i18n.js').then((m) => {
             const box = document.createElement('p');
             const err = new TypeError("Cannot read properties of null (reading 'version')");
             box.append(m.biError(err));
             return box.textContent;
           })"""
    )
    assert "Cannot read" not in shown and "刷新" in shown and "reload" in shown


async def test_a_browser_without_webrtc_is_told_before_joining(
    start_server: Any, browser: Browser
) -> None:
    server = await start_server(**FAST, intake={"require_network_check": False})
    short_disclosure(server, 0)
    page = await phone_page(browser)
    # WebRTC turned off (Firefox media.peerconnection.enabled = false, in-app browsers).
    await page.add_init_script(
        "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"
    )
    watch = Watch(page)
    joins: list[str] = []
    page.on(
        "request",
        lambda r: joins.append(r.url) if r.url.endswith("/application/queue") else None,
    )
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    for step in ("identity", "id_images", "frontal_photo", "suitability", "disclosure"):
        await page.evaluate(API_STEP, [step, ZHANG])
    await page.reload()
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)
    alert = page.locator("#precall-alert")
    await expect(alert).to_contain_text("此浏览器无法进行视频通话")
    await expect(alert).to_contain_text("Chrome")
    await expect(page.locator("#join-queue")).to_be_disabled()
    await expect(page.locator("#precall-start")).to_be_disabled()
    await page.screenshot(path=artifact("access-no-webrtc.png"), full_page=True)
    await page.click("[data-set-lang=en]")
    await expect(alert).to_contain_text("This browser cannot make video calls", use_inner_text=True)
    # Even forced, the page refuses; and the server refuses a join sent by hand.
    await page.evaluate("document.querySelector('#join-queue').disabled = false")
    await page.click("#join-queue")
    await expect(page.locator("#join-alert")).to_contain_text("cannot make video calls")
    assert joins == []
    status = await page.evaluate(
        """async () => {
          const app = await (await fetch('/api/v1/investor/application')).json();
          const r = await fetch('/api/v1/investor/application/queue',
            { method: 'POST', headers: { 'X-CSRF-Token': app.csrf_token,
              'Content-Type': 'application/json' }, body: '{}' });
          return [r.status, (await r.json()).error.code];
        }"""
    )
    assert status == [409, "browser_cannot_call"]
    async with server.app[RUNTIME].db.begin() as tx:
        stored = (await tx.scalars(select(NetworkCheck))).all()
    assert [c.verdict for c in stored] == ["failed"]
    assert stored[0].details["reasons"] == ["no_webrtc"]
    watch.assert_clean()
