"""What every request handler and background task needs, opened once per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Config
from server.crypto import DataProtector, load_or_create_key
from server.store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    queue_length: Gauge
    live_sessions: Gauge
    recording_bytes: Gauge

    @classmethod
    def create(cls) -> Metrics:
        # One registry per app, so tests can build many apps in one process.
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            http_requests=Counter(
                "witness_http_requests",
                "HTTP requests",
                ["method", "route", "status"],
                registry=reg,
            ),
            http_latency=Histogram(
                "witness_http_request_seconds",
                "HTTP request latency",
                ["route"],
                registry=reg,
            ),
            queue_length=Gauge(
                "witness_queue_length", "Investors waiting for a witness", registry=reg
            ),
            live_sessions=Gauge(
                "witness_live_sessions", "Witness sessions in progress", registry=reg
            ),
            recording_bytes=Gauge(
                "witness_recording_bytes",
                "Bytes written to recordings by this node",
                registry=reg,
            ),
        )


@dataclass
class Runtime:
    config: Config
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    protector: DataProtector
    metrics: Metrics


def open_protector(config: Config) -> DataProtector:
    key, created = load_or_create_key(
        config.security.data_key,
        config.resolve_path(config.security.data_key_file),
        create=config.security.create_key_file,
    )
    if created:
        log.warning(
            "generated a new data key",
            extra={"key_file": config.security.data_key_file, "hint": "back it up"},
        )
    return DataProtector(key)


@asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    protector = open_protector(config)
    engine = make_engine(
        config.database_url,
        echo=config.database.echo,
        pool_size=config.database.pool_size,
    )
    try:
        yield Runtime(
            config=config,
            engine=engine,
            db=make_sessionmaker(engine),
            protector=protector,
            metrics=Metrics.create(),
        )
    finally:
        await engine.dispose()
