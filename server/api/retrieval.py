"""The recording retrieval API, ``/api/v1`` (issue: retrieval; A15, A19, A25).

An external contract for the agency's archive, compliance and audit systems: Bearer API
tokens (``python -m server token create``) or an auditor's staff session; every call is
audited by the access gate (web/middleware.py). Files are streamed from disk, never
loaded whole; ids are looked up in the database, never used as paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import zipfile
from typing import Any

from aiohttp import web

from server import evidence
from server.api.schemas import EvidenceKey, answer
from server.http.access import public, retrieval_api
from server.http.keys import API_CALLER, BYTES_SERVED, RUNTIME
from server.http.streaming import CHUNK, inside_root, not_found, path_id, send_file
from server.services.retrieval import queries as retrieval
from server.store.models import Recording, Still

routes = web.RouteTableDef()


@routes.get("/sessions", allow_head=False)
@retrieval_api
async def list_sessions(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    query = retrieval.SessionQuery.from_params(request.query)
    async with rt.db.begin() as session:
        body = await retrieval.list_sessions(session, query, rt.protector)
    return web.json_response(body)


@routes.get("/sessions/{id}", allow_head=False)
@retrieval_api
async def get_session(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    sid = path_id(request)
    async with rt.db.begin() as session:
        body = await retrieval.session_detail(session, sid, rt.protector)
    return web.json_response(body)


@routes.get("/recordings/{id}", allow_head=False)
@retrieval_api
async def get_recording(request: web.Request) -> web.StreamResponse:
    rt = request.config_dict[RUNTIME]
    rid = path_id(request)
    async with rt.db.begin() as session:
        rec = await session.get(Recording, rid)
    if rec is None or rec.status not in ("complete", "recovered"):
        raise not_found()
    path = inside_root(rt.config.recordings_path, rec.path)
    return await send_file(request, path, rec.content_type, rec.sha256)


@routes.get("/stills/{id}", allow_head=False)
@retrieval_api
async def get_still(request: web.Request) -> web.StreamResponse:
    rt = request.config_dict[RUNTIME]
    still_id = path_id(request)
    async with rt.db.begin() as session:
        still = await session.get(Still, still_id)
    if still is None:
        raise not_found()
    path = inside_root(rt.config.recordings_path, still.path)
    return await send_file(request, path, still.content_type, still.sha256)


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


class _Sink:
    """A write-only file for zipfile that hands bytes to the async response in batches."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


@routes.get("/sessions/{id}/evidence", allow_head=False)
@retrieval_api
async def get_evidence(request: web.Request) -> web.StreamResponse:
    """The session's evidence package, streamed as a ZIP (never built in memory or on disk);
    file hashes are computed from the bytes actually packed."""
    rt = request.config_dict[RUNTIME]
    sid = path_id(request)
    root = rt.config.recordings_path
    async with rt.db.begin() as session:
        meta = await retrieval.session_detail(session, sid, rt.protector)
        files, audit, head = await retrieval.package_contents(session, sid, root)
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
    sink = _Sink()
    sent = 0

    async def drain() -> None:
        nonlocal sent
        data = sink.take()
        if data:
            await response.write(data)
            sent += len(data)
            request[BYTES_SERVED] = sent

    listed: list[dict[str, Any]] = []
    missing: list[str] = []
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED)  # type: ignore[call-overload]
    for item in files:
        if not item.path.is_file():
            missing.append(item.name)  # purged or lost: named, so verification fails loudly
            continue
        digest = hashlib.sha256()
        size = 0
        with item.path.open("rb") as src, archive.open(item.name, "w", force_zip64=True) as dst:
            while chunk := await asyncio.to_thread(src.read, CHUNK):
                dst.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                await drain()
        await drain()
        record_id = item.name.rsplit("-", 1)[-1].split(".")[0]
        entry: dict[str, Any] = {"path": item.name, "sha256": digest.hexdigest(), "bytes": size}
        if record_id in recorded:
            entry["matches_record"] = recorded[record_id] == entry["sha256"]
        listed.append(entry)
    manifest = {
        "format": evidence.FORMAT,
        "created_at": evidence.now_iso(),
        "created_by": request.get(API_CALLER, "?"),
        "key_id": evidence.key_id(rt.evidence_key.public_key()),
        "session": meta,
        "files": listed,
        "missing": missing,
        "audit": {"entries": audit, "chain_head": head},
    }
    manifest_bytes = evidence.dump_manifest(manifest)
    _write_member(archive, evidence.MANIFEST, manifest_bytes)
    _write_member(archive, evidence.SIGNATURE, evidence.sign(rt.evidence_key, manifest_bytes))
    archive.close()
    await drain()
    await response.write_eof()
    return response


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    with archive.open(name, "w") as dst:
        dst.write(data)
