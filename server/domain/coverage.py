"""Which parts of a recording a reviewer actually played (A17.5: "technical means ensure
the reviewer fully reviewed"). Pure interval arithmetic on milliseconds of the file.

The reviewer's player reports, while playing, the span it moved through since its last
report, its playback rate and whether the tab was visible. A span counts only if it was
played at no more than the allowed rate, with the tab visible, and is no longer than the
wall time that passed allows; spans are merged per reviewer per recording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Interval:
    start: int  # ms, inclusive
    end: int  # ms, exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union as sorted, disjoint, non-touching intervals (empty ones dropped)."""
    out: list[Interval] = []
    for iv in sorted(i for i in intervals if i.end > i.start):
        if out and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def gaps(merged: list[Interval], duration: int) -> list[Interval]:
    """What of [0, duration) the merged intervals leave unplayed."""
    out: list[Interval] = []
    cursor = 0
    for iv in merged:
        if iv.start > cursor:
            out.append(Interval(cursor, min(iv.start, duration)))
        cursor = max(cursor, iv.end)
        if cursor >= duration:
            break
    if cursor < duration:
        out.append(Interval(cursor, duration))
    return [g for g in out if g.length > 0]


@dataclass(frozen=True)
class Coverage:
    played_ms: int
    duration_ms: int
    largest_gap_ms: int
    complete: bool

    @property
    def fraction(self) -> float:
        return 1.0 if self.duration_ms <= 0 else min(1.0, self.played_ms / self.duration_ms)


def coverage(merged: list[Interval], duration: int, *, max_gap_ms: int) -> Coverage:
    """Complete when no unplayed stretch is ``max_gap_ms`` or longer."""
    clipped = [Interval(max(0, i.start), min(duration, i.end)) for i in merged]
    played = sum(i.length for i in clipped if i.length > 0)
    holes = gaps(merged, duration)
    largest = max((g.length for g in holes), default=0)
    # A17.5: a recording with media is never reviewed unplayed, however short (a call
    # under max_gap_ms long would otherwise count as covered with nothing played).
    complete = largest < max_gap_ms and (played > 0 or duration <= 0)
    return Coverage(played, duration, largest, complete=complete)


def accepted_span(
    *,
    start_ms: int,
    end_ms: int,
    rate: float,
    visible: bool,
    max_rate: float,
    budget_ms: int,
) -> Interval | None:
    """The span a report may add, or None. ``budget_ms``: how much media this reviewer
    can still have played on this recording — the wall time since their first report
    times the maximum rate, plus a little slack, minus what was already counted — so
    no stream of reports, however split, claims more than real time allows."""
    if not visible or rate <= 0 or rate > max_rate or end_ms <= start_ms:
        return None
    if end_ms - start_ms > budget_ms:
        return None
    return Interval(start_ms, end_ms)


def play_budget(*, elapsed_ms: int, max_rate: float, counted_ms: int, slack_ms: int = 1500) -> int:
    return int(elapsed_ms * max_rate) + slack_ms - counted_ms


def coverage_record(status: dict[str, Any]) -> dict[str, Any]:
    """What a review decision stores of the coverage that backed it (A17.5, A18.6): each
    recording's covered share and largest gap, and the documents opened."""
    recordings = {
        r["id"]: {"fraction": r["fraction"], "largest_gap_ms": r["largest_gap_ms"]}
        for r in status["recordings"]
    }
    return {"recordings": recordings, "opened": status["opened"]}
