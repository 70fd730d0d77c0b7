"""Page middleware, run for the API sub-app's requests too: proxies, request ids and logs,
error mapping, the staff session and Origin check, page access control, headers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource

from server.config import Config
from server.domain.errors import DomainError, ErrorKind
from server.http.access import access_of
from server.http.csrf import UNSAFE_METHODS, check_origin
from server.http.errors import EdgeRefusal, error_body, route_name, status_of, wants_json
from server.http.gates import Handler, investor_gate, require_staff, resolve_staff, undeclared
from server.http.keys import BYTES_SERVED, CURRENT_STAFF, REQUEST_ID, RUNTIME, VIA_HTTPS
from server.logsetup import request_id_var

log = logging.getLogger("server.web")


_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# aiohttp's own refusals (unknown path or method, body over client_max_size).
_HTTP_ERRORS = {
    404: ("not_found", "未找到。"),
    405: ("method_not_allowed", "不支持该请求方法。"),
    413: ("too_large", "请求内容过大。"),
}
# Logged and counted for a request whose client hung up before it was answered.
CLIENT_CLOSED_REQUEST = 499
# Longest static path looked up on disk, and longest name in it (NAME_MAX): past these
# the file system answers ENAMETOOLONG, which is a 404 and not worth a system call.
_STATIC_PATH_MAX = 1024
_STATIC_NAME_MAX = 255


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
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client hangs up (handler_cancellation, as
        # its test server runs); cancelled for any other reason, it stays counted a 500.
        if _client_gone(request):
            status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_name(request)
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


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _log_client_gone(request: web.Request) -> None:
    log.warning("client went away mid-request", extra={"route": route_name(request)})


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except DomainError as exc:
        if BYTES_SERVED in request:
            # A streamed body had started: no second response can follow it; aiohttp
            # closes the connection, and the client sees a short body.
            raise
        response = _refusal(request, exc)
        if isinstance(exc, EdgeRefusal) and not request.content.is_eof():
            await _answer_and_close(request, response)
        return response
    except web.HTTPException as exc:
        if exc.status < 400 or (exc.text and exc.content_type == "application/json"):
            raise
        if wants_json(request):
            code, zh = _HTTP_ERRORS.get(exc.status, ("http_error", exc.reason))
            kept = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
            return web.json_response(
                error_body(code, exc.reason, zh),
                status=exc.status,
                headers=kept,
            )
        raise
    except asyncio.CancelledError:
        if _client_gone(request):
            _log_client_gone(request)
        raise
    except ConnectionResetError:
        if not _client_gone(request):
            raise  # a reset of ours (database, Redis): a server error like any other
        # The client hung up mid-request (usually mid-body): nobody to answer, nothing
        # wrong here. 499 (as nginx logs it) keeps it out of the 500s.
        _log_client_gone(request)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception:
        log.exception("unhandled error", extra={"route": route_name(request)})
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
    return response


def _refusal(request: web.Request, exc: DomainError) -> web.StreamResponse:
    status = status_of(exc)
    if (
        exc.kind is ErrorKind.UNAUTHENTICATED
        and not wants_json(request)
        and request.path.startswith("/staff")
    ):
        raise web.HTTPFound(f"/staff/login?next={request.path}") from None
    headers = {}
    if "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    response: web.Response
    if wants_json(request):
        response = web.json_response({"error": exc.to_dict()}, status=status, headers=headers)
    else:
        response = _html_error(status, exc.message_zh, exc.message, headers)
    return response


async def _answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send the refusal now and close the connection: the rest of a slow or oversized
    body is not worth waiting for (aiohttp would read it for up to lingering_time)."""
    response.headers["X-Request-Id"] = request.get(REQUEST_ID, "-")
    response.force_close()
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()


def _html_error(status: int, zh: str, en: str, headers: dict[str, str]) -> web.Response:
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/css/app.css"><title>{status}</title></head>'
        f'<body><main class="card narrow"><h1>{status}</h1><p>{escape(zh)}</p>'
        f'<p lang="en">{escape(en)}</p><p><a href="/">返回首页 / Home</a></p></main></body></html>'
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


@web.middleware
async def access_control(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    if isinstance(resource, StaticResource):
        path = request.path
        if len(path) > _STATIC_PATH_MAX or max(map(len, path.split("/"))) > _STATIC_NAME_MAX:
            raise web.HTTPNotFound()
        return await handler(request)
    if request.match_info.http_exception is not None:
        return await handler(request)
    access = access_of(request.match_info.handler)
    if access is None:
        log.error("handler declares no access", extra={"route": route_name(request)})
        raise undeclared()
    request[CURRENT_STAFF] = await resolve_staff(request)
    if request.method in UNSAFE_METHODS and not access.csrf_exempt:
        check_origin(request)
    if request.match_info.apps[-1] is not request.app:
        # A sub-app's route (the API): its own middleware admits by the declaration.
        return await handler(request)
    if access.public:
        return await handler(request)
    if access.investor:
        return await investor_gate(request, handler, access)
    if access.retrieval:
        raise undeclared()  # only the API serves the retrieval gate
    await require_staff(request, access)
    return await handler(request)


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
