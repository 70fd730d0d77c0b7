"""Playback coverage arithmetic (A17.5), property-tested."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from server.domain.coverage import Interval, accepted_span, coverage, gaps, merge, play_budget

spans = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 2_000)).map(
        lambda t: Interval(t[0], t[0] + t[1])
    ),
    max_size=30,
)


def covered(intervals: list[Interval], point: int) -> bool:
    return any(i.start <= point < i.end for i in intervals)


@given(spans, st.lists(st.integers(0, 12_000), max_size=40))
def test_merge_is_the_union(intervals: list[Interval], points: list[int]) -> None:
    merged = merge(intervals)
    for p in points:
        assert covered(merged, p) == covered(intervals, p)


@given(spans)
def test_merge_is_sorted_disjoint_and_idempotent(intervals: list[Interval]) -> None:
    merged = merge(intervals)
    for a, b in itertools.pairwise(merged):
        assert a.end < b.start
    assert all(i.length > 0 for i in merged)
    assert merge(merged) == merged
    assert merge(reversed(intervals)) == merged


@given(spans, st.integers(1, 12_000))
def test_gaps_and_played_partition_the_file(intervals: list[Interval], duration: int) -> None:
    merged = merge(intervals)
    cov = coverage(merged, duration, max_gap_ms=1000)
    holes = gaps(merged, duration)
    assert cov.played_ms + sum(g.length for g in holes) == duration
    small_holes = all(g.length < 1000 for g in holes)
    assert cov.complete == (small_holes and (cov.played_ms > 0 or duration <= 0))
    assert 0.0 <= cov.fraction <= 1.0


def test_small_gaps_are_tolerated_large_ones_are_not() -> None:
    played = merge([Interval(0, 4_000), Interval(4_600, 10_000)])
    assert coverage(played, 10_000, max_gap_ms=1000).complete
    assert not coverage(played, 10_500, max_gap_ms=400).complete
    assert not coverage(merge([Interval(0, 8_000)]), 10_000, max_gap_ms=1000).complete
    assert coverage([], 0, max_gap_ms=1000).complete
    # A17.5: a call shorter than the tolerated gap still has to be played.
    assert not coverage([], 850, max_gap_ms=1000).complete
    assert coverage(merge([Interval(0, 850)]), 850, max_gap_ms=1000).complete


def test_reports_too_fast_hidden_or_beyond_real_time_do_not_count() -> None:
    budget = play_budget(elapsed_ms=2_000, max_rate=2.0, counted_ms=0)
    ok = dict(start_ms=0, end_ms=2_000, rate=1.0, visible=True, max_rate=2.0, budget_ms=budget)
    assert accepted_span(**ok) == Interval(0, 2_000)  # type: ignore[arg-type]
    assert accepted_span(**{**ok, "rate": 2.5}) is None  # type: ignore[arg-type]
    assert accepted_span(**{**ok, "visible": False}) is None  # type: ignore[arg-type]
    # 60 s of video claimed 2 s after starting: not possible even at 2×.
    assert accepted_span(**{**ok, "end_ms": 60_000}) is None  # type: ignore[arg-type]


@given(st.lists(st.integers(1, 3_000), min_size=1, max_size=50), st.integers(0, 20_000))
def test_no_split_of_reports_beats_real_time(pieces: list[int], elapsed: int) -> None:
    """However a client splits its claims, what counts never exceeds real time × rate."""
    counted, cursor = 0, 0
    for piece in pieces:
        budget = play_budget(elapsed_ms=elapsed, max_rate=2.0, counted_ms=counted)
        span = accepted_span(
            start_ms=cursor, end_ms=cursor + piece, rate=2.0, visible=True, max_rate=2.0,
            budget_ms=budget,
        )  # fmt: skip
        if span is not None:
            counted += span.length
        cursor += piece
    assert counted <= elapsed * 2.0 + 1500
