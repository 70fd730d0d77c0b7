"""Staff opening an investor's documents and the session's stills (A17.3, A17.5, A25).

One place for the three steps every such read takes: check that this staff member may
see it now (the witness of an open session, or the reviewer holding its review), write
the read into the audit chain, and hand back the file to stream. The witness desk and
the review page both use it; neither handler touches the database itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.domain.errors import NotFound
from server.domain.session import OPEN_STATES
from server.services.intake.steps import active_documents
from server.store.models import Document, Review, Still, WitnessSession

# The images an investor hands in at intake (A14, A17.1).
DOCUMENT_KINDS = frozenset({"id_front", "id_back", "frontal_photo"})


@dataclass(frozen=True)
class OpenedFile:
    path: Path
    content_type: str


def _session_not_found() -> NotFound:
    # Same answer for "not yours" and "no such session": no existence leak.
    return NotFound("session_not_found", "Session not found.", "未找到该见证会话。")


class StaffDocuments:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], root: Path) -> None:
        self.db = db
        self.root = root

    async def _witness_session(
        self, tx: AsyncSession, *, staff_id: int, session_id: str
    ) -> WitnessSession:
        witness_session = await tx.get(WitnessSession, session_id)
        if (
            witness_session is None
            or witness_session.witness_id != staff_id
            or witness_session.state not in OPEN_STATES
        ):
            raise _session_not_found()
        return witness_session

    async def _audited_document(
        self,
        tx: AsyncSession,
        *,
        application_id: str,
        kind: str,
        staff_id: int,
        details: dict[str, str],
        missing: NotFound,
    ) -> Document:
        doc = next((d for d in await active_documents(tx, application_id) if d.kind == kind), None)
        if doc is None:
            raise missing
        # A25: every read of personal data by staff is on the record.
        await append_audit(
            tx,
            actor=f"staff:{staff_id}",
            action="document.viewed",
            subject_type="document",
            subject_id=doc.id,
            details={**details, "kind": kind},
        )
        return doc

    async def for_witness(self, *, staff_id: int, session_id: str, kind: str) -> OpenedFile:
        """The investor's ID images and intake photo, beside the live video (A17.3)."""
        missing = NotFound("document_not_found", "No such document.", "没有该证件影像。")
        if kind not in DOCUMENT_KINDS:
            raise missing
        async with self.db.begin() as tx:
            witness_session = await self._witness_session(
                tx, staff_id=staff_id, session_id=session_id
            )
            doc = await self._audited_document(
                tx,
                application_id=witness_session.application_id,
                kind=kind,
                staff_id=staff_id,
                details={"session": witness_session.id},
                missing=missing,
            )
        return OpenedFile(self.root / doc.path, doc.content_type)

    async def still_for_witness(
        self, *, staff_id: int, session_id: str, still_id: str
    ) -> OpenedFile:
        async with self.db.begin() as tx:
            witness_session = await self._witness_session(
                tx, staff_id=staff_id, session_id=session_id
            )
            still = await tx.get(Still, still_id)
            if still is None or still.session_id != witness_session.id:
                raise NotFound("still_not_found", "No such photo.", "没有该照片。")
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="still.viewed",
                subject_type="still",
                subject_id=still.id,
                details={"session": witness_session.id},
            )
        return OpenedFile(self.root / still.path, still.content_type)

    async def for_reviewer(self, *, staff_id: int, session_id: str, kind: str) -> OpenedFile:
        """An ID image for the reviewer holding the session's open review (A17.5)."""
        missing = NotFound("not_found", "Not found.", "未找到。")
        async with self.db.begin() as tx:
            review = await tx.scalar(
                select(Review).where(
                    Review.session_id == session_id,
                    Review.reviewer_id == staff_id,
                    Review.decision.is_(None),
                )
            )
            if review is None or kind not in DOCUMENT_KINDS:
                raise missing
            doc = await self._audited_document(
                tx,
                application_id=review.application_id,
                kind=kind,
                staff_id=staff_id,
                details={"session": session_id, "as": "reviewer"},
                missing=missing,
            )
        return OpenedFile(self.root / doc.path, doc.content_type)
