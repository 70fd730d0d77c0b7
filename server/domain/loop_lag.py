"""Event-loop lag: how late a timer fires, summarised over a sliding window. Pure.

A server whose event loop is busy (a decode that holds the GIL, a blocking call) answers
everyone late at once. The probe (services/loop_probe.py) sleeps a fixed interval and
records how much later than asked it woke; this module keeps the last window of those
samples and says their 99th percentile and maximum (/healthz, /metrics).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LagSummary:
    """Seconds late, over the samples of the window (zeros when there are none)."""

    p99: float
    max: float
    samples: int


def lateness(*, expected: float, actual: float) -> float:
    """Seconds a wake-up came after it was due; an early one (within the clock's
    resolution) counts as on time."""
    return max(0.0, actual - expected)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the
    values at or below it. 0.0 for no values."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered))
    return ordered[rank - 1]


class LagWindow:
    """Lateness samples of the last ``span`` seconds (times from a monotonic clock)."""

    def __init__(self, span: float) -> None:
        if span <= 0:
            raise ValueError("span must be positive")
        self.span = span
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, at: float, lag: float) -> None:
        self._samples.append((at, lag))
        self._evict(at)

    def summary(self, now: float) -> LagSummary:
        self._evict(now)
        lags = [lag for _, lag in self._samples]
        return LagSummary(p99=percentile(lags, 0.99), max=max(lags, default=0.0), samples=len(lags))

    def _evict(self, now: float) -> None:
        while self._samples and self._samples[0][0] <= now - self.span:
            self._samples.popleft()
