"""The worker supervisor's restart back-off, run against real child processes, and the
choice of the sibling worker a session socket is handed to."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from server.queue.base import NodeInfo
from server.services.witnessing.handoff import sibling_owner
from server.supervisor import RestartPolicy, Supervisor, describe_exit


def test_back_off_doubles_up_to_a_cap_and_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=30.0, stable_seconds=60.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    failures = 0
    for ran in (0.1, 0.1, 0.1):  # a crash loop: each failure counts
        failures = policy.failures_after(failures, ran)
    assert failures == 3
    assert policy.failures_after(failures, 61.0) == 1  # it had been fine for a while


def test_exits_are_described() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"


async def test_a_crashing_worker_is_restarted_and_stop_ends_everyone() -> None:
    steady = [sys.executable, "-c", "import time; time.sleep(60)"]
    crashing = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = Supervisor(
        [steady, crashing], policy=RestartPolicy(first_delay=0.05, max_delay=0.2)
    )
    running = asyncio.create_task(supervisor.run(handle_signals=False))
    async with asyncio.timeout(30):
        while True:
            await asyncio.sleep(0.05)
            if supervisor.restarts >= 3:
                break
        steady_proc = supervisor.procs[0]
        assert steady_proc.returncode is None  # never touched by its sibling's crashes
        supervisor.stop()
        assert await running == 0
    assert steady_proc.returncode is not None


async def test_workers_get_two_malloc_arenas_unless_the_operator_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.txt"
    record = [
        sys.executable,
        "-c",
        f"import os; open({str(out)!r}, 'w').write(os.environ.get('MALLOC_ARENA_MAX', '-'))",
    ]
    for chosen, expected in ((None, "2"), ("8", "8")):
        if chosen is None:
            monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
        else:
            monkeypatch.setenv("MALLOC_ARENA_MAX", chosen)
        out.unlink(missing_ok=True)
        supervisor = Supervisor([record], policy=RestartPolicy(first_delay=5.0))
        running = asyncio.create_task(supervisor.run(handle_signals=False))
        async with asyncio.timeout(20):
            while True:
                await asyncio.sleep(0.05)
                if out.exists() and out.read_text():
                    break
        supervisor.stop()
        await running
        assert out.read_text() == expected


def test_only_a_live_sibling_on_this_machine_with_a_loopback_url_is_handed_to() -> None:
    me = NodeInfo(
        "box-w0", "https://k", 0, 0.0, internal_url="http://127.0.0.1:8081", machine="box"
    )
    sibling = NodeInfo("box-w1", "https://k", 0, 0.0, "http://127.0.0.1:8082", "box")
    elsewhere = NodeInfo("other-w0", "https://k2", 0, 0.0, "http://127.0.0.1:8081", "other")
    single = NodeInfo("box-123", "https://k", 0, 0.0, "", "box")
    nodes = [me, sibling, elsewhere, single]
    assert sibling_owner("box-w1", nodes, me) == sibling
    assert sibling_owner("box-w0", nodes, me) is None  # already home
    assert sibling_owner("other-w0", nodes, me) is None  # loopback of another machine
    assert sibling_owner("box-123", nodes, me) is None  # a single process takes no hand-off
    assert sibling_owner("box-w2", nodes, me) is None  # not alive
    assert sibling_owner(None, nodes, me) is None
