"""The face-comparison aid (A17.3): real dlib embeddings from the packaged models.
The test photo is NASA's public-domain portrait of astronaut Eileen Collins (as shipped
with scikit-image), cropped."""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from server.services.witnessing import face
from tests.conftest import IN_CI

PHOTO = Path(__file__).resolve().parents[1] / "data" / "astronaut-face.jpg"


@pytest.fixture(scope="module")
def matcher() -> face.FaceMatcher:
    loaded = face.load_matcher()
    if loaded is None:
        if IN_CI:
            pytest.fail("the face extra is not installed; make test installs it")
        pytest.skip("pip install -e '.[face]' to test the face aid")
    return loaded


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_same_face_is_close(matcher: face.FaceMatcher) -> None:
    original = PHOTO.read_bytes()
    with Image.open(PHOTO) as img:
        # What a live still looks like next to an ID photo: another size, mirrored
        # (front cameras), a little darker.
        live = _jpeg(ImageOps.mirror(img.resize((260, 260))).point(lambda v: int(v * 0.85)))
    distance = matcher.distance(original, live)
    assert distance is not None and distance < face.SAME_PERSON_BELOW


def test_no_face_gives_no_score(matcher: face.FaceMatcher) -> None:
    blank = _jpeg(Image.new("RGB", (400, 300), "#3a6"))
    assert matcher.embedding(blank) is None
    assert matcher.distance(PHOTO.read_bytes(), blank) is None


def test_without_the_extra_there_is_no_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib → ImportError
    assert face.load_matcher() is None


def test_embedding_distance_needs_two_faces(matcher: face.FaceMatcher) -> None:
    reference = matcher.embedding(PHOTO.read_bytes())
    assert face.embedding_distance(reference, reference) == 0.0
    assert face.embedding_distance(None, reference) is None
    assert face.embedding_distance(reference, None) is None


async def test_reference_embeddings_are_computed_once_and_bounded() -> None:
    cache = face.ReferenceEmbeddings(limit=2)
    calls: list[str] = []

    def compute(name: str, value: object) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            calls.append(name)
            return value

        return run

    assert await cache.get(("a", "sha-a"), compute("a", [1.0])) == [1.0]
    assert await cache.get(("a", "sha-a"), compute("a", [9.0])) == [1.0]
    # A picture without a face is remembered too.
    assert await cache.get(("b", "sha-b"), compute("b", None)) is None
    assert await cache.get(("b", "sha-b"), compute("b", [2.0])) is None
    assert calls == ["a", "b"] and cache.computed == 2
    # "a" was used last before "c" came: "b" goes, "a" stays.
    await cache.get(("a", "sha-a"), compute("a", [9.0]))
    await cache.get(("c", "sha-c"), compute("c", [3.0]))
    await cache.get(("a", "sha-a"), compute("a", [9.0]))
    await cache.get(("b", "sha-b"), compute("b", [2.0]))
    assert calls == ["a", "b", "c", "b"]
    # Another upload under the same document id is another picture.
    assert await cache.get(("a", "sha-a2"), compute("a2", [4.0])) == [4.0]


# A server process that ends without running its exit handlers (killed, or os._exit as
# pytest-xdist's workers end): its embedding processes must not outlive it. It prints each
# lane's process id and how much nicer that process runs than itself.
_ENDS_ABRUPTLY = """
import os
from pathlib import Path
from server.services.witnessing import face
for lane in (face.CHECKS, face.ADVICE):
    assert face.in_embedder(abs, -1, lane=lane) == 1
    for pid in face.embedder_pids(lane):
        nice = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[16])
        print(lane, pid, nice - os.nice(0), flush=True)
os._exit(0)
"""


def test_embedding_lanes_run_at_their_priority_and_end_with_the_server_process(
    tmp_path: Path,
) -> None:
    import subprocess
    import time

    root = Path(__file__).resolve().parents[2]
    # Into a file, not a pipe: a process left behind would hold a pipe open.
    out = tmp_path / "pids"
    with out.open("w") as sink:
        subprocess.run(
            [sys.executable, "-c", _ENDS_ABRUPTLY],
            stdout=sink,
            cwd=root,
            timeout=60,
            check=True,
        )
    lines = [line.split() for line in out.read_text().splitlines()]
    pids = [int(pid) for _lane, pid, _nicer in lines]
    assert [lane for lane, _pid, _nicer in lines] == [face.CHECKS, face.ADVICE]
    assert len(set(pids)) == 2  # a process each
    # The checks keep the server's priority (an attempt waits for them); the advice
    # yields the CPU to the calls' media (it may come seconds later, packets may not).
    top = 19 - os.nice(0)  # 19 is as nice as it gets
    assert [int(n) for _lane, _pid, n in lines] == [0, min(face.ADVICE_NICE, top)]
    assert face.ADVICE_NICE > 0
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.1)
    for pid in alive:  # not left to the rest of the run either
        os.kill(pid, signal.SIGKILL)
    assert alive == [], "an embedding process outlived the server process"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def test_a_job_waiting_past_its_lane_timeout_is_given_up_and_dropped_if_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import concurrent.futures
    import time

    # A lane of its own: the shared ones stay free for the rest of the run.
    monkeypatch.setitem(face.LANE_NICE, "busy", 0)
    monkeypatch.setitem(face.LANE_TIMEOUT_S, "busy", 0.3)
    try:
        with concurrent.futures.ThreadPoolExecutor(5) as callers:
            waits = [
                callers.submit(face.in_embedder, time.sleep, 1.0, lane="busy") for _ in range(5)
            ]
            errors = [w.exception(timeout=30) for w in waits]
        assert all(isinstance(e, face.EmbedderBusy) for e in errors), errors
        assert all(isinstance(e, TimeoutError) for e in errors)  # callers catching that
        # One process, a job at a time: the ones not yet handed to it are dropped, so
        # the process is not kept busy for 5 s with answers nobody waits for.
        assert any("dropped" in str(e) for e in errors), errors
        start = time.monotonic()
        face._embedders["busy"].shutdown(wait=True)
        assert time.monotonic() - start < 4.5
    finally:
        pool = face._embedders.pop("busy", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def test_waiting_on_the_event_loop_gives_up_alike_and_holds_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import threading
    import time

    monkeypatch.setitem(face.LANE_NICE, "busy-async", 0)
    monkeypatch.setitem(face.LANE_TIMEOUT_S, "busy-async", 0.3)
    try:
        assert await face.in_embedder_async(abs, -2, lane="busy-async") == 2
        threads = threading.active_count()
        waits = [face.in_embedder_async(time.sleep, 1.0, lane="busy-async") for _ in range(8)]
        errors = await asyncio.gather(*waits, return_exceptions=True)
        # Eight waits and not one thread more: the default executor stays free for the
        # stills, the recordings and playback.
        assert threading.active_count() <= threads
        assert all(isinstance(e, face.EmbedderBusy) for e in errors), errors
        assert sum("dropped" in str(e) for e in errors) >= 5, errors
    finally:
        pool = face._embedders.pop("busy-async", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
