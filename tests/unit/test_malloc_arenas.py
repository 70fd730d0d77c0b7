"""server.memory: the malloc arena cap a serving process sets before its threads start
(issue 21). Checked in a fresh interpreter, by glibc's own account of its heaps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from server.memory import limit_malloc_arenas

# Threads that each allocate (objects over 512 bytes go to malloc, not Python's pool), then
# glibc's malloc_info: one <heap nr=...> per arena.
PROBE = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    from server.memory import limit_malloc_arenas
    taken = limit_malloc_arenas(int(sys.argv[1]))
    hold = []
    go = threading.Barrier(6)
    def work():
        go.wait()  # all alive at once, so each needs an arena of its own
        hold.append([bytes(2000) for _ in range(2000)])
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f))
    libc.fclose(ctypes.c_void_p(f))
    xml = open(path).read(); os.unlink(path)
    print(taken, xml.count("<heap nr="))
    """
)


def arenas(limit: int) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(limit)], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_cap_holds_across_threads_and_zero_leaves_glibcs_default() -> None:
    taken, capped = arenas(2)
    assert taken
    assert capped <= 2
    untouched, default = arenas(0)
    assert not untouched
    assert default > 2  # six threads at once got arenas of their own


def test_zero_sets_nothing() -> None:
    assert limit_malloc_arenas(0) is False
