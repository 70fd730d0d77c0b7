"""Comparing a witness or a reviewer with their peers (A23). Pure.

Statistics come per period (``risk_rules.period_of``): a staff member is compared only
with the others of the same period, and only when both they and enough peers have a
sample large enough to mean something.

"Departs from peers" (``witness_outlier``): a witness's robust z-score is

    z = (value − median(peers)) / max(1.4826 × MAD(peers), min_spread)

where peers are the other witnesses with at least ``min_sessions`` sessions in the period
(at least ``min_peers`` of them), MAD is the median absolute deviation from the peers'
median (1.4826 × MAD estimates a standard deviation, yet one wild peer cannot mask
another), and ``min_spread`` keeps a team that all behave alike from turning a tiny
difference into a huge z. It departs when ``z ≥ max_z`` (direction ``above``),
``z ≤ −max_z`` (``below``) or ``|z| ≥ max_z`` (``either``).

"Much faster than peers" (``reviewer_speed``): a reviewer's median approval time is at
most ``max_ratio`` times the median of the other reviewers' medians (each with at least
``min_approvals`` approvals in the period, at least ``min_peers`` of them).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from server.domain.risk_facts import ReviewerStats, WitnessStats
from server.domain.risk_rules import Direction, ReviewerSpeed, WitnessMetric, WitnessOutlier

__all__ = ["PeerComparison", "fast_reviewers", "robust_z", "witness_departures"]

# 1.4826 × MAD is a consistent estimator of the standard deviation for normal data.
MAD_TO_SD = 1.4826
# Rates such as 19/20 are not exact in binary, so (0.95 − 0.8) / 0.05 comes out a hair
# under 3: a score this close to its limit counts as at the limit.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class PeerComparison:
    subject_id: str
    period_start: datetime
    value: float
    peers_median: float
    peers: int
    sample: int  # the subject's sessions or approvals in the period
    score: float  # the z-score (witnesses) or the ratio to the peers' median (reviewers)


def robust_z(value: float, peers: Sequence[float], min_spread: float) -> float:
    """(value − median) / max(1.4826 × MAD, min_spread) over ``peers`` (not empty)."""
    centre = statistics.median(peers)
    mad = statistics.median(abs(v - centre) for v in peers)
    return (value - centre) / max(MAD_TO_SD * mad, min_spread)


def _peer_groups(
    items: Iterable[tuple[str, datetime, int, float]], min_sample: int, min_peers: int
) -> list[tuple[str, datetime, int, float, list[float]]]:
    """(subject, period, sample, value, the peers' values) for each subject with enough
    sample and enough peers of the same period; the input's order does not matter."""
    periods: dict[datetime, dict[str, tuple[int, float]]] = {}
    for subject, start, sample, value in sorted(items):
        if sample >= min_sample:
            periods.setdefault(start, {})[subject] = (sample, value)
    groups = []
    for start, members in sorted(periods.items()):
        for subject, (sample, value) in sorted(members.items()):
            peers = [v for other, (_, v) in sorted(members.items()) if other != subject]
            if len(peers) >= min_peers:
                groups.append((subject, start, sample, value, peers))
    return groups


def witness_departures(stats: Iterable[WitnessStats], rule: WitnessOutlier) -> list[PeerComparison]:
    """The witnesses whose pass rate or mean call length departs from their peers'."""

    def metric(w: WitnessStats) -> float:
        return w.pass_rate if rule.metric is WitnessMetric.PASS_RATE else w.mean_call_seconds

    found = []
    items = ((w.witness_id, w.period_start, w.sessions, metric(w)) for w in stats)
    for subject, start, sample, value, peers in _peer_groups(
        items, rule.min_sessions, rule.min_peers
    ):
        z = robust_z(value, peers, rule.min_spread)
        limit = rule.max_z - TOLERANCE
        departs = {
            Direction.ABOVE: z >= limit,
            Direction.BELOW: z <= -limit,
            Direction.EITHER: abs(z) >= limit,
        }[rule.direction]
        if departs:
            median = statistics.median(peers)
            found.append(PeerComparison(subject, start, value, median, len(peers), sample, z))
    return found


def fast_reviewers(stats: Iterable[ReviewerStats], rule: ReviewerSpeed) -> list[PeerComparison]:
    """The reviewers approving in at most ``max_ratio`` of their peers' median time."""
    found = []
    items = ((r.reviewer_id, r.period_start, r.approvals, r.median_approval_seconds) for r in stats)
    for subject, start, sample, value, peers in _peer_groups(
        items, rule.min_approvals, rule.min_peers
    ):
        median = statistics.median(peers)
        if median > 0 and value / median <= rule.max_ratio + TOLERANCE:
            found.append(
                PeerComparison(subject, start, value, median, len(peers), sample, value / median)
            )
    return found
