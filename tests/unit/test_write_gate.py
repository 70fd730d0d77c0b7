"""The SQLite write queue's own rules (server/store/write_gate.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.store import lock_watch
from server.store.write_gate import WriteGate


async def test_a_transaction_inside_the_holders_own_does_not_queue_behind_itself() -> None:
    gate = WriteGate(lock_watch.WriteLockWatch())
    assert await gate.enter() is True
    # The same task again: not queued (it would wait for itself forever).
    assert await gate.enter() is False
    gate.leave()
    assert await gate.enter() is True
    gate.leave()


async def test_past_the_limit_a_writer_stops_queueing_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = WriteGate(lock_watch.WriteLockWatch(), wait_limit=0.1)
    holding, done = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        assert await gate.enter()
        holding.set()
        await done.wait()
        gate.leave()

    task = asyncio.create_task(holder())
    await holding.wait()
    with caplog.at_level(logging.WARNING, logger="server.store.write_gate"):
        assert await gate.enter() is False
    assert "trying without it" in caplog.text
    done.set()
    await task
    # The holder's turn ended cleanly: the next one gets it.
    assert await asyncio.wait_for(gate.enter(), 1) is True
    gate.leave()


async def test_a_writer_cancelled_while_queued_leaves_no_turn_behind() -> None:
    gate = WriteGate(lock_watch.WriteLockWatch())
    assert await gate.enter()
    waiting = asyncio.create_task(gate.enter())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.leave()
    assert await asyncio.wait_for(gate.enter(), 1) is True
    gate.leave()


def test_an_engine_that_outlives_its_event_loop_queues_in_the_next_one() -> None:
    """asyncio's lock belongs to one loop: a gate used under a second asyncio.run (the
    CLI, a test's next loop) gets a fresh one instead of 'bound to a different loop'."""
    gate = WriteGate(lock_watch.WriteLockWatch())

    async def contended() -> list[int]:
        order: list[int] = []

        async def turn(n: int) -> None:
            assert await gate.enter()
            order.append(n)
            await asyncio.sleep(0.01)
            gate.leave()

        await asyncio.gather(*(turn(n) for n in range(3)))
        return order

    assert asyncio.run(contended()) == [0, 1, 2]
    assert asyncio.run(contended()) == [0, 1, 2]
