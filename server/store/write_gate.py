"""SQLite's one write lock, handed on in the order the writers asked for it.

On SQLite every transaction begins IMMEDIATE (``db.py``), so every transaction is a
writer. SQLite does not queue a writer that finds the lock taken: its busy handler sleeps
and retries (1, 2, 5 … then 100 ms at a time). A writer that comes while the lock happens
to be free takes it before one that has slept through several holders, and the lock lies
idle while the sleepers sleep. Measured by ``bench.load`` (issue 21, 24 sessions joining
at once, one process): a party's recording row, written before its answer, waited up to
5.4 s behind holders that each held the lock ~0.1 s, and every such wait was a party
looking at a black screen.

An SQLite deployment is one process (workers need PostgreSQL), so an asyncio lock in
front of every transaction of a session factory orders them all: each goes in when the
one before it ends, with no sleep between. SQLite's busy timeout still covers what is
outside it: another process on the file (the CLI) or another engine in the same process
(tests stand one up to play a second process).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.store import lock_watch

log = logging.getLogger(__name__)

# As SQLite's busy timeout (db.py): past it a writer stops queueing here and waits
# SQLite's way, so a wait that would have failed before still fails, not hangs.
WAIT_LIMIT_SECONDS = 30.0


class WriteGate:
    """One engine's queue for the write lock (FIFO: asyncio's lock wakes in order)."""

    def __init__(
        self, watch: lock_watch.WriteLockWatch, wait_limit: float = WAIT_LIMIT_SECONDS
    ) -> None:
        # A writer kept waiting here says who holds the lock, as one kept at SQLite's
        # BEGIN does (lock_watch.py).
        self.watch = watch
        self.wait_limit = wait_limit
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: asyncio.Task[Any] | None = None

    async def enter(self) -> bool:
        """Wait for the turn of the calling task; False if it does not queue (already
        holds it, or waited past the limit) and must not call ``leave``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # An engine outliving its event loop (a command that runs asyncio.run twice,
            # a test's loops): an asyncio lock belongs to one loop, and the old loop's
            # turns ended with it.
            self._loop, self._lock, self._holder = loop, asyncio.Lock(), None
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            # A transaction opened inside one of the task's own: SQLite refuses it once
            # its busy timeout ends, as without the gate; queueing here would hang.
            return False
        started = time.monotonic()
        try:
            with self.watch.waiting():
                async with asyncio.timeout(self.wait_limit):
                    await self._lock.acquire()
        except TimeoutError:
            log.warning(
                "waited %.0f s for the database's write turn; trying without it",
                time.monotonic() - started,
                extra={"holder": self._holder.get_name() if self._holder else None},
            )
            return False
        self._holder = task
        return True

    def leave(self) -> None:
        self._holder = None
        self._lock.release()


class _Turn(AbstractAsyncContextManager[AsyncSession]):
    """``sessionmaker.begin()``'s context, entered once the gate gives the turn."""

    def __init__(self, gate: WriteGate, inner: AbstractAsyncContextManager[AsyncSession]):
        self._gate = gate
        self._inner = inner
        self._queued = False

    async def __aenter__(self) -> AsyncSession:
        self._queued = await self._gate.enter()
        try:
            return await self._inner.__aenter__()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._leave()

    def _leave(self) -> None:
        if self._queued:
            self._queued = False
            self._gate.leave()


class GatedSessions(async_sessionmaker[AsyncSession]):
    """A session factory whose ``begin()`` transactions wait their turn at ``gate``."""

    gate: WriteGate

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:  # type: ignore[override]
        return _Turn(self.gate, super().begin())


_gates: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def gate_for(engine: AsyncEngine) -> WriteGate:
    """The engine's gate: every session factory on one engine shares it."""
    gate = _gates.get(engine.sync_engine)
    if gate is None:
        watch = lock_watch.watch_for(engine.url.database or "")
        gate = _gates[engine.sync_engine] = WriteGate(watch)
    return gate
