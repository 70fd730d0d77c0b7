"""The C allocator's settings for a serving process (issue 21: memory per session).

glibc gives each thread that allocates its own arena, up to eight per core. A serving
process has a few such threads (one per pooled aiosqlite connection, the default
executor, the password checks), and each arena keeps what was freed in it instead of
returning it. Measured with ``bench.load --memtrace`` at 16 sessions on 2 cores: malloc
held 137 MB free against 48 MB in use, and the process's RSS fell from 453 to 370 MB with
two arenas, at the same CPU per session (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count`` (0: leave glibc's default). Takes effect only
    for arenas not created yet, so call it before the process starts threads. Returns
    whether the C library took it (False where it is not glibc, e.g. musl or macOS)."""
    if count <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(M_ARENA_MAX, count))
    if not taken:
        log.info("the C library does not take a malloc arena limit; left as it is")
    return taken
