"""Password hashing and checking off the event loop, a bounded number at a time.

An argon2id hash or check costs ~100-180 ms of a core. Run on the event loop, eight
clients sending wrong passwords stalled every request and live call of the process
(issue 15 item 1), so the server does them in a small thread pool of its own: at most
``concurrency`` at once, up to ``queue`` more waiting their turn, and past that the
caller is told to come back shortly instead of piling up. The CLI, which has no loop
to protect, hashes directly with :func:`hash_password`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.domain.errors import Unavailable

_T = TypeVar("_T")

# Checked when the username does not exist, so the answer costs what a real check does.
# A hash of a random password nobody kept, made with argon2-cffi's default parameters.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$T7Oqx/9UCylQG0v+Rfna7Q"
    "$CHetxr25R/NKAcAS8FrBJ37LqvxaUXp5teWkAWL3N0I"
)
# A full queue drains in well under a second at the default bound (2 at a time, 8 queued).
_BUSY_RETRY_SECONDS = 1

_default_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Hash synchronously: for the command line, never for a request handler."""
    return _default_hasher.hash(password)


class PasswordChecks:
    """The server's password hashing: in its own threads, bounded, with a short queue."""

    def __init__(
        self, *, concurrency: int, queue: int, hasher: PasswordHasher | None = None
    ) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be at least 1 and queue at least 0")
        self._hasher = hasher or _default_hasher
        # The dummy must cost what a real check costs: same parameters as our hashes.
        self._dummy = (
            _DUMMY_HASH
            if not self._hasher.check_needs_rehash(_DUMMY_HASH)
            else self._hasher.hash("not a password anybody has")
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="password")
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Checks running or waiting for a thread now."""
        return self._admitted

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` (no such account) checks a dummy and
        answers False after the same work. Raises Unavailable when the queue is full."""
        target = self._dummy if stored_hash is None else stored_hash
        matched = await self._run(self._verify_now, target, password)
        return matched and stored_hash is not None

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        # Parses the parameters out of the string: microseconds, fine on the loop.
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify_now(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _run(self, work: Callable[..., _T], *args: str) -> _T:
        if self._admitted >= self._limit:
            raise Unavailable(
                "login_busy",
                "The server is busy; please try again in a moment.",
                "服务器繁忙，请稍后重试。",
                details={"retry_after": _BUSY_RETRY_SECONDS},
            )
        self._admitted += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self._admitted -= 1
            raise
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        except BaseException:
            self._release()
            raise
        # The slot is freed when the thread finishes, not when the caller stops waiting:
        # a cancelled request must not let more hashes run than the bound.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.shield(future)

    def _release(self) -> None:
        self._admitted -= 1
        self._slots.release()
