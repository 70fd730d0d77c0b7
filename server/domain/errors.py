"""The one error hierarchy raised below the web layer.

The web layer maps ``kind`` to an HTTP status; nothing below it knows about HTTP.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"
    TOO_MANY = "too_many"


class DomainError(Exception):
    """An expected failure with a stable machine-readable code.

    ``message`` is English, ``message_zh`` Chinese; investors see both.
    """

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(
        self,
        code: str,
        message: str,
        message_zh: str = "",
        *,
        kind: ErrorKind | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh or message
        if kind is not None:
            self.kind = kind
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "message_zh": self.message_zh,
        }
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(DomainError):
    kind = ErrorKind.INVALID


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED


class Unavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class TooMany(DomainError):
    kind = ErrorKind.TOO_MANY
