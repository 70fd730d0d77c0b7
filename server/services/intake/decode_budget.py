"""How many image decodes run at once, bounded by the memory they take.

A decode's memory depends on the declared pixels, not the file size (image_header.py),
so a count of slots alone lets four small files take gigabytes. Each decode here holds
its estimated peak bytes (``ImageHeader.working_bytes``) of a per-process budget for as
long as it runs, and at most ``max_running`` run at once (one per core is plenty).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from server.services.intake.images import CheckedImage, ImageLimits, check_image, inspect_image


class DecodeBudget:
    """An asyncio semaphore weighted by bytes, first come first served.

    A waiter is let in only when it fits and everyone before it is in, so a large image
    is never starved by a stream of small ones. One heavier than the whole budget is
    counted as the whole budget: it runs alone rather than never.
    """

    def __init__(self, total_bytes: int, *, max_running: int) -> None:
        if total_bytes < 1 or max_running < 1:
            raise ValueError("a decode budget needs bytes and at least one slot")
        self.total_bytes = total_bytes
        self.max_running = max_running
        self.in_use = 0
        self.running = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, weight: int) -> AsyncIterator[None]:
        weight = min(max(weight, 0), self.total_bytes)
        await self._acquire(weight)
        try:
            yield
        finally:
            self._release(weight)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, weight: int) -> bool:
        return self.running < self.max_running and self.in_use + weight <= self.total_bytes

    def _take(self, weight: int) -> None:
        self.in_use += weight
        self.running += 1

    def _release(self, weight: int) -> None:
        self.in_use -= weight
        self.running -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            weight, waiter = self._waiters[0]
            if waiter.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if not self._fits(weight):
                return
            self._waiters.popleft()
            self._take(weight)
            waiter.set_result(None)

    async def _acquire(self, weight: int) -> None:
        if not self._waiters and self._fits(weight):
            self._take(weight)
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (weight, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(weight)  # let in, then cancelled before running
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._wake()  # the head may have been this one
            raise


async def check_upload(raw: bytes, *, limits: ImageLimits, budget: DecodeBudget) -> CheckedImage:
    """check_image in a thread, within the budget. Over-limit uploads are refused from
    their header before waiting for anything."""
    # Header bytes only, no Pillow; still a walk over up to max_bytes of JPEG segments.
    header = await asyncio.to_thread(inspect_image, raw, limits=limits)
    async with budget.hold(header.working_bytes):
        return await asyncio.to_thread(check_image, raw, limits=limits)
