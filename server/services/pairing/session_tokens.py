"""Short-lived tokens that admit one participant to one witness session on its media node.

Stateless (MAC-signed), so any node can check a token minted by another.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass

from server.crypto import DataProtector
from server.domain.errors import Unauthenticated
from server.domain.session import Party

_PURPOSE = "session-token/v1"


@dataclass(frozen=True)
class SessionGrant:
    session_id: str
    role: str  # a Party
    party: str  # application id or staff id
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(protector: DataProtector, grant: SessionGrant) -> str:
    body = json.dumps(
        {"s": grant.session_id, "r": grant.role, "p": grant.party, "e": grant.expires_at},
        separators=(",", ":"),
    ).encode()
    return f"{_b64(body)}.{_b64(protector.mac(body, purpose=_PURPOSE))}"


def verify(protector: DataProtector, token: str, *, now: float) -> SessionGrant:
    refused = Unauthenticated(
        "session_token_invalid",
        "This session link is invalid or has expired.",
        "会话凭证无效或已过期。",
    )
    try:
        body_text, mac_text = token.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise refused from None
    if not hmac.compare_digest(mac, protector.mac(body, purpose=_PURPOSE)):
        raise refused
    data = json.loads(body)
    grant = SessionGrant(
        session_id=str(data["s"]),
        role=str(data["r"]),
        party=str(data["p"]),
        expires_at=float(data["e"]),
    )
    if grant.expires_at <= now or grant.role not in frozenset(Party):
        raise refused
    return grant
