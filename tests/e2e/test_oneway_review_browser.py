"""A one-way recording (A18) reviewed in real Chromium: the investor records alone as in
test_oneway_browser (one statement take, to keep the recording short), then a witness
(role witness only) reviews it in full on the review console (A18.6): the queue's
审核单向视频 link, the one-way checks (three instructions passed with their measured
values, a face comparison within the threshold, the statement's take), the timeline's
``oneway.*`` events; the decision refused until the recording was played through and
every document opened; then 审核通过. The application is ``witnessed``; the witness (given
the reviewer role too) may not review it as reviewer (four eyes); a reviewer then
approves it the same way.

Screenshots of the witness's page at 1280×720 and 1920×1080 go to test-results/
(``oneway-review-*.png``); the layout checks assert that the one-way checks, the
business banner and the side column never overlap the player, and nothing scrolls
sideways.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Browser, FloatRect, Page, ViewportSize, expect
from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, Staff
from tests.e2e.conftest import artifact
from tests.e2e.pages import FAST, LiveApp, Watch, assert_fits, short_disclosure, url
from tests.e2e.test_oneway_browser import (
    HAPPY_CLIP,
    ONEWAY,
    SEQUENCE,
    STATE,
    Console,
    camera,
    phone,
    quick_shutdown,
    verified_with_portrait,
)
from tests.helpers import PASSWORD, add_staff
from tests.oneway_clips import write_clip

pytestmark = pytest.mark.browser

DESK = ViewportSize(width=1280, height=720)
WIDE = ViewportSize(width=1920, height=1080)
DOCUMENTS = ("id_front", "id_back", "frontal_photo", "application_data")
# A decision sent from the page's own session, as review.js would: [status, error code].
DECIDE = """async () => {
  const csrf = document.querySelector('input[name="csrf_token"]').value;
  const sid = document.querySelector('#review').dataset.session;
  const r = await fetch(`/api/v1/review/sessions/${sid}/decision`, {method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
    body: JSON.stringify({decision: 'approve'})});
  return [r.status, ((await r.json()).error || {}).code];
}"""
CLAIM = """async () => {
  const csrf = document.querySelector('input[name="csrf_token"]').value;
  const r = await fetch(`/api/v1/review/sessions/${location.pathname.split('/').pop()}/claim`,
    {method: 'POST', headers: {'X-CSRF-Token': csrf}});
  return [r.status, ((await r.json()).error || {}).code];
}"""


async def record_one_way(server: Any, page: Page) -> None:
    """Verified with the portrait, the three instructions, one statement take: submitted."""
    await verified_with_portrait(server, page)
    await page.click("#oneway-start")
    start = page.locator("#ow-statement-start")
    await expect(start).to_be_visible(timeout=60_000)
    await start.click()
    finish = page.locator("#ow-statement-done")
    await expect(finish).to_be_visible()
    # The statement's wav is 6 s; a take needs 5 s and 3 s of speech (A18.5).
    await page.wait_for_timeout(6_500)
    await finish.click()
    outcome = page.locator("#ow-passed:visible, #ow-findings:visible")
    await expect(outcome).to_be_visible(timeout=20_000)
    await expect(page.locator("#ow-passed")).to_be_visible()
    assert await page.evaluate(STATE) == "one_way_recorded"


async def staff_page(browser: Browser, server: Any, username: str) -> Page:
    """A desk-sized page logged in as ``username``, on the console."""
    ctx = await browser.new_context(viewport=DESK, locale="zh-CN", device_scale_factor=1)
    page = await ctx.new_page()
    await page.goto(url(server, "/staff/login"))
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(url(server, "/staff/"))
    return page


def _overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 1
        and b["x"] < a["x"] + a["width"] - 1
        and a["y"] < b["y"] + b["height"] - 1
        and b["y"] < a["y"] + a["height"] - 1
    )


async def assert_player_clear(page: Page, width: int) -> None:
    """Nothing sideways; the player's box overlaps none of the page's other blocks."""
    await assert_fits(page, width)
    video = await page.locator(".player video").bounding_box()
    assert video and video["width"] > 300, video
    for other in (".oneway-results", ".business", ".side", "#review-alert", ".damage-legend"):
        for box in [await el.bounding_box() for el in await page.locator(other).all()]:
            assert box is None or not _overlap(video, box), (other, box, video)


async def play_through_and_open(page: Page) -> None:
    """As the reviewer does (test_witnessing_browser): every player at 2× from the start,
    to the end; then every document."""
    videos = page.locator("#review video")
    count = await videos.count()
    for i in range(count):
        await expect(videos.nth(i)).to_have_js_property("readyState", 4, timeout=10_000)
    await page.evaluate(
        "document.querySelectorAll('#review video').forEach(v => { v.playbackRate = 2; })"
    )
    await page.click("#play-all")
    for i in range(count):
        await expect(videos.nth(i)).to_have_js_property("ended", True, timeout=60_000)
    await expect(page.locator(".player.is-complete")).to_have_count(count, timeout=10_000)
    await expect(page.locator("#approve")).to_be_disabled()  # the documents are not yet open
    for item in DOCUMENTS:
        doc = page.locator(f".doc[data-item={item}]")
        await doc.click()
        await expect(doc).to_have_class(re.compile(r"\bis-opened\b"))
    await expect(page.locator("#approve")).to_be_enabled()
    await expect(page.locator("#approve-problems li")).to_have_count(0)


async def shoot(page: Page, name: str) -> None:
    """The witness's page at 1280×720 and 1920×1080, as on screen and in full."""
    for size in (DESK, WIDE):
        await page.set_viewport_size(size)
        await assert_player_clear(page, size["width"])
        await page.screenshot(path=artifact(f"oneway-review-{name}-{size['width']}.png"))
        await page.screenshot(
            path=artifact(f"oneway-review-{name}-{size['width']}-full.png"), full_page=True
        )
    await page.set_viewport_size(DESK)


async def test_witness_then_reviewer_review_a_one_way_recording(
    start_server: Any, tmp_path: Any
) -> None:
    clip = write_clip(tmp_path / "moves.y4m", HAPPY_CLIP)
    server = await start_server(**FAST, oneway=ONEWAY)
    short_disclosure(server, 0)
    quick_shutdown(server)
    rt = server.app[RUNTIME]
    await add_staff(LiveApp(server.app), "wit.zhao", {Role.WITNESS})  # type: ignore[arg-type]
    await add_staff(LiveApp(server.app), "rev.li", {Role.REVIEWER})  # type: ignore[arg-type]
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    async with camera(clip) as browser:
        inv_ctx = await phone(browser)
        inv = await inv_ctx.new_page()
        inv_watch = Watch(inv)
        await record_one_way(server, inv)
        inv_watch.assert_clean()
        await inv_ctx.close()
        timings["recorded"] = time.monotonic() - t0
        for _ in range(100):  # the recording is finished when its media session ends
            if not rt.media.sessions:
                break
            await asyncio.sleep(0.2)
        assert not rt.media.sessions

        # A18.6: a witness reviews the recording first.
        wit = await staff_page(browser, server, "wit.zhao")
        wit_watch, wit_console = Watch(wit), Console(wit)
        link = wit.locator("#review-link")
        await expect(link).to_contain_text("单向视频审核")
        await link.click()
        item = wit.locator("#review-queue a[data-session]")
        await expect(item).to_have_count(1)
        await expect(item).to_have_attribute("data-stage", "witness")
        await expect(item).to_contain_text("审核单向视频")
        sid = await item.get_attribute("data-session")
        await item.click()
        await expect(wit).to_have_url(url(server, f"/staff/review/{sid}"))
        await expect(wit.locator("h1")).to_contain_text("单向视频审核")

        # What the machine found (A18.3–A18.5).
        checks = wit.locator(".oneway-results")
        await expect(checks).to_be_visible()
        await expect(checks).to_have_attribute("data-oneway-state", "passed")
        values = checks.locator("dd")
        chips = values.nth(0).locator(".chip")
        await expect(chips).to_have_count(len(SEQUENCE))
        await expect(values.nth(0).locator(".chip.ok")).to_have_count(len(SEQUENCE))
        for chip, name in zip(await chips.all(), SEQUENCE, strict=True):
            # "turn_left ✓ (0.31 / 0.18)": the measured peak and the threshold it passed.
            await expect(chip).to_have_text(re.compile(rf"^{name} ✓ \(\d+\.\d\d / \d+\.\d\d\)$"))
        face = (await values.nth(1).inner_text()).strip()
        assert re.match(r"^通过\s+passed", face), face
        threshold = float(re.search(r"\(≤ ([\d.]+)\)", face)[1])  # type: ignore[index]
        distances = [float(d) for d in re.findall(r"· \w+ (\d\.\d{3})", face)]
        assert distances and all(d <= threshold for d in distances), face
        await expect(values.nth(2).locator(".chip.ok")).to_have_count(1)
        await expect(values.nth(2).locator(".chip.bad")).to_have_count(0)
        # Passed and failed read by colour too, not by the tick alone.
        assert await chips.first.evaluate("c => getComputedStyle(c).backgroundColor") not in (
            "rgba(0, 0, 0, 0)",
            "transparent",
        )
        timeline = wit.locator("#timeline")
        for kind in ("oneway.instruction_started", "oneway.face_compared"):
            await expect(timeline).to_contain_text(kind)
        # In time order (the liveness stills are stored after the moments they show).
        seeks = [
            int(s)
            for s in await timeline.locator("[data-seek]").evaluate_all(
                "bs => bs.map(b => b.dataset.seek)"
            )
        ]
        assert seeks == sorted(seeks), seeks
        await expect(wit.locator("#app-data")).to_contain_text("单向视频，待见证人员审核")

        # The page claims, then gives the player its source. No decision before playing.
        await expect(wit.locator("#review video[src]")).to_have_count(1, timeout=15_000)
        approve = wit.locator("#approve")
        await expect(approve).to_contain_text("审核通过")
        await expect(approve).to_be_disabled()
        await expect(wit.locator("#approve-problems")).to_contain_text("有录像尚未完整播放")
        assert await wit.evaluate(DECIDE) == [409, "review_incomplete"]
        wit_console.errors.clear()  # the refused decision's 409
        await shoot(wit, "witness")
        timings["witness page checked"] = time.monotonic() - t0

        await play_through_and_open(wit)
        timings["witness played"] = time.monotonic() - t0
        await shoot(wit, "witness-ready")
        await approve.click()
        await expect(wit.locator("#decision-done")).to_contain_text("审核通过，待复核")
        await expect(wit.locator("#review-alert")).to_be_hidden()
        async with rt.db.begin() as s:
            assert (await s.scalar(select(Application.state))) == "witnessed"
        await wit.goto(url(server, "/staff/review"))
        await expect(wit.locator("#review-empty")).to_be_visible()
        wit_watch.assert_clean()
        assert wit_console.errors == []
        await wit.context.close()

        # Four eyes: the same person, made a reviewer too, may not be its reviewer.
        async with rt.db.begin() as s:
            zhao = await s.scalar(select(Staff).where(Staff.username == "wit.zhao"))
            assert zhao is not None
            zhao.roles = "witness,reviewer"
        both = await staff_page(browser, server, "wit.zhao")
        await both.goto(url(server, "/staff/review"))
        await expect(both.locator("#review-queue")).to_contain_text("您见证的会话须由他人复核")
        await expect(both.locator("#review-queue a[data-session]")).to_have_count(0)
        await both.goto(url(server, f"/staff/review/{sid}"))
        assert await both.evaluate(CLAIM) == [403, "four_eyes"]
        await both.context.close()

        # A17.5: a reviewer, the second person, the same way.
        rev = await staff_page(browser, server, "rev.li")
        rev_watch, rev_console = Watch(rev), Console(rev)
        await rev.click("#review-link")
        item = rev.locator("#review-queue a[data-session]")
        await expect(item).to_have_count(1)
        await expect(item).not_to_have_attribute("data-stage", "witness")
        await item.click()
        await expect(rev.locator("h1")).to_contain_text("复核")
        await expect(rev.locator(".oneway-results")).to_be_visible()
        await expect(rev.locator("#app-data")).to_contain_text("Wit.Zhao")
        await expect(rev.locator("#review video[src]")).to_have_count(1, timeout=15_000)
        await expect(rev.locator("#approve")).to_be_disabled()
        assert await rev.evaluate(DECIDE) == [409, "review_incomplete"]
        rev_console.errors.clear()
        await play_through_and_open(rev)
        await rev.click("#approve")
        await expect(rev.locator("#decision-done")).to_contain_text("已复核通过")
        await expect(rev.locator("#review-alert")).to_be_hidden()
        rev_watch.assert_clean()
        assert rev_console.errors == []
        await rev.context.close()
        timings["reviewed"] = time.monotonic() - t0

    # A8: callback first leaves it approved; open first opens the account (blocked).
    order = rt.config.callback.order
    expected = {"callback_first": {"approved"}, "open_first": {"approved", "account_opened"}}
    async with rt.db.begin() as s:
        state = await s.scalar(select(Application.state))
    assert state in expected[order], (order, state)
    print(f"\ntimings: {timings}")
