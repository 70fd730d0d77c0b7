"""Shared fixtures: real databases (SQLite and PostgreSQL), configs, app clients.

PostgreSQL: each test gets a fresh database cloned from a template migrated once per
run (CREATE DATABASE ... TEMPLATE), dropped afterwards. With CI=true an unreachable
service fails the run; elsewhere its tests are skipped with the reason shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Config
from server.store import migrate
from server.store.db import make_engine
from tests.server_config import make_config

PG_ADMIN_DSN = os.environ.get("WITNESS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WITNESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_RUN_TAG = uuid.uuid4().hex[:8]


# `make test` runs the suite in two passes (scripts/run-tests.sh): every test but the
# `serial` ones on two processes (pytest-xdist, --dist loadgroup), then the `serial` ones
# alone. The tests that carry live media (the browser and network-lab tests, and the
# integration tests of the media path, which encode and decode in Python) run one after
# another on one of the two processes, never two at a time: two of them at once fight
# for the two cores, and a recording that falls behind fails its frame counts (seen:
# test_stills and test_media_* failing beside a browser call, passing alone). The pages-
# only browser tests run beside anything. `serial` marks the tests that measure time on
# the machine (event-loop lag, the network check's time bounds): they run when nothing
# else does. A plain `pytest` runs everything in one process, as before.
_ONE_AT_A_TIME = (
    "tests/e2e/",
    "tests/netlab/",
    "tests/integration/test_media_",
    "tests/integration/test_stills.py",
)
_PAGES_ONLY = (
    "tests/e2e/test_compliance_alerts_browser.py",
    "tests/e2e/test_compliance_browser.py",
    "tests/e2e/test_staff_login_browser.py",
    "tests/e2e/test_supervision_browser.py",
)


# WITNESS_TEST_LOOP=uvloop runs every async test and fixture on uvloop, the loop a
# production server can be set to (server.event_loop): the whole suite must pass on both.
_TEST_LOOP = os.environ.get("WITNESS_TEST_LOOP", "asyncio")
if _TEST_LOOP not in ("asyncio", "uvloop"):
    raise pytest.UsageError(f"WITNESS_TEST_LOOP={_TEST_LOOP!r}: use asyncio or uvloop")
if _TEST_LOOP == "uvloop":  # the hook may not answer "the default", so it exists only here

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial-tests",
        choices=("include", "exclude", "only"),
        default="include",
        help="the tests marked serial: run with the rest (default), leave out, or run alone",
    )


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadgroup with the live-media tests as one group, told by their path:
    pytest-xdist 3.8 marks a group in the test's id, which pytest 9.2 no longer lets it
    change, so xdist_group marks are not seen."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class OneAtATime(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(_ONE_AT_A_TIME) and not nodeid.startswith(_PAGES_ONLY):
                return "one_at_a_time"
            return str(super()._split_scope(nodeid))

    return OneAtATime(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which = config.getoption("--serial-tests")
    if which == "include":
        return
    wanted = which == "only"
    keep = [item for item in items if (item.get_closest_marker("serial") is not None) == wanted]
    left = [item for item in items if (item.get_closest_marker("serial") is not None) != wanted]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


def service_missing(name: str, detail: str) -> None:
    """Fail in CI, skip elsewhere: an unreachable service is never silently ignored in CI."""
    message = f"{name} unreachable ({detail})"
    if IN_CI:
        pytest.fail(f"{message}; CI requires it (.ci/run starts it)")
    pytest.skip(f"{message}; start it to run this test")


def _pg_parts() -> tuple[str, str]:
    """(server DSN without database, admin database name)."""
    base, _, dbname = PG_ADMIN_DSN.rpartition("/")
    return base, dbname


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """Name of a migrated template database, or None if PostgreSQL is not reachable."""
    if not _reachable("127.0.0.1", 5432) and "127.0.0.1:5432" in PG_ADMIN_DSN:
        yield None
        return
    name = f"witness_tmpl_{_RUN_TAG}"
    base, _ = _pg_parts()

    async def setup() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        engine = make_engine(f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}")
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(setup())
    except (OSError, asyncpg.PostgresError):
        # Tests that need it call service_missing(), which fails under CI.
        yield None
        return
    yield name
    asyncio.run(_drop_database(name))


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def pg_database(prefix: str, *, template: str | None = None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database (a copy of ``template`` if given), dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    base, _ = _pg_parts()
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        await _drop_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def setup() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    return path


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    pg_template: str | None,
) -> AsyncIterator[str]:
    """A migrated, empty database of each kind, private to the test."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if pg_template is None:
        service_missing("PostgreSQL", PG_ADMIN_DSN)
    async with pg_database("witness_t_", template=pg_template) as url:
        yield url


@pytest.fixture
async def empty_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None
) -> AsyncIterator[str]:
    """An unmigrated database; parametrize indirectly with 'sqlite' or 'postgres'."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if pg_template is None:
        service_missing("PostgreSQL", PG_ADMIN_DSN)
    async with pg_database("witness_e_") as url:
        yield url


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, db_url)


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(config))


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of its own on the test Redis, its keys deleted afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        service_missing("Redis", f"{REDIS_URL}: {exc}")
    prefix = f"t:{uuid.uuid4().hex[:8]}:"
    yield prefix
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()
