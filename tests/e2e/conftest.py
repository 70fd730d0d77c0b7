"""Headless Debian Chromium driven by Playwright, against a real server on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from server.app import create_app
from tests.conftest import IN_CI, make_config

CHROMIUM = os.environ.get("WITNESS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_PRESENT = Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}; scripts/ensure-test-env.sh installs it")
        pytest.skip(f"Chromium not found at {CHROMIUM}; run `make test` to install it")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def live_server(aiohttp_server: Any, tmp_path: Path, sqlite_template: Path) -> Any:
    db = tmp_path / "e2e.db"
    shutil.copyfile(sqlite_template, db)
    config = make_config(tmp_path, f"sqlite+aiosqlite:///{db}")
    return await aiohttp_server(create_app(config))


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
