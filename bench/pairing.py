"""Pairing benchmark: time from a witness going ready to the offer reaching their console.

    python -m bench.pairing --backend memory --investors 200 --witnesses 20 --rounds 10
    python -m bench.pairing --backend redis --database-url postgresql+asyncpg://postgres@127.0.0.1/test

Seeds N identity-verified applications in the queue and M eligible witnesses, runs the
real dispatcher, and for R rounds has every witness go ready, waits for their offer,
declines it (the investor keeps their place) and repeats. Prints p50/p95/p99/max.
Loopback only; bounded by --rounds and a per-offer timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from sqlalchemy import select

from server.config import load_config
from server.domain.application import ApplicationState
from server.domain.staff import Role
from server.services import staff as staff_service
from server.services.pairing.queueing import witness_channel
from server.services.runtime import open_runtime
from server.store import migrate
from server.store.db import make_engine
from server.store.models import Application


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-pairing-"))
    db_url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    cfg = load_config(
        None,
        env={},
        overrides={
            "database": {"url": db_url, "pool_size": 20},
            "queue": {"backend": args.backend},
            "redis": {"url": args.redis_url, "key_prefix": prefix},
            "storage": {"recordings_dir": str(tmp / "rec")},
            "security": {
                "data_key": base64.b64encode(os.urandom(32)).decode(),
                "create_key_file": False,
            },
            "pairing": {"dispatch_interval_seconds": 1.0, "offer_timeout_seconds": 60},
            "logging": {"level": "WARNING", "format": "text"},
        },
    )
    engine = make_engine(cfg.database_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    async with open_runtime(cfg) as rt:
        async with rt.db.begin() as tx:
            for n in range(args.investors):
                tx.add(
                    Application(
                        state=ApplicationState.IDENTITY_VERIFIED.value,
                        phone_hash=uuid.uuid4().hex,
                        phone_enc=rt.protector.encrypt(f"139{n:08d}", context="applications.phone"),
                    )
                )
        async with rt.db.begin() as tx:
            ids = list((await tx.scalars(select(Application.id))).all())
        for app_id in ids:
            await rt.pairing.join_queue(app_id)
        staff_ids = []
        async with rt.db.begin() as tx:
            for n in range(args.witnesses):
                person = await staff_service.create_staff(
                    tx=tx,
                    new=staff_service.NewStaff(
                        username=f"bench.w{n}",
                        display_name=f"W{n}",
                        password="benchmark password",  # noqa: S106 - throwaway accounts
                        roles=frozenset({Role.WITNESS}),
                        employee_number=f"B{n}",
                        licence_number="S0000000000000",
                        has_labour_contract=True,
                        training_passed_on=date(2026, 1, 1),
                    ),
                    protector=rt.protector,
                    actor="bench",
                )
                staff_ids.append(person.id)
        for sid in staff_ids:
            await rt.pairing.witness_connect(sid)
        dispatcher = asyncio.create_task(rt.dispatcher.run_forever())
        await asyncio.sleep(0.3)
        latencies: list[float] = []

        async def witness_round(sid: int) -> None:
            async with await rt.queue.subscribe(witness_channel(sid)) as sub:
                started = time.perf_counter()
                await rt.pairing.witness_ready(sid, actor="bench")
                async with asyncio.timeout(args.timeout):
                    async for _ch, msg in sub:
                        if msg.get("type") == "offer":
                            latencies.append(time.perf_counter() - started)
                            await rt.pairing.decline(sid, msg["offer_id"])
                            return

        wall = time.perf_counter()
        for _ in range(args.rounds):
            await asyncio.gather(*(witness_round(sid) for sid in staff_ids))
        wall = time.perf_counter() - wall
        rt.dispatcher.stop()
        await dispatcher
        if args.backend == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(args.redis_url)
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()
    ms = [v * 1000 for v in latencies]
    print(
        f"backend={args.backend} db={'postgresql' if args.database_url else 'sqlite'} "
        f"investors={args.investors} witnesses={args.witnesses} rounds={args.rounds} "
        f"offers={len(ms)} wall={wall:.2f}s"
    )
    print(
        f"ready->offer ms: p50={statistics.median(ms):.1f} p95={_pct(ms, 0.95):.1f} "
        f"p99={_pct(ms, 0.99):.1f} max={max(ms):.1f}"
    )
    print(
        f"machine: {platform.node()} {platform.machine()} cpus={os.cpu_count()} "
        f"python={sys.version.split()[0]}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["memory", "redis"], default="memory")
    p.add_argument("--investors", type=int, default=200)
    p.add_argument("--witnesses", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one offer")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
