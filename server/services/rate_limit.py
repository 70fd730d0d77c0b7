"""Sliding-window rate limits kept in the database, so every node counts the same hits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.domain.errors import TooMany
from server.store.models import RateLimitHit

# Hits older than this are never counted by any window we use.
_KEEP = timedelta(days=1)


async def hit(
    tx: AsyncSession,
    *,
    bucket: str,
    key_hash: str,
    limit: int,
    window: timedelta,
    now: datetime,
) -> None:
    """Count one event, or raise TooMany (nothing recorded) if the window is full.

    ``key_hash`` is a keyed hash of the phone number or client address, never the value.
    """
    since = now - window
    rows = select(func.count(), func.min(RateLimitHit.at)).where(
        RateLimitHit.bucket == bucket,
        RateLimitHit.key_hash == key_hash,
        RateLimitHit.at > since,
    )
    count, oldest = (await tx.execute(rows)).one()
    if count >= limit:
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        retry = int(((oldest or now) + window - now).total_seconds()) + 1
        raise TooMany(
            "rate_limited",
            f"Too many requests. Try again in {retry} seconds.",
            f"操作过于频繁，请在{retry}秒后重试。",
            details={"retry_after": max(retry, 1), "limit": bucket},
        )
    tx.add(RateLimitHit(bucket=bucket, key_hash=key_hash, at=now))
    await tx.execute(
        delete(RateLimitHit).where(
            RateLimitHit.bucket == bucket,
            RateLimitHit.key_hash == key_hash,
            RateLimitHit.at < now - _KEEP,
        )
    )


async def hit_now(
    db: async_sessionmaker[AsyncSession],
    *,
    bucket: str,
    key_hash: str,
    limit: int,
    window: timedelta,
) -> None:
    """``hit`` in a transaction of its own, now: committed whatever the caller does next,
    so requests that fail afterwards still count."""
    async with db.begin() as tx:
        await hit(
            tx, bucket=bucket, key_hash=key_hash, limit=limit, window=window, now=datetime.now(UTC)
        )


async def recent(
    tx: AsyncSession, *, keys: list[tuple[str, str]], window: timedelta, now: datetime
) -> dict[tuple[str, str], tuple[int, datetime | None]]:
    """For each (bucket, key hash): the hits in the window and when the newest was, in
    one query (on SQLite every query of a transaction holds the write lock longer)."""
    found: dict[tuple[str, str], tuple[int, datetime | None]] = {key: (0, None) for key in keys}
    rows = await tx.execute(
        select(RateLimitHit.bucket, RateLimitHit.key_hash, func.count(), func.max(RateLimitHit.at))
        .where(
            tuple_(RateLimitHit.bucket, RateLimitHit.key_hash).in_(keys),
            RateLimitHit.at > now - window,
        )
        .group_by(RateLimitHit.bucket, RateLimitHit.key_hash)
    )
    for bucket, key_hash, count, newest in rows:
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)
        found[(bucket, key_hash)] = (int(count), newest)
    return found


async def record(tx: AsyncSession, *, keys: list[tuple[str, str]], now: datetime) -> None:
    """Count one event for each (bucket, key hash), without a limit: the caller decides
    from ``recent`` what the counts mean."""
    tx.add_all([RateLimitHit(bucket=bucket, key_hash=key, at=now) for bucket, key in keys])
    await tx.execute(
        delete(RateLimitHit).where(
            tuple_(RateLimitHit.bucket, RateLimitHit.key_hash).in_(keys),
            RateLimitHit.at < now - _KEEP,
        )
    )


async def forget(tx: AsyncSession, *, bucket: str, key_hash: str) -> None:
    """Drop every hit of one key (a staff member's correct login clears their pair)."""
    await tx.execute(
        delete(RateLimitHit).where(RateLimitHit.bucket == bucket, RateLimitHit.key_hash == key_hash)
    )
