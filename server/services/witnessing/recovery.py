"""Crash recovery at start-up: recordings a crash left open become hashed, playable
evidence, and their sessions are marked interrupted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.domain.recording import RecordingStatus
from server.domain.session import OPEN_STATES
from server.media.recorder import FileFacts, finalize
from server.services.witnessing.media_events import store_facts
from server.store.models import Recording, WitnessSession

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


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
    async with db.begin() as tx:
        rows = (
            await tx.scalars(
                select(Recording).where(
                    Recording.status == RecordingStatus.RECORDING,
                    Recording.node_id.not_in(alive_nodes),
                    # Never this process's own live recordings (recovery may be retried
                    # while the node already serves).
                    Recording.started_at < started_before,
                )
            )
        ).all()
        open_recordings = [(r.id, r.path) for r in rows]
        sessions = (
            await tx.scalars(
                select(WitnessSession.id).where(
                    WitnessSession.state.in_(OPEN_STATES),
                    WitnessSession.node_id.not_in(alive_nodes),
                    WitnessSession.created_at < started_before,
                )
            )
        ).all()
    recovered = 0
    for rec_id, rel_path in open_recordings:
        facts, failure = await asyncio.to_thread(_recover_file, root, rel_path)
        async with db.begin() as tx:
            rec = await tx.get(Recording, rec_id, with_for_update=True)
            if rec is None or rec.status != RecordingStatus.RECORDING:
                continue
            await store_facts(tx, rec, facts, failure, recovered=True)
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
