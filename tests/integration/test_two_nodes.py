"""Two server processes sharing PostgreSQL and Redis: a witness on node A and an investor on
node B are paired and exchange signalling messages (issue: pairing on one node or many)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.call_flow import keep_alive, next_of
from tests.conftest import PG_ADMIN_DSN, REDIS_URL, pg_database, service_missing
from tests.helpers import free_port
from tests.server_config import intake_without_reading_time, write_server_config
from tests.server_process import investor_through_intake, witness_login

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def cluster_database(pg_template: str | None) -> AsyncIterator[str]:
    if pg_template is None:
        service_missing("PostgreSQL", PG_ADMIN_DSN)
    async with pg_database("witness_2n_", template=pg_template) as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, cluster_database: str, redis_prefix: str) -> Iterator[dict[str, Any]]:
    cfg = write_server_config(
        tmp_path / "config.toml",
        db_url=cluster_database,
        recordings=tmp_path / "recordings",
        queue={"backend": "redis"},
        redis={"url": REDIS_URL, "key_prefix": redis_prefix},
        intake={"content_file": str(intake_without_reading_time(tmp_path))},
        identity={"sandbox_latency_ms": 0},
        pairing={
            "dispatch_interval_seconds": 0.1,
            "heartbeat_seconds": 2,
            "witness_presence_ttl_seconds": 10,
        },
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    add = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), "staff", "add", "wang.wei",
         "--name", "王伟", "--roles", "witness", "--employee-number", "E1",
         "--licence", "S0850120090042", "--contract", "--training-passed", "2026-01-05",
         "--password-stdin"],
        input="correct horse battery\n", capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=60,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    nodes: dict[str, Any] = {}
    procs = []
    logs: list[Any] = []
    for name in ("node-a", "node-b"):
        port = free_port()
        node_env = {
            **env,
            "WITNESS_SERVER_NODE_ID": name,
            "WITNESS_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        log = (tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(cfg), "serve", "--port", str(port)],
            cwd=ROOT, env=node_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        logs.append(log)
        procs.append(proc)
        nodes[name] = f"http://127.0.0.1:{port}"
    try:
        yield nodes
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        # Shown by pytest when the test failed: what each node logged.
        for name in ("node-a", "node-b"):
            print(f"--- {name} ---\n" + (tmp_path / f"{name}.log").read_text()[-4000:])


async def _wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    body = await resp.json()
                    assert body["queue"] == "redis"
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base} did not become healthy")


async def test_witness_on_a_investor_on_b_paired_and_signalling(cluster: dict[str, str]) -> None:
    a, b = cluster["node-a"], cluster["node-b"]
    jar_w, jar_i = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar_w) as witness,
        aiohttp.ClientSession(cookie_jar=jar_i) as investor,
    ):
        await _wait_healthy(witness, a)
        await _wait_healthy(investor, b)
        await investor_through_intake(investor, b)
        await witness_login(witness, a)
        inv_ws = await investor.ws_connect(f"{b}/ws/investor")
        assert (await next_of(inv_ws, "queue", within=10))["position"] == 1
        wit_ws = await witness.ws_connect(f"{a}/ws/witness")
        # Like the pages: presence and the queue place last only while pings arrive.
        alive = keep_alive(inv_ws, wit_ws)
        await wit_ws.send_json({"type": "ready"})
        offer = await next_of(wit_ws, "offer", within=10)
        await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
        w_match = await next_of(wit_ws, "matched", within=10)
        i_match = await next_of(inv_ws, "matched", within=10)  # published on A, delivered on B
        sid = w_match["session_id"]
        assert i_match["session_id"] == sid and w_match["node_url"] in (a, b)
        # The witness reaches the node that holds the session; a page that reached the
        # other node still gets its messages across, but no media is answered there.
        owner = w_match["node_url"]
        elsewhere = b if owner == a else a
        w_sess = await witness.ws_connect(f"{owner}/ws/session/{sid}?token={w_match['token']}")
        i_sess = await investor.ws_connect(f"{elsewhere}/ws/session/{sid}?token={i_match['token']}")
        await next_of(w_sess, "peer_joined", within=10)
        await w_sess.send_json({"type": "chat", "text": "from-owner"})
        assert (await next_of(i_sess, "chat", within=10))["text"] == "from-owner"
        await i_sess.send_json({"type": "mute", "audio": True, "video": False})
        assert (await next_of(w_sess, "mute", within=10))["audio"] is True
        await i_sess.send_json(
            {"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}
        )
        assert (await next_of(i_sess, "error", within=10))["error"]["code"] == "wrong_node"
        alive.cancel()
        for ws in (i_sess, w_sess, inv_ws, wit_ws):
            await ws.close()
