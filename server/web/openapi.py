"""The OpenAPI 3 document of the JSON API (A5: a broker's own app drives the same flow).

Kept beside the handlers and tested against the route table, so a route without a
description fails the build.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.web.access import public

routes = web.RouteTableDef()

_ERR = {"$ref": "#/components/responses/Error"}
_APP = {"$ref": "#/components/responses/Application"}
_INV = "/api/v1/investor"
_SEC: list[dict[str, list[str]]] = [{"investorCookie": []}, {"investorBearer": []}]


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
        "/api/v1/openapi.json": {"get": _op("This document", secured=False)},
    },
    "components": {
        "securitySchemes": {
            "investorCookie": {"type": "apiKey", "in": "cookie", "name": "witness_investor"},
            "investorBearer": {"type": "http", "scheme": "bearer"},
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


@routes.get("/api/v1/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
