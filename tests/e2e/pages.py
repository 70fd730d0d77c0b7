"""Browser flows and page checks shared by the e2e tests (Playwright, real Chromium)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from server.app import create_app
from server.http.keys import RUNTIME
from tests.helpers import PASSWORD, free_port
from tests.server_config import make_config

PHONE = "13800138000"
ZHANG_SAN = "11010519491231002X"  # sandbox registry: 张三, female, born 1949-12-31
WIDTH = 375
# Registry answers at once; sandbox SMS without delay (tests/server_config.make_config).
FAST = {"identity": {"sandbox_latency_ms": 0}, "sms": {"sandbox_latency_ms": 0}}
PAIRING = {"dispatch_interval_seconds": 0.1, "heartbeat_seconds": 2}


class Watch:
    """Console CSP violations and uncaught page errors, asserted empty at the end."""

    def __init__(self, page: Page) -> None:
        self.csp: list[str] = []
        self.errors: list[str] = []
        page.on(
            "console",
            lambda m: self.csp.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def assert_clean(self) -> None:
        assert self.csp == []
        assert self.errors == []


def short_disclosure(server: Any, seconds: int) -> None:
    rt = server.app[RUNTIME]
    rt.disclosure = dataclasses.replace(rt.disclosure, min_read_seconds=seconds)


class LiveApp:
    """add_staff() needs only .app; a live server has the same."""

    def __init__(self, app: Any) -> None:
        self.app = app


def url(server: Any, path: str) -> str:
    return str(server.make_url(path))


async def assert_fits(page: Page, width: int = WIDTH) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"horizontal overflow: {scroll}px in {width}px"


async def sign_in(page: Page, phone: str = PHONE) -> None:
    await page.fill("#phone", phone)
    await page.click("#otp-send")
    code = page.locator("#sandbox-otp-code")
    await expect(code).to_have_text(re.compile(r"^\d{6}$"))
    await page.fill("#code", await code.inner_text())
    await page.click("#phone-submit")


# The steps before the check, through the same API the page uses (the walk-through in
# test_investor_intake_browser covers the UI of each): identity, three images, answers,
# disclosure.
API_INTAKE = """async (identity) => {
  const base = '/api/v1/investor';
  const app = await (await fetch(base + '/application')).json();
  const headers = { 'X-CSRF-Token': app.csrf_token, 'Content-Type': 'application/json' };
  const ok = async (r) => { if (!r.ok) throw new Error(await r.text()); return r; };
  await ok(await fetch(base + '/application/identity',
    { method: 'PUT', headers, body: JSON.stringify(identity) }));
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 480;
  canvas.getContext('2d').fillRect(0, 0, 640, 480);
  const jpeg = await new Promise((r) => canvas.toBlob(r, 'image/jpeg'));
  for (const kind of ['id_front', 'id_back', 'frontal_photo']) {
    await ok(await fetch(`${base}/application/documents/${kind}`, { method: 'PUT',
      headers: { 'X-CSRF-Token': app.csrf_token, 'Content-Type': 'image/jpeg' }, body: jpeg }));
  }
  const q = await (await fetch(base + '/questionnaire')).json();
  const answers = Object.fromEntries(q.questions.map((x) => [x.id, [x.options[0].id]]));
  await ok(await fetch(base + '/application/suitability',
    { method: 'PUT', headers, body: JSON.stringify({ answers }) }));
  const doc = await (await fetch(base + '/disclosure')).json();
  await ok(await fetch(base + '/application/disclosure', { method: 'POST', headers,
    body: JSON.stringify({ version: doc.version, scrolled_to_end: true }) }));
}"""


def identity(name: str, number: str, birth: str, sex: str) -> dict[str, Any]:
    return {
        "name": name,
        "document_type": "resident_id",
        "id_number": number,
        "sex": sex,
        "birth_date": birth,
        "valid_from": "2015-06-01",
        "valid_until_long_term": True,
        "address": "北京市朝阳区建国路88号",
        "occupation": "retired",
    }


# One step's data through the page's own API (the UI of each step is walked elsewhere).
API_STEP = """async ([step, identity]) => {
  const base = '/api/v1/investor';
  const app = await (await fetch(base + '/application')).json();
  const headers = { 'X-CSRF-Token': app.csrf_token, 'Content-Type': 'application/json' };
  const ok = async (r) => { if (!r.ok) throw new Error(await r.text()); return r; };
  const jpeg = async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 640; canvas.height = 480;
    canvas.getContext('2d').fillRect(0, 0, 640, 480);
    return new Promise((r) => canvas.toBlob(r, 'image/jpeg'));
  };
  const image = async (kind) => ok(await fetch(`${base}/application/documents/${kind}`,
    { method: 'PUT', headers: { 'X-CSRF-Token': app.csrf_token, 'Content-Type': 'image/jpeg' },
      body: await jpeg() }));
  if (step === 'identity') {
    await ok(await fetch(base + '/application/identity',
      { method: 'PUT', headers, body: JSON.stringify(identity) }));
  } else if (step === 'id_images') {
    await image('id_front'); await image('id_back');
  } else if (step === 'frontal_photo') {
    await image('frontal_photo');
  } else if (step === 'suitability') {
    const q = await (await fetch(base + '/questionnaire')).json();
    const answers = Object.fromEntries(q.questions.map((x) => [x.id, [x.options[0].id]]));
    await ok(await fetch(base + '/application/suitability',
      { method: 'PUT', headers, body: JSON.stringify({ answers }) }));
  } else if (step === 'disclosure') {
    const doc = await (await fetch(base + '/disclosure')).json();
    await ok(await fetch(base + '/application/disclosure', { method: 'POST', headers,
      body: JSON.stringify({ version: doc.version, scrolled_to_end: true }) }));
  }
}"""


ZHANG = identity("张三", ZHANG_SAN, "1949-12-31", "F")


async def verified_investor(server: Any, page: Page) -> None:
    """Sign in, fill the intake through the page's own API, pass the registry check."""
    await page.goto(url(server, "/open"))
    await sign_in(page)
    await expect(page.locator("#step-identity")).to_be_visible()
    await page.evaluate(API_INTAKE, identity("张三", ZHANG_SAN, "1949-12-31", "F"))
    await page.reload()
    await page.click("#check-submit")
    await expect(page.locator("#check-verified")).to_be_visible(timeout=15_000)


async def pass_precall(page: Page) -> None:
    """The pre-call check on the verified panel (issue 16), to a verdict that may join."""
    await page.click("#precall-start")
    verdict = page.locator("#precall-verdict")
    await expect(verdict).to_have_attribute(
        "data-verdict", re.compile("^(ok|weak)$"), timeout=30_000
    )
    await expect(page.locator("#join-queue")).to_be_enabled()


async def witness_desk(server: Any, page: Page, username: str) -> None:
    """Log in and open the desk from the console's link."""
    await page.goto(url(server, "/staff/login"))
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(url(server, "/staff/"))
    await page.click("#witness-desk-link")
    await expect(page).to_have_url(url(server, "/staff/witness"))
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "up")


async def remote_playing(page: Page, root: str) -> None:
    """The other party's video has decoded frames and keeps advancing."""
    video = page.locator(f"{root} [data-call=remote]")
    await expect(video).to_have_js_property("readyState", 4, timeout=20_000)
    first = await video.evaluate("v => v.currentTime")
    await asyncio.sleep(1)
    assert await video.evaluate("v => v.currentTime") > first
    assert await video.evaluate("v => v.videoWidth") == 640
    # Sound comes through too: the remote stream carries a live audio track.
    assert await video.evaluate(
        "v => v.srcObject.getAudioTracks().some(t => t.readyState === 'live')"
    )


async def call_server(aiohttp_server: Any, tmp_path: Path, sqlite_template: Path) -> Any:
    """A server for a call between two browsers: its own copy of the migrated database,
    fast sandboxes and pairing, its public URL on the port it listens on, a 0 s
    disclosure."""
    db = tmp_path / "call.db"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    config = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        **FAST,
        pairing=PAIRING,
        server={"public_url": f"http://127.0.0.1:{port}"},
    )
    server = await aiohttp_server(create_app(config), port=port)
    short_disclosure(server, 0)
    return server
