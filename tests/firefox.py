"""Headless Firefox (Debian firefox-esr) for browser tests, driven over Marionette.

Playwright's Firefox is a patched build that is not on this machine, and there is no
geckodriver for Linux on PyPI: Firefox is started here with ``--marionette`` on a free
port and driven with ``marionette_driver`` (a blocking client). ``Firefox`` is the
blocking driver; ``AsyncFirefox`` runs each call in a thread with a timeout, for async
tests. The process (and its content processes: one process group) is always killed:
on ``stop()``, on a failed start, and at interpreter exit.

``netns="NS"`` starts Firefox as ``ip netns exec NS firefox-esr …`` (root only). Its
Marionette server then listens on 127.0.0.1 inside that namespace, which this process
cannot reach; a relay thread listens on 127.0.0.1 here and opens each upstream socket
from a thread that has entered the namespace (setns(2) is per thread on Linux), so the
client talks to it as if it were local.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import queue
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

FIREFOX = os.environ.get("WITNESS_TEST_FIREFOX", "/usr/bin/firefox-esr")
FIREFOX_PRESENT = Path(FIREFOX).exists() or shutil.which(FIREFOX) is not None
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 30.0
T = TypeVar("T")

# The machine has no outside network: nothing in the background may try to reach it.
PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.search.update": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.topsites.contile.enabled": False,
    "browser.translations.enable": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "services.settings.server": "",
    "services.sync.enabled": False,
    "identity.fxaccounts.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "remote.prefs.recommended": True,
    "dom.disable_beforeunload": True,
    "intl.accept_languages": "zh-CN, zh, en",
}


def require_firefox() -> None:
    """Fail in CI, skip elsewhere (as tests/e2e/conftest.py does for Chromium)."""
    if FIREFOX_PRESENT:
        return
    message = f"Firefox not found at {FIREFOX}"
    if IN_CI:
        pytest.fail(f"{message}; scripts/ensure-test-env.sh installs firefox-esr")
    pytest.skip(f"{message}; install firefox-esr to run this test")


def media_address() -> str:
    """A non-loopback IPv4 address of this machine, for the media node's ICE candidates.

    Firefox never pairs with a 127.0.0.1 candidate: it gathers no loopback candidate
    (``media.peerconnection.ice.loopback`` has no effect in firefox-esr 153) and so forms
    no pair with the node's. Chromium has --allow-loopback-in-peer-connection; Firefox
    tests give the node this machine's own address instead. Its host addresses stay
    behind mDNS names, as for real visitors: the node learns them from Firefox's checks
    (peer-reflexive candidates)."""
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "scope", "global", "up"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    for link in json.loads(out.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and info.get("local"):
                return str(info["local"])
    message = "no non-loopback IPv4 address: Firefox cannot reach a media node on 127.0.0.1"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _marionette() -> Any:
    # mozinfo (under marionette_driver) calls distro.linux_distribution() on import,
    # which warns; the test run turns warnings into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from marionette_driver.marionette import Marionette

    return Marionette


_LIVE: set[Firefox] = set()


@atexit.register
def _kill_leftovers() -> None:
    for fx in list(_LIVE):
        fx.stop()


class _NetnsRelay:
    """127.0.0.1:port here ⇄ 127.0.0.1:target inside network namespace ``netns``."""

    def __init__(self, netns: str, target: int) -> None:
        self.target = target
        self._requests: queue.Queue[queue.Queue[socket.socket | BaseException] | None] = (
            queue.Queue()
        )
        self._entered: queue.Queue[BaseException | None] = queue.Queue()
        self._inside = threading.Thread(target=self._dialer, args=(netns,), daemon=True)
        self._inside.start()
        err = self._entered.get(timeout=10)
        if err is not None:
            raise err
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopped = False
        self._pairs: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _dialer(self, netns: str) -> None:
        # This thread moves into the namespace for good and only opens sockets there.
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the thread that started the relay
            self._entered.put(e)
            return
        self._entered.put(None)
        while (reply := self._requests.get()) is not None:
            try:
                reply.put(socket.create_connection(("127.0.0.1", self.target), timeout=2))
            except OSError as e:
                reply.put(e)

    def _dial(self) -> socket.socket:
        reply: queue.Queue[socket.socket | BaseException] = queue.Queue()
        self._requests.put(reply)
        got = reply.get(timeout=5)
        if isinstance(got, BaseException):
            raise got
        got.settimeout(None)
        return got

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = self._dial()
            except (OSError, queue.Empty):
                client.close()
                continue
            self._pairs += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=1):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            a.close()
            b.close()

    def close(self) -> None:
        self._stopped = True
        self._requests.put(None)
        self._listener.close()
        for s in self._pairs:
            with contextlib.suppress(OSError):
                s.close()


class Firefox:
    """One headless firefox-esr with a throw-away profile, driven over Marionette."""

    def __init__(
        self,
        *,
        netns: str | None = None,
        prefs: dict[str, Any] | None = None,
        size: tuple[int, int] = (1280, 860),
        log: Path | None = None,
    ) -> None:
        self.netns = netns
        self.prefs = {**PREFS, **(prefs or {})}
        self.size = size
        self.log = log
        self.profile: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.relay: _NetnsRelay | None = None
        self.client: Any = None

    # ── life cycle ───────────────────────────────────────────────────────────────────
    def start(self, timeout: float = START_TIMEOUT) -> Firefox:
        require_firefox()
        Marionette = _marionette()

        _LIVE.add(self)
        try:
            self.profile = Path(tempfile.mkdtemp(prefix="witness-firefox-"))
            port = _free_port()
            prefs = {**self.prefs, "marionette.port": port}
            (self.profile / "user.js").write_text(
                "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
            )
            cmd = [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile"]
            cmd.append(str(self.profile))
            if self.netns:
                cmd = ["ip", "netns", "exec", self.netns, *cmd]
            env = {
                **os.environ,
                "MOZ_HEADLESS": "1",
                "MOZ_HEADLESS_WIDTH": str(self.size[0]),
                "MOZ_HEADLESS_HEIGHT": str(self.size[1]),
                "MOZ_CRASHREPORTER_DISABLE": "1",
                "MOZ_DISABLE_AUTO_SAFE_MODE": "1",
                "HOME": str(self.profile),
            }
            out = open(self.log, "ab") if self.log else subprocess.DEVNULL
            try:
                self.proc = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=out, start_new_session=True
                )
            finally:
                if self.log:
                    out.close()  # type: ignore[union-attr]
            if self.netns:
                self.relay = _NetnsRelay(self.netns, port)
                port = self.relay.port
            self._wait_for_marionette(port, timeout)
            self.client = Marionette(
                host="127.0.0.1", port=port, socket_timeout=COMMAND_TIMEOUT + 30
            )
            self.client.start_session(timeout=timeout)
            self.client.timeout.script = COMMAND_TIMEOUT
            self.client.timeout.page_load = COMMAND_TIMEOUT
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_marionette(self, port: int, timeout: float) -> None:
        """Until the server greets (a relay accepts before Firefox listens)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"firefox exited early with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(16):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Marionette did not answer on port {port} within {timeout}s")

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.delete_session()
            self.client = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            # Content processes share the group; take any that outlived the parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None
        _LIVE.discard(self)

    def __enter__(self) -> Firefox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ── pages ────────────────────────────────────────────────────────────────────────
    def goto(self, url: str) -> None:
        self.client.navigate(url)
        self.js(WATCH_JS)

    def reload(self) -> None:
        self.client.refresh()
        self.js(WATCH_JS)

    @property
    def url(self) -> str:
        return str(self.client.get_url())

    def js(self, body: str, *args: Any, timeout: float = COMMAND_TIMEOUT) -> Any:
        """Run ``body`` as the body of an async function in the page (``arguments``
        holds args; ``await`` may be used) and return its result."""
        return self.client.execute_script(
            f"return (async function () {{\n{body}\n}}).apply(this, arguments);",
            script_args=list(args),
            sandbox=None,
            script_timeout=int(timeout * 1000),
        )

    def el(self, css: str) -> Any:
        _marionette()
        from marionette_driver.by import By

        return self.client.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str, timeout: float = 10.0) -> None:
        """Click like a person: waits until the element is visible and enabled."""
        self.wait(
            "const e = document.querySelector(arguments[0]);"
            "return !!e && !e.disabled && e.getClientRects().length > 0;",
            css,
            timeout=timeout,
            what=f"{css} clickable",
        )
        self.el(css).click()

    def fill(self, css: str, value: str, timeout: float = 10.0) -> None:
        """Type like a person: waits until the field is shown and enabled first (the
        investor pages show a step only once the page has asked the server where the
        applicant is, which takes longer on a loaded machine)."""
        self.wait(
            "const e = document.querySelector(arguments[0]);"
            "return !!e && !e.disabled && e.getClientRects().length > 0;",
            css,
            timeout=timeout,
            what=f"{css} fillable",
        )
        e = self.el(css)
        e.clear()
        e.send_keys(value)

    def upload(self, css: str, path: Path) -> None:
        """Choose a file in an <input type=file> (may be visually hidden)."""
        self.el(css).send_keys(str(path))

    def text(self, css: str) -> str:
        return str(self.js("return document.querySelector(arguments[0]).innerText", css))

    def visible(self, css: str) -> bool:
        return bool(
            self.js(
                "const e = document.querySelector(arguments[0]);"
                "return !!e && e.getClientRects().length > 0 && "
                "getComputedStyle(e).visibility !== 'hidden';",
                css,
            )
        )

    def wait(self, body: str, *args: Any, timeout: float = 10.0, what: str = "") -> Any:
        """Poll ``body`` (a function body) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = self.js(body, *args)
            if last:
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {what or body!r}; last {last!r}")
            time.sleep(0.1)

    def wait_visible(self, css: str, timeout: float = 10.0) -> None:
        self.wait(
            "const e = document.querySelector(arguments[0]);"
            "return !!e && e.getClientRects().length > 0;",
            css,
            timeout=timeout,
            what=f"{css} visible",
        )

    def wait_text(self, css: str, contains: str, timeout: float = 10.0) -> str:
        return str(
            self.wait(
                "const e = document.querySelector(arguments[0]);"
                "return e && e.innerText.includes(arguments[1]) ? e.innerText : null;",
                css,
                contains,
                timeout=timeout,
                what=f"{css} containing {contains!r}",
            )
        )

    def set_viewport(self, width: int, height: int) -> tuple[int, int]:
        """Size the window so the page gets ``width``×``height`` (the toolbar's height is
        added to the window's); returns what the page got (window.innerWidth/innerHeight).
        Headless firefox-esr makes no window narrower than 500 px: asked for less, the page
        gets 500."""
        inner = self.js("return [window.innerWidth, window.innerHeight, window.outerHeight]")
        chrome = int(inner[2]) - int(inner[1])
        self.client.set_window_rect(width=width, height=height + chrome)
        got = self.js("return [window.innerWidth, window.innerHeight]")
        return int(got[0]), int(got[1])

    def screenshot(self, path: Path, *, full: bool = True) -> Path:
        """The whole page (``full``) or what the window shows."""
        path.write_bytes(self.client.screenshot(format="binary", full=full))
        return path

    def problems(self) -> dict[str, list[str]]:
        """Uncaught errors and CSP violations seen since the last navigation."""
        got = self.js("return window.__watch || {errors: ['watch not installed'], csp: []}")
        return {"errors": list(got["errors"]), "csp": list(got["csp"])}

    def assert_clean(self) -> None:
        assert self.problems() == {"errors": [], "csp": []}


# Installed after each navigation: what Watch (tests/e2e/pages.py) collects in Chromium.
WATCH_JS = """
if (!window.__watch) {
  const w = window.__watch = { errors: [], csp: [] };
  window.addEventListener('error', (e) => w.errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => w.errors.push(String(e.reason)));
  document.addEventListener('securitypolicyviolation',
    (e) => w.csp.push(`${e.violatedDirective} ${e.blockedURI}`));
}
"""


class AsyncFirefox:
    """``Firefox`` for async tests: every call in a thread, bounded in time."""

    def __init__(self, fx: Firefox) -> None:
        self.fx = fx
        self._lock = asyncio.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attr = getattr(self.fx, name)
        if not callable(attr):
            return attr  # type: ignore[no-any-return]

        async def call(*args: Any, **kwargs: Any) -> Any:
            limit = float(kwargs.get("timeout", COMMAND_TIMEOUT)) + 30.0
            async with self._lock:
                return await asyncio.wait_for(asyncio.to_thread(attr, *args, **kwargs), limit)

        return call


@contextlib.contextmanager
def firefox(**kwargs: Any) -> Iterator[Firefox]:
    fx = Firefox(**kwargs)
    try:
        yield fx.start()
    finally:
        fx.stop()
