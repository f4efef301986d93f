"""Runs a few processes as one service: starts them in order, restarts the ones that may die
(with a growing pause, and the reason logged), and stops them in reverse order.

A child whose `backoff` is None is essential: when it ends on its own, everything stops and
the supervisor exits 1 (the container's restart policy takes over). SIGTERM or SIGINT stops
every child in reverse start order, each given its `stop_secs` before SIGKILL, and exits 0.

Each child runs in a session (process group) of its own: stopping it reaches the processes it
started too (vLLM's engine core, gunicorn's workers), and a child that died leaves none behind
(a lingering engine process would hold the GPU's memory from the restarted one).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("llmgw.single_host")

POLL_SECS = 0.1  # how often children are checked: a crash is noticed within this


class Backoff:
    """The pause before a restart: `low` after a run of at least `stable` seconds, else twice
    the previous pause, at most `high`."""

    def __init__(self, low: float, high: float, stable: float) -> None:
        self.low, self.high, self.stable = low, high, stable
        self._next = low

    def pause(self, ran_secs: float) -> float:
        if ran_secs >= self.stable:
            self._next = self.low
        pause, self._next = self._next, min(self._next * 2, self.high)
        return pause


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    stop_secs: float                           # SIGTERM, then this long, then SIGKILL
    backoff: Backoff | None = None             # None: essential, its end stops everything
    ready: Callable[[], bool] | None = None    # the next child starts once this is true
    ready_secs: float = 30.0


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the supervisor dies, even by SIGKILL,
    so no child outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.popen: subprocess.Popen | None = None
        self.started = 0.0
        self.restart_at: float | None = None  # set while it waits for its restart
        self.restarts = 0

    def start(self) -> None:
        self.popen = subprocess.Popen(self.spec.argv, env=self.spec.env, stdin=subprocess.DEVNULL,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        self.restart_at = None
        logger.info("%s started (pid %d): %s", self.spec.name, self.popen.pid,
                    " ".join(self.spec.argv))

    def exit_code(self) -> int | None:
        """None while it runs (or waits for its restart)."""
        if self.popen is None or self.restart_at is not None:
            return None
        return self.popen.poll()

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None:
            try:
                os.killpg(self.popen.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone already

    def stop(self) -> None:
        """SIGTERM to its group, SIGKILL after stop_secs; then nothing of it is left."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            logger.info("stopping %s (up to %.0f s)", self.spec.name, self.spec.stop_secs)
            self.kill_group(signal.SIGTERM)
            try:
                self.popen.wait(self.spec.stop_secs)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s: killed", self.spec.name,
                               self.spec.stop_secs)
        self.kill_group()  # the leader, if still there, and any process it left in its group
        self.popen.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, specs: list[ChildSpec], *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.children = [Child(spec) for spec in specs]
        self._clock, self._sleep = clock, sleep
        self._signal: int | None = None

    def _on_signal(self, signum: int, _frame) -> None:
        self.request_stop(signum)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop everything soon (from a signal handler, or a test): run() returns 0."""
        if self._signal is None:
            logger.info("%s received: stopping %s", signal.Signals(signum).name,
                        ", then ".join(c.spec.name for c in reversed(self.children)))
        self._signal = signum

    def run(self) -> int:
        """Start, watch until a signal or an essential child's end, stop; the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = self._start_all()
            if code is None:
                code = self._watch()
        finally:
            for child in reversed(self.children):
                child.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("stopped (exit code %d)", code)
        return code

    def _start_all(self) -> int | None:
        """None once every child runs (and the ready ones answer); else the exit code."""
        for child in self.children:
            if self._signal is not None:
                return 0
            try:
                child.start()
            except OSError as exc:
                logger.error("%s cannot start: %s", child.spec.name, exc)
                return 1
            if child.spec.ready is not None and not self._wait_ready(child):
                return 0 if self._signal is not None else 1
        return None

    def _wait_ready(self, child: Child) -> bool:
        deadline = self._clock() + child.spec.ready_secs
        while not child.spec.ready():
            code = child.popen.poll()
            if code is not None:
                logger.error("%s %s while starting", child.spec.name, describe_exit(code))
                return False
            if self._signal is not None:
                return False
            if self._clock() > deadline:
                logger.error("%s not ready after %.0f s", child.spec.name, child.spec.ready_secs)
                return False
            self._sleep(POLL_SECS)
        return True

    def _watch(self) -> int:
        while self._signal is None:
            for child in self.children:
                if not self._keep(child):
                    return 1
            self._sleep(POLL_SECS)
        return 0

    def _keep(self, child: Child) -> bool:
        """Restart `child` if it died and its pause is over; False if it was essential."""
        now = self._clock()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                try:
                    child.start()
                except OSError as exc:  # e.g. its binary went missing: try again later
                    logger.error("%s cannot start: %s", child.spec.name, exc)
                    child.started = now
                    self._schedule(child, now, ran=0.0)
            return True
        code = child.exit_code()
        if code is None:
            return True
        ran = now - child.started
        logger.error("%s %s after %.1f s", child.spec.name, describe_exit(code), ran)
        child.kill_group()  # whatever it started dies with it
        if child.spec.backoff is None:
            logger.error("%s is essential: stopping everything", child.spec.name)
            return False
        self._schedule(child, now, ran)
        return True

    def _schedule(self, child: Child, now: float, ran: float) -> None:
        pause = child.spec.backoff.pause(ran)
        child.restart_at = now + pause
        logger.warning("restarting %s in %.1f s (restart %d)", child.spec.name, pause,
                       child.restarts + 1)
