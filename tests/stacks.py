"""Test stacks: backends (simulators or real vLLM) plus a real gunicorn gateway on free ports."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from stack.processes import (Proc, StackConfig, start_backends, start_gateway, stop,
                             wait_healthy)
from stack.topology import DEFAULT_BACKEND_PORTS, backend_specs

E2E_ROUTING = Path(__file__).resolve().parent / "e2e" / "routing.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestStack:
    """One topology; `start_backends` returns at once so slow engines can boot in the background."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, kind: str, state_dir: Path, *, workers: int = 2,
                 routing: Path = E2E_ROUTING, sim_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.backend_key = secrets.token_urlsafe(24)
        ports = {name: free_port() for name in DEFAULT_BACKEND_PORTS}
        self.specs = backend_specs(routing, ports)
        self.cfg = StackConfig(state_dir=state_dir, backends=kind, gateway_port=free_port(),
                               sim_args=sim_args,
                               env={"BACKEND_API_KEY": self.backend_key,
                                    "ROUTING_FILE": str(routing),
                                    "GATEWAY_WORKERS": str(workers),
                                    "HEALTH_CHECK_INTERVAL_SECS": "1",
                                    **(env or {})})
        self.backends: list[Proc] = []
        self.gateway: Proc | None = None

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

    def start_gateway(self) -> None:
        self.gateway = start_gateway(self.specs, self.cfg)
        wait_healthy([self.gateway], 60, self.logs)

    def start(self, timeout: float = 60) -> "TestStack":
        self.start_backends()
        self.wait_backends(timeout)
        self.start_gateway()
        return self

    def stop(self) -> None:
        procs = self.backends + ([self.gateway] if self.gateway else [])
        stop([p.popen.pid for p in procs], grace=10)
