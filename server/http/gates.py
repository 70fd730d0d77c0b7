"""The checks an access declaration asks for, shared by the page app and the API app:
who the staff member is, their roles, the investor's session, and CSRF on writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from server.domain.errors import Forbidden, Unauthenticated
from server.http.access import Access
from server.http.cookies import investor_token
from server.http.csrf import UNSAFE_METHODS, require_csrf
from server.http.keys import CURRENT_INVESTOR, CURRENT_STAFF, INVESTOR_VIA_COOKIE, RUNTIME
from server.services.intake.investor_auth import investor_for_token
from server.services.login_sessions import CurrentStaff, staff_for_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def undeclared() -> Forbidden:
    # Fail closed: a handler that forgot to declare its roles is unreachable.
    return Forbidden("access_undeclared", "This endpoint is not available.", "该功能不可用。")


async def resolve_staff(request: web.Request) -> CurrentStaff | None:
    rt = request.config_dict[RUNTIME]
    token = request.cookies.get(rt.config.security.session_cookie, "")
    if not token:
        return None
    return await staff_for_token(rt.db, token, rt.config.security)


async def require_staff(request: web.Request, access: Access) -> None:
    """A signed-in staff member holding one of the roles; writes carry their CSRF token."""
    current = request.get(CURRENT_STAFF)
    if current is None:
        raise Unauthenticated("login_required", "Please log in.", "请先登录。")
    if access.roles and not (current.roles & {r.value for r in access.roles}):
        raise Forbidden(
            "role_forbidden",
            "Your role does not allow this action.",
            "您的角色无权执行此操作。",
        )
    if request.method in UNSAFE_METHODS and not access.csrf_exempt:
        await require_csrf(request, current.csrf_token, accept_form=True)


async def investor_gate(
    request: web.Request, handler: Handler, access: Access
) -> web.StreamResponse:
    """The investor's own application, by their session cookie or bearer token."""
    rt = request.config_dict[RUNTIME]
    token, via_cookie = investor_token(request)
    investor = None
    if token:
        investor = await investor_for_token(rt.db, token)
    if investor is None:
        raise Unauthenticated(
            "investor_login_required",
            "Your session has ended. Sign in again with your phone number.",
            "登录已过期，请重新用手机号验证登录。",
        )
    request[CURRENT_INVESTOR] = investor
    request[INVESTOR_VIA_COOKIE] = via_cookie
    # Only the cookie rides along on a cross-site request; a bearer token needs no CSRF.
    if via_cookie and request.method in UNSAFE_METHODS and not access.csrf_exempt:
        await require_csrf(request, investor.csrf_token, accept_form=False)
    return await handler(request)
