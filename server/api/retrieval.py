"""The recording retrieval API, ``/api/v1`` (issue: retrieval; A15, A19, A25).

An external contract for the agency's archive, compliance and audit systems: Bearer API
tokens (``python -m server token create``) or an auditor's staff session; every call is
audited by the access gate (api/middleware.py). Files are streamed from disk, never
loaded whole; ids are looked up in the database, never used as paths.
"""

from __future__ import annotations

from aiohttp import web

from server import evidence
from server.api.schemas import EvidenceKey, answer
from server.http.access import public, retrieval_api
from server.http.keys import API_CALLER, BYTES_SERVED, RUNTIME
from server.http.query import INT32_MAX, checked_query
from server.http.streaming import path_id, send_stored
from server.services.retrieval import queries as retrieval

routes = web.RouteTableDef()


@routes.get("/sessions", allow_head=False)
@retrieval_api
async def list_sessions(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    params = checked_query(
        request, integers={"witness": (1, INT32_MAX), "limit": (1, retrieval.MAX_PAGE)}
    )
    query = retrieval.SessionQuery.from_params(params)
    async with rt.db.begin() as tx:
        body = await retrieval.list_sessions(tx, query, rt.protector)
    return web.json_response(body)


@routes.get("/sessions/{id}", allow_head=False)
@retrieval_api
async def get_session(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    sid = path_id(request)
    async with rt.db.begin() as tx:
        body = await retrieval.session_detail(tx, sid, rt.protector)
    return web.json_response(body)


@routes.get("/recordings/{id}", allow_head=False)
@retrieval_api
async def get_recording(request: web.Request) -> web.StreamResponse:
    async with request.config_dict[RUNTIME].db.begin() as tx:
        stored = await retrieval.playable_recording(tx, path_id(request))
    return await send_stored(request, stored)


@routes.get("/stills/{id}", allow_head=False)
@retrieval_api
async def get_still(request: web.Request) -> web.StreamResponse:
    async with request.config_dict[RUNTIME].db.begin() as tx:
        stored = await retrieval.still_file(tx, path_id(request))
    return await send_stored(request, stored)


@routes.get("/evidence-key")
@public  # the public half of the signing key: anyone may verify
async def evidence_key(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    key = rt.evidence_key
    return answer(
        EvidenceKey(
            algorithm="Ed25519",
            key_id=evidence.key_id(key.public_key()),
            public_key_pem=evidence.public_pem(key),
        )
    )


@routes.get("/sessions/{id}/evidence", allow_head=False)
@retrieval_api
async def get_evidence(request: web.Request) -> web.StreamResponse:
    """The session's evidence package, streamed as a ZIP (never built in memory or on disk);
    file hashes are computed from the bytes actually packed."""
    rt = request.config_dict[RUNTIME]
    sid = path_id(request)
    root = rt.config.recordings_path
    async with rt.db.begin() as tx:
        meta = await retrieval.session_detail(tx, sid, rt.protector)
        files, audit, head = await retrieval.package_contents(tx, sid, root)
        recorded = {
            **{r["id"]: r["sha256"] for r in meta["recordings"]},
            **{s["id"]: s["sha256"] for s in meta["stills"]},
        }
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="evidence-{sid}.zip"',
            "Cache-Control": "private, no-store",
        }
    )
    await response.prepare(request)
    request[BYTES_SERVED] = 0
    manifest = {
        "format": evidence.FORMAT,
        "created_at": evidence.now_iso(),
        "created_by": request.get(API_CALLER, "?"),
        "key_id": evidence.key_id(rt.evidence_key.public_key()),
        "session": meta,
        "audit": {"entries": audit, "chain_head": head},
    }
    async for data in evidence.build_package(
        files=files, manifest=manifest, recorded=recorded, key=rt.evidence_key
    ):
        await response.write(data)
        request[BYTES_SERVED] += len(data)
    await response.write_eof()
    return response
