"""One-way video on this node (A18): offering it, starting attempts, running them.

Ties the pieces together: ``attempts`` (database), this node's media sessions (the
recording, as in a two-way call), ``analysis`` (frames → samples, in a thread) and
``director`` (the checks and what the investor is told).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Config
from server.crypto import DataProtector
from server.domain.errors import Conflict, Unavailable
from server.domain.face_pose import FacePose
from server.domain.liveness import Instruction
from server.domain.oneway_statement import statement
from server.domain.recording import StillKind
from server.domain.session import SessionMode
from server.domain.statement_quality import QualityPolicy
from server.services.applications import get_application
from server.services.intake.steps import active_documents
from server.services.oneway import analysis, attempts
from server.services.oneway.director import Analyzer, Director, Outcome
from server.services.witnessing.face import embedding_distance
from server.services.witnessing.media_manager import MediaManager
from server.store.models import OneWayAttempt, WitnessSession

log = logging.getLogger(__name__)

# (session id, on_face, on_voice) → an analyzer for one attempt; raises OneWayUnavailable
# when the models (the optional ``face`` extra) are missing.
AnalyzerFactory = Callable[[str, Callable[[Any], None], Callable[[Any], None]], Awaitable[Analyzer]]
Embedder = Callable[[bytes], Any]


def compare_faces(
    embed: Embedder, references: dict[str, bytes], stills: list[bytes], threshold: float
) -> dict[str, Any]:
    """A18.4, blocking: the closest still to each reference. Passes only if the ID image
    holds a face and every reference with a face is within ``threshold``. ``embed`` runs
    in the embedding process: dlib's network holds the GIL (~140 ms a picture), which in
    this process would stall every call's media."""
    ref_embeddings = {kind: embed(data) for kind, data in references.items()}
    live = [e for e in (embed(s) for s in stills) if e is not None]
    distances: dict[str, float | None] = {}
    for kind, ref in ref_embeddings.items():
        if ref is None or not live:
            distances[kind] = None
            continue
        each = [embedding_distance(e, ref) for e in live]
        distances[kind] = round(min(d for d in each if d is not None), 4)
    comparable = bool(live) and distances.get("id_front") is not None
    found = [d for d in distances.values() if d is not None]
    passed = comparable and all(d <= threshold for d in found)
    return {
        "passed": passed,
        "comparable": comparable,
        "distances": distances,
        "stills_with_face": len(live),
    }


def _frontal(pose: FacePose) -> bool:
    # A18.4: only near-frontal pictures are compared (and kept as the frontal photo, A19).
    return abs(pose.yaw) < FRONTAL_YAW and abs(pose.roll) < FRONTAL_ROLL


async def default_analyzer_factory(
    session_id: str, on_face: Callable[[Any], None], on_voice: Callable[[Any], None]
) -> Analyzer:
    return await analysis.FrameAnalyzer.start(
        on_face, on_voice, frontal=_frontal, session=session_id
    )


FRONTAL_YAW = 0.15
FRONTAL_ROLL = 10.0

# An attempt whose socket never came (the page was closed after starting) ends after this.
JOIN_WITHIN_SECONDS = 120.0


class OneWay:
    def __init__(
        self,
        *,
        config: Config,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        media: MediaManager,
        files_root: Path,
        analyzer_factory: AnalyzerFactory,
        session_token_ttl: float,
    ) -> None:
        self.config = config
        self.settings = config.oneway
        self.db = db
        self.protector = protector
        self.media = media
        self.files_root = files_root
        self.analyzer_factory = analyzer_factory
        self.session_token_ttl = session_token_ttl
        self.directors: dict[str, Director] = {}
        # Attempts of this node from their start until they end or expire: what
        # ``max_concurrent`` counts (each one, once joined, decodes and runs dlib).
        self._active: set[str] = set()
        # Sockets being admitted: a second one for the same attempt is refused at once.
        self._opening: set[str] = set()
        self.join_within = JOIN_WITHIN_SECONDS
        self._timers: set[asyncio.Task[None]] = set()

    async def offer(self, application_id: str) -> attempts.Offer:
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            return await attempts.offer_for(
                tx, app, config=self.settings, protector=self.protector, today=date.today()
            )

    def _busy(self) -> Unavailable | None:
        if len(self._active) < self.settings.max_concurrent:
            return None
        return Unavailable(
            "oneway_busy",
            "One-way video is busy; try again in a minute or join a video call.",
            "单向视频繁忙，请稍后再试或通过双向视频办理。",
        )

    async def start(self, application_id: str) -> attempts.Started:
        busy = self._busy()
        if busy is not None:
            raise busy
        # The models before anything is written: a server without them must not use up
        # an attempt (nor hold the application in "witnessing").
        try:
            await asyncio.to_thread(analysis.load_models)
        except analysis.OneWayUnavailable:
            log.warning("one-way checks unavailable: models missing", exc_info=True)
            raise _unavailable() from None
        started = await attempts.start(
            self.db,
            application_id=application_id,
            config=self.settings,
            protector=self.protector,
            node_id=self.media.node_id,
            token_ttl=self.session_token_ttl,
        )
        self._active.add(started.session_id)
        timer = asyncio.create_task(self._expire_unjoined(started.session_id))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        return started

    async def _expire_unjoined(self, session_id: str) -> None:
        await asyncio.sleep(self.join_within)
        if session_id in self.directors or session_id in self._opening:
            return
        try:
            async with self.db.begin() as tx:
                witness_session = await tx.get(WitnessSession, session_id)
                joined = witness_session is not None and witness_session.investor_joined_at
            if not joined:
                await attempts.finish(
                    self.db,
                    session_id=session_id,
                    passed=False,
                    reason="not_joined",
                    liveness=None,
                    face=None,
                    statement=None,
                )
                self._active.discard(session_id)
        except Exception:
            # A restart's crash sweep (placer.abort) ends it if this could not.
            log.exception("one-way join expiry failed", extra={"session": session_id})

    async def open(
        self, session_id: str, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Director:
        """The investor's socket arrived: run the attempt. One socket per attempt; a
        second one (or a reconnect) finds the attempt over, as A18 wants a retry."""
        if session_id in self.directors or session_id in self._opening:
            raise Conflict(
                "oneway_in_progress",
                "This attempt is already running in another window.",
                "该次录制已在其他窗口进行。",
            )
        self._opening.add(session_id)  # before any await: two sockets cannot both pass
        try:
            return await self._open(session_id, send)
        finally:
            self._opening.discard(session_id)

    async def _open(
        self, session_id: str, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Director:
        async with self.db.begin() as tx:
            witness_session = await tx.get(WitnessSession, session_id)
            if witness_session is None or witness_session.mode != SessionMode.ONE_WAY:
                raise Conflict("session_over", "The session has ended.", "会话已结束。")
            attempt = await _attempt_of(tx, session_id)
            if attempt is None or attempt.state != "running":
                raise Conflict("session_over", "The session has ended.", "会话已结束。")
            app = await get_application(tx=tx, application_id=witness_session.application_id)
            docs = await active_documents(tx, app.id)
            name = app.investor_name or ""
            sequence = tuple(Instruction(i) for i in attempt.sequence)
            drawn = list(attempt.sequence)
        if session_id not in self._active:
            # Started on this node before a restart, or by a sibling: counted from now.
            busy = self._busy()
            if busy is not None:
                raise busy
            self._active.add(session_id)
        references = {
            d.kind: await asyncio.to_thread((self.files_root / d.path).read_bytes)
            for d in docs
            if d.kind in ("id_front", "frontal_photo")
        }
        media = await self.media.session(session_id)
        await attempts.mark_joined(self.db, session_id)
        holder: list[Director] = []
        try:
            analyzer = await self.analyzer_factory(
                session_id, lambda s: holder[0].on_face(s), lambda v: holder[0].on_voice(v)
            )
        except analysis.OneWayUnavailable:
            log.warning("one-way checks unavailable: models missing", exc_info=True)
            await self._end(session_id, "unavailable", None)
            raise _unavailable() from None
        try:
            director = self._director(session_id, sequence, name, media, analyzer, send, references)
        except Exception:
            await analyzer.close()
            await self._end(session_id, "server_error", None)
            raise
        holder.append(director)
        self.directors[session_id] = director
        media.observers.append(director.observe)
        director.start()
        await media.events.event(session_id, media.now_ms(), "oneway.started", "system", {
            "sequence": drawn
        })  # fmt: skip
        return director

    def _director(
        self,
        session_id: str,
        sequence: tuple[Instruction, ...],
        name: str,
        media: Any,
        analyzer: Analyzer,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        references: dict[str, bytes],
    ) -> Director:
        threshold = self.settings.face_threshold
        agency = self.config.agency

        async def store_still(jpeg: bytes, at_ms: int, details: dict[str, Any]) -> dict[str, Any]:
            rel_path = f"{media.rel_dir}/stills/investor-{at_ms:09d}-{StillKind.LIVENESS}.jpg"
            return await self.media.events.still_taken(
                session_id,
                "investor",
                StillKind.LIVENESS,
                rel_path,
                jpeg,
                at_ms,
                "system",
                details=details,
            )

        async def event(kind: str, at_ms: int, payload: dict[str, Any]) -> None:
            await self.media.events.event(session_id, at_ms, kind, "system", payload)

        return Director(
            session_id=session_id,
            sequence=sequence,
            policy=attempts.policy_of(self.settings),
            quality=QualityPolicy(max_seconds=self.settings.statement_max_seconds),
            statement=statement(name, agency.name, agency.name_en),
            takes=self.settings.statement_takes,
            statement_max_ms=int(self.settings.statement_max_seconds * 1000),
            media=media,
            analyzer=analyzer,
            send=send,
            event=event,
            store_still=store_still,
            compare=lambda stills: compare_faces(
                analysis.embed_image, references, stills, threshold
            ),
            face_threshold=threshold,
            on_done=lambda outcome: self._done(session_id, outcome),
        )

    async def _done(self, session_id: str, outcome: Outcome) -> bool:
        """Store the outcome; whatever happens, the attempt's resources are released."""
        director = self.directors.get(session_id)
        try:
            return await attempts.finish(
                self.db,
                session_id=session_id,
                passed=outcome.passed,
                reason=outcome.reason,
                liveness=outcome.liveness,
                face=outcome.face,
                statement=outcome.statement,
            )
        finally:
            self.directors.pop(session_id, None)
            self._active.discard(session_id)
            self.media.detach(self._wind_up(session_id, director))

    async def _end(self, session_id: str, reason: str, director: Director | None) -> None:
        """An attempt that could not run: failed, and its media closed."""
        try:
            await attempts.finish(
                self.db,
                session_id=session_id,
                passed=False,
                reason=reason,
                liveness=None,
                face=None,
                statement=None,
            )
        finally:
            self._active.discard(session_id)
            self.media.detach(self._wind_up(session_id, director))

    async def _wind_up(self, session_id: str, director: Director | None) -> None:
        if director is not None:
            await director.close()
        await self.media.end(session_id, "oneway_done")

    async def left(self, session_id: str) -> None:
        """The investor's socket closed before the attempt ended (A18: it fails; they may
        try again up to the limit)."""
        director = self.directors.get(session_id)
        if director is not None and director.outcome is None:
            director.abandon("left")

    async def close_all(self) -> None:
        for timer in list(self._timers):
            timer.cancel()  # a restart's crash recovery ends attempts never joined
        running = list(self.directors.values())
        for director in running:
            director.abandon("server_shutdown")
        # Their outcomes stored before the media closes (else the restart's sweep will).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                for director in running:
                    await director.finished()


def _unavailable() -> Unavailable:
    return Unavailable(
        "oneway_unavailable",
        "One-way video is unavailable on this server; please join a video call.",
        "本服务器暂不支持单向视频，请通过双向视频办理。",
    )


async def _attempt_of(tx: AsyncSession, session_id: str) -> OneWayAttempt | None:
    return await tx.scalar(select(OneWayAttempt).where(OneWayAttempt.session_id == session_id))
