"""Starting, watching and stopping the local stack's processes (backends, then the gateway)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .topology import BackendSpec, gateway_env

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    health_url: str  # http://... answered with 200, redis://host:port answered with PONG, or
                     # "" (healthy while it runs: the batch runner serves nothing)


@dataclass
class StackConfig:
    state_dir: Path                       # logs and the pid file live here
    backends: str = "sim"                 # sim | vllm-cpu
    gateway_port: int = 8000
    env: dict[str, str] = field(default_factory=dict)  # settings for every process
    sim_args: tuple[str, ...] = ()        # extra simulator flags (latency model, faults)
    redis_port: int = 6390                # not 6379: a Redis the user already runs is never touched
    # Another Redis than the stack's own redis-server (tests: a Sentinel group's URL).
    external_redis_url: str | None = None

    @property
    def redis_url(self) -> str:
        return self.external_redis_url or f"redis://127.0.0.1:{self.redis_port}/0"
    models_dir: Path = ROOT / ".stack" / "models"  # tiny vLLM models, built once and reused


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name}.log", "ab")
    # A session of its own, so stopping the stack also stops the server's child processes.
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)


def backend_argv(spec: BackendSpec, cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    api_key = cfg.env.get("BACKEND_API_KEY") or None
    from . import vllm_cpu
    if cfg.backends == "vllm-cpu":
        # The tiny adapters built for the tiny chat model stand in for the declared ones.
        loras = [a.lora_module(str(vllm_cpu.lora_dir(cfg.models_dir, a.served_name)))
                 for a in spec.adapters]
        argv, env = vllm_cpu.server_command(spec.kind, spec.port, list(spec.served_names),
                                            cfg.models_dir, api_key, loras)
        return argv + spec.scheduling_flags, env
    # Chat simulators call tools as the real chat servers are started to (vllm_cpu.KIND_FLAGS),
    # and serve the pool's LoRA adapters with the same flags (they load no weights).
    tools = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"] if spec.kind == "chat" else []
    loras = vllm_cpu.lora_flags([a.lora_module() for a in spec.adapters])
    argv = [sys.executable, "-m", "vllm_sim", "--host", "127.0.0.1", "--port", str(spec.port),
            "--kind", spec.kind, "--served-model-name", *spec.served_names, *tools, *loras,
            *spec.scheduling_flags, *cfg.sim_args]
    if api_key:
        argv.append(f"--api-key={api_key}")  # "=": a key may start with "-"
    return argv, {}


def start_backends(specs: list[BackendSpec], cfg: StackConfig) -> list[Proc]:
    if cfg.backends == "vllm-cpu":
        from . import vllm_cpu
        vllm_cpu.ensure_models(cfg.models_dir)
        vllm_cpu.ensure_adapters(cfg.models_dir, [a.served_name for s in specs for a in s.adapters])
    procs = []
    for spec in specs:
        argv, extra_env = backend_argv(spec, cfg)
        env = {**os.environ, **cfg.env, **extra_env}
        procs.append(Proc(spec.name, _spawn(spec.name, argv, env, cfg.state_dir / "logs"),
                          spec.url + "/health"))
    return procs


def start_redis(cfg: StackConfig) -> Proc:
    """A private redis-server with append-only persistence, as the compose file runs it."""
    data = cfg.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(cfg.redis_port), "--bind", "127.0.0.1",
            "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--protected-mode", "yes"]
    return Proc("redis", _spawn("redis", argv, dict(os.environ), cfg.state_dir / "logs"),
                f"redis://127.0.0.1:{cfg.redis_port}")


def start_gateway(specs: list[BackendSpec], cfg: StackConfig, *, port: int | None = None,
                  name: str = "gateway", settings: dict[str, str] | None = None) -> Proc:
    """One gateway instance (gunicorn and its workers); replicas differ only in port and name,
    the batch instance in its `settings` too."""
    port = port or cfg.gateway_port
    env = {**os.environ, **cfg.env, **(settings or {}), **gateway_env(specs),
           "GATEWAY_HOST": "127.0.0.1",
           "GATEWAY_PORT": str(port), "REDIS_URL": cfg.redis_url,
           # Files API contents: one directory for every instance, as compose's volume.
           "DATA_DIR": cfg.env.get("DATA_DIR") or str(cfg.state_dir / "data")}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    argv = [gunicorn, "-c", str(ROOT / "gateway" / "gunicorn.conf.py"), "llmgw.app:create_app()"]
    return Proc(name, _spawn(name, argv, env, cfg.state_dir / "logs"),
                f"http://127.0.0.1:{port}/healthz")


# The gateway instance batch runners send their lines to, apart from the ones serving realtime
# users, as in compose: a batch line never shares a worker's event loop with a realtime
# request. One worker is plenty for MAX_CONCURRENT_BATCH lines.
BATCH_GATEWAY_SETTINGS = {"GATEWAY_WORKERS": "1", "GATEWAY_REPLICAS": "1"}


def start_batch_gateway(specs: list[BackendSpec], cfg: StackConfig, port: int,
                        name: str = "gateway-batch") -> Proc:
    return start_gateway(specs, cfg, port=port, name=name, settings=BATCH_GATEWAY_SETTINGS)


def start_batch_runner(specs: list[BackendSpec], cfg: StackConfig, gateway_port: int,
                       name: str = "batch-runner") -> Proc:
    """A batch runner, sending its lines to one gateway instance, with the gateways' settings
    (the routing table too: it checks each line's model)."""
    env = {**os.environ, **cfg.env, **gateway_env(specs), "REDIS_URL": cfg.redis_url,
           "DATA_DIR": cfg.env.get("DATA_DIR") or str(cfg.state_dir / "data"),
           "BATCH_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}"}
    argv = [sys.executable, "-m", "llmgw.batches.main"]
    return Proc(name, _spawn(name, argv, env, cfg.state_dir / "logs"), "")


def start_edge(cfg: StackConfig, gateway_ports: list[int], *, https_port: int,
               http_port: int) -> Proc:
    """nginx with TLS in front of the gateway instances, from the same template as compose."""
    from . import edge
    conf = edge.render(cfg.state_dir, [f"127.0.0.1:{p}" for p in gateway_ports],
                       https_port=https_port, http_port=http_port, settings=cfg.env)
    checked = edge.check_config(conf)
    if checked.returncode:
        raise RuntimeError(f"nginx -t failed: {checked.stderr.strip()}")
    return Proc("nginx", _spawn("nginx", edge.nginx_argv(conf), dict(os.environ),
                                cfg.state_dir / "logs"), edge.health_url(http_port))


def _answers(url: str) -> bool:
    if not url:
        return True
    if url.startswith("redis://"):
        return _redis_pong(url)
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _redis_pong(url: str) -> bool:
    host, port = url.removeprefix("redis://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_healthy(procs: list[Proc], timeout: float, log_dir: Path) -> None:
    """Block until every process answers its health check; fail fast if one exits."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while pending:
        for proc in list(pending):
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; "
                                   f"see {log_dir / (proc.name + '.log')}")
            if _answers(proc.health_url):
                pending.remove(proc)
        if pending and time.monotonic() > deadline:
            names = ", ".join(p.name for p in pending)
            raise TimeoutError(f"not healthy after {timeout:.0f} s: {names} (logs in {log_dir})")
        if pending:
            time.sleep(0.2)


def stop(pids: list[int], grace: float = 15.0) -> None:
    """SIGTERM each process group, then SIGKILL whatever is still there after the grace time."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reap it if it is our child, so it does not linger as a zombie
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def write_pids(state_dir: Path, procs: list[Proc]) -> None:
    (state_dir / "pids.json").write_text(json.dumps({p.name: p.popen.pid for p in procs}))


def read_pids(state_dir: Path) -> dict[str, int]:
    path = state_dir / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}
