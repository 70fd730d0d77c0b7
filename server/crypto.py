"""Protection of personal data at rest (A25).

ID numbers, phone numbers and other personal fields are stored AES-256-GCM encrypted,
with an HMAC-SHA256 "lookup hash" beside them so records can be found by number
without decrypting every row. Both keys are derived from one configured data key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_LEN = 12


class DataKeyError(Exception):
    """The data key is missing or malformed."""


def _derive(master: bytes, label: bytes) -> bytes:
    return hmac.new(master, label, hashlib.sha256).digest()


class DataProtector:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise DataKeyError("data key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(_derive(master_key, b"witness/encrypt/v1"))
        self._lookup_key = _derive(master_key, b"witness/lookup/v1")
        self._token_key = _derive(master_key, b"witness/token/v1")

    def encrypt(self, plaintext: str, *, context: str = "") -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        # The context binds a ciphertext to its column, so one cannot be swapped for another.
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, *, context: str = "") -> str:
        if not blob or blob[:1] != _VERSION:
            raise DataKeyError("unknown ciphertext version")
        nonce, body = blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :]
        return self._aead.decrypt(nonce, body, context.encode()).decode()

    def encrypt_json(self, value: dict[str, Any], *, context: str = "") -> bytes:
        return self.encrypt(json.dumps(value, ensure_ascii=False, sort_keys=True), context=context)

    def decrypt_json(self, blob: bytes, *, context: str = "") -> dict[str, Any]:
        loaded = json.loads(self.decrypt(blob, context=context))
        if not isinstance(loaded, dict):
            raise DataKeyError("encrypted JSON is not an object")
        return loaded

    def mac(self, data: bytes, *, purpose: str) -> bytes:
        """A MAC for tokens the server issues and later checks (not for lookups)."""
        return hmac.new(self._token_key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def lookup_hash(self, value: str, *, kind: str) -> str:
        return hmac.new(self._lookup_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise DataKeyError("data key is not valid base64") from None
    if len(key) != 32:
        raise DataKeyError(f"data key must decode to 32 bytes, got {len(key)}")
    return key


def generate_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_or_create_key(inline: str, key_file: Path, *, create: bool) -> tuple[bytes, bool]:
    """Return (key, created). An inline key wins; else the file; else a new file if allowed."""
    if inline:
        return decode_key(inline), False
    if key_file.exists():
        return decode_key(key_file.read_text(encoding="ascii")), False
    if not create:
        raise DataKeyError(f"no data key: set security.data_key or create {key_file}")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    text = generate_key_text()
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decode_key(key_file.read_text(encoding="ascii")), False
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
    return decode_key(text), True


def mask_id_number(number: str) -> str:
    """A25: lists show ``110105********002X``: region and last four only."""
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_phone(phone: str) -> str:
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "****" + phone[-4:]
