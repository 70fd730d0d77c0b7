"""The one error body and the HTTP status of each error kind, for pages and API alike."""

from __future__ import annotations

from aiohttp import web

from server.domain.errors import DomainError, ErrorKind

STATUS_BY_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_MANY: 429,
    ErrorKind.UNAVAILABLE: 503,
}


def wants_json(request: web.Request) -> bool:
    if request.path.startswith("/api/") or request.path in ("/healthz", "/metrics"):
        return True
    return "text/html" not in request.headers.get("Accept", "")


def error_body(code: str, message: str, message_zh: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "message_zh": message_zh, **extra}}


def route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


class EdgeRefusal(DomainError):
    """A request refused at the edge for what HTTP has a status of its own (408, 413):
    the body, not the domain. It answers in the one error body like any other refusal."""

    def __init__(
        self, status: int, code: str, message: str, message_zh: str, **details: object
    ) -> None:
        super().__init__(code, message, message_zh, kind=ErrorKind.INVALID, details=details)
        self.status = status


def status_of(exc: DomainError) -> int:
    return exc.status if isinstance(exc, EdgeRefusal) else STATUS_BY_KIND[exc.kind]
