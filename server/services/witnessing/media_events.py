"""What media does, written down: recordings rows, stills, connection events, and the
audit entries that carry each finished file's hash (A15, A25)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.domain.recording import RecordingStatus
from server.files import write_durably
from server.media.codecs import codec_for_path
from server.media.recorder import FileFacts
from server.store.models import Recording, SessionEvent, Still, utcnow

log = logging.getLogger(__name__)


def session_dir(session_id: str, created: datetime) -> str:
    """Recordings and stills of one session, relative to the recordings root."""
    day = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    return f"{day:%Y/%m/%d}/{session_id}"


def _status_for(
    facts: FileFacts | None, failure: str | None, *, recovered: bool
) -> RecordingStatus:
    if facts is None or (facts.video_frames == 0 and facts.audio_frames == 0):
        return RecordingStatus.FAILED if failure else RecordingStatus.EMPTY
    if not facts.decodable:
        return RecordingStatus.FAILED
    return RecordingStatus.RECOVERED if recovered else RecordingStatus.COMPLETE


async def store_facts(
    tx: AsyncSession,
    rec: Recording,
    facts: FileFacts | None,
    failure: str | None,
    *,
    recovered: bool,
) -> None:
    rec.status = _status_for(facts, failure, recovered=recovered)
    rec.ended_at = utcnow()
    if facts is not None:
        rec.bytes = facts.bytes
        rec.sha256 = facts.sha256
        rec.start_ms = facts.start_ms
        rec.duration_ms = facts.duration_ms
        rec.video_frames = facts.video_frames
        rec.audio_frames = facts.audio_frames
        rec.cues = facts.cues
        # Issue 16: where the file is damaged by loss (None: not measured, e.g. a file
        # finalized after a crash, whose writer's account died with the process).
        rec.damage = facts.damage
        rec.damaged_ms = facts.damaged_ms
        rec.frames_lost = facts.frames_lost
    # A15: the hash of every finished file goes into the audit chain.
    await append_audit(
        tx,
        actor="system",
        action="recording.recovered" if recovered else "recording.closed",
        subject_type="recording",
        subject_id=rec.id,
        details={
            "session": rec.session_id,
            "participant": rec.participant,
            "segment": rec.segment,
            "status": rec.status,
            "sha256": rec.sha256,
            "bytes": rec.bytes,
            "duration_ms": rec.duration_ms,
            "video_frames": rec.video_frames,
            "audio_frames": rec.audio_frames,
            # The damage account is part of what the file is: chained with its hash.
            "damaged_ms": rec.damaged_ms,
            "frames_lost": rec.frames_lost,
            "damaged_stretches": None if rec.damage is None else len(rec.damage),
            **({"failure": failure[:200]} if failure else {}),
        },
    )


def _log_clock(tx: AsyncSession, session_id: str, clock_started: datetime | None) -> None:
    """The session clock's 0 with its wall time (so files and events line up), written by
    the session's first leg write rather than a transaction of its own."""
    if clock_started is not None:
        tx.add(
            SessionEvent(
                session_id=session_id,
                at=clock_started,
                offset_ms=0,
                kind="media.clock_started",
                actor="system",
                payload={},
            )
        )


class DbMediaEvents:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        root: Path,
        node_id: str,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.db = db
        self.root = root
        self.node_id = node_id
        self.on_bytes = on_bytes

    def _recording(
        self, session_id: str, participant: str, segment: int, rel_path: str
    ) -> Recording:
        return Recording(
            session_id=session_id,
            participant=participant,
            segment=segment,
            path=rel_path,
            # WebM for VP8, Matroska for H.264 (the file name says which).
            content_type=codec_for_path(rel_path).content_type,
            status=RecordingStatus.RECORDING,
            node_id=self.node_id,
        )

    async def leg_connected(
        self,
        session_id: str,
        participant: str,
        segment: int,
        rel_path: str | None,
        offset_ms: int,
        payload: dict[str, Any],
        clock_started: datetime | None = None,
    ) -> str | None:
        async with self.db.begin() as tx:
            _log_clock(tx, session_id, clock_started)
            recording_id: str | None = None
            if rel_path is not None:
                rec = self._recording(session_id, participant, segment, rel_path)
                tx.add(rec)
                await tx.flush()
                recording_id = rec.id
            tx.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind="media.connected",
                    actor=participant,
                    payload=payload,
                )
            )
            return recording_id

    async def leg_closed(
        self,
        session_id: str,
        participant: str,
        segment: int,
        *,
        recording_id: str | None,
        rel_path: str | None,
        facts: FileFacts | None,
        failure: str | None,
        offset_ms: int,
        payload: dict[str, Any],
        clock_started: datetime | None = None,
    ) -> None:
        status: str | None = None
        async with self.db.begin() as tx:
            _log_clock(tx, session_id, clock_started)
            rec: Recording | None = None
            if recording_id is not None:
                rec = await tx.get(Recording, recording_id, with_for_update=True)
            elif rel_path is not None:
                rec = self._recording(session_id, participant, segment, rel_path)
                tx.add(rec)
                await tx.flush()
            if rec is not None:
                await store_facts(tx, rec, facts, failure, recovered=False)
                recording_id, status = rec.id, rec.status
            tx.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind="media.disconnected",
                    actor=participant,
                    payload=payload,
                )
            )
        if status is None:
            return
        if facts is not None:
            self.on_bytes(facts.bytes)
        if status != RecordingStatus.COMPLETE:
            log.error(
                "recording %s not complete: %s (%s)",
                recording_id,
                status,
                failure,
                extra={"recording": recording_id, "status": status, "failure": failure},
            )

    async def still_taken(
        self,
        session_id: str,
        participant: str,
        kind: str,
        rel_path: str,
        jpeg: bytes,
        offset_ms: int,
        actor: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # details: how the picture was obtained and its delay (issue 17), kept in the
        # still.taken event and audit entry (no column of its own: the still's row is
        # the file and its hash).
        details = details or {}
        path = self.root / rel_path
        await asyncio.to_thread(write_durably, path, jpeg)
        digest = hashlib.sha256(jpeg).hexdigest()
        async with self.db.begin() as tx:
            still = Still(
                session_id=session_id,
                participant=participant,
                kind=kind,
                path=rel_path,
                bytes=len(jpeg),
                sha256=digest,
                offset_ms=offset_ms,
                taken_by=actor,
            )
            tx.add(still)
            await tx.flush()
            tx.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind="still.taken",
                    actor=actor,
                    payload={
                        "still": still.id,
                        "participant": participant,
                        "kind": kind,
                        **details,
                    },
                )
            )
            await append_audit(
                tx,
                actor=actor,
                action="still.taken",
                subject_type="still",
                subject_id=still.id,
                details={"session": session_id, "kind": kind, "sha256": digest, **details},
            )
            return {
                "id": still.id,
                "participant": participant,
                "kind": kind,
                "offset_ms": offset_ms,
                "sha256": digest,
                "bytes": len(jpeg),
                **details,
            }

    async def event(
        self, session_id: str, offset_ms: int, kind: str, actor: str, payload: dict[str, Any]
    ) -> None:
        async with self.db.begin() as tx:
            tx.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind=kind,
                    actor=actor,
                    payload=payload,
                )
            )
