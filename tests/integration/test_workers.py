"""``serve --workers 2`` on PostgreSQL and Redis (issue 9: use every core): both workers
register behind one public port, sessions on different workers connect through it (a
socket reaching the other worker is relayed to the owner), and a worker killed mid-call
is restarted, recovers its recordings and puts its investor back in the queue while the
other worker's call goes on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from sqlalchemy import select

from server.queue import create_backend
from server.queue.base import NodeInfo
from server.store.db import make_engine, make_sessionmaker
from server.store.models import Application, AuditEntry, Recording, WitnessSession
from server.web.ws_proxy import RELAYED_BY
from tests.call_flow import KeepAlive, keep_alive, next_of
from tests.conftest import PG_ADMIN_DSN, REDIS_URL, pg_database, service_missing
from tests.intake_flow import ZHANG_SAN, complete_intake, sign_in
from tests.media_client import Party, PatternTrack, ToneTrack
from tests.server_config import intake_without_reading_time, write_server_config

ROOT = Path(__file__).resolve().parents[2]
TALK_SECONDS = 3
T = TypeVar("T")
NODE = "box"
PASSWORD = "correct horse battery"
LI_SI = {
    **ZHANG_SAN,
    "name": "李四",
    "id_number": "110101200001010010",
    "sex": "M",
    "birth_date": "2000-01-01",
}
PEOPLE = (
    ("wang.wei", "王伟", "13800138000", ZHANG_SAN),
    ("li.na", "李娜", "13900139000", LI_SI),
)


def _free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it (the public one, then the workers').

    Taken below the kernel's ephemeral range: the workers bind their ports seconds after
    this probe, and in that time the suite's own outgoing connections take ephemeral
    ports at random (CI once lost a worker to one: "address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    below = (max(1024, low - 12000), low - count) if low > 2048 else (1024, 65536 - count)
    for _ in range(50):
        base = random.randrange(*below)
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise AssertionError("no run of free ports")


def _cli(cfg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip


def _write_config(tmp_path: Path, *, database: str, queue: str, redis_prefix: str) -> Path:
    return write_server_config(
        tmp_path / "config.toml",
        db_url=database,
        recordings=tmp_path / "recordings",
        server={"node_id": NODE},
        queue={"backend": queue},
        redis={"url": REDIS_URL, "key_prefix": redis_prefix},
        intake={"content_file": str(intake_without_reading_time(tmp_path))},
        identity={"sandbox_latency_ms": 0},
        pairing={
            "dispatch_interval_seconds": 0.1,
            "heartbeat_seconds": 2,
            "witness_presence_ttl_seconds": 10,
            "node_ttl_seconds": 3,
        },
    )


@pytest.fixture
async def workers_database(pg_template: str | None) -> AsyncIterator[str]:
    if pg_template is None:
        service_missing("PostgreSQL", PG_ADMIN_DSN)
    async with pg_database("witness_wk_", template=pg_template) as url:
        yield url


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen[bytes]
    database: str
    redis_prefix: str
    log: Path


@pytest.fixture
def two_workers(tmp_path: Path, workers_database: str, redis_prefix: str) -> Iterator[Server]:
    cfg = _write_config(
        tmp_path, database=workers_database, queue="redis", redis_prefix=redis_prefix
    )
    for username, name, _phone, _identity in PEOPLE:
        added = _cli(
            cfg, "staff", "add", username, "--name", name, "--roles", "witness",
            "--employee-number", f"E-{username}", "--licence", "S0850120090042", "--contract",
            "--training-passed", "2026-01-05", "--password-stdin", stdin=f"{PASSWORD}\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    port = _free_ports(3)  # the public port, then worker 0's and worker 1's loopback ports
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(cfg), "serve", "--port", str(port),
             "--workers", "2"],
            cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(
        f"http://127.0.0.1:{port}", port, proc, workers_database, redis_prefix, log_path
    )
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()  # the test stops it cleanly itself; this is only after a failure
            proc.wait(timeout=10)
        for pid in _worker_pids(proc.pid).values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Shown by pytest when the test failed.
        print("--- server ---\n" + log_path.read_text()[-6000:])


def _worker_pids(supervisor: int) -> dict[int, int]:
    """Worker index -> pid of the supervisor's children (from /proc)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"--worker-index" in argv:
            found[int(argv[argv.index(b"--worker-index") + 1])] = int(entry.name)
    return found


async def _live_nodes(server: Server) -> list[NodeInfo]:
    backend = create_backend("redis", redis_url=REDIS_URL, key_prefix=server.redis_prefix)
    try:
        return await backend.live_nodes(now=time.time())
    finally:
        await backend.close()


async def _until(what: str, check: Callable[[], Awaitable[T]], *, within: float = 20.0) -> T:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _healthy(base: str) -> None:
    async with aiohttp.ClientSession() as s:

        async def ok() -> bool:
            try:
                async with s.get(f"{base}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await _until(f"{base} healthy", ok, within=40)


class WorkerParty(Party):
    """A session participant that notes whether its socket was relayed, and rejoins."""

    relayed_by: str | None = None

    async def join(self) -> dict[str, Any]:
        joined = await super().join()
        # The handshake answer of the socket just opened.
        self.relayed_by = self.ws._response.headers.get(RELAYED_BY)
        return joined

    async def rejoin(self, *, media: bool) -> dict[str, Any]:
        """As the page does after its socket dropped: a new socket, a new connection."""
        await self.stop_media()
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        joined = await self.join()
        if media:
            self.video, self.audio = PatternTrack(), ToneTrack()
            await self.start_media()
        return joined

    def frames(self) -> int:
        return self.received["video"]


@dataclass
class Person:
    """A witness or an investor: their own cookies, queue socket and session parties."""

    http: aiohttp.ClientSession
    role: str
    queue_ws: Any = None
    parties: dict[str, WorkerParty] = field(default_factory=dict)

    async def open_queue_socket(self) -> Any:
        if self.queue_ws is not None and not self.queue_ws.closed:
            await self.queue_ws.close()
        self.queue_ws = await self.http.ws_connect(f"/ws/{self.role}")
        return self.queue_ws


async def _investor_queued(http: aiohttp.ClientSession, phone: str, identity: Any) -> None:
    inv, _ = await sign_in(http, phone)
    await complete_intake(inv, identity)
    resp = await inv.post("/application/submit")
    assert (await resp.json())["application"]["state"] == "identity_verified"
    resp = await inv.post("/application/queue")
    assert resp.status == 200, await resp.text()


async def _witness_login(http: aiohttp.ClientSession, username: str) -> None:
    async with http.get("/staff/login", headers={"Accept": "text/html"}) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
    assert token
    form = {"username": username, "password": PASSWORD, "csrf_token": token[1]}
    async with http.post("/staff/login", data=form, allow_redirects=False) as r:
        assert r.status == 302


async def _offer(ws: Any) -> dict[str, Any]:
    """Go ready and take the next offer. Refused while the witness is still busy with a
    session the server is ending (recovery runs in the background): try again."""
    async with asyncio.timeout(20):
        await ws.send_json({"type": "ready"})
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = msg.json()
            if data.get("type") == "offer":
                return data
            if data.get("type") == "error":
                await asyncio.sleep(0.3)
                await ws.send_json({"type": "ready"})


async def _match(witness: Person, investor: Person) -> tuple[str, str, str]:
    """Witness ready → offer → accept; (session id, witness token, investor token)."""
    offer = await _offer(witness.queue_ws)
    await witness.queue_ws.send_json({"type": "accept", "offer_id": offer["offer_id"]})
    w_match = await next_of(witness.queue_ws, "matched", within=10)
    sid = w_match["session_id"]
    # A reconnected queue socket is first told of the session it was in, if still open.
    while (i_match := await next_of(investor.queue_ws, "matched", within=10))["session_id"] != sid:
        pass
    return sid, w_match["token"], i_match["token"]


async def _join(sid: str, tokens: tuple[str, str], witness: Person, investor: Person) -> None:
    witness.parties[sid] = WorkerParty(witness.http, sid, tokens[0])
    investor.parties[sid] = WorkerParty(investor.http, sid, tokens[1])
    for person in (witness, investor):
        await person.parties[sid].join()


async def _media(sid: str, *people: Person) -> None:
    parties = [p.parties[sid] for p in people]
    await asyncio.gather(*(p.start_media() for p in parties))

    async def flowing() -> bool:
        return all(p.first_frame_at for p in parties)

    await _until(f"media in session {sid}", flowing)


async def _flows_on(parties: list[WorkerParty], seconds: float = 2.0) -> None:
    before = [p.frames() for p in parties]

    async def grew() -> bool:
        return all(p.frames() > b + 10 for p, b in zip(parties, before, strict=True))

    await _until("media to keep flowing", grew, within=seconds + 15)


async def test_two_workers_one_port_handoff_and_a_killed_worker(two_workers: Server) -> None:
    server = two_workers
    engine = make_engine(server.database)
    db = make_sessionmaker(engine)

    async def owner_of(sid: str) -> str:
        async with db.begin() as s:
            ws = await s.get(WitnessSession, sid)
            assert ws is not None
            return ws.node_id

    jars = [aiohttp.CookieJar(unsafe=True) for _ in range(4)]
    sessions = [aiohttp.ClientSession(base_url=server.base, cookie_jar=jar) for jar in jars]
    pings: asyncio.Task[None] | None = None
    people: list[Person] = []
    try:
        async with asyncio.timeout(85):
            await _healthy(server.base)
            public = f"http://127.0.0.1:{server.port}"

            async def both_registered() -> list[NodeInfo]:
                nodes = await _live_nodes(server)
                return nodes if len(nodes) == 2 else []

            nodes = await _until("two workers registered", both_registered)
            assert [n.node_id for n in nodes] == [f"{NODE}-w0", f"{NODE}-w1"]
            assert all(n.url == public for n in nodes)  # one public URL for every worker
            assert [n.internal_url for n in nodes] == [
                f"http://127.0.0.1:{server.port + 1}",
                f"http://127.0.0.1:{server.port + 2}",
            ]
            assert {n.machine for n in nodes} == {socket.gethostname()}
            pids = _worker_pids(server.proc.pid)
            assert sorted(pids) == [0, 1]

            witnesses = [Person(sessions[0], "witness"), Person(sessions[1], "witness")]
            investors = [Person(sessions[2], "investor"), Person(sessions[3], "investor")]
            people += [*witnesses, *investors]

            def keep_all_alive() -> KeepAlive:
                return keep_alive(*(p.queue_ws for p in people))

            for (username, _name, phone, identity), w, i in zip(
                PEOPLE, witnesses, investors, strict=True
            ):
                await _witness_login(w.http, username)
                await _investor_queued(i.http, phone, identity)
                await w.open_queue_socket()
                await i.open_queue_socket()
            pings = keep_all_alive()

            # -- session 1: on the least loaded worker (a tie: the first id) -----------------
            # First come, first served: witness 1 is not ready yet, so investor 0 is taken.
            sid1, w_tok, i_tok = await _match(witnesses[0], investors[0])
            await _join(sid1, (w_tok, i_tok), witnesses[0], investors[0])
            owner1 = await owner_of(sid1)
            # The kernel picks the worker per connection: reconnect until one socket went
            # through the other worker, so the hand-off is exercised on every run.
            for _ in range(30):
                if any(p.parties[sid1].relayed_by for p in (witnesses[0], investors[0])):
                    break
                await investors[0].parties[sid1].rejoin(media=False)
            relayed = {p.parties[sid1].relayed_by for p in (witnesses[0], investors[0])}
            others = {n.node_id for n in nodes} - {owner1}
            assert relayed & others, "no socket was ever relayed"
            assert relayed <= others | {None}  # relayed by the other worker, never by the owner
            await _media(sid1, witnesses[0], investors[0])

            async def owner1_loaded() -> bool:
                loads = {n.node_id: n.load for n in await _live_nodes(server)}
                return loads.get(owner1, 0) >= 2  # both parties' sockets

            await _until("session 1's sockets counted as load", owner1_loaded)

            # -- session 2: the other worker, now the least loaded ---------------------------
            sid2, w_tok, i_tok = await _match(witnesses[1], investors[1])
            owner2 = await owner_of(sid2)
            assert {owner1, owner2} == {f"{NODE}-w0", f"{NODE}-w1"}
            await _join(sid2, (w_tok, i_tok), witnesses[1], investors[1])
            await _media(sid2, witnesses[1], investors[1])
            s2 = [witnesses[1].parties[sid2], investors[1].parties[sid2]]

            # -- SIGKILL the worker owning session 1 -----------------------------------------
            await asyncio.sleep(TALK_SECONDS)  # something on disk to recover
            victim = int(owner1.rsplit("-w", 1)[1])
            print(
                f"session 1 on {owner1}, session 2 on {owner2}; relayed by:",
                [p.relayed_by for p in s2],
            )
            os.kill(pids[victim], signal.SIGKILL)
            pings.cancel()
            # Pages reconnect at once: the queue sockets (any may have been on the victim;
            # a busy witness's console must stay present) and a session-2 socket the
            # victim was relaying.
            for person in people:
                await person.open_queue_socket()
            pings = keep_all_alive()
            for party in s2:
                if party.relayed_by == owner1:
                    await _until("the relayed socket to drop", _closed(party))
                    await party.rejoin(media=True)
            await _flows_on(s2)  # session 2 goes on on the other worker

            async def restarted() -> dict[int, int]:
                now = _worker_pids(server.proc.pid)
                return now if now.get(victim, pids[victim]) != pids[victim] else {}

            await _until("the supervisor to restart the worker", restarted)

            async def recovered() -> list[Recording]:
                async with db.begin() as s:
                    recs = list(
                        (
                            await s.scalars(select(Recording).where(Recording.session_id == sid1))
                        ).all()
                    )
                    session = await s.get(WitnessSession, sid1)
                    assert session is not None
                done = session.state == "interrupted" and all(r.status != "recording" for r in recs)
                return recs if recs and done else []

            # Only the restarted worker can have done it: its sibling's recovery ran once,
            # at its own start, while the victim was alive.
            recs = await _until("session 1 recovered", recovered, within=30)
            assert {(r.participant, r.status) for r in recs} == {
                ("investor", "recovered"),
                ("witness", "recovered"),
            }
            assert all(r.node_id == owner1 and r.video_frames > 0 for r in recs)
            async with db.begin() as s:
                session1 = await s.get(WitnessSession, sid1)
                session2 = await s.get(WitnessSession, sid2)
                assert session1 is not None and session2 is not None
                app1 = await s.get(Application, session1.application_id)
                assert app1 is not None
                actions = (await s.scalars(select(AuditEntry.action))).all()
                open2 = (
                    await s.scalars(
                        select(Recording.status).where(
                            Recording.session_id == sid2, Recording.status == "recording"
                        )
                    )
                ).all()
            assert app1.state == "queued"  # back in the queue
            assert session2.state == "live" and open2  # still recording on its worker
            assert actions.count("recording.recovered") == len(recs)
            await _flows_on(s2)

            # -- a new session on a live worker ----------------------------------------------
            for party in (witnesses[0].parties[sid1], investors[0].parties[sid1]):
                await party.close()
            sid3, w_tok, i_tok = await _match(witnesses[0], investors[0])
            owner3 = await owner_of(sid3)
            assert owner3 in {n.node_id for n in await _live_nodes(server)}
            await _join(sid3, (w_tok, i_tok), witnesses[0], investors[0])
            await _media(sid3, witnesses[0], investors[0])
            await _flows_on(s2)

            # -- SIGTERM: forwarded to the workers, a clean stop -----------------------------
            pings.cancel()
            for person in people:
                for party in person.parties.values():
                    await party.close()
                await person.queue_ws.close()
            running = _worker_pids(server.proc.pid)
            server.proc.terminate()
            code = await asyncio.to_thread(server.proc.wait, 40)
            assert code == 0
            assert not _alive(running.values())  # stopped and reaped
            assert "restarting in" in server.log.read_text()
    finally:
        if pings is not None:
            pings.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pings
        for person in people:
            for party in person.parties.values():
                with contextlib.suppress(Exception):
                    await party.close()
        for http in sessions:
            await http.close()
        await engine.dispose()


def _alive(pids: Any) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _closed(party: WorkerParty) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(party.ws.closed)

    return check


@pytest.mark.parametrize(
    ("database", "queue"),
    [
        ("sqlite+aiosqlite:///witness.db", "redis"),
        ("postgresql+asyncpg://witness@127.0.0.1:1/witness", "memory"),
    ],
)
def test_more_than_one_worker_needs_redis_and_postgresql(
    tmp_path: Path, database: str, queue: str
) -> None:
    cfg = _write_config(tmp_path, database=database, queue=queue, redis_prefix="unused:")
    refused = _cli(cfg, "serve", "--workers", "2")
    assert refused.returncode == 2
    assert "server.workers" in refused.stderr
    assert 'queue.backend = "redis"' in refused.stderr and "PostgreSQL" in refused.stderr
    # One worker (the default) is today's single process, refused for nothing of this.
    assert "server.workers" not in _cli(cfg, "check-config").stderr
