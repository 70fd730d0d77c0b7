"""Staff console entry: login, logout, the console home."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from aiohttp import web

from server.domain.errors import DomainError, ErrorKind
from server.http.access import current_staff, public, public_csrf_exempt, staff_only
from server.http.bodies import read_form
from server.http.cookies import cookie_secure
from server.http.csrf import check_origin, tokens_match
from server.http.errors import STATUS_BY_KIND
from server.http.keys import CURRENT_STAFF, RUNTIME
from server.services import login_sessions, staff_login
from server.services import staff as staff_service
from server.web.render import render

LOGIN_CSRF_COOKIE = "witness_login_csrf"
routes = web.RouteTableDef()


def _safe_next(value: str) -> str:
    # Only same-site relative paths: an open redirect would make phishing the login easy.
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc:
        return "/staff/"
    return value


def _login_page(
    request: web.Request,
    *,
    error: DomainError | None,
    status: int = 200,
    username: str = "",
) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html",
        request,
        {
            "csrf_token": token,
            "error": error,
            "username": username,
            "next": _safe_next(request.query.get("next", "/staff/")),
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=cookie_secure(request),
        samesite="Strict",
        path="/staff/login",
        max_age=3600,
    )
    return response


@routes.get("/staff/login")
@public
async def login_form(request: web.Request) -> web.StreamResponse:
    if request.get(CURRENT_STAFF) is not None:
        raise web.HTTPFound("/staff/")
    return _login_page(request, error=None)


@routes.post("/staff/login")
@public_csrf_exempt
async def login_submit(request: web.Request) -> web.StreamResponse:
    # Login CSRF: double-submit token (cookie set by the form) plus the Origin check.
    check_origin(request)
    form = await read_form(request)
    username = str(form.get("username", ""))[:100]
    password = str(form.get("password", ""))[:300]
    sent = str(form.get("csrf_token", ""))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not tokens_match(sent, cookie):
        err = DomainError(
            "csrf_failed",
            "The login form expired; please try again.",
            "登录表单已过期，请重试。",
            kind=ErrorKind.FORBIDDEN,
        )
        return _login_page(request, error=err, status=403, username=username)
    rt = request.app[RUNTIME]
    try:
        outcome = await staff_login.log_in(
            db=rt.db,
            checks=rt.password_checks,
            protector=rt.protector,
            security=rt.config.security,
            username=username,
            password=password,
            ip=request.remote or "",
            user_agent=request.headers.get("User-Agent", ""),
        )
    except DomainError as exc:  # the password checks' queue is full
        outcome = staff_login.LoginOutcome(error=exc)
    if outcome.error is not None:
        page = _login_page(
            request,
            error=outcome.error,
            status=STATUS_BY_KIND[outcome.error.kind],
            username=username,
        )
        if "retry_after" in outcome.error.details:
            page.headers["Retry-After"] = str(outcome.error.details["retry_after"])
        return page
    token = outcome.token
    response = web.HTTPFound(_safe_next(str(form.get("next", "/staff/"))))
    response.set_cookie(
        rt.config.security.session_cookie,
        token,
        httponly=True,
        secure=cookie_secure(request),
        samesite="Strict",
        path="/",
        max_age=rt.config.security.session_max_hours * 3600,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/staff/login")
    raise response


@routes.post("/staff/logout")
@staff_only
async def logout(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    current = current_staff(request)
    token = request.cookies.get(rt.config.security.session_cookie, "")
    async with rt.db.begin() as tx:
        await login_sessions.close_session(tx=tx, token=token, actor=current.username)
    response = web.HTTPFound("/staff/login")
    response.del_cookie(rt.config.security.session_cookie, path="/")
    raise response


@routes.get("/staff/")
@staff_only
async def console_home(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    current = current_staff(request)
    problems: list[str] = []
    if "witness" in current.roles:
        async with rt.db.begin() as tx:
            me = await staff_service.get_staff_by_username(tx=tx, username=current.username)
            problems = staff_service.witness_problems(me)
    oneway = request.app[RUNTIME].config.oneway.enabled
    return render("console.html", request, {"witness_problems": problems, "oneway_enabled": oneway})
