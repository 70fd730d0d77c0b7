"""Request plumbing: proxies, request ids and logs, error mapping, access control, headers."""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape

from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource
from sqlalchemy import select

from server.audit import append_audit
from server.config import Config
from server.domain.errors import DomainError, ErrorKind
from server.domain.staff import Role
from server.logsetup import request_id_var
from server.services.api_tokens import token_hash, usable
from server.services.intake.investor_auth import resolve_investor
from server.services.login_sessions import CurrentStaff, resolve_session
from server.store.models import ApiToken
from server.web.access import access_of
from server.web.keys import (
    API_CALLER,
    BYTES_SERVED,
    CURRENT_INVESTOR,
    CURRENT_STAFF,
    INVESTOR_VIA_COOKIE,
    REQUEST_ID,
    RUNTIME,
    VIA_HTTPS,
)

log = logging.getLogger("server.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_BY_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_MANY: 429,
    ErrorKind.UNAVAILABLE: 503,
}
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def wants_json(request: web.Request) -> bool:
    if request.path.startswith("/api/") or request.path in ("/healthz", "/metrics"):
        return True
    return "text/html" not in request.headers.get("Accept", "")


def error_body(code: str, message: str, message_zh: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "message_zh": message_zh, **extra}}


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def make_forwarded_middleware(config: Config) -> web.middleware:  # type: ignore[valid-type]
    networks = [ipaddress.ip_network(p, strict=False) for p in config.server.trusted_proxies]

    def trusted(addr: str | None) -> bool:
        if not addr or not networks:
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Forwarded headers are believed only from configured proxies, else anyone could
        # claim HTTPS or spoof their address past the rate limits.
        if not trusted(request.remote):
            return await handler(request)
        scheme = request.scheme
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
            request[VIA_HTTPS] = proto == "https"
        remote = request.remote or ""
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        # The client is the rightmost address not itself one of our proxies.
        for hop in reversed([h for h in hops if h]):
            if not trusted(hop):
                remote = hop
                break
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
        return await handler(request.clone(scheme=scheme, remote=remote, host=host))

    return forwarded


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _REQUEST_ID_RE.match(incoming) else secrets.token_hex(8)
    token = request_id_var.set(rid)
    request[REQUEST_ID] = rid
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        metrics = request.app[RUNTIME].metrics
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        # The route pattern, never the concrete path or query: both can carry personal data.
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 1),
            },
        )
        request_id_var.reset(token)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        if BYTES_SERVED in request:
            # A streamed body had started: no second response can follow it; aiohttp
            # closes the connection, and the client sees a short body.
            raise
        status = STATUS_BY_KIND[exc.kind]
        if (
            exc.kind is ErrorKind.UNAUTHENTICATED
            and not wants_json(request)
            and request.path.startswith("/staff")
        ):
            raise web.HTTPFound(f"/staff/login?next={request.path}") from None
        headers = {}
        if "retry_after" in exc.details:
            headers["Retry-After"] = str(exc.details["retry_after"])
        if wants_json(request):
            return web.json_response({"error": exc.to_dict()}, status=status, headers=headers)
        return _html_error(status, exc.message_zh, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400 or (exc.text and exc.content_type == "application/json"):
            raise
        if wants_json(request):
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "http_error"
            )
            kept = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
            return web.json_response(
                error_body(code, exc.reason, exc.reason),
                status=exc.status,
                headers=kept,
            )
        raise
    except Exception:
        log.exception("unhandled error", extra={"route": _route_name(request)})
        rid = request.get(REQUEST_ID, "-")
        msg, msg_zh = (
            f"Internal error (request {rid}).",
            f"服务器内部错误（请求编号 {rid}）。",
        )
        if wants_json(request):
            return web.json_response(
                error_body("internal_error", msg, msg_zh, request_id=rid), status=500
            )
        return _html_error(500, msg_zh, msg, {})


def _html_error(status: int, zh: str, en: str, headers: dict[str, str]) -> web.Response:
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/css/app.css"><title>{status}</title></head>'
        f'<body><main class="card narrow"><h1>{status}</h1><p>{escape(zh)}</p>'
        f'<p lang="en">{escape(en)}</p><p><a href="/">返回首页 / Home</a></p></main></body></html>'
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


def _forbidden(code: str, en: str, zh: str) -> DomainError:
    return DomainError(code, en, zh, kind=ErrorKind.FORBIDDEN)


@web.middleware
async def access_control(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    if isinstance(resource, StaticResource) or request.match_info.http_exception is not None:
        return await handler(request)
    access = access_of(request.match_info.handler)
    if access is None:
        # Fail closed: a handler that forgot to declare its roles is unreachable.
        log.error("handler declares no access", extra={"route": _route_name(request)})
        raise _forbidden("access_undeclared", "This endpoint is not available.", "该功能不可用。")
    rt = request.app[RUNTIME]
    current = None
    token = request.cookies.get(rt.config.security.session_cookie, "")
    if token:
        async with rt.db.begin() as session:
            current = await resolve_session(
                session=session, token=token, security=rt.config.security
            )
    request[CURRENT_STAFF] = current
    if request.method in _UNSAFE and not access.csrf_exempt:
        check_origin(request)
    if access.public:
        return await handler(request)
    if access.investor:
        return await _investor_gate(request, handler, access.csrf_exempt)
    if access.retrieval:
        return await _retrieval_gate(request, handler, current)
    if current is None:
        raise DomainError(
            "login_required",
            "Please log in.",
            "请先登录。",
            kind=ErrorKind.UNAUTHENTICATED,
        )
    if access.roles and not (current.roles & {r.value for r in access.roles}):
        raise _forbidden(
            "role_forbidden",
            "Your role does not allow this action.",
            "您的角色无权执行此操作。",
        )
    if request.method in _UNSAFE and not access.csrf_exempt:
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            sent = str(form.get("csrf_token", ""))
        if not sent or not secrets.compare_digest(sent, current.csrf_token):
            raise _forbidden(
                "csrf_failed",
                "Security token missing or wrong; reload the page.",
                "安全令牌无效，请刷新页面后重试。",
            )
    return await handler(request)


RETRIEVAL_SCOPE = "recordings:read"


async def _retrieval_gate(
    request: web.Request, handler: Handler, current: CurrentStaff | None
) -> web.StreamResponse:
    """Admit an API token with the scope or an auditor, and log every call, successful or
    not, with who, what, the outcome and the bytes served (A25)."""
    rt = request.app[RUNTIME]
    caller = "anonymous"
    status = 500
    try:
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise DomainError(
                    "token_invalid", "Malformed Authorization header.", "授权信息格式错误。",
                    kind=ErrorKind.UNAUTHENTICATED,
                )  # fmt: skip
            async with rt.db.begin() as session:
                row = await session.scalar(
                    select(ApiToken).where(ApiToken.token_hash == token_hash(token.strip()))
                )
                if not usable(row, now=datetime.now(UTC)):
                    raise DomainError(
                        "token_invalid",
                        "Unknown, expired or revoked token.",
                        "令牌无效、已过期或已吊销。",
                        kind=ErrorKind.UNAUTHENTICATED,
                    )
                assert row is not None
                caller = f"token:{row.id}"
                if RETRIEVAL_SCOPE not in row.scopes.split(","):
                    raise _forbidden("scope_forbidden", "Token lacks the scope.", "令牌无此权限。")
                row.last_used_at = datetime.now(UTC)
        elif current is not None:
            caller = f"staff:{current.id}"
            if Role.AUDITOR.value not in current.roles:
                raise _forbidden("role_forbidden", "Auditors only.", "仅限审计人员。")
        else:
            raise DomainError(
                "token_required", "Send an API token (Authorization: Bearer …).",
                "请提供访问令牌。", kind=ErrorKind.UNAUTHENTICATED,
            )  # fmt: skip
        request[API_CALLER] = caller
        response = await handler(request)
        status = response.status
        return response
    except DomainError as exc:
        status = STATUS_BY_KIND.get(exc.kind, 500)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        try:
            async with rt.db.begin() as session:
                await append_audit(
                    session,
                    actor=caller,
                    action="api.access",
                    subject_type="api",
                    subject_id=request.match_info.get("id", "-")[:64],
                    details={
                        "endpoint": _route_name(request),
                        "method": request.method,
                        "status": status,
                        "bytes": request.get(BYTES_SERVED, 0),
                    },
                )
        except Exception:
            # Never mask the call's own outcome; but an access that could not be
            # recorded must be loud (A25).
            log.exception("retrieval access could not be audited", extra={"caller": caller})


INVESTOR_COOKIE = "witness_investor"


async def _investor_gate(
    request: web.Request, handler: Handler, csrf_exempt: bool
) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    auth = request.headers.get("Authorization", "")
    via_cookie = not auth.startswith("Bearer ")
    token = request.cookies.get(INVESTOR_COOKIE, "") if via_cookie else auth[7:].strip()
    investor = None
    if token:
        async with rt.db.begin() as session:
            investor = await resolve_investor(session=session, token=token)
    if investor is None:
        raise DomainError(
            "investor_login_required",
            "Your session has ended. Sign in again with your phone number.",
            "登录已过期，请重新用手机号验证登录。",
            kind=ErrorKind.UNAUTHENTICATED,
        )
    request[CURRENT_INVESTOR] = investor
    request[INVESTOR_VIA_COOKIE] = via_cookie
    if via_cookie and request.method in _UNSAFE and not csrf_exempt:
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent or not secrets.compare_digest(sent, investor.csrf_token):
            raise _forbidden(
                "csrf_failed",
                "Security token missing or wrong; reload the page.",
                "安全令牌无效，请刷新页面后重试。",
            )
    return await handler(request)


def check_origin(request: web.Request) -> None:
    # A cross-site form post carries the attacker's Origin; same-origin requests carry ours.
    origin = request.headers.get("Origin")
    if origin is None:  # non-browser clients; browsers always send Origin on POST
        return
    expected = f"{request.scheme}://{request.host}"
    if origin != expected:
        raise _forbidden("origin_mismatch", "Cross-site request refused.", "拒绝跨站请求。")


def make_security_headers(
    config: Config,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    ancestors = " ".join(["'self'", *config.server.frame_ancestors])
    # Pages may open session sockets on the other media nodes of the cluster.
    node_sockets = [
        o.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        for o in config.server.cluster_origins
    ]
    connect = " ".join(["'self'", *config.server.cluster_origins, *node_sockets])
    # A5: served only under the agency's own origin; no third-party framing or scripts.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src {connect}; font-src 'self'; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", csp)
        h.setdefault("X-Content-Type-Options", "nosniff")
        # Not no-referrer: with it Chromium sends "Origin: null" on same-site form posts.
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.get(VIA_HTTPS, request.secure):
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.path.startswith(("/staff", "/api/")):
            h.setdefault("Cache-Control", "no-store")

    return on_prepare
