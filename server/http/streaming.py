"""Serving stored evidence files: ids from the path, containment in the storage root,
and streaming with Range/ETag without loading the file into memory. Shared by the
retrieval API and the reviewer's API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from server.domain.errors import NotFound
from server.http.errors import error_body
from server.http.keys import BYTES_SERVED, RUNTIME
from server.services.retrieval.queries import StoredFile

CHUNK = 256 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
# Offsets of at most 18 digits (int64): a longer one is malformed (416), and int() of
# thousands of digits would raise.
_RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")


def not_found() -> NotFound:
    # One answer for unknown ids, ids of other kinds and anything path-like.
    return NotFound("not_found", "Not found.", "未找到。")


def path_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not _ID.fullmatch(value):
        raise not_found()
    return value


def inside_root(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise not_found()
    return path


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(start, end inclusive), None for the whole file, or "bad" (→ 416)."""
    if not header:
        return None
    if "," in header:
        return None  # several ranges: RFC 9110 lets us send the whole representation
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        return "bad"
    if match[1]:
        start = int(match[1])
        end = int(match[2]) if match[2] else size - 1
    else:
        length = int(match[2])
        if length == 0:
            return "bad"
        start, end = max(0, size - length), size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


async def send_file(
    request: web.Request, path: Path, content_type: str, etag: str | None
) -> web.StreamResponse:
    size = (await asyncio.to_thread(path.stat)).st_size
    headers = {
        "Content-Type": content_type,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
    }
    if etag:
        headers["ETag"] = f'"{etag}"'
        if request.headers.get("If-None-Match", "").strip() == f'"{etag}"':
            return web.Response(status=304, headers=headers)
    wanted = _parse_range(request.headers.get("Range", ""), size)
    if_range = request.headers.get("If-Range")
    if if_range is not None and etag and if_range.strip() != f'"{etag}"':
        wanted = None  # the client's copy is stale: send it all
    if wanted == "bad":
        return web.json_response(
            error_body(
                "range_not_satisfiable", "Malformed or unsatisfiable Range.", "请求的字节范围无效。"
            ),
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    start, end = (0, size - 1) if wanted is None or isinstance(wanted, str) else wanted
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response.content_length = end - start + 1 if size else 0
    await response.prepare(request)
    request[BYTES_SERVED] = 0
    sent = 0
    with path.open("rb") as fh:
        await asyncio.to_thread(fh.seek, start)
        remaining = end - start + 1 if size else 0
        while remaining > 0:
            chunk = await asyncio.to_thread(fh.read, min(CHUNK, remaining))
            if not chunk:
                break
            await response.write(chunk)
            sent += len(chunk)
            remaining -= len(chunk)
            request[BYTES_SERVED] = sent
    await response.write_eof()
    return response


async def send_stored(request: web.Request, stored: StoredFile | None) -> web.StreamResponse:
    """A recording or still kept under the recordings root, streamed as ``send_file``
    does; None (no such file, or not this caller's) is the one not-found answer."""
    if stored is None:
        raise not_found()
    path = inside_root(request.config_dict[RUNTIME].config.recordings_path, stored.path)
    return await send_file(request, path, stored.content_type, stored.sha256)
