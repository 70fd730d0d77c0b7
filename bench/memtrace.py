"""Where a session's memory goes (issue 21: ≤ 3 MB RSS per session).

``bench.load --memtrace DIR`` starts the server through this module: it runs
``python -m server …`` unchanged, with :mod:`tracemalloc` tracing from the start, and
writes a snapshot to ``DIR/snap-N.bin`` on each SIGUSR2 (the benchmark sends one when
the server is idle and one at the end of the measured window). Then::

    python -m bench.memtrace report DIR/snap-1.bin DIR/snap-2.bin --sessions 8

prints what grew between the two, by allocation site and by file, per session, beside
the total the tracer saw. tracemalloc sees only what Python's allocators hand out
(objects, bytes, buffers PyAV and aiortc create through Python): memory OpenSSL, libvpx
or FFmpeg take with ``malloc`` directly is outside it, so the gap between the traced
growth and the RSS growth is the C libraries' share (and the allocator's slack).

Tracing costs CPU (every allocation records its stack): run it for memory, never in
the same run as a CPU measurement.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

DIR_ENV = "BENCH_MEMTRACE_DIR"


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def malloc_totals() -> dict[str, int]:
    """glibc's own account over all arenas (``mallinfo2``): what C code and Python's large
    objects hold (``in_use``), and what malloc keeps free but not returned (``free_held``,
    fragmentation). Empty where there is no glibc."""
    try:
        libc = ctypes.CDLL(None)  # the process's own C library, as server/memory.py
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return {}
    m = libc.mallinfo2()
    return {"in_use": m.uordblks + m.hblkhd, "free_held": m.fordblks, "mmapped": m.hblkhd}


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set from /proc (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def serve() -> None:
    """``python -m bench.memtrace --config C serve``: the server, traced."""
    out = Path(os.environ[DIR_ENV])
    out.mkdir(parents=True, exist_ok=True)
    # 0: no tracing, only the totals (RSS, malloc): the server at its real speed.
    frames = int(os.environ.get("BENCH_MEMTRACE_FRAMES", "1"))
    if frames:
        tracemalloc.start(frames)
    taken = 0

    def dump(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        if frames:
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            snap.dump(str(out / f"snap-{taken}.bin"))
        totals = {
            "rss": rss_bytes(),
            "traced": tracemalloc.get_traced_memory()[0],
            **malloc_totals(),
        }
        (out / f"snap-{taken}.json").write_text(json.dumps(totals))
        (out / f"snap-{taken}.done").touch()

    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["server", *sys.argv[1:]]
    runpy.run_module("server", run_name="__main__", alter_sys=True)


def _short(filename: str) -> str:
    """A path without the environment's prefix: aiortc/rtp.py, server/media/relay.py."""
    for pattern in (r"^.*site-packages/", r"^.*/lib/python3\.\d+/", r"^.*?/work/[^/]+/"):
        short, n = re.subn(pattern, "", filename, count=1)
        if n:
            return short
    return filename


def report(before: Path, after: Path, sessions: int, top: int) -> str:
    per = max(sessions, 1)
    lines = [f"{sessions} sessions"]
    ja, jb = before.with_suffix(".json"), after.with_suffix(".json")
    if ja.exists() and jb.exists():
        ta, tb = json.loads(ja.read_text()), json.loads(jb.read_text())
        lines.append(
            "per session: "
            + ", ".join(
                f"{key} {(tb[key] - ta[key]) / 1e6 / per:+.2f} MB"
                for key in ("rss", "traced", "in_use", "free_held", "mmapped")
                if key in ta and key in tb
            )
            + " (in_use: malloc's account, C libraries and Python's objects over 512 bytes)"
        )
    if not (before.exists() and after.exists()):
        return "\n".join(lines)  # not traced (BENCH_MEMTRACE_FRAMES=0)
    a = tracemalloc.Snapshot.load(str(before))
    b = tracemalloc.Snapshot.load(str(after))
    lines += [
        "",
        f"{'KB/session':>10} {'blocks/ses':>10}  allocation site",
    ]
    for stat in b.compare_to(a, "lineno")[:top]:
        frame = stat.traceback[0]
        lines.append(
            f"{stat.size_diff / 1e3 / per:>10.1f} {stat.count_diff / per:>10.0f}"
            f"  {_short(frame.filename)}:{frame.lineno}"
        )
    lines += ["", f"{'KB/session':>10}  file"]
    for stat in b.compare_to(a, "filename")[:top]:
        lines.append(f"{stat.size_diff / 1e3 / per:>10.1f}  {_short(stat.traceback[0].filename)}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        parser = argparse.ArgumentParser(prog="python -m bench.memtrace report")
        parser.add_argument("before", type=Path)
        parser.add_argument("after", type=Path)
        parser.add_argument("--sessions", type=int, required=True)
        parser.add_argument("--top", type=int, default=25)
        args = parser.parse_args(sys.argv[2:])
        print(report(args.before, args.after, args.sessions, args.top))
    else:
        serve()


if __name__ == "__main__":
    main()
