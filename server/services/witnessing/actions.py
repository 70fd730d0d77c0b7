"""The witness's work during a call (A12, A14, A17.3, A17.4): the identity disclosure,
the script steps with their marks, the face judgement and the verdict.

Every action is checked against the session's progress (rebuilt from its recorded
events by ``domain.script``), then recorded as a timed session event and an audit entry
with the witness's identity, in one transaction. Steps are also written as cues into both
recordings (``MediaSession.add_cue``) and shown over the video on both screens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append_audit
from server.config import AgencyConfig
from server.crypto import DataProtector
from server.domain.application import ApplicationEvent
from server.domain.business import BusinessType
from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.recording import StillKind
from server.domain.script import (
    FACE_JUDGEMENTS,
    Progress,
    Script,
    check_verdict,
    progress_from,
    script_for,
)
from server.domain.session import Party, SessionState, Verdict
from server.media.session import MediaSession
from server.services.applications import apply_event, get_application
from server.services.intake.steps import ID_CONTEXT, active_documents
from server.services.pairing.placement import Placer, session_channel
from server.services.service_requests import service_view
from server.services.witnessing.face import (
    ADVICE,
    SAME_PERSON_BELOW,
    EmbedderBusy,
    ReferenceEmbeddings,
    embed_image_async,
    embedder_available,
    embedding_distance,
)
from server.store.db import reading
from server.store.models import SessionEvent, Staff, Still, WitnessSession, utcnow

log = logging.getLogger(__name__)

SCRIPT_KINDS = (
    "disclosure.shown",
    "disclosure.confirmed",
    "script.step_started",
    "script.step_marked",
    "face.judged",
)
MAX_NOTE = 500
# After the face aid failed to start (the embedding process died loading the models, or
# did not answer on a saturated node), the next still tries again after this long: one
# bad start at boot no longer leaves the desk without scores until a restart.
FACE_AID_RETRY_S = 60.0


def disclosure_card(staff: Staff, agency: AgencyConfig) -> dict[str, Any]:
    """What the investor is shown about their witness (A12, A17.3)."""
    return {
        "name": staff.display_name,
        "employee_number": staff.employee_number or "",
        "licence_number": staff.licence_number,
        "agency": agency.name,
        "agency_en": agency.name_en,
        "website": agency.website,
        "hotline": agency.hotline,
        "licence_lookup_url": agency.licence_lookup_url,
    }


async def _embed_file(path: Path) -> Any | None:
    # In the advice lane's embedding process (``face.ADVICE``, at a lower priority):
    # dlib's ~140 ms per picture there holds no lock of this one, where every call's
    # media on the node runs. (In a thread here, a call's start, three embeddings with
    # a face, stalled them all for ~0.4 s.) ``embedding`` keeps the upsampled search for
    # small faces for stills: a still is as large as the video, which a poor link brings
    # down to 320×240, where a face is ~100 px wide and the coarser detection of
    # ``FaceMatcher.measure`` missed it (measured here).
    # The wait for the process holds no thread: behind a burst of calls' starts it can
    # last seconds, and the default executor's few threads serve the stills, the
    # recordings' finalization and reviewers' playback.
    data = await asyncio.to_thread(path.read_bytes)
    return await embed_image_async(data, lane=ADVICE)


class Witnessing:
    def __init__(
        self,
        *,
        placer: Placer,
        scripts: Mapping[BusinessType, Script],
        agency: AgencyConfig,
        files_root: Path,
        face_aid: bool = True,
        on_verdict: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.placer = placer
        # A23: risk rules evaluated once the verdict is recorded (never raises).
        self.on_verdict = on_verdict
        self.files_root = files_root
        self._face_aid = face_aid
        self._face_available = False
        # When the aid may be (re)started: 0 = now; None = never (installed or not, known).
        self._face_retry_at: float | None = 0.0
        self._face_lock = asyncio.Lock()
        self.references = ReferenceEmbeddings()
        self._scoring: set[asyncio.Task[None]] = set()
        self.db = placer.pairing.db
        # A20: one script per business type; a session is witnessed with its business's.
        self.scripts: dict[str, Script] = {str(k): v for k, v in scripts.items()}
        self.agency = agency

    @property
    def script(self) -> Script:
        """The opening script (most sessions are openings)."""
        return script_for(self.scripts, BusinessType.OPEN)

    async def script_of(self, tx: AsyncSession, session_id: str) -> Script:
        business_type = await tx.scalar(
            select(WitnessSession.business_type).where(WitnessSession.id == session_id)
        )
        return script_for(self.scripts, business_type or BusinessType.OPEN)

    async def _session_for(
        self, tx: AsyncSession, session_id: str, staff_id: int
    ) -> WitnessSession:
        witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
        if witness_session is None or witness_session.witness_id != staff_id:
            raise NotFound("session_not_found", "Session not found.", "未找到该见证会话。")
        if witness_session.state != SessionState.LIVE:
            raise Conflict(
                "session_not_live",
                "The investor has not joined, or the session is over.",
                "投资者尚未接入或会话已结束。",
            )
        return witness_session

    async def progress(self, tx: AsyncSession, session_id: str) -> Progress:
        rows = await tx.execute(
            select(SessionEvent.offset_ms, SessionEvent.kind, SessionEvent.payload)
            .where(SessionEvent.session_id == session_id, SessionEvent.kind.in_(SCRIPT_KINDS))
            .order_by(SessionEvent.id)
        )
        script = await self.script_of(tx, session_id)
        return progress_from(script, ((o, k, p or {}) for o, k, p in rows.all()))

    async def _record(
        self,
        tx: AsyncSession,
        *,
        session_id: str,
        staff_id: int,
        offset_ms: int,
        kind: str,
        payload: dict[str, Any],
    ) -> None:
        tx.add(
            SessionEvent(
                session_id=session_id,
                offset_ms=offset_ms,
                kind=kind,
                actor=f"staff:{staff_id}",
                payload=payload,
            )
        )
        await append_audit(
            tx,
            actor=f"staff:{staff_id}",
            action=kind,
            subject_type="witness_session",
            subject_id=session_id,
            details={"offset_ms": offset_ms, **payload},
        )

    def state_message(self, progress: Progress) -> dict[str, Any]:
        """The desk's view of where the session stands (after every action)."""
        return {
            "type": "script_state",
            "script_version": progress.script.version,
            "steps": [s.as_dict() for s in progress.script.steps],
            "disclosure_shown": progress.disclosure_shown_ms is not None,
            "disclosure_confirmed": progress.disclosure_confirmed_ms is not None,
            "current": progress.current,
            "marks": [r.mark for r in progress.steps],
            "notes": [r.note for r in progress.steps],
            "face": progress.face,
            "pass_problems": progress.verdict_problems(Verdict.PASS),
        }

    async def act(
        self, *, session_id: str, staff_id: int, media: MediaSession, message: dict[str, Any]
    ) -> dict[str, Any]:
        """One witness action from the desk; returns the new script state."""
        kind = message.get("type")
        now = media.now_ms()
        broadcast: dict[str, Any] | None = None
        async with self.db.begin() as tx:
            await self._session_for(tx, session_id, staff_id)
            progress = await self.progress(tx, session_id)
            record: tuple[str, dict[str, Any]]
            if kind == "disclosure_show":
                staff = await tx.get(Staff, staff_id)
                assert staff is not None
                card = disclosure_card(staff, self.agency)
                record = ("disclosure.shown", {"script_version": progress.script.version, **card})
                broadcast = {"type": "disclosure", "card": card}
            elif kind == "disclosure_confirm":
                if progress.disclosure_shown_ms is None:
                    raise Conflict(
                        "disclosure_not_shown",
                        "Show the disclosure card first.",
                        "请先展示身份告知卡。",
                    )
                record = ("disclosure.confirmed", {})
                broadcast = {"type": "disclosure_done"}
            elif kind == "step_start":
                index = _int(message.get("index"))
                progress.check_start(index)
                step = progress.script.step(index)
                record = ("script.step_started", {"index": index, "step": step.id})
                broadcast = {"type": "prompt", "index": index, "step": step.as_dict()}
            elif kind == "step_mark":
                index = _int(message.get("index"))
                mark = str(message.get("mark", ""))
                note = str(message.get("note", ""))[:MAX_NOTE]
                progress.check_mark(index, mark, note)
                record = (
                    "script.step_marked",
                    {
                        "index": index,
                        "step": progress.script.step(index).id,
                        "mark": mark,
                        "note": note,
                    },
                )
            elif kind == "face_judge":
                judgement = str(message.get("judgement", ""))
                if judgement not in FACE_JUDGEMENTS:
                    raise InvalidInput("bad_judgement", "Unknown judgement.", "未知的比对结论。")
                record = ("face.judged", {"judgement": judgement})
            else:
                raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")
            await self._record(
                tx,
                session_id=session_id,
                staff_id=staff_id,
                offset_ms=now,
                kind=record[0],
                payload=record[1],
            )
            await tx.flush()
            progress = await self.progress(tx, session_id)
        if kind == "step_start" and broadcast is not None:
            # The step now on screen becomes a cue in both recordings when the next one
            # starts or the call ends (A17.4: the recording shows what was asked).
            step = broadcast["step"]
            text = step["text_zh"] + (f" / {step['text_en']}" if step["text_en"] else "")
            media.open_cue(now, f"{broadcast['index'] + 1}. {text}")
        if broadcast is not None:
            await self.placer.pairing.backend.publish(
                session_channel(session_id, Party.INVESTOR), broadcast
            )
        return self.state_message(progress)

    async def _face_aid_ready(self) -> bool:
        if not self._face_aid:
            return False
        async with self._face_lock:
            now = asyncio.get_running_loop().time()
            if self._face_retry_at is not None and now >= self._face_retry_at:
                try:
                    self._face_available = await asyncio.to_thread(embedder_available)
                    self._face_retry_at = None
                except Exception:
                    # The process did not start, or died loading the models: no scores
                    # for now (the desk shows none; the witness compares by eye, as
                    # ever), and another try at a still after FACE_AID_RETRY_S.
                    self._face_retry_at = now + FACE_AID_RETRY_S
                    log.warning(
                        "face comparison aid unavailable; trying again in %.0f s",
                        FACE_AID_RETRY_S,
                        exc_info=True,
                    )
        return self._face_available

    async def warm_up(self) -> None:
        """Start the face aid now, before any call: the embedding process and its models
        (~1.5 s of CPU, in that process), so a call's first still need not wait for them."""
        await self._face_aid_ready()

    async def take_still(
        self, *, session_id: str, staff_id: int, media: MediaSession
    ) -> list[dict[str, Any]]:
        """The witness's "take frontal photo" (A14): a still of the investor from the live
        video, then the face-comparison advice on it where the face aid is installed."""
        still = await media.capture_still(
            Party.INVESTOR, kind=StillKind.MANUAL, actor=f"staff:{staff_id}"
        )
        # Issue 17: the still is answered at once; its face score (dlib, 0.1–0.5 s per
        # image, more on a busy node) follows on the witness's channel, naming the still,
        # as for the automatic still: the witness no longer waits for the score to see it.
        self._score_later(session_id, still, media.now_ms())
        return [{"type": "still", **still}]

    def _score_later(self, session_id: str, still: dict[str, Any], offset_ms: int) -> None:
        async def score() -> None:
            result = await self.face_score(session_id=session_id, still=still, offset_ms=offset_ms)
            if result is not None:
                await self.placer.pairing.backend.publish(
                    session_channel(session_id, Party.WITNESS), result
                )

        task = asyncio.create_task(score())
        self._scoring.add(task)
        task.add_done_callback(self._scored)

    def _scored(self, task: asyncio.Task[None]) -> None:
        self._scoring.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, EmbedderBusy):
            # A node too busy for advice, not a fault: the desk keeps "no score yet", the
            # witness compares by eye, and the next still is scored as usual.
            log.warning("face score skipped: %s", exc)
        else:
            log.error("face score failed", exc_info=exc)

    async def show_auto_still(self, session_id: str, still: dict[str, Any]) -> None:
        """Issue 17: the still taken automatically at session start reaches the witness's
        desk as the same messages a still it takes does (the still, then the face-comparison
        advice), so the witness need not take one to get a score (A14, A17.3)."""
        channel = session_channel(session_id, Party.WITNESS)
        await self.placer.pairing.backend.publish(channel, {"type": "still", **still})
        self._score_later(session_id, still, int(still.get("offset_ms", 0)))

    async def face_score(
        self, *, session_id: str, still: dict[str, Any], offset_ms: int
    ) -> dict[str, Any] | None:
        """Advice for the face comparison (A17.3): the distance between the live still and
        the ID image and intake photo. None without the optional ``face`` extra."""
        if not await self._face_aid_ready():
            return None
        async with reading(self.db) as tx:
            witness_session = await tx.get(WitnessSession, session_id)
            still_row = await tx.get(Still, still["id"])
            if witness_session is None or still_row is None:
                return None
            docs = await active_documents(tx, witness_session.application_id)
        references = [d for d in docs if d.kind in ("id_front", "frontal_photo")]
        still_path = self.files_root / still_row.path
        # Each picture is embedded once: the still once, not once per reference, and each
        # reference once, not at every still (cached). Before, every still cost four
        # embeddings (measured here: 0.58 s of CPU without a face, ~1 s with one).
        live = await _embed_file(still_path)
        scores: dict[str, float | None] = {}
        for doc in references:
            if live is None:
                # No face in the still: no distance to any reference, and nothing to
                # compute for them now (the next still will, if it shows a face).
                scores[doc.kind] = None
                continue
            reference = await self.references.get(
                (doc.id, doc.sha256),
                functools.partial(_embed_file, self.files_root / doc.path),
            )
            scores[doc.kind] = embedding_distance(live, reference)
        found = [v for v in scores.values() if v is not None]
        result = {
            "type": "face_score",
            "still": still["id"],
            "distances": scores,
            "likely_same": bool(found) and min(found) < SAME_PERSON_BELOW,
            "threshold": SAME_PERSON_BELOW,
        }
        async with self.db.begin() as tx:
            tx.add(
                SessionEvent(
                    session_id=session_id,
                    offset_ms=offset_ms,
                    kind="face.scored",
                    actor="system",
                    payload={k: v for k, v in result.items() if k != "type"},
                )
            )
        return result

    async def unmask_id_number(
        self, *, session_id: str, staff_id: int, protector: DataProtector
    ) -> str:
        """The full ID number for the witness of a live session; the read is audited (A25)."""
        async with self.db.begin() as tx:
            witness_session = await self._session_for(tx, session_id, staff_id)
            app = await get_application(tx=tx, application_id=witness_session.application_id)
            if not app.id_number_enc:
                raise NotFound("id_number_missing", "No ID number on file.", "没有证件号码。")
            number = protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="id_number.unmasked",
                subject_type="application",
                subject_id=app.id,
                details={"session": session_id},
            )
        return number

    async def views(self, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """For a (re)joining party: the desk's script state, and what the investor's
        screen should show now (the disclosure card until it was read out, the prompt)."""
        async with reading(self.db) as tx:
            progress = await self.progress(tx, session_id)
            business = await self._business(tx, session_id)
            card: dict[str, Any] | None = None
            if progress.disclosure_shown_ms is not None:
                row = await tx.scalar(
                    select(SessionEvent.payload)
                    .where(
                        SessionEvent.session_id == session_id,
                        SessionEvent.kind == "disclosure.shown",
                    )
                    .order_by(SessionEvent.id.desc())
                    .limit(1)
                )
                card = {k: v for k, v in (row or {}).items() if k != "script_version"}
        # The investor's call screen names the business (A20); the desk also lists its
        # accounts with the account system's precheck.
        investor: list[dict[str, Any]] = [business_message(business)]
        if card is not None:
            investor.append({"type": "disclosure", "card": card})
            if progress.disclosure_confirmed_ms is not None:
                investor.append({"type": "disclosure_done"})
        if progress.current is not None:
            step = progress.script.steps[progress.current]
            investor.append({"type": "prompt", "index": progress.current, "step": step.as_dict()})
        return {**self.state_message(progress), "business": business}, investor

    async def _business(self, tx: AsyncSession, session_id: str) -> dict[str, Any]:
        witness_session = await tx.get(WitnessSession, session_id)
        if witness_session is None:
            raise NotFound("session_not_found", "Session not found.", "未找到该见证会话。")
        app = await get_application(tx=tx, application_id=witness_session.application_id)
        return service_view(app, self.placer.protector)

    async def conclude(
        self,
        *,
        session_id: str,
        staff_id: int,
        media: MediaSession | None,
        result: str,
        reason_code: str | None,
        notes: str,
    ) -> dict[str, Any]:
        """The verdict (A17.3): pass → ``witnessed``, fail → ``witness_failed``; the call
        ends, the recordings close, the witness goes to wrap-up."""
        notes = notes[:MAX_NOTE]
        now = media.now_ms() if media is not None else 0
        async with self.db.begin() as tx:
            witness_session = await self._session_for(tx, session_id, staff_id)
            progress = await self.progress(tx, session_id)
            check_verdict(progress, result, reason_code, notes)
            witness_session.state = SessionState.ENDED
            witness_session.verdict = result
            witness_session.reason_code = reason_code if result == Verdict.FAIL else None
            witness_session.notes = notes or None
            witness_session.ended_at = utcnow()
            app = await get_application(tx=tx, application_id=witness_session.application_id)
            await apply_event(
                tx=tx,
                application=app,
                event=ApplicationEvent.WITNESS_PASSED
                if result == Verdict.PASS
                else ApplicationEvent.WITNESS_FAILED,
                actor=f"staff:{staff_id}",
                details={"session": session_id, "reason": witness_session.reason_code},
            )
            await self._record(
                tx,
                session_id=session_id,
                staff_id=staff_id,
                offset_ms=now,
                kind="session.verdict",
                payload={
                    "result": result,
                    "reason_code": witness_session.reason_code,
                    "script_version": progress.script.version,
                    "has_notes": bool(notes),
                },
            )
            application_id = witness_session.application_id
            started = witness_session.started_at
        # The step on screen ends with the call: its cue goes into both recordings.
        if media is not None:
            media.close_cue(now)
        ended = await self.placer.concluded(
            session_id,
            application_id=application_id,
            staff_id=staff_id,
            started=started,
            result=result,
        )
        log.info("session concluded", extra={"session": session_id, "result": result})
        if self.on_verdict is not None:
            await self.on_verdict(session_id)
        return ended


def business_message(view: dict[str, Any]) -> dict[str, Any]:
    """What the investor's call screen shows of the business: its name only."""
    return {
        "type": "business",
        "business_type": view["business_type"],
        "label_zh": view["label_zh"],
        "label_en": view["label_en"],
    }


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("bad_step", "No such script step.", "没有该话术步骤。")
    return value
