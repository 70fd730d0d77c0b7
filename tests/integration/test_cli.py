"""The command line as an operator uses it: real processes, a real SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port
from tests.server_config import write_server_config

ROOT = Path(__file__).resolve().parents[2]


def write_config(
    tmp_path: Path, port: int = 8080, server: dict[str, Any] | None = None, **sections: Any
) -> Path:
    """As an operator writes it: paths relative to the file (data/, rec/)."""
    return write_server_config(
        tmp_path / "config.toml",
        db_url="sqlite+aiosqlite:///data/witness.db",
        recordings="rec",
        server={"port": port, **(server or {})},
        **sections,
    )


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_migrate_staff_and_audit_verify_detects_hand_edit(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    r = cli(cfg, "staff", "list")
    assert r.returncode == 1 and "python -m server migrate" in r.stderr
    assert cli(cfg, "migrate").returncode == 0
    r = cli(
        cfg,
        "staff", "add", "wang.wei", "--name", "王伟", "--roles", "witness",
        "--employee-number", "E1001", "--licence", "S0850120090042", "--contract",
        "--training-passed", "2026-03-01", "--password-stdin",
        stdin="a long enough password\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "created wang.wei" in r.stdout and "not yet eligible" not in r.stdout
    r = cli(
        cfg, "staff", "add", "li.na", "--name", "李娜", "--roles", "witness,reviewer",
        "--marketing", "--password-stdin", stdin="a long enough password\n",
    )  # fmt: skip
    assert r.returncode == 0 and "marketing_staff" in r.stdout and "no_labour_contract" in r.stdout
    r = cli(
        cfg, "staff", "add", "x", "--name", "X", "--roles", "boss", "--password-stdin", stdin="p\n"
    )
    assert r.returncode == 1 and "unknown_role" in r.stderr
    r = cli(cfg, "staff", "add", "zhao", "--name", "Z", "--roles", "admin", "--password-stdin")
    assert r.returncode == 1 and "password" in r.stderr.lower()
    listing = cli(cfg, "staff", "list")
    assert "wang.wei" in listing.stdout and "eligible_witness=True" in listing.stdout
    assert "eligible_witness=False" in listing.stdout
    assert cli(cfg, "staff", "disable", "li.na").returncode == 0
    assert "[disabled]" in cli(cfg, "staff", "list").stdout
    assert cli(cfg, "staff", "disable", "nobody").returncode == 1

    ok = cli(cfg, "audit", "verify")
    assert ok.returncode == 0 and "intact: 3 entries" in ok.stdout

    # Someone edits history by hand, around the append-only trigger.
    db = sqlite3.connect(tmp_path / "data" / "witness.db")
    db.execute("DROP TRIGGER audit_entries_no_update")
    db.execute("UPDATE audit_entries SET details = '{}' WHERE seq = 2")
    db.commit()
    db.close()
    bad = cli(cfg, "audit", "verify")
    assert bad.returncode == 1
    assert "BROKEN at entry 2" in bad.stdout and "altered" in bad.stdout


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, queue={"backend": "kafka"})
    r = cli(cfg, "check-config")
    assert r.returncode == 2 and "queue.backend" in r.stderr
    missing = cli(tmp_path / "nope.toml", "check-config")
    assert missing.returncode == 2 and "not found" in missing.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_serve_prints_urls_and_answers(tmp_path: Path, tls: bool) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port)
    scheme = "http"
    ctx = None
    if tls:
        import ssl

        cert, key = _self_signed(tmp_path)
        cfg = write_config(tmp_path, port, server={"tls_cert": str(cert), "tls_key": str(key)})
        scheme = "https"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    assert cli(cfg, "migrate").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(cfg), "serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                url = f"{scheme}://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200
        url = f"{scheme}://127.0.0.1:{port}/staff/login"
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            assert resp.status == 200 and "员工登录" in resp.read().decode()
            assert ("Strict-Transport-Security" in resp.headers) is tls
            assert ("Secure" in resp.headers["Set-Cookie"]) is tls
    finally:
        proc.terminate()
        out, _err = proc.communicate(timeout=20)
    assert f"staff console:  {scheme}://127.0.0.1:{port}/staff/" in out
    assert "No admin yet" in out and "staff add admin" in out


@pytest.mark.parametrize("args", [["serve"], ["audit", "verify"]])
def test_unmigrated_database_is_refused_clearly(tmp_path: Path, args: list[str]) -> None:
    r = cli(write_config(tmp_path), *args)
    assert r.returncode == 1 and "run `python -m server migrate` first" in r.stderr


def test_api_tokens_and_retention_from_the_command_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    assert cli(cfg, "migrate").returncode == 0
    made = cli(cfg, "token", "create", "--name", "archive", "--scope", "recordings:read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("wt_") and "not shown again" in made.stderr
    bad = cli(cfg, "token", "create", "--name", "x", "--scope", "everything")
    assert bad.returncode == 1 and "Unknown scope" in bad.stderr
    dup = cli(cfg, "token", "create", "--name", "archive", "--scope", "recordings:read")
    assert dup.returncode == 1
    listed = cli(cfg, "token", "list")
    assert "archive" in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout  # only its hash is stored
    db = sqlite3.connect(tmp_path / "data" / "witness.db")
    assert token not in str(db.execute("select * from api_tokens").fetchall())
    db.close()
    assert cli(cfg, "token", "revoke", "--name", "archive").returncode == 0
    assert "revoked" in cli(cfg, "token", "list").stdout

    dry = cli(cfg, "retention", "purge")
    assert dry.returncode == 0 and "would purge (dry run; add --yes) 0 recordings" in dry.stdout
    missing = cli(cfg, "retention", "hold", "nope")
    assert missing.returncode == 1 and "No such recording" in missing.stderr


def test_verify_evidence_needs_no_server(tmp_path: Path) -> None:
    junk = tmp_path / "x.zip"
    junk.write_bytes(b"not a zip")
    key = tmp_path / "k.pem"
    pem = [
        "-----BEGIN PUBLIC KEY-----",
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
        "-----END PUBLIC KEY-----",
    ]
    key.write_text("\n".join(pem) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "server", "verify-evidence", str(junk), "--key", str(key)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert r.returncode == 1 and "not a readable ZIP" in r.stderr
