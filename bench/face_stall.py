"""How long the face score (A17.3) stalls the server's event loop (issue 21), and so
every call's media on the node: the same embeddings computed in a thread of this process
(where the two-way score ran until the eighth session) and in the embedding process
(``face.in_embedder``, where it runs now).

    python -m bench.face_stall                  # 12 calls' first stills, both ways
    python -m bench.face_stall --calls 24

Each "call" is what a call's first still costs with a face in it: the still (the test
portrait in a 640×480 frame) and its two references (the portrait as a 1600×1000 ID
image, and as the intake photo), three embeddings, one after the other, as
``Witnessing.face_score`` does. Meanwhile a probe on the event loop asks to be woken every
5 ms and records how late it was. Printed per way: the loop's lateness p50 / p95 / max,
how many wake-ups were late by more than 50 ms and by how much in all per call (the
time every call's media on the node stood still), the wall time per call, and this
process's CPU per call (the embedding process's is not in it).

Needs the ``face`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from bench.clients import FACE_PHOTO
from server.services.witnessing import face

WAKE_EVERY = 0.005
LATE = 0.050


def pictures() -> list[bytes]:
    """A still with the face in a 640×480 frame, the ID image, the intake photo."""
    with Image.open(FACE_PHOTO) as img:
        portrait = img.convert("RGB")
    out = []
    for size, box, frame in (
        ((640, 480), (220, 140), (260, 260)),
        ((1600, 1000), (100, 200), (600, 600)),
        ((800, 800), (100, 100), (600, 600)),
    ):
        canvas = Image.new("RGB", size, "#303030")
        canvas.paste(portrait.resize(frame), box)
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


async def measure(embed: Callable[[bytes], Any], calls: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            expected = loop.time() + WAKE_EVERY
            await asyncio.sleep(WAKE_EVERY)
            lateness.append(max(0.0, loop.time() - expected))

    images = pictures()
    probing = asyncio.create_task(probe())
    await asyncio.sleep(0.5)  # the probe's quiet baseline is part of every way's numbers
    cpu0, wall0 = time.process_time(), time.monotonic()
    for _ in range(calls):
        for picture in images:
            found = await asyncio.to_thread(embed, picture)
            if found is None:
                raise SystemExit("no face found in the bench's picture")
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    done.set()
    await probing
    ordered = sorted(lateness)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
        "late": float(sum(1 for v in ordered if v > LATE)),
        "stalled_per_call_ms": 1000 * sum(v for v in ordered if v > LATE) / calls,
        "wakeups": float(len(ordered)),
        "wall_per_call_s": wall / calls,
        "cpu_per_call_s": cpu / calls,
    }


async def main(calls: int) -> None:
    matcher = await asyncio.to_thread(face.shared_matcher)
    if matcher is None:
        raise SystemExit("the face extra is not installed: pip install -e '.[face]'")
    # Both ways warmed first: the models loaded here and in the embedding process, and
    # one picture through each, so neither way's numbers hold a start-up.
    if not await asyncio.to_thread(face.embedder_available):
        raise SystemExit("the embedding process has no face models")
    # The two-way score's own lane, at its lower priority.
    elsewhere = functools.partial(face.embed_image, lane=face.ADVICE)
    first = pictures()[0]
    await asyncio.to_thread(matcher.embedding, first)
    await asyncio.to_thread(elsewhere, first)
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {calls} calls, "
        f"3 embeddings each; loop probe every {WAKE_EVERY * 1000:.0f} ms"
    )
    print(
        "way        lateness p50 / p95 / max      >50 ms   stalled/call  wall/call  CPU/call here"
    )
    for name, embed in (("thread", matcher.embedding), ("process", elsewhere)):
        r = await measure(embed, calls)
        print(
            f"{name:<9} {r['p50_ms']:7.1f} / {r['p95_ms']:6.1f} / {r['max_ms']:6.1f} ms"
            f"   {int(r['late']):4d}/{int(r['wakeups']):<5d}"
            f" {r['stalled_per_call_ms']:6.0f} ms"
            f"  {r['wall_per_call_s']:6.2f} s   {r['cpu_per_call_s']:6.2f} s"
        )
    face.close_embedder()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=12)
    args = parser.parse_args()
    if not 1 <= args.calls <= 500:
        parser.error("--calls must be 1..500")
    asyncio.run(main(args.calls))
