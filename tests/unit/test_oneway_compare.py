"""A18.4: the one-way face comparison's decision, with embeddings given (no dlib)."""

from __future__ import annotations

from typing import Any

import numpy as np

from server.services.oneway.service import compare_faces

# Pictures named by what they stand for; their "embeddings" are points in 2-d.
EMBEDDINGS: dict[bytes, Any] = {
    b"id": np.array([0.0, 0.0]),
    b"photo": np.array([0.0, 0.3]),
    b"near": np.array([0.3, 0.4]),  # 0.5 from the ID, 0.3162 from the photo
    b"nearer": np.array([0.0, 0.2]),  # 0.2 from the ID, 0.1 from the photo
    b"stranger": np.array([3.0, 4.0]),  # 5.0 from the ID
    b"blank": None,  # no face
}


def embed(picture: bytes) -> Any:
    return EMBEDDINGS[picture]


def test_each_reference_takes_its_closest_still() -> None:
    result = compare_faces(
        embed, {"id_front": b"id", "frontal_photo": b"photo"}, [b"near", b"nearer"], 0.5
    )
    assert result == {
        "passed": True,
        "comparable": True,
        "distances": {"id_front": 0.2, "frontal_photo": 0.1},
        "stills_with_face": 2,
    }


def test_a_reference_too_far_fails_the_comparison() -> None:
    result = compare_faces(embed, {"id_front": b"id"}, [b"stranger", b"blank"], 0.5)
    assert result["distances"] == {"id_front": 5.0}
    assert result["stills_with_face"] == 1
    assert result["comparable"] and not result["passed"]


def test_without_a_face_on_the_id_nothing_is_comparable() -> None:
    result = compare_faces(
        embed, {"id_front": b"blank", "frontal_photo": b"photo"}, [b"nearer"], 0.5
    )
    assert result["distances"] == {"id_front": None, "frontal_photo": 0.1}
    assert not result["comparable"] and not result["passed"]


def test_without_a_face_in_any_still_nothing_is_comparable() -> None:
    result = compare_faces(embed, {"id_front": b"id"}, [b"blank"], 0.5)
    assert result["distances"] == {"id_front": None}
    assert result["stills_with_face"] == 0
    assert not result["comparable"] and not result["passed"]
