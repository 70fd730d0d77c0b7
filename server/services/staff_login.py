"""Staff login: lock-outs per address, never per account; the password checked outside
any transaction (A25; issue 15 items 1 and 3; the scheme in docs/security.md).

Three short steps. Read: is this address, or this address with this username, locked
out; how many recent failures the username has; the account's hash. Check the password
in :class:`PasswordChecks`' threads, with no transaction open (on SQLite every
transaction holds the write lock). Write: the failure counted, or the login session
opened, with its audit entry.

An unknown username goes through every step a known one does (a dummy hash checked,
the same counters kept), so the answers cannot tell them apart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import SecurityConfig
from server.crypto import DataProtector
from server.domain.errors import DomainError, TooMany, Unauthenticated
from server.domain.staff import lockout_until, login_delay_seconds
from server.services import rate_limit
from server.services.login_sessions import open_session
from server.services.password_checks import PasswordChecks
from server.store.models import Staff, utcnow

# rate_limit buckets; keys are keyed hashes, never the address or the username.
PAIR_FAILURES = "staff_login_pair"  # (address, username)
ADDRESS_FAILURES = "staff_login_address"  # address, any username
ACCOUNT_FAILURES = "staff_login_account"  # username, any address: slows, never blocks
# Failures older than this no longer count towards a lock-out or a delay.
FAILURE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class LoginOutcome:
    """A login session token, or the error to show; failures are returned, not raised,
    so their counters and audit entries are committed."""

    token: str = ""
    error: DomainError | None = None


@dataclass(frozen=True)
class _Keys:
    pair: str
    address: str
    account: str

    def all(self) -> list[tuple[str, str]]:
        return [
            (PAIR_FAILURES, self.pair),
            (ADDRESS_FAILURES, self.address),
            (ACCOUNT_FAILURES, self.account),
        ]


@dataclass(frozen=True)
class _Account:
    id: int
    username: str
    password_hash: str


async def log_in(
    *,
    db: async_sessionmaker[AsyncSession],
    checks: PasswordChecks,
    protector: DataProtector,
    security: SecurityConfig,
    username: str,
    password: str,
    ip: str,
    user_agent: str,
) -> LoginOutcome:
    name = username.strip().lower()
    keys = _Keys(
        pair=protector.lookup_hash(f"{ip}\n{name}", kind="staff_login_pair"),
        address=protector.lookup_hash(ip, kind="ip"),
        account=protector.lookup_hash(name, kind="staff_login_account"),
    )
    async with db.begin() as tx:
        now = utcnow()
        account = await _account(tx, name)
        counts = await rate_limit.recent(tx, keys=keys.all(), window=FAILURE_WINDOW, now=now)
        refusal = _lockout(counts, keys, security, now)
        if refusal is not None:
            await _audit(tx, "auth.login_refused", name, account, ip, reason="locked_out")
            return LoginOutcome(error=refusal)
    account_failures = counts[(ACCOUNT_FAILURES, keys.account)][0]
    # Outside any transaction from here until the outcome is written.
    delay = login_delay_seconds(account_failures, free_failures=security.login_max_failures)
    if delay:
        await asyncio.sleep(delay)
    matched = await checks.verify(account.password_hash if account else None, password)
    new_hash = ""
    if matched and account is not None and checks.needs_rehash(account.password_hash):
        new_hash = await checks.hash(password)
    async with db.begin() as tx:
        now = utcnow()
        if not matched or account is None:
            await rate_limit.record(tx, keys=keys.all(), now=now)
            await _audit(
                tx,
                "auth.login_failed",
                name,
                account,
                ip,
                reason="unknown_user" if account is None else "bad_password",
                failures=account_failures + 1,
            )
            return LoginOutcome(error=_bad_credentials())
        staff = await tx.get(Staff, account.id)
        if staff is None or staff.password_hash != account.password_hash:
            # Deleted or given a new password while we checked the old one.
            return LoginOutcome(error=_bad_credentials())
        if not staff.active:
            await _audit(tx, "auth.login_refused", name, account, ip, reason="disabled")
            return LoginOutcome(
                error=Unauthenticated(
                    "account_disabled", "This account is disabled.", "该账户已停用。"
                )
            )
        if new_hash:
            staff.password_hash = new_hash
        await rate_limit.forget(tx, bucket=PAIR_FAILURES, key_hash=keys.pair)
        await _audit(tx, "auth.login", name, account, ip)
        token = await open_session(
            tx=tx, staff=staff, security=security, ip=ip, user_agent=user_agent
        )
    return LoginOutcome(token=token)


async def _account(tx: AsyncSession, name: str) -> _Account | None:
    row = (
        await tx.execute(
            select(Staff.id, Staff.username, Staff.password_hash).where(Staff.username == name)
        )
    ).one_or_none()
    return None if row is None else _Account(row.id, row.username, row.password_hash)


def _lockout(
    counts: dict[tuple[str, str], tuple[int, datetime | None]],
    keys: _Keys,
    security: SecurityConfig,
    now: datetime,
) -> TooMany | None:
    """The refusal if this address, or this address with this username, is locked out."""
    waits: list[datetime] = []
    for key, threshold in (
        ((PAIR_FAILURES, keys.pair), security.login_max_failures),
        ((ADDRESS_FAILURES, keys.address), security.login_max_failures_per_address),
    ):
        failures, last = counts[key]
        if last is None:
            continue
        until = lockout_until(
            failures,
            last,
            max_failures=threshold,
            base_seconds=security.lockout_base_seconds,
            max_seconds=security.lockout_max_seconds,
        )
        if until is not None and until > now:
            waits.append(until)
    if not waits:
        return None
    wait = int((max(waits) - now).total_seconds()) + 1
    return TooMany(
        "too_many_failures",
        f"Too many failed attempts from this address. Try again in {wait} seconds.",
        f"此地址登录失败次数过多，请在{wait}秒后重试。",
        details={"retry_after": wait},
    )


async def _audit(
    tx: AsyncSession,
    action: str,
    name: str,
    account: _Account | None,
    ip: str,
    *,
    reason: str = "",
    failures: int | None = None,
) -> None:
    details: dict[str, object] = {"ip": ip}
    if reason:
        details["reason"] = reason
    if failures is not None:
        details["failures"] = failures
    await append_audit(
        tx,
        actor=account.username if account else "anonymous",
        action=action,
        subject_type="staff",
        subject_id=account.id if account else "unknown",
        details=details,
    )


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated("bad_credentials", "Wrong username or password.", "用户名或密码错误。")
