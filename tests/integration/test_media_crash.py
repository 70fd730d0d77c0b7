"""A media node killed with SIGKILL mid-call: on restart its open recordings are kept up
to the last ~second, hashed, marked recovered, and the session interrupted (A15, A19)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
from sqlalchemy import select

from server.store.db import make_engine, make_sessionmaker
from server.store.models import Application, AuditEntry, Recording, WitnessSession
from tests.call_flow import keep_alive, next_of
from tests.helpers import free_port
from tests.media_client import Party
from tests.server_config import intake_without_reading_time, write_server_config
from tests.server_process import investor_through_intake, witness_login

ROOT = Path(__file__).resolve().parents[2]
TALK_SECONDS = 6


def _config(tmp_path: Path) -> Path:
    return write_server_config(
        tmp_path / "config.toml",
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}",
        recordings=tmp_path / "recordings",
        intake={"content_file": str(intake_without_reading_time(tmp_path))},
        identity={"sandbox_latency_ms": 0},
        pairing={"dispatch_interval_seconds": 0.1, "heartbeat_seconds": 2},
    )


def _cli(cfg: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _serve(cfg: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "WITNESS_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(cfg), "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def _healthy(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with s.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{base} did not become healthy")


async def test_sigkill_mid_call_then_restart_recovers_the_recordings(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _cli(cfg, "migrate")
    _cli(
        cfg, "staff", "add", "wang.wei", "--name", "王伟", "--roles", "witness",
        "--employee-number", "E1", "--licence", "S0850120090042", "--contract",
        "--training-passed", "2026-01-05", "--password-stdin", stdin="correct horse battery\n",
    )  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = _serve(cfg, port, log)
        try:
            await _healthy(base)
            jars = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
            async with (
                aiohttp.ClientSession(base_url=base, cookie_jar=jars[0]) as witness,
                aiohttp.ClientSession(base_url=base, cookie_jar=jars[1]) as investor,
            ):
                await investor_through_intake(investor, base)
                await witness_login(witness, base)
                inv_ws = await investor.ws_connect("/ws/investor")
                wit_ws = await witness.ws_connect("/ws/witness")
                alive = keep_alive(inv_ws, wit_ws)
                await wit_ws.send_json({"type": "ready"})
                offer = await next_of(wit_ws, "offer", within=10)
                await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
                w_match = await next_of(wit_ws, "matched", within=10)
                i_match = await next_of(inv_ws, "matched", within=10)
                sid = w_match["session_id"]
                parties = [
                    Party(witness, sid, w_match["token"]),
                    Party(investor, sid, i_match["token"]),
                ]
                for party in parties:
                    await party.join()
                await asyncio.gather(*(p.start_media() for p in parties))
                deadline = time.monotonic() + 20
                while not all(p.first_frame_at for p in parties):
                    assert time.monotonic() < deadline, "no media through the server"
                    await asyncio.sleep(0.1)
                media_from = max(p.first_frame_at or 0 for p in parties)
                await asyncio.sleep(TALK_SECONDS)
                proc.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                proc.wait(timeout=10)
                alive.cancel()
                for party in parties:
                    await party.close()
                await inv_ws.close()
                await wit_ws.close()
            talked_ms = (killed_at - media_from) * 1000

            # Restart on the same database and disk.
            proc = _serve(cfg, port, log)
            await _healthy(base)
            engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}")
            db = make_sessionmaker(engine)
            try:
                deadline = time.monotonic() + 30
                while True:
                    # Recovery finalizes the recordings first, then interrupts their
                    # session (separate transactions): wait for both.
                    async with db.begin() as s:
                        recs = (await s.scalars(select(Recording))).all()
                        state = (await s.get(WitnessSession, sid)).state  # type: ignore[union-attr]
                    if recs and all(r.status != "recording" for r in recs) and state != "live":
                        break
                    assert time.monotonic() < deadline, ([r.status for r in recs], state)
                    await asyncio.sleep(0.3)
                async with db.begin() as s:
                    session = await s.get(WitnessSession, sid)
                    app = (await s.scalars(select(Application))).one()
                    actions = (await s.scalars(select(AuditEntry.action))).all()
            finally:
                await engine.dispose()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(log_path.read_text()[-3000:])  # shown when the test fails

    assert sorted((r.participant, r.status) for r in recs) == [
        ("investor", "recovered"),
        ("witness", "recovered"),
    ]
    for rec in recs:
        path = tmp_path / "recordings" / rec.path
        assert rec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert rec.bytes == path.stat().st_size
        with av.open(str(path)) as c:  # decodes end to end
            frames = sum(1 for _ in c.decode(*c.streams.video))
        assert frames == rec.video_frames > 0
        # All but the last ~second before the kill survived.
        assert rec.duration_ms >= talked_ms - 1000, (rec.participant, rec.duration_ms, talked_ms)
    assert session is not None and session.state == "interrupted"
    assert app.state == "queued"  # the investor goes back to the head of the queue
    assert actions.count("recording.recovered") == 2
    assert "session.interrupted" in actions
