"""SQLAlchemy 2.0 typed models. The schema itself is made only by Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


UtcDateTime = DateTime(timezone=True)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[str] = mapped_column(String(100))  # comma-separated Role values
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A7/A24 qualification of witnesses; A12 disclosure data.
    employee_number: Mapped[str | None] = mapped_column(String(40), unique=True)
    licence_number: Mapped[str] = mapped_column(String(40), default="")
    has_labour_contract: Mapped[bool] = mapped_column(Boolean, default=False)
    training_passed_on: Mapped[date | None] = mapped_column(Date)
    is_marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    # Comma-separated pairing skills (e.g. "hmt,en"), used when pairing.match_skills is on.
    skills: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Keyed hashes only: used to keep a witness from being paired with themselves.
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(",") if r)


class StaffSession(Base):
    """Server-side login session; the cookie carries a token whose SHA-256 is the id."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")

    staff: Mapped[Staff] = relationship(lazy="raise_on_sql")


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(32), index=True)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_enc: Mapped[bytes] = mapped_column(LargeBinary)
    investor_name: Mapped[str | None] = mapped_column(String(100))
    document_type: Mapped[str | None] = mapped_column(String(32))
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Other identity fields (A6) and questionnaire answers; encrypted where personal.
    profile_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    risk_level: Mapped[str | None] = mapped_column(String(4))
    suitability: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    disclosure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # A20–A22: what the application is for (domain/business.py) and by which method; for
    # a holder's service, the accounts named and the account system's answer (encrypted).
    business_type: Mapped[str] = mapped_column(
        String(32), default="open", server_default="open", index=True
    )
    method: Mapped[str] = mapped_column(String(16), default="witnessed", server_default="witnessed")
    service_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # Optimistic lock: a state change that lost a race fails instead of overwriting.
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class NetworkCheck(Base):
    """The investor's pre-call check (issue 16): devices, the path a test connection to the
    media node took, its round trip and an upstream estimate, kept with the application."""

    __tablename__ = "network_checks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    verdict: Mapped[str] = mapped_column(String(16))  # ok | weak | failed
    path: Mapped[str] = mapped_column(String(16))  # direct | relay | none
    protocol: Mapped[str | None] = mapped_column(String(8))  # udp | tcp | tls
    rtt_ms: Mapped[int | None] = mapped_column(Integer)
    upstream_kbps: Mapped[int | None] = mapped_column(Integer)
    camera_ok: Mapped[bool] = mapped_column(Boolean)
    microphone_ok: Mapped[bool] = mapped_column(Boolean)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # A re-upload supersedes, never deletes: the earlier image stays as evidence.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OtpChallenge(Base):
    """A one-time SMS code; only its keyed hash is stored."""

    __tablename__ = "otp_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class InvestorSession(Base):
    """An investor's signed-in session, bound to one application."""

    __tablename__ = "investor_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RateLimitHit(Base):
    """One counted event of a sliding-window limit (shared by every node via the database)."""

    __tablename__ = "rate_limit_hits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_rate_limit_hits_lookup", "bucket", "key_hash", "at"),)


class IdentityCheck(Base):
    __tablename__ = "identity_checks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    result: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(100), default="")
    raw_response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WitnessSession(Base):
    __tablename__ = "witness_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    # A18: a one-way session has no witness on the call; the witness who reviews its
    # recording is set when they take it (so four eyes hold against the reviewer).
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="two_way", server_default="two_way")
    # The application's business type, copied so sessions and recordings are found by it.
    business_type: Mapped[str] = mapped_column(String(32), default="open", server_default="open")
    verdict: Mapped[str | None] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # When the investor joined the queue: an interrupted session puts them back there.
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    investor_joined_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    witness_joined_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SessionEvent(Base):
    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    offset_ms: Mapped[int] = mapped_column(BigInteger, default=0)  # on the session clock
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), index=True)
    participant: Mapped[str] = mapped_column(String(16))
    segment: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(String(500))  # relative to storage.recordings_dir
    content_type: Mapped[str] = mapped_column(String(64))
    # recording → complete | recovered (after a crash) | empty (no media) | failed
    status: Mapped[str] = mapped_column(String(16))
    node_id: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # First media timestamp on the session clock (ms after session start).
    start_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    video_frames: Mapped[int] = mapped_column(Integer, default=0)
    audio_frames: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    # Issue 16: stretches with missing or undecodable media, on the recording's own clock:
    # [{"start_ms", "length_ms", "kind": "video"|"audio", "reason"}]; None = not measured.
    damage: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    damaged_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    frames_lost: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Still(Base):
    """A photo taken from a party's live video (A14, A19)."""

    __tablename__ = "stills"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), index=True)
    participant: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # auto | manual | step
    path: Mapped[str] = mapped_column(String(500))  # relative to storage.recordings_dir
    content_type: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    offset_ms: Mapped[int] = mapped_column(BigInteger)  # on the session clock
    taken_by: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiToken(Base):
    """A credential for the retrieval API (issue: recording retrieval). Only its SHA-256 is
    stored; the token itself is shown once, when created."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # comma-separated
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    # reviewer (A17.5), or witness: a one-way recording's first review (A18.6)
    stage: Mapped[str] = mapped_column(String(16), default="reviewer", server_default="reviewer")
    decision: Mapped[str | None] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    coverage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ReviewPlayback(Base):
    """What one reviewer has played of one recording (A17.5), merged, with the real-time
    budget that bounds what further reports may count."""

    __tablename__ = "review_playback"
    __table_args__ = (UniqueConstraint("reviewer_id", "recording_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"), index=True)
    intervals: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    counted_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    first_report_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    reports: Mapped[int] = mapped_column(Integer, default=0)


class ReviewView(Base):
    """A document or data panel a reviewer opened (A17.5: every document seen)."""

    __tablename__ = "review_views"
    __table_args__ = (UniqueConstraint("reviewer_id", "session_id", "item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), index=True)
    item: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Callback(Base):
    __tablename__ = "callbacks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    notes: Mapped[str | None] = mapped_column(Text)
    audio_path: Mapped[str | None] = mapped_column(String(500))
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), unique=True)
    unified_account_number: Mapped[str] = mapped_column(String(20), unique=True)
    sub_accounts: Mapped[dict[str, Any]] = mapped_column(JSON)
    # A26: accounts are marked by how they were opened.
    opening_method: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A22, A26: cancelled through this system: when, and by which method.
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closing_method: Mapped[str | None] = mapped_column(String(32))


class ServiceOutcome(Base):
    """What the account system did for one account of a holder's service (A20–A22);
    a partial outcome (one of two accounts cancelled) is one row per account."""

    __tablename__ = "service_outcomes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    business_type: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    account_masked: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # done | refused | failed
    error_code: Mapped[str | None] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(100), default="", server_default="")
    details_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OneWayAttempt(Base):
    """One try at the one-way checks (A18.3–A18.5): its own session and recording, the
    instructions drawn, what was measured, and why it ended."""

    __tablename__ = "oneway_attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("witness_sessions.id"), unique=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the application
    # running | passed | failed
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[list[str]] = mapped_column(JSON)
    liveness: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    face: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Each statement take's quality report, in order.
    statement: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient_masked: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Append-only (A15, A25): no code updates or deletes rows; triggers refuse it too."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_entries_subject", "subject_type", "subject_id"),)
