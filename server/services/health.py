"""Is the database answering? For /healthz, without taking part in anyone's writes."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.db import READ_ONLY

# Longer than this and the node reports itself degraded rather than hang the probe.
PROBE_SECONDS = 3.0


async def database_status(engine: AsyncEngine) -> str:
    """ "ok", or "unreachable: <error class>". The probe is read-only, so on SQLite it never
    queues for the write lock behind busy writers (WAL lets it read beside them)."""
    try:
        async with asyncio.timeout(PROBE_SECONDS), engine.connect() as conn:
            reader = await conn.execution_options(**{READ_ONLY: True})
            await reader.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
