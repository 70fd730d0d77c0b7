"""A burst of large, allowed image uploads through the investor API: the decodes at once
stay within the memory budget (measured where the decode runs), and the event loop keeps
answering on time (the lag probe's p99 over the burst, read from /healthz)."""

from __future__ import annotations

import asyncio
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.domain.loop_lag import LagWindow
from server.http.keys import RUNTIME
from server.services.intake import decode_budget
from server.services.intake.images import CheckedImage, ImageLimits, inspect_image
from tests.intake_flow import API
from tests.server_config import make_config

UPLOADS = 8
SIDE = 4000  # 64 MB decoded (RGB takes 4 bytes a pixel), under the 100 MB limit
BUDGET_MB = 200  # room for one such decode (~136 MB working), not two
LAG_BOUND_MS = 250.0  # generous: a blocked loop shows seconds, not milliseconds


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(side: int) -> bytes:
    """A ~40 KB colour PNG of side×side pixels, built without allocating them."""
    row = b"\x00" * (1 + side * 3)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 100) for _ in range(side // 100)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class DecodeMeter:
    """Wraps check_image where the decode runs (in a worker thread) and records the
    largest sum of working bytes, and of decodes, in progress at the same moment."""

    def __init__(self, check: Callable[..., CheckedImage]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self.bytes = self.running = self.peak_bytes = self.peak_running = self.done = 0

    def __call__(self, raw: bytes, *, limits: ImageLimits) -> CheckedImage:
        weight = inspect_image(raw, limits=limits).working_bytes
        with self._lock:
            self.bytes += weight
            self.running += 1
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            self.peak_running = max(self.peak_running, self.running)
        try:
            return self._check(raw, limits=limits)
        finally:
            with self._lock:
                self.bytes -= weight
                self.running -= 1
                self.done += 1


@pytest.fixture
async def bclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path, db_url, intake={"image_decode_budget_mb": BUDGET_MB, "otp_per_ip_per_hour": 30}
    )
    return await aiohttp_client(create_app(cfg))


async def bearer(client: Any, phone: str) -> dict[str, str]:
    sent = await client.post(f"{API}/otp", json={"phone": phone})
    assert sent.status == 202, await sent.text()
    code = (await sent.json())["sandbox_code"]
    resp = await client.post(
        f"{API}/session", json={"phone": phone, "code": code, "want_token": True}
    )
    assert resp.status == 201, await resp.text()
    client.session.cookie_jar.clear()
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


@pytest.mark.serial  # measures the event loop's lag
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_burst_of_large_uploads_within_budget_and_loop_on_time(
    bclient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = bclient.app[RUNTIME]
    raw = flat_png(SIDE)
    weight = inspect_image(raw, limits=rt.image_limits).working_bytes
    assert weight <= rt.image_slots.total_bytes < 2 * weight
    meter = DecodeMeter(decode_budget.check_image)
    monkeypatch.setattr(decode_budget, "check_image", meter)
    investors = [await bearer(bclient, f"139000{i + 1:02d}{i + 1:03d}") for i in range(UPLOADS)]

    rt.loop_probe.window = LagWindow(60.0)  # the burst only, not the start-up
    replies = await asyncio.gather(
        *(
            bclient.put(
                f"{API}/application/documents/frontal_photo",
                data=raw,
                headers={**auth, "Content-Type": "image/png"},
            )
            for auth in investors
        )
    )
    assert [r.status for r in replies] == [200] * UPLOADS, [await r.text() for r in replies]

    assert meter.done == UPLOADS
    assert meter.peak_bytes <= rt.image_slots.total_bytes
    assert meter.peak_running == 1  # two would have fitted the cores, not the memory

    health = await (await bclient.get("/healthz")).json()
    lag = health["loop_lag_ms"]
    assert lag["samples"] >= 1, lag  # the probe ran during the burst
    assert lag["p99"] < LAG_BOUND_MS, lag
    assert health["database"] == "ok"  # the existing fields are still there
    metrics = await (await bclient.get("/metrics")).text()
    assert "witness_event_loop_lag_seconds_count" in metrics
    assert "witness_event_loop_lag_max_seconds" in metrics
    print(f"loop lag over a burst of {UPLOADS} uploads of {SIDE}×{SIDE}: {lag}")
