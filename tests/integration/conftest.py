"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.app import create_app
from server.store.db import make_engine, make_sessionmaker
from tests.call_flow import FAST_PAIRING
from tests.intake_flow import skip_reading_time
from tests.server_config import make_config


@pytest.fixture
async def mclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    """The app with fast pairing and media timings, for tests that hold a call."""
    cfg = make_config(
        tmp_path,
        db_url,
        pairing=FAST_PAIRING,
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3, "keyframe_interval_seconds": 2},
    )
    return await aiohttp_client(create_app(cfg))


@pytest.fixture
async def sclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    """The app for the screening tests: no sandbox latency, no reading-time wait."""
    cfg = make_config(tmp_path, db_url, identity={"sandbox_latency_ms": 0})
    client = await aiohttp_client(create_app(cfg))
    skip_reading_time(client.app)
    return client  # type: ignore[no-any-return]


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The database under test (both kinds), disposed of after the test."""
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
