"""The migrations make exactly the schema the models describe (every table, column,
index and constraint), on SQLite and PostgreSQL: a model changed without its migration,
or the other way round, fails here."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import server.store.risk_models  # noqa: F401  (its tables join Base.metadata)
from server.store import migrate
from server.store.db import make_engine
from server.store.models import Base


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:

        def diff(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(
                sync_conn, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            assert await migrate.current_revision(engine) == migrate.head_revision()
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
