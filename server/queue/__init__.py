"""Pairing queue, witness presence, node registry and pub/sub (see base.py).

``create_backend`` picks the implementation from config; the Redis one is imported only
when asked for, so the embedded default never loads the Redis client.
"""

from __future__ import annotations

from server.queue.base import QueueBackend
from server.queue.memory import (
    MemoryBackend,
    SubscriptionError,
    SubscriptionLost,
    SubscriptionOverflow,
)

__all__ = [
    "QueueBackend",
    "SubscriptionError",
    "SubscriptionLost",
    "SubscriptionOverflow",
    "create_backend",
]


def create_backend(
    kind: str,
    *,
    redis_url: str = "",
    key_prefix: str = "witness:",
    max_subscriptions: int | None = None,
) -> QueueBackend:
    if kind == "memory":
        return MemoryBackend()
    if kind == "redis":
        if not redis_url:
            raise ValueError("the redis queue backend needs a redis_url")
        from server.queue.redis import DEFAULT_MAX_SUBSCRIPTIONS, RedisBackend

        return RedisBackend(
            redis_url,
            key_prefix=key_prefix,
            max_subscriptions=max_subscriptions or DEFAULT_MAX_SUBSCRIPTIONS,
        )
    raise ValueError(f"unknown queue backend {kind!r}: expected 'memory' or 'redis'")
