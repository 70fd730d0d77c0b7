"""Evidence packages: format, signing and offline verification (A15, A19, A25).

A package is a ZIP holding the session's recordings, stills and ID images, a
``manifest.json`` (every file with its SHA-256 and size, the session's metadata, and the
audit entries that concern it, plus the head of the audit chain when packed) and
``manifest.sig``: a detached Ed25519 signature of the manifest's exact bytes, base64.

``build_package`` streams a package: file hashes are computed from the bytes actually
packed, and the package is never held whole in memory or on disk. ``verify_package``
needs neither the server nor its database: an auditor runs
``python -m server verify-evidence FILE.zip --key evidence-key.pem``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.domain.audit_chain import canonical_payload, entry_hash

FORMAT = "witness-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


def signing_key(*, evidence_key: bytes | None, data_key: bytes) -> Ed25519PrivateKey:
    """The configured seed, or one derived from the data key for this purpose only."""
    if evidence_key is not None:
        return Ed25519PrivateKey.from_private_bytes(evidence_key)
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"witness evidence signing v1"
    ).derive(data_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, manifest: bytes) -> bytes:
    return base64.b64encode(key.sign(manifest))


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()


# Read size for packed files: large enough for throughput, small enough to stream.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class PackageFile:
    name: str  # inside the ZIP
    path: Path


class _Sink:
    """A write-only file for zipfile whose bytes are taken out in batches to be sent."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    with archive.open(name, "w") as dst:
        dst.write(data)


async def build_package(
    *,
    files: list[PackageFile],
    manifest: dict[str, Any],
    recorded: Mapping[str, str | None],
    key: Ed25519PrivateKey,
) -> AsyncIterator[bytes]:
    """The ZIP's bytes in order: each file (hashed as packed; a file that is gone is listed
    under ``missing`` so verification fails loudly), then the manifest (``manifest`` plus
    ``files`` and ``missing``) and its signature. ``recorded`` maps a record id to the hash
    stored when the file was made, so the manifest says whether each file still matches."""
    sink = _Sink()
    listed: list[dict[str, Any]] = []
    missing: list[str] = []
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED)  # type: ignore[call-overload]
    for item in files:
        if not item.path.is_file():
            missing.append(item.name)  # purged or lost
            continue
        digest = hashlib.sha256()
        size = 0
        with item.path.open("rb") as src, archive.open(item.name, "w", force_zip64=True) as dst:
            while chunk := await asyncio.to_thread(src.read, CHUNK):
                dst.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if data := sink.take():
                    yield data
        if data := sink.take():
            yield data
        record_id = item.name.rsplit("-", 1)[-1].split(".")[0]
        entry: dict[str, Any] = {"path": item.name, "sha256": digest.hexdigest(), "bytes": size}
        if record_id in recorded:
            entry["matches_record"] = recorded[record_id] == entry["sha256"]
        listed.append(entry)
    manifest_bytes = dump_manifest({**manifest, "files": listed, "missing": missing})
    _write_member(archive, MANIFEST, manifest_bytes)
    _write_member(archive, SIGNATURE, sign(key, manifest_bytes))
    archive.close()
    if data := sink.take():
        yield data


class EvidenceError(Exception):
    """The package fails verification; the message names the first problem."""


def load_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise EvidenceError(f"not an Ed25519 public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError("not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Verified:
    session_id: str
    files: int
    audit_entries: int
    key_id: str


def _check_audit(entries: list[dict[str, Any]]) -> None:
    """Each entry's hash must follow from its content and its predecessor's hash; where
    the excerpt holds consecutive entries, the links must join."""
    previous: dict[str, Any] | None = None
    for entry in entries:
        try:
            payload = canonical_payload(
                seq=int(entry["seq"]),
                at=datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")),
                actor=str(entry["actor"]),
                action=str(entry["action"]),
                subject_type=str(entry["subject_type"]),
                subject_id=str(entry["subject_id"]),
                details=dict(entry["details"]),
            )
            recorded, prev = str(entry["hash"]), str(entry["prev_hash"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"audit entry malformed: {exc}") from None
        if entry_hash(prev, payload) != recorded:
            raise EvidenceError(f"audit entry {entry['seq']}: hash does not match its content")
        if previous is not None and int(previous["seq"]) + 1 == int(entry["seq"]):
            if prev != previous["hash"]:
                raise EvidenceError(
                    f"audit entry {entry['seq']}: does not follow entry {previous['seq']}"
                )
        previous = entry


def verify_package(path: Path, public_key: Ed25519PublicKey) -> Verified:
    """Raises EvidenceError naming the first problem, whatever is wrong with the file."""
    try:
        return _verify(path, public_key)
    except EvidenceError:
        raise
    except (
        OSError,
        zipfile.BadZipFile,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
        RuntimeError,
        NotImplementedError,
        EOFError,
    ) as exc:
        raise EvidenceError(f"damaged or malformed package: {type(exc).__name__}: {exc}") from None


def _verify(path: Path, public_key: Ed25519PublicKey) -> Verified:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise EvidenceError(f"not a readable ZIP: {exc}") from None
    with archive:
        all_names = archive.namelist()
        names = set(all_names)
        if len(names) != len(all_names):
            # Two members with one name: readers disagree on which is "the" file.
            raise EvidenceError("duplicate file names in the package")
        for needed in (MANIFEST, SIGNATURE):
            if needed not in names:
                raise EvidenceError(f"{needed} missing")
        manifest_bytes = archive.read(MANIFEST)
        try:
            signature = base64.b64decode(archive.read(SIGNATURE), validate=True)
            public_key.verify(signature, manifest_bytes)
        except (InvalidSignature, ValueError):
            raise EvidenceError(
                "manifest signature invalid (manifest changed, or signed by another key)"
            ) from None
        try:
            manifest = json.loads(manifest_bytes)
        except json.JSONDecodeError as exc:
            raise EvidenceError(f"manifest.json is not JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise EvidenceError("unknown package format")
        files = manifest.get("files")
        audit = manifest.get("audit")
        if not isinstance(files, list) or not isinstance(audit, dict):
            raise EvidenceError("manifest lacks its files or audit section")
        if manifest.get("missing"):
            raise EvidenceError(f"evidence missing when packed: {manifest['missing'][0]}")
        listed_paths = [f["path"] for f in files]
        if len(set(listed_paths)) != len(listed_paths):
            raise EvidenceError("a file is listed twice in the manifest")
        listed = set(listed_paths)
        extra = names - listed - {MANIFEST, SIGNATURE}
        if extra:
            raise EvidenceError(f"file not in the manifest: {sorted(extra)[0]}")
        for item in files:
            name = item["path"]
            if name not in names:
                raise EvidenceError(f"{name}: listed in the manifest but missing")
            digest = hashlib.sha256()
            size = 0
            with archive.open(name) as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            if digest.hexdigest() != item["sha256"] or size != item["bytes"]:
                raise EvidenceError(f"{name}: SHA-256 does not match the manifest")
            if item.get("matches_record") is False:
                raise EvidenceError(f"{name}: differed from its recorded hash when packed")
        entries = audit.get("entries", [])
        if not isinstance(entries, list):
            raise EvidenceError("manifest audit entries malformed")
        _check_audit(entries)
    return Verified(
        session_id=str((manifest.get("session") or {}).get("id", "")),
        files=len(files),
        audit_entries=len(entries),
        key_id=key_id(public_key),
    )


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
