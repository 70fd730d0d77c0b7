"""domain/loop_lag.py: lateness, percentiles and the sliding window, without a loop."""

from __future__ import annotations

import pytest

from server.domain.loop_lag import LagSummary, LagWindow, lateness, percentile


def test_lateness_is_never_negative() -> None:
    assert lateness(expected=10.0, actual=10.25) == pytest.approx(0.25)
    assert lateness(expected=10.0, actual=9.999) == 0.0


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.99, 0.0),
        ([0.3], 0.99, 0.3),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 1.0, 100.0),
        ([float(i) for i in range(1, 101)], 0.5, 50.0),
        ([5.0, 1.0, 3.0], 0.5, 3.0),  # unsorted input
        ([0.001] * 99 + [2.0], 0.99, 0.001),  # one stall is the max, not the p99
        ([0.001] * 98 + [2.0, 2.0], 0.99, 2.0),
    ],
)
def test_nearest_rank_percentile(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


def test_percentile_fraction_checked() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 0.0)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_window_keeps_only_its_span() -> None:
    window = LagWindow(60.0)
    assert window.summary(0.0) == LagSummary(p99=0.0, max=0.0, samples=0)
    window.add(1.0, 1.5)  # a stall
    for i in range(99):
        window.add(2.0 + i * 0.1, 0.002)
    summary = window.summary(20.0)
    assert summary == LagSummary(p99=0.002, max=1.5, samples=100)
    assert window.summary(61.0).max == 0.002  # the stall has left the window
    assert window.summary(200.0).samples == 0


def test_window_span_positive() -> None:
    with pytest.raises(ValueError):
        LagWindow(0.0)
