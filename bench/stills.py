"""Stills benchmark (issue 17; A14): many "take frontal photo" requests over a few calls,
how many succeed, how long the desk waits, and how each picture was obtained.

    python -m bench.stills                      # 200 stills over 4 calls
    python -m bench.stills --stills 200 --calls 4 --size 640x480

Each call is the real app in this process (a fresh SQLite database and recordings
directory, the real pairing, signalling, media and still paths) with two aiortc
participants (tests/media_client.py) whose investor sends a live-encoded moving pattern
and answers keyframe requests as a browser does. The calls cycle through conditions:

- ``clean``: nothing lost;
- ``lost_requests``: every still's first one or two keyframe requests (PLI with its FIR)
  never reach the investor's sender, in turn 0, 1, 2;
- ``loss3``: 3 % of the investor's RTP is lost and never retransmitted, and 3 % of the
  keyframe requests to it;
- ``unanswered``: every keyframe request a still sends is lost (the frames kept by the
  node are the only source), while the periodic keyframe gets through: the sender makes
  one by itself every ~10 s (``--never-answer``: not even that; the kept frames then run
  out after ``GOP_MAX_FRAMES``, 15 s at 30 fps, and stills fail from then on).

Printed: per condition and overall, stills asked and made, the desk's wait (from sending
``capture_still`` to the ``still`` message: p50/p95/max), the server's ``ready_ms`` and
``delay_ms``, how each was obtained, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.http.keys import RUNTIME
from server.store import migrate
from server.store.db import make_engine
from tests import media_client
from tests.call_flow import FAST_PAIRING, end_call, paired
from tests.helpers import wait_for
from tests.integration.test_stills import LossyLink
from tests.server_config import make_config

CONDITIONS = ("clean", "lost_requests", "loss3", "unanswered")


@dataclass
class Result:
    condition: str
    ok: bool
    waited: float
    error: str = ""
    source: str = ""
    ready_ms: int = 0
    delay_ms: int = 0
    requests: int = 0


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)


class SizedPattern(media_client.PatternTrack):
    """The test client's moving pattern at a camera's size (default 640×480)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shade = (self.sent * 7) % 200 + 20
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        left = bytes([shade]) * (self.width // 2) + bytes([255 - shade]) * (self.width // 2)
        frame.planes[0].update(left * self.height)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(q * len(ordered)))  # nearest rank
    return ordered[min(rank, len(ordered)) - 1]


async def _database(root: Path) -> str:
    url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url


async def one_call(
    condition: str,
    count: int,
    size: tuple[int, int],
    seed: int,
    run: Run,
    *,
    never_answer: bool = False,
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stills-") as tmp:
        root = Path(tmp)
        cfg = make_config(
            root,
            await _database(root),
            pairing=FAST_PAIRING,
            identity={"sandbox_latency_ms": 0},
            # The default periodic keyframe (10 s): stills depend on their own request.
            media={"rejoin_grace_seconds": 3},
        )
        client = TestClient(TestServer(create_app(cfg)))
        await client.start_server()
        try:
            sid, w_token, i_token, extra = await paired(client)
            witness = media_client.Party(client, sid, w_token)
            investor = media_client.Party(client, sid, i_token)
            investor.video = SizedPattern(*size)
            await witness.join()
            await investor.join()
            await asyncio.gather(witness.start_media(), investor.start_media())
            await wait_for(lambda: witness.received["video"] >= 10, within=20)
            link = LossyLink(investor, 0.03, seed=seed) if condition == "loss3" else None
            rng = random.Random(seed)  # noqa: S311 - spacing of clicks, not a secret
            periodic = time.monotonic()
            for i in range(count):
                if condition == "unanswered" and not never_answer:
                    if time.monotonic() - periodic >= 10:
                        # The periodic keyframe (media.keyframe_interval_seconds) answered.
                        assert investor.video_transceiver is not None
                        investor.video_transceiver.sender._send_keyframe()
                        periodic = time.monotonic()
                if condition == "lost_requests":
                    investor.lose_keyframe_requests = i % 3
                elif condition == "unanswered":
                    investor.lose_keyframe_requests = 10**6
                asked = time.monotonic()
                await witness.ws.send_json({"type": "capture_still"})
                try:
                    still = await _answer(witness)
                except RuntimeError as exc:
                    run.results.append(
                        Result(condition, False, time.monotonic() - asked, error=str(exc))
                    )
                else:
                    run.results.append(
                        Result(
                            condition,
                            True,
                            time.monotonic() - asked,
                            source=still["source"],
                            ready_ms=still["ready_ms"],
                            delay_ms=still["delay_ms"],
                            requests=still["keyframe_requests"],
                        )
                    )
                # A witness does not click twice a second.
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            if link is not None:
                link.share = 0.0
            investor.lose_keyframe_requests = 0
            await end_call(client, sid, [witness, investor], extra)
            # The last face scores finish before the files go with the directory.
            scoring = client.app[RUNTIME].witnessing._scoring
            await wait_for(lambda: not scoring, within=60)
        finally:
            await client.close()


async def _answer(witness: media_client.Party) -> dict[str, Any]:
    """The manual still, or RuntimeError with the server's error code."""
    deadline = time.monotonic() + 30
    while True:
        data = await asyncio.wait_for(witness._inbox.get(), deadline - time.monotonic())
        if data.get("type") == "still" and data.get("kind") == "manual":
            return data
        if data.get("type") == "error":
            raise RuntimeError(data["error"]["code"])


def report(run: Run, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {sys.version.split()[0]}")
    print(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
    groups: dict[str, list[Result]] = {c: [] for c in CONDITIONS}
    for r in run.results:
        groups[r.condition].append(r)
    groups["all"] = run.results
    header = (
        f"{'condition':<14}{'stills':>7}{'made':>6}"
        f"{'wait p50':>10}{'p95':>7}{'max':>7}{'ready p50':>11}{'p95':>7}{'max':>7}"
        "  sources"
    )
    print(header)
    for name, results in groups.items():
        if not results:
            continue
        made = [r for r in results if r.ok]
        waits = [r.waited for r in made]
        ready = [r.ready_ms / 1000 for r in made]
        sources = Counter(r.source for r in made)
        print(
            f"{name:<14}{len(results):>7}{len(made):>6}"
            f"{_pct(waits, 0.5):>10.2f}{_pct(waits, 0.95):>7.2f}{max(waits, default=0):>7.2f}"
            f"{_pct(ready, 0.5):>11.2f}{_pct(ready, 0.95):>7.2f}{max(ready, default=0):>7.2f}"
            f"  {dict(sources)}"
        )
    failed = [r for r in run.results if not r.ok]
    if failed:
        print("failures:", Counter(r.error for r in failed))
    delays = [r.delay_ms for r in run.results if r.ok and r.source == "keyframe"]
    if delays:
        print(
            f"keyframe asked for → arrived (delay_ms): p50 {statistics.median(delays):.0f}, "
            f"p95 {_pct(delays, 0.95):.0f}, max {max(delays)}"
        )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stills", type=int, default=200)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--size", default="640x480", help="the investor's picture, WxH")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--never-answer", action="store_true", help="unanswered: no keyframe at all"
    )
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    run = Run()
    load_before = tuple(round(v, 1) for v in os.getloadavg())
    per_call = [args.stills // args.calls] * args.calls
    for i in range(args.stills % args.calls):
        per_call[i] += 1
    for n, count in enumerate(per_call):
        condition = CONDITIONS[n % len(CONDITIONS)]
        started = time.monotonic()
        await one_call(
            condition, count, (width, height), args.seed + n, run, never_answer=args.never_answer
        )
        made = sum(1 for r in run.results if r.condition == condition and r.ok)
        print(
            f"call {n + 1}/{len(per_call)} ({condition}): {count} stills in "
            f"{time.monotonic() - started:.0f} s, {made} made so far in this condition",
            flush=True,
        )
    report(run, load_before, tuple(round(v, 1) for v in os.getloadavg()))
    return 0 if all(r.ok for r in run.results) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
