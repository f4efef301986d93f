"""Test stacks: backends (simulators or real vLLM) plus a real gunicorn gateway on free ports."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
from pathlib import Path

import httpx

from stack.processes import (Proc, StackConfig, start_backends, start_batch_gateway,
                             start_batch_runner, start_gateway, start_redis, stop, wait_healthy)
from stack.topology import DEFAULT_BACKEND_PORTS, backend_specs

E2E_ROUTING = Path(__file__).resolve().parent / "e2e" / "routing.yaml"


# Below Linux's ephemeral range (32768-60999): a port picked there could be taken by some
# outgoing connection's local end before the process meant to listen on it has started.
LISTEN_PORTS = range(20000, 32700)
# Loose limits, so a test of one limit sets only that one (TestStack.open_org).
OPEN_LIMITS = {"rps": 10_000, "burst": 10_000, "rpm_limit": 1_000_000, "tpm_limit": 10**9,
               "max_concurrent": 10_000, "daily_token_limit": 10**11,
               "daily_request_limit": 10**9, "monthly_token_limit": 10**11,
               "max_output_tokens": 64}


def kill_group(proc: Proc) -> None:
    try:
        os.killpg(proc.popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.popen.wait()


def free_port() -> int:
    """A port nothing listens on now, outside the range outgoing connections draw from."""
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class TestStack:
    """One topology; `start_backends` returns at once so slow engines can boot in the background."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, kind: str, state_dir: Path, *, workers: int = 2, replicas: int = 1,
                 routing: Path = E2E_ROUTING, sim_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, runners: int = 0,
                 batch_gateway: bool = True) -> None:
        self.kind = kind
        self.runner_count = runners  # batch runners, started with the gateway
        self.backend_key = secrets.token_urlsafe(24)
        self.admin_token = secrets.token_urlsafe(24)
        ports = {name: free_port() for name in DEFAULT_BACKEND_PORTS}
        self.specs = backend_specs(routing, ports)
        self.cfg = StackConfig(state_dir=state_dir, backends=kind, gateway_port=free_port(),
                               sim_args=sim_args, redis_port=free_port(),
                               env={"BACKEND_API_KEY": self.backend_key,
                                    "ADMIN_TOKEN": self.admin_token,
                                    "BATCH_RUNNER_TOKEN": secrets.token_urlsafe(24),
                                    # generous: the test machine is busy booting vLLM meanwhile
                                    "REDIS_TIMEOUT_SECS": "2",
                                    "ROUTING_FILE": str(routing),
                                    "GATEWAY_WORKERS": str(workers),
                                    "GATEWAY_REPLICAS": str(replicas),
                                    "HEALTH_CHECK_INTERVAL_SECS": "1",
                                    **(env or {})})
        self.backends: list[Proc] = []
        self.redis: Proc | None = None
        self.gateway: Proc | None = None
        self.replicas: list[Proc] = []  # gateway instances beyond the first, sharing Redis
        self.runners: list[Proc] = []
        self.replica_ports = [free_port() for _ in range(replicas - 1)]
        # With runners: the gateway instance they send their lines to, as in compose (or,
        # batch_gateway=False, the first instance, which serves realtime requests too).
        self.batch_gateway: Proc | None = None
        self.own_batch_gateway = batch_gateway
        self.batch_gateway_port = free_port() if batch_gateway else self.cfg.gateway_port
        self._api_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.gateway_port}"

    def backend_url(self, name: str) -> str:
        return next(s.url for s in self.specs if s.name == name)

    @property
    def logs(self) -> Path:
        return self.cfg.state_dir / "logs"

    def start_backends(self) -> None:
        self.backends = start_backends(self.specs, self.cfg)

    def wait_backends(self, timeout: float) -> None:
        wait_healthy(self.backends, timeout, self.logs)

    @property
    def redis_url(self) -> str:
        return self.cfg.redis_url

    def start_gateway(self) -> None:
        if self.redis is None and self.cfg.external_redis_url is None:
            self.redis = start_redis(self.cfg)
            wait_healthy([self.redis], 30, self.logs)
        self.gateway = start_gateway(self.specs, self.cfg)
        self.replicas = [start_gateway(self.specs, self.cfg, port=port, name=f"gateway{i + 2}")
                         for i, port in enumerate(self.replica_ports)]
        if self.runner_count and self.own_batch_gateway:
            self.batch_gateway = start_batch_gateway(self.specs, self.cfg, self.batch_gateway_port)
        wait_healthy(self.gateways, 60, self.logs)
        if not self.runners:
            for _ in range(self.runner_count):
                self.start_runner()

    @property
    def gateways(self) -> list[Proc]:
        """Every gateway instance running: the first, the replicas, the batch instance."""
        return [p for p in (self.gateway, *self.replicas, self.batch_gateway) if p]

    def start_runner(self) -> Proc:
        """One more batch runner (its log is batch-runner<N>.log); the batch gateway instance
        first, if this stack started without runners."""
        if self.own_batch_gateway and self.batch_gateway is None:
            self.batch_gateway = start_batch_gateway(self.specs, self.cfg, self.batch_gateway_port)
            wait_healthy([self.batch_gateway], 60, self.logs)
        runner = start_batch_runner(self.specs, self.cfg, self.batch_gateway_port,
                                    name=f"batch-runner{len(self.runners) + 1}")
        self.runners.append(runner)
        return runner

    @property
    def base_urls(self) -> list[str]:
        return [self.base_url] + [f"http://127.0.0.1:{p}" for p in self.replica_ports]

    def restart_gateway(self) -> None:
        stop([p.popen.pid for p in self.gateways], grace=10)
        self.gateway = self.batch_gateway = None
        self.start_gateway()

    def kill_gateway(self) -> None:
        """SIGKILL every gateway instance's process group (master and workers): a crash."""
        for proc in self.gateways:
            kill_group(proc)
        self.gateway = self.batch_gateway = None

    def kill_runners(self) -> None:
        """SIGKILL every batch runner, mid-line: they are forgotten (start_runner starts anew)."""
        for proc in self.runners:
            kill_group(proc)
        self.runners = []

    def restart_redis(self, *, kill: bool = False) -> None:
        """Stop redis-server (SIGTERM, or SIGKILL: a crash) and start it on the same data."""
        if kill:
            self.redis.popen.kill()
            self.redis.popen.wait()
        else:
            stop([self.redis.popen.pid], grace=10)
        self.redis = start_redis(self.cfg)
        wait_healthy([self.redis], 30, self.logs)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def create_org(self, name: str | None = None, **fields) -> dict:
        """A new organisation through the admin API: {"org", "api_key", "key"}."""
        with self.admin() as client:
            resp = client.post("/admin/orgs", json={"name": name or f"org-{secrets.token_hex(4)}", **fields})
            resp.raise_for_status()
            return resp.json()

    def open_org(self, **limits) -> dict:
        """An organisation with OPEN_LIMITS, but for `limits`."""
        return self.create_org(**{**OPEN_LIMITS, **limits})

    def chat_faults(self, **faults) -> None:
        """Reset both chat simulators' faults, then set `faults` on both."""
        for name in ("chat0", "chat1"):
            httpx.post(self.backend_url(name) + "/sim/faults",
                       json={"reset": True, **faults}).raise_for_status()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def api_key(self) -> str:
        """One organisation's key with every inference scope, made on first use."""
        if self._api_key is None:
            self._api_key = self.create_org()["api_key"]
        return self._api_key

    def start(self, timeout: float = 60) -> "TestStack":
        try:
            self.start_backends()
            self.wait_backends(timeout)
            self.start_gateway()
        except BaseException:
            self.stop()  # leave no orphan processes behind a failed start
            raise
        return self

    def stop(self) -> None:
        # The gateway and runners first, while Redis and the backends still answer their
        # last calls; then the rest. A gateway worker drains for as long as a client keeps
        # an idle keep-alive connection open (worker.DrainingServer), and test clients often
        # do: at the end of a test nothing is left to drain, so 3 s is enough.
        front = self.runners + self.gateways
        stop([p.popen.pid for p in front], grace=3)
        stop([p.popen.pid for p in self.backends + [p for p in (self.redis,) if p]], grace=10)
