"""The processes of a single host, in start order: Redis (unless external), the backend, the
gateway. They stop in the reverse order: the gateway drains first while the backend still
answers its last streams, then the backend, then Redis."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..settings import Settings
from .config import SingleHostConfig
from .supervisor import Backoff, ChildSpec

# The gateway's credentials stay out of the backend's environment.
GATEWAY_SECRETS = ("ADMIN_TOKEN", "BATCH_RUNNER_TOKEN", "BACKEND_API_KEY")
REDIS_STOP_SECS = 10.0
# Above the gateway's own drain (GRACEFUL_TIMEOUT_SECS): gunicorn ends its workers itself.
GATEWAY_STOP_MARGIN_SECS = 10.0


def redis_answers(port: int) -> bool:
    """Whether a Redis on loopback `port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_child(config: SingleHostConfig, env: dict[str, str]) -> ChildSpec:
    """redis-server on loopback with append-only persistence under DATA_DIR/redis, as the
    compose file runs it: counters and keys survive a container restart with the volume."""
    folder = config.data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(config.redis_port), "--bind", "127.0.0.1",
            "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--protected-mode", "yes"]
    return ChildSpec("redis", argv, env, REDIS_STOP_SECS,
                     backoff=Backoff(config.backend_restart_min_secs,
                                     config.backend_restart_max_secs, config.backend_stable_secs),
                     ready=lambda: redis_answers(config.redis_port))


def backend_child(config: SingleHostConfig, env: dict[str, str]) -> ChildSpec:
    """vLLM (or BACKEND_COMMAND), told its API key through VLLM_API_KEY, which vLLM and the
    simulator both read; not waited for: the gateway answers 503 while the model loads."""
    backend_env = {k: v for k, v in env.items() if k.upper() not in GATEWAY_SECRETS}
    backend_env["VLLM_API_KEY"] = config.backend_api_key
    return ChildSpec("backend", config.backend_argv(), backend_env, config.backend_stop_secs,
                     backoff=Backoff(config.backend_restart_min_secs,
                                     config.backend_restart_max_secs, config.backend_stable_secs))


def gateway_child(config: SingleHostConfig, settings: Settings, env: dict[str, str]) -> ChildSpec:
    """gunicorn with the gateway's workers, as the gateway image runs it. Essential: if it
    ends, the container stops (and its restart policy decides)."""
    argv = [sys.executable, "-m", "gunicorn", "-c", str(config.gunicorn_conf)]
    if Path("/dev/shm").is_dir():
        # Heartbeat files in memory: a slow overlay filesystem can stall workers.
        argv += ["--worker-tmp-dir", "/dev/shm"]
    argv += ["--no-control-socket", "llmgw.app:create_app()"]
    return ChildSpec("gateway", argv, env,
                     settings.graceful_timeout_secs + GATEWAY_STOP_MARGIN_SECS)


def gateway_env(config: SingleHostConfig, routing_file: Path) -> dict[str, str]:
    """What the gateway is told on top of the environment: the routing table, Redis, the
    backend's key, and that it is the only instance."""
    return {"ROUTING_FILE": str(routing_file), "REDIS_URL": config.gateway_redis_url,
            "BACKEND_API_KEY": config.backend_api_key, "DATA_DIR": str(config.data_dir),
            "GATEWAY_REPLICAS": "1"}


def children(config: SingleHostConfig, settings: Settings, env: dict[str, str]) -> list[ChildSpec]:
    specs = [redis_child(config, env)] if config.internal_redis else []
    return specs + [backend_child(config, env), gateway_child(config, settings, env)]
