"""The OpenAPI 3 document of the JSON API (A5: a broker's own app drives the same flow).

Kept beside the handlers and tested against the route table, so a route without a
description fails the build.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api.schemas import (
    ANSWERS,
    REQUESTS,
    AccountAnswer,
    AlertAction,
    ApplicationAnswer,
    CallbackRecord,
    Decision,
    Disclosure,
    DisclosureAck,
    ErrorAnswer,
    EvidenceKey,
    IdentityForm,
    NetworkCheckAnswer,
    NetworkCheckInfo,
    NetworkCheckReport,
    NetworkProbeAnswer,
    NetworkProbeOffer,
    OneWayOffer,
    OneWayStarted,
    OnlineConfirmation,
    OpenedDocument,
    Options,
    OtpIssued,
    OtpRequest,
    PlaybackReport,
    QuestionnaireAnswer,
    ScreeningDecisionBody,
    SignedIn,
    SignedOut,
    SignIn,
    SuitabilityAnswers,
)
from server.domain.alerts import AlertState
from server.domain.business import BusinessType
from server.domain.session import SessionState
from server.http.access import public
from server.http.json_body import Body
from server.http.query import INT32_MAX
from server.services.compliance.alert_desk import MAX_PAGE as ALERT_PAGE
from server.services.retrieval.queries import MAX_PAGE

routes = web.RouteTableDef()

_REF = "#/components/schemas/{model}"
_ERR = {"$ref": "#/components/responses/Error"}
_APP = {"$ref": "#/components/responses/Application"}
_INV = "/api/v1/investor"
_SEC: list[dict[str, list[str]]] = [{"investorCookie": []}, {"investorBearer": []}]

_RSEC: list[dict[str, list[str]]] = [{"apiToken": []}, {"staffSession": []}]
_STAFF: list[dict[str, list[str]]] = [{"staffSession": []}]
# WebM for VP8, Matroska for a party that sent H.264 (the codec fallback).
_RECORDING_TYPES: dict[str, Any] = {"video/webm": {}, "video/x-matroska": {}}

# Every refusal is the one error body; which statuses an operation can answer:
#   400 malformed or invalid input, 401 no (valid) identity, 403 wrong role, CSRF token or
#   Origin, 404 no such thing (or not yours), 408 the body did not arrive in time,
#   409 not in this state, 413 body too large, 416 bad Range, 429 rate limited (with
#   Retry-After), 503 an outside service (SMS, identity registry, CSDC) unavailable.
_BODY = (400, 408, 413)  # any operation that reads a body
_INVESTOR = (401, 403)  # the investor gate; 403 is a write's CSRF check
_STAFF_GATE = (401, 403)
_FILE = (304, 404, 416)  # streamed files: If-None-Match, unknown id, bad Range

_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "32 lowercase hex digits; anything else is not found",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_RANGE_PARAM = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "a single byte range, e.g. bytes=0-1023 or bytes=-500 (offsets of at "
    "most 18 digits); several ranges get the whole file",
    "schema": {"type": "string", "pattern": "^bytes=[0-9]{0,18}-[0-9]{0,18}$"},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERR for code in sorted(set(codes))}


def _ref(model: type[Body]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json_body(model: type[Body]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _ok(description: str, model: type[Body]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _json(description: str) -> dict[str, Any]:
    """A JSON answer whose shape the document does not pin down (staff tools)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _schemas() -> dict[str, Any]:
    """components/schemas from the models the handlers read and answer with."""
    out: dict[str, Any] = {}
    for models, mode in ((REQUESTS, "validation"), (ANSWERS, "serialization")):
        for model in models:
            schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
            out.update(schema.pop("$defs", {}))
            out[model.__name__] = schema
    return out


def _sop(
    summary: str,
    ok: dict[str, Any],
    *params: dict[str, Any],
    codes: tuple[int, ...] = (),
    body: type[Body] | None = None,
    security: list[dict[str, list[str]]] = _STAFF,
) -> dict[str, Any]:
    """A staff API operation: a staff session of the handler's roles (401, 403; writes
    carry the CSRF header), ``body`` read as JSON (400, 408, 413)."""
    op: dict[str, Any] = {"summary": summary, "security": security}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = _json_body(body)
        codes = (*_BODY, *codes)
    op["responses"] = {**ok, **_errors(*_STAFF_GATE, *codes)}
    return op


def _rop(
    summary: str, ok: dict[str, Any], *params: dict[str, Any], codes: tuple[int, ...]
) -> dict[str, Any]:
    """A retrieval API operation (Bearer token or auditor session; every call audited)."""
    return _sop(summary, ok, *params, codes=codes, security=_RSEC)


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        # Every query value is at most 1000 characters (server/http/query.py).
        "schema": schema or {"type": "string", "maxLength": 1000},
    }


_RETRIEVAL_PATHS: dict[str, Any] = {
    "/api/v1/sessions": {
        "get": _rop(
            "List witness sessions, newest first (ID numbers masked)",
            {"200": _json("items and next_cursor")},
            _query("from", "created at or after (ISO 8601 date or date-time)"),
            _query("to", "created before (ISO 8601 date or date-time)"),
            _query(
                "status", "the session's state", {"type": "string", "enum": sorted(SessionState)}
            ),
            _query(
                "witness",
                "witness staff id",
                {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
            ),
            _query("application", "application id"),
            _query(
                "business_type",
                "A20–A22: the business witnessed",
                {"type": "string", "enum": sorted(BusinessType)},
            ),
            _query("cursor", "next_cursor of the previous page"),
            _query(
                "limit",
                "page size (default 50)",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
            ),
            codes=(400,),
        )
    },
    "/api/v1/sessions/{id}": {
        "get": _rop(
            "A session's metadata: participants, disclosure, script, stills, identity "
            "check, review, callback, account and recordings. Each recording lists "
            "damage: the stretches where loss left video or audio missing or wrong, "
            "[{start_ms, length_ms, kind: video|audio, reason: packets_lost|"
            "frame_incomplete}] on the recording's own clock (ms from its first frame; "
            "null when not measured), damaged_ms (their union) and frames_lost. business: "
            "the business type (A20–A22) with its labels and method, the accounts a "
            "holder's service was for (masked) with the account system's check before the "
            "call, and the outcome per account",
            {"200": _json("session metadata")},
            _ID_PARAM,
            codes=(404,),
        )
    },
    "/api/v1/sessions/{id}/evidence": {
        "get": _rop(
            "The evidence package: a ZIP of recordings, stills, ID images, manifest.json "
            "and its Ed25519 signature manifest.sig (verify offline with "
            "python -m server verify-evidence)",
            {"200": {"description": "ZIP", "content": {"application/zip": {}}}},
            _ID_PARAM,
            codes=(404,),
        )
    },
    "/api/v1/recordings/{id}": {
        "get": _rop(
            "A recording (WebM; Matroska for H.264), with Range and ETag (its SHA-256)",
            {
                "200": {"description": "the file", "content": _RECORDING_TYPES},
                "206": {"description": "the requested range", "content": _RECORDING_TYPES},
                "304": {"description": "not modified (If-None-Match)"},
            },
            _ID_PARAM,
            _RANGE_PARAM,
            codes=_FILE,
        )
    },
    "/api/v1/stills/{id}": {
        "get": _rop(
            "A still photo (JPEG), with Range and ETag",
            {
                "200": {"description": "the image", "content": {"image/jpeg": {}}},
                "206": {"description": "the requested range", "content": {"image/jpeg": {}}},
                "304": {"description": "not modified (If-None-Match)"},
            },
            _ID_PARAM,
            _RANGE_PARAM,
            codes=_FILE,
        )
    },
    **{
        f"/api/v1/review/sessions/{{id}}/{name}": {
            method: _sop(
                summary,
                {"200": _json("review status or decision")},
                _ID_PARAM,
                codes=(404, 409),
                body=body,
            )
        }
        for name, method, summary, body in (
            ("claim", "post", "Claim a witnessed session for review (never your own, A17.5)", None),
            (
                "status",
                "get",
                "Coverage per recording, documents opened, what approval lacks",
                None,
            ),
            ("playback", "post", "Report a span played", PlaybackReport),
            ("opened", "post", "Record that a document was opened", OpenedDocument),
            (
                "decision",
                "post",
                "approve (refused until fully reviewed) or reject with reason_code",
                Decision,
            ),
        )
    },
    "/api/v1/callbacks": {
        "get": _sop(
            "Applications waiting for their callback (A8), with attempts so far",
            {"200": _json("order and items")},
        )
    },
    "/api/v1/callbacks/{id}": {
        "post": _sop(
            "Record a callback's outcome",
            {"200": _json("attempts and the application's new state")},
            _ID_PARAM,
            codes=(404, 409),
            body=CallbackRecord,
        )
    },
    "/api/v1/accounts/{id}/open": {
        "post": _sop(
            "Retry opening the account with the CSDC system (A9, A26)",
            {"200": _json("unified account number and status")},
            _ID_PARAM,
            codes=(404, 409, 503),
        )
    },
    "/api/v1/services/{id}/carry-out": {
        "post": _sop(
            "Carry out an approved account service (A20–A22) with the account system: "
            "the retry when it could not be reached at approval or after the callback. "
            "Idempotent at the account system (one request id per application)",
            {"200": _json("state and the outcome per account (masked)")},
            _ID_PARAM,
            codes=(404, 409, 503),
        )
    },
    "/api/v1/review/recordings/{id}": {
        "get": _sop(
            "A recording for the reviewer holding its session (Range, ETag)",
            {
                "200": {"description": "the file", "content": _RECORDING_TYPES},
                "206": {"description": "a range", "content": _RECORDING_TYPES},
                "304": {"description": "not modified (If-None-Match)"},
            },
            _ID_PARAM,
            _RANGE_PARAM,
            codes=_FILE,
        )
    },
    "/api/v1/evidence-key": {
        "get": {
            "summary": "The public key that signs evidence packages (Ed25519, PEM)",
            "responses": {"200": _ok("the key", EvidenceKey)},
        }
    },
}


_ALERT_QUERY = (
    _query("state", "the alert's state", {"type": "string", "enum": sorted(AlertState)}),
    _query(
        "limit",
        "how many, soonest deadline first (default 100)",
        {"type": "integer", "minimum": 1, "maximum": ALERT_PAGE, "default": 100},
    ),
)
# Risk alerts (A23): the compliance desk, and the read API for the agency's risk system.
_ALERT_PATHS: dict[str, Any] = {
    "/api/v1/compliance/alerts": {
        "get": _sop(
            "Risk alerts by deadline (compliance)",
            {"200": _json("items")},
            *_ALERT_QUERY,
            codes=(400,),
        )
    },
    "/api/v1/compliance/alerts/{id}": {
        "get": _sop(
            "A risk alert with its events (compliance)",
            {"200": _json("the alert")},
            _ID_PARAM,
            codes=(404,),
        )
    },
    "/api/v1/compliance/alerts/{id}/events": {
        "post": _sop(
            "Acknowledge, resolve, escalate or reopen an alert (resolve, escalate and reopen "
            "need a note; never on a case you witnessed or reviewed)",
            {"200": _json("the alert after the step")},
            _ID_PARAM,
            codes=(404, 409),
            body=AlertAction,
        )
    },
    "/api/v1/alerts": {
        "get": _rop(
            "Risk alerts for the agency's risk system (token scope alerts:read)",
            {"200": _json("items")},
            *_ALERT_QUERY,
            codes=(400,),
        )
    },
    "/api/v1/alerts/{id}": {
        "get": _rop(
            "A risk alert with its events (token scope alerts:read)",
            {"200": _json("the alert")},
            _ID_PARAM,
            codes=(404,),
        )
    },
}


# AML screening hits (A3): the compliance desk.
_SCREENING_PATHS: dict[str, Any] = {
    "/api/v1/compliance/screenings": {
        "get": _sop(
            "AML screening hits waiting for a compliance decision (A3; ID numbers masked)",
            {"200": _json("items")},
        )
    },
    "/api/v1/compliance/screenings/{id}/raw": {
        "get": _sop(
            "The screening provider's answer as stored (masked; every view audited)",
            {"200": _json("the raw answer")},
            _ID_PARAM,
            codes=(404,),
        )
    },
    "/api/v1/compliance/screenings/{id}/decision": {
        "post": _sop(
            "Clear or confirm a possible match, with a reason (never on a case you "
            "witnessed or reviewed)",
            {"200": _json("the screening after the decision")},
            _ID_PARAM,
            codes=(404, 409),
            body=ScreeningDecisionBody,
        )
    },
}


def _op(
    summary: str,
    *,
    secured: bool = True,
    codes: tuple[int, ...] = (),
    responses_ok: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """An investor API operation; ``secured`` ones pass the investor gate (401, 403)."""
    op: dict[str, Any] = {"summary": summary}
    if secured:
        op["security"] = _SEC
        op["parameters"] = [{"$ref": "#/components/parameters/Csrf"}]
        codes = (*_INVESTOR, *codes)
    if "requestBody" in extra:
        codes = (*_BODY, *codes)
    parameters = [*op.get("parameters", []), *extra.pop("parameters", [])]
    op.update(extra)
    if parameters:
        op["parameters"] = parameters
    op["responses"] = {**responses_ok, **_errors(*codes)}
    return op


_DEVICE = {"$ref": "#/components/parameters/DeviceId"}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Witness server API",
        "version": "1",
        "description": "Investor intake for non-face-to-face account opening (CSDC rules). "
        "Errors: {error: {code, message, message_zh, details?}}.",
    },
    "paths": {
        f"{_INV}/options": {
            "get": _op(
                "Document types and occupations",
                secured=False,
                responses_ok={"200": _ok("choices", Options)},
            )
        },
        f"{_INV}/otp": {
            "post": _op(
                "Send a one-time code by SMS",
                secured=False,
                requestBody=_json_body(OtpRequest),
                codes=(429, 503),
                responses_ok={"202": _ok("sent; sandbox_code only in sandbox mode", OtpIssued)},
            )
        },
        f"{_INV}/session": {
            "post": _op(
                "Sign in with phone and code; resumes an open application",
                secured=False,
                requestBody=_json_body(SignIn),
                parameters=[_DEVICE],
                codes=(401, 429),
                responses_ok={"201": _ok("signed in; sets the witness_investor cookie", SignedIn)},
            ),
            "delete": _op("Sign out", responses_ok={"200": _ok("signed out", SignedOut)}),
        },
        f"{_INV}/application": {
            "get": _op("The investor's application", responses_ok={"200": _APP})
        },
        f"{_INV}/application/identity": {
            "put": _op(
                "Identity data (A6)",
                requestBody=_json_body(IdentityForm),
                codes=(409, 429),
                responses_ok={"200": _APP},
            )
        },
        _INV + "/application/documents/{kind}": {
            "parameters": [
                {
                    "name": "kind",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["id_front", "id_back", "frontal_photo"]},
                }
            ],
            "put": _op(
                "Upload an ID side or the frontal photo (JPEG/PNG/WebP, A17.1)",
                requestBody={
                    "required": True,
                    "content": {
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                        "image/webp": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"file": {"type": "string", "format": "binary"}},
                                "required": ["file"],
                            }
                        },
                    },
                },
                codes=(404, 409, 429, 503),
                responses_ok={"200": _APP},
            ),
            "get": _op(
                "The stored (re-encoded) image",
                codes=(404,),
                responses_ok={
                    "200": {
                        "description": "the image",
                        "content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                    }
                },
            ),
        },
        f"{_INV}/questionnaire": {
            "get": _op(
                "Suitability questionnaire (A4)",
                secured=False,
                responses_ok={"200": _ok("questions", QuestionnaireAnswer)},
            )
        },
        f"{_INV}/application/suitability": {
            "put": _op(
                "Questionnaire answers",
                requestBody=_json_body(SuitabilityAnswers),
                codes=(409, 429),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/disclosure": {
            "get": _op(
                "Risk disclosure and account agreement (A4)",
                codes=(409,),
                responses_ok={"200": _ok("the document", Disclosure)},
            )
        },
        f"{_INV}/application/disclosure": {
            "post": _op(
                "Acknowledge the disclosure (read to the end)",
                requestBody=_json_body(DisclosureAck),
                codes=(409, 429),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/submit": {
            "post": _op(
                "Submit and run the identity registry check (A17.2); 503 when the registry "
                "is unavailable",
                parameters=[_DEVICE],
                codes=(400, 409, 429, 503),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/online-confirmation": {
            "post": _op(
                "A22: confirm an online account service (accounts opened online; no video "
                "call); it is then carried out as configured (callback first where "
                "services.callback names it)",
                requestBody=_json_body(OnlineConfirmation),
                codes=(400, 409, 429, 503),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/one-way": {
            "get": _op(
                "A18: whether the investor may record alone (one-way video) now, attempts left",
                codes=(),
                responses_ok={"200": _ok("the offer", OneWayOffer)},
            ),
            "post": _op(
                "A18: start a one-way attempt: random instructions are drawn and a session is "
                "placed; open socket_url with the token to run it (no file upload exists)",
                codes=(409, 429, 503),
                responses_ok={"201": _ok("the attempt", OneWayStarted)},
            ),
        },
        f"{_INV}/application/correct": {
            "post": _op(
                "Reopen a failed application for correction",
                codes=(409, 429),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/network-check": {
            "get": _op(
                "The pre-call check (issue 16): the latest stored result, whether one is "
                "required before queueing, and the ICE servers the test connection uses",
                codes=(),
                responses_ok={"200": _ok("latest check and set-up", NetworkCheckInfo)},
            ),
            "post": _op(
                "Store a check: the sealed result the test connection sent (null when it "
                "never connected) and the browser's own findings; the server decides the "
                "verdict (ok, weak: may queue with a warning, failed: may not)",
                requestBody=_json_body(NetworkCheckReport),
                codes=(409, 429),
                responses_ok={"201": _ok("the stored check", NetworkCheckAnswer)},
            ),
        },
        f"{_INV}/application/network-check/probe": {
            "post": _op(
                "Start a test connection: answers the offer; once connected the node pings "
                "on the data channel (answer each with a pong), counts the video it "
                "receives for a few seconds, sends a sealed result and closes. Limited per "
                "application and per node (503 network_check_busy)",
                requestBody=_json_body(NetworkProbeOffer),
                codes=(409, 429, 503),
                responses_ok={"201": _ok("the answer", NetworkProbeAnswer)},
            )
        },
        f"{_INV}/application/queue": {
            "post": _op(
                "Join the witness queue (identity verified first, A17.2; and a recent "
                "pre-call check that did not fail, when required: 409 "
                "network_check_required / network_check_failed); then follow "
                "/ws/investor for the place in the queue and the match",
                codes=(409, 503),
                responses_ok={"200": _json("queue status")},
            ),
            "delete": _op(
                "Leave the witness queue",
                codes=(409,),
                responses_ok={"200": {"description": "queue status"}},
            ),
        },
        f"{_INV}/application/account": {
            "get": _op(
                "The account numbers once opened (A9)",
                codes=(404,),
                responses_ok={"200": _ok("unified and sub-account numbers, status", AccountAnswer)},
            )
        },
        f"{_INV}/application/confirmation.pdf": {
            "get": _op(
                "Download the account-opening confirmation (PDF, A9)",
                codes=(404, 409, 503),
                responses_ok={"200": {"description": "PDF", "content": {"application/pdf": {}}}},
            )
        },
        "/api/v1/openapi.json": {
            "get": _op(
                "This document",
                secured=False,
                responses_ok={
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                },
            )
        },
        **_RETRIEVAL_PATHS,
        **_SCREENING_PATHS,
        **_ALERT_PATHS,
    },
    "components": {
        "securitySchemes": {
            "investorCookie": {"type": "apiKey", "in": "cookie", "name": "witness_investor"},
            "investorBearer": {"type": "http", "scheme": "bearer"},
            "apiToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "retrieval API token (python -m server token create)",
            },
            "staffSession": {"type": "apiKey", "in": "cookie", "name": "witness_staff"},
        },
        "parameters": {
            "Csrf": {
                "name": "X-CSRF-Token",
                "in": "header",
                "required": False,
                "description": "required on writes when signed in by cookie",
                "schema": {"type": "string"},
            },
            "DeviceId": {
                "name": "X-Device-Id",
                "in": "header",
                "required": False,
                "description": "advisory device id for risk monitoring (A23 shared_device): "
                "a random id made once per device (the investor page: crypto.randomUUID() "
                "in localStorage); only its keyed hash is kept. It counts only when it is "
                "8-64 of [A-Za-z0-9-] (pattern ^[A-Za-z0-9-]{8,64}$); any other value is "
                "ignored, never refused, so the schema itself does not constrain it",
                "schema": {"type": "string"},
            },
        },
        "responses": {
            "Error": _ok("error", ErrorAnswer),
            "Application": _ok("the application as the investor sees it", ApplicationAnswer),
        },
        "schemas": _schemas(),
    },
}


@routes.get("/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
