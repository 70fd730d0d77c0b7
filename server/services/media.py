"""Media sessions of this node, their database side, rejoining and crash recovery.

``MediaManager`` owns the node's ``MediaSession`` objects (server/media/session.py) and
the rejoin grace timers; ``DbMediaEvents`` records what media does (recordings, stills,
connection events) in the database and the audit chain (A15, A25); ``recover`` runs at
start-up and turns recordings a crash left open into hashed, playable evidence.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import MediaConfig
from server.domain.errors import Conflict
from server.files import write_durably
from server.media.codecs import codec_for_path
from server.media.naive import NaiveSession
from server.media.recorder import FileFacts, finalize
from server.media.session import MediaSession, MediaSettings
from server.store.models import Recording, SessionEvent, Still, WitnessSession, utcnow

log = logging.getLogger(__name__)

REC_RECORDING = "recording"
REC_COMPLETE = "complete"
REC_RECOVERED = "recovered"
REC_EMPTY = "empty"
REC_FAILED = "failed"


def turn_credentials(secret: str, party: str, *, ttl: int, now: float) -> tuple[str, str]:
    """coturn's REST-API scheme (use-auth-secret): the username carries the expiry, the
    password is HMAC-SHA1 of it, so the TURN server checks it with no database."""
    username = f"{int(now) + ttl}:{party}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(cfg: MediaConfig, party: str, *, now: float) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    for url in cfg.ice_servers:
        if url.startswith("stun:"):
            servers.append({"urls": url})
        else:
            username, credential = turn_credentials(
                cfg.turn_secret, party, ttl=cfg.turn_credential_ttl_seconds, now=now
            )
            servers.append({"urls": url, "username": username, "credential": credential})
    return servers


def session_dir(session_id: str, created: datetime) -> str:
    """Recordings and stills of one session, relative to the recordings root."""
    day = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    return f"{day:%Y/%m/%d}/{session_id}"


def _status_for(facts: FileFacts | None, failure: str | None, *, recovered: bool) -> str:
    if facts is None or (facts.video_frames == 0 and facts.audio_frames == 0):
        return REC_FAILED if failure else REC_EMPTY
    if not facts.decodable:
        return REC_FAILED
    return REC_RECOVERED if recovered else REC_COMPLETE


async def _store_facts(
    session: AsyncSession,
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
    # A15: the hash of every finished file goes into the audit chain.
    await append_audit(
        session,
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
            **({"failure": failure[:200]} if failure else {}),
        },
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

    async def segment_opened(
        self, session_id: str, participant: str, segment: int, rel_path: str
    ) -> str:
        async with self.db.begin() as session:
            rec = Recording(
                session_id=session_id,
                participant=participant,
                segment=segment,
                path=rel_path,
                # WebM for VP8, Matroska for H.264 (the file name says which).
                content_type=codec_for_path(rel_path).content_type,
                status=REC_RECORDING,
                node_id=self.node_id,
            )
            session.add(rec)
            await session.flush()
            return rec.id

    async def segment_closed(
        self, recording_id: str, facts: FileFacts | None, failure: str | None
    ) -> None:
        async with self.db.begin() as session:
            rec = await session.get(Recording, recording_id, with_for_update=True)
            if rec is None:
                return
            await _store_facts(session, rec, facts, failure, recovered=False)
            status = rec.status
        if facts is not None:
            self.on_bytes(facts.bytes)
        if status != REC_COMPLETE:
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
    ) -> dict[str, Any]:
        path = self.root / rel_path
        await asyncio.to_thread(write_durably, path, jpeg)
        digest = hashlib.sha256(jpeg).hexdigest()
        async with self.db.begin() as session:
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
            session.add(still)
            await session.flush()
            session.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind="still.taken",
                    actor=actor,
                    payload={"still": still.id, "participant": participant, "kind": kind},
                )
            )
            await append_audit(
                session,
                actor=actor,
                action="still.taken",
                subject_type="still",
                subject_id=still.id,
                details={"session": session_id, "kind": kind, "sha256": digest},
            )
            return {
                "id": still.id,
                "participant": participant,
                "kind": kind,
                "offset_ms": offset_ms,
                "sha256": digest,
                "bytes": len(jpeg),
            }

    async def event(
        self, session_id: str, offset_ms: int, kind: str, actor: str, payload: dict[str, Any]
    ) -> None:
        async with self.db.begin() as session:
            session.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind=kind,
                    actor=actor,
                    payload=payload,
                )
            )


class MediaManager:
    """This node's media sessions, keyed by witness session id."""

    def __init__(
        self,
        *,
        config: MediaConfig,
        db: async_sessionmaker[AsyncSession],
        root: Path,
        node_id: str,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.config = config
        self.db = db
        self.settings = MediaSettings(
            recordings_root=root,
            # Minted per connection: TURN credentials expire.
            ice_servers=lambda: ice_servers_for(config, "media-node", now=time.time()),
            record=config.record,
            keyframe_interval=config.keyframe_interval_seconds,
            max_video_bitrate=config.max_video_kbps * 1000 or None,
        )
        self.node_id = node_id
        self.events = DbMediaEvents(db, root=root, node_id=node_id, on_bytes=on_bytes)
        self.sessions: dict[str, MediaSession] = {}
        self._grace: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Which socket of a party is current: a late close of a superseded socket (its
        # death noticed only at the heartbeat timeout) must not touch the new one.
        self._owner: dict[tuple[str, str], int] = {}
        self._generation = 0
        self._opening = asyncio.Lock()
        self._detached: set[asyncio.Task[None]] = set()

    def detach(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` outside the calling request: aiohttp cancels a WebSocket
        handler when its peer goes, and closing a session must not stop half-way."""
        task = asyncio.create_task(coro)
        self._detached.add(task)
        task.add_done_callback(self._detached_done)

    def _detached_done(self, task: asyncio.Task[None]) -> None:
        self._detached.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media clean-up failed", exc_info=task.exception())

    def ice_servers(self, party: str) -> list[dict[str, Any]]:
        return ice_servers_for(self.config, party, now=time.time())

    async def session(self, session_id: str) -> MediaSession:
        async with self._opening:
            media = self.sessions.get(session_id)
            if media is not None and not media.closed:
                return media
            async with self.db.begin() as db:
                ws = await db.get(WitnessSession, session_id)
            if ws is None or ws.state not in ("placed", "live"):
                raise Conflict("session_over", "The session has ended.", "会话已结束。")
            if ws.node_id != self.node_id:
                # Both parties' media must meet on the one node that records them.
                raise Conflict(
                    "wrong_node",
                    "This session is held by another media node; reconnect.",
                    "该会话由另一媒体节点承载，请重新连接。",
                )
            created = ws.created_at
            # The naive pipeline exists only as the load benchmark's baseline.
            kind = NaiveSession if self.config.pipeline == "naive" else MediaSession
            media = kind(
                session_id,
                rel_dir=session_dir(session_id, created),
                settings=self.settings,
                events=self.events,
            )
            self.sessions[session_id] = media
            # The session clock's 0, with its wall time, so files and events line up.
            await self.events.event(session_id, 0, "media.clock_started", "system", {})
            return media

    def claim(self, session_id: str, role: str) -> tuple[int, bool]:
        """A socket of the party announced itself: it now speaks for the party. Returns
        its generation and whether the party was away (a grace timer was running)."""
        self._generation += 1
        self._owner[(session_id, role)] = self._generation
        return self._generation, self._cancel_grace(session_id, role)

    def _cancel_grace(self, session_id: str, role: str) -> bool:
        task = self._grace.pop((session_id, role), None)
        if task is not None:
            task.cancel()
            return True
        return False

    async def party_left(
        self,
        session_id: str,
        role: str,
        generation: int,
        *,
        reason: str,
        on_expiry: Callable[[], Awaitable[None]],
    ) -> bool:
        """The party's current socket closed: close its leg (its segment ends) and give it
        ``rejoin_grace_seconds`` to come back before ``on_expiry`` ends the session.
        False (nothing done) if a newer socket of the party already took over."""
        key = (session_id, role)
        if self._owner.get(key) != generation:
            return False
        self._cancel_grace(session_id, role)

        async def expire() -> None:
            await asyncio.sleep(self.config.rejoin_grace_seconds)
            if self._owner.get(key) == generation:
                self._grace.pop(key, None)
                await on_expiry()

        # The timer first: closing the leg (finalize, hash) takes time, and a rejoin in
        # that time must find a timer to cancel.
        self._grace[key] = asyncio.create_task(expire())
        media = self.sessions.get(session_id)
        if media is not None:
            await media.drop(role, reason)
        return True

    async def end(self, session_id: str, reason: str) -> None:
        """The session is over: close both legs, finalize and hash the recordings."""
        for role in ("investor", "witness"):
            self._cancel_grace(session_id, role)
            self._owner.pop((session_id, role), None)
        media = self.sessions.get(session_id)
        if media is not None:
            await media.close(reason)
            if self.sessions.get(session_id) is media:
                del self.sessions[session_id]

    async def close_all(self, reason: str = "server_shutdown") -> None:
        for task in self._grace.values():
            task.cancel()
        self._grace.clear()
        if self._detached:
            await asyncio.gather(*self._detached, return_exceptions=True)
        await asyncio.gather(*(self.end(sid, reason) for sid in list(self.sessions)))


def _recover_file(root: Path, rel_path: str) -> tuple[FileFacts | None, str | None]:
    path = (root / rel_path).resolve()
    if not path.is_relative_to(root.resolve()) or not path.exists():
        return None, "recovery: file missing"
    try:
        return finalize(path), None
    except Exception as exc:  # one bad file must not stop start-up
        return None, f"recovery: {type(exc).__name__}: {exc}"


async def recover(
    db: async_sessionmaker[AsyncSession],
    *,
    root: Path,
    alive_nodes: set[str],
    end_session: Callable[[str], Awaitable[bool]],
    started_before: datetime,
) -> dict[str, int]:
    """After a crash: every recording still marked ``recording`` by a node that is not
    running is finalized from what reached the disk (playable part kept, hashed, marked
    ``recovered``), and its open sessions are marked interrupted via ``end_session``."""
    async with db.begin() as session:
        rows = (
            await session.scalars(
                select(Recording).where(
                    Recording.status == REC_RECORDING,
                    Recording.node_id.not_in(alive_nodes),
                    # Never this process's own live recordings (recovery may be retried
                    # while the node already serves).
                    Recording.started_at < started_before,
                )
            )
        ).all()
        open_recordings = [(r.id, r.path) for r in rows]
        sessions = (
            await session.scalars(
                select(WitnessSession.id).where(
                    WitnessSession.state.in_(("placed", "live")),
                    WitnessSession.node_id.not_in(alive_nodes),
                    WitnessSession.created_at < started_before,
                )
            )
        ).all()
    recovered = 0
    for rec_id, rel_path in open_recordings:
        facts, failure = await asyncio.to_thread(_recover_file, root, rel_path)
        async with db.begin() as session:
            rec = await session.get(Recording, rec_id, with_for_update=True)
            if rec is None or rec.status != REC_RECORDING:
                continue
            await _store_facts(session, rec, facts, failure, recovered=True)
            recovered += 1
            log.warning(
                "recording recovered after a crash",
                extra={"recording": rec_id, "status": rec.status, "bytes": rec.bytes},
            )
    interrupted = 0
    for session_id in sessions:
        if await end_session(session_id):
            interrupted += 1
    return {"recordings": recovered, "sessions": interrupted}
