"""Risk rules (A23) as data: the versioned rule file, parsed and checked. Pure.

A rule has an id, a kind (one family of conditions, evaluated by
``risk_evaluation``), a severity, a description in Chinese and English, the kind's
parameters written inline, whether its alert holds the application, and whether it is
enabled. The file also says how long each severity may wait for a response.

The file is read by ``risk_rule_file``; this module holds what it is read into.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from server.domain.risk_facts import FailureKind, Identifier

__all__ = [
    "HOLDS_NOTHING",
    "PARAMETERS",
    "CallbackFailed",
    "CallbackOverdue",
    "Direction",
    "FaceMismatchPass",
    "FieldFlag",
    "FlagOp",
    "RecordingDamage",
    "RepeatedFailures",
    "ReviewerSpeed",
    "Rule",
    "RuleKind",
    "RuleSet",
    "Severity",
    "SharedIdentifier",
    "ShortSession",
    "WitnessHours",
    "WitnessMetric",
    "WitnessOutlier",
    "period_of",
]


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RuleKind(StrEnum):
    SHARED_IDENTIFIER = "shared_identifier"  # one device/IP/phone, many applications
    REPEATED_FAILURES = "repeated_failures"  # one ID number failing again and again
    FACE_MISMATCH_PASS = "face_mismatch_pass"  # noqa: S105 (not a password); a pass the face aid disagreed with
    SHORT_SESSION = "short_session"  # a pass in less time than the script needs
    RECORDING_DAMAGE = "recording_damage"  # damaged stretches, or recovered after a crash
    WITNESS_OUTLIER = "witness_outlier"  # pass rate or call length far from peers'
    WITNESS_HOURS = "witness_hours"  # witnessing outside the configured hours
    REVIEWER_SPEED = "reviewer_speed"  # approving much faster than peers
    CALLBACK_FAILED = "callback_failed"  # the approved investor denied it, or never answered
    CALLBACK_OVERDUE = "callback_overdue"  # not reached by the callback deadline
    FIELD_FLAG = "field_flag"  # any condition on an application's fields, as data


class WitnessMetric(StrEnum):
    PASS_RATE = "pass_rate"  # noqa: S105 (a rate, not a password)
    MEAN_CALL_SECONDS = "mean_call_seconds"


class Direction(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    EITHER = "either"


class FlagOp(StrEnum):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NOT_IN = "not_in"


ORDERING = frozenset({FlagOp.LT, FlagOp.LE, FlagOp.GT, FlagOp.GE})
MEMBERSHIP = frozenset({FlagOp.IN, FlagOp.NOT_IN})
# dlib's embeddings have unit length, so no two faces are further apart than 2.
MAX_FACE_DISTANCE = 2.0
# A statistics period longer than a year would compare a witness against last year.
MAX_PERIOD_DAYS = 366
# UTC-12:00 to UTC+14:00: every offset in use.
OFFSET_MINUTES = (-720, 840)


# ── each kind's parameters ────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class SharedIdentifier:
    identifier: Identifier
    min_applications: int  # this many distinct applications…
    window_minutes: int  # …within this many minutes of each other


@dataclass(frozen=True)
class RepeatedFailures:
    failures: frozenset[FailureKind]
    min_failures: int
    window_days: int


@dataclass(frozen=True)
class FaceMismatchPass:
    max_distance: float  # a pass whose face distance is above this fires


@dataclass(frozen=True)
class ShortSession:
    min_seconds: int  # a pass that took less than this fires


@dataclass(frozen=True)
class RecordingDamage:
    min_damaged_stretches: int
    flag_recovered: bool


@dataclass(frozen=True)
class WitnessOutlier:
    metric: WitnessMetric
    direction: Direction
    max_z: float  # |robust z| at or beyond this departs
    min_spread: float  # floor for the peers' spread, in the metric's unit
    min_sessions: int  # the witness and each peer need this many sessions in the period
    min_peers: int
    period_days: int


@dataclass(frozen=True)
class WitnessHours:
    start_hour: int  # first hour allowed, local time
    end_hour: int  # first hour no longer allowed; start > end wraps past midnight
    weekdays: frozenset[int]  # ISO weekdays allowed, Monday 1 … Sunday 7
    utc_offset_minutes: int


@dataclass(frozen=True)
class ReviewerSpeed:
    max_ratio: float  # own median ≤ this × peers' median fires
    min_approvals: int
    min_peers: int
    period_days: int


@dataclass(frozen=True)
class CallbackFailed:
    include_unreachable: bool  # attempts exhausted without reaching the investor


@dataclass(frozen=True)
class CallbackOverdue:
    grace_hours: int


@dataclass(frozen=True)
class FieldFlag:
    field: str
    op: FlagOp
    value: int | str | tuple[int | str, ...]


Parameters = (
    SharedIdentifier
    | RepeatedFailures
    | FaceMismatchPass
    | ShortSession
    | RecordingDamage
    | WitnessOutlier
    | WitnessHours
    | ReviewerSpeed
    | CallbackFailed
    | CallbackOverdue
    | FieldFlag
)

PARAMETERS: Mapping[RuleKind, type[Parameters]] = {
    RuleKind.SHARED_IDENTIFIER: SharedIdentifier,
    RuleKind.REPEATED_FAILURES: RepeatedFailures,
    RuleKind.FACE_MISMATCH_PASS: FaceMismatchPass,
    RuleKind.SHORT_SESSION: ShortSession,
    RuleKind.RECORDING_DAMAGE: RecordingDamage,
    RuleKind.WITNESS_OUTLIER: WitnessOutlier,
    RuleKind.WITNESS_HOURS: WitnessHours,
    RuleKind.REVIEWER_SPEED: ReviewerSpeed,
    RuleKind.CALLBACK_FAILED: CallbackFailed,
    RuleKind.CALLBACK_OVERDUE: CallbackOverdue,
    RuleKind.FIELD_FLAG: FieldFlag,
}


# Kinds about staff, not about an application: there is nothing for them to hold.
HOLDS_NOTHING = frozenset({RuleKind.WITNESS_OUTLIER, RuleKind.REVIEWER_SPEED})


@dataclass(frozen=True)
class Rule:
    id: str
    kind: RuleKind
    severity: Severity
    description_zh: str
    description_en: str
    parameters: Parameters
    hold_application: bool = False
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.parameters, PARAMETERS[self.kind]):
            raise TypeError(f"rule {self.id!r}: parameters do not belong to {self.kind}")


@dataclass(frozen=True)
class RuleSet:
    version: str
    response: Mapping[Severity, timedelta]  # how long an alert may wait, per severity
    rules: tuple[Rule, ...]

    def deadline(self, severity: Severity) -> timedelta:
        return self.response[severity]

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def period_of(at: datetime, period_days: int) -> datetime:
    """The start of the statistics period holding ``at``: periods of ``period_days`` days
    counted from 1970-01-01 UTC, so every service and every re-run agrees on them."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    days = (at - epoch).days
    return epoch + timedelta(days=days - days % period_days)
