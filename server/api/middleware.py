"""The API's access gate: the page app's middleware has already resolved the staff session
and checked the Origin (parent middlewares run for sub-app requests too); this one admits
by the handler's declaration, including the retrieval API's tokens."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from server.domain.errors import DomainError, Forbidden, Unauthenticated
from server.domain.staff import Role
from server.http.access import access_of
from server.http.errors import STATUS_BY_KIND, route_name
from server.http.gates import Handler, investor_gate, require_staff, undeclared
from server.http.keys import API_CALLER, BYTES_SERVED, CURRENT_STAFF, RUNTIME
from server.services import api_tokens

log = logging.getLogger("server.api")


@web.middleware
async def api_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # an unknown path or method: its own 404/405
    access = access_of(request.match_info.handler)
    if access is None:
        log.error("handler declares no access", extra={"route": route_name(request)})
        raise undeclared()
    if access.public:
        return await handler(request)
    if access.investor:
        return await investor_gate(request, handler, access)
    if access.retrieval:
        return await retrieval_gate(request, handler, access.scope, access.roles)
    await require_staff(request, access)
    return await handler(request)


def _caller_token(request: web.Request) -> str | None:
    """The bearer token sent, None when no Authorization header came at all."""
    auth = request.headers.get("Authorization", "")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "token_invalid", "Malformed Authorization header.", "授权信息格式错误。"
        )
    return token.strip()


async def retrieval_gate(
    request: web.Request,
    handler: Handler,
    scope: str = api_tokens.RECORDINGS_READ,
    roles: frozenset[Role] = frozenset({Role.AUDITOR}),
) -> web.StreamResponse:
    """Admit an API token with the scope or staff of the roles (auditors for recordings),
    and log every call, successful or not, with who, what, the outcome and the bytes
    served (A25)."""
    rt = request.config_dict[RUNTIME]
    current = request.get(CURRENT_STAFF)
    caller = "anonymous"
    status = 500
    try:
        token = _caller_token(request)
        if token is not None:
            async with rt.db.begin() as tx:
                holder = await api_tokens.use_token(tx, token=token, now=datetime.now(UTC))
                caller = f"token:{holder.id}"
                if scope not in holder.scopes:
                    # Raised inside the transaction: a refused call does not count as a use.
                    raise Forbidden("scope_forbidden", "Token lacks the scope.", "令牌无此权限。")
        elif current is not None:
            caller = f"staff:{current.id}"
            if not {r.value for r in roles} & set(current.roles):
                raise Forbidden("role_forbidden", "Not for your role.", "无此权限。")
        else:
            raise Unauthenticated(
                "token_required", "Send an API token (Authorization: Bearer …).", "请提供访问令牌。"
            )
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
            async with rt.db.begin() as tx:
                await api_tokens.record_access(
                    tx,
                    caller=caller,
                    subject_id=request.match_info.get("id", "-")[:64],
                    details={
                        "endpoint": route_name(request),
                        "method": request.method,
                        "status": status,
                        "bytes": request.get(BYTES_SERVED, 0),
                    },
                )
        except Exception:
            # Never mask the call's own outcome; but an access that could not be
            # recorded must be loud (A25).
            log.exception("retrieval access could not be audited", extra={"caller": caller})
