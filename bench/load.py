"""Load benchmark (issue 9): N synthetic two-way sessions against a real deployment,
through the real intake, queue, signalling and media paths, with the naive aiortc
pipeline measured the same way in the same run.

    python -m bench.load                       # 8 sessions ours, naive at 1 and 2, 30 s windows
    python -m bench.load --sessions 8 --naive-sessions 1 2 --seconds 30 --workers 0
    python -m bench.load --soak 600 --soak-concurrency 4   # sessions start and end for 10 min

Each case starts a fresh server (its own database, Redis prefix and recordings directory)
with ``python -m server serve`` (``--workers N`` when asked: one process per core behind
one port; needs PostgreSQL and Redis), takes each investor through the intake API and
each witness through the desk socket, and lets the queue pair them. The parties are
aiortc clients in separate processes (``--client-processes``) that send pre-encoded
640×480 @ 15 fps VP8 + Opus and count what arrives without decoding it. Over a steady
window it reads the CPU time of every server process from /proc; afterwards it reads
what the server forwarded and recorded from its database and decodes every recording end
to end. Loopback only; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import av
from prometheus_client.parser import text_string_to_metric_families

from bench import memtrace
from bench.clients import (
    Identity,
    Party,
    PartyStats,
    accept_next_offer,
    encode_clip,
    identity,
    investor_ready,
    join_queue,
    next_message,
    run_script,
    spot_check,
    witness_login,
)
from server.config import usable_cores
from server.content import DEFAULT_INTAKE_PATH
from server.media import hooks

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WITNESS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WITNESS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "benchmark password"  # noqa: S105 - throwaway accounts in a temp database


# ── the deployment under test ──────────────────────────────────────────────────────────
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _proc_tree(root: int) -> list[int]:
    """``root`` and every process below it (the supervisor's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of these processes. System time is the kernel's work
    on the process's behalf: on loopback that includes delivering each datagram sent."""
    user = system = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def _rss_mb(pids: list[int]) -> float:
    return sum(memtrace.rss_bytes(pid) for pid in pids) / 2**20


@dataclass
class Case:
    label: str
    sessions: int
    pipeline: str = "passthrough"
    workers: int = 1
    loop: str = "asyncio"
    # media.audio_packet_ms for the server (None: its configured default).
    audio_packet_ms: int | None = None


class Deployment:
    def __init__(self, case: Case, *, use_cluster: bool, witnesses: int, investors: int) -> None:
        self.case = case
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
        self.use_cluster = use_cluster
        self.db_name = f"bench_{uuid.uuid4().hex[:10]}"
        base, _, _ = PG_ADMIN.rpartition("/")
        pg = base.replace("postgresql://", "postgresql+asyncpg://") + f"/{self.db_name}"
        self.database_url = pg if use_cluster else f"sqlite+aiosqlite:///{self.tmp / 'bench.db'}"
        self.prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        self.witnesses = [f"bench.w{n}" for n in range(witnesses)]
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        # bench/memtrace.py: the server traced by tracemalloc, snapshots written here.
        self.memtrace: Path | None = None
        # --server-cpus: the server's processes kept to these CPUs (None: anywhere).
        self.server_cpus: set[int] | None = None
        self.cfg = self.tmp / "config.toml"
        self._write_config(investors)

    def _write_config(self, investors: int) -> None:
        content = self.tmp / "intake.toml"
        content.write_text(
            re.sub(
                r"min_read_seconds = \d+", "min_read_seconds = 0", DEFAULT_INTAKE_PATH.read_text()
            )
        )
        people = self.tmp / "identities.csv"
        people.write_text(
            "".join(f"{p.name},{p.id_number}\n" for p in map(identity, range(investors))),
            encoding="utf-8",
        )
        backend = "redis" if self.use_cluster else "memory"
        self.cfg.write_text(
            f"""
[server]
port = {self.port}
[database]
url = "{self.database_url}"
[queue]
backend = "{backend}"
[redis]
url = "{REDIS_URL}"
key_prefix = "{self.prefix}"
[storage]
recordings_dir = "{self.tmp / "recordings"}"
[security]
data_key = "{base64.b64encode(os.urandom(32)).decode()}"
create_key_file = false
[intake]
content_file = "{content}"
otp_per_ip_per_hour = 1000000
otp_per_phone_per_hour = 1000
writes_per_ip_per_minute = 1000000
# Calls are what is measured; the pre-call check has its own tests (issue 16).
require_network_check = false
[identity]
sandbox_latency_ms = 0
sandbox_identities_file = "{people}"
[sms]
sandbox_latency_ms = 0
[pairing]
dispatch_interval_seconds = 0.2
[media]
host_addresses = ["127.0.0.1"]
pipeline = "{self.case.pipeline}"
[logging]
level = "WARNING"
format = "text"
"""
        )

    def _cli(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "server", "--config", str(self.cfg), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"server {' '.join(args)}: {done.stderr.strip()[-2000:]}")

    async def prepare(self) -> None:
        if self.use_cluster:
            import asyncpg

            conn = await asyncpg.connect(PG_ADMIN)
            try:
                await conn.execute(f'CREATE DATABASE "{self.db_name}"')
            finally:
                await conn.close()
        self._cli("migrate")
        await self._add_witnesses()

    async def _add_witnesses(self) -> None:
        # In-process rather than one CLI call per witness (argon2 + start-up each).
        from server.config import load_config
        from server.domain.staff import Role
        from server.services import staff as staff_service
        from server.services.runtime import open_runtime

        cfg = load_config(self.cfg)
        async with open_runtime(cfg) as rt, rt.db.begin() as tx:
            for n, username in enumerate(self.witnesses):
                await staff_service.create_staff(
                    tx=tx,
                    new=staff_service.NewStaff(
                        username=username,
                        display_name=f"压测见证{n}",
                        password=PASSWORD,
                        roles=frozenset({Role.WITNESS}),
                        employee_number=f"B{n:04d}",
                        licence_number="S0850120090042",
                        has_labour_contract=True,
                        training_passed_on=date(2026, 1, 5),
                        is_marketing=False,
                        phone=None,
                        id_number=None,
                        skills=frozenset(),
                    ),
                    protector=rt.protector,
                    actor="bench",
                )

    def start(self) -> None:
        env = {**os.environ, "WITNESS_SERVER_PUBLIC_URL": self.base}
        if self.case.loop != "asyncio":
            env["WITNESS_SERVER_EVENT_LOOP"] = self.case.loop
        if self.case.audio_packet_ms is not None:
            env["WITNESS_MEDIA_AUDIO_PACKET_MS"] = str(self.case.audio_packet_ms)
        module = "server"
        if self.memtrace is not None:
            env[memtrace.DIR_ENV] = str(self.memtrace)
            module = "bench.memtrace"
        cmd = [sys.executable, "-m", module, "--config", str(self.cfg), "serve"]
        if self.case.workers != 1:
            cmd += ["--workers", str(self.case.workers)]
        self.log = (self.tmp / "server.log").open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        if self.server_cpus is not None:
            # Before it forks any worker: they inherit it.
            os.sched_setaffinity(self.proc.pid, self.server_cpus)

    async def healthy(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"server not healthy in {within} s: {self.tail()}")
        # With workers, wait until every worker is up (each has a process of its own).
        want = self.case.workers if self.case.workers > 0 else usable_cores()
        while self.case.workers != 1 and len(self.pids()) < want + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not all start")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0 if self.case.workers == 1 else 3.0)  # nodes registered

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / "server.log").read_text(errors="replace")[-3000:]
        return ""

    async def memory_snapshot(self) -> Path | None:
        """Ask the traced server for a tracemalloc snapshot and wait until it is written."""
        if self.memtrace is None or self.proc is None:
            return None
        before = set(self.memtrace.glob("snap-*.done"))
        self.proc.send_signal(signal.SIGUSR2)
        for _ in range(600):
            new = set(self.memtrace.glob("snap-*.done")) - before
            if new:
                return new.pop().with_suffix(".bin")
            await asyncio.sleep(0.1)
        raise RuntimeError("the traced server wrote no snapshot in 60 s")

    def pids(self) -> list[int]:
        assert self.proc is not None
        return _proc_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()

    async def start_settled(self, sessions: int, limit: float = 120.0, quiet: float = 8.0) -> int:
        """Wait until the sessions' one-off start-up work is done, so that the window
        measures streaming alone: each session's automatic still is scored by the face
        aid (``face.scored``), dlib work of up to ~1 s a session that, queued behind
        the others', ran seconds into the window (issue 21, seventh session). Stops when
        every session has its score, when none came for ``quiet`` seconds (no face aid,
        the naive path), or at ``limit``. Returns how many scores there were."""
        from sqlalchemy import func, select

        from server.store.db import make_engine, make_sessionmaker
        from server.store.models import SessionEvent

        engine = make_engine(self.database_url)
        sessionmaker = make_sessionmaker(engine)
        deadline = time.monotonic() + limit
        seen, changed = -1, time.monotonic()
        try:
            while True:
                async with sessionmaker() as s:
                    count = await s.scalar(
                        select(func.count()).where(SessionEvent.kind == "face.scored")
                    )
                count = int(count or 0)
                now = time.monotonic()
                if count != seen:
                    seen, changed = count, now
                if count >= sessions or now - changed > quiet or now > deadline:
                    return count
                await asyncio.sleep(0.5)
        finally:
            await engine.dispose()

    async def read_results(self) -> dict[str, Any]:
        """What the server says it forwarded and recorded, and whether every recording
        decodes end to end with the frame count the server recorded."""
        from sqlalchemy import select

        from server.store.db import make_engine, make_sessionmaker
        from server.store.models import Recording, SessionEvent

        engine = make_engine(self.database_url)
        try:
            async with make_sessionmaker(engine)() as s:
                recs = (await s.scalars(select(Recording))).all()
                events = (
                    await s.scalars(
                        select(SessionEvent).where(SessionEvent.kind == "media.disconnected")
                    )
                ).all()
                rows = [(r.path, r.status, r.video_frames or 0) for r in recs]
                outs = [e.payload for e in events]
        finally:
            await engine.dispose()
        frames_in = sum(int(p.get("frames_in", {}).get("video", 0)) for p in outs)
        forwarded = sum(int(p.get("frames_out", {}).get("video", 0)) for p in outs)
        dropped = sum(int(p.get("frames_dropped", {}).get("video", 0)) for p in outs)
        root = self.tmp / "recordings"
        ok, recorded, problems = 0, 0, []
        if self.case.pipeline == "naive":
            rows = [(str(p.relative_to(root)), "naive", -1) for p in root.rglob("naive-*.mp4")]
        for path, status, frames in rows:
            try:
                decoded = await asyncio.to_thread(_decode_all, root / path)
            except Exception as exc:
                problems.append(f"{path}: {exc}")
                continue
            if status == "naive" and decoded > 0:
                ok, recorded = ok + 1, recorded + decoded
            elif status == "complete" and decoded == frames:
                ok, recorded = ok + 1, recorded + frames
            else:
                problems.append(f"{path}: {status}, {decoded} of {frames} frames decode")
        return {
            # The naive pipeline has no tap: the server's counts are not known there.
            "server_in": frames_in if self.case.pipeline != "naive" else None,
            "forwarded": forwarded if self.case.pipeline != "naive" else None,
            "relay_dropped": dropped,
            "recordings": len(rows),
            "recordings_ok": ok,
            "recorded_frames": recorded,
            "problems": problems,
        }

    async def cleanup(self, keep: bool = False) -> None:
        if keep:
            print(f"# kept {self.tmp} (database {self.db_name})", flush=True)
            return
        if self.use_cluster:
            import asyncpg
            import redis.asyncio as aioredis

            conn = await asyncpg.connect(PG_ADMIN)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            finally:
                await conn.close()
            client = aioredis.Redis.from_url(REDIS_URL)
            async for key in client.scan_iter(match=f"{self.prefix}*"):
                await client.delete(key)
            await client.aclose()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _decode_all(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(*c.streams.video))


# ── client processes ───────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class ClientSpec:
    base: str
    slots: list[int]  # session slots this process drives (investor + witness each)
    witnesses: list[str]
    mode: str  # "steady" | "soak"
    stagger: float
    soak_seconds: float = 0.0
    session_seconds: float = 20.0
    total_slots: int = 0
    per_slot: int = 0  # soak: identities each slot may use
    light: bool = True  # bench/light.py parties (False: full aiortc clients)
    face: bool = False  # the video and the ID images show a face (the face aid works)


def _client_process(spec: ClientSpec, out: Any, go: Any, stop: Any) -> None:
    hooks.restrict_host_addresses(["127.0.0.1"])  # loopback only, like the server
    try:
        asyncio.run(_clients(spec, out, go, stop))
    except Exception as exc:
        out.put(("error", repr(exc)))


async def _pinger(sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    # Queue sockets: the witness's ping is its presence heartbeat.
    while True:
        for ws in sockets:
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json({"type": "ping"})
        await asyncio.sleep(3)


def _http(base: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _clients(spec: ClientSpec, out: Any, go: Any, stop: Any) -> None:
    clip = encode_clip(face=spec.face)
    if spec.mode == "soak":
        await _soak(spec, out, go, clip)
        return
    https: list[aiohttp.ClientSession] = []
    queues: list[aiohttp.ClientWebSocketResponse] = []
    prepared: list[tuple[aiohttp.ClientSession, dict[str, str], aiohttp.ClientSession, Any]] = []
    try:
        for slot in spec.slots:
            inv, wit = _http(spec.base), _http(spec.base)
            https += [inv, wit]
            headers = await investor_ready(inv, identity(slot), face=spec.face)
            await witness_login(wit, spec.witnesses[slot])
            wit_ws = await wit.ws_connect("/ws/witness")
            await wit_ws.send_json({"type": "ready"})
            queues.append(wit_ws)
            prepared.append((inv, headers, wit, wit_ws))
        pinger = asyncio.create_task(_pinger(queues))
        out.put(("prepared", len(prepared)))
        await asyncio.to_thread(go.wait)
        parties: list[Party] = []

        async def investor(n: int, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
            await asyncio.sleep(n * spec.stagger)
            ws = await http.ws_connect("/ws/investor")
            queues.append(ws)
            joined = time.monotonic()
            await join_queue(http, headers)
            matched = await next_message(ws, "matched", 90)
            party = Party(http, "investor", matched, lightweight=spec.light)
            party.stats.joined_queue_at = joined
            parties.append(party)
            await party.start(*clip)

        async def witness(slot: int, http: aiohttp.ClientSession, ws: Any) -> None:
            matched = await accept_next_offer(ws, 120, slot=slot)
            party = Party(http, "witness", matched, lightweight=spec.light)
            parties.append(party)
            await party.start(*clip)

        await asyncio.gather(
            *(investor(slot, p[0], p[1]) for slot, p in zip(spec.slots, prepared, strict=True)),
            *(witness(slot, p[2], p[3]) for slot, p in zip(spec.slots, prepared, strict=True)),
        )
        async with asyncio.timeout(60):
            while not all(p.stats.first_frame_at for p in parties):
                await asyncio.sleep(0.05)
        out.put(("flowing", len(parties)))
        await asyncio.to_thread(stop.wait)
        for party in parties:
            party.pause()
        await asyncio.sleep(2.0)  # frames in flight arrive
        stats = [await p.snapshot() for p in parties]
        out.put(("result", [_stats_dict(s) for s in stats]))
        pinger.cancel()
        for party in parties:
            await party.close()
    finally:
        for ws in queues:
            await ws.close()
        for http in https:
            await http.close()


def _stats_dict(s: PartyStats) -> dict[str, Any]:
    d = asdict(s)
    d["spot_ok"] = spot_check(s.spot)
    del d["spot"]
    return d


async def _soak(spec: ClientSpec, out: Any, go: Any, clip: tuple[list[bytes], list[bytes]]) -> None:
    """Sessions start and end until the soak is over: each slot's investor goes through
    intake, waits, has a call of ``session_seconds`` and a full script to a pass verdict;
    then the next investor of the slot comes. Witnesses go ready again after wrap-up."""
    out.put(("prepared", len(spec.slots)))
    await asyncio.to_thread(go.wait)
    deadline = time.monotonic() + spec.soak_seconds
    results: list[dict[str, Any]] = []

    async def witness_loop(slot: int) -> None:
        try:
            await witness_session(slot)
        except Exception as exc:
            # A witness slot that stops leaves its investors waiting until they time out;
            # say why, with the time, so a soak's log shows the cause.
            print(
                f"# {time.strftime('%H:%M:%S')} witness slot {slot} stopped: {exc!r}",
                file=sys.stderr,
                flush=True,
            )
            raise

    async def witness_session(slot: int) -> None:
        async with _http(spec.base) as http:
            await witness_login(http, spec.witnesses[slot])
            async with http.ws_connect("/ws/witness") as ws:
                pinger = asyncio.create_task(_pinger([ws]))
                try:
                    while time.monotonic() < deadline:
                        await ws.send_json({"type": "ready"})
                        try:
                            matched = await accept_next_offer(
                                ws, max(1, deadline - time.monotonic()), slot=slot
                            )
                        except TimeoutError:
                            return
                        party = Party(http, "witness", matched, lightweight=spec.light)
                        try:
                            await party.start(*clip)
                            await asyncio.sleep(spec.session_seconds)
                            await run_script(party)
                        except Exception as exc:
                            # A failed call is counted on the investor's side; the witness
                            # ends it and takes the next one, as a person at the desk would
                            # (before, one failure silenced the slot for the rest of a soak).
                            print(
                                f"# {time.strftime('%H:%M:%S')} witness slot {slot}: "
                                f"session failed: {exc!r}",
                                file=sys.stderr,
                                flush=True,
                            )
                            with contextlib.suppress(Exception):
                                await ws.send_json({"type": "end", "session_id": party.session_id})
                        finally:
                            await party.close()
                finally:
                    pinger.cancel()

    async def investor_loop(slot: int) -> None:
        n = 0
        while time.monotonic() < deadline - spec.session_seconds and n < spec.per_slot:
            who: Identity = identity(spec.total_slots * n + slot)
            n += 1
            record: dict[str, Any] = {"slot": slot, "ok": False}
            try:
                async with _http(spec.base) as http:
                    headers = await investor_ready(http, who, face=spec.face)
                    async with http.ws_connect("/ws/investor") as ws:
                        joined = time.monotonic()
                        await join_queue(http, headers)
                        matched = await next_message(ws, "matched", 120)
                        party = Party(http, "investor", matched, lightweight=spec.light)
                        try:
                            await party.start(*clip)
                            await asyncio.wait_for(party.ended.wait(), spec.session_seconds + 60)
                            stats = await party.snapshot()
                            record.update(
                                ok=True,
                                join_to_media=(stats.first_frame_at or joined) - joined,
                                video_received=stats.video_received,
                            )
                        finally:
                            await party.close()
            except Exception as exc:
                record["error"] = repr(exc)[:300]
            results.append(record)

    await asyncio.gather(
        *(witness_loop(s) for s in spec.slots),
        *(investor_loop(s) for s in spec.slots),
        return_exceptions=True,
    )
    out.put(("result", results))


def _collect(out: Any, kind: str, count: int, within: float) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        try:
            message = out.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue_mod.Empty:
            raise RuntimeError(f"clients: {len(got)} of {count} '{kind}' in {within} s") from None
        if message[0] == "error":
            raise RuntimeError(f"client process failed: {message[1]}")
        if message[0] == kind:
            got.append(message[1])
    return got


def _spawn_clients(
    specs: list[ClientSpec],
) -> tuple[list[Any], Any, Any, Any]:
    ctx = mp.get_context("spawn")
    out, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_client_process, args=(s, out, go, stop)) for s in specs]
    for p in procs:
        p.start()
    return procs, out, go, stop


def _split(slots: list[int], parts: int) -> list[list[int]]:
    return [part for part in (slots[i::parts] for i in range(parts)) if part]


# ── one case ───────────────────────────────────────────────────────────────────────────
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def _running(dep: Deployment, procs: list[Any], keep: bool) -> AsyncIterator[None]:
    """The deployment started and healthy; on the way out the client processes in
    ``procs`` are killed if still alive, the server stopped and its data removed (the
    server log printed if anything failed)."""
    try:
        await dep.prepare()
        dep.start()
        await dep.healthy()
        yield
    except BaseException:
        print(dep.tail(), file=sys.stderr)
        raise
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        dep.stop()
        await dep.cleanup(keep)


async def run_case(case: Case, args: argparse.Namespace, use_cluster: bool) -> dict[str, Any]:
    dep = Deployment(
        case, use_cluster=use_cluster, witnesses=case.sessions, investors=case.sessions
    )
    dep.server_cpus = args.server_cpus
    if args.memtrace:
        label = re.sub(r"[^a-z0-9]+", "-", f"{case.label}-{case.sessions}".lower())
        dep.memtrace = Path(args.memtrace) / label
    procs: list[Any] = []
    memory: str | None = None
    async with _running(dep, procs, args.keep):
        rss_idle = _rss_mb(dep.pids())
        snap_idle = await dep.memory_snapshot()
        specs = [
            ClientSpec(
                dep.base,
                part,
                dep.witnesses,
                "steady",
                args.stagger,
                total_slots=case.sessions,
                light=args.clients == "light",
                face=args.face,
            )
            for part in _split(list(range(case.sessions)), args.client_processes)
        ]
        spawned, out, go, stop = _spawn_clients(specs)
        procs += spawned
        await asyncio.to_thread(_collect, out, "prepared", len(specs), 300)
        cpu_go, t_go = sum(_cpu_split(dep.pids())), time.monotonic()
        go.set()
        await asyncio.to_thread(_collect, out, "flowing", len(specs), 180)
        # Every party has joined: the server's own account of the joins.
        joining = await _server_side(dep) if case.workers == 1 else {}
        t_flowing = time.monotonic()
        scored = await dep.start_settled(case.sessions) if args.settle else None
        start = {
            "settled_after": time.monotonic() - t_flowing if args.settle else None,
            "face_scores": scored,
            # Intake, pairing, handshakes, the automatic still and its face score, and
            # the streaming meanwhile: an upper bound of what starting a session costs.
            "start_cpu_s_per_session": (sum(_cpu_split(dep.pids())) - cpu_go) / case.sessions,
            "start_seconds": time.monotonic() - t_go,
        }
        await asyncio.sleep(args.warmup)
        pids = dep.pids()
        profilers = _start_profilers(args.profile, case, pids, args.seconds)
        (user0, sys0), t0 = _cpu_split(pids), time.monotonic()
        await asyncio.sleep(args.seconds)
        (user1, sys1), t1 = _cpu_split(pids), time.monotonic()
        cpu0, cpu1 = user0 + sys0, user1 + sys1
        for profiler in profilers:
            await asyncio.to_thread(profiler.wait, 60)
        rss = _rss_mb(dep.pids())
        snap_load = await dep.memory_snapshot()
        if snap_idle is not None and snap_load is not None:
            memory = memtrace.report(snap_idle, snap_load, case.sessions, 25)
            print(f"# {case.label} {case.sessions}: RSS {rss_idle:.0f} → {rss:.0f} MB\n{memory}")
        stop.set()
        results = [s for batch in await asyncio.to_thread(_collect, out, "result", len(specs), 120)
                   for s in batch]  # fmt: skip
        for p in procs:
            p.join(30)
        # The parties are gone: their legs close and the recordings are finalized (the
        # naive recorder flushes x264's look-ahead, which takes a while under load).
        await asyncio.sleep(6.0 if case.pipeline == "naive" else 2.0)
        dep.stop()
        server = await dep.read_results()
    sent = sum(r["video_sent"] for r in results)
    received = sum(r["video_received"] for r in results)
    lost = sum(r["packets_lost"] for r in results)
    packets = sum(r["packets_received"] for r in results) + lost
    joins = [r["first_frame_at"] - r["joined_queue_at"] for r in results if r["joined_queue_at"]]
    investors = [r for r in results if r["joined_queue_at"] and r["answered_at"]]
    join_stages = {
        stage: _pct([r[end] - r[start] for r in investors], 0.95)
        for stage, start, end in (
            ("queue → matched", "joined_queue_at", "matched_at"),
            ("matched → SDP answer", "matched_at", "answered_at"),
            ("answer → first frame", "answered_at", "first_frame_at"),
        )
    }
    return {
        "case": case.label,
        "pipeline": case.pipeline,
        "workers": case.workers,
        "loop": case.loop,
        "audio_packet_ms": case.audio_packet_ms,
        "sessions": case.sessions,
        "server_processes": len(pids),
        "cpu_per_session": (cpu1 - cpu0) / (t1 - t0) / case.sessions * 100,
        "cpu_total": (cpu1 - cpu0) / (t1 - t0) * 100,
        # The kernel's share of it (system time): sockets, on loopback both ends of a send.
        "cpu_system_share": (sys1 - sys0) / max(cpu1 - cpu0, 1e-9),
        "rss_idle_mb": rss_idle,
        "rss_mb": rss,
        "memtrace": memory,
        "video_sent": sent,
        "video_received": received,
        "fps_received": statistics.mean(
            r["video_received"] / (r["paused_at"] - r["first_frame_at"]) for r in results
        ),
        # Upstream (client → server) times downstream (server's sender → other client):
        # frames a party sent before the other had joined are never forwarded, so sent
        # and received cannot be compared directly. A receiver's jitter buffer releases a
        # frame when the next one starts, so each hop holds back exactly the last frame
        # of each stream when sending stops: one per party per hop is not a loss.
        "frame_loss": (
            1
            - min(1.0, (server["server_in"] + len(results)) / sent)
            * min(1.0, (received + len(results)) / server["forwarded"])
            if server["server_in"] is not None and server["forwarded"] and sent
            else None
        ),
        "packet_loss": lost / packets if packets else None,
        "join_p50": _pct(joins, 0.5),
        "join_p95": _pct(joins, 0.95),
        "join_stages_p95": join_stages,
        **joining,
        **start,
        "spot_ok": sum(1 for r in results if r["spot_ok"]),
        "parties": len(results),
        "audio_received": sum(r["audio_received"] for r in results),
        **server,
    }


def _bucket_p95(families: dict[str, Any], name: str) -> tuple[float | None, int]:
    """The upper bound of the histogram bucket holding the 95th percentile, and the count
    (Prometheus keeps buckets, not samples)."""
    family = families.get(name)
    if family is None:
        return None, 0
    buckets = sorted(
        (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
    )
    count = int(buckets[-1][1]) if buckets else 0
    for bound, cumulative in buckets:
        if count and cumulative >= 0.95 * count:
            return bound, count
    return None, count


async def _server_side(dep: Deployment) -> dict[str, Any]:
    """From the server's /metrics (one process): how long it took to answer each offer,
    and how late its event loop ran, so far. A join wait's share that is the server's own,
    whatever the clients sharing this machine add."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{dep.base}/metrics") as r:
            text = await r.text()
    except aiohttp.ClientError:
        return {}
    families = {f.name: f for f in text_string_to_metric_families(text)}
    answer, answers = _bucket_p95(families, "witness_media_answer_seconds")
    lag, _ = _bucket_p95(families, "witness_event_loop_lag_seconds")
    return {"server_answer_p95_le": answer, "server_answers": answers, "loop_lag_p95_le": lag}


async def run_soak(args: argparse.Namespace, use_cluster: bool, workers: int) -> dict[str, Any]:
    # A call plus its intake, script and wrap-up takes more than session_seconds: this
    # bounds how many investors a slot can go through (and so the identities needed).
    per_slot = int(args.soak // max(args.session_seconds, 5)) + 2
    case = Case("soak", args.soak_concurrency, workers=workers)
    dep = Deployment(
        case,
        use_cluster=use_cluster,
        witnesses=args.soak_concurrency,
        investors=args.soak_concurrency * per_slot,
    )
    dep.server_cpus = args.server_cpus
    procs: list[Any] = []
    samples: list[tuple[float, float]] = []
    async with _running(dep, procs, args.keep):
        rss_idle = _rss_mb(dep.pids())
        slots = list(range(args.soak_concurrency))
        specs = [
            ClientSpec(
                dep.base,
                part,
                dep.witnesses,
                "soak",
                0.0,
                soak_seconds=args.soak,
                session_seconds=args.session_seconds,
                total_slots=len(slots),
                per_slot=per_slot,
                light=args.clients == "light",
                face=args.face,
            )
            for part in _split(slots, args.client_processes)
        ]
        spawned, out, go, _stop = _spawn_clients(specs)
        procs += spawned
        await asyncio.to_thread(_collect, out, "prepared", len(specs), 120)
        go.set()
        start = time.monotonic()
        while time.monotonic() - start < args.soak + 30:
            samples.append((time.monotonic() - start, _rss_mb(dep.pids())))
            if all(not p.is_alive() for p in procs):
                break
            await asyncio.sleep(10)
        results = [r for batch in await asyncio.to_thread(_collect, out, "result", len(specs), 180)
                   for r in batch]  # fmt: skip
        # Every call is over: what the process keeps with no session at all, against what
        # it had idle before the first (a leak shows here without the swing of calls).
        await asyncio.sleep(20)
        rss_drained = _rss_mb(dep.pids())
        dep.stop()
        server = await dep.read_results()
    ok = [r for r in results if r["ok"]]
    joins = [r["join_to_media"] for r in ok]
    minutes: dict[int, list[float]] = {}
    for t, rss in samples:
        minutes.setdefault(int(t // 60), []).append(rss)
    # Flat or growing: the slope over the second half, after the one-off loads of the
    # first minutes (the face model in each worker, caches, allocator arenas).
    late = [(t / 60, rss) for t, rss in samples if t >= args.soak / 2]
    slope = statistics.linear_regression(*zip(*late, strict=True)).slope if len(late) > 2 else None
    return {
        "sessions_done": len(ok),
        "sessions_failed": len(results) - len(ok),
        "errors": sorted({r.get("error", "") for r in results if not r["ok"]})[:5],
        "rss_idle_mb": rss_idle,
        "rss_by_minute": [statistics.mean(minutes[m]) for m in sorted(minutes)],
        "rss_slope_second_half": slope,
        "rss_max": max(r for _t, r in samples),
        "rss_drained_mb": rss_drained,
        "samples": samples,
        "join_p50": _pct(joins, 0.5),
        "join_p95": _pct(joins, 0.95),
        **server,
    }


# ── report ─────────────────────────────────────────────────────────────────────────────
def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def print_case(r: dict[str, Any]) -> None:
    print(
        f"{r['case']:<22} {r['sessions']:>3}  {r['server_processes']:>2}p {r['loop']:<7}"
        f" {r['cpu_per_session']:>6.1f} {r['cpu_total']:>6.1f}"
        f"  {r['rss_idle_mb']:>5.0f}→{r['rss_mb']:<5.0f}"
        f" {(r['rss_mb'] - r['rss_idle_mb']) / r['sessions']:>5.1f}"
        f"  {r['video_sent']:>6}→{_fmt(r['server_in'], 'd'):>6}→{_fmt(r['forwarded'], 'd'):>6}"
        f"→{r['video_received']:<6}"
        f" {r['recorded_frames']:>6}  {r['fps_received']:>5.1f}"
        f"  {_fmt(r['frame_loss'] and r['frame_loss'] * 100, '.2f'):>5}%"
        f" {_fmt(r['packet_loss'] and r['packet_loss'] * 100, '.2f'):>5}%"
        f"  {_fmt(r['join_p50'], '.2f')}/{_fmt(r['join_p95'], '.2f')}"
        f"  {r['recordings_ok']}/{r['recordings']}  {r['spot_ok']}/{r['parties']}",
        flush=True,
    )
    print(f"    (server CPU: {r['cpu_system_share'] * 100:.0f} % in the kernel)", flush=True)
    stages = r.get("join_stages_p95") or {}
    if any(v is not None for v in stages.values()):
        print(
            "    (join p95 by stage: "
            + ", ".join(f"{k} {_fmt(v, '.2f')} s" for k, v in stages.items())
            + ")",
            flush=True,
        )
    if r.get("settled_after") is not None:
        print(
            f"    (start-up work settled {r['settled_after']:.1f} s after every party flowed,"
            f" {r['face_scores']} face scores; from the first join until then"
            f" {r['start_seconds']:.1f} s, {r['start_cpu_s_per_session']:.2f} CPU s per session"
            " with the streaming meanwhile; the window starts after it)",
            flush=True,
        )
    if r.get("server_answers"):
        print(
            f"    (the server's own, {r['server_answers']} offers: offer → answer p95"
            f" ≤ {_fmt(r['server_answer_p95_le'], 'g')} s, event-loop lag p95"
            f" ≤ {_fmt(r['loop_lag_p95_le'], 'g')} s)",
            flush=True,
        )
    for problem in r["problems"][:5]:
        print(f"    ! {problem}", flush=True)


HEADER = (
    "case                   ses  proc loop    cpu%/s cpu%   rss idle→load MB/s"
    "  video sent→in→fwd→recv  recorded  fps/party  f-loss p-loss  join p50/p95 s"
    "  rec ok  spot ok"
)


def _print_ratio(label: str, case: dict[str, Any], ours: list[dict[str, Any]]) -> None:
    """``case``'s CPU per session against ours at the same session count, if ours ran."""
    same = [o for o in ours if o["sessions"] == case["sessions"]]
    if same:
        theirs, mine = case["cpu_per_session"], same[0]["cpu_per_session"]
        print(
            f"# {label} at {case['sessions']} sessions: CPU per session"
            f" {theirs:.2f} vs {mine:.2f} ({theirs / mine:.2f}x)",
            flush=True,
        )


async def main(args: argparse.Namespace) -> None:
    use_cluster = (
        not args.embedded and _reachable("127.0.0.1", 5432) and _reachable("127.0.0.1", 6379)
    )
    workers = args.workers if use_cluster else 1
    if args.server_cpus:
        # The bench and every client process it spawns (they inherit it) off the server's.
        os.sched_setaffinity(0, os.sched_getaffinity(0) - args.server_cpus)
    if args.workers != 1 and not use_cluster:
        print(
            "# PostgreSQL or Redis not reachable (or --embedded): one process, SQLite", flush=True
        )
    print(
        f"# {platform.node()} · {os.cpu_count()} cores · {_cpu_model()}"
        f" · Python {platform.python_version()} · aiortc {_version('aiortc')} · av {av.__version__}"
        f" · {'PostgreSQL + Redis' if use_cluster else 'SQLite + memory queue'}",
        flush=True,
    )
    window = (
        f"{args.seconds:.0f} s window after {args.warmup:.0f} s warm-up; "
        if args.sessions or args.naive_sessions or args.frames_sessions
        else ""
    )
    print(
        f"# 640x480@15 VP8 ~600 kbit/s + Opus each way; {window}"
        f"{workers or usable_cores()} server worker(s); clients in"
        f" {args.client_processes} processes ({args.clients} clients)"
        + (
            f"; server on CPU {sorted(args.server_cpus)}, clients on"
            f" {sorted(os.sched_getaffinity(0))}"
            if args.server_cpus
            else ""
        ),
        flush=True,
    )
    cases: list[Case] = []
    for n in args.sessions:
        cases.append(Case("passthrough", n, workers=workers))
        for loop in args.extra_loops:
            cases.append(Case(f"passthrough {loop}", n, workers=workers, loop=loop))
    for n in args.audio_20ms_sessions:
        # Before the answers asked browsers for 40 ms Opus packets: their 20 ms default.
        cases.append(Case("passthrough 20ms", n, workers=workers, audio_packet_ms=20))
    for n in args.frames_sessions:
        # Issue 21's "before": frames assembled and packetized again on the way through.
        cases.append(Case("frames (before 21)", n, pipeline="frames", workers=workers))
    for n in args.naive_sessions:
        cases.append(Case("naive (aiortc default)", n, pipeline="naive", workers=workers))
    results: list[dict[str, Any]] = []
    if cases:
        print(HEADER, flush=True)
    for case in cases:
        r = await run_case(case, args, use_cluster)
        results.append(r)
        print_case(r)
    ours = [
        r
        for r in results
        if r["pipeline"] == "passthrough" and r["loop"] == "asyncio" and not r["audio_packet_ms"]
    ]
    for t in [r for r in results if r["audio_packet_ms"]]:
        _print_ratio(f"{t['audio_packet_ms']} ms audio packets/default", t, ours)
    naive = [r for r in results if r["pipeline"] == "naive"]
    frames = [r for r in results if r["pipeline"] == "frames"]
    for f in frames:
        _print_ratio("frames/packets", f, ours)
    if ours and naive:
        o = ours[0]
        for n in naive:
            ratio = n["cpu_per_session"] / o["cpu_per_session"]
            per_frame = (n["cpu_total"] / max(n["fps_received"] * n["parties"], 1e-9)) / (
                o["cpu_total"] / max(o["fps_received"] * o["parties"], 1e-9)
            )
            print(
                f"# naive/ours at {n['sessions']} vs {o['sessions']} sessions: CPU per session"
                f" {ratio:.1f}x, CPU per delivered frame {per_frame:.1f}x"
                f" (naive delivered {n['fps_received']:.1f} of 15 fps)",
                flush=True,
            )
    if args.soak:
        s = await run_soak(args, use_cluster, workers)
        print(
            f"# soak {args.soak:.0f} s, {args.soak_concurrency} at a time,"
            f" {args.session_seconds:.0f} s calls: {s['sessions_done']} sessions done,"
            f" {s['sessions_failed']} failed;"
            f" RSS idle {s['rss_idle_mb']:.0f} MB, by minute"
            f" {' '.join(f'{m:.0f}' for m in s['rss_by_minute'])} MB, max {s['rss_max']:.0f} MB,"
            f" second half {_fmt(s['rss_slope_second_half'], '+.1f')} MB/min,"
            f" drained {s['rss_drained_mb']:.0f} MB;"
            f" join→media p50/p95 {_fmt(s['join_p50'], '.2f')}/{_fmt(s['join_p95'], '.2f')} s;"
            f" recordings ok {s['recordings_ok']}/{s['recordings']}",
            flush=True,
        )
        for error in s["errors"]:
            print(f"    ! {error}", flush=True)
        results.append({"soak": s})
    if args.json:
        await asyncio.to_thread(
            Path(args.json).write_text, json.dumps(results, indent=1, default=str)
        )


def _start_profilers(
    out_dir: str, case: Case, pids: list[int], seconds: float
) -> list[subprocess.Popen[bytes]]:
    """Issue 21: py-spy on every server process over the measured window, as collapsed
    stacks (``bench/profile_report.py`` buckets them by stage). Sampling costs the
    sampled process nothing (py-spy reads its memory from outside, as root), but the
    sampler itself takes some of the machine's CPU: compare CPU numbers without it."""
    if not out_dir:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    label = re.sub(r"[^a-z0-9]+", "-", f"{case.label}-{case.sessions}".lower())
    procs = []
    for pid in pids:
        cmd = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", "200", "--nonblocking", "--format", "raw",
               "--output", str(folder / f"{label}-{pid}.txt")]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="*", default=[8],
                        help="session counts, ours, one case each (none: skip)")  # fmt: skip
    parser.add_argument("--frames-sessions", type=int, nargs="*", default=[],
                        help="session counts for the frame path before issue 21")  # fmt: skip
    parser.add_argument("--naive-sessions", type=int, nargs="*", default=[1, 2],
                        help="session counts for the naive baseline (none: skip)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="start the window right after the joins and warm-up, not after the sessions'"
        " start-up work (face scores) is done: as before the seventh session of issue 21",
    )
    parser.add_argument("--workers", type=int, default=0,
                        help="server processes (0: one per core; 1: one)")  # fmt: skip
    parser.add_argument("--extra-loops", nargs="*", default=[], choices=["uvloop"],
                        help="also run ours with these event loops")  # fmt: skip
    parser.add_argument("--audio-20ms-sessions", nargs="*", type=int, default=[],
                        help="also run ours at these counts with the browsers' 20 ms"
                        " Opus packets (media.audio_packet_ms = 20), as before")  # fmt: skip
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--clients", choices=["light", "aiortc"], default="light",
                        help="light: packets sent and counted without aiortc's per-packet"
                        " work (bench/light.py); aiortc: full aiortc clients")  # fmt: skip
    parser.add_argument("--stagger", type=float, default=0.3, help="seconds between investors")
    parser.add_argument(
        "--server-cpus",
        default="",
        help="pin the server to these CPUs (e.g. 0) and the bench and its clients to the"
        " others, so that the clients' load does not delay the server (as if they ran on"
        " another machine)",
    )
    parser.add_argument("--embedded", action="store_true", help="SQLite + memory queue, 1 process")
    parser.add_argument(
        "--face",
        action="store_true",
        help="the clients' video and ID images show a face, so the face aid (A17.3) scores"
        " each call's first still for real (three dlib embeddings); without it they show"
        " none and the score is cheap",
    )
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (0: none)")
    parser.add_argument("--soak-concurrency", type=int, default=4)
    parser.add_argument("--session-seconds", type=float, default=20.0, help="soak call length")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep logs, database, recordings")
    parser.add_argument(
        "--profile", default="", help="py-spy the server processes over the window into DIR"
    )
    parser.add_argument(
        "--memtrace",
        default="",
        help="trace the server's memory (tracemalloc; costs CPU) and say where it grew",
    )
    args = parser.parse_args(argv)
    args.sessions = [n for n in args.sessions if n]  # "--sessions 0" skipped ours before
    if any(not 1 <= n <= 64 for n in args.sessions + args.frames_sessions) or any(
        not 1 <= n <= 16 for n in args.naive_sessions
    ):
        parser.error("--sessions / --frames-sessions 1..64, --naive-sessions 1..16 (bounded load)")
    if not 0 <= args.soak <= 3600 or not 1 <= args.soak_concurrency <= 16:
        parser.error("--soak 0..3600 s, --soak-concurrency 1..16")
    if args.memtrace:
        if args.workers != 1:
            parser.error("--memtrace needs --workers 1 (one traced process)")
        args.memtrace = str(Path(args.memtrace).resolve())  # the server runs elsewhere
    if not 5 <= args.seconds <= 600:
        parser.error("--seconds 5..600")
    text, args.server_cpus = args.server_cpus, None
    if text:
        usable = os.sched_getaffinity(0)
        try:
            wanted = {int(c) for c in text.split(",")}
        except ValueError:
            parser.error("--server-cpus: CPU numbers separated by commas, e.g. 0 or 0,1")
        if not wanted < usable:
            parser.error(f"--server-cpus: some of {sorted(usable)}, leaving one for the clients")
        args.server_cpus = wanted
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
