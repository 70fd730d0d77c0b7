"""The event-loop lag probe: a background task that measures how late the loop wakes.

Started and cancelled with the app (server/app.py). Every INTERVAL it asks to be woken
and records the lateness in a Prometheus histogram (``witness_event_loop_lag_seconds``),
the window's maximum in a gauge (``witness_event_loop_lag_max_seconds``), and the
window itself for /healthz (``loop_lag_ms``). The arithmetic is domain/loop_lag.py.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge, Histogram

from server.domain.loop_lag import LagSummary, LagWindow, lateness

# Short enough that a 100 ms stall is seen, long enough to cost nothing (10 wake-ups/s).
INTERVAL = 0.1
# The window /healthz's p99 and max cover: a scrape or a look every minute sees it all.
WINDOW_SECONDS = 60.0


class LoopLagProbe:
    def __init__(
        self,
        *,
        histogram: Histogram,
        max_gauge: Gauge,
        interval: float = INTERVAL,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.interval = interval
        self.window = LagWindow(window_seconds)
        self._histogram = histogram
        self._max_gauge = max_gauge

    def summary(self) -> LagSummary:
        return self.window.summary(asyncio.get_running_loop().time())

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.record(now, lateness(expected=expected, actual=now))

    def record(self, now: float, lag: float) -> None:
        self.window.add(now, lag)
        self._histogram.observe(lag)
        self._max_gauge.set(self.window.summary(now).max)
