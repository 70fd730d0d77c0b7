"""The investor intake page (/open) in real Chromium at phone size, fake camera, real server."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from server.http.keys import RUNTIME
from server.store.models import Application, Document
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    API_INTAKE,
    FAST,
    PHONE,
    WIDTH,
    ZHANG_SAN,
    Watch,
    assert_fits,
    identity,
    short_disclosure,
    sign_in,
    url,
)


@pytest.fixture
async def intake_server(start_server: Any) -> Any:
    server = await start_server(**FAST)
    short_disclosure(server, 2)
    return server


@pytest.fixture
async def phone_page(camera_browser: Browser) -> AsyncIterator[Page]:
    context = await camera_browser.new_context(
        viewport={"width": WIDTH, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


async def shot(page: Page, name: str, *, full: bool = True) -> None:
    await assert_fits(page)
    await page.screenshot(path=artifact(f"intake-{name}.png"), full_page=full)


async def fill_sandbox_identity(page: Page, number: str = ZHANG_SAN) -> None:
    await page.click("#sandbox-identities summary")
    await page.click(f"[data-fill-identity][data-id-number='{number}']")
    await page.select_option("#occupation", "retired")


async def photograph(page: Page, tile: str) -> None:
    await page.click(f".tile[data-kind={tile}] [data-action=camera]")
    await expect(page.locator("#camera")).to_be_visible()
    await expect(page.locator("#camera-shoot")).to_be_enabled(timeout=10_000)
    await page.click("#camera-shoot")
    await page.click("#camera-use")
    await expect(page.locator("#camera")).to_be_hidden()
    await expect(page.locator(f".tile[data-kind={tile}].is-stored")).to_be_visible()


def jpeg_file(tmp_path: Path, name: str, color: str) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (856, 540), color).save(buf, "JPEG")
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


async def test_new_investor_walks_every_step(
    intake_server: Any, phone_page: Page, tmp_path: Path
) -> None:
    page = phone_page
    watch = Watch(page)
    await page.goto(url(intake_server, "/open"))

    # 1 phone
    await expect(page.locator("#h-phone")).to_be_focused()
    await expect(page.locator("#progress-label")).to_contain_text("第 1 步")
    await shot(page, "1-phone")
    await page.fill("#phone", PHONE)
    await page.click("#otp-send")
    await expect(page.locator("#sandbox-otp")).to_contain_text("测试环境")
    await expect(page.locator("#otp-send")).to_be_disabled()
    await expect(page.locator("#otp-send")).to_contain_text("秒后重新获取")
    await page.fill("#code", await page.locator("#sandbox-otp-code").inner_text())
    await shot(page, "1-phone-code")
    await page.click("#phone-submit")

    # 2 identity
    await expect(page.locator("#h-identity")).to_be_focused()
    await fill_sandbox_identity(page)
    await expect(page.locator("#birth_date")).to_have_value("1949-12-31")
    await expect(page.locator("input[name=sex][value=F]")).to_be_checked()
    await expect(page.locator("#valid_until_long_term")).to_be_checked()
    await expect(page.locator("#nationality")).to_have_value(re.compile("CHN"))
    await page.fill("#address", "北京市朝阳区建国路88号")
    await page.fill("#email", "zhang@example.cn")
    await shot(page, "2-identity")
    await page.click("#identity-submit")

    # 3 ID images: the front by camera, the back by file (the fallback)
    await expect(page.locator("#h-id_images")).to_be_focused()
    next3 = page.locator("#step-id_images [data-next]")
    await expect(next3).to_be_disabled()
    await shot(page, "3-id-images-empty")
    await page.click(".tile[data-kind=id_front] [data-action=camera]")
    await expect(page.locator("#camera-shoot")).to_be_enabled(timeout=10_000)
    await shot(page, "3-camera", full=False)
    await page.click("#camera-shoot")
    await expect(page.locator("#camera-use")).to_be_visible()
    await shot(page, "3-camera-review", full=False)
    await page.click("#camera-use")
    await expect(page.locator(".tile[data-kind=id_front].is-stored")).to_be_visible()
    await page.set_input_files(
        ".tile[data-kind=id_back] input[type=file]", jpeg_file(tmp_path, "back.jpg", "#c9d3e6")
    )
    await expect(page.locator(".tile[data-kind=id_back].is-stored")).to_be_visible()
    await expect(next3).to_be_enabled()
    await expect(page.locator(".tile[data-kind=id_front] .tile-img")).to_have_js_property(
        "complete", True
    )
    await shot(page, "3-id-images")
    await next3.click()

    # 4 frontal photo: camera only
    await expect(page.locator("#h-frontal_photo")).to_be_focused()
    assert await page.locator("#step-frontal_photo input[type=file]").count() == 0
    await page.click(".tile[data-kind=frontal_photo] [data-action=camera]")
    await expect(page.locator("#camera-shoot")).to_be_enabled(timeout=10_000)
    await shot(page, "4-camera", full=False)
    await page.click("#camera-close")
    await expect(page.locator("#camera")).to_be_hidden()
    await photograph(page, "frontal_photo")
    await shot(page, "4-frontal-photo")
    await page.click("#step-frontal_photo [data-next]")

    # 5 suitability
    await expect(page.locator("#h-suitability")).to_be_focused()
    questions = page.locator("fieldset.question")
    for i in range(await questions.count()):
        choices = questions.nth(i).locator("label.choice")
        await choices.nth(1).click()
        if await questions.nth(i).locator("input[type=checkbox]").count():
            await choices.nth(2).click()
    await shot(page, "5-suitability")
    await page.click("#suit-submit")
    await expect(page.locator("#suit-level")).to_have_text(re.compile(r"^C[1-5]$"))
    await shot(page, "5-suitability-result")
    await page.click("#suit-result [data-next]")

    # 6 disclosure: locked until scrolled to the end and min_read_seconds passed
    await expect(page.locator("#h-disclosure")).to_be_focused()
    await expect(page.locator("#disc-confirm")).to_be_disabled()
    await expect(page.locator("#disc-agree")).to_be_disabled()
    await shot(page, "6-disclosure")
    await page.locator("#disc-box").evaluate("b => { b.scrollTop = b.scrollHeight; }")
    await expect(page.locator("#disc-hint")).to_contain_text("已阅读至文末")
    await expect(page.locator("#disc-agree")).to_be_enabled(timeout=5_000)
    await page.check("#disc-agree")
    await expect(page.locator("#disc-confirm")).to_have_text("确认并继续")
    await page.click("#disc-confirm")

    # 7 summary and registry check
    await expect(page.locator("#h-check")).to_be_focused()
    await expect(page.locator("#check-summary")).to_contain_text("110105********002X")
    await expect(page.locator("#check-thumbs img")).to_have_count(3)
    await shot(page, "7-summary")
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)
    await expect(page.locator("#check-verified h3:not(#h-precall)")).to_have_text(
        re.compile("身份核验通过")
    )
    await expect(page.locator("#join-queue")).to_be_enabled()
    await expect(page.locator("#progress-steps li.is-done")).to_have_count(7)
    await shot(page, "7-verified")
    watch.assert_clean()

    rt = intake_server.app[RUNTIME]
    async with rt.db.begin() as s:
        app = (await s.scalars(select(Application))).one()
        assert app.state == "identity_verified"
        assert app.suitability and app.suitability["level"] == app.risk_level
        assert app.disclosure and app.disclosure["acknowledged_at"]
        assert app.disclosure["open_seconds"] >= 2
        docs = (
            await s.scalars(
                select(Document).where(Document.application_id == app.id, Document.active.is_(True))
            )
        ).all()
    assert {d.kind for d in docs} == {"id_front", "id_back", "frontal_photo"}
    for d in docs:
        data = (rt.config.recordings_path / d.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == d.sha256


async def test_bad_check_digit_shows_field_error(intake_server: Any, phone_page: Page) -> None:
    page = phone_page
    watch = Watch(page)
    await page.goto(url(intake_server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    await page.fill("#name", "张三")
    await page.fill("#id_number", "110105194912310021")  # check digit should be X
    await page.check("input[name=sex][value=F]")
    await page.fill("#birth_date", "1949-12-31")
    await page.fill("#valid_from", "2015-06-01")
    await page.check("#valid_until_long_term")
    await page.fill("#address", "北京市朝阳区建国路88号")
    await page.select_option("#occupation", "retired")
    await page.click("#identity-submit")

    error = page.locator("#err-id_number")
    await expect(error).to_be_visible()
    assert "校验位" in await error.inner_text()
    assert "check digit" in (await error.locator(".en").text_content() or "")
    await expect(page.locator("#id_number")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#id_number")).to_be_focused()
    await expect(page.locator("#step-id_images")).to_be_hidden()
    await shot(page, "2-identity-error")
    await page.click("[data-set-lang=en]")
    assert "check digit" in await error.inner_text()
    watch.assert_clean()


async def test_reload_and_sign_in_again_resume(
    start_server: Any, phone_page: Page, tmp_path: Path
) -> None:
    server = await start_server(**FAST, intake={"otp_resend_seconds": 0})
    page = phone_page
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await fill_sandbox_identity(page, "110101200001010010")
    await page.click("#identity-submit")
    await expect(page.locator("#step-id_images")).to_be_visible()
    await page.set_input_files(
        ".tile[data-kind=id_front] input[type=file]", jpeg_file(tmp_path, "f.jpg", "#ddd")
    )
    await expect(page.locator(".tile[data-kind=id_front].is-stored")).to_be_visible()

    await page.reload()
    await expect(page.locator("#step-id_images")).to_be_visible()
    await expect(page.locator(".tile[data-kind=id_front].is-stored")).to_be_visible()
    await expect(page.locator(".tile[data-kind=id_back].is-stored")).to_have_count(0)
    await expect(page.locator("#progress-label")).to_contain_text("第 3 步")

    # Back to the saved identity: shown masked, not as an empty form.
    await page.click("#step-id_images [data-back]")
    await expect(page.locator("#identity-saved")).to_be_visible()
    await expect(page.locator("#identity-saved-list")).to_contain_text("110101********0010")
    await page.click("#identity-continue")
    await expect(page.locator("#step-id_images")).to_be_visible()

    await page.click("#logout")
    await expect(page.locator("#step-phone")).to_be_visible()
    await sign_in(page)
    await expect(page.locator("#notice")).to_contain_text("欢迎回来")
    await expect(page.locator("#step-id_images")).to_be_visible()
    await expect(page.locator(".tile[data-kind=id_front].is-stored")).to_be_visible()
    watch.assert_clean()


async def test_english_switch(intake_server: Any, phone_page: Page) -> None:
    page = phone_page
    watch = Watch(page)
    await page.goto(url(intake_server, "/open"))
    await expect(page.locator("#h-phone")).to_have_text("手机验证", use_inner_text=True)
    await page.click("[data-set-lang=en]")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    assert await page.locator("#h-phone").inner_text() == "Verify your phone"
    assert await page.locator("#otp-send").inner_text() == "Send code"
    assert "Step 1 of 7" in await page.locator("#progress-label").inner_text()
    assert "手机" not in await page.locator("#step-phone").inner_text()
    await shot(page, "1-phone-en")
    await page.reload()  # the choice is remembered
    await expect(page.locator("#h-phone")).to_be_visible()
    assert await page.locator("#h-phone").inner_text() == "Verify your phone"
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    occupation = page.locator("#occupation option[value=retired]")
    assert await occupation.inner_text() == "Retired"
    await shot(page, "2-identity-en")
    await page.click("[data-set-lang=zh]")
    assert await occupation.inner_text() == "离退休人员"
    assert await page.locator("#h-identity").inner_text() == "身份信息"
    watch.assert_clean()


async def test_landing_page_links_to_intake(intake_server: Any, phone_page: Page) -> None:
    page = phone_page
    watch = Watch(page)
    await page.goto(url(intake_server, "/"))
    await shot(page, "0-landing")
    await page.click("text=开始开户")
    await expect(page).to_have_url(url(intake_server, "/open"))
    await expect(page.locator("#step-phone")).to_be_visible()
    await assert_fits(page)
    watch.assert_clean()


async def test_registry_busy_offers_retry(start_server: Any, phone_page: Page) -> None:
    server = await start_server(**FAST)
    short_disclosure(server, 0)
    page = phone_page
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    # Sequence 999: the sandbox registry answers "unavailable".
    await page.evaluate(API_INTAKE, identity("王测试", "110105198001019993", "1980-01-01", "M"))
    await page.reload()
    await expect(page.locator("#step-check")).to_be_visible()
    await page.click("#check-submit")
    await expect(page.locator("#check-alert")).to_contain_text("核验服务繁忙，请稍后重试")
    await expect(page.locator("#check-submit")).to_contain_text("重新核验")
    await expect(page.locator("#check-submit")).to_be_enabled()
    await expect(page.locator("#step-check [data-back]")).to_be_hidden()  # submitted: locked
    await shot(page, "7-registry-busy")
    await page.click("#check-submit")
    await expect(page.locator("#check-alert")).to_contain_text("核验服务繁忙")
    watch.assert_clean()


async def test_registry_mismatch_then_correct(start_server: Any, phone_page: Page) -> None:
    server = await start_server(**FAST)
    short_disclosure(server, 0)
    page = phone_page
    watch = Watch(page)
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    await page.evaluate(API_INTAKE, identity("张叁", ZHANG_SAN, "1949-12-31", "F"))
    await page.reload()
    await page.click("#check-submit")
    await expect(page.locator("#check-failed")).to_be_visible()
    await shot(page, "7-identity-failed")
    await page.click("#check-correct")
    await expect(page.locator("#identity-form")).to_be_visible()
    await expect(page.locator("#identity-reenter")).to_contain_text("110105********002X")
    await expect(page.locator("#name")).to_have_value("张叁")
    await page.fill("#name", "张三")
    await page.fill("#id_number", ZHANG_SAN)
    await page.click("#identity-submit")
    await expect(page.locator("#step-check")).to_be_visible()
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)
    watch.assert_clean()


async def test_camera_refused_explains_and_offers_file(
    camera_denied_browser: Browser, intake_server: Any, tmp_path: Path
) -> None:
    context = await camera_denied_browser.new_context(viewport={"width": WIDTH, "height": 740})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(url(intake_server, "/open"))
    await sign_in(page)
    await fill_sandbox_identity(page)
    await page.click("#identity-submit")
    await expect(page.locator("#step-id_images")).to_be_visible()

    await page.click(".tile[data-kind=id_front] [data-action=camera]")
    error = page.locator("#camera-error")
    await expect(error).to_contain_text("摄像头权限被拒绝", timeout=10_000)
    await expect(error).to_contain_text("从相册选择")
    await shot(page, "3-camera-denied", full=False)
    await page.click("#camera-close")
    await expect(page.locator("#camera")).to_be_hidden()
    for kind in ("id_front", "id_back"):
        await page.set_input_files(
            f".tile[data-kind={kind}] input[type=file]", jpeg_file(tmp_path, f"{kind}.jpg", "#eee")
        )
        await expect(page.locator(f".tile[data-kind={kind}].is-stored")).to_be_visible()
    await page.click("#step-id_images [data-next]")

    # The face photo has no file fallback (A14): the message says so.
    await page.click(".tile[data-kind=frontal_photo] [data-action=camera]")
    await expect(error).to_contain_text("正面照须现场拍摄", timeout=10_000)
    await page.keyboard.press("Escape")
    await expect(page.locator("#camera")).to_be_hidden()
    await expect(page.locator("#step-frontal_photo [data-next]")).to_be_disabled()
    watch.assert_clean()
    await context.close()
