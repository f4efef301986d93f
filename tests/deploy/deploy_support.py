"""Helpers for the deployment tests: compose runs in a scratch project, nginx edges as processes."""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stack import edge
from stacks import free_port

ROOT = Path(__file__).resolve().parents[2]
BACKEND_KEY = "compose-test-backend-key"


def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not found: install Debian's docker-compose (Makefile DEBS)")
    return found


def compose_project(tmp: Path, env_lines: list[str]) -> Path:
    """A project folder that sees the repository's files, with its own .env (never the repo's)."""
    for name in ("docker-compose.yml", "gateway", "nginx", "hf-cache", "adapters"):
        (tmp / name).symlink_to(ROOT / name)
    example = (ROOT / ".env.example").read_text()
    (tmp / ".env").write_text(example + "\n" + "\n".join(env_lines) + "\n")
    return tmp


def run_compose_config(project: Path, **env: str) -> subprocess.CompletedProcess:
    # A clean environment: compose interpolates the caller's variables before .env.
    clean = {"PATH": os.environ["PATH"], "HOME": str(project), **env}
    return subprocess.run([compose_binary(), "config"], cwd=project, env=clean,
                          capture_output=True, text=True, timeout=120)


def mounts(service: dict) -> dict[str, str]:
    """target -> source, bind sources resolved (the scratch project links to the repository)."""
    found = {}
    for volume in service.get("volumes", []):
        # compose v1 prints "source:target[:mode]" strings, v2 prints mappings
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (
            volume["source"], volume["target"])
        found[target] = str(Path(source).resolve()) if source.startswith("/") else source
    return found


@dataclass
class Edge:
    """One running nginx: its ports, CA file and process."""
    https_port: int
    http_port: int
    ca: Path
    conf: Path
    proc: subprocess.Popen
    access_log: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca),
                            timeout=30, **kwargs)


def raw_get(running: Edge, path: str, headers: dict[str, str]) -> httpx.Response:
    """GET with the path sent exactly as written (httpx would normalise "//x" or "/a/../x")."""
    conn = http.client.HTTPSConnection("localhost", running.https_port, timeout=30,
                                       context=ssl.create_default_context(cafile=running.ca))
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return httpx.Response(resp.status, headers=resp.getheaders(), content=resp.read())
    finally:
        conn.close()


def start_edge(state_dir: Path, upstreams: list[str], **render_kwargs) -> Edge:
    https_port, http_port = free_port(), free_port()
    conf = edge.render(state_dir, upstreams, https_port=https_port, http_port=http_port,
                       **render_kwargs)
    with open(state_dir / "nginx.log", "ab") as log:
        proc = subprocess.Popen(edge.nginx_argv(conf), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    cert = render_kwargs.get("cert_dir") or state_dir / "certs"
    running = Edge(https_port, http_port, cert / edge.CERT_NAME, conf, proc,
                   state_dir / "logs" / "nginx-access.log")
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(state_dir / 'nginx.log').read_text()[-2000:]}")
        try:
            if httpx.get(edge.health_url(http_port), timeout=1).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("nginx did not answer within 20 s")
        time.sleep(0.05)


def stop_edge(running: Edge) -> None:
    running.proc.terminate()
    try:
        running.proc.wait(10)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait()
