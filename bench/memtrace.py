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
import os
import re
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

DIR_ENV = "WITNESS_MEMTRACE_DIR"


def serve() -> None:
    """``python -m bench.memtrace --config C serve``: the server, traced."""
    out = Path(os.environ[DIR_ENV])
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get("WITNESS_MEMTRACE_FRAMES", "8")))
    taken = 0

    def dump(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        snap.dump(str(out / f"snap-{taken}.bin"))
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
    a = tracemalloc.Snapshot.load(str(before))
    b = tracemalloc.Snapshot.load(str(after))
    total_a = sum(s.size for s in a.statistics("filename"))
    total_b = sum(s.size for s in b.statistics("filename"))
    per = max(sessions, 1)
    lines = [
        f"traced: {total_a / 1e6:.1f} MB idle → {total_b / 1e6:.1f} MB under load;"
        f" +{(total_b - total_a) / 1e6 / per:.2f} MB per session ({sessions} sessions)",
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
