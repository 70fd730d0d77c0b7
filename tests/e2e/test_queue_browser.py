"""The witness queue in real Chromium: an investor on a phone, a witness at a desk (A7, A17.3).

Two browser contexts on one real server: the investor joins the queue, the witness goes
ready, takes the offer and ends the session; the investor is back at the head of the queue.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application
from server.web.ws_common import close_all
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    FAST,
    PAIRING,
    LiveApp,
    Watch,
    assert_fits,
    short_disclosure,
    url,
    verified_investor,
    witness_desk,
)
from tests.helpers import PASSWORD, add_staff, free_port
from tests.server_config import make_config


@pytest.fixture
def queue_server(aiohttp_server: Any, tmp_path: Path, sqlite_template: Path) -> Any:
    """The app on a known port whose public URL is itself: sessions are placed on this node
    and both browsers are sent to its /ws/session (node_url)."""

    async def start(media: dict[str, Any] | None = None, **pairing: Any) -> Any:
        db = tmp_path / "e2e.db"
        shutil.copyfile(sqlite_template, db)
        port = free_port()
        config = make_config(
            tmp_path,
            f"sqlite+aiosqlite:///{db}",
            **FAST,
            pairing={**PAIRING, **pairing},
            server={"public_url": f"http://127.0.0.1:{port}"},
            media={"host_addresses": ["127.0.0.1"], **(media or {})},
        )
        server = await aiohttp_server(create_app(config), port=port)
        short_disclosure(server, 0)
        return server

    return start


@pytest.fixture
async def contexts(camera_browser: Browser) -> AsyncIterator[tuple[BrowserContext, BrowserContext]]:
    investor = await camera_browser.new_context(
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    witness = await camera_browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="zh-CN"
    )
    try:
        yield investor, witness
    finally:
        await investor.close()
        await witness.close()


async def shot(page: Page, name: str, *, phone: bool = False) -> None:
    if phone:
        await assert_fits(page)
    await page.screenshot(path=artifact(f"queue-{name}.png"), full_page=True)


async def app_state(server: Any) -> str:
    async with server.app[RUNTIME].db.begin() as s:
        return str((await s.scalars(select(Application))).one().state)


async def test_investor_queues_witness_takes_and_ends_the_session(
    queue_server: Any, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    server = await queue_server()
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx, wit_ctx = contexts
    inv = await inv_ctx.new_page()
    wit = await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)

    # The investor joins: first in the queue, no estimate without a witness on duty.
    await verified_investor(server, inv)
    join = inv.locator("#join-queue")
    await expect(join).to_be_enabled()
    await expect(inv.locator("#join-queue-note")).not_to_contain_text("下一版本")
    await join.click()
    await expect(inv.locator("#step-queue")).to_be_visible()
    await expect(inv.locator("#h-queue")).to_be_focused()
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await expect(inv.locator("#queue-ahead")).to_contain_text("0 人")
    await expect(inv.locator("#queue-wait")).to_contain_text("暂时无法估计")
    assert await app_state(server) == "queued"
    await shot(inv, "investor-waiting", phone=True)

    # A reload keeps the place and goes straight to the waiting panel.
    await inv.reload()
    await expect(inv.locator("#step-queue")).to_be_visible()
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await expect(inv.locator("#queue-conn")).to_be_hidden()
    await inv.click("[data-set-lang=en]")
    await expect(inv.locator("#queue-wait")).to_have_text(
        "Cannot be estimated yet", use_inner_text=True
    )
    await expect(inv.locator("#queue-ahead")).to_have_text("0 people", use_inner_text=True)
    await shot(inv, "investor-waiting-en", phone=True)
    await inv.click("[data-set-lang=zh]")

    # The witness goes ready and gets the offer.
    await witness_desk(server, wit, "wang.wei")
    await expect(wit.locator("#state-label")).to_contain_text("暂停接单")
    await expect(wit.locator("#queue-length")).to_have_text("1")
    await expect(wit.locator("#witness-problems")).to_have_count(0)
    await shot(wit, "witness-not-ready")

    # The server drops every socket: both pages say so and reconnect by themselves.
    await close_all(server.app)
    await expect(inv.locator("#queue-conn")).to_contain_text("网络中断，正在重连")
    await expect(wit.locator("#conn")).to_have_attribute("data-conn", "down")
    await expect(wit.locator("#conn")).to_contain_text("网络中断，正在重连")
    await expect(inv.locator("#queue-conn")).to_be_hidden(timeout=10_000)
    await expect(wit.locator("#conn")).to_have_attribute("data-conn", "up", timeout=10_000)
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await expect(wit.locator("#state-label")).to_contain_text("暂停接单")
    await expect(wit.locator("#toggle")).to_contain_text("开始接单")
    await wit.click("#toggle")
    offer = wit.locator("#work-offer")
    await expect(offer).to_be_visible(timeout=10_000)
    await expect(offer).to_contain_text("110105********002X")
    await expect(offer).to_contain_text("张三")
    await expect(offer).to_contain_text("居民身份证")
    await expect(offer.locator("[data-field=risk_level]")).to_have_text(re.compile(r"C[1-5]"))
    await expect(wit.locator("#state-label")).to_contain_text("待接受")
    await expect(wit).to_have_title(re.compile("^【新的见证请求"))
    seconds = int(await wit.locator("#offer-seconds").inner_text())
    assert 0 < seconds <= 20
    await shot(wit, "witness-offer")

    # Accepted: both reach the session on the node in node_url.
    await wit.click("#offer-accept")
    await expect(wit.locator("#work-session")).to_be_visible()
    await expect(inv.locator("#queue-session")).to_be_visible()
    await expect(inv.locator("#session-status")).to_contain_text(
        "已与见证人员建立连接", timeout=10_000
    )
    # The video call runs through the server (tests/e2e/test_call_browser.py for more).
    await expect(inv.locator("#queue-session [data-call=remote]")).to_have_js_property(
        "readyState", 4, timeout=20_000
    )
    await expect(wit.locator("#session-status")).to_contain_text("投资者已接入")
    await expect(wit.locator("#state-label")).to_contain_text("见证中")
    await expect(wit.locator("#session-summary")).to_contain_text("110105********002X")
    await expect(wit).to_have_title(re.compile("^见证工作台"))
    assert await app_state(server) == "witnessing"
    await shot(inv, "investor-connected", phone=True)
    await shot(wit, "witness-session")

    # The witness ends: the investor is back at the head, the witness in wrap-up.
    await wit.click("#session-end")
    await expect(inv.locator("#queue-alert")).to_contain_text("您已回到队列最前", timeout=10_000)
    await expect(inv.locator("#queue-waiting")).to_be_visible()
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await expect(wit.locator("#work-session")).to_be_hidden()
    await expect(wit.locator("#desk-notice")).to_contain_text("会话已结束")
    await expect(wit.locator("#state-label")).to_contain_text("整理中")
    await expect(wit.locator("#toggle")).to_contain_text("开始接单")
    await expect(wit.locator("#toggle")).to_be_enabled()
    assert await app_state(server) == "queued"
    await shot(inv, "investor-requeued", phone=True)
    await shot(wit, "witness-wrap-up")

    # The investor leaves after confirming; the place is given up.
    await inv.click("#queue-leave")
    await expect(inv.locator("#queue-leave-confirm")).to_be_visible()
    await shot(inv, "investor-leave-confirm", phone=True)
    await inv.click("#queue-leave-yes")
    await expect(inv.locator("#check-verified")).to_be_visible()
    await expect(inv.locator("#join-queue")).to_be_enabled()
    await expect(inv.locator("#notice")).to_contain_text("您已离开排队")
    await expect(wit.locator("#queue-length")).to_have_text("0")
    assert await app_state(server) == "identity_verified"

    inv_watch.assert_clean()
    wit_watch.assert_clean()


async def test_unanswered_offer_sets_the_witness_not_ready(
    queue_server: Any, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    server = await queue_server(offer_timeout_seconds=2)
    await add_staff(LiveApp(server.app), "slow.witness", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx, wit_ctx = contexts
    inv = await inv_ctx.new_page()
    wit = await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)
    await verified_investor(server, inv)
    await inv.click("#join-queue")
    await expect(inv.locator("#queue-position")).to_have_text("1")

    await witness_desk(server, wit, "slow.witness")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    notice = wit.locator("#desk-notice")
    await expect(notice).to_contain_text("已转给其他见证人员", timeout=10_000)
    await expect(notice).to_contain_text("you were set to not ready")
    await expect(wit.locator("#work-offer")).to_be_hidden()
    await expect(wit.locator("#state-label")).to_contain_text("暂停接单")
    await shot(wit, "witness-offer-timeout")
    # The investor kept the place throughout.
    await expect(inv.locator("#queue-position")).to_have_text("1")
    assert await app_state(server) == "queued"
    inv_watch.assert_clean()
    wit_watch.assert_clean()


async def test_decline_then_investor_reloads_mid_session(
    queue_server: Any, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    server = await queue_server(media={"rejoin_grace_seconds": 3})
    await add_staff(LiveApp(server.app), "li.na", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx, wit_ctx = contexts
    inv = await inv_ctx.new_page()
    wit = await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)
    await verified_investor(server, inv)
    await inv.click("#join-queue")
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await witness_desk(server, wit, "li.na")

    # Declined: the witness is not ready, the investor keeps the place.
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-decline")
    await expect(wit.locator("#desk-notice")).to_contain_text("您已拒绝该请求")
    await expect(wit.locator("#work-offer")).to_be_hidden()
    await expect(wit.locator("#state-label")).to_contain_text("暂停接单")
    await expect(inv.locator("#queue-position")).to_have_text("1")

    # Ready again, accepted; then the investor reloads the page mid-session.
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-accept")
    await expect(inv.locator("#session-status")).to_contain_text(
        "已与见证人员建立连接", timeout=10_000
    )
    await inv.reload()
    # The reloaded page rejoins the same session within the grace period (a new
    # recording segment on the server), video and all.
    await expect(inv.locator("#queue-session")).to_be_visible(timeout=10_000)
    await expect(inv.locator("#queue-session [data-call=remote]")).to_have_js_property(
        "readyState", 4, timeout=20_000
    )
    await expect(wit.locator("#session-status")).to_contain_text("投资者已接入", timeout=10_000)
    assert await app_state(server) == "witnessing"
    await shot(inv, "investor-after-reload", phone=True)

    # The investor closes the page for good: after the grace period the session ends.
    await inv.close()
    await expect(wit.locator("#session-status")).to_contain_text("投资者网络中断", timeout=10_000)
    await shot(wit, "witness-investor-away")
    await expect(wit.locator("#desk-notice")).to_contain_text("投资者已离开", timeout=10_000)
    await expect(wit.locator("#work-session")).to_be_hidden()
    await expect(wit.locator("#state-label")).to_contain_text("暂停接单")
    assert await app_state(server) == "queued"
    await shot(wit, "witness-investor-left")
    inv_watch.assert_clean()
    wit_watch.assert_clean()


async def test_ineligible_witness_is_told_why(queue_server: Any, browser: Browser) -> None:
    server = await queue_server()
    await add_staff(  # type: ignore[arg-type]
        LiveApp(server.app), "sales.li", {Role.WITNESS}, is_marketing=True
    )
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = await context.new_page()
    watch = Watch(page)
    await witness_desk(server, page, "sales.li")
    await expect(page.locator("#witness-problems")).to_contain_text("marketing_staff")
    await page.click("#toggle")
    alert = page.locator("#desk-alert")
    await expect(alert).to_be_visible()
    await expect(page.locator("#witness-problems")).to_be_hidden()  # one box, not two
    await expect(alert).to_contain_text("不具备见证资格")
    await expect(alert).to_contain_text("not eligible")
    await expect(alert.locator("li[data-code=marketing_staff]")).to_contain_text(
        "营销人员不得担任见证人员"
    )
    await expect(alert.locator("li[data-code=marketing_staff]")).to_contain_text(
        "Marketing staff may not act as witnesses"
    )
    await expect(page.locator("#state-label")).to_contain_text("暂停接单")
    await expect(page.locator("#toggle")).to_be_enabled()
    await shot(page, "witness-not-eligible")
    watch.assert_clean()
    await context.close()


async def test_witness_desk_refuses_other_roles(queue_server: Any, browser: Browser) -> None:
    server = await queue_server()
    await add_staff(LiveApp(server.app), "reviewer1", {Role.REVIEWER})  # type: ignore[arg-type]
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url(server, "/staff/login"))
    await page.fill("#username", "reviewer1")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(url(server, "/staff/"))
    await expect(page.locator("#witness-desk-link")).to_have_count(0)
    response = await page.goto(url(server, "/staff/witness"))
    assert response is not None and response.status == 403
    await context.close()
