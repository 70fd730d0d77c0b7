"""Headless Debian Chromium driven by Playwright, against a real server on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

from server.app import create_app
from tests.conftest import IN_CI
from tests.server_config import make_config

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


def write_y4m(
    path: Path, *, width: int = 640, height: int = 480, frames: int = 10, fps: int = 10
) -> Path:
    """A small YUV4MPEG2 clip for Chromium's fake camera: a light card on a grey desk."""
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode()
    left, right = width // 8, width - width // 8
    top, bottom = height // 4, height - height // 4
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    out = bytearray(header)
    for i in range(frames):
        plain = bytes([90]) * width
        rows = []
        for y in range(height):
            if top <= y < bottom:
                # Text-like stripes on the card, drifting a little from frame to frame.
                ink = 60 if (y + i) % 24 < 6 and y < bottom - 20 else 215
                rows.append(
                    plain[:left]
                    + bytes([215]) * 24
                    + bytes([ink]) * (right - left - 48)
                    + bytes([215]) * 24
                    + plain[right:]
                )
            else:
                rows.append(plain)
        out += b"FRAME\n" + b"".join(rows) + chroma + chroma
    path.write_bytes(bytes(out))
    return path


async def _launch(args: list[str]) -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}; scripts/ensure-test-env.sh installs it")
        pytest.skip(f"Chromium not found at {CHROMIUM}; run `make test` to install it")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def camera_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose fake camera plays a generated clip instead of the default pattern."""
    clip = write_y4m(tmp_path / "camera.y4m")
    async for b in _launch([*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"]):
        yield b


def write_wav(path: Path, *, seconds: float = 2.0, hz: int = 440) -> Path:
    """A mono 48 kHz tone for Chromium's fake microphone."""
    import math
    import struct
    import wave

    rate = 48_000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * i / rate)))
                for i in range(int(seconds * rate))
            )
        )
    return path


@pytest.fixture
async def call_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium with a 640×480 @ 15 fps fake camera clip and a tone as its microphone."""
    clip = write_y4m(tmp_path / "call.y4m", frames=15, fps=15)
    tone = write_wav(tmp_path / "call.wav")
    async for b in _launch(
        [
            *CHROMIUM_ARGS,
            f"--use-file-for-fake-video-capture={clip}",
            f"--use-file-for-fake-audio-capture={tone}",
        ]
    ):
        yield b


@pytest.fixture
async def call_contexts(
    call_browser: Browser,
) -> AsyncIterator[tuple[BrowserContext, BrowserContext]]:
    """The investor on a phone-sized page, the witness at a desk, in the call browser."""
    investor = await call_browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    witness = await call_browser.new_context(
        viewport={"width": 1280, "height": 860}, locale="zh-CN"
    )
    try:
        yield investor, witness
    finally:
        await investor.close()
        await witness.close()


@pytest.fixture
async def camera_denied_browser() -> AsyncIterator[Browser]:
    """Chromium without the auto-accepting permission prompt: camera requests are refused."""
    async for b in _launch([a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]):
        yield b


@pytest.fixture
def start_server(aiohttp_server: Any, tmp_path: Path, sqlite_template: Path) -> Any:
    """Start the real app on SQLite with config overrides: ``await start_server(intake={...})``."""

    async def start(**sections: dict[str, Any]) -> Any:
        db = tmp_path / "e2e.db"
        shutil.copyfile(sqlite_template, db)
        config = make_config(tmp_path, f"sqlite+aiosqlite:///{db}", **sections)
        return await aiohttp_server(create_app(config))

    return start
