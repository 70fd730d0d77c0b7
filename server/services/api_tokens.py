"""Tokens for the recording retrieval API: created by an admin on the command line, shown
once, stored as SHA-256, scoped, revocable, optionally expiring."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append_audit
from server.domain.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from server.store.models import ApiToken, utcnow

# Read recordings, stills, session metadata and evidence packages (the retrieval API).
RECORDINGS_READ = "recordings:read"
# Read risk alerts (A23): the agency's own risk system (/api/v1/alerts).
ALERTS_READ = "alerts:read"
SCOPES = frozenset({RECORDINGS_READ, ALERTS_READ})
PREFIX = "wt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenHolder:
    """Who called with a token: its id names the caller in the audit log."""

    id: int
    scopes: frozenset[str]


@dataclass(frozen=True)
class NewToken:
    id: int
    name: str
    token: str  # shown once
    expires_at: datetime | None


async def create_token(
    tx: AsyncSession, *, name: str, scopes: list[str], days: int | None, actor: str
) -> NewToken:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("bad_name", "Give the token a name (≤ 100 characters).", "请填写名称。")
    unknown = sorted(set(scopes) - SCOPES)
    if not scopes or unknown:
        bad = unknown[0] if unknown else "(none)"
        known = ", ".join(sorted(SCOPES))
        raise InvalidInput("bad_scope", f"Unknown scope {bad}; known: {known}", "权限范围无效。")
    if days is not None and days < 1:
        raise InvalidInput("bad_expiry", "Expiry must be at least 1 day.", "有效期至少 1 天。")
    if await tx.scalar(select(ApiToken.id).where(ApiToken.name == name)):
        raise Conflict("token_exists", f"A token named {name!r} exists.", "该名称已存在。")
    token = PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(days=days) if days else None
    row = ApiToken(
        name=name,
        token_hash=token_hash(token),
        scopes=",".join(sorted(set(scopes))),
        created_by=actor,
        expires_at=expires,
    )
    tx.add(row)
    await tx.flush()
    await append_audit(
        tx,
        actor=actor,
        action="api_token.created",
        subject_type="api_token",
        subject_id=row.id,
        details={"name": name, "scopes": row.scopes, "days": days},
    )
    return NewToken(row.id, name, token, expires)


async def revoke_token(tx: AsyncSession, *, name: str, actor: str) -> None:
    row = await tx.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFound("token_not_found", f"No token named {name!r}.", "没有该令牌。")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await append_audit(
            tx,
            actor=actor,
            action="api_token.revoked",
            subject_type="api_token",
            subject_id=row.id,
            details={"name": name},
        )


async def list_tokens(tx: AsyncSession) -> list[ApiToken]:
    return list((await tx.scalars(select(ApiToken).order_by(ApiToken.id))).all())


def usable(row: ApiToken | None, *, now: datetime) -> bool:
    if row is None or row.revoked_at is not None:
        return False
    if row.expires_at is None:
        return True
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return expires > now


async def use_token(tx: AsyncSession, *, token: str, now: datetime) -> TokenHolder:
    """The holder of a presented token, its last use stamped; ``token_invalid`` when it is
    unknown, expired or revoked. The stamp is kept only if the caller's transaction commits."""
    row = await tx.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or not usable(row, now=now):
        raise Unauthenticated(
            "token_invalid", "Unknown, expired or revoked token.", "令牌无效、已过期或已吊销。"
        )
    row.last_used_at = now
    return TokenHolder(row.id, frozenset(row.scopes.split(",")))


async def record_access(
    tx: AsyncSession, *, caller: str, subject_id: str, details: dict[str, object]
) -> None:
    """One line in the audit log per retrieval API call, refused ones included (A25)."""
    await append_audit(
        tx,
        actor=caller,
        action="api.access",
        subject_type="api",
        subject_id=subject_id,
        details=details,
    )
