"""The investor's pre-call check in real Chromium on a 360×640 phone (issue 16): the
camera's picture and the microphone's level, a test connection to the media node, the
path, round trip and upstream shown and stored; a network that cannot carry a call is
told why in both languages and may not join; "try again" then passes and joins."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, Page, Route, expect
from sqlalchemy import select

from server.http.keys import RUNTIME
from server.store.models import NetworkCheck
from tests.e2e.conftest import artifact
from tests.e2e.pages import FAST, Watch, assert_fits, short_disclosure, verified_investor

REQUIRED = {"require_network_check": True, "network_check_seconds": 3.0}


async def shot(page: Page, name: str) -> None:
    await page.locator("#precall").scroll_into_view_if_needed()
    await page.screenshot(path=artifact(f"precall-{name}.png"), full_page=True)


async def checks(server: Any) -> list[NetworkCheck]:
    async with server.app[RUNTIME].db.begin() as tx:
        return list(
            (await tx.scalars(select(NetworkCheck).order_by(NetworkCheck.created_at))).all()
        )


async def test_precall_check_on_a_phone(start_server: Any, call_browser: Browser) -> None:
    server = await start_server(**FAST, intake=REQUIRED, media={"host_addresses": ["127.0.0.1"]})
    short_disclosure(server, 0)
    ctx = await call_browser.new_context(
        viewport={"width": 360, "height": 640},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    page = await ctx.new_page()
    watch = Watch(page)
    try:
        await verified_investor(server, page)
        join = page.locator("#join-queue")
        await expect(page.locator("#precall")).to_be_visible()
        await expect(join).to_be_disabled()  # required: no check yet
        await assert_fits(page, 360)
        await shot(page, "start-360")

        # A network that blocks the test connection: the answer never applies.
        async def broken(route: Route) -> None:
            await route.fulfill(
                status=201,
                content_type="application/json",
                body='{"probe_id": "x", "sdp": "v=0 broken", "seconds": 3}',
            )

        await page.route("**/network-check/probe", broken)
        await page.click("#precall-start")
        verdict = page.locator("#precall-verdict")
        await expect(verdict).to_have_attribute("data-verdict", "failed", timeout=30_000)
        await expect(page.locator("#precall-alert")).to_contain_text("无法与视频服务器建立连接")
        await expect(page.locator("#precall-results")).to_contain_text("未连接")
        await expect(join).to_be_disabled()
        await expect(page.locator("#precall-start")).to_contain_text("重新检测")
        # The camera worked all the same: its picture and a moving level were shown.
        assert await page.evaluate("document.querySelector('#precall-video').videoWidth") > 0
        await assert_fits(page, 360)
        await shot(page, "failed-360")
        await page.click("[data-set-lang=en]")
        await expect(page.locator("#precall-alert")).to_contain_text(
            "this network may block video calls", use_inner_text=True
        )
        await assert_fits(page, 360)
        await shot(page, "failed-en-360")
        await page.click("[data-set-lang=zh]")
        await page.unroute("**/network-check/probe")

        # Try again on a working network: direct, a round trip and an upstream figure.
        await page.click("#precall-start")
        await expect(page.locator("#precall-progress")).to_be_visible()
        await expect(verdict).to_have_attribute(
            "data-verdict", re.compile("^(ok|weak)$"), timeout=30_000
        )
        # The fake microphone plays a tone: the level meter moved.
        level = int(await page.get_attribute("#precall-meter", "data-peak") or 0)
        assert level > 0
        results = page.locator("#precall-results")
        await expect(results).to_contain_text("直连")
        await expect(results).to_contain_text(re.compile(r"\d+ ms"))
        await expect(results).to_contain_text(re.compile(r"\d+ kbit/s"))
        await expect(join).to_be_enabled()
        await assert_fits(page, 360)
        await shot(page, "passed-360")
        await page.set_viewport_size({"width": 1280, "height": 720})
        await shot(page, "passed-1280")
        await page.set_viewport_size({"width": 360, "height": 640})

        stored = await checks(server)
        assert stored[0].verdict == "failed"
        last = stored[-1]
        assert last.verdict in ("ok", "weak") and last.path == "direct"
        assert last.camera_ok and last.microphone_ok
        assert last.rtt_ms is not None and last.upstream_kbps is not None
        print(
            f"browser check: rtt {last.rtt_ms} ms, upstream {last.upstream_kbps} kbit/s, "
            f"verdict {last.verdict}, level seen {level}, details {last.details}"
        )

        # A reload shows the stored check; joining works.
        await page.reload()
        await expect(verdict).to_have_attribute("data-verdict", re.compile("^(ok|weak)$"))
        await join.click()
        await expect(page.locator("#step-queue")).to_be_visible()
        watch.assert_clean()
    finally:
        await ctx.close()
