"""Personal data at rest (A25): encryption, lookup hashes, masking, key handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from server.crypto import (
    DataKeyError,
    DataProtector,
    generate_key_text,
    load_or_create_key,
    mask_id_number,
    mask_phone,
)


def test_round_trip_and_ciphertext_hides_plaintext() -> None:
    p = DataProtector(b"\x01" * 32)
    blob = p.encrypt("11010519491231002X", context="applications.id_number")
    assert b"11010519491231002X" not in blob
    assert p.decrypt(blob, context="applications.id_number") == "11010519491231002X"
    # Same plaintext twice gives different ciphertexts (random nonce).
    assert blob != p.encrypt("11010519491231002X", context="applications.id_number")


def test_context_binding_refuses_swapped_column() -> None:
    p = DataProtector(b"\x01" * 32)
    blob = p.encrypt("13800138000", context="applications.phone")
    with pytest.raises(InvalidTag):
        p.decrypt(blob, context="applications.id_number")


def test_wrong_key_refused() -> None:
    blob = DataProtector(b"\x01" * 32).encrypt("x")
    with pytest.raises(InvalidTag):
        DataProtector(b"\x02" * 32).decrypt(blob)


def test_lookup_hash_is_keyed_and_kind_separated() -> None:
    a, b = DataProtector(b"\x01" * 32), DataProtector(b"\x02" * 32)
    assert a.lookup_hash("13800138000", kind="phone") == a.lookup_hash("13800138000", kind="phone")
    assert a.lookup_hash("13800138000", kind="phone") != b.lookup_hash("13800138000", kind="phone")
    assert a.lookup_hash("1", kind="phone") != a.lookup_hash("1", kind="id_number")


def test_masking() -> None:
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_phone("13800138000") == "138****8000"


def test_key_file_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "data.key"
    key, created = load_or_create_key("", path, create=True)
    assert created and len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    again, created2 = load_or_create_key("", path, create=True)
    assert again == key and not created2


def test_missing_or_bad_key(tmp_path: Path) -> None:
    with pytest.raises(DataKeyError, match="no data key"):
        load_or_create_key("", tmp_path / "none.key", create=False)
    with pytest.raises(DataKeyError, match="32 bytes"):
        load_or_create_key("c2hvcnQ=", tmp_path / "x", create=False)
    with pytest.raises(DataKeyError, match="base64"):
        load_or_create_key("not base64!!", tmp_path / "x", create=False)
    assert load_or_create_key(generate_key_text(), tmp_path / "x", create=False)[1] is False
