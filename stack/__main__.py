"""`python -m stack up|down|demo|status`: the local stack the Makefile's targets run."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from . import dotenv
from .processes import (ROOT, StackConfig, read_pids, start_backends, start_batch_gateway,
                        start_batch_runner,
                        start_edge, start_gateway, start_redis, stop, wait_healthy, write_pids)
from .topology import DEFAULT_BACKEND_PORTS, backend_specs

# Overridable so a test can run a second stack beside a developer's running demo.
STATE_DIR = Path(os.environ.get("STACK_STATE_DIR") or ROOT / ".stack")
# Real vLLM on 2 CPU cores needs minutes to start five servers; simulators need a second.
START_TIMEOUT = {"sim": 60.0, "vllm-cpu": 900.0}


def _config(env: dict[str, str]) -> StackConfig:
    backends = env.get("STACK_BACKENDS", "sim")
    if backends not in START_TIMEOUT:
        raise SystemExit(f"STACK_BACKENDS must be 'sim' or 'vllm-cpu', not {backends!r}")
    sim_args = tuple(shlex.split(env.get("STACK_SIM_ARGS", "--ttft-ms 50 --itl-ms 20")))
    return StackConfig(state_dir=STATE_DIR, backends=backends,
                       gateway_port=int(env.get("GATEWAY_PORT", "8000")), env=env,
                       sim_args=sim_args, redis_port=int(env.get("STACK_REDIS_PORT", "6390")))


def _ports(env: dict[str, str]) -> dict[str, int]:
    """The fixed local ports, or the same layout shifted to STACK_PORT_BASE (chat0 = base + 1)."""
    if not env.get("STACK_PORT_BASE"):
        return DEFAULT_BACKEND_PORTS
    shift = int(env["STACK_PORT_BASE"]) - 8100
    return {name: port + shift for name, port in DEFAULT_BACKEND_PORTS.items()}


def _gateway_ports(cfg: StackConfig) -> list[int]:
    """GATEWAY_REPLICAS instances: the first on GATEWAY_PORT, the others just above it."""
    replicas = int(cfg.env.get("GATEWAY_REPLICAS") or 1)
    return [cfg.gateway_port + i for i in range(replicas)]


def _batch_gateway_port(cfg: StackConfig) -> int:
    """The batch runner's gateway instance: just above the realtime ones."""
    return cfg.gateway_port + len(_gateway_ports(cfg))


def _https_port(env: dict[str, str]) -> int:
    return int(env.get("STACK_HTTPS_PORT") or 8443)


def _http_port(env: dict[str, str]) -> int:
    return int(env.get("STACK_HTTP_PORT") or 8080)


def up() -> StackConfig:
    if read_pids(STATE_DIR):
        down()
    env = dotenv.load(ROOT)
    cfg = _config(env)
    routing = Path(env.get("ROUTING_FILE") or ROOT / "gateway" / "routing.yaml")
    specs = backend_specs(routing, _ports(env))
    started = time.monotonic()
    procs = [start_redis(cfg), *start_backends(specs, cfg)]
    write_pids(STATE_DIR, procs)
    try:
        wait_healthy(procs, START_TIMEOUT[cfg.backends], STATE_DIR / "logs")
        ports = _gateway_ports(cfg)
        gateways = [start_gateway(specs, cfg, port=port, name=f"gateway{i + 1 if i else ''}")
                    for i, port in enumerate(ports)]
        procs += gateways
        write_pids(STATE_DIR, procs)
        wait_healthy(gateways, 60.0, STATE_DIR / "logs")
        batch_gateway = start_batch_gateway(specs, cfg, _batch_gateway_port(cfg))
        procs.append(batch_gateway)
        write_pids(STATE_DIR, procs)
        wait_healthy([batch_gateway], 60.0, STATE_DIR / "logs")
        procs.append(start_batch_runner(specs, cfg, _batch_gateway_port(cfg)))
        write_pids(STATE_DIR, procs)
        edge = start_edge(cfg, ports, https_port=_https_port(env), http_port=_http_port(env))
        procs.append(edge)
        write_pids(STATE_DIR, procs)
        wait_healthy([edge], 30.0, STATE_DIR / "logs")
    except (RuntimeError, TimeoutError) as exc:
        down()
        raise SystemExit(f"stack failed to start: {exc}") from None
    print(f"stack up in {time.monotonic() - started:.1f} s ({cfg.backends} backends)")
    _print_usage(cfg, specs, env)
    return cfg


def down() -> None:
    pids = read_pids(STATE_DIR)
    stop(list(pids.values()))
    (STATE_DIR / "pids.json").unlink(missing_ok=True)
    if pids:
        print(f"stopped {', '.join(pids)}")


def _print_usage(cfg: StackConfig, specs, env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{cfg.gateway_port}"
    https = f"https://127.0.0.1:{_https_port(env)}"
    print(f"""
  gateway   {base}/v1        (docs: {base}/docs)
  https     {https}/v1  (nginx, self-signed: --cacert {cfg.state_dir / 'certs' / 'cert-fullchain.crt'})
  backends  {', '.join(f'{s.name} :{s.port}' for s in specs)}
  batch     one runner (logs/batch-runner.log), through its own gateway instance on :{_batch_gateway_port(cfg)}
  redis     127.0.0.1:{cfg.redis_port}
  logs      {STATE_DIR / 'logs'}

  first organisation and API key (the admin token is in .env):
    export ADMIN_TOKEN=$(grep ^ADMIN_TOKEN= .env | cut -d= -f2)
    .venv/bin/gatewayctl --base-url {base} org create my-team --profile standard

  then, with the printed key:
    curl -s {base}/v1/chat/completions -H "Authorization: Bearer $API_KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{{"model": "qwen", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
""")


def demo() -> None:
    up()
    print("running; press Ctrl-C to stop")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        down()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stack")
    parser.add_argument("command", choices=["up", "down", "demo"])
    command = parser.parse_args().command
    {"up": up, "down": down, "demo": demo}[command]()


if __name__ == "__main__":
    main()
