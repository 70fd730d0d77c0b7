"""The OpenAPI 3 document of the JSON API (A5: a broker's own app drives the same flow).

Kept beside the handlers and tested against the route table, so a route without a
description fails the build.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.http.access import public

routes = web.RouteTableDef()

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
                "responses": {
                    "200": {"description": "review status or decision"},
                    "4XX": {"$ref": "#/components/responses/Error"},
                },
            }
        }
        for name, method, summary in (
            ("claim", "post", "Claim a witnessed session for review (never your own, A17.5)"),
            ("status", "get", "Coverage per recording, documents opened, what approval lacks"),
            (
                "playback",
                "post",
                "Report a span played: recording_id, from_ms, to_ms, rate, visible",
            ),
            ("opened", "post", "Record that a document was opened: item"),
            (
                "decision",
                "post",
                "approve (refused until fully reviewed) or reject with reason_code",
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
            "summary": "Record a callback: outcome confirmed, denied or unreachable, notes",
            "security": [{"staffSession": []}],
            "parameters": [_ID_PARAM],
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
            "responses": {"200": {"description": "algorithm, key_id, public_key_pem"}},
        }
    },
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, *, secured: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"4XX": _ERR, "503": _ERR}}
    if secured:
        op["security"] = _SEC
        op["parameters"] = [{"$ref": "#/components/parameters/Csrf"}]
    op.update(extra)
    if "responses_ok" in op:
        op["responses"].update(op.pop("responses_ok"))
    return op


_IDENTITY = {
    "type": "object",
    "required": [
        "name",
        "document_type",
        "id_number",
        "sex",
        "birth_date",
        "valid_from",
        "address",
        "occupation",
    ],
    "properties": {
        "name": {"type": "string", "maxLength": 60},
        "document_type": {"type": "string", "enum": ["resident_id", "hmt_residence_permit"]},
        "id_number": {"type": "string", "pattern": "^[0-9]{17}[0-9Xx]$"},
        "sex": {"type": "string", "enum": ["M", "F"]},
        "birth_date": {"type": "string", "format": "date"},
        "valid_from": {"type": "string", "format": "date"},
        "valid_until": {"type": "string", "format": "date"},
        "valid_until_long_term": {"type": "boolean", "description": "长期 (resident ID only)"},
        "nationality": {"type": "string", "enum": ["CHN", "HKG", "MAC", "TWN"]},
        "address": {"type": "string", "minLength": 5, "maxLength": 200},
        "occupation": {"type": "string", "description": "an id from GET /options"},
        "email": {"type": "string", "format": "email"},
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Witness server API",
        "version": "1",
        "description": "Investor intake for non-face-to-face account opening (CSDC rules). "
        "Errors: {error: {code, message, message_zh, details?}}.",
    },
    "paths": {
        f"{_INV}/options": {"get": _op("Document types and occupations", secured=False)},
        f"{_INV}/otp": {
            "post": _op(
                "Send a one-time code by SMS",
                secured=False,
                requestBody=_json_body(
                    {
                        "type": "object",
                        "required": ["phone"],
                        "properties": {"phone": {"type": "string"}},
                    }
                ),
                responses_ok={"202": {"description": "sent; sandbox_code only in sandbox mode"}},
            )
        },
        f"{_INV}/session": {
            "post": _op(
                "Sign in with phone and code; resumes an open application",
                secured=False,
                requestBody=_json_body(
                    {
                        "type": "object",
                        "required": ["phone", "code"],
                        "properties": {
                            "phone": {"type": "string"},
                            "code": {"type": "string"},
                            "want_token": {
                                "type": "boolean",
                                "description": "apps: return a bearer token",
                            },
                        },
                    }
                ),
                responses_ok={
                    "201": {"description": "signed in; sets the witness_investor cookie"}
                },
            ),
            "delete": _op("Sign out", responses_ok={"200": {"description": "signed out"}}),
        },
        f"{_INV}/application": {
            "get": _op("The investor's application", responses_ok={"200": _APP})
        },
        f"{_INV}/application/identity": {
            "put": _op(
                "Identity data (A6)", requestBody=_json_body(_IDENTITY), responses_ok={"200": _APP}
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
        f"{_INV}/questionnaire": {"get": _op("Suitability questionnaire (A4)", secured=False)},
        f"{_INV}/application/suitability": {
            "put": _op(
                "Questionnaire answers",
                requestBody=_json_body(
                    {
                        "type": "object",
                        "required": ["answers"],
                        "properties": {
                            "answers": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                },
                            }
                        },
                    }
                ),
                responses_ok={"200": _APP},
            )
        },
        f"{_INV}/disclosure": {"get": _op("Risk disclosure and account agreement (A4)")},
        f"{_INV}/application/disclosure": {
            "post": _op(
                "Acknowledge the disclosure (read to the end)",
                requestBody=_json_body(
                    {
                        "type": "object",
                        "required": ["version", "scrolled_to_end"],
                        "properties": {
                            "version": {"type": "string"},
                            "scrolled_to_end": {"type": "boolean"},
                        },
                    }
                ),
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
                responses_ok={"200": {"description": "unified and sub-account numbers, status"}},
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
            "Error": {
                "description": "error",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "required": ["code", "message", "message_zh"],
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                        "message_zh": {"type": "string"},
                                        "details": {"type": "object"},
                                    },
                                }
                            },
                        }
                    }
                },
            },
            "Application": {
                "description": "the application as the investor sees it",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "application": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "state": {"type": "string"},
                                        "next_step": {"type": "string"},
                                        "completed": {"type": "array", "items": {"type": "string"}},
                                        "identity": {"type": ["object", "null"]},
                                        "documents": {"type": "object"},
                                        "suitability": {"type": ["object", "null"]},
                                        "disclosure": {"type": ["object", "null"]},
                                        "identity_check": {"type": ["object", "null"]},
                                    },
                                }
                            },
                        }
                    }
                },
            },
        },
    },
}


@routes.get("/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
