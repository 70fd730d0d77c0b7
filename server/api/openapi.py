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
    ApplicationAnswer,
    CallbackRecord,
    Decision,
    Disclosure,
    DisclosureAck,
    ErrorAnswer,
    EvidenceKey,
    IdentityForm,
    OpenedDocument,
    Options,
    OtpIssued,
    OtpRequest,
    PlaybackReport,
    QuestionnaireAnswer,
    SignedIn,
    SignedOut,
    SignIn,
    SuitabilityAnswers,
)
from server.http.access import public
from server.http.json_body import Body

routes = web.RouteTableDef()

_REF = "#/components/schemas/{model}"
_ERR = {"$ref": "#/components/responses/Error"}
_APP = {"$ref": "#/components/responses/Application"}
_INV = "/api/v1/investor"
_SEC: list[dict[str, list[str]]] = [{"investorCookie": []}, {"investorBearer": []}]


_RSEC: list[dict[str, list[str]]] = [{"apiToken": []}, {"staffSession": []}]
# WebM for VP8, Matroska for a party that sent H.264 (the codec fallback).
_RECORDING_TYPES: dict[str, Any] = {"video/webm": {}, "video/x-matroska": {}}

_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_RANGE_PARAM = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "a single byte range, e.g. bytes=0-1023 or bytes=-500",
    "schema": {"type": "string"},
}


def _ref(model: type[Body]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json_body(model: type[Body]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _ok(description: str, model: type[Body]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _schemas() -> dict[str, Any]:
    """components/schemas from the models the handlers read and answer with."""
    out: dict[str, Any] = {}
    for models, mode in ((REQUESTS, "validation"), (ANSWERS, "serialization")):
        for model in models:
            schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
            out.update(schema.pop("$defs", {}))
            out[model.__name__] = schema
    return out


def _rop(summary: str, ok: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    """A retrieval API operation (Bearer token or auditor session; every call audited)."""
    op: dict[str, Any] = {
        "summary": summary,
        "security": _RSEC,
        "responses": {**ok, "4XX": {"$ref": "#/components/responses/Error"}},
    }
    if params:
        op["parameters"] = list(params)
    return op


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_RETRIEVAL_PATHS: dict[str, Any] = {
    "/api/v1/sessions": {
        "get": _rop(
            "List witness sessions, newest first (ID numbers masked)",
            {"200": {"description": "items and next_cursor"}},
            _query("from", "created at or after (ISO 8601)"),
            _query("to", "created before (ISO 8601)"),
            _query("status", "placed, live, ended, aborted or interrupted"),
            _query("witness", "witness staff id", {"type": "integer"}),
            _query("application", "application id"),
            _query("cursor", "next_cursor of the previous page"),
            _query("limit", "1..200 (default 50)", {"type": "integer"}),
        )
    },
    "/api/v1/sessions/{id}": {
        "get": _rop(
            "A session's metadata: participants, disclosure, script, stills, identity "
            "check, review, callback, account and recordings",
            {"200": {"description": "session metadata"}},
            _ID_PARAM,
        )
    },
    "/api/v1/sessions/{id}/evidence": {
        "get": _rop(
            "The evidence package: a ZIP of recordings, stills, ID images, manifest.json "
            "and its Ed25519 signature manifest.sig (verify offline with "
            "python -m server verify-evidence)",
            {"200": {"description": "ZIP", "content": {"application/zip": {}}}},
            _ID_PARAM,
        )
    },
    "/api/v1/recordings/{id}": {
        "get": _rop(
            "A recording (WebM; Matroska for H.264), with Range and ETag (its SHA-256)",
            {
                "200": {"description": "the file", "content": _RECORDING_TYPES},
                "206": {"description": "the requested range", "content": _RECORDING_TYPES},
                "304": {"description": "not modified (If-None-Match)"},
                "416": {"description": "malformed or unsatisfiable Range"},
            },
            _ID_PARAM,
            _RANGE_PARAM,
        )
    },
    "/api/v1/stills/{id}": {
        "get": _rop(
            "A still photo (JPEG)",
            {"200": {"description": "the image", "content": {"image/jpeg": {}}}},
            _ID_PARAM,
            _RANGE_PARAM,
        )
    },
    **{
        f"/api/v1/review/sessions/{{id}}/{name}": {
            method: {
                "summary": summary,
                "security": [{"staffSession": []}],
                "parameters": [_ID_PARAM],
                **({"requestBody": _json_body(body)} if body else {}),
                "responses": {
                    "200": {"description": "review status or decision"},
                    "4XX": {"$ref": "#/components/responses/Error"},
                },
            }
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
        "get": {
            "summary": "Applications waiting for their callback (A8), with attempts so far",
            "security": [{"staffSession": []}],
            "responses": {
                "200": {"description": "order and items"},
                "4XX": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/v1/callbacks/{id}": {
        "post": {
            "summary": "Record a callback's outcome",
            "security": [{"staffSession": []}],
            "parameters": [_ID_PARAM],
            "requestBody": _json_body(CallbackRecord),
            "responses": {
                "200": {"description": "attempts and the application's new state"},
                "4XX": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/v1/accounts/{id}/open": {
        "post": {
            "summary": "Retry opening the account with the CSDC system (A9, A26)",
            "security": [{"staffSession": []}],
            "parameters": [_ID_PARAM],
            "responses": {
                "200": {"description": "unified account number and status"},
                "4XX": {"$ref": "#/components/responses/Error"},
                "503": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/v1/review/recordings/{id}": {
        "get": {
            "summary": "A recording for the reviewer holding its session (Range, ETag)",
            "security": [{"staffSession": []}],
            "parameters": [_ID_PARAM, _RANGE_PARAM],
            "responses": {
                "200": {"description": "the file", "content": _RECORDING_TYPES},
                "206": {"description": "a range", "content": _RECORDING_TYPES},
                "4XX": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/v1/evidence-key": {
        "get": {
            "summary": "The public key that signs evidence packages (Ed25519, PEM)",
            "responses": {"200": _ok("the key", EvidenceKey)},
        }
    },
}


def _op(summary: str, *, secured: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"4XX": _ERR, "503": _ERR}}
    if secured:
        op["security"] = _SEC
        op["parameters"] = [{"$ref": "#/components/parameters/Csrf"}]
    op.update(extra)
    if "responses_ok" in op:
        op["responses"].update(op.pop("responses_ok"))
    return op


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
                responses_ok={"202": _ok("sent; sandbox_code only in sandbox mode", OtpIssued)},
            )
        },
        f"{_INV}/session": {
            "post": _op(
                "Sign in with phone and code; resumes an open application",
                secured=False,
                requestBody=_json_body(SignIn),
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
                            }
                        },
                    },
                },
                responses_ok={"200": _APP},
            ),
            "get": _op(
                "The stored (re-encoded) image",
                responses_ok={"200": {"description": "image/jpeg"}},
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
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/disclosure": {
            "get": _op(
                "Risk disclosure and account agreement (A4)",
                responses_ok={"200": _ok("the document", Disclosure)},
            )
        },
        f"{_INV}/application/disclosure": {
            "post": _op(
                "Acknowledge the disclosure (read to the end)",
                requestBody=_json_body(DisclosureAck),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/submit": {
            "post": _op(
                "Submit and run the identity registry check (A17.2); 503 when the registry "
                "is unavailable",
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/application/correct": {
            "post": _op("Reopen a failed application for correction", responses_ok={"200": _APP})
        },
        f"{_INV}/application/queue": {
            "post": _op(
                "Join the witness queue (identity verified first, A17.2); then follow "
                "/ws/investor for the place in the queue and the match",
                responses_ok={"200": {"description": "queue status"}},
            ),
            "delete": _op(
                "Leave the witness queue", responses_ok={"200": {"description": "queue status"}}
            ),
        },
        f"{_INV}/application/account": {
            "get": _op(
                "The account numbers once opened (A9)",
                responses_ok={"200": _ok("unified and sub-account numbers, status", AccountAnswer)},
            )
        },
        f"{_INV}/application/confirmation.pdf": {
            "get": _op(
                "Download the account-opening confirmation (PDF, A9)",
                responses_ok={"200": {"description": "PDF", "content": {"application/pdf": {}}}},
            )
        },
        "/api/v1/openapi.json": {"get": _op("This document", secured=False)},
        **_RETRIEVAL_PATHS,
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
            }
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
