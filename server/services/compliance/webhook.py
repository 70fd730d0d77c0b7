"""Telling the agency's risk system of each new alert (A23): a signed POST, retried with
exponential back-off, never in the way of the flow that raised the alert.

Body: ``{"event": "alert.raised", "alert": {...}}`` (the API's alert view), JSON, UTF-8.
Headers: ``X-Witness-Signature: sha256=<hex HMAC-SHA256 of the body with
risk.webhook_secret>``, ``Idempotency-Key: <the alert's id>`` (the same on every retry),
``X-Witness-Attempt``. Any 2xx is delivered; anything else, a timeout or a refused
connection is retried after ``backoff × 2^(attempt-1)`` (capped), up to
``webhook_max_attempts``, then ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import RiskConfig
from server.services.compliance.alerts import PENDING, RiskCounters, alert_view
from server.store.risk_models import Alert, WebhookDelivery

log = logging.getLogger(__name__)

DELIVERED = "delivered"
FAILED = "failed"
BATCH = 20  # deliveries taken per turn
IDLE_SECONDS = 5.0  # how often the sender looks for retries that have come due


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(config: RiskConfig, attempts: int) -> timedelta:
    """The wait after ``attempts`` failed attempts."""
    seconds = config.webhook_backoff_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, config.webhook_backoff_max_seconds))


class WebhookSender:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        config: RiskConfig,
        counters: RiskCounters,
        wake: asyncio.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.config = config
        self.counters = counters
        self.wake = wake
        self.clock = clock

    async def _claim(self) -> list[tuple[str, int, bytes]]:
        """Due deliveries, each claimed (its next attempt pushed past the timeout) so a
        second worker does not send it at the same time."""
        now = self.clock()
        claimed: list[tuple[str, int, bytes]] = []
        async with self.db.begin() as tx:
            rows = (
                await tx.scalars(
                    select(WebhookDelivery)
                    .where(
                        WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(BATCH)
                )
            ).all()
            hold = now + timedelta(seconds=self.config.webhook_timeout_seconds * 2)
            for row in rows:
                took = await tx.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.attempts == row.attempts)
                    .values(attempts=row.attempts + 1, next_attempt_at=hold)
                    .execution_options(synchronize_session=False)
                )
                alert = await tx.get(Alert, row.alert_id)
                if took.rowcount == 1 and alert is not None:  # type: ignore[attr-defined]
                    body = {"event": "alert.raised", "alert": alert_view(alert, now)}
                    claimed.append((row.id, row.attempts + 1, json.dumps(body).encode()))
        return claimed

    async def _post(
        self, http: aiohttp.ClientSession, key: str, attempt: int, body: bytes
    ) -> str | None:
        """None when delivered, else what went wrong."""
        headers = {
            "Content-Type": "application/json",
            "X-Witness-Signature": sign(self.config.webhook_secret, body),
            "Idempotency-Key": key,
            "X-Witness-Attempt": str(attempt),
        }
        try:
            async with http.post(self.config.webhook_url, data=body, headers=headers) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    async def deliver_due(self, http: aiohttp.ClientSession) -> int:
        """One turn: send what is due; return how many were sent."""
        claimed = await self._claim()
        for delivery_id, attempt, body in claimed:
            async with self.db.begin() as tx:
                key = await tx.scalar(
                    select(WebhookDelivery.idempotency_key).where(WebhookDelivery.id == delivery_id)
                )
            error = await self._post(http, key or delivery_id, attempt, body)
            now = self.clock()
            async with self.db.begin() as tx:
                row = await tx.get(WebhookDelivery, delivery_id)
                if row is None:
                    continue
                if error is None:
                    row.status, row.delivered_at, row.next_attempt_at = DELIVERED, now, None
                    outcome = DELIVERED
                elif attempt >= self.config.webhook_max_attempts:
                    row.status, row.last_error, row.next_attempt_at = FAILED, error, None
                    outcome = FAILED
                else:
                    row.last_error, row.next_attempt_at = error, now + backoff(self.config, attempt)
                    outcome = "retry"
            self.counters.webhook.labels(outcome).inc()
            if error is not None:
                log.warning("alert webhook failed", extra={"delivery": delivery_id, "error": error})
        return len(claimed)

    async def run_forever(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    await self.deliver_due(http)
                except Exception:
                    log.exception("alert webhook turn failed")
                self.wake.clear()
                wait = min(IDLE_SECONDS, self.config.webhook_backoff_seconds)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
