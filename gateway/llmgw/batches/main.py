"""`llmgw-batch-runner`: the batch runner process, built from the gateway's settings (the same
environment: REDIS_URL, DATA_DIR, ROUTING_FILE, BATCH_*). SIGTERM stops it taking lines; the
lines it holds finish (or, past BATCH_LEASE_SECS, run again on another runner)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import anyio

from ..backend_client import KEEPALIVE_SECS
from ..backend_http import BackendHTTP, Origin
from ..files.store import FileStore
from ..redis_link import link_from
from ..routing import load_routing
from ..settings import Settings, load_settings
from .calls import Gateway
from .jobs import JobStore
from .queue import WorkQueue
from .runner import Runner
from .upkeep import Upkeep

log = logging.getLogger("llmgw.batches")
# Batch work is background work: on a host it shares with the gateway and the backends' own
# processes, the runner yields the CPU to them (nice 10, as a batch job would be run).
NICENESS = 10
STOP_GRACE_SECS = 30.0  # compose gives the runner 60 s to stop


async def serve(settings: Settings) -> None:
    if settings.batch_runner_token is None:
        raise SystemExit("BATCH_RUNNER_TOKEN is not set: the gateway would refuse every line")
    routing = load_routing(settings.routing_file)
    FileStore.prepare(settings.data_dir)
    link = link_from(settings)  # REDIS_URL, or the primary Sentinel names
    redis = link.client(10.0, pool_size=4 * settings.batch_runner_slots + 16)
    # More slots than MAX_CONCURRENT_BATCH would only collect refusals.
    slots = max(1, min(settings.batch_runner_slots, settings.max_concurrent_batch))
    # The gateway's own backend client: a keep-alive connection per slot, at a fraction of
    # httpx's CPU per call (its pool looks at every connection on every request).
    http = BackendHTTP(max_connections=slots + 4, max_idle=slots + 4,
                       keepalive_secs=KEEPALIVE_SECS, connect_timeout=5.0, keep_headers=True)
    # Each line may take as long as the gateway lets a request take.
    gateway = Gateway(http, Origin.from_url(settings.batch_gateway_url),
                      settings.batch_runner_token.get_secret_value(), settings.max_request_secs)
    async with redis:
        jobs = JobStore(redis, time.time)
        queue = WorkQueue(redis, lease_ms=int(settings.batch_lease_secs * 1000))
        files = FileStore(redis, settings.data_dir, org_max_bytes=settings.files_org_max_bytes)
        upkeep = Upkeep(redis, jobs, queue, files, routing, settings.data_dir)
        runner = Runner(redis=redis, jobs=jobs, queue=queue, upkeep=upkeep, gateway=gateway,
                        root=settings.data_dir, slots=slots,
                        recheck_secs=settings.batch_quota_recheck_secs)
        log.info("batch runner %s: %d slots, gateway %s", runner.id, slots,
                 settings.batch_gateway_url)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, runner, tg.cancel_scope)
                await runner.run()
                tg.cancel_scope.cancel()
        finally:
            await http.aclose()
            await link.aclose()


async def _stop_on_signal(runner: Runner, scope: anyio.CancelScope) -> None:
    """SIGTERM: take no more lines. run() returns once the lines held are done (and the
    runner has left the list of runners); past STOP_GRACE_SECS whatever is left is stopped
    (a line cut short runs again once its lease lapses)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            log.info("batch runner %s stopping: finishing the lines it holds", runner.id)
            runner.stop()
            await anyio.sleep(STOP_GRACE_SECS)
            scope.cancel()
            return


def main() -> None:
    os.nice(NICENESS)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    anyio.run(serve, load_settings())


if __name__ == "__main__":
    main()
