"""The face-comparison aid (A17.3): real dlib embeddings from the packaged models.
The test photo is NASA's public-domain portrait of astronaut Eileen Collins (as shipped
with scikit-image), cropped."""

from __future__ import annotations

import io
import sys
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
