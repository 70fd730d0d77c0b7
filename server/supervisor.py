"""One media worker process per core behind one public port (``server.workers``).

``serve`` with more than one worker runs this supervisor: it starts each worker as
``python -m server … serve --worker-index i`` (same config, same environment), forwards
SIGTERM/SIGINT to them and waits for a clean stop, and restarts a worker that exits
unexpectedly, with a back-off so a crash loop cannot spin.

Each worker is a whole node of the cluster (its own runtime, dispatcher and media),
registered in the node registry as ``<node_id or hostname>-w<i>``: the same id after a
restart, so the new process recovers its predecessor's open recordings at once. All
workers listen on ``server.host:server.port`` with SO_REUSEPORT, so the kernel spreads
connections over them, and advertise the same public URL; worker i also listens on
``127.0.0.1:<worker_port_base + i>``, where its siblings relay the session sockets of its
sessions (server/web/ws_proxy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from server.config import Config

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Sockets are closed on shutdown (clients reconnect); don't wait a minute for stragglers.
SHUTDOWN_TIMEOUT_SECONDS = 10.0
# A worker gets this long to stop after SIGTERM before it is killed: its own shutdown
# timeout plus closing the recordings of its sessions.
STOP_TIMEOUT_SECONDS = 30.0
PARENT_CHECK_SECONDS = 1.0
# glibc gives each thread that allocates (aiortc's encoder executors, decoder threads) an
# arena of its own, which fragments and holds memory; two arenas took a worker's resident
# memory ~75 MB lower in a 10-minute soak at no CPU cost (docs/benchmarks.md). What the
# operator set wins.
WORKER_ENV_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off for restarting a worker: the first restart comes quickly (its sessions'
    recordings wait for it), each further failure in a row doubles the wait up to
    ``max_delay``, and a worker that stayed up ``stable_seconds`` starts over."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    stable_seconds: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before restarting after ``failures`` (>= 1) failures in a row."""
        return min(self.first_delay * 2.0 ** max(failures - 1, 0), self.max_delay)

    def failures_after(self, failures: int, ran_seconds: float) -> int:
        """The count of failures in a row once a worker that ran this long has exited."""
        return 1 if ran_seconds >= self.stable_seconds else failures + 1


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def check_ports_free(cfg: Config) -> None:
    """Fail at start (naming the address) if the public port or a worker's loopback port
    is taken. Bound without SO_REUSEPORT on purpose: the workers' own sockets share the
    port, so a stale server left listening there would otherwise share it silently."""
    wanted = [(cfg.server.host, cfg.server.port)]
    wanted += [(LOOPBACK, cfg.worker_port(i)) for i in range(cfg.worker_count)]
    for host, port in wanted:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _name, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    message = f"cannot listen on {host}:{port}: {exc.strerror}"
                    raise OSError(exc.errno, message) from None
                probe.listen(1)


class Supervisor:
    """Keeps one process running per command until told to stop."""

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        *,
        policy: RestartPolicy | None = None,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.commands = [list(c) for c in commands]
        self.policy = policy or RestartPolicy()
        self.stop_timeout = stop_timeout
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """SIGTERM every worker; ``run`` returns once they are gone."""
        if self._stopping.is_set():
            return
        log.info("stopping workers")
        self._stopping.set()
        for proc in self.procs.values():
            _terminate(proc)

    async def run(self, *, handle_signals: bool = True) -> int:
        """0 after a clean stop; 1 if a worker had to be killed. With ``handle_signals``
        SIGTERM and SIGINT call ``stop``."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        keepers = [asyncio.create_task(self._keep(i)) for i in range(len(self.commands))]
        try:
            await self._stopping.wait()
            _, late = await asyncio.wait(keepers, timeout=self.stop_timeout)
            forced = 0
            for index, proc in self.procs.items():
                if proc.returncode is None:
                    log.error("worker %d did not stop in time; killing it", index)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    forced += 1
            await asyncio.gather(*late, return_exceptions=True)
            return 1 if forced else 0
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep(self, index: int) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.commands[index], env={**WORKER_ENV_DEFAULTS, **os.environ}
                )
            except OSError as exc:
                log.error("worker %d could not be started: %s", index, exc)
                code: int | None = None
            else:
                self.procs[index] = proc
                if self._stopping.is_set():
                    _terminate(proc)  # stop() ran while it was being started
                log.info("worker %d started (pid %d)", index, proc.pid)
                code = await proc.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            failures = self.policy.failures_after(failures, ran)
            delay = self.policy.delay(failures)
            log.error(
                "worker %d stopped unexpectedly (%s) after %.1f s; restarting in %.1f s",
                index,
                "not started" if code is None else describe_exit(code),
                ran,
                delay,
                extra={"worker": index, "failures_in_a_row": failures},
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if not self._stopping.is_set():
                self.restarts += 1


def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)


def supervise(commands: Sequence[Sequence[str]]) -> int:
    return asyncio.run(Supervisor(commands).run())


# -- inside a worker ------------------------------------------------------------------------
def new_event_loop(cfg: Config) -> asyncio.AbstractEventLoop:
    """The event loop a serving process runs on (server.event_loop)."""
    if cfg.server.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_worker(app: web.Application, cfg: Config, ssl_context: ssl.SSLContext | None) -> int:
    """Serve ``app`` as worker ``cfg.worker`` until SIGTERM/SIGINT or the supervisor dies."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(cfg)) as runner:
        runner.run(_serve_worker(app, cfg, ssl_context))
    return 0


async def _serve_worker(
    app: web.Application, cfg: Config, ssl_context: ssl.SSLContext | None
) -> None:
    port = cfg.internal_port
    if port is None:
        raise ValueError("run_worker needs a worker's config (Config.as_worker)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    watch = asyncio.create_task(_stop_when_orphaned(os.getppid(), stop))
    try:
        public = web.TCPSite(
            runner, cfg.server.host, cfg.server.port, ssl_context=ssl_context, reuse_port=True
        )
        await public.start()
        # Plain HTTP on loopback only: reached by the sibling workers, never by browsers.
        await web.TCPSite(runner, LOOPBACK, port).start()
        await stop.wait()
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await runner.cleanup()


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    # A supervisor killed outright cannot forward a signal; a worker outliving it would
    # keep the port and be restarted by nobody.
    while True:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            break
    log.warning("supervisor %d is gone; stopping", parent)
    stop.set()
