"""A real call inside the lab: the server in ``srv``, the investor's Chromium in ``home``,
the witness's in ``wit``, through intake, queue, the witness desk and recording; and what
each browser measured (tests/netlab/stats.js), reduced to the numbers of issue 16."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.error
from playwright.async_api import Browser, BrowserContext, Page, Playwright, expect

from tests.e2e.conftest import CHROMIUM_ARGS, artifact, write_wav
from tests.e2e.pages import remote_playing, verified_investor, witness_desk
from tests.helpers import PASSWORD
from tests.netlab.lab import Lab
from tests.server_config import intake_without_reading_time, write_server_config

ROOT = Path(__file__).resolve().parents[2]
STATS_JS = (Path(__file__).parent / "stats.js").read_text()
PORT = 8080  # each run's server namespace is its own: no port is ever taken
FPS = 15
INVESTOR_ROOT, WITNESS_ROOT = "#queue-session", "#work-session"


def server_base(lab: Lab) -> str:
    return f"http://{lab.addr['srv']}:{PORT}"


@dataclass
class LabServer:
    """``python -m server serve`` inside the lab's server namespace."""

    lab: Lab
    base: str
    db: Path
    recordings: Path
    log: Path
    proc: subprocess.Popen[Any]

    def make_url(self, path: str) -> str:  # what tests.e2e.pages.url() asks of a server
        return f"{self.base}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _cli(cfg: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def start_server(
    lab: Lab, directory: Path, sqlite_template: Path, *, media: dict[str, Any] | None = None
) -> LabServer:
    """A fresh database, the witness wang.wei, and the server listening on the server
    host's address only, offering that address as its ICE host candidate."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "witness.db"
    shutil.copyfile(sqlite_template, db)
    ip = lab.addr["srv"]
    cfg = write_server_config(
        directory / "config.toml",
        db_url=f"sqlite+aiosqlite:///{db}",
        recordings=directory / "recordings",
        intake={"content_file": str(intake_without_reading_time(directory))},
        identity={"sandbox_latency_ms": 0},
        sms={"sandbox_latency_ms": 0},
        pairing={"dispatch_interval_seconds": 0.1, "heartbeat_seconds": 2},
        media={
            "host_addresses": [ip],
            "ice_servers": lab.turn_urls(),
            "turn_secret": lab.turn_secret,
            "rejoin_grace_seconds": 30,
            **(media or {}),
        },
        logging={"level": "INFO", "format": "text"},
    )
    _cli(
        cfg, "staff", "add", "wang.wei", "--name", "王伟", "--roles", "witness",
        "--employee-number", "E1", "--licence", "S0850120090042", "--contract",
        "--training-passed", "2026-01-05", "--password-stdin", stdin=f"{PASSWORD}\n",
    )  # fmt: skip
    base = server_base(lab)
    log = directory / "server.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WITNESS_SERVER_PUBLIC_URL": base}
    with log.open("w") as out:
        proc = lab.popen_in(
            "srv",
            [sys.executable, "-m", "server", "--config", str(cfg), "serve",
             "--host", ip, "--port", str(PORT)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = LabServer(lab, base, db, directory / "recordings", log, proc)
    deadline = time.monotonic() + 40
    while True:
        # Asked from the witness's namespace: the host itself has no route into the lab.
        probe = lab.run_in("wit", ["curl", "-sf", "-m", "2", "-o", "/dev/null", f"{base}/healthz"])
        if probe.returncode == 0:
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server did not come up in the lab:\n{server.log_tail()}")
        time.sleep(0.3)


def write_busy_y4m(path: Path, *, frames: int = 2 * FPS, block: int = 8) -> Path:
    """A 640×480 @ 15 fps clip: a grey room with a 256×192 patch of random 8×8 blocks,
    new every frame, where a face would move. It encodes to a few hundred kbit/s like a
    real camera (the e2e tests' quiet card encodes to ~35 kbit/s and would never meet a
    300 kbit/s cap), so bandwidth limits and loss bite."""
    width, height = 640, 480
    pw, ph = 256, 192
    left, top = (width - pw) // 2, (height - ph) // 2
    header = f"YUV4MPEG2 W{width} H{height} F{FPS}:1 Ip A1:1 C420jpeg\n".encode()
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    plain = bytes([100]) * width
    out = bytearray(header)
    rnd = random.Random(16)  # the same clip every run
    for _ in range(frames):
        out += b"FRAME\n" + plain * top
        for _ in range(ph // block):
            small = rnd.randbytes(pw // block)
            row = plain[:left] + bytes(v for v in small for _ in range(block)) + plain[left + pw :]
            out += row * block
        out += plain * (height - top - ph) + chroma + chroma
    path.write_bytes(bytes(out))
    return path


@contextlib.asynccontextmanager
async def lab_browser(pw: Playwright, lab: Lab, ns: str, directory: Path) -> AsyncIterator[Browser]:
    """Debian Chromium inside namespace ``ns`` with the e2e tests' flags and a 640×480
    @ 15 fps fake camera clip and a tone."""
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before the browser runs)
    clip = write_busy_y4m(directory / f"{ns}.y4m")
    tone = write_wav(directory / f"{ns}.wav")
    browser = await pw.chromium.launch(
        executable_path=lab.chromium_executable(ns),
        args=[
            *CHROMIUM_ARGS,
            # The lab serves plain HTTP on a non-loopback address, which is not a secure
            # context: without this getUserMedia does not exist (production uses HTTPS).
            f"--unsafely-treat-insecure-origin-as-secure={server_base(lab)}",
            # coturn's TLS certificate is self-signed, made by the lab for the run: the
            # browser's TURN-over-TLS client verifies it like any other (a real
            # deployment has a certificate from a public CA, docs/deployment.md).
            "--ignore-certificate-errors",
            f"--use-file-for-fake-video-capture={clip}",
            f"--use-file-for-fake-audio-capture={tone}",
        ],
        headless=True,
        timeout=60_000,
    )
    try:
        yield browser
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(browser.close(), 20)


async def lab_context(browser: Browser, *, investor: bool) -> BrowserContext:
    if investor:
        ctx = await browser.new_context(
            viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True, locale="zh-CN"
        )
    else:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    await ctx.add_init_script(STATS_JS)
    ctx.set_default_timeout(20_000)
    return ctx


@dataclass
class Call:
    """The two pages of a call in progress and when the witness accepted it."""

    server: LabServer
    inv: Page
    wit: Page
    accepted_at: float  # epoch ms, the clock the pages' samples use
    marks: dict[str, float] = field(default_factory=dict)


async def place_call(server: LabServer, inv: Page, wit: Page, *, expect_media: bool = True) -> Call:
    """Investor through intake into the queue; the witness takes the offer; with
    ``expect_media`` both see each other's video playing."""
    await verified_investor(server, inv)
    await inv.click("#join-queue")
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=15_000)
    accepted_at = time.time() * 1000
    await wit.click("#offer-accept")
    call = Call(server, inv, wit, accepted_at)
    if expect_media:
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    remote_playing(inv, INVESTOR_ROOT), remote_playing(wit, WITNESS_ROOT)
                ),
                45,
            )
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"no media both ways: {exc}\n{await diagnose(call)}") from None
    return call


async def diagnose(call: Call) -> str:
    """What to read when a call did not connect: each page's connection states, ICE
    errors and last sample, and the server's log."""
    parts = []
    for name, page in (("investor", call.inv), ("witness", call.wit)):
        with contextlib.suppress(Exception):
            data = await lab_data(page)
            last = data["samples"][-1] if data["samples"] else None
            parts.append(
                f"{name}: states={data['states'][-8:]} ice_errors={data['iceErrors'][:6]}"
                f" last={json.dumps(last)} phase="
                + str(await page.evaluate("document.querySelector('[data-phase]')?.dataset.phase"))
            )
    parts.append("server log:\n" + call.server.log_tail())
    return "\n".join(parts)


async def end_call(call: Call) -> None:
    await call.wit.click("#session-end")
    await expect(call.inv.locator("#queue-alert")).to_be_visible(timeout=15_000)


async def lab_data(page: Page) -> dict[str, Any]:
    return await page.evaluate(  # type: ignore[no-any-return]
        "() => ({samples: window.__lab.samples, states: window.__lab.states,"
        " iceErrors: window.__lab.iceErrors})"
    )


def recordings(server: LabServer, within: float = 30.0) -> list[dict[str, Any]]:
    """The session's recordings once none is still being written."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.closing(sqlite3.connect(server.db, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            rows = [
                dict(r)
                for r in db.execute(
                    "SELECT participant, segment, path, status, duration_ms, video_frames,"
                    " damage, damaged_ms, frames_lost FROM recordings"
                    " ORDER BY participant, segment"
                )
            ]
        if rows and all(r["status"] != "recording" for r in rows):
            return rows
        assert time.monotonic() < deadline, f"recordings not finished: {rows}"
        time.sleep(0.5)


def check_recordings(server: LabServer) -> list[dict[str, Any]]:
    """Every recording of the call decodes end to end with PyAV; the rows with counts.
    Under loss a frame can arrive torn (a packet of it never came, even after NACK): the
    recorder keeps it as it came and marks it in the recording's damage account (issue
    16). Such a frame may not decode, so a recording may have at most as many
    undecodable video frames as it has frames marked lost or damaged, and none if its
    account is clean."""
    rows = recordings(server)
    for row in rows:
        path = server.recordings / row["path"]
        assert path.stat().st_size > 0, row
        row["decoded"], undecodable = _decode_counting_errors(path)
        allowed = (row["frames_lost"] or 0) + len(_stretches(row["damage"]))
        assert undecodable <= allowed, (undecodable, row)
        assert row["decoded"]["video"] > 0, row
    return rows


def _stretches(damage: Any) -> list[Any]:
    if isinstance(damage, str):
        damage = json.loads(damage or "null")
    if isinstance(damage, dict):
        damage = damage.get("stretches", [])
    return list(damage or [])


def _decode_counting_errors(path: Path) -> tuple[dict[str, int], int]:
    counts = {"video": 0, "audio": 0}
    undecodable = 0
    with av.open(str(path)) as container:
        streams = [*container.streams.video, *container.streams.audio]
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                if packet.stream.type != "video":
                    raise
                undecodable += 1
                continue
            for frame in frames:
                counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts, undecodable


# -- numbers from the samples -----------------------------------------------------
def _advances(samples: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """(time, frames newly decoded) at each sample where video advanced, over all legs."""
    out: list[tuple[float, int]] = []
    last: dict[int, int] = {}
    for s in samples:
        fd = (s.get("in") or {}).get("framesDecoded")
        if fd is None:
            continue
        prev = last.get(s["pc"], 0)
        if fd > prev:
            out.append((s["t"], fd - prev))
        last[s["pc"]] = fd
    return out


def received_numbers(
    samples: list[dict[str, Any]],
    *,
    start: float,
    warmup_ms: float = 3000.0,
    end: float | None = None,
) -> dict[str, Any]:
    """What one party received: time to first frame (from ``start``), fps after the
    warm-up, the longest stretch with no new frame, loss and repair counters."""
    adv = _advances(samples)
    if not adv:
        return {"first_frame_ms": None}
    first = adv[0][0]
    end = end if end is not None else samples[-1]["t"]
    window_from = first + warmup_ms
    frames = sum(n for t, n in adv if window_from < t <= end)
    span = max(1.0, end - window_from)
    times = [window_from] + [t for t, _ in adv if window_from < t <= end] + [end]
    longest = max(b - a for a, b in itertools.pairwise(times))
    last_in: dict[int, dict[str, Any]] = {}
    for s in samples:
        if s.get("in"):
            last_in[s["pc"]] = s["in"]
    total = lambda key: sum(int(v.get(key, 0) or 0) for v in last_in.values())  # noqa: E731
    return {
        "first_frame_ms": round(first - start),
        "fps": round(frames * 1000 / span, 1),
        "longest_freeze_ms": round(longest),
        "measured_s": round(span / 1000, 1),
        "packets_lost": total("packetsLost"),
        "nack_sent": total("nackCount"),
        "pli_sent": total("pliCount"),
        "retransmitted_received": total("retransmittedPacketsReceived"),
        "frames_dropped": total("framesDropped"),
        "freeze_count": total("freezeCount"),
        "legs": len(last_in),
    }


def sent_numbers(samples: list[dict[str, Any]], *, last_ms: float = 6000.0) -> dict[str, Any]:
    """What one party sent: video bitrate over the last ``last_ms``, the bandwidth
    estimate the browser holds, and the repair requests it answered."""
    outs = [s for s in samples if s.get("out")]
    if not outs:
        return {}
    end = outs[-1]
    tail = [s for s in outs if s["pc"] == end["pc"] and s["t"] >= end["t"] - last_ms]
    first = tail[0]
    span = max(1.0, end["t"] - first["t"])
    kbps = (end["out"].get("bytesSent", 0) - first["out"].get("bytesSent", 0)) * 8 / span
    estimates = [
        s["pair"]["availableOutgoingBitrate"]
        for s in tail
        if s.get("pair") and s["pair"].get("availableOutgoingBitrate") is not None
    ]
    return {
        "video_kbps_last": round(kbps, 1),
        "estimate_kbps_last": round(estimates[-1] / 1000, 1) if estimates else None,
        "estimate_kbps_max": round(max(estimates) / 1000, 1) if estimates else None,
        "target_kbps": round(end["out"].get("targetBitrate", 0) / 1000, 1),
        "frame_height": end["out"].get("frameHeight"),
        "fps_sent": end["out"].get("framesPerSecond"),
        "limited_by": end["out"].get("qualityLimitationReason"),
        "nack_received": end["out"].get("nackCount"),
        "pli_received": end["out"].get("pliCount"),
        "retransmitted_sent": end["out"].get("retransmittedPacketsSent"),
    }


def selected_pair(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    for s in reversed(samples):
        if s.get("pair") and s["state"] == "connected":
            return s["pair"]  # type: ignore[no-any-return]
    return None


def save_numbers(case: str, numbers: dict[str, Any]) -> None:
    """test-results/netlab-<case>.json: what docs/benchmarks.md's table is made from."""
    artifact(f"netlab-{case}.json").write_text(json.dumps(numbers, indent=2, ensure_ascii=False))
    print(f"\n[netlab {case}] {json.dumps(numbers, ensure_ascii=False)}")
