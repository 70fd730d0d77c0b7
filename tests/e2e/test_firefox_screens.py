"""The call on real screens in Firefox (issue 17, "and in Firefox where the network-lab issue
has added it"): the investor's call page in Firefox measured at every step of a witnessed
call (the same in-page geometry as tests/e2e/test_call_layout_browser.py: the prompt band
wholly in view and off the face region of each video, no horizontal overflow, no label
narrower than two characters), and axe-core on the investor's pages and on the call page
(no serious or critical violation), with the witness on Chromium as in the other Firefox
tests; and the witness desk in Firefox (the investor on Chromium): the same geometry at
every step, the video and the ID front image in view whenever a control is clicked after
scrolling far down, axe on the desk idle, with an offer and in a call.

Sizes: 1280×720 and 1920×1080 (the desk's only sizes). Headless firefox-esr makes no
window narrower than 500 px, so for the investor the phone sizes (390×844, 360×640) are
measured at 500×844 and 500×640, the narrowest Firefox gives, and the exact phone widths
are reported as skipped by ``test_firefox_phone_widths`` (with the width Firefox gave);
the phone widths themselves are measured in Chromium (test_call_layout_browser.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, expect

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from tests.e2e.axe import firefox_violations, report
from tests.e2e.conftest import artifact
from tests.e2e.firefox_flow import (
    KEEP_PCS,
    firefox_joins_queue,
    firefox_precall,
    firefox_sign_in,
    firefox_verified_investor,
    witness_takes_the_call,
)
from tests.e2e.layout import (
    CONTROL_AND_VIDEO,
    DESK_ROOT,
    DESKS,
    INVESTOR_ROOT,
    PHONES,
    firefox_measure,
)
from tests.e2e.pages import (
    API_STEP,
    FAST,
    PAIRING,
    ZHANG,
    LiveApp,
    Watch,
    remote_playing,
    short_disclosure,
    url,
    verified_investor,
)
from tests.firefox import AsyncFirefox, Firefox, media_address
from tests.helpers import PASSWORD, add_staff, free_port
from tests.server_config import make_config

pytestmark = pytest.mark.browser

NARROWEST = 500  # headless firefox-esr's narrowest window (innerWidth for any narrower one)


@pytest.fixture
async def firefox() -> AsyncIterator[AsyncFirefox]:
    fx = Firefox(size=(1280, 720), log=artifact("firefox-screens.log"))
    await asyncio.wait_for(asyncio.to_thread(fx.start), 90)
    try:
        yield AsyncFirefox(fx)
    finally:
        with contextlib.suppress(Exception):  # what the page showed last, pass or fail
            shot = artifact("firefox-screens-last.png")
            await asyncio.wait_for(asyncio.to_thread(fx.screenshot, shot), 20)
        await asyncio.wait_for(asyncio.to_thread(fx.stop), 30)


@pytest.fixture
async def witness_context(call_browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await call_browser.new_context(viewport=DESKS[0], locale="zh-CN")
    await ctx.add_init_script(KEEP_PCS)
    try:
        yield ctx
    finally:
        await ctx.close()


async def firefox_server(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, **sections: Any
) -> Any:
    """A server Firefox can call through: the media node on this machine's own address
    (Firefox pairs with no loopback candidate: tests/firefox.media_address), its public URL
    on the port it listens on, fast sandboxes and pairing, a 0 s disclosure."""
    db = tmp_path / "ff.db"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    config = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        **FAST,
        pairing=PAIRING,
        media={"host_addresses": [media_address()]},
        server={"public_url": f"http://127.0.0.1:{port}"},
        **sections,
    )
    server = await aiohttp_server(create_app(config), port=port)
    short_disclosure(server, 0)
    return server


class FirefoxLayout:
    """The investor's Firefox page measured at each size, problems collected (asserted empty
    at the end); a screenshot of each state that has a problem."""

    def __init__(self, fx: AsyncFirefox) -> None:
        self.fx = fx
        self.problems: list[str] = []
        self.sizes: set[str] = set()

    async def size(self, want: dict[str, int]) -> str:
        w, h = await self.fx.set_viewport(want["width"], want["height"])
        await asyncio.sleep(0.15)  # a resize, then the page's own scroll
        asked = f"{want['width']}x{want['height']}"
        label = f"{w}x{h}" if (w, h) == (want["width"], want["height"]) else f"{w}x{h}~{asked}"
        self.sizes.add(label)
        return label

    async def measure(
        self, state: str, *, prompt: bool, root: str = INVESTOR_ROOT, sizes: Any = (*PHONES, *DESKS)
    ) -> None:
        who = "investor" if root == INVESTOR_ROOT else "desk"
        for want in sizes:
            label = await self.size(want)
            found = await firefox_measure(self.fx, root, prompt=prompt)
            self.problems += [f"{who} firefox {label} {state}: {p}" for p in found]
            if found:
                name = f"firefox-layout-failed-{label}-{state}.png"
                await self.fx.screenshot(artifact(name), full=False)
        await self.size(DESKS[0])


async def test_firefox_call_layout_and_axe_at_every_step(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    firefox: AsyncFirefox,
    witness_context: BrowserContext,
) -> None:
    server = await firefox_server(
        aiohttp_server, tmp_path, sqlite_template, intake={"require_network_check": False}
    )
    steps = server.app[RUNTIME].witnessing.script.steps
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    fx = firefox
    wit = await witness_context.new_page()
    wit_watch = Watch(wit)
    layout = FirefoxLayout(fx)
    severe: list[str] = []
    log: list[str] = []

    async def axe(where: str) -> None:
        found = await firefox_violations(fx)
        log.append(report(where, found))
        if found:
            severe.append(report(where, found))

    await layout.size(DESKS[0])
    await firefox_verified_investor(fx, server)
    await firefox_joins_queue(fx)
    await witness_takes_the_call(server, fx, wit)
    await layout.measure("live", prompt=False)
    await axe("firefox call page 1280x720 live")

    await wit.click("#disclosure-show")
    await fx.wait_text(f"{INVESTOR_ROOT} [data-call=disclosure]", "S0850120090042")
    await axe("firefox call page 1280x720 disclosure card")
    await wit.click("#disclosure-confirm")
    await fx.wait_visible(f"{INVESTOR_ROOT} [data-call=disclosure-done]")
    for i, step in enumerate(steps):
        await expect(wit.locator("#step-next")).to_be_enabled()
        await wit.click("#step-next")
        await fx.wait_text(f"{INVESTOR_ROOT} [data-call=prompt-zh]", step.text_zh)
        await layout.measure(f"step{i + 1}", prompt=True)
        if step.expects_answer:
            await wit.click(".marks [data-mark=clear]")
            await expect(wit.locator("#script-steps li").nth(i).locator(".mark")).to_be_visible()
    await axe(f"firefox call page 1280x720 step {len(steps)}")
    await layout.size(PHONES[0])
    await axe(f"firefox call page {NARROWEST} wide step {len(steps)}")
    await layout.size(DESKS[0])

    await wit.click("#still-capture")
    await expect(wit.locator("#still-list li[data-kind=manual] img")).to_have_count(
        1, timeout=10_000
    )
    await wit.check("#face-judge input[value=match]")
    await layout.measure("ready-to-pass", prompt=True)
    await wit.click("#verdict-pass")
    await fx.wait_visible("#done-pass", timeout=10.0)
    await axe("firefox investor done")
    print("sizes measured:", sorted(layout.sizes))
    print("\n".join(log))
    assert layout.problems == [], "\n".join(layout.problems)
    assert not severe, "\n".join(severe)
    assert (await fx.problems()) == {"errors": [], "csp": []}
    wit_watch.assert_clean()


async def test_firefox_investor_pages_pass_axe(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, firefox: AsyncFirefox
) -> None:
    """Every investor step in Firefox, at the narrowest window it makes (500 px): axe finds
    no serious or critical violation."""
    server = await firefox_server(
        aiohttp_server,
        tmp_path,
        sqlite_template,
        intake={"require_network_check": True, "network_check_seconds": 2.0},
    )
    fx = firefox
    await fx.set_viewport(PHONES[0]["width"], PHONES[0]["height"])
    log: list[str] = []
    severe: list[str] = []

    async def at(step: str) -> None:
        found = await firefox_violations(fx)
        log.append(report(step, found))
        if found:
            severe.append(report(step, found))
            await fx.screenshot(artifact(f"firefox-access-failed-{step}.png"))

    await fx.goto(url(server, "/open"))
    await fx.wait_visible("#step-phone")
    # axe is really in and looking: an image without a text alternative is caught.
    await fx.js("document.body.append(Object.assign(document.createElement('img'), {id: 'probe'}))")
    assert any(v["id"] == "image-alt" for v in await firefox_violations(fx))
    await fx.js("document.getElementById('probe').remove()")
    await at("sign-in")
    await firefox_sign_in(fx)
    await fx.wait_visible("#identity-form")
    await at("identity")
    for step, following in (
        ("identity", "id_images"),
        ("id_images", "frontal_photo"),
        ("frontal_photo", "suitability"),
        ("suitability", "disclosure"),
    ):
        await fx.js(f"return await ({API_STEP})([arguments[0], arguments[1]]);", step, ZHANG)
        await fx.reload()
        await fx.wait_visible(f"#step-{following}")
        if following == "disclosure":
            await fx.wait_visible("#disc-box p")
        await at(following)
    await fx.js(f"return await ({API_STEP})([arguments[0], arguments[1]]);", "disclosure", ZHANG)
    await fx.reload()
    await fx.wait_visible("#step-check")
    await at("check")
    await fx.click("#check-submit")
    await fx.wait_visible("#check-verified", timeout=15.0)
    await at("pre-call check")
    await firefox_precall(fx)
    await at("pre-call result")
    await firefox_joins_queue(fx)
    await fx.wait_visible("#step-queue")
    await at("queue")
    print("\n".join(log))
    assert not severe, "\n".join(severe)
    assert (await fx.problems()) == {"errors": [], "csp": []}


@pytest.mark.parametrize("phone", PHONES, ids=lambda p: f"{p['width']}x{p['height']}")
async def test_firefox_phone_widths(phone: dict[str, int]) -> None:
    """The phone sizes themselves in Firefox: measured above if Firefox makes such a window,
    else skipped here with the width it gave (the call test measures at that width)."""
    fx = Firefox(size=(phone["width"], phone["height"]))
    await asyncio.wait_for(asyncio.to_thread(fx.start), 90)
    try:
        fx.goto("about:blank")
        w, h = await asyncio.to_thread(fx.set_viewport, phone["width"], phone["height"])
    finally:
        await asyncio.wait_for(asyncio.to_thread(fx.stop), 30)
    if w != phone["width"]:
        pytest.skip(
            f"headless firefox-esr makes no window narrower than {w} px (asked for "
            f"{phone['width']}x{phone['height']}, the page got {w}x{h}): the Firefox call "
            f"is measured at {w}x{phone['height']}; {phone['width']} px wide is measured in "
            "Chromium (test_call_layout_browser.py)"
        )
    assert (w, h) == (phone["width"], phone["height"])


# Scroll every box holding the control, and the page, as far down as they go: what the
# mouse wheel does over the checklist (Chromium's test turns the wheel itself).
SCROLL_FAR_DOWN = """
for (let p = document.querySelector(arguments[0]).parentElement; p; p = p.parentElement) {
  if (p.scrollHeight > p.clientHeight && getComputedStyle(p).overflowY !== 'visible') {
    p.scrollTop = p.scrollHeight;
  }
}
window.scrollTo(0, document.documentElement.scrollHeight);
"""


async def desk_use(fx: AsyncFirefox, layout: FirefoxLayout, selector: str, state: str) -> None:
    """Click a desk control in Firefox after scrolling far down: the investor's video and
    the ID front image stay in view, and the control is in view when clicked."""
    await fx.wait(
        "const e = document.querySelector(arguments[0]); return !!e && !e.disabled;",
        selector,
        what=f"{selector} enabled",
    )
    for when in ("wheel", "click"):
        if when == "wheel":
            await fx.js(SCROLL_FAR_DOWN, selector)
        else:
            await fx.js(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'nearest'})", selector
            )
        got = await fx.js(f"return ({CONTROL_AND_VIDEO})([arguments[0]]);", selector)
        vw, vh = got["vw"], got["vh"]
        wanted = ("video", "front") if when == "wheel" else ("video", "front", "control")
        for what in wanted:
            left, top, right, bottom = got[what]
            if not (left >= -1 and top >= -1 and right <= vw + 1 and bottom <= vh + 1):
                layout.problems.append(
                    f"desk firefox {vw}x{vh} {state}-{when}: {what} out of view {got[what]}"
                )
                await fx.screenshot(
                    artifact(f"firefox-desk-failed-{vw}x{vh}-{state}.png"), full=False
                )
    await fx.click(selector)


async def test_firefox_desk_layout_and_axe_at_every_step(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    firefox: AsyncFirefox,
    call_browser: Browser,
) -> None:
    """The witness desk in Firefox (the investor on Chromium) at 1280×720 and 1920×1080:
    the same geometry at every step, the video and the ID front image in view whenever a
    control is clicked, and axe on the desk idle, ready and in a call."""
    server = await firefox_server(
        aiohttp_server, tmp_path, sqlite_template, intake={"require_network_check": False}
    )
    steps = server.app[RUNTIME].witnessing.script.steps
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    fx = firefox
    inv_ctx = await call_browser.new_context(
        viewport=PHONES[0], is_mobile=True, has_touch=True, locale="zh-CN"
    )
    inv = await inv_ctx.new_page()
    inv_watch = Watch(inv)
    layout = FirefoxLayout(fx)
    severe: list[str] = []
    log: list[str] = []

    async def axe(where: str) -> None:
        found = await firefox_violations(fx)
        log.append(report(where, found))
        if found:
            severe.append(report(where, found))

    try:
        await layout.size(DESKS[0])
        await fx.goto(url(server, "/staff/login"))
        await fx.fill("#username", "wang.wei")
        await fx.fill("#password", PASSWORD)
        await fx.click("button[type=submit]")
        await fx.wait("return location.pathname === '/staff/';", what="the console")
        await fx.goto(url(server, "/staff/witness"))
        await fx.wait(
            "return document.querySelector('#conn').dataset.conn === 'up';", what="desk up"
        )
        await axe("firefox desk idle")
        await verified_investor(server, inv)
        await inv.click("#join-queue")
        await fx.click("#toggle")
        await fx.wait_visible("#work-offer", timeout=15.0)
        await axe("firefox desk offer")
        await fx.click("#offer-accept")
        await remote_playing(inv, INVESTOR_ROOT)
        await fx.wait(
            f"return document.querySelector('{DESK_ROOT} [data-call=remote]').readyState === 4;",
            timeout=20.0,
            what="the investor's video on the desk",
        )
        await fx.wait_visible("#docs figure img")
        await layout.measure("live", prompt=False, root=DESK_ROOT, sizes=DESKS)
        await axe("firefox desk in a call 1280x720")

        await desk_use(fx, layout, "#disclosure-show", "disclosure-show")
        await expect(inv.locator(f"{INVESTOR_ROOT} [data-call=disclosure]")).to_be_visible()
        await desk_use(fx, layout, "#disclosure-confirm", "disclosure-confirm")
        for i, step in enumerate(steps):
            await layout.size(DESKS[i % 2])
            await desk_use(fx, layout, "#step-next", f"step{i + 1}-next")
            await expect(inv.locator(f"{INVESTOR_ROOT} [data-call=prompt-zh]")).to_have_text(
                step.text_zh
            )
            await fx.wait_text(f"{DESK_ROOT} [data-call=prompt-zh]", step.text_zh)
            await layout.measure(f"step{i + 1}", prompt=True, root=DESK_ROOT, sizes=DESKS)
            if step.expects_answer:
                await layout.size(DESKS[i % 2])
                await desk_use(fx, layout, ".marks [data-mark=clear]", f"step{i + 1}-mark")
                await fx.wait_visible(f"#script-steps li:nth-child({i + 1}) .mark")
        await desk_use(fx, layout, "#still-capture", "still")
        await fx.wait_visible("#still-list li[data-kind=manual] img", timeout=10.0)
        await desk_use(fx, layout, "#face-judge input[value=match]", "face-judge")
        await layout.measure("ready-to-pass", prompt=True, root=DESK_ROOT, sizes=DESKS)
        await axe("firefox desk ready to pass 1280x720")
        await desk_use(fx, layout, "#verdict-pass", "verdict")
        await expect(inv.locator("#done-pass")).to_be_visible(timeout=10_000)
        print("sizes measured:", sorted(layout.sizes))
        print("\n".join(log))
        assert layout.problems == [], "\n".join(layout.problems)
        assert not severe, "\n".join(severe)
        assert (await fx.problems()) == {"errors": [], "csp": []}
        inv_watch.assert_clean()
    finally:
        await inv_ctx.close()
