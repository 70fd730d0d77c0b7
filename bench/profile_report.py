"""Where a server process's CPU goes, by stage of the media path (issue 21).

    python -m bench.load --sessions 8 --naive-sessions --workers 1 --embedded --profile prof
    python -m bench.profile_report prof/*.txt --packets-per-second 12000

Reads py-spy's collapsed stacks (``--format raw``: one line per distinct stack, frames
separated by ``;``, then the sample count), puts each sample in the first stage whose
pattern matches a frame, innermost frame first, and prints each stage's share of the
samples; with the packet rate the server handled it also prints microseconds per packet.
Samples of an idle process (waiting in epoll) are counted apart: they are not CPU.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (stage, pattern on one frame "function (file:line)"), tried innermost frame first, so a
# frame of the recorder inside aiortc's receive loop counts as the recorder.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("idle (epoll wait)", r"\(selectors\.py|select \(|_run_once .*base_events"),
        ("recorder (mux, files)", r"server/media/recorder\.py|server/media/damage\.py"),
        ("forwarding (rewrite, send)", r"media/relay\.py|RtpOut\.|forward_packet|_packet_sink"),
        ("our frame tap", r"server/media/session\.py|server/media/hooks(\.py|/receive\.py)"),
        ("datagram in (ours)", r"_datagram_received|_data_received|_handle_srtp"),
        ("SRTP", r"pylibsrtp|srtp"),
        ("bandwidth estimate (REMB)", r"aiortc/rate\.py"),
        ("aiortc's sender loop", r"aiortc/codecs/.*(packetize|_packetize)|rtcrtpsender\.py"),
        ("depacketize + jitter buffer", r"aiortc/jitterbuffer\.py|aiortc/codecs/"),
        ("receiver bookkeeping (NACK, stats, clock)", r"rtcrtpreceiver\.py|aiortc/clock\.py"),
        ("RTP/RTCP parsing", r"aiortc/rtp\.py"),
        ("DTLS, ICE, datagrams", r"aiortc/rtcdtlstransport\.py|aioice|asyncio/selector_events"),
        ("database and audit", r"sqlalchemy|aiosqlite|asyncpg|server/audit\.py"),
        ("web, sockets", r"aiohttp|server/web/|server/api/"),
        ("event loop itself", r"asyncio/(base_events|events|tasks|futures|queues)\.py"),
    ]
]


# Work done inside aiortc's sender loop (its clock, serializing, its queue) is the loop's,
# whichever module the innermost frame is in; SRTP and the socket are counted as such.
_SENDER_LOOP = re.compile(r"RTCRtpSender\._run_rtp")
_OWN_STAGE = ("SRTP", "DTLS, ICE, datagrams", "idle (epoll wait)")


def stage_of(stack: str) -> str:
    stage = _innermost_stage(stack)
    if stage not in _OWN_STAGE and _SENDER_LOOP.search(stack):
        return "aiortc's sender loop"
    return stage


def _innermost_stage(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, pattern in STAGES:
            if pattern.search(frame):
                return name
    return "other"


def read(paths: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                counts[stage_of(stack)] += int(n)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--rate", type=float, default=200.0, help="py-spy samples per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="the recorded window")
    parser.add_argument(
        "--packets-per-second", type=float, default=0.0, help="RTP packets handled per second"
    )
    args = parser.parse_args(argv)
    counts = read(args.files)
    busy = {k: v for k, v in counts.items() if k != "idle (epoll wait)"}
    total = sum(busy.values())
    cpu_seconds = total / args.rate
    print(f"# {total} busy samples = {cpu_seconds:.1f} CPU s over {args.seconds:.0f} s "
          f"({cpu_seconds / args.seconds * 100:.0f}% of a core); idle samples "
          f"{counts.get('idle (epoll wait)', 0)}")  # fmt: skip
    print(f"{'stage':42} {'share':>6} {'µs/packet':>10}")
    for name, n in sorted(busy.items(), key=lambda kv: -kv[1]):
        per_packet = (
            n / args.rate / args.seconds / args.packets_per_second * 1e6
            if args.packets_per_second
            else float("nan")
        )
        print(f"{name:42} {n / total * 100:5.1f}% {per_packet:10.1f}")


if __name__ == "__main__":
    main()
