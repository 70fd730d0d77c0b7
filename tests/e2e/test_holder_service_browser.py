"""An existing holder's account service in the browser (issue 19; A20–A22): the business
chosen on the phone step, the account number on the identity step, the account system's
precheck shown before the call, and a cancellation by video end to end (intake → call →
review → callback → account system → notice), the investor's page ending on the outcome
per account.

The sandbox holders are server/content/sandbox_holders.toml: 孙七's three accounts are
clean, 周八's Shanghai account still holds securities, 李四's accounts were opened online
(one with unsettled trades)."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, Notification, Staff
from tests.e2e.axe import report, violations
from tests.e2e.layout import CONTROL_AND_VIDEO, DESK_ROOT, DESKS, MEASURE
from tests.e2e.pages import (
    API_STEP,
    FAST,
    PAIRING,
    LiveApp,
    Watch,
    assert_fits,
    remote_playing,
    short_disclosure,
    sign_in,
    url,
    witness_desk,
)
from tests.helpers import PASSWORD, add_staff, free_port
from tests.server_config import make_config

WIDTH, HEIGHT = 390, 844
SUN_QI = {"name": "孙七", "id_number": "320102198807070026"}
ZHOU_BA = {"name": "周八", "id_number": "330106197203180059"}
SUN_UNIFIED = "181000000201"
ZHOU_UNIFIED = "181000000101"
SHOTS = Path("/tmp")


async def holder_server(aiohttp_server: Any, tmp_path: Path, sqlite_template: Path) -> Any:
    """call_server's set-up (fast sandboxes and pairing, a public URL on the port it
    listens on, a 0 s disclosure) with an instant account system."""
    db = tmp_path / "holder.db"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    config = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        **FAST,
        pairing=PAIRING,
        server={"public_url": f"http://127.0.0.1:{port}"},
        accounts={"sandbox_latency_ms": 0},
    )
    server = await aiohttp_server(create_app(config), port=port)
    short_disclosure(server, 0)
    return server


async def phone_page(browser: Browser) -> Page:
    """A phone-sized page; its CSP bypassed so axe can be injected (tests/e2e/axe.py)."""
    ctx = await browser.new_context(
        viewport={"width": WIDTH, "height": HEIGHT},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        bypass_csp=True,
    )
    return await ctx.new_page()


async def choose_service(page: Page, server: Any, business: str, method: str) -> None:
    await page.goto(url(server, "/open"))
    await expect(page.locator("#business-choice")).to_be_visible()
    await page.select_option("#business", business)
    method_box = page.locator("#method")
    await expect(method_box).to_be_visible()  # cancellation: by video or online
    await method_box.locator(f"input[value={method}]").check()
    # The step list has no suitability or disclosure for a service.
    await expect(page.locator("#progress-steps li:visible")).to_have_count(5)
    await expect(page.locator("#progress-label")).to_contain_text("共 5 步")


async def fill_identity(page: Page, person: dict[str, str], account: str) -> None:
    """The identity form through the UI, the account number with it."""
    form = page.locator("#identity-form")
    await expect(form).to_be_visible()
    await expect(page.locator("#holder-fields")).to_be_visible()
    await page.select_option("#document_type", "resident_id")
    await page.fill("#name", person["name"])
    await page.fill("#id_number", person["id_number"])  # fills birth date and sex
    await page.fill("#valid_from", "2015-06-01")
    await page.check("#valid_until_long_term")
    await page.fill("#address", "上海市徐汇区测试路1号（测试地址）")
    await page.select_option("#occupation", "retired")
    await page.fill("#account_number", account)


async def submit_identity(page: Page) -> None:
    await page.click("#identity-submit")


async def application(page: Page) -> dict[str, Any]:
    body = await page.evaluate("async () => (await fetch('/api/v1/investor/application')).json()")
    return body["application"]


async def images_and_check(page: Page) -> None:
    """ID images and the face photo through the page's own API (their UI is walked in
    test_investor_intake_browser), then the check step."""
    await expect(page.locator("#step-id_images")).to_be_visible()
    for step in ("id_images", "frontal_photo"):
        await page.evaluate(API_STEP, [step, None])
    await page.reload()
    await expect(page.locator("#step-check")).to_be_visible()
    await expect(page.locator("#check-review")).to_be_visible()
    await expect(page.locator("#check-submit")).to_be_enabled()


async def test_holder_cancels_by_video_end_to_end(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, call_browser: Browser
) -> None:
    server = await holder_server(aiohttp_server, tmp_path, sqlite_template)
    rt = server.app[RUNTIME]
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx = await call_browser.new_context(
        viewport={"width": WIDTH, "height": HEIGHT}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    wit_ctx = await call_browser.new_context(
        viewport={"width": 1280, "height": 860}, locale="zh-CN"
    )
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)

    # The business, chosen on the phone step.
    await choose_service(inv, server, "cancel", "witnessed")
    await inv.screenshot(path=SHOTS / "holder-1-chooser.png", full_page=True)
    await sign_in(inv, "13900139001")

    # The identity step asks for an account number too.
    await fill_identity(inv, SUN_QI, SUN_UNIFIED)
    await inv.locator("#holder-fields").scroll_into_view_if_needed()
    await inv.screenshot(path=SHOTS / "holder-2-identity.png")
    await submit_identity(inv)
    await images_and_check(inv)
    # The check step names the service and its accounts, no risk level or disclosure.
    box = inv.locator("#check-service .service-box")
    await expect(box).to_contain_text("注销证券账户")
    await expect(box.locator("li")).to_have_count(3)
    await expect(box.locator("li").first).to_contain_text("18******0201")
    await expect(box.locator("[data-precheck]")).to_have_count(0)
    await expect(inv.locator("#check-summary")).not_to_contain_text("风险等级")
    await assert_fits(inv, WIDTH)
    await inv.click("#check-submit")
    await expect(inv.locator("#check-verified")).to_be_visible(timeout=15_000)
    await expect(inv.locator("#verified-service .service-box li")).to_have_count(3)
    await inv.click("#join-queue")
    await expect(inv.locator("#queue-waiting")).to_be_visible()
    await expect(inv.locator("#queue-service .service-box")).to_contain_text("注销证券账户")

    # The witness takes the call and passes it, through whatever steps the desk shows.
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-accept")
    await remote_playing(inv, "#queue-session")
    await remote_playing(wit, "#work-session")
    await wit.click("#disclosure-show")
    await expect(wit.locator("#disclosure-confirm")).to_be_enabled()
    await wit.click("#disclosure-confirm")
    items = wit.locator("#script-steps li")
    await expect(items.first).to_be_visible()
    for i in range(await items.count()):
        await expect(wit.locator("#step-next")).to_be_enabled()
        await wit.click("#step-next")
        await expect(items.nth(i)).to_have_class(re.compile("is-current"))
        await asyncio.sleep(0.3)
        clear = wit.locator(".marks [data-mark=clear]")
        if await clear.is_enabled():
            await clear.click()
            await expect(items.nth(i).locator(".mark")).to_be_visible()
    await wit.click("#still-capture")
    await expect(wit.locator("#still-list li[data-kind=manual] img")).to_have_count(
        1, timeout=10_000
    )
    await wit.check("#face-judge input[value=match]")
    await expect(wit.locator("#verdict-pass")).to_be_enabled()
    await wit.click("#verdict-pass")
    done = inv.locator("#done-service")
    await expect(done).to_be_visible(timeout=10_000)
    await expect(done).to_contain_text("复核")
    await expect(inv.locator("#done-pass")).to_be_hidden()  # not the opening's text
    inv_watch.assert_clean()
    wit_watch.assert_clean()
    for _ in range(100):
        if not rt.media.sessions:
            break
        await asyncio.sleep(0.2)

    # A17.5: a second person reviews the recordings and the documents.
    await add_staff(LiveApp(server.app), "rev.li", {Role.REVIEWER})  # type: ignore[arg-type]
    rev_ctx = await call_browser.new_context(viewport={"width": 1280, "height": 900})
    rev = await rev_ctx.new_page()
    await rev.goto(url(server, "/staff/login"))
    await rev.fill("#username", "rev.li")
    await rev.fill("#password", PASSWORD)
    await rev.click("button[type=submit]")
    await rev.click("#review-link")
    await rev.click("#review-queue a[data-session]")
    videos = rev.locator("video")
    await expect(videos).to_have_count(2)
    await expect(rev.locator("video[src]")).to_have_count(2, timeout=15_000)
    for i in range(2):
        await expect(videos.nth(i)).to_have_js_property("readyState", 4, timeout=10_000)
    await rev.evaluate("document.querySelectorAll('video').forEach(v => { v.playbackRate = 2; })")
    await rev.click("#play-all")
    for i in range(2):
        await expect(videos.nth(i)).to_have_js_property("ended", True, timeout=30_000)
    docs = rev.locator(".doc[data-item]")
    for i in range(await docs.count()):
        await docs.nth(i).click()
        await expect(docs.nth(i)).to_have_class(re.compile("is-opened"))
    await expect(rev.locator("#approve")).to_be_enabled()
    await rev.click("#approve")
    await expect(rev.locator("#decision-done")).to_be_visible()
    await rev_ctx.close()
    await inv.reload()
    await expect(inv.locator("#done-service")).to_have_attribute("data-state", "approved")

    # The callback (a cancellation has one) confirms; the account system cancels.
    await add_staff(LiveApp(server.app), "cb.wu", {Role.CALLBACK})  # type: ignore[arg-type]
    async with rt.db.begin() as s:
        cb = await s.scalar(select(Staff).where(Staff.username == "cb.wu"))
        app_id = (await s.scalars(select(Application.id))).one()
    assert cb is not None
    await rt.aftercare.record(staff_id=cb.id, application_id=app_id, outcome="confirmed", notes="")

    await inv.reload()
    done = inv.locator("#done-service")
    await expect(done).to_have_attribute("data-state", "completed", timeout=10_000)
    await expect(done).to_contain_text("业务已办理完成")
    rows = done.locator(".service-accounts li")
    await expect(rows).to_have_count(3)
    await expect(done.locator("li[data-outcome=done]")).to_have_count(3)
    await expect(rows.first).to_contain_text("已注销")
    await expect(inv.locator("#service-pdf")).to_be_visible()
    await assert_fits(inv, WIDTH)
    await inv.screenshot(path=SHOTS / "holder-4-completed.png", full_page=True)
    async with inv.expect_download() as info:
        await inv.click("#service-pdf a")
    pdf = await asyncio.to_thread(Path(await (await info.value).path()).read_bytes)
    assert pdf.startswith(b"%PDF")
    # English reads as well.
    await inv.click("[data-set-lang=en]")
    await expect(done).to_contain_text("Your request has been carried out")
    await expect(rows.first).to_contain_text("cancelled")
    await inv.click("[data-set-lang=zh]")
    inv_watch.assert_clean()

    async with rt.db.begin() as s:
        app = await s.get(Application, app_id)
        subjects = (
            await s.scalars(
                select(Notification.subject).where(Notification.application_id == app_id)
            )
        ).all()
    assert app is not None and app.state == "completed"
    assert "service_concluded" in subjects
    await inv_ctx.close()
    await wit_ctx.close()


async def test_precheck_refusal_shows_before_the_call(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, call_browser: Browser
) -> None:
    server = await holder_server(aiohttp_server, tmp_path, sqlite_template)
    page = await phone_page(call_browser)
    watch = Watch(page)
    await choose_service(page, server, "cancel", "witnessed")
    await sign_in(page, "13900139002")
    await fill_identity(page, ZHOU_BA, ZHOU_UNIFIED)
    await submit_identity(page)
    await images_and_check(page)

    # Holdings remain in the Shanghai account: said before the call, with what to do.
    warning = page.locator("#check-service .service-warning[role=alert]")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("仍有证券持仓")
    await expect(warning).to_contain_text("A1****0101")
    await expect(warning).to_contain_text("您也可以继续视频见证")
    await expect(page.locator("#check-service li[data-precheck=holdings_remain]")).to_have_count(1)
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)
    ready = page.locator("#verified-service .service-warning[role=alert]")
    await expect(ready).to_be_visible()
    await expect(page.locator("#join-queue")).to_be_enabled()  # may still go to the call
    await ready.scroll_into_view_if_needed()
    await page.screenshot(path=SHOTS / "holder-3-refusal.png")
    await assert_fits(page, WIDTH)
    found = await violations(page)
    assert not found, report("ready screen with a precheck refusal", found)
    await page.click("[data-set-lang=en]")
    await expect(ready).to_contain_text("The account still holds securities")
    watch.assert_clean()

    # The witness sees the same refusal on the desk once the call is taken (A22).
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    wit_ctx = await call_browser.new_context(
        viewport={"width": 1280, "height": 860},
        bypass_csp=True,  # axe (tests/e2e/axe.py)
    )
    wit = await wit_ctx.new_page()
    await page.click("#join-queue")
    await expect(page.locator("#queue-waiting")).to_be_visible()
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-accept")
    desk = wit.locator("#session-business")
    await expect(desk).to_be_visible(timeout=10_000)
    refused = desk.locator("li[data-precheck=refused]")
    await expect(refused).to_have_count(2)  # Shanghai (holdings) and the unified account
    await expect(desk.locator("li[data-account='A1****0101']")).to_contain_text("holdings_remain")
    await expect(desk.locator("li[data-account='01****0101']")).to_have_attribute(
        "data-precheck", "ok"
    )
    await expect(wit.locator("#session-summary")).to_contain_text("注销证券账户")
    # Compact on the desk: a <details> whose summary gives the count, refused accounts first.
    # Closed or open, at desk sizes it leaves the investor's video and the ID front image in
    # view while the accounts and the first control under them are brought into view.
    summary = desk.locator("details > summary")
    await expect(summary).to_contain_text("办理账户 3 个")
    await expect(summary).to_contain_text("2 个预检未通过")
    await expect(desk.locator("li").first).to_have_attribute("data-precheck", "refused")
    await expect(desk.locator("li").last).to_have_attribute("data-precheck", "ok")
    found = await violations(wit, include="#session-business")
    assert not found, report("the desk's accounts box", found)
    await expect(wit.locator("#docs figure:first-child img")).to_be_visible()
    out_of_view: list[str] = []
    for size in DESKS:
        await wit.set_viewport_size(size)
        for opened in (False, True):
            await desk.locator("details").evaluate("(d, o) => { d.open = o; }", opened)
            for control in ("#session-business summary", "#disclosure-show"):
                await wit.locator(control).scroll_into_view_if_needed()
                got = await wit.evaluate(CONTROL_AND_VIDEO, [control])
                vw, vh = got["vw"], got["vh"]
                for what in ("video", "front", "control"):
                    left, top, right, bottom = got[what]
                    if not (left >= -1 and top >= -1 and right <= vw + 1 and bottom <= vh + 1):
                        where = f"{vw}x{vh} open={opened} {control}"
                        out_of_view.append(f"{where}: {what} out of view {got[what]}")
            problems = (await wit.evaluate(MEASURE, [DESK_ROOT, False]))["problems"]
            out_of_view += [
                f"{size['width']}x{size['height']} open={opened}: {p}" for p in problems
            ]
    assert out_of_view == [], "\n".join(out_of_view)
    found = await violations(wit, include="#session-business")
    assert not found, report("the desk's accounts box, open", found)


async def test_wrong_account_number_is_refused_next_to_the_field(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, browser: Browser
) -> None:
    server = await holder_server(aiohttp_server, tmp_path, sqlite_template)
    page = await phone_page(browser)
    watch = Watch(page)
    await choose_service(page, server, "cancel", "witnessed")
    found = await violations(page)
    assert not found, report("phone step with the service chooser", found)
    await sign_in(page, "13900139003")
    # 周八's unified account number with 孙七's identity: not theirs.
    await fill_identity(page, SUN_QI, ZHOU_UNIFIED)
    await submit_identity(page)
    error = page.locator("#err-account_number")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("该账户与您的身份信息不符")
    await expect(page.locator("#account_number")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#account_number")).to_be_focused()
    await page.screenshot(path=SHOTS / "holder-5-not-holder.png")
    found = await violations(page)
    assert not found, report("identity step with the account field", found)
    await page.click("[data-set-lang=en]")
    await expect(error).to_contain_text("No account with this number belongs to this identity")
    # Nothing changed: no identity saved, still on the identity step.
    app = await application(page)
    assert app["state"] == "draft" and app["identity"] is None
    assert app["next_step"] == "identity"
    await expect(page.locator("#step-identity")).to_be_visible()
    watch.assert_clean()


LI_SI = {"name": "李四", "id_number": "110101200001010010"}
LI_UNIFIED = "181000000401"


async def test_online_cancellation_is_confirmed_without_a_call(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, browser: Browser
) -> None:
    """A22: online only for accounts opened online (李四's; 孙七's were opened by video);
    a confirmation instead of the call; one account cancelled, two refused: a partial
    outcome, each account with its reason."""
    server = await holder_server(aiohttp_server, tmp_path, sqlite_template)
    rt = server.app[RUNTIME]
    page = await phone_page(browser)
    watch = Watch(page)
    await choose_service(page, server, "cancel", "online")
    await sign_in(page, "13900139004")
    await fill_identity(page, SUN_QI, SUN_UNIFIED)
    await submit_identity(page)
    error = page.locator("#err-account_number")
    await expect(error).to_contain_text("通过视频见证开立的账户须以视频见证方式办理")
    assert (await application(page))["identity"] is None
    await fill_identity(page, LI_SI, LI_UNIFIED)
    await submit_identity(page)
    await images_and_check(page)
    await page.click("#check-submit")

    online = page.locator("#check-online")
    await expect(online).to_be_visible(timeout=15_000)
    await expect(page.locator("#check-verified")).to_be_hidden()  # no pre-call check, no queue
    await expect(online.locator(".service-box")).to_contain_text("网上办理")
    await expect(online.locator(".service-warning")).to_contain_text("未了结的交易")
    await page.click("#online-submit")  # not ticked yet
    await expect(page.locator("#err-confirm")).to_be_visible()
    await page.check("#online-confirm")
    await page.click("#online-submit")
    done = page.locator("#done-service")
    await expect(done).to_have_attribute("data-state", "approved")
    await expect(page.locator("#progress-label")).to_contain_text("网上办理")
    found = await violations(page)
    assert not found, report("online service waiting for the callback", found)

    await add_staff(LiveApp(server.app), "cb.wu", {Role.CALLBACK})  # type: ignore[arg-type]
    async with rt.db.begin() as s:
        cb = await s.scalar(select(Staff).where(Staff.username == "cb.wu"))
        app_id = (await s.scalars(select(Application.id))).one()
    assert cb is not None
    await rt.aftercare.record(staff_id=cb.id, application_id=app_id, outcome="confirmed", notes="")
    await page.reload()
    await expect(done).to_have_attribute("data-state", "completed")
    await expect(done).to_contain_text("业务已部分办理")
    await expect(done.locator("li[data-outcome=done]")).to_have_count(1)
    await expect(done.locator("li[data-outcome=refused]")).to_have_count(2)
    await expect(done.locator("li[data-outcome=refused]").last).to_contain_text("未了结的交易")
    await expect(page.locator("#service-pdf")).to_be_visible()
    await page.screenshot(path=SHOTS / "holder-6-partial.png", full_page=True)
    await assert_fits(page, WIDTH)
    found = await violations(page)
    assert not found, report("a partly done service", found)
    watch.assert_clean()


async def test_change_of_information_needs_a_detail(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, browser: Browser
) -> None:
    server = await holder_server(aiohttp_server, tmp_path, sqlite_template)
    page = await phone_page(browser)
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await page.select_option("#business", "change_info")
    await expect(page.locator("#method")).to_be_hidden()  # by video only
    await sign_in(page, "13900139005")
    await fill_identity(page, SUN_QI, SUN_UNIFIED)
    await expect(page.locator("#details")).to_be_visible()
    await expect(page.locator("#details\\.to_agency")).to_be_hidden()
    await submit_identity(page)
    await expect(page.locator("#err-details")).to_be_visible()
    await expect(page.locator("#err-details")).to_contain_text("请至少填写一项要变更的信息")
    await page.fill("#details\\.address", "上海市徐汇区新地址2号（测试地址）")
    await page.fill("#account_number", SUN_UNIFIED)
    await submit_identity(page)
    await expect(page.locator("#step-id_images")).to_be_visible()
    app = await application(page)
    assert app["business_type"] == "change_info"
    assert app["service"]["details"] == {"address": "…"}
    watch.assert_clean()
