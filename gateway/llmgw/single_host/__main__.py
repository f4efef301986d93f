"""`python -m llmgw.single_host`: the single-container image's entrypoint (deploy/single/).

Checks every setting (its own and the gateway's) first, writes the routing table, then runs
Redis, the backend and the gateway until SIGTERM or SIGINT (exit 0) or the gateway's end
(exit 1). A bad setting exits 2 with a message naming it, before any process starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..settings import load_settings
from .children import children, gateway_env
from .config import load_config
from .routing_file import write_routing
from .supervisor import Supervisor

BAD_SETTINGS = 2


def _prepare(run_dir: Path) -> Supervisor:
    """Every check that can fail before a process starts; SystemExit with the reason."""
    config = load_config(dict(os.environ))
    if config.internal_redis and shutil.which("redis-server") is None:
        raise SystemExit("single-host: redis-server is not installed; set REDIS_URL to use "
                         "an external Redis")
    if not config.backend_command and shutil.which("vllm") is None:
        raise SystemExit("single-host: the vllm command is not on PATH; set BACKEND_COMMAND "
                         "to start another OpenAI-compatible server")
    routing_path, table = write_routing(config, run_dir)
    # The entrypoint's environment becomes the gateway's: checked here with the gateway's own
    # loader, exactly as gunicorn's master will read it.
    os.environ.update(gateway_env(config, routing_path))
    settings = load_settings()
    models = ", ".join(m.name for m in table.models)
    logging.getLogger("llmgw.single_host").info(
        "serving %s from %s on port %d; Redis %s", models, config.backend_url,
        settings.gateway_port, "inside" if config.internal_redis else "external")
    try:
        return Supervisor(children(config, settings, dict(os.environ)))
    except OSError as exc:  # e.g. DATA_DIR/redis cannot be created
        raise SystemExit(f"single-host: {exc}") from None


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [single-host] %(levelname)s %(message)s")
    run_dir = Path(tempfile.mkdtemp(prefix="llmgw-single-host-"))
    try:
        try:
            supervisor = _prepare(run_dir)
        except SystemExit as exc:
            print(exc, file=sys.stderr, flush=True)
            return BAD_SETTINGS
        return supervisor.run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
