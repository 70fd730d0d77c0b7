"""Every handler declares who may call it; routes that declare nothing are refused.

``@allow(Role.ADMIN)`` — logged-in staff holding one of the roles.
``@staff_only`` — any logged-in staff member.
``@public`` — anyone (login page, health, investor entry points).
``@investor_only`` — an investor signed in by SMS code; acts on their own application only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from server.domain.errors import Unauthenticated
from server.domain.staff import Role
from server.http.keys import CURRENT_INVESTOR, CURRENT_STAFF, CurrentStaff
from server.services.intake.investor_auth import CurrentInvestor

Handler = Callable[..., Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])

ACCESS_ATTR = "__witness_access__"


@dataclass(frozen=True)
class Access:
    public: bool
    roles: frozenset[Role]  # empty with public=False: any logged-in staff member
    csrf_exempt: bool = False
    investor: bool = False  # the caller must hold an investor session (cookie or bearer)
    retrieval: bool = False  # an API token with the scope, or an auditor's staff session
    scope: str = "recordings:read"  # the token scope a retrieval-style handler needs


def _mark(access: Access) -> Callable[[H], H]:
    def deco(fn: H) -> H:
        setattr(fn, ACCESS_ATTR, access)
        return fn

    return deco


def allow(*roles: Role) -> Callable[[H], H]:
    if not roles:
        raise ValueError("allow() needs at least one role; use staff_only for any staff")
    return _mark(Access(public=False, roles=frozenset(roles)))


staff_only = _mark(Access(public=False, roles=frozenset()))
public = _mark(Access(public=True, roles=frozenset()))
# For endpoints that carry their own proof (login's double-submit token, API tokens).
public_csrf_exempt = _mark(Access(public=True, roles=frozenset(), csrf_exempt=True))


# The recording retrieval API: a Bearer API token with ``recordings:read``, or a staff
# session of role auditor; every call is written to the audit log (A25).
retrieval_api = _mark(
    Access(public=False, roles=frozenset({Role.AUDITOR}), csrf_exempt=True, retrieval=True)
)


# The risk alerts read API (A23): a Bearer API token with ``alerts:read``, or a staff
# session of role compliance or auditor; every call audited like retrieval's.
alerts_api = _mark(
    Access(
        public=False,
        roles=frozenset({Role.COMPLIANCE, Role.AUDITOR}),
        csrf_exempt=True,
        retrieval=True,
        scope="alerts:read",
    )
)


# The investor's own application, via their session (an id in the URL is never enough).
investor_only = _mark(Access(public=False, roles=frozenset(), investor=True))


def access_of(handler: object) -> Access | None:
    # Class-based views and partials keep the mark on the underlying function.
    target = getattr(handler, "__func__", handler)
    return getattr(target, ACCESS_ATTR, None)


def current_staff(request: web.Request) -> CurrentStaff:
    """The signed-in staff member of a non-public handler (the middleware guarantees one)."""
    staff: CurrentStaff | None = request.get(CURRENT_STAFF)
    if staff is None:
        raise Unauthenticated("login_required", "Please log in.", "请先登录。")
    return staff


def current_investor(request: web.Request) -> CurrentInvestor:
    investor: CurrentInvestor | None = request.get(CURRENT_INVESTOR)
    if investor is None:
        raise Unauthenticated(
            "investor_login_required",
            "Please sign in with your phone number.",
            "请先用手机号验证登录。",
        )
    return investor
