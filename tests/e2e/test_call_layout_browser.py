"""The call's layout, measured in the page at every step of a witnessed call (issue 17): the
prompt band wholly in view and off the central face region of each video, no horizontal
overflow, no label squeezed narrower than two characters, and on the desk the investor's
video and the ID front image in view whenever a control is used (by mouse, after scrolling
the wheel far down, or by keyboard).

One call covers all four sizes: the investor's phone switches between 390×844 and 360×640
and the desk between 1280×720 and 1920×1080 at every step (the pages keep the band in view
when the window changes, as a phone does when its toolbar hides). Screenshots of every state
go to test-results/ when the test fails (or always with WITNESS_KEEP_LAYOUT_SHOTS=1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from server.domain.staff import Role
from server.http.keys import RUNTIME
from tests.e2e.conftest import artifact
from tests.e2e.layout import (
    CALL_BAR,
    CONTROL_AND_VIDEO,
    DESK_ROOT,
    DESKS,
    INVESTOR_ROOT,
    MEASURE,
    PHONES,
)
from tests.e2e.pages import (
    LiveApp,
    Watch,
    call_server,
    remote_playing,
    verified_investor,
    witness_desk,
)
from tests.helpers import add_staff


class Layout:
    """Measures each state on both pages, keeps a screenshot of each state, and collects
    the problems found (asserted empty at the end, so every size is seen in one run)."""

    def __init__(self, inv: Page, wit: Page) -> None:
        self.inv, self.wit = inv, wit
        self.problems: list[str] = []
        self.shots: dict[str, bytes] = {}
        self.desk_size = DESKS[0]

    async def shot(self, page: Page, name: str) -> None:
        self.shots[name] = await page.screenshot()

    async def measure(self, state: str, *, prompt: bool) -> None:
        for phone in PHONES:
            await self.inv.set_viewport_size(phone)
            await self.inv.wait_for_timeout(150)  # a resize, then the page's own scroll
            size = f"{phone['width']}x{phone['height']}"
            got = await self.inv.evaluate(MEASURE, [INVESTOR_ROOT, prompt])
            self.problems += [f"investor {size} {state}: {p}" for p in got["problems"]]
            await self.shot(self.inv, f"investor-{size}-{state}")
        for desk in DESKS:
            await self.wit.set_viewport_size(desk)
            await self.wit.wait_for_timeout(100)
            size = f"{desk['width']}x{desk['height']}"
            got = await self.wit.evaluate(MEASURE, [DESK_ROOT, prompt])
            self.problems += [f"desk {size} {state}: {p}" for p in got["problems"]]
            bar = await self.wit.evaluate(CALL_BAR, [DESK_ROOT])
            self.problems += [f"desk {size} {state}: {p}" for p in bar["problems"]]
            if os.environ.get("WITNESS_LAYOUT_LOG"):
                print(
                    f"desk {size} {state}: bar bottom {bar['bar_bottom']:.0f} "
                    f"(session at top {bar['bar_bottom_at_top']:.0f}), "
                    f"video {bar['video'][0]:.0f}x{bar['video'][1]:.0f}"
                )
            await self.shot(self.wit, f"desk-{size}-{state}")
        await self.wit.set_viewport_size(self.desk_size)

    async def in_view(self, selector: str, state: str) -> dict[str, Any]:
        """The desk's video and the ID front image must be wholly in view."""
        got = await self.wit.evaluate(CONTROL_AND_VIDEO, [selector])
        vw, vh = got["vw"], got["vh"]
        size = f"{vw}x{vh}"
        for what in ("video", "front"):
            left, top, right, bottom = got[what]
            if not (left >= -1 and top >= -1 and right <= vw + 1 and bottom <= vh + 1):
                self.problems.append(f"desk {size} {state}: {what} out of view {got[what]}")
                await self.shot(self.wit, f"desk-{size}-{state}-{what}")
        return got

    async def use(self, selector: str, state: str, *, key: str | None = None) -> None:
        """Click a desk control (or press its shortcut): the video and the ID front image
        must be in view. Before a click the witness scrolls with the mouse wheel over the
        control's column, far down (as to reach the verdict), then to the control."""
        control = self.wit.locator(selector)
        await expect(control).to_be_enabled()
        if key is None:
            box = await control.bounding_box()
            assert box is not None, selector
            await self.wit.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            await self.wit.mouse.wheel(0, 3000)
            await self.wit.wait_for_timeout(100)
            await self.in_view(selector, f"{state}-wheel")
            await control.scroll_into_view_if_needed()
        got = await self.in_view(selector, state)
        vw, vh = got["vw"], got["vh"]
        size = f"{vw}x{vh}"
        if key is None:
            l2, t2, r2, b2 = got["control"]
            if not (t2 >= 0 and b2 <= vh and l2 >= 0 and r2 <= vw):
                self.problems.append(f"desk {size} {state}: {selector} not in view")
            await control.click()
        else:
            await self.wit.keyboard.press(key)

    def keep_shots(self, prefix: str) -> None:
        for name, png in self.shots.items():
            artifact(f"{prefix}-{name}.png").write_bytes(png)


async def test_call_layout_at_every_step(
    aiohttp_server: Any, tmp_path: Path, sqlite_template: Path, call_browser: Browser
) -> None:
    server = await call_server(aiohttp_server, tmp_path, sqlite_template)
    steps = server.app[RUNTIME].witnessing.script.steps
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx = await call_browser.new_context(
        viewport=PHONES[0], is_mobile=True, has_touch=True, locale="zh-CN"
    )
    wit_ctx = await call_browser.new_context(viewport=DESKS[0], locale="zh-CN")
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)
    layout = Layout(inv, wit)
    try:
        await verified_investor(server, inv)
        await inv.click("#join-queue")
        await witness_desk(server, wit, "wang.wei")
        await wit.click("#toggle")
        await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
        await wit.click("#offer-accept")
        await remote_playing(inv, INVESTOR_ROOT)
        await remote_playing(wit, DESK_ROOT)
        await layout.measure("live", prompt=False)

        await layout.use("#disclosure-show", "disclosure-show")
        await expect(inv.locator(f"{INVESTOR_ROOT} [data-call=disclosure]")).to_be_visible()
        await layout.use("#disclosure-confirm", "disclosure-confirm")
        band = inv.locator(f"{INVESTOR_ROOT} [data-call=prompt-zh]")
        for i, step in enumerate(steps):
            by_key = i % 2 == 1  # every other step by keyboard: N, then 1 for "clear"
            layout.desk_size = DESKS[i % 2]
            await wit.set_viewport_size(layout.desk_size)
            await layout.use("#step-next", f"step{i + 1}-next", key="n" if by_key else None)
            await expect(band).to_have_text(step.text_zh)
            await expect(wit.locator(f"{DESK_ROOT} [data-call=prompt-zh]")).to_have_text(
                step.text_zh
            )
            await expect(wit.locator(f"{DESK_ROOT} [data-call=prompt-step]")).to_contain_text(
                f"Step {i + 1} of {len(steps)}"
            )
            await expect(inv.locator(f"{INVESTOR_ROOT} [data-call=prompt-en]")).to_be_visible()
            await layout.measure(f"step{i + 1}", prompt=True)
            if step.expects_answer:
                await layout.use(
                    ".marks [data-mark=clear]", f"step{i + 1}-mark", key="1" if by_key else None
                )
                await expect(
                    wit.locator("#script-steps li").nth(i).locator(".mark")
                ).to_be_visible()

        await layout.use("#still-capture", "still")
        manual = wit.locator("#still-list li[data-kind=manual] img")
        await expect(manual).to_have_count(1, timeout=10_000)
        await layout.use("#face-judge input[value=match]", "face-judge")
        await layout.measure("ready-to-pass", prompt=True)
        await layout.use("#verdict-pass", "verdict")
        await expect(inv.locator("#done-pass")).to_be_visible(timeout=10_000)
        assert layout.problems == [], "\n".join(layout.problems)
        inv_watch.assert_clean()
        wit_watch.assert_clean()
    except BaseException:
        layout.keep_shots("layout-failed")
        raise
    finally:
        if os.environ.get("WITNESS_KEEP_LAYOUT_SHOTS"):
            layout.keep_shots("layout")
        await inv_ctx.close()
        await wit_ctx.close()
