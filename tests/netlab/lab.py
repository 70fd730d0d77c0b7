"""The network lab (issue 16): network namespaces joined by a router that NATs an
"investor home", coturn in its own namespace, per-link impairments.

Topology (addresses are the same in every run: each run has its own namespaces)::

    srv  198.51.100.2 ─┐                         ┌─ 192.168.77.2  home "wifi"  (NAT)
    turn 203.0.113.2  ─┼─ rtr (forwards, NATs) ──┤
    wit  192.0.2.2    ─┘                         └─ 100.64.7.2    home "mobile" (NAT, down)

The "public" side uses the documentation ranges of RFC 5737: never routed anywhere, and
not private to a browser. That matters: Chromium holds back ICE errors of a TURN server
on a private address until gathering completes (which on a UDP-blocked network may be
never), so a TURN server on 10.x would hide the very 401 a test checks for.

* ``srv``: where ``python -m server serve`` runs (HTTP and media on 198.51.100.2).
* ``turn``: coturn with ``use-auth-secret`` on UDP and TCP 3478 and TLS 443.
* ``wit``: the witness's browser, on a public address (no NAT).
* ``home``: the investor's browser behind the router's masquerade; a second link
  ("mobile") lets a test change the investor's address mid-call.

Namespaces are named ``wnl-<pid>-<role>`` (pid of the process that made them). At start
a lab deletes every ``wnl-`` namespace whose pid no longer runs (left over from a killed
run) and kills what still runs inside it; a live run's namespaces are left alone. A lab
always removes its own namespaces: ``close()`` from the fixture's ``finally``, from
``atexit`` and from a SIGTERM handler (Ctrl-C is pytest's KeyboardInterrupt, which runs
the ``finally``).

API for tests (and for the Firefox tests, which run Firefox in ``home`` the same way)::

    lab = Lab.create(workdir)            # raises LabUnavailable with the reason
    lab.ns["home"], lab.addr["home"]     # namespace names and addresses
    lab.run_in("home", ["ip", "addr"])   # subprocess.run inside a namespace, with timeout
    lab.popen_in("srv", argv, ...)       # a process inside a namespace (killed at close)
    lab.chromium_executable("home")      # a wrapper for Playwright's executable_path
    lab.turn_secret, lab.turn_urls(...)  # coturn's secret and URLs
    lab.set_loss(3) / lab.block_udp(tls_only=False) / lab.cap_uplink(300)
    lab.clear_impairments() / lab.move_home_to_mobile()
    lab.close()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

PREFIX = "wnl-"
ROLES = ("rtr", "srv", "turn", "wit", "home")
CMD_TIMEOUT = 20.0
CHROMIUM = os.environ.get("WITNESS_TEST_CHROMIUM", "/usr/bin/chromium")

# role -> (router-side interface, router address, role-side interface, role address/prefix)
LINKS: dict[str, tuple[str, str, str, str]] = {
    "srv": ("s0", "198.51.100.1", "eth0", "198.51.100.2/24"),
    "turn": ("t0", "203.0.113.1", "eth0", "203.0.113.2/24"),
    "wit": ("w0", "192.0.2.1", "eth0", "192.0.2.2/24"),
    "home": ("h0", "192.168.77.1", "wifi", "192.168.77.2/24"),
}
MOBILE = ("m0", "100.64.7.1", "mobile", "100.64.7.2/24")
HOME_LINKS = ("h0", "m0")  # the router's interfaces towards the investor's home
TURN_PORT = 3478
TURNS_PORT = 443  # TLS on 443: what strict networks let out (docs/deployment.md)


class LabUnavailable(Exception):
    """The lab cannot run here (not root, no namespaces, a tool missing): the reason."""


class LabError(Exception):
    """A lab command failed: the command and what it printed."""


def _run(argv: list[str], *, timeout: float = CMD_TIMEOUT, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace(name: str) -> None:
    """Kill whatever still runs in a namespace (processes a lab started), then delete it."""
    pids = _run(["ip", "netns", "pids", name], check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "del", name], check=False)


def lab_namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def remove_leftovers() -> list[str]:
    """Delete ``wnl-<pid>-*`` namespaces whose run is gone; their names."""
    removed = []
    for name in lab_namespaces():
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and _pid_alive(int(owner)) and int(owner) != os.getpid():
            continue  # another run, still going
        if owner.isdigit() and int(owner) == os.getpid():
            continue  # ours: close() removes it
        _kill_namespace(name)
        removed.append(name)
    return removed


def check_available() -> None:
    """Raise LabUnavailable with the reason if the lab cannot run on this machine."""
    if os.geteuid() != 0:
        raise LabUnavailable("the network lab needs root (network namespaces, nftables)")
    for tool in ("ip", "nft", "tc", "turnserver", "openssl"):
        if shutil.which(tool) is None:
            raise LabUnavailable(f"{tool} not found; scripts/ensure-test-env.sh installs it")
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run(["ip", "netns", "add", probe])
    except LabError as exc:
        raise LabUnavailable(f"cannot create a network namespace: {exc}") from None
    finally:
        _run(["ip", "netns", "del", probe], check=False)


@dataclass(eq=False)
class Lab:
    workdir: Path
    run_id: str
    ns: dict[str, str]
    addr: dict[str, str]
    turn_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    closed: bool = False
    on_mobile: bool = False

    # -- life cycle ------------------------------------------------------------
    @classmethod
    def create(cls, workdir: Path) -> Lab:
        check_available()
        remove_leftovers()
        run_id = str(os.getpid())
        lab = cls(
            workdir=workdir,
            run_id=run_id,
            ns={role: f"{PREFIX}{run_id}-{role}" for role in ROLES},
            addr={role: link[3].split("/")[0] for role, link in LINKS.items()},
        )
        lab.addr["rtr_wan"] = LINKS["srv"][1]
        lab.addr["mobile"] = MOBILE[3].split("/")[0]
        _register_cleanup(lab)
        try:
            lab._build()
            lab._start_coturn()
        except BaseException:
            lab.close()
            raise
        return lab

    def close(self) -> None:
        """Stop every process the lab started and delete its namespaces (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        for name in self.ns.values():
            _kill_namespace(name)
        _unregister_cleanup(self)

    def _build(self) -> None:
        for name in self.ns.values():
            _run(["ip", "netns", "add", name])
            self.run_in_checked(name, ["ip", "link", "set", "lo", "up"])
        rtr = self.ns["rtr"]
        for role, (r_if, r_addr, if_name, address) in [
            *LINKS.items(),
            ("home", MOBILE),
        ]:
            # Made inside the router's namespace, peer moved straight into the other:
            # no interface ever appears in the host's namespace.
            self.run_in_checked(
                rtr,
                ["ip", "link", "add", r_if, "type", "veth", "peer", "name", if_name,
                 "netns", self.ns[role]],
            )  # fmt: skip
            prefix = address.split("/")[1]
            self.run_in_checked(rtr, ["ip", "addr", "add", f"{r_addr}/{prefix}", "dev", r_if])
            self.run_in_checked(rtr, ["ip", "link", "set", r_if, "up"])
            self.run_in_checked(self.ns[role], ["ip", "addr", "add", address, "dev", if_name])
            if if_name != "mobile":  # the mobile link comes up only when a test moves there
                self.run_in_checked(self.ns[role], ["ip", "link", "set", if_name, "up"])
                self.run_in_checked(self.ns[role], ["ip", "route", "add", "default", "via", r_addr])
        self.run_in_checked(rtr, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        ruleset = """
table inet wnl {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    iifname { "h0", "m0" } oifname != { "h0", "m0" } masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    jump impair
  }
  chain impair {
  }
}
"""
        self._nft(ruleset)

    def _nft(self, ruleset: str) -> None:
        path = self.workdir / f"nft-{secrets.token_hex(4)}.conf"
        path.write_text(ruleset)
        self.run_in_checked(self.ns["rtr"], ["nft", "-f", str(path)])

    # -- running things in namespaces --------------------------------------------
    def _ns(self, ns: str) -> str:
        return self.ns.get(ns, ns)

    def run_in(
        self, ns: str, argv: list[str], *, timeout: float = CMD_TIMEOUT, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside namespace ``ns`` (a role or a full name); never waits longer
        than ``timeout`` (subprocess.TimeoutExpired)."""
        return subprocess.run(
            ["ip", "netns", "exec", self._ns(ns), *argv],
            capture_output=True, text=True, timeout=timeout, **kw,
        )  # fmt: skip

    def run_in_checked(self, ns: str, argv: list[str], *, timeout: float = CMD_TIMEOUT) -> str:
        done = self.run_in(ns, argv, timeout=timeout)
        if done.returncode != 0:
            raise LabError(f"[{ns}] {' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def popen_in(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """A process inside ``ns``; the lab kills it at close."""
        proc = subprocess.Popen(["ip", "netns", "exec", self._ns(ns), *argv], **kw)
        self.procs.append(proc)
        return proc

    def chromium_executable(self, ns: str) -> str:
        """A script for Playwright's ``executable_path`` that runs Chromium inside ``ns``
        (Playwright talks to it over a pipe, so no port crosses namespaces)."""
        path = self.workdir / f"chromium-{ns}.sh"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self._ns(ns)} {CHROMIUM} "$@"\n')
        path.chmod(0o755)
        return str(path)

    # -- coturn ------------------------------------------------------------------
    def _start_coturn(self) -> None:
        turn_ip = self.addr["turn"]
        cert, key = self.workdir / "turn.crt", self.workdir / "turn.key"
        _run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=turn.lab.invalid",
             "-addext", f"subjectAltName=IP:{turn_ip}"],
        )  # fmt: skip
        conf = self.workdir / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={turn_ip}",
                    f"relay-ip={turn_ip}",
                    f"listening-port={TURN_PORT}",
                    f"tls-listening-port={TURNS_PORT}",
                    "use-auth-secret",
                    f"static-auth-secret={self.turn_secret}",
                    "realm=lab.invalid",
                    f"cert={cert}",
                    f"pkey={key}",
                    "min-port=49152",
                    "max-port=49999",
                    "fingerprint",
                    "no-cli",
                    "no-dtls",
                    "no-multicast-peers",
                    "no-software-attribute",
                    f"userdb={self.workdir / 'turndb'}",
                    f"pidfile={self.workdir / 'turnserver.pid'}",
                    "simple-log",
                    "verbose",
                    "log-file=stdout",
                    "",
                ]
            )
        )
        self.turn_conf = conf
        self._launch_coturn()

    def _launch_coturn(self) -> None:
        conf = self.turn_conf
        self.turn_log = self.workdir / "turnserver.log"
        with self.turn_log.open("a") as log:
            self.coturn = self.popen_in(
                "turn", ["turnserver", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            text = self.turn_log.read_text(errors="replace")
            if self.coturn.poll() is not None:
                raise LabError(f"turnserver exited: {text[-2000:]}")
            ports = self.run_in_checked("turn", ["ss", "-ltnH"])
            if f":{TURN_PORT}" in ports and f":{TURNS_PORT}" in ports:
                return
            if time.monotonic() > deadline:
                raise LabError(f"turnserver did not listen within 10 s: {text[-2000:]}")
            time.sleep(0.2)

    def turn_urls(self, *, transports: tuple[str, ...] = ("udp", "tcp", "tls")) -> list[str]:
        """STUN first (aiortc uses the first STUN and the first TURN URL), then TURN."""
        ip = self.addr["turn"]
        urls = [f"stun:{ip}:{TURN_PORT}"]
        if "udp" in transports:
            urls.append(f"turn:{ip}:{TURN_PORT}?transport=udp")
        if "tcp" in transports:
            urls.append(f"turn:{ip}:{TURN_PORT}?transport=tcp")
        if "tls" in transports:
            urls.append(f"turns:{ip}:{TURNS_PORT}?transport=tcp")
        return urls

    def stop_coturn(self) -> None:
        """TURN down (the "TURN server is down" case)."""
        if self.coturn.poll() is None:
            self.coturn.kill()
            self.coturn.wait(timeout=5)

    def start_coturn(self) -> None:
        if self.coturn.poll() is not None:
            self._launch_coturn()

    def reset(self) -> None:
        """No impairment, TURN up, the investor home on Wi-Fi."""
        self.clear_impairments()
        self.start_coturn()
        if self.on_mobile:
            self.run_in_checked("home", ["ip", "link", "set", "mobile", "down"])
            self.run_in_checked("home", ["ip", "link", "set", "wifi", "up"])
            self.run_in_checked(
                "home", ["ip", "route", "replace", "default", "via", LINKS["home"][1]]
            )
            self.on_mobile = False

    # -- impairments (on the router, towards the investor's home) ------------------
    def clear_impairments(self) -> None:
        self.run_in_checked("rtr", ["nft", "flush", "chain", "inet", "wnl", "impair"])
        for ns, dev in (("home", "wifi"), ("home", "mobile"), ("rtr", "h0"), ("rtr", "m0")):
            self.run_in(ns, ["tc", "qdisc", "del", "dev", dev, "root"])

    def _impair(self, rule: str) -> None:
        self.run_in_checked("rtr", ["nft", "add", "rule", "inet", "wnl", "impair", *rule.split()])

    def set_loss(self, percent: int) -> None:
        """Drop ``percent``% of UDP packets at random, each way between home and the rest."""
        for direction in ("iifname", "oifname"):
            self._impair(
                f'{direction} {{ "h0", "m0" }} meta l4proto udp'
                f" numgen random mod 100 < {percent} drop"
            )

    def block_udp(self, *, tls_only: bool = False) -> None:
        """A strict network: no UDP to or from home; with ``tls_only`` TURN's plain TCP
        port is closed too, so only HTTP(S) and TURN over TLS on 443 get out."""
        for direction in ("iifname", "oifname"):
            self._impair(f'{direction} {{ "h0", "m0" }} meta l4proto udp drop')
        if tls_only:
            self._impair(f'iifname {{ "h0", "m0" }} tcp dport {TURN_PORT} drop')

    def cap_uplink(self, kbit: int) -> None:
        """A token bucket on the investor's uplink (egress of their active interface)."""
        dev = "mobile" if self.on_mobile else "wifi"
        self.run_in_checked(
            "home",
            ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{kbit}kbit",
             "burst", "4kb", "latency", "200ms"],
        )  # fmt: skip

    def move_home_to_mobile(self) -> None:
        """The investor's phone leaves Wi-Fi for mobile data: the Wi-Fi link goes down,
        the mobile link comes up with another address behind another NAT mapping."""
        home = "home"
        self.run_in_checked(home, ["ip", "link", "set", "wifi", "down"])
        self.run_in_checked(home, ["ip", "link", "set", "mobile", "up"])
        self.run_in_checked(home, ["ip", "route", "replace", "default", "via", MOBILE[1]])
        self.on_mobile = True


# -- cleanup on exit and SIGTERM -------------------------------------------------------
_LIVE: set[Lab] = set()
_LOCK = threading.Lock()
_PREVIOUS_TERM: Any = None
_HOOKED = False


def _close_all() -> None:
    with _LOCK:
        labs = list(_LIVE)
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.close()


def _on_term(signum: int, frame: FrameType | None) -> None:
    _close_all()
    previous = _PREVIOUS_TERM
    if callable(previous):
        previous(signum, frame)
    else:
        raise SystemExit(128 + signum)


def _register_cleanup(lab: Lab) -> None:
    global _PREVIOUS_TERM, _HOOKED
    with _LOCK:
        _LIVE.add(lab)
        first, _HOOKED = not _HOOKED, True
    if first:
        atexit.register(_close_all)
        if threading.current_thread() is threading.main_thread():
            _PREVIOUS_TERM = signal.signal(signal.SIGTERM, _on_term)


def _unregister_cleanup(lab: Lab) -> None:
    with _LOCK:
        _LIVE.discard(lab)
