"""A one-way attempt, live (A18.3–A18.5): the instructions, the face comparison and the
statement, driven by what the server itself sees in the investor's frames.

The media session records the investor as in a two-way call; an observer hands every
frame to the analyzer (decoding and dlib in its own thread, never on the event loop),
whose samples drive the pure checks (``domain.liveness``, ``domain.statement_quality``).
Every instruction and statement take is a cue in the recording and an event on the
session clock, so the witness who reviews the recording (A18.6) sees them on the
timeline. The investor's page only shows what the server decided; it decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from server.domain.face_pose import FacePose, FaceSample
from server.domain.liveness import (
    LABELS,
    Instruction,
    LivenessCheck,
    LivenessPolicy,
)
from server.domain.statement_quality import QualityPolicy, VideoFacts, assess_statement
from server.domain.voice_sample import VoiceSample

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
# The analyzer runs behind the frames (decode, then dlib in its thread): time limits are
# judged this much behind now, so its lag never shortens the investor's time; if frames
# stop altogether an instruction still times out, this much later.
ANALYSIS_LAG_MS = 1500
# An attempt never hangs: the first picture must come, the statement must be started,
# and the whole attempt must end, within these (the socket's heartbeat alone would keep
# an idle tab's attempt, its recording and its analyzer running).
FIRST_PICTURE_MS = 20_000
STATEMENT_START_MS = 180_000
ATTEMPT_MAX_MS = 15 * 60_000
# A18.5: the statement is the investor's: another face reading it (drift above the
# liveness limit in this many samples in a row) fails the attempt.
DRIFT_SAMPLES = 2
# Frontal photos kept for the comparison and as evidence (A18.4, A19).
STILLS_COMPARED = 3


class Phase(StrEnum):
    WAITING = "waiting"  # no picture yet
    LIVENESS = "liveness"  # baseline, then the instructions
    COMPARING = "comparing"  # A18.4
    STATEMENT_READY = "statement_ready"  # the text is shown; the investor starts
    STATEMENT = "statement"  # recording the take
    CHECKING = "checking"  # A18.5 quality control of the take
    DONE = "done"


class Analyzer(Protocol):
    def push_video(self, data: bytes, at_ms: int, key: bool, codec: str) -> None: ...
    def push_audio(self, data: bytes, at_ms: int) -> None: ...
    def frontal_stills(self) -> list[tuple[int, bytes]]: ...
    def video_facts(self, start_ms: int, end_ms: int) -> VideoFacts: ...
    async def close(self) -> None: ...


class Media(Protocol):
    """What the director needs of the media session (server/media/session.py)."""

    def now_ms(self) -> int: ...
    def open_cue(self, start_ms: int, text: str) -> None: ...
    def close_cue(self, end_ms: int) -> None: ...


# (kind, offset_ms, payload) → stored as a session event on the session clock.
EventSink = Callable[[str, int, dict[str, Any]], Awaitable[None]]
# (jpeg, offset_ms, details) → stored as a still of the investor; returns the still.
StillSink = Callable[[bytes, int, dict[str, Any]], Awaitable[dict[str, Any]]]
# The comparison (A18.4): the stills against the references; blocking, run in a thread.
Comparer = Callable[[list[bytes]], dict[str, Any]]


@dataclass
class Outcome:
    passed: bool
    reason: str | None
    liveness: dict[str, Any] | None = None
    face: dict[str, Any] | None = None
    statement: list[dict[str, Any]] = field(default_factory=list)


class Director:
    def __init__(
        self,
        *,
        session_id: str,
        sequence: tuple[Instruction, ...],
        policy: LivenessPolicy,
        quality: QualityPolicy,
        statement: dict[str, str],
        takes: int,
        statement_max_ms: int,
        media: Media,
        analyzer: Analyzer,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        event: EventSink,
        store_still: StillSink,
        compare: Comparer,
        face_threshold: float,
        on_done: Callable[[Outcome], Awaitable[bool]],
    ) -> None:
        self.session_id = session_id
        self.sequence = sequence
        self.policy = policy
        self.quality = quality
        self.statement_text = statement
        self.takes_allowed = takes
        self.statement_max_ms = statement_max_ms
        self.media = media
        self.analyzer = analyzer
        self._send = send
        self._event = event
        self._store_still = store_still
        self._compare = compare
        self.face_threshold = face_threshold
        self._on_done = on_done
        self.phase = Phase.WAITING
        self.check: LivenessCheck | None = None
        self.faces: list[FaceSample] = []
        self.voices: list[VoiceSample] = []
        self.takes: list[dict[str, Any]] = []
        self._take_start: int | None = None
        self._outcome: Outcome | None = None
        # Progress is handled by one task, in order: the investor's page and the events
        # must see "passed" before the next "started".
        self._inbox: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._opened_ms = media.now_ms()
        self._ready_since: int | None = None
        self._drifted = 0
        self._face: dict[str, Any] | None = None  # the comparison's result, once made

    # ── frames in (event loop; cheap) ───────────────────────────────────────────────
    def observe(self, role: str, kind: str, codec: str, data: bytes, at_ms: int, key: bool) -> None:
        if role != "investor" or self.phase is Phase.DONE:
            return
        if kind == "video":
            self.analyzer.push_video(data, at_ms, key, codec.lower())
        else:
            self.analyzer.push_audio(data, at_ms)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    # ── samples in (event loop, from the analyzer's thread) ─────────────────────────
    def on_face(self, sample: FaceSample) -> None:
        if self.phase is Phase.DONE:
            return
        self.faces.append(sample)
        if self.phase is Phase.WAITING:
            self.phase = Phase.LIVENESS
            self.check = LivenessCheck(self.sequence, self.policy, sample.at_ms)
            self._inbox.put_nowait([_Say({"type": "oneway.phase", "phase": "baseline"})])
        if self.phase is Phase.LIVENESS and self.check is not None:
            events = self.check.feed(sample)
            if events:
                self._inbox.put_nowait(events)
        elif self.phase in (Phase.STATEMENT_READY, Phase.STATEMENT, Phase.CHECKING):
            changed = sample.drift is not None and sample.drift > self.policy.drift_limit
            self._drifted = self._drifted + 1 if changed else 0
            if self._drifted == DRIFT_SAMPLES:
                self._inbox.put_nowait([_Request("face_changed")])

    def on_voice(self, sample: VoiceSample) -> None:
        if self.phase in (Phase.STATEMENT, Phase.STATEMENT_READY):
            self.voices.append(sample)

    # ── the investor's page ─────────────────────────────────────────────────────────
    # Requests are queued for the director's own task: a socket handler may be cancelled
    # (the page went away) and must never be the one storing the outcome.
    def statement_start(self) -> None:
        self._inbox.put_nowait([_Request("statement_start")])

    def statement_done(self) -> None:
        self._inbox.put_nowait([_Request("statement_done")])

    def abandon(self, reason: str) -> None:
        """The investor left the page or the call dropped: the attempt ends (A18: they may
        try again up to the limit)."""
        self._inbox.put_nowait([_Request("abandon", reason)])

    async def finished(self) -> None:
        if self._runner is not None:
            await asyncio.wait([self._runner])

    async def _handle(self, request: _Request) -> None:
        if request.kind == "statement_start":
            await self._statement_start()
        elif request.kind == "statement_done":
            if self.phase is Phase.STATEMENT:
                await self._check_take()
        elif request.kind == "face_changed":
            now = self.media.now_ms()
            self.media.close_cue(now)
            await self._event("oneway.face_changed", now, {"phase": self.phase.value})
            await self._finish(Outcome(False, "face_changed", *self._so_far()))
        else:  # abandon
            if self.check is not None and self.phase is Phase.LIVENESS:
                self.check.abandon()  # the liveness check's own reason: left
            await self._finish(Outcome(False, request.detail, *self._so_far()))

    def _so_far(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[Any]]:
        return self._liveness_dict(), self._face, self.takes

    async def _statement_start(self) -> None:
        if self.phase is not Phase.STATEMENT_READY:
            return
        now = self.media.now_ms()
        self.phase = Phase.STATEMENT
        self._take_start = now
        take = len(self.takes) + 1
        self.media.open_cue(now, f"陈述 statement (take {take})")
        await self._event("oneway.statement_started", now, {"take": take})
        await self._say({"type": "oneway.phase", "phase": "statement", "take": take})

    # ── the checks ──────────────────────────────────────────────────────────────────
    async def _run(self) -> None:
        while self.phase is not Phase.DONE:
            try:
                events = await asyncio.wait_for(self._inbox.get(), TICK_SECONDS)
            except TimeoutError:
                events = []
            try:
                await self._progress(events)
                await self._tick()
            except Exception:
                log.exception("one-way step failed", extra={"session": self.session_id})
                await self._finish(Outcome(False, "server_error", self._liveness_dict()))

    async def _tick(self) -> None:
        now = self.media.now_ms()
        timeout = self._timed_out(now)
        if timeout is not None:
            await self._event("oneway.timed_out", now, {"phase": self.phase.value})
            await self._finish(Outcome(False, timeout, *self._so_far()))
            return
        if self.phase is Phase.LIVENESS and self.check is not None:
            await self._progress(self.check.tick(now - ANALYSIS_LAG_MS))
        elif (
            self.phase is Phase.STATEMENT
            and self._take_start is not None
            and now - self._take_start >= self.statement_max_ms
        ):
            await self._check_take()

    async def _progress(self, events: list[Any]) -> None:
        for progress in events:
            if self.phase is Phase.DONE:
                return
            if isinstance(progress, _Say):
                await self._say(progress.message)
            elif isinstance(progress, _Request):
                await self._handle(progress)
            else:
                await self._on_progress(progress)

    def _timed_out(self, now: int) -> str | None:
        if self.phase is Phase.WAITING and now - self._opened_ms > FIRST_PICTURE_MS:
            return "no_video"
        if (
            self.phase is Phase.STATEMENT_READY
            and self._ready_since is not None
            and now - self._ready_since > STATEMENT_START_MS
        ):
            return "statement_not_started"
        if now - self._opened_ms > ATTEMPT_MAX_MS:
            return "too_long"
        return None

    async def _on_progress(self, progress: Any) -> None:
        kind = progress.kind
        now = self.media.now_ms()
        if kind == "instruction_started":
            instruction = progress.instruction
            zh, en = LABELS[instruction]
            self.media.open_cue(now, f"{zh} {en}")
            await self._event(
                "oneway.instruction_started",
                now,
                {"index": progress.index, "instruction": instruction.value},
            )
            await self._say(
                {
                    "type": "oneway.instruction",
                    "index": progress.index,
                    "count": len(self.sequence),
                    "instruction": instruction.value,
                    "label_zh": zh,
                    "label_en": en,
                    "seconds": self.policy.seconds,
                }
            )
        elif kind == "instruction_passed":
            self.media.close_cue(now)
            await self._event(
                "oneway.instruction_passed", now, {"index": progress.index, **progress.detail}
            )
            await self._say({"type": "oneway.instruction_passed", "index": progress.index})
        elif kind == "baseline_done":
            await self._event("oneway.baseline", now, progress.detail)
        elif kind == "failed":
            self.media.close_cue(now)
            await self._event("oneway.liveness_failed", now, {"reason": progress.reason})
            await self._finish(Outcome(False, f"liveness_{progress.reason}", self._liveness_dict()))
        elif kind == "passed":
            self.media.close_cue(now)
            await self._event("oneway.liveness_passed", now, {})
            await self._compare_faces()

    def _liveness_dict(self) -> dict[str, Any] | None:
        return self.check.result().as_dict() if self.check is not None else None

    def _baseline(self) -> FacePose | None:
        return self.check.result().baseline if self.check is not None else None

    async def _compare_faces(self) -> None:
        """A18.4: the frontal photos taken during the instructions against the ID image
        and the intake photo. No comparison possible counts as a failure: the investor is
        sent to a two-way call or the counter, as A18.4 requires."""
        self.phase = Phase.COMPARING
        await self._say({"type": "oneway.phase", "phase": "comparing"})
        stills = self.analyzer.frontal_stills()[:STILLS_COMPARED]
        stored = []
        for at_ms, jpeg in stills:
            stored.append(await self._store_still(jpeg, at_ms, {"purpose": "oneway_compare"}))
        result = await asyncio.to_thread(self._compare, [jpeg for _at, jpeg in stills])
        if self._outcome is not None:
            return  # ended meanwhile (the investor left)
        result = {**result, "threshold": self.face_threshold, "stills": len(stills)}
        await self._event("oneway.face_compared", self.media.now_ms(), result)
        if not stills or not result.get("passed"):
            reason = "face_not_comparable" if result.get("comparable") is False else "face_mismatch"
            if not stills:
                reason = "face_not_comparable"
            await self._finish(Outcome(False, reason, self._liveness_dict(), result))
            return
        self._face = result
        self.phase = Phase.STATEMENT_READY
        self._ready_since = self.media.now_ms()
        await self._say(
            {
                "type": "oneway.statement",
                "text_zh": self.statement_text["zh"],
                "text_en": self.statement_text["en"],
                "version": self.statement_text["version"],
                "takes_left": self.takes_allowed - len(self.takes),
                "max_seconds": self.statement_max_ms // 1000,
            }
        )

    async def _check_take(self) -> None:
        assert self._take_start is not None
        end = self.media.now_ms()
        start, self._take_start = self._take_start, None
        self.phase = Phase.CHECKING
        self.media.close_cue(end)
        await self._say({"type": "oneway.phase", "phase": "checking"})
        # The analyzer runs a little behind the frames: let it catch up with the take.
        await asyncio.sleep(0.6)
        if self._outcome is not None:
            return
        faces = [s for s in self.faces if start <= s.at_ms <= end]
        voices = [v for v in self.voices if start <= v.at_ms <= end]
        report = assess_statement(
            faces,
            voices,
            self.analyzer.video_facts(start, end),
            start,
            end,
            self._baseline(),
            self.quality,
        )
        take = {
            **report.as_dict(),
            "take": len(self.takes) + 1,
            "start_ms": start,
            "end_ms": end,
            "version": self.statement_text["version"],
        }
        self.takes.append(take)
        await self._event("oneway.statement_checked", end, take)
        if report.passed:
            await self._finish(Outcome(True, None, self._liveness_dict(), self._face, self.takes))
            return
        left = self.takes_allowed - len(self.takes)
        await self._say({"type": "oneway.statement_result", **take, "takes_left": left})
        if left <= 0:
            await self._finish(
                Outcome(False, "statement_quality", self._liveness_dict(), self._face, self.takes)
            )
            return
        self.voices.clear()
        self.phase = Phase.STATEMENT_READY
        self._ready_since = self.media.now_ms()

    async def _finish(self, outcome: Outcome) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        self.phase = Phase.DONE
        # Stored first: a page that reloads on "done" must find the new state. What the
        # investor is told is what was stored: an attempt already ended elsewhere (the
        # join timer, a crash sweep) or a failed write is not a pass.
        try:
            stored = await self._on_done(outcome)
        except Exception:
            log.exception("one-way outcome not stored", extra={"session": self.session_id})
            stored = False
        told = (
            {"passed": outcome.passed, "reason": outcome.reason}
            if stored
            else {"passed": False, "reason": "attempt_over"}
        )
        with contextlib.suppress(Exception):
            await self._say({"type": "oneway.done", **told})

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    async def close(self) -> None:
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self.analyzer.close()

    # ── helpers ─────────────────────────────────────────────────────────────────────

    async def _say(self, message: dict[str, Any]) -> None:
        try:
            await self._send(message)
        except Exception:  # a closed socket: the close path ends the attempt
            log.info("one-way message not delivered", extra={"session": self.session_id})


@dataclass(frozen=True)
class _Say:
    message: dict[str, Any]


@dataclass(frozen=True)
class _Request:
    kind: str  # statement_start | statement_done | face_changed | abandon
    detail: str = ""


__all__ = ["Director", "Outcome", "Phase"]
