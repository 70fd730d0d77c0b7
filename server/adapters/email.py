"""Email for notices (A9): a sandbox that keeps an outbox, and real SMTP (smtplib, run in
a thread; STARTTLS or implicit TLS)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol

from server.adapters.kinds import AdapterKind, BuildContext, Needs, Provider, one_of


@dataclass(frozen=True)
class EmailReceipt:
    accepted: bool
    error_code: str | None = None


@dataclass(frozen=True)
class SentEmail:
    to: str
    subject: str
    text: str
    at: datetime


class EmailSender(Protocol):
    name: str

    async def send(self, *, to: str, subject: str, text: str) -> EmailReceipt: ...


class SandboxEmail:
    """Keeps messages in a bounded outbox (shown to admins); an address at
    ``bounce.example`` is refused with ``mailbox_unavailable``, like a real server would."""

    name = "sandbox"

    def __init__(self, outbox_size: int = 1000) -> None:
        self._outbox: deque[SentEmail] = deque(maxlen=outbox_size)

    async def send(self, *, to: str, subject: str, text: str) -> EmailReceipt:
        if "@" not in to:
            return EmailReceipt(False, "invalid_address")
        if to.endswith("@bounce.example"):
            return EmailReceipt(False, "mailbox_unavailable")
        self._outbox.append(SentEmail(to, subject, text, datetime.now(UTC)))
        return EmailReceipt(True)

    def outbox(self) -> list[SentEmail]:
        return list(self._outbox)


class SmtpEmail:
    name = "smtp"

    def __init__(
        self, *, host: str, port: int, username: str, password: str, sender: str, tls: str
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.sender, self.tls = sender, tls

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.tls == "implicit":
            with smtplib.SMTP_SSL(self.host, self.port, context=context, timeout=20) as smtp:
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
            return
        with smtplib.SMTP(self.host, self.port, timeout=20) as smtp:
            if self.tls == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)

    async def send(self, *, to: str, subject: str, text: str) -> EmailReceipt:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        try:
            await asyncio.to_thread(self._send, message)
        except smtplib.SMTPRecipientsRefused:
            return EmailReceipt(False, "mailbox_unavailable")
        except (smtplib.SMTPException, OSError) as exc:
            return EmailReceipt(False, f"smtp_error:{type(exc).__name__}")
        return EmailReceipt(True)


class EmailSettings(Protocol):
    """[notices]: its email_provider switch and SMTP server (not a gateway section)."""

    @property
    def email_provider(self) -> str: ...  # "sandbox" | "smtp"
    @property
    def smtp_host(self) -> str: ...
    @property
    def smtp_port(self) -> int: ...
    @property
    def smtp_username(self) -> str: ...
    @property
    def smtp_password(self) -> str: ...
    @property
    def smtp_from(self) -> str: ...
    @property
    def smtp_tls(self) -> str: ...


def _sandbox(settings: EmailSettings, context: BuildContext) -> SandboxEmail:
    return SandboxEmail()


def _smtp(settings: EmailSettings, context: BuildContext) -> SmtpEmail:
    return SmtpEmail(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        sender=settings.smtp_from,
        tls=settings.smtp_tls,
    )


EMAIL: AdapterKind[EmailSettings, EmailSender] = AdapterKind(
    section="notices",
    switch="email_provider",
    providers={
        "sandbox": Provider(_sandbox),
        "smtp": Provider(
            _smtp,
            needs=(
                Needs(
                    ("smtp_host", "smtp_from"), why="smtp_host and smtp_from are required with smtp"
                ),
            ),
        ),
    },
    rules=(one_of("smtp_tls", ("starttls", "implicit", "none")),),
)
