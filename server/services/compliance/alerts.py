"""Risk monitoring (A23) as events happen: load the facts, evaluate the rules, raise the
alerts that are news, each with its event, audit entry and webhook delivery in one tx.

The stages call a hook after their own transaction committed (identity check done,
verdict given, review decided, callback recorded). A hook never fails the business
action: an error is logged and counted (``witness_risk_hook_failures_total``). A
background task (``run_forever``) escalates overdue alerts and evaluates the rules that
need the clock (callback overdue, witness and reviewer statistics).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import RiskConfig
from server.crypto import DataProtector
from server.domain import alerts as life
from server.domain.risk_evaluation import AlertDraft, SubjectType, evaluate
from server.domain.risk_facts import RiskFacts
from server.domain.risk_rules import RuleSet, Severity
from server.services.compliance import risk_facts_loader as load
from server.store.models import Application, new_id
from server.store.risk_models import Alert, AlertEvent, ApplicationSighting, WebhookDelivery

log = logging.getLogger(__name__)

# The first event of every alert (the domain's events are what people do afterwards).
RAISED = "raised"
PENDING = "pending"  # a webhook delivery not yet accepted by the receiver


# X-Device-Id: a random id the investor page (or a broker's app) makes once per device.
DEVICE_ID = re.compile(r"[A-Za-z0-9-]{8,64}")


def valid_device_id(value: str | None) -> str | None:
    """The header's value when it is a plausible device id, else None (it is advisory)."""
    if value is None:
        return None
    value = value.strip()
    return value if DEVICE_ID.fullmatch(value) else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class RiskCounters:
    """The /metrics side of risk monitoring."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.raised = Counter(
            "witness_risk_alerts_raised",
            "Risk alerts raised",
            ["rule", "severity"],
            registry=registry,
        )
        self.escalated = Counter(
            "witness_risk_alert_escalations", "Risk alerts escalated", ["by"], registry=registry
        )
        self.hook_failures = Counter(
            "witness_risk_hook_failures",
            "Risk hooks that failed (the flow went on)",
            ["hook"],
            registry=registry,
        )
        self.webhook = Counter(
            "witness_risk_webhook_deliveries",
            "Alert webhook attempts by outcome",
            ["outcome"],
            registry=registry,
        )


def to_domain(row: Alert, resolved_at: datetime | None = None) -> life.Alert:
    ids = row.details.get("application_ids") if isinstance(row.details, dict) else None
    return life.Alert(
        id=row.id,
        rule_id=row.rule_id,
        rule_version=row.rule_version,
        severity=Severity(row.severity),
        subject_type=SubjectType(row.subject_type),
        subject_id=row.subject_id,
        dedup_key=row.dedup_key,
        observed_at=_utc(row.observed_at),
        application_ids=tuple(ids) if isinstance(ids, list) else (),
        hold_application=row.hold,
        state=life.AlertState(row.state),
        raised_at=_utc(row.created_at),
        due_at=_utc(row.due_at),
        owner=str(row.owner_id) if row.owner_id is not None else None,
        resolved_at=resolved_at,
        details=row.details,
    )


async def resolved_at(tx: AsyncSession, alert_id: str) -> datetime | None:
    at = await tx.scalar(
        select(AlertEvent.at)
        .where(AlertEvent.alert_id == alert_id, AlertEvent.event == life.AlertEvent.RESOLVE.value)
        .order_by(AlertEvent.at.desc())
        .limit(1)
    )
    return _utc(at) if at is not None else None


async def record_sighting(
    db: async_sessionmaker[AsyncSession], *, application_id: str, kind: str, key_hash: str
) -> None:
    """Note an identifier (as its hash) seen behind an application, once per pair."""
    async with db.begin() as tx:
        known = await tx.scalar(
            select(ApplicationSighting.id).where(
                ApplicationSighting.application_id == application_id,
                ApplicationSighting.kind == kind,
                ApplicationSighting.key_hash == key_hash,
            )
        )
        if known is None:
            tx.add(ApplicationSighting(application_id=application_id, kind=kind, key_hash=key_hash))


class RiskWatch:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        rule_set: RuleSet,
        config: RiskConfig,
        callback_max_attempts: int,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.protector = protector
        self.rules = rule_set
        self.config = config
        self.callback_max_attempts = callback_max_attempts
        self.counters = RiskCounters(registry)
        self.clock = clock
        # Set when a new alert has a webhook delivery waiting (webhook.WebhookSender).
        self.deliveries_waiting = asyncio.Event()

    def _description(self, rule_id: str) -> dict[str, str]:
        rule = self.rules.rule(rule_id)
        if rule is None:
            return {}
        return {
            "rule_description_zh": rule.description_zh,
            "rule_description_en": rule.description_en,
        }

    # ── raising ──────────────────────────────────────────────────────────────────────
    async def raise_news(
        self, tx: AsyncSession, drafts: Iterable[AlertDraft], now: datetime
    ) -> list[Alert]:
        """Persist every draft ``should_raise`` calls news; return the new rows."""
        raised: list[Alert] = []
        for draft in drafts:
            rows = (await tx.scalars(select(Alert).where(Alert.dedup_key == draft.dedup_key))).all()
            existing = [to_domain(r, await resolved_at(tx, r.id)) for r in rows]
            if not life.should_raise(draft, existing):
                continue
            alert = life.raise_alert(draft, alert_id=new_id(), at=now, response=self.rules.response)
            row = Alert(
                id=alert.id,
                rule_id=alert.rule_id,
                rule_version=alert.rule_version,
                severity=alert.severity.value,
                state=alert.state.value,
                subject_type=alert.subject_type.value,
                subject_id=alert.subject_id[:64],
                application_id=alert.application_ids[0] if alert.application_ids else None,
                dedup_key=alert.dedup_key[:200],
                hold=alert.hold_application,
                details={
                    **dict(alert.details),
                    "kind": draft.kind.value,
                    "application_ids": list(alert.application_ids),
                    # The rule's words as they were when it fired: rule files change.
                    **self._description(alert.rule_id),
                },
                observed_at=alert.observed_at,
                due_at=alert.due_at,
                created_at=now,
                updated_at=now,
            )
            tx.add(row)
            await tx.flush()
            tx.add(AlertEvent(alert_id=row.id, event=RAISED, actor=life.SYSTEM_ACTOR, at=now))
            await append_audit(
                tx,
                actor=life.SYSTEM_ACTOR,
                action="alert.raised",
                subject_type="alert",
                subject_id=row.id,
                details={
                    "rule": row.rule_id,
                    "version": row.rule_version,
                    "severity": row.severity,
                    "dedup_key": row.dedup_key,
                    "hold": row.hold,
                    "application_ids": list(alert.application_ids),
                },
            )
            if self.config.webhook_url:
                tx.add(
                    WebhookDelivery(
                        alert_id=row.id, idempotency_key=row.id, status=PENDING, next_attempt_at=now
                    )
                )
            raised.append(row)
        return raised

    async def _evaluate(
        self, load_facts: Callable[[AsyncSession, datetime], Awaitable[RiskFacts]]
    ) -> list[Alert]:
        now = self.clock()
        async with self.db.begin() as tx:
            facts = await load_facts(tx, now)
            raised = await self.raise_news(tx, evaluate(self.rules, facts, now), now)
        for row in raised:
            self.counters.raised.labels(row.rule_id, row.severity).inc()
            log.info("risk alert raised", extra={"alert": row.id, "rule": row.rule_id})
        if raised and self.config.webhook_url:
            self.deliveries_waiting.set()
        return raised

    async def _guard(self, hook: str, run: Callable[[], Awaitable[list[Alert]]]) -> list[Alert]:
        try:
            return await run()
        except Exception:
            # The flow this hook watches has already happened; it must not fail for this.
            log.exception("risk hook failed", extra={"hook": hook})
            self.counters.hook_failures.labels(hook).inc()
            return []

    # ── hooks ────────────────────────────────────────────────────────────────────────
    async def saw_phone(self, application_id: str) -> None:
        """An investor signed in: note the application's phone hash."""

        async def run() -> list[Alert]:
            async with self.db.begin() as tx:
                phone_hash = await tx.scalar(
                    select(Application.phone_hash).where(Application.id == application_id)
                )
            if phone_hash:
                await record_sighting(
                    self.db, application_id=application_id, kind="phone", key_hash=phone_hash
                )
            return []

        await self._guard("sighting", run)

    async def saw_ip(self, application_id: str, ip: str) -> None:
        """An intake write came from ``ip``: note its keyed hash (never the address)."""
        if not ip:
            return

        async def run() -> list[Alert]:
            key_hash = self.protector.lookup_hash(ip, kind="ip")
            await record_sighting(
                self.db, application_id=application_id, kind="ip", key_hash=key_hash
            )
            return []

        await self._guard("sighting", run)

    async def saw_device(self, application_id: str, device_id: str | None) -> None:
        """The request carried ``X-Device-Id``: note its keyed hash (never the id itself).
        A missing or malformed id is ignored: it is advisory, never a reason to refuse."""
        value = valid_device_id(device_id)
        if value is None:
            return

        async def run() -> list[Alert]:
            key_hash = self.protector.lookup_hash(value, kind="device")
            await record_sighting(
                self.db, application_id=application_id, kind="device", key_hash=key_hash
            )
            return []

        await self._guard("sighting", run)

    async def after_identity_check(self, application_id: str) -> list[Alert]:
        async def facts(tx: AsyncSession, now: datetime) -> RiskFacts:
            app = await tx.get(Application, application_id)
            if app is None:
                return RiskFacts()
            return RiskFacts(
                sightings=await load.sightings(
                    tx, application_id=application_id, rule_set=self.rules, now=now
                ),
                id_number_failures=await load.id_number_failures(
                    tx, id_number_hash=app.id_number_hash, rule_set=self.rules, now=now
                ),
                applications=(load.application_facts(app, self.protector, now),),
            )

        return await self._guard("identity_check", lambda: self._evaluate(facts))

    async def after_verdict(self, session_id: str) -> list[Alert]:
        async def facts(tx: AsyncSession, now: datetime) -> RiskFacts:
            session = await load.session_facts(tx, session_id)
            if session is None:
                return RiskFacts()
            app = await tx.get(Application, session.application_id)
            return RiskFacts(
                sessions=(session,),
                id_number_failures=await load.id_number_failures(
                    tx,
                    id_number_hash=app.id_number_hash if app else None,
                    rule_set=self.rules,
                    now=now,
                ),
                witness_stats=await load.witness_stats(tx, rule_set=self.rules, now=now),
            )

        return await self._guard("verdict", lambda: self._evaluate(facts))

    async def after_review(self, application_id: str) -> list[Alert]:
        async def facts(tx: AsyncSession, now: datetime) -> RiskFacts:
            return RiskFacts(
                reviewer_stats=await load.reviewer_stats(tx, rule_set=self.rules, now=now)
            )

        return await self._guard("review", lambda: self._evaluate(facts))

    async def after_callback(self, application_id: str) -> list[Alert]:
        return await self._guard(
            "callback", lambda: self._evaluate(self._callbacks([application_id]))
        )

    def _callbacks(
        self, application_ids: list[str] | None
    ) -> Callable[[AsyncSession, datetime], Awaitable[RiskFacts]]:
        async def facts(tx: AsyncSession, now: datetime) -> RiskFacts:
            ids = (
                application_ids if application_ids is not None else await load.awaiting_callback(tx)
            )
            return RiskFacts(
                callbacks=await load.callback_facts(
                    tx,
                    application_ids=ids,
                    deadline=timedelta(hours=self.config.callback_deadline_hours),
                    max_attempts=self.callback_max_attempts,
                ),
                witness_stats=await load.witness_stats(tx, rule_set=self.rules, now=now)
                if application_ids is None
                else (),
                reviewer_stats=await load.reviewer_stats(tx, rule_set=self.rules, now=now)
                if application_ids is None
                else (),
            )

        return facts

    # ── the clock ────────────────────────────────────────────────────────────────────
    async def escalate_overdue(self) -> list[str]:
        """Escalate every open or acknowledged alert past its deadline, as ``system``."""
        now = self.clock()
        on_clock = [s.value for s in (life.AlertState.OPEN, life.AlertState.ACKNOWLEDGED)]
        async with self.db.begin() as tx:
            rows = (
                await tx.scalars(select(Alert).where(Alert.state.in_(on_clock), Alert.due_at < now))
            ).all()
            by_id = {r.id: r for r in rows}
            escalated = life.escalate_overdue([to_domain(r) for r in rows], now)
            for alert in escalated:
                row = by_id[alert.id]
                row.state = alert.state.value
                row.updated_at = now
                note = alert.notes[-1]
                tx.add(
                    AlertEvent(
                        alert_id=row.id,
                        event=note.event.value,
                        actor=note.actor,
                        note=note.text,
                        at=now,
                    )
                )
                await append_audit(
                    tx,
                    actor=life.SYSTEM_ACTOR,
                    action="alert.escalate",
                    subject_type="alert",
                    subject_id=row.id,
                    details={"overdue_since": _utc(row.due_at).isoformat()},
                )
        for _ in escalated:
            self.counters.escalated.labels("clock").inc()
        return [a.id for a in escalated]

    async def sweep(self) -> None:
        """One turn of the clock: overdue escalation, then the time-based rules."""
        await self.escalate_overdue()
        await self._guard("sweep", lambda: self._evaluate(self._callbacks(None)))

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("risk sweep failed")
                self.counters.hook_failures.labels("sweep").inc()
            await asyncio.sleep(self.config.sweep_seconds)


def alert_view(row: Alert, now: datetime) -> dict[str, Any]:
    """An alert as the API and the desk show it."""
    state = life.AlertState(row.state)
    return {
        "id": row.id,
        "rule_id": row.rule_id,
        "rule_version": row.rule_version,
        "rule_description_zh": str(row.details.get("rule_description_zh", "")),
        "rule_description_en": str(row.details.get("rule_description_en", "")),
        "severity": row.severity,
        "state": state.value,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "application_ids": list(row.details.get("application_ids") or []),
        "hold": row.hold,
        "details": row.details,
        "observed_at": _utc(row.observed_at).isoformat(),
        "raised_at": _utc(row.created_at).isoformat(),
        "due_at": _utc(row.due_at).isoformat(),
        "overdue": state in life.ON_THE_CLOCK and now > _utc(row.due_at),
        "owner_id": row.owner_id,
        "allowed_events": sorted(e.value for e in life.allowed_events(state)),
    }


async def alerts_about(tx: AsyncSession, *, application_id: str, session_id: str) -> list[Alert]:
    """The alerts raised about an application or one of its sessions, oldest first: what
    its evidence package and the retrieval API show (issue 18)."""
    rows = await tx.scalars(
        select(Alert)
        .where(
            (Alert.application_id == application_id)
            | ((Alert.subject_type == SubjectType.SESSION) & (Alert.subject_id == session_id))
        )
        .order_by(Alert.created_at)
    )
    return list(rows.all())
