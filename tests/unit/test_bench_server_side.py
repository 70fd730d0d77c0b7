"""bench.load's reading of the server's own histograms (issue 21: the join wait's share
that is the server's, apart from the clients sharing the machine)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.load import _bucket_p95


def _families(values: list[float]) -> dict[str, object]:
    reg = CollectorRegistry()
    h = Histogram("witness_media_answer_seconds", "x", buckets=(0.1, 0.25, 1.0), registry=reg)
    for v in values:
        h.observe(v)
    text = generate_latest(reg).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_bucket_holding_the_95th_percentile_and_the_count() -> None:
    # 19 fast answers and one slow: the 95th percentile is the 19th, in the first bucket.
    assert _bucket_p95(_families([0.05] * 19 + [0.9]), "witness_media_answer_seconds") == (
        0.1,
        20,
    )
    # Two slow of twenty: it moves up to the slow ones' bucket.
    assert _bucket_p95(_families([0.05] * 18 + [0.9] * 2), "witness_media_answer_seconds") == (
        1.0,
        20,
    )
    # Beyond the last finite bucket: +Inf.
    assert _bucket_p95(_families([5.0] * 3), "witness_media_answer_seconds") == (
        float("inf"),
        3,
    )


def test_nothing_observed_or_no_such_metric() -> None:
    assert _bucket_p95(_families([]), "witness_media_answer_seconds") == (None, 0)
    assert _bucket_p95({}, "witness_media_answer_seconds") == (None, 0)
