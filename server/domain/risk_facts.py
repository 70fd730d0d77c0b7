"""What risk rules (A23) are evaluated on: small frozen facts a service loads. Pure.

The rules never read the database; the service that wires them in loads these facts for
the event at hand (an application submitted, a session ended, a review decided, a
callback attempted, or a periodic sweep) and hands them to ``risk_evaluation.evaluate``.
Every timestamp is timezone-aware. Identifiers, phone numbers and ID numbers appear only
as their lookup hashes (``crypto.lookup_hash``), never in clear.

``APPLICATION_FIELDS`` is the facts schema a ``field_flag`` rule may name: the agency adds
a flag by writing a condition on one of these fields, without code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from server.domain.aftercare import CallbackOutcome
from server.domain.identity_document import DocumentType
from server.domain.recording import RecordingStatus
from server.domain.session import Verdict
from server.domain.suitability import LEVELS

__all__ = [
    "APPLICATION_FIELDS",
    "ApplicationFacts",
    "ApplicationSighting",
    "CallbackFacts",
    "FactField",
    "FailureKind",
    "IdNumberFailure",
    "Identifier",
    "RecordingFacts",
    "ReviewerStats",
    "RiskFacts",
    "SessionFacts",
    "WitnessStats",
]


class Identifier(StrEnum):
    """What several applications may share that one person normally would not."""

    DEVICE = "device"  # the browser's device fingerprint hash
    IP = "ip"  # the client address (after the trusted proxy)
    PHONE = "phone"  # the verified mobile number's lookup hash


class FailureKind(StrEnum):
    IDENTITY_CHECK = "identity_check"  # the identity registry did not match (A17.2)
    WITNESSING = "witnessing"  # a witness failed the session (A17.3, A17.4)


@dataclass(frozen=True)
class ApplicationSighting:
    """One application seen behind one identifier value."""

    application_id: str
    identifier: Identifier
    value_hash: str
    at: datetime


@dataclass(frozen=True)
class IdNumberFailure:
    """One failed identity check or failed witnessing of an ID number."""

    id_number_hash: str
    kind: FailureKind
    application_id: str
    at: datetime


@dataclass(frozen=True)
class RecordingFacts:
    recording_id: str
    status: RecordingStatus
    damaged_stretches: int = 0  # stretches the recorder marked as torn or missing


@dataclass(frozen=True)
class SessionFacts:
    session_id: str
    application_id: str
    witness_id: str
    started_at: datetime  # both parties joined
    ended_at: datetime | None = None  # None: still live
    verdict: Verdict | None = None
    face_distance: float | None = None  # the face aid's score; None: no aid or no face
    recordings: tuple[RecordingFacts, ...] = ()

    @property
    def length_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class WitnessStats:
    """One witness's ended sessions in one statistics period (``risk_rules.period_of``)."""

    witness_id: str
    period_start: datetime
    sessions: int  # sessions ended with a verdict
    passes: int
    total_call_seconds: float

    @property
    def pass_rate(self) -> float:
        return self.passes / self.sessions if self.sessions else 0.0

    @property
    def mean_call_seconds(self) -> float:
        return self.total_call_seconds / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class ReviewerStats:
    """One reviewer's approvals in one statistics period: how long each review took from
    claim to approval, as the median of those durations."""

    reviewer_id: str
    period_start: datetime
    approvals: int
    median_approval_seconds: float


@dataclass(frozen=True)
class CallbackFacts:
    """The callback (A8) of an approved application."""

    application_id: str
    approved_at: datetime
    deadline: datetime  # by when the investor must have been reached
    outcome: CallbackOutcome | None = None  # the latest attempt's outcome; None: no attempt
    attempts_exhausted: bool = False  # unreachable on the last allowed attempt


@dataclass(frozen=True)
class ApplicationFacts:
    """The fields ``field_flag`` rules read; None: not known yet (never matches)."""

    application_id: str
    submitted_at: datetime
    age: int | None = None
    risk_level: str | None = None
    document_type: DocumentType | None = None
    nationality: str | None = None
    occupation: str | None = None
    id_expires_in_days: int | None = None  # None also for a long-term (长期) document


@dataclass(frozen=True)
class FactField:
    """One field of ``ApplicationFacts`` as a ``field_flag`` rule sees it."""

    type: type[int] | type[str]
    minimum: int | None = None  # for numbers: what a value may be at least…
    maximum: int | None = None  # …and at most
    choices: frozenset[str] | None = None  # for text: the only values there are


APPLICATION_FIELDS: Mapping[str, FactField] = {
    "age": FactField(int, minimum=0, maximum=150),
    "risk_level": FactField(str, choices=frozenset(LEVELS)),
    "document_type": FactField(str, choices=frozenset(DocumentType)),
    "nationality": FactField(str),
    "occupation": FactField(str),
    "id_expires_in_days": FactField(int, minimum=-36_500, maximum=36_500),
}


@dataclass(frozen=True)
class RiskFacts:
    """Everything one evaluation may look at; a service fills in what the event concerns
    and leaves the rest empty (a rule with no facts of its kind raises nothing)."""

    sightings: tuple[ApplicationSighting, ...] = ()
    id_number_failures: tuple[IdNumberFailure, ...] = ()
    sessions: tuple[SessionFacts, ...] = ()
    witness_stats: tuple[WitnessStats, ...] = ()
    reviewer_stats: tuple[ReviewerStats, ...] = ()
    callbacks: tuple[CallbackFacts, ...] = ()
    applications: tuple[ApplicationFacts, ...] = ()
