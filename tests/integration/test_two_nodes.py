"""Two server processes sharing PostgreSQL and Redis: a witness on node A and an investor on
node B are paired and exchange signalling messages (issue: pairing on one node or many)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.content import DEFAULT_INTAKE_PATH
from tests.conftest import (
    PG_ADMIN_DSN,
    REDIS_URL,
    TEST_DATA_KEY,
    pg_database,
    service_missing,
)
from tests.intake_flow import ZHANG_SAN, jpeg

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cluster_database(pg_template: str | None) -> AsyncIterator[str]:
    if pg_template is None:
        service_missing("PostgreSQL", PG_ADMIN_DSN)
    async with pg_database("witness_2n_", template=pg_template) as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, cluster_database: str, redis_prefix: str) -> Iterator[dict[str, Any]]:
    content = tmp_path / "intake.toml"
    content.write_text(
        re.sub(r"min_read_seconds = \d+", "min_read_seconds = 0", DEFAULT_INTAKE_PATH.read_text())
    )
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[database]
url = "{cluster_database}"
[queue]
backend = "redis"
[redis]
url = "{REDIS_URL}"
key_prefix = "{redis_prefix}"
[storage]
recordings_dir = "{tmp_path / "recordings"}"
[security]
data_key = "{TEST_DATA_KEY}"
create_key_file = false
[intake]
content_file = "{content}"
[identity]
sandbox_latency_ms = 0
[pairing]
dispatch_interval_seconds = 0.1
heartbeat_seconds = 2
witness_presence_ttl_seconds = 10
[logging]
level = "WARNING"
format = "text"
"""
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
        port = _free_port()
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


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            if data.get("type") == kind:
                return data  # type: ignore[no-any-return]


async def _keep_alive(*sockets: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        for ws in sockets:
            with contextlib.suppress(ConnectionError):  # the test is closing it
                if not ws.closed:
                    await ws.send_json({"type": "ping"})
        await asyncio.sleep(0.5)


async def _investor_through_intake(s: aiohttp.ClientSession, base: str) -> str:
    api = f"{base}/api/v1/investor"
    async with s.post(f"{api}/otp", json={"phone": "13800138000"}) as r:
        code = (await r.json())["sandbox_code"]
    async with s.post(f"{api}/session", json={"phone": "13800138000", "code": code}) as r:
        csrf = (await r.json())["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    async with s.put(f"{api}/application/identity", json=ZHANG_SAN, headers=h) as r:
        assert r.status == 200, await r.text()
    for kind in ("id_front", "id_back", "frontal_photo"):
        async with s.put(
            f"{api}/application/documents/{kind}",
            data=jpeg(),
            headers={**h, "Content-Type": "image/jpeg"},
        ) as r:
            assert r.status == 200, await r.text()
    async with s.get(f"{api}/questionnaire") as r:
        q = await r.json()
    answers = {item["id"]: [item["options"][0]["id"]] for item in q["questions"]}
    async with s.put(f"{api}/application/suitability", json={"answers": answers}, headers=h) as r:
        assert r.status == 200
    async with s.get(f"{api}/disclosure") as r:
        version = (await r.json())["version"]
    body = {"version": version, "scrolled_to_end": True}
    async with s.post(f"{api}/application/disclosure", json=body, headers=h) as r:
        assert r.status == 200, await r.text()
    async with s.post(f"{api}/application/submit", json={}, headers=h) as r:
        assert (await r.json())["application"]["state"] == "identity_verified"
    async with s.post(f"{api}/application/queue", json={}, headers=h) as r:
        assert (await r.json())["position"] == 1
    return csrf


async def _witness_login(s: aiohttp.ClientSession, base: str) -> None:
    async with s.get(f"{base}/staff/login", headers={"Accept": "text/html"}) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
    assert token
    form = {"username": "wang.wei", "password": "correct horse battery", "csrf_token": token[1]}
    async with s.post(f"{base}/staff/login", data=form, allow_redirects=False) as r:
        assert r.status == 302


async def test_witness_on_a_investor_on_b_paired_and_signalling(cluster: dict[str, str]) -> None:
    a, b = cluster["node-a"], cluster["node-b"]
    jar_w, jar_i = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar_w) as witness,
        aiohttp.ClientSession(cookie_jar=jar_i) as investor,
    ):
        await _wait_healthy(witness, a)
        await _wait_healthy(investor, b)
        await _investor_through_intake(investor, b)
        await _witness_login(witness, a)
        inv_ws = await investor.ws_connect(f"{b}/ws/investor")
        assert (await _next(inv_ws, "queue"))["position"] == 1
        wit_ws = await witness.ws_connect(f"{a}/ws/witness")
        # Like the pages: presence and the queue place last only while pings arrive.
        alive = asyncio.create_task(_keep_alive(inv_ws, wit_ws))
        await wit_ws.send_json({"type": "ready"})
        offer = await _next(wit_ws, "offer")
        await wit_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
        w_match = await _next(wit_ws, "matched")
        i_match = await _next(inv_ws, "matched")  # published on A, delivered on B
        sid = w_match["session_id"]
        assert i_match["session_id"] == sid and w_match["node_url"] in (a, b)
        # The witness reaches the node that holds the session; a page that reached the
        # other node still gets its messages across, but no media is answered there.
        owner = w_match["node_url"]
        elsewhere = b if owner == a else a
        w_sess = await witness.ws_connect(f"{owner}/ws/session/{sid}?token={w_match['token']}")
        i_sess = await investor.ws_connect(f"{elsewhere}/ws/session/{sid}?token={i_match['token']}")
        await _next(w_sess, "peer_joined")
        await w_sess.send_json({"type": "chat", "text": "from-owner"})
        assert (await _next(i_sess, "chat"))["text"] == "from-owner"
        await i_sess.send_json({"type": "mute", "audio": True, "video": False})
        assert (await _next(w_sess, "mute"))["audio"] is True
        await i_sess.send_json(
            {"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}
        )
        assert (await _next(i_sess, "error"))["error"]["code"] == "wrong_node"
        alive.cancel()
        for ws in (i_sess, w_sess, inv_ws, wit_ws):
            await ws.close()
