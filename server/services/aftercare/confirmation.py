"""The account-opening notice (A9): the numbers sent to the investor by SMS and email,
recorded in ``notifications``; and the confirmation PDF the investor downloads.

The PDF is made with reportlab with a Chinese TrueType font *embedded* (archived
documents must render anywhere; reportlab's built-in CID fonts do not embed glyphs):
``notices.pdf_font`` (default: WenQuanYi Micro Hei, Debian package fonts-wqy-microhei).
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.adapters.email import EmailSender
from server.adapters.sms import SmsSender
from server.crypto import DataProtector, mask_id_number, mask_phone
from server.domain.aftercare import NoticeStatus
from server.domain.business import label, refusal
from server.domain.errors import NotFound, Unavailable
from server.services.intake.steps import ID_CONTEXT, PROFILE_CONTEXT
from server.store.models import Account, Application, Notification, ServiceOutcome, utcnow

log = logging.getLogger(__name__)
PHONE_CONTEXT = "applications.phone"
METHOD_ZH = "双向视频见证"


def notice_text(agency: str, account: Account) -> str:
    subs = "，".join(
        f"{'沪市' if k == 'sh' else '深市' if k == 'sz' else k}证券账户 {v}"
        for k, v in sorted(account.sub_accounts.items())
    )
    return (
        f"【{agency}】您的证券账户已开立：一码通账户 {account.unified_account_number}，{subs}。"
        f"开户方式：{METHOD_ZH}。如非本人操作请立即致电客服。"
    )


class Notices:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        sms: SmsSender,
        email: EmailSender,
        agency: str,
        font_path: Path,
    ) -> None:
        self.db, self.protector, self.sms, self.email = db, protector, sms, email
        self.agency, self.font_path = agency, font_path

    async def recent(self, *, limit: int = 200) -> list[Notification]:
        """What investors were sent, newest first (recipients stored masked): the admin's
        outbox, where testers read what the sandbox gateways would have sent."""
        async with self.db.begin() as tx:
            rows = await tx.scalars(
                select(Notification).order_by(Notification.created_at.desc()).limit(limit)
            )
            return list(rows.all())

    async def account_opened(self, application_id: str) -> None:
        """Send the numbers by SMS (and email when given); each attempt is recorded."""
        async with self.db.begin() as tx:
            app = await tx.get(Application, application_id)
            account = await tx.scalar(
                select(Account).where(Account.application_id == application_id)
            )
            if app is None or account is None:
                return
            text = notice_text(self.agency, account)
        await self._send(app, text, "开户成功通知", "account_opened")

    async def _send(self, app: Application, text: str, subject: str, purpose: str) -> None:
        phone = (
            self.protector.decrypt(app.phone_enc, context=PHONE_CONTEXT) if app.phone_enc else ""
        )
        profile = (
            self.protector.decrypt_json(app.profile_enc, context=PROFILE_CONTEXT)
            if app.profile_enc
            else {}
        )
        email = str(profile.get("email") or "")
        outcomes: list[tuple[str, str, bool, str | None]] = []
        if phone:
            receipt = await self.sms.send(phone=phone, text=text, purpose=purpose)
            outcomes.append(("sms", mask_phone(phone), receipt.accepted, receipt.error_code))
        if email:
            sent = await self.email.send(to=email, subject=f"{self.agency} {subject}", text=text)
            local, _, domain = email.partition("@")
            outcomes.append(("email", f"{local[:1]}***@{domain}", sent.accepted, sent.error_code))
        async with self.db.begin() as tx:
            for channel, to, ok, error in outcomes:
                tx.add(
                    Notification(
                        application_id=app.id,
                        channel=channel,
                        recipient_masked=to,
                        subject=purpose,
                        body=text,
                        status=NoticeStatus.SENT if ok else NoticeStatus.FAILED,
                        error=error,
                        sent_at=utcnow() if ok else None,
                    )
                )

    async def service_concluded(self, application_id: str) -> None:
        """A20–A22: tell the holder what was done, account by account, naming the
        business; a refusal with its reason, so they know what to do next."""
        async with self.db.begin() as tx:
            app = await tx.get(Application, application_id)
            if app is None:
                return
            rows = await _outcomes(tx, application_id)
        if not rows:
            return
        text = service_notice_text(self.agency, app.business_type, rows)
        await self._send(
            app, text, f"{label(app.business_type)[0]}办理结果通知", "service_concluded"
        )

    async def confirmation_pdf(self, application_id: str) -> bytes:
        async with self.db.begin() as tx:
            app = await tx.get(Application, application_id)
            if app is not None and app.business_type != "open":
                return await self._service_pdf(tx, app)
            account = await tx.scalar(
                select(Account).where(Account.application_id == application_id)
            )
            if app is None or account is None:
                raise NotFound("no_account", "No account has been opened yet.", "尚未开立账户。")
            masked = (
                mask_id_number(self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT))
                if app.id_number_enc
                else ""
            )
            data: dict[str, Any] = {
                "name": app.investor_name or "",
                "id": masked,
                "unified": account.unified_account_number,
                "subs": dict(account.sub_accounts),
                "status": account.status,
                "opened": account.opened_at,
            }
        if not self.font_path.is_file():
            raise Unavailable(
                "pdf_font_missing",
                f"The PDF font {self.font_path} is not installed (Debian: fonts-wqy-microhei).",
                "服务器缺少中文字体，暂时无法生成确认书。",
            )
        return _render(self.agency, self.font_path, data)

    async def _service_pdf(self, tx: AsyncSession, app: Application) -> bytes:
        rows = await _outcomes(tx, app.id)
        if not rows:
            raise NotFound(
                "no_outcome", "The service has not been carried out yet.", "业务尚未办理完成。"
            )
        masked = (
            mask_id_number(self.protector.decrypt(app.id_number_enc, context=ID_CONTEXT))
            if app.id_number_enc
            else ""
        )
        zh, en = label(app.business_type)
        lines = [
            f"投资者姓名：{app.investor_name or ''}",
            f"证件号码：{masked}",
            f"业务类型：{zh}（{en}）",
            f"办理方式：{METHOD_NAMES_ZH.get(app.method, app.method)}",
            *(
                f"账户 {r.account_masked}：{_STATUS_ZH.get(r.status, r.status)}"
                + (f"（{refusal(r.error_code)[0]}）" if r.status != "done" else "")
                for r in rows
            ),
            f"办理时间：{_utc(rows[-1].created_at):%Y-%m-%d %H:%M} UTC",
            f"生成时间：{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        ]
        if not self.font_path.is_file():
            raise Unavailable(
                "pdf_font_missing",
                f"The PDF font {self.font_path} is not installed (Debian: fonts-wqy-microhei).",
                "服务器缺少中文字体，暂时无法生成确认书。",
            )
        return _render_lines(
            self.font_path, f"{self.agency} {zh}确认书", f"{zh}确认书 {en} confirmation", lines
        )


METHOD_NAMES_ZH = {
    "witnessed": "双向视频见证（two-way video witnessing）",
    "online": "网上办理（online）",
}
_STATUS_ZH = {"done": "已办理", "refused": "未办理", "failed": "未办理"}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _outcomes(tx: AsyncSession, application_id: str) -> list[ServiceOutcome]:
    rows = await tx.scalars(
        select(ServiceOutcome)
        .where(ServiceOutcome.application_id == application_id)
        .order_by(ServiceOutcome.created_at, ServiceOutcome.id)
    )
    return list(rows.all())


def service_notice_text(agency: str, business_type: str, rows: list[ServiceOutcome]) -> str:
    zh = label(business_type)[0]
    parts = "；".join(
        f"账户{r.account_masked}"
        + ("已办理" if r.status == "done" else f"未办理：{refusal(r.error_code)[0]}")
        for r in rows
    )
    return f"【{agency}】您申请的“{zh}”业务已处理：{parts}。如非本人操作请立即致电客服。"


def _render_lines(font_path: Path, heading: str, title: str, lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
    from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
    from reportlab.pdfgen import canvas  # type: ignore[import-untyped]

    font = "WitnessCJK"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(font, str(font_path), subfontIndex=0))
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=True)
    pdf.setTitle(title)
    _width, height = A4
    y = height - 80
    pdf.setFont(font, 18)
    pdf.drawString(60, y, heading)
    pdf.setFont(font, 11)
    y -= 40
    for line in lines:
        pdf.drawString(60, y, line[:70])
        y -= 22
    pdf.setFont(font, 9)
    pdf.drawString(60, 60, "本确认书由系统生成。如有疑问，请致电客服热线。")
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def _render(agency: str, font_path: Path, data: dict[str, Any]) -> bytes:
    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
    from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
    from reportlab.pdfgen import canvas  # type: ignore[import-untyped]

    font = "WitnessCJK"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(font, str(font_path), subfontIndex=0))
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=True)
    pdf.setTitle("开户确认书 Account opening confirmation")
    _width, height = A4
    y = height - 80
    pdf.setFont(font, 18)
    pdf.drawString(60, y, f"{agency} 证券账户开户确认书")
    pdf.setFont(font, 11)
    opened = data["opened"]
    opened = opened if opened.tzinfo else opened.replace(tzinfo=UTC)
    lines = [
        f"投资者姓名：{data['name']}",
        f"证件号码：{data['id']}",
        f"一码通账户号码：{data['unified']}",
        *(
            f"{'沪市' if k == 'sh' else '深市' if k == 'sz' else k}证券账户：{v}"
            for k, v in sorted(data["subs"].items())
        ),
        f"开户方式：{METHOD_ZH}（two-way video witnessing）",
        f"账户状态：{'正常' if data['status'] == 'active' else '待回访确认后启用'}",
        f"开户时间：{opened.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        f"生成时间：{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]
    y -= 40
    for line in lines:
        pdf.drawString(60, y, line)
        y -= 22
    pdf.setFont(font, 9)
    pdf.drawString(60, 60, "本确认书由系统生成。如对账户有疑问，请致电客服热线。")
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
