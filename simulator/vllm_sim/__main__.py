"""CLI entry point: python -m vllm_sim --port 8101 --served-model-name NAME --kind chat."""

from __future__ import annotations

import asyncio
import signal
import sys

from .app import App
from .config import parse_config
from .http import close_all_connections, serve


async def _main(argv: list[str] | None) -> None:
    cfg = parse_config(argv)
    app = App(cfg)
    server = await serve(app, cfg.host, cfg.port, cfg.keep_alive_timeout)
    port = server.sockets[0].getsockname()[1]
    # Tests and benches wait for this line (or poll /health) before sending traffic.
    print(f"vllm-sim ready on http://{cfg.host}:{port} kind={cfg.kind} models={','.join(cfg.served_model_names)}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stop at once: uvloop's wait_closed() would wait for idle keep-alive clients to hang up.
    server.close()
    close_all_connections()


def main(argv: list[str] | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # still works, just slower
        uvloop = None
    if uvloop is not None:
        uvloop.run(_main(argv))
    else:
        asyncio.run(_main(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
