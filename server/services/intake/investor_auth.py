"""Investor sign-in by SMS one-time code, and the investor session bound to one application.

The phone number is the investor's key: signing in again with the same phone resumes the
application they left (issue: "closing the browser and coming back resumes").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.sms import SmsSender
from server.audit import append_audit
from server.config import Config
from server.crypto import DataProtector, mask_phone
from server.domain.application import ApplicationState
from server.domain.errors import DomainError, InvalidInput, TooMany, Unavailable
from server.services import rate_limit
from server.services.applications import create_application
from server.store.db import reading
from server.store.models import Application, InvestorSession, OtpChallenge, utcnow

# Applications an investor returns to; anything else (finished, rejected) starts anew.
RESUMABLE = (
    ApplicationState.DRAFT,
    ApplicationState.SUBMITTED,
    ApplicationState.IDENTITY_FAILED,
    ApplicationState.IDENTITY_VERIFIED,
    ApplicationState.SCREENING_HOLD,  # A3: shown a neutral "further checks" message
    ApplicationState.QUEUED,
    ApplicationState.WITNESSING,
    ApplicationState.ONE_WAY_RECORDED,  # A18: waiting for the witness's review
    ApplicationState.WITNESSED,
    ApplicationState.IN_REVIEW,
    ApplicationState.APPROVAL_HOLD,
    ApplicationState.APPROVED,
    ApplicationState.CALLBACK_CONFIRMED,
    ApplicationState.ACCOUNT_OPENED,
)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OtpIssued:
    expires_in: int
    resend_after: int
    sandbox_code: str | None  # only with the sandbox SMS gateway and sandbox_show_code


@dataclass(frozen=True)
class InvestorLogin:
    token: str
    csrf_token: str
    application_id: str
    resumed: bool
    expires_in: int


@dataclass(frozen=True)
class CurrentInvestor:
    application_id: str
    session_id: str
    csrf_token: str


def _code_hash(protector: DataProtector, phone: str, code: str) -> str:
    return protector.lookup_hash(f"{phone}:{code}", kind="otp")


async def request_otp(
    *,
    db: async_sessionmaker[AsyncSession],
    config: Config,
    protector: DataProtector,
    sms: SmsSender,
    phone: str,
    ip: str,
) -> OtpIssued:
    cfg = config.intake
    now = utcnow()
    phone_hash = protector.lookup_hash(phone, kind="phone")
    code = "".join(secrets.choice("0123456789") for _ in range(cfg.otp_length))
    async with db.begin() as tx:
        latest = await tx.scalar(
            select(OtpChallenge)
            .where(OtpChallenge.phone_hash == phone_hash)
            .order_by(OtpChallenge.id.desc())
            .limit(1)
        )
        if latest is not None:
            wait = cfg.otp_resend_seconds - (now - _utc(latest.created_at)).total_seconds()
            if wait > 0:
                raise TooMany(
                    "otp_resend_wait",
                    f"A code was just sent. You can ask for another in {int(wait) + 1} seconds.",
                    f"验证码已发送，请在{int(wait) + 1}秒后再重新获取。",
                    details={"retry_after": int(wait) + 1},
                )
        await rate_limit.hit(
            tx,
            bucket="otp_phone",
            key_hash=phone_hash,
            limit=cfg.otp_per_phone_per_hour,
            window=timedelta(hours=1),
            now=now,
        )
        await rate_limit.hit(
            tx,
            bucket="otp_ip",
            key_hash=protector.lookup_hash(ip, kind="ip"),
            limit=cfg.otp_per_ip_per_hour,
            window=timedelta(hours=1),
            now=now,
        )
        # A new code voids the older ones, so only the latest SMS works.
        await tx.execute(
            update(OtpChallenge)
            .where(OtpChallenge.phone_hash == phone_hash, OtpChallenge.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        challenge = OtpChallenge(
            phone_hash=phone_hash,
            code_hash=_code_hash(protector, phone, code),
            created_at=now,
            expires_at=now + timedelta(seconds=cfg.otp_ttl_seconds),
            attempts=0,
        )
        tx.add(challenge)
        await tx.flush()
        challenge_id = challenge.id
    minutes = max(cfg.otp_ttl_seconds // 60, 1)
    text = (
        f"【{config.agency.name}】您的开户验证码为{code}，{minutes}分钟内有效。"
        "请勿告诉他人。如非本人操作，请忽略。"
    )
    # Sent after the commit: the database is never held locked while a gateway answers.
    receipt = await sms.send(phone=phone, text=text, purpose="otp")
    if not receipt.accepted:
        async with db.begin() as tx:
            await tx.execute(
                update(OtpChallenge).where(OtpChallenge.id == challenge_id).values(consumed_at=now)
            )
        if receipt.error_code in ("invalid_number", "carrier_rejected"):
            raise InvalidInput(
                "sms_rejected",
                "This number cannot receive text messages. Check it or use another.",
                "该号码无法接收短信，请核对或更换手机号码。",
                details={"field": "phone", "provider_code": receipt.error_code},
            )
        raise Unavailable(
            "sms_unavailable",
            "The text message could not be sent. Please try again shortly.",
            "短信发送失败，请稍后重试。",
            details={"retry_after": 10},
        )
    show = config.sms.provider == "sandbox" and config.sms.sandbox_show_code
    return OtpIssued(
        expires_in=cfg.otp_ttl_seconds,
        resend_after=cfg.otp_resend_seconds,
        sandbox_code=code if show else None,
    )


async def verify_otp(
    *,
    db: async_sessionmaker[AsyncSession],
    config: Config,
    protector: DataProtector,
    phone: str,
    code: str,
    ip: str,
    business_type: str = "open",
    method: str = "witnessed",
) -> InvestorLogin:
    """Check the code; on success resume or create the application (of the business type
    asked for, A20) and open a session."""
    cfg = config.intake
    now = utcnow()
    phone_hash = protector.lookup_hash(phone, kind="phone")
    error: DomainError | None = None
    login: InvestorLogin | None = None
    async with db.begin() as tx:
        challenge = await tx.scalar(
            select(OtpChallenge)
            .where(OtpChallenge.phone_hash == phone_hash, OtpChallenge.consumed_at.is_(None))
            .order_by(OtpChallenge.id.desc())
            .limit(1)
        )
        if challenge is None or _utc(challenge.expires_at) <= now:
            error = InvalidInput(
                "otp_expired",
                "The code has expired or was not requested. Ask for a new one.",
                "验证码已失效或未获取，请重新获取。",
                details={"field": "code"},
            )
        elif challenge.attempts >= cfg.otp_max_attempts:
            challenge.consumed_at = now
            error = TooMany(
                "otp_too_many_attempts",
                "Too many wrong codes. Ask for a new one.",
                "验证码错误次数过多，请重新获取。",
                details={"field": "code"},
            )
        elif not hmac.compare_digest(challenge.code_hash, _code_hash(protector, phone, code)):
            # Counted in this committed transaction even though the request fails.
            challenge.attempts += 1
            left = cfg.otp_max_attempts - challenge.attempts
            if left <= 0:
                challenge.consumed_at = now
            error = InvalidInput(
                "otp_wrong",
                f"Wrong code. {left} attempts left.",
                f"验证码错误，还可尝试{left}次。",
                details={"field": "code", "attempts_left": left},
            )
        else:
            challenge.consumed_at = now
            login = await _open(
                tx,
                config=config,
                protector=protector,
                phone=phone,
                ip=ip,
                business_type=business_type,
                method=method,
            )
    if error is not None:
        raise error
    assert login is not None
    return login


async def _open(
    tx: AsyncSession,
    *,
    config: Config,
    protector: DataProtector,
    phone: str,
    ip: str,
    business_type: str,
    method: str,
) -> InvestorLogin:
    phone_hash = protector.lookup_hash(phone, kind="phone")
    # Resumes only an application for the same business by the same method: a holder
    # who opened an account here and now cancels it starts a new application.
    app = await tx.scalar(
        select(Application)
        .where(
            Application.phone_hash == phone_hash,
            Application.state.in_([s.value for s in RESUMABLE]),
            Application.business_type == business_type,
            Application.method == method,
        )
        .order_by(Application.created_at.desc())
        .limit(1)
    )
    resumed = app is not None
    if app is None:
        app = await create_application(
            tx=tx,
            phone=phone,
            protector=protector,
            actor="investor",
            business_type=business_type,
            method=method,
        )
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = utcnow()
    lifetime = timedelta(hours=config.intake.session_hours)
    tx.add(
        InvestorSession(
            id=_token_id(token),
            application_id=app.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    await append_audit(
        tx,
        actor="investor",
        action="investor.login",
        subject_type="application",
        subject_id=app.id,
        details={
            "phone": mask_phone(phone),
            "resumed": resumed,
            "ip": ip,
            "business_type": business_type,
            "method": method,
        },
    )
    return InvestorLogin(
        token=token,
        csrf_token=csrf,
        application_id=app.id,
        resumed=resumed,
        expires_in=int(lifetime.total_seconds()),
    )


async def resolve_investor(*, tx: AsyncSession, token: str) -> CurrentInvestor | None:
    if not token or len(token) > 100:
        return None
    row = await tx.get(InvestorSession, _token_id(token))
    if row is None or _utc(row.expires_at) <= utcnow():
        return None
    return CurrentInvestor(
        application_id=row.application_id, session_id=row.id, csrf_token=row.csrf_token
    )


async def investor_for_token(
    db: async_sessionmaker[AsyncSession], token: str
) -> CurrentInvestor | None:
    """``resolve_investor`` for the gate every investor request passes: a read that never
    queues behind writers (store.db.reading)."""
    async with reading(db) as tx:
        return await resolve_investor(tx=tx, token=token)


async def end_investor_session(*, tx: AsyncSession, token: str) -> None:
    row = await tx.get(InvestorSession, _token_id(token))
    if row is not None:
        await tx.delete(row)
