"""TURN credentials for the parties and for this node (coturn's ``use-auth-secret``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from server.config import MediaConfig


def turn_credentials(secret: str, party: str, *, ttl: int, now: float) -> tuple[str, str]:
    """coturn's REST-API scheme (use-auth-secret): the username carries the expiry, the
    password is HMAC-SHA1 of it, so the TURN server checks it with no database."""
    username = f"{int(now) + ttl}:{party}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(cfg: MediaConfig, party: str, *, now: float) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    for url in cfg.ice_servers:
        if url.startswith("stun:"):
            servers.append({"urls": url})
        else:
            username, credential = turn_credentials(
                cfg.turn_secret, party, ttl=cfg.turn_credential_ttl_seconds, now=now
            )
            servers.append({"urls": url, "username": username, "credential": credential})
    return servers
