"""Password checks run off the loop, a bounded number at once, with a short queue."""

from __future__ import annotations

import asyncio

import pytest

from server.domain.errors import ErrorKind, Unavailable
from server.services.password_checks import PasswordChecks, hash_password
from tests.helpers import wait_for
from tests.password_gate import GatedHasher


async def test_at_most_concurrency_run_and_the_queue_is_bounded() -> None:
    hasher = GatedHasher()
    checks = PasswordChecks(concurrency=2, queue=3, hasher=hasher)
    stored = hasher.hash("correct horse battery")
    try:
        admitted = [asyncio.create_task(checks.verify(stored, f"guess {n}")) for n in range(5)]
        await wait_for(lambda: hasher.running == 2 and checks.admitted == 5)
        # Two run, three wait; the sixth is turned away at once, with a time to come back.
        with pytest.raises(Unavailable) as refused:
            await checks.verify(stored, "one too many")
        assert refused.value.kind is ErrorKind.UNAVAILABLE
        assert refused.value.details["retry_after"] >= 1
        hasher.gate.set()
        assert await asyncio.gather(*admitted) == [False] * 5
        assert hasher.peak == 2 and hasher.calls == 5 and checks.admitted == 0
        assert await checks.verify(stored, "correct horse battery")
    finally:
        hasher.gate.set()
        checks.close()


async def test_a_cancelled_caller_keeps_its_slot_until_the_thread_is_done() -> None:
    hasher = GatedHasher()
    checks = PasswordChecks(concurrency=1, queue=0, hasher=hasher)
    stored = hasher.hash("correct horse battery")
    try:
        first = asyncio.create_task(checks.verify(stored, "x"))
        await wait_for(lambda: hasher.running == 1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        # The thread still runs: a new check must not start beside it.
        with pytest.raises(Unavailable):
            await checks.verify(stored, "y")
        hasher.gate.set()
        await wait_for(lambda: checks.admitted == 0)
        assert await checks.verify(stored, "correct horse battery")
        assert hasher.peak == 1
    finally:
        hasher.gate.set()
        checks.close()


async def test_unknown_account_costs_a_real_check_and_never_matches() -> None:
    hasher = GatedHasher()
    hasher.gate.set()
    checks = PasswordChecks(concurrency=1, queue=0, hasher=hasher)
    try:
        assert not await checks.verify(None, "not a password anybody has")
        assert hasher.calls == 1
    finally:
        checks.close()


def test_cli_hash_is_a_default_argon2id_hash() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "m=65536,t=3,p=4" in stored
