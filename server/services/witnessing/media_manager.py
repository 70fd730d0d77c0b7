"""This node's media sessions (server/media/session.py) and the parties' rejoin grace
timers: a party whose socket drops has ``media.rejoin_grace_seconds`` to come back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import MediaConfig
from server.domain.errors import Conflict
from server.domain.session import OPEN_STATES, Party
from server.media.naive import NaiveSession
from server.media.session import MediaSession, MediaSettings
from server.services.witnessing.media_events import DbMediaEvents, session_dir
from server.services.witnessing.turn import ice_servers_for
from server.store.db import reading
from server.store.models import WitnessSession

log = logging.getLogger(__name__)


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
        on_answer: Callable[[float], None] = lambda _s: None,
    ) -> None:
        self.config = config
        # Told how long each offer took to answer, in seconds (the node's metrics).
        self.on_answer = on_answer
        self.db = db
        self.settings = MediaSettings(
            recordings_root=root,
            # Minted per connection: TURN credentials expire.
            ice_servers=lambda: ice_servers_for(config, "media-node", now=time.time()),
            record=config.record,
            keyframe_interval=config.keyframe_interval_seconds,
            max_video_bitrate=config.max_video_kbps * 1000 or None,
            audio_packet_ms=config.audio_packet_ms,
            forward_packets=config.pipeline == "passthrough",
            on_auto_still=self._auto_still,
        )
        # Set by the runtime once the witnessing service exists (it shows the automatic
        # still on the desk with its face score; issue 17).
        self.on_auto_still: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        self.node_id = node_id
        self.events = DbMediaEvents(db, root=root, node_id=node_id, on_bytes=on_bytes)
        self.sessions: dict[str, MediaSession] = {}
        self._grace: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Which socket of a party is current: a late close of a superseded socket (its
        # death noticed only at the heartbeat timeout) must not touch the new one.
        self._owner: dict[tuple[str, str], int] = {}
        self._generation = 0
        # Sessions being opened: one opening per session, and none waits for another's
        # (issue 21: one lock for all, held over two database round trips, queued every
        # party's first offer on the node behind the others' at 32 sessions).
        self._opening: dict[str, asyncio.Future[MediaSession]] = {}
        self._detached: set[asyncio.Task[None]] = set()

    async def _auto_still(self, session_id: str, still: dict[str, Any]) -> None:
        if self.on_auto_still is not None:
            await self.on_auto_still(session_id, still)

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
        opening = self._opening.get(session_id)
        media = self.sessions.get(session_id)
        # One opening per session: both parties' first offers get the same media session.
        if opening is None and media is not None and not media.closed:
            return media
        if opening is None:
            opening = asyncio.ensure_future(self._open(session_id))
            self._opening[session_id] = opening

            def opened(done: asyncio.Future[MediaSession]) -> None:
                if self._opening.get(session_id) is done:
                    del self._opening[session_id]
                if not done.cancelled():
                    done.exception()  # retrieved: each waiter has it raised

            opening.add_done_callback(opened)
        # Shielded: a party's socket going away must not cancel the other party's opening.
        return await asyncio.shield(opening)

    async def _open(self, session_id: str) -> MediaSession:
        async with reading(self.db) as db:
            witness_session = await db.get(WitnessSession, session_id)
        if witness_session is None or witness_session.state not in OPEN_STATES:
            raise Conflict("session_over", "The session has ended.", "会话已结束。")
        if witness_session.node_id != self.node_id:
            # Both parties' media must meet on the one node that records them.
            raise Conflict(
                "wrong_node",
                "This session is held by another media node; reconnect.",
                "该会话由另一媒体节点承载，请重新连接。",
            )
        created = witness_session.created_at
        # The naive pipeline exists only as the load benchmark's baseline.
        kind = NaiveSession if self.config.pipeline == "naive" else MediaSession
        media = kind(
            session_id,
            rel_dir=session_dir(session_id, created),
            settings=self.settings,
            events=self.events,
        )
        self.sessions[session_id] = media
        # The session clock's 0 is logged (media.clock_started) by its first leg's write.
        return media

    async def answer(self, session_id: str, role: str, sdp: str) -> str:
        """A party's WebRTC offer, answered by this node's media session for it."""
        started = time.monotonic()
        media = await self.session(session_id)
        answer = await media.connect(role, sdp)
        self.on_answer(time.monotonic() - started)
        return answer

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
        for role in Party:
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
