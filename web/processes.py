"""``--processes N``: N server processes on one port, supervised by this one.

Each child is the same ``server.py`` command run once more, with the port bound
``SO_REUSEPORT`` so that the kernel spreads connections over them (the pages and
the Python client use the websocket transport only, so no request needs to
reach the process that served the one before). The live state is in Redis, so
any process can serve any client.

The supervisor restarts a child that dies (with a back-off, so that a child that
cannot start does not spin), stops them all on SIGTERM/SIGINT, and holds the
write end of a lifeline pipe that every child watches: when the supervisor dies,
even by SIGKILL, the kernel closes it and the children exit by themselves.
"""

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from web.settings import SECRET_FIELDS, flag_of, long_flags

log = logging.getLogger(__name__)

CHILD_ENV = "WINDOWLINK_PROCESS_INDEX"
"""Set in a child: its index; the child then serves alone (no supervisor of its own)."""
LIFELINE_ENV = "WINDOWLINK_LIFELINE_FD"
"""Set in a child: the descriptor of the lifeline pipe's read end."""
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode: each process writes its samples there and
any process's /metrics reads them all."""
DRAINING_ENV = "WINDOWLINK_START_DRAINING"
"""Set for a child (re)started while the supervisor drains: it starts draining."""
SECRET_ENV = "WINDOWLINK_CLUSTER_SECRET"  # noqa: S105 - a variable name
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
STOP_GRACE = 15.0
MAX_QUICK_FAILURES = 8
"""Deaths in a row, each soon after starting, after which the supervisor gives up."""
HEALTHY_AFTER = 30.0
"""A child that ran this long has started well: its next death restarts it quickly."""


def child_index() -> int | None:
    raw = os.environ.get(CHILD_ENV)
    return int(raw) if raw is not None else None


def watch_lifeline(on_parent_gone: Callable[[], object]) -> None:
    """In a child, inside its event loop: call ``on_parent_gone`` when the
    supervisor's end of the lifeline closes."""
    import asyncio

    raw = os.environ.get(LIFELINE_ENV)
    if raw is None:
        return
    fd = int(raw)
    loop = asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(fd)
        on_parent_gone()

    loop.add_reader(fd, gone)


def without_secrets(
    argv: Sequence[str], secret_flags: Collection[str], flags: Collection[str]
) -> tuple[list[str], list[str]]:
    """``argv`` without the ``secret_flags`` and their values, and which of them it
    had: ``--flag value``, ``--flag=value`` and the unique abbreviations argparse
    accepts (``--cluster-sec``) alike; everything after ``--`` is left as it is."""
    kept: list[str] = []
    found: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            kept += [word, *words]
            break
        name, equals, _ = word.partition("=")
        if name.startswith("--") and name not in flags:
            # argparse takes an unambiguous prefix of a long option for it.
            candidates = [flag for flag in flags if flag.startswith(name)]
            name = candidates[0] if len(candidates) == 1 else name
        if name in secret_flags:
            found.append(name)
            if not equals:
                next(words, None)
            continue
        kept.append(word)
    return kept, found


SECRET_FLAGS = frozenset(flag_of(dest) for dest in SECRET_FIELDS)


def secrets_on_command_line(argv: Sequence[str]) -> list[str]:
    """The secret flags given on this command line (where every local user reads them)."""
    return without_secrets(argv, SECRET_FLAGS, long_flags())[1]


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    started: float
    failures: int = 0


class Supervisor:
    def __init__(
        self,
        count: int,
        argv: Sequence[str],
        cluster_secret: str | None,
        address: tuple[str, int],
        data_dir: Path,
        secret_env: Mapping[str, str] | None = None,
    ) -> None:
        """``argv`` is this process's command line, run again for each child without
        its secret flags (``without_secrets``): those come in ``secret_env``
        (WINDOWLINK_* variables), so that no child's command line, which every local
        user can read, carries a secret."""
        self._count = count
        self._address = address
        self._argv = [sys.executable, *without_secrets(argv, SECRET_FLAGS, long_flags())[0]]
        self._secret_env = dict(secret_env or {})
        self._secret = cluster_secret or secrets.token_urlsafe(32)
        # In the data directory, emptied at every start: what a supervisor killed
        # with SIGKILL left there is not counted again, nor left in /tmp.
        self._metrics_dir = data_dir / "run" / "metrics"
        shutil.rmtree(self._metrics_dir, ignore_errors=True)
        self._metrics_dir.mkdir(mode=0o700, parents=True)
        self._read_end, self._write_end = os.pipe()
        os.set_inheritable(self._read_end, True)
        self._children: dict[int, _Child] = {}
        self._stopping = False
        self._draining = False

    def _env(self, index: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._secret_env)
        env[CHILD_ENV] = str(index)
        env[LIFELINE_ENV] = str(self._read_end)
        env[METRICS_DIR_ENV] = str(self._metrics_dir)
        env[SECRET_ENV] = self._secret
        env[DRAINING_ENV] = "1" if self._draining else "0"
        return env

    def _spawn(self, index: int, failures: int = 0) -> None:
        process = subprocess.Popen(  # noqa: S603 - our own command line, re-run
            self._argv, env=self._env(index), pass_fds=(self._read_end,)
        )
        self._children[index] = _Child(index, process, time.monotonic(), failures)
        log.info("server process %d started (pid %d)", index, process.pid)

    def run(self) -> int:
        stop_signals = (signal.SIGTERM, signal.SIGINT)
        drain_signals = (signal.SIGUSR1, signal.SIGUSR2)
        previous = {s: signal.getsignal(s) for s in (*stop_signals, *drain_signals)}
        for s in stop_signals:
            signal.signal(s, self._stop)
        for s in drain_signals:
            signal.signal(s, self._drain)
        try:
            # The first process migrates the database and seeds the demo; the others
            # start once it listens.
            self._spawn(0)
            if not self._wait_listening(self._children[0]):
                return 1
            for index in range(1, self._count):
                self._spawn(index)
            return self._supervise()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._stop_children()
            os.close(self._write_end)
            os.close(self._read_end)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _wait_listening(self, child: _Child, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping:
            if child.process.poll() is not None:
                log.error("server process 0 exited (%s) while starting", child.process.returncode)
                return False
            with contextlib.suppress(OSError), socket.create_connection(self._address, 1):
                return True
            time.sleep(0.2)
        return False

    def _drain(self, signum: int, _frame: object) -> None:
        """SIGUSR1 (drain) or SIGUSR2 (take calls again): told to every child, and
        remembered for a child restarted meanwhile."""
        self._draining = signum == signal.SIGUSR1
        for child in list(self._children.values()):
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signum)

    def _stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _supervise(self) -> int:
        pending: dict[int, tuple[float, int]] = {}
        """Children to start again: index -> (monotonic time, failures so far)."""
        while not self._stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for index, child in list(self._children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self._children[index]
                failures = 0 if now - child.started > HEALTHY_AFTER else child.failures + 1
                if failures > MAX_QUICK_FAILURES:
                    log.error("server process %d keeps failing (exit %s); stopping", index, code)
                    return 1
                delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
                log.error(
                    "server process %d exited (%s); starting it again in %.1f s", index, code, delay
                )
                pending[index] = (now + delay, failures)
            for index, (due, failures) in list(pending.items()):
                if now >= due:
                    del pending[index]
                    self._spawn(index, failures)
        return 0

    def _stop_children(self) -> None:
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in self._children.values():
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)
        self._children.clear()
