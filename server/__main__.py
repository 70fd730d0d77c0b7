"""Command line: ``python -m server serve|migrate|staff|audit|check-config``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from server.config import Config, ConfigError, load_config
from server.crypto import DataKeyError
from server.domain.errors import DomainError
from server.domain.identity_document import normalize_id_number
from server.domain.intake import validate_phone
from server.domain.staff import Role, parse_roles
from server.logsetup import setup_logging
from server.services import staff as staff_service
from server.services.runtime import open_protector, open_runtime
from server.store import migrate
from server.store.db import make_engine, make_sessionmaker
from server.store.models import Staff

EXIT_USAGE = 2
EXIT_FAIL = 1


class CliError(Exception):
    pass


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "host", None):
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None):
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "workers", None) is not None:
        overrides.setdefault("server", {})["workers"] = args.workers
    return load_config(args.config, overrides=overrides)


# -- migrate -----------------------------------------------------------------------------
async def _migrate(cfg: Config, args: argparse.Namespace) -> int:
    engine = make_engine(cfg.database_url)
    try:
        if args.down:
            await migrate.downgrade(engine, args.down)
        else:
            await migrate.upgrade(engine, "head")
        current = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    print(f"database at revision {current or 'base'} ({_safe_url(cfg)})")
    return 0


def _safe_url(cfg: Config) -> str:
    url = cfg.database_url
    if "@" in url:  # never print a password
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def _require_migrated(cfg: Config) -> None:
    engine = make_engine(cfg.database_url)
    try:
        current = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    head = migrate.head_revision()
    if current != head:
        raise CliError(
            f"database is at revision {current or 'none'}, code expects {head}: "
            "run `python -m server migrate` first"
        )


# -- serve -------------------------------------------------------------------------------
def _tls_context(cfg: Config) -> ssl.SSLContext | None:
    if not cfg.tls_enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.resolve_path(cfg.server.tls_cert), cfg.resolve_path(cfg.server.tls_key))
    return ctx


def _worker_command(args: argparse.Namespace, workers: int, index: int) -> list[str]:
    """The command line of worker ``index``: this one's config and overrides, as a worker."""
    command = [sys.executable, "-m", "server"]
    if args.config:
        command += ["--config", args.config]
    command.append("serve")
    if args.host:
        command += ["--host", args.host]
    if args.port:
        command += ["--port", str(args.port)]
    return [*command, "--workers", str(workers), "--worker-index", str(index)]


def _serve(cfg: Config, args: argparse.Namespace) -> int:
    from aiohttp import web

    from server import supervisor
    from server.app import create_app
    from server.memory import limit_malloc_arenas

    # Before any thread allocates (the migration check below opens the database).
    limit_malloc_arenas(cfg.server.malloc_arenas)
    if args.worker_index is not None:
        # Started by the supervisor, which has checked the database and the data key.
        worker = cfg.as_worker(args.worker_index)
        app = create_app(worker)
        app.on_startup.append(_install_task_dump)
        return supervisor.run_worker(app, worker, _tls_context(worker))
    asyncio.run(_require_migrated(cfg))
    open_protector(cfg)  # create or check the data key before anything is stored
    ssl_ctx = _tls_context(cfg)
    workers = cfg.worker_count
    if workers > 1:
        supervisor.check_ports_free(cfg)
    scheme = "https" if ssl_ctx else "http"
    host = cfg.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    base = cfg.server.public_url.rstrip("/") or f"{scheme}://{shown}:{cfg.server.port}"
    has_admin = asyncio.run(_has_admin(cfg))
    listening = f"witness server {cfg.node_id} listening on {scheme}://{host}:{cfg.server.port}"
    if workers > 1:
        first, last = cfg.as_worker(0), cfg.as_worker(workers - 1)
        listening = (
            f"witness server {cfg.server.node_id or socket.gethostname()} listening on "
            f"{scheme}://{host}:{cfg.server.port} with {workers} workers ({first.node_id} … "
            f"{last.node_id}; hand-off on {supervisor.LOOPBACK}:{first.internal_port}-"
            f"{last.internal_port})"
        )
    lines = [
        listening,
        f"  investor page:  {base}/",
        f"  staff console:  {base}/staff/",
        f"  health:         {base}/healthz",
    ]
    if not has_admin:
        lines += [
            "",
            "  No admin yet. Create the first one in another terminal:",
            "    .venv/bin/python -m server staff add admin --name 'Administrator' --roles admin",
        ]
    print("\n".join(lines), flush=True)
    if workers > 1:
        return supervisor.supervise([_worker_command(args, workers, i) for i in range(workers)])
    app = create_app(cfg)
    app.on_startup.append(_install_task_dump)
    web.run_app(
        app,
        host=host,
        port=cfg.server.port,
        ssl_context=ssl_ctx,
        print=None,
        access_log=None,
        # Sockets are closed on shutdown (clients reconnect); don't wait a minute for stragglers.
        shutdown_timeout=10,
        loop=supervisor.new_event_loop(cfg),
    )
    return 0


async def _install_task_dump(_app: object) -> None:
    """``kill -USR1 <pid>`` prints every asyncio task's stack: for diagnosing a stuck node."""
    import signal

    def dump() -> None:
        for task in asyncio.all_tasks():
            print(f"--- {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        sys.stderr.flush()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def _has_admin(cfg: Config) -> bool:
    engine = make_engine(cfg.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Staff.roles).where(Staff.active.is_(True)))).all()
    finally:
        await engine.dispose()
    return any(Role.ADMIN.value in r.roles.split(",") for r in rows)


# -- staff -------------------------------------------------------------------------------
def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("Password (12+ characters): ")
    if first != getpass.getpass("Repeat password: "):
        raise CliError("passwords do not match")
    return first


async def _staff(cfg: Config, args: argparse.Namespace) -> int:
    await _require_migrated(cfg)
    async with open_runtime(cfg) as rt:
        if args.staff_cmd == "add":
            password = _read_password(args)
            new = staff_service.NewStaff(
                username=args.username,
                display_name=args.name,
                password=password,
                roles=parse_roles(args.roles),
                employee_number=args.employee_number,
                licence_number=args.licence or "",
                has_labour_contract=args.contract,
                training_passed_on=date.fromisoformat(args.training_passed)
                if args.training_passed
                else None,
                is_marketing=args.marketing,
                phone=validate_phone(args.phone) if args.phone else None,
                id_number=normalize_id_number(args.id_number) if args.id_number else None,
                skills=frozenset(x.strip() for x in (args.skills or "").split(",") if x.strip()),
            )
            async with rt.db.begin() as tx:
                staff = await staff_service.create_staff(
                    tx=tx, new=new, protector=rt.protector, actor="cli"
                )
                problems = (
                    staff_service.witness_problems(staff) if Role.WITNESS in new.roles else []
                )
            print(f"created {staff.username} (id {staff.id}) roles={staff.roles}")
            if problems:
                print(f"  note: not yet eligible to witness (A7): {', '.join(problems)}")
        elif args.staff_cmd == "list":
            async with rt.db.begin() as tx:
                people = await staff_service.list_staff(tx=tx)
                rows = [
                    {
                        "username": s.username,
                        "name": s.display_name,
                        "roles": s.roles,
                        "active": s.active,
                        "employee_number": s.employee_number,
                        "licence_number": s.licence_number,
                        "eligible_witness": not staff_service.witness_problems(s)
                        if "witness" in s.role_set
                        else None,
                    }
                    for s in people
                ]
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=2))
            else:
                for r in rows:
                    flag = "" if r["active"] else "  [disabled]"
                    elig = (
                        ""
                        if r["eligible_witness"] is None
                        else f" eligible_witness={r['eligible_witness']}"
                    )
                    print(f"{r['username']:<20} {r['roles']:<30} {r['name']}{elig}{flag}")
        elif args.staff_cmd in ("disable", "enable"):
            async with rt.db.begin() as tx:
                await staff_service.set_staff_active(
                    tx=tx,
                    username=args.username,
                    active=args.staff_cmd == "enable",
                    actor="cli",
                )
            print(f"{args.username}: {args.staff_cmd}d")
        elif args.staff_cmd == "passwd":
            password = _read_password(args)
            async with rt.db.begin() as tx:
                await staff_service.change_password(
                    tx=tx, username=args.username, password=password, actor="cli"
                )
            print(f"{args.username}: password set")
    return 0


# -- audit -------------------------------------------------------------------------------
async def _audit(cfg: Config, args: argparse.Namespace) -> int:
    from server.audit import verify_audit_chain

    await _require_migrated(cfg)
    engine = make_engine(cfg.database_url)
    try:
        async with engine.connect() as conn:
            from sqlalchemy.ext.asyncio import AsyncSession

            async with AsyncSession(bind=conn) as tx:
                report = await verify_audit_chain(tx)
    finally:
        await engine.dispose()
    if report.intact:
        print(f"audit chain intact: {report.checked} entries verified")
        return 0
    brk = report.first_break
    assert brk is not None
    print(
        f"audit chain BROKEN at entry {brk.seq}: {brk.reason} "
        f"({report.checked} entries verified before it)"
    )
    return EXIT_FAIL


# -- API tokens ----------------------------------------------------------------------------
async def _token(cfg: Config, args: argparse.Namespace) -> int:
    from server.services import api_tokens

    await _require_migrated(cfg)
    engine = make_engine(cfg.database_url)
    db = make_sessionmaker(engine)
    try:
        async with db.begin() as tx:
            action = str(args.token_cmd)
            if action == "create":
                new = await api_tokens.create_token(
                    tx, name=args.name, scopes=args.scope, days=args.days, actor="cli"
                )
                print(new.token)
                expiry = f"expires {new.expires_at:%Y-%m-%d}" if new.expires_at else "no expiry"
                print(f"token {new.name!r} (id {new.id}) created; {expiry}.", file=sys.stderr)
                print("Store it now: it is not shown again.", file=sys.stderr)
            elif action == "revoke":
                await api_tokens.revoke_token(tx, name=args.name, actor="cli")
                print(f"token {args.name!r} revoked")
            else:
                for t in await api_tokens.list_tokens(tx):
                    state = "revoked" if t.revoked_at else "active"
                    expiry = f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "-"
                    used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                    print(f"{t.id}\t{t.name}\t{t.scopes}\t{state}\texpires {expiry}\tused {used}")
    finally:
        await engine.dispose()
    return 0


async def _retention(cfg: Config, args: argparse.Namespace) -> int:
    from server.services.retrieval import retention

    await _require_migrated(cfg)
    engine = make_engine(cfg.database_url)
    db = make_sessionmaker(engine)
    try:
        if args.retention_cmd in ("hold", "release"):
            async with db.begin() as tx:
                await retention.set_hold(
                    tx, recording_id=args.recording, hold=args.retention_cmd == "hold",
                    actor="cli",
                )  # fmt: skip
            state = "on" if args.retention_cmd == "hold" else "off"
            print(f"recording {args.recording}: legal hold {state}")
            return 0
        report = await retention.purge(
            db,
            root=cfg.recordings_path,
            years=cfg.retention.years,
            dry_run=not args.yes,
            actor="cli",
        )
    finally:
        await engine.dispose()
    verb = "purged" if args.yes else "would purge (dry run; add --yes)"
    print(
        f"retention {cfg.retention.years} years: {verb} "
        f"{len(report.purged) if args.yes else len(report.eligible)} recordings; "
        f"{report.held} past retention kept on legal hold"
    )
    return 0


def _verify_evidence(args: argparse.Namespace) -> int:
    """Offline: no server, no database; only the package and the public key."""
    from server.evidence import EvidenceError, load_public_key, verify_package

    if args.key:
        try:
            text = Path(args.key).read_text(encoding="ascii")
        except OSError as exc:
            print(f"error: cannot read key {args.key}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        try:
            from server.evidence import public_pem
            from server.services.runtime import load_evidence_key

            text = public_pem(load_evidence_key(_config(args)))
        except (ConfigError, DataKeyError, OSError) as exc:
            hint = "give --key (the PEM from GET /api/v1/evidence-key)"
            print(f"error: {hint}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        result = verify_package(Path(args.file), load_public_key(text))
    except EvidenceError as exc:
        print(f"evidence package INVALID: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(
        f"evidence package valid: session {result.session_id}, {result.files} files, "
        f"{result.audit_entries} audit entries, signed by key {result.key_id}"
    )
    return 0


def _check_config(cfg: Config, _args: argparse.Namespace) -> int:
    open_protector(cfg)
    print(f"config OK: database={_safe_url(cfg)} queue={cfg.queue.backend} node={cfg.node_id}")
    return 0


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server", description="Video witnessing server")
    p.add_argument("--config", help="config file (default: ./config.toml or $WITNESS_CONFIG)")
    sub = p.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes behind the one port (server.workers; 0 = one per CPU core)",
    )
    # Internal: set by the supervisor on the workers it starts.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)

    mig = sub.add_parser("migrate", help="bring the database schema to the latest revision")
    mig.add_argument("--down", metavar="REV", help="downgrade to REV instead (e.g. base)")

    sub.add_parser("check-config", help="load and validate the configuration")

    staff = sub.add_parser("staff", help="manage staff accounts")
    ssub = staff.add_subparsers(dest="staff_cmd", required=True)
    add = ssub.add_parser("add", help="create a staff member")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument(
        "--roles", required=True, help="comma-separated: witness,reviewer,callback,admin,auditor"
    )
    add.add_argument("--employee-number")
    add.add_argument(
        "--licence", help="SAC registration (licence) number, needed by witnesses (A12)"
    )
    add.add_argument(
        "--contract", action="store_true", help="has a labour contract with the agency (A7)"
    )
    add.add_argument(
        "--training-passed", metavar="YYYY-MM-DD", help="date witness training was passed (A24)"
    )
    add.add_argument(
        "--marketing", action="store_true", help="is marketing staff (may not witness, A7)"
    )
    add.add_argument(
        "--skills", help="pairing skills, comma-separated (e.g. hmt,en); see pairing.match_skills"
    )
    add.add_argument(
        "--phone", help="own mobile number: never paired with an investor using it (A7)"
    )
    add.add_argument(
        "--id-number", help="own ID number: never paired with an investor using it (A7)"
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    lst = ssub.add_parser("list", help="list staff")
    lst.add_argument("--json", action="store_true")
    for name in ("disable", "enable"):
        c = ssub.add_parser(name, help=f"{name} a staff member")
        c.add_argument("username")
    pw = ssub.add_parser("passwd", help="set a staff member's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")

    audit = sub.add_parser("audit", help="audit trail tools")
    asub = audit.add_subparsers(dest="audit_cmd", required=True)
    asub.add_parser("verify", help="walk the hash chain and report the first broken link")

    token = sub.add_parser("token", help="retrieval API tokens")
    tsub = token.add_subparsers(dest="token_cmd", required=True)
    tc = tsub.add_parser("create", help="create a token (printed once)")
    tc.add_argument("--name", required=True)
    tc.add_argument("--scope", action="append", required=True, help="e.g. recordings:read")
    tc.add_argument("--days", type=int, help="expire after this many days (default: never)")
    tr = tsub.add_parser("revoke", help="revoke a token")
    tr.add_argument("--name", required=True)
    tsub.add_parser("list", help="list tokens (never the tokens themselves)")

    ret = sub.add_parser("retention", help="legal holds and purging past retention (A15, A19)")
    rsub = ret.add_subparsers(dest="retention_cmd", required=True)
    for name, text in (("hold", "keep a recording regardless of age"), ("release", "lift a hold")):
        h = rsub.add_parser(name, help=text)
        h.add_argument("recording", help="recording id")
    pg = rsub.add_parser("purge", help="delete files past retention.years and not on hold")
    pg.add_argument("--yes", action="store_true", help="really delete (default: dry run)")

    ve = sub.add_parser(
        "verify-evidence", help="check an evidence package offline (signature, hashes, audit)"
    )
    ve.add_argument("file", help="the evidence ZIP")
    ve.add_argument("--key", help="the server's public key (PEM from GET /api/v1/evidence-key)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "verify-evidence":
        return _verify_evidence(args)
    try:
        cfg = _config(args)
        setup_logging(cfg.logging.level, cfg.logging.format)
        handlers: dict[str, Callable[[Config, argparse.Namespace], Awaitable[int] | int]] = {
            "migrate": _migrate,
            "staff": _staff,
            "audit": _audit,
            "token": _token,
            "retention": _retention,
            "check-config": _check_config,
            "serve": _serve,
        }
        result = handlers[args.cmd](cfg, args)
        return asyncio.run(result) if asyncio.iscoroutine(result) else int(result)  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataKeyError as exc:
        print(f"data key error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DomainError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_FAIL
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"database error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
