"""The long-lived objects a worker serves with, built in the lifespan and torn down with it."""

from __future__ import annotations

import random
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
from redis.asyncio import Redis

from .admission.gate import AdmissionGate, admission_ids
from .admission.local_limiter import LocalLimiter
from .admission.cluster_channel import ClusterChannel
from .admission.redis_channel import RedisChannel
from .admission.redis_clock import RedisClock
from .admission.rejections import Rejections
from .observability.overview import SAMPLE_EVERY_SECS, Overview
from .admission.redis_limiter import RedisLimiter
from .admission.report import UsageReport
from .audit import AuditLog
from .background import BackgroundTasks
from .backend_state import STALE_INTERVALS, MetricsScraper, StateView
from .cache.lookup import ResponseCache, build_cache
from .health import HealthMonitor
from .redis_link import link_from
from .resilience.breakers import Breakers
from .resilience.queue import FairQueue
from .resilience.retry import Backoff, RetryBudget, RetryPolicy
from .resilience.suspects import Suspects
from .resilience.wiring import build_selector
from .observability.metrics import Metrics
from .batches.jobs import JobStore
from .batches.lane import BatchLane
from .console.sessions import ConsoleSessions
from .files.store import FileStore, sweep_forever
from .responses.store import ResponseStore
from .routing import RoutingTable
from .settings import Settings
from .tenancy.admin import TenancyAdmin
from .tenancy.auth import Authenticator
from .tenancy.invalidation import listen_for_invalidations
from .tenancy.store import TenancyStore
from .backend_client import backend_http
from .backend_http import BackendHTTP
from .upstream import Upstream

FILE_SWEEP_SECS = 600.0
ADMIN_REDIS_TIMEOUT_SECS = 5.0  # admin calls are rare and may wait; the request path may not


@dataclass
class Services:
    settings: Settings
    routing: RoutingTable
    client: BackendHTTP
    health: HealthMonitor
    upstream: Upstream
    auth: Authenticator
    tenancy_store: TenancyStore
    tenancy_admin: TenancyAdmin
    audit: AuditLog
    admission: AdmissionGate
    tasks: BackgroundTasks
    metrics: Metrics
    usage_report: UsageReport
    breakers: Breakers
    queue: FairQueue
    suspects: Suspects
    state: StateView
    redis: Redis | None = None  # the admin-path client, for health pings
    cache: ResponseCache | None = None  # set in running_services: it writes through `tasks`
    responses: ResponseStore | None = None  # the Responses API's stored conversations
    files: FileStore | None = None  # the Files API's uploads and batch output
    batches: JobStore | None = None  # batch jobs (the runner process runs them)
    batch_lane: BatchLane | None = None  # who a runner's line runs as, and whether it may now
    console: ConsoleSessions | None = None  # /dashboard sign-ins
    rejections: Rejections | None = None  # each organisation's latest 429s, and why
    overview: Overview | None = None  # the last hour per model, from this instance's metrics
    draining: bool = False
    routing_loaded_at: int = field(default_factory=lambda: int(time.time()))


@asynccontextmanager
async def running_services(settings: Settings, routing: RoutingTable,
                           clock: Callable[[], float] = time.time) -> AsyncIterator[Services]:
    """Open the HTTP pool and Redis clients, probe backends once, run the background tasks."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(backend_http(settings))
        link = link_from(settings)
        stack.push_async_callback(link.aclose)
        fast = await stack.enter_async_context(link.client(settings.redis_timeout_secs))
        slow = await stack.enter_async_context(link.client(ADMIN_REDIS_TIMEOUT_SECS))
        listener = await stack.enter_async_context(link.subscriber())
        channel = link.channel(settings.redis_timeout_secs)
        stack.push_async_callback(channel.aclose)
        metrics = Metrics(tenant_labels=settings.metrics_tenant_labels)
        metrics.prime({name: [b.name for b in pool.backends] for name, pool in routing.pools.items()},
                      {name: pool.policy.name for name, pool in routing.pools.items()})
        health = HealthMonitor(client, routing, interval=settings.health_check_interval_secs,
                               timeout=settings.health_probe_timeout_secs, metrics=metrics)
        defaults = settings.default_limits()
        tasks = BackgroundTasks()
        rejections = Rejections(fast, tasks, clock)
        admin_store = TenancyStore(slow, clock)
        audit = AuditLog(slow, clock)
        auth = Authenticator(TenancyStore(fast, clock, channel), defaults, clock=clock,
                             cache_ttl=settings.auth_cache_ttl_secs)
        interval = settings.backend_metrics_interval_secs
        state = StateView([b.name for pool in routing.pools.values() for b in pool.backends],
                          stale_after=STALE_INTERVALS * interval)
        scraper = MetricsScraper(client, routing, state, interval=interval, metrics=metrics)
        selector = build_selector(settings, routing, health, metrics, state)
        catalogue = [(m.name, *m.aliases) for m in routing.models]
        services = Services(settings, routing, client, health,
                            Upstream(client, selector, _retry_policy(settings), settings, metrics),
                            auth, admin_store,
                            TenancyAdmin(admin_store, audit, defaults, clock, catalogue), audit,
                            _admission(settings, fast, channel, clock, metrics, rejections), tasks, metrics,
                            UsageReport(slow, defaults), selector.breakers, selector.queue,
                            selector.suspects, state, slow)
        services.cache = build_cache(settings, fast, services.tasks, metrics, clock)
        services.rejections = rejections
        services.overview = Overview(metrics.families)
        services.responses = ResponseStore(slow, ttl_secs=settings.responses_ttl_secs,
                                           max_bytes=settings.responses_max_bytes)
        services.files = FileStore(slow, settings.data_dir,
                                   org_max_bytes=settings.files_org_max_bytes, clock=clock)
        services.batches = JobStore(slow, clock)
        services.console = ConsoleSessions(slow, ttl_secs=settings.console_session_secs,
                                           clock=clock)
        services.batch_lane = BatchLane(auth, state, token=settings.batch_runner_token,
                                        share=settings.batch_capacity_share,
                                        eligible=selector.balancer.eligible,
                                        most=settings.max_concurrent_batch,
                                        processes=settings.gateway_workers * settings.gateway_replicas,
                                        watch_secs=settings.batch_watch_secs)
        scraper.watch(services.batch_lane)
        await health.probe_all()
        stack.enter_context(_drain_on_sigterm(services))
        async with anyio.create_task_group() as tg:
            tg.start_soon(health.run)
            tg.start_soon(scraper.run)
            tg.start_soon(listen_for_invalidations, listener, auth)
            tg.start_soon(services.admission.renew_forever)
            tg.start_soon(_sample_forever, services.overview)
            # Leftovers of uploads cut short by a crash, and contents whose metadata expired.
            tg.start_soon(partial(sweep_forever, services.files, every_secs=FILE_SWEEP_SECS,
                                  older_than_secs=settings.files_upload_timeout_secs + 60))
            try:
                yield services
            finally:
                services.draining = True
                await services.tasks.wait()  # settlements still in flight
                tg.cancel_scope.cancel()


async def _sample_forever(overview: Overview) -> None:
    while True:
        await anyio.to_thread.run_sync(overview.sample)  # reads every worker's metric files
        await anyio.sleep(SAMPLE_EVERY_SECS)


def _admission(settings: Settings, redis: Redis, channel: RedisChannel | ClusterChannel,
               clock: Callable[[], float], metrics: Metrics,
               rejections: Rejections) -> AdmissionGate:
    lease_ms = int(settings.concurrency_lease_secs * 1000)
    limiter = RedisLimiter(redis, channel, lease_ms=lease_ms,
                           global_max_concurrent=settings.global_max_concurrent,
                           usage_retention_secs=settings.usage_retention_days * 86400,
                           clock=RedisClock(time.monotonic, clock),
                           platform_sets=not settings.redis_cluster)
    share = settings.gateway_workers * settings.gateway_replicas
    return AdmissionGate(limiter, LocalLimiter(share, clock),
                         fail_open=settings.limiter_failure_policy == "open",
                         lease_secs=settings.concurrency_lease_secs, clock=clock, metrics=metrics,
                         new_id=admission_ids(secrets.token_hex(6)),
                         max_request_secs=settings.max_request_secs,
                         max_concurrent_batch=settings.max_concurrent_batch,
                         rejections=rejections)


@contextmanager
def _drain_on_sigterm(services: Services) -> Iterator[None]:
    """SIGTERM (shutdown, or the old workers of a HUP reload) turns readiness false at once.

    uvicorn's own handler still runs: it stops accepting and lets in-flight requests and
    streams finish within timeout_graceful_shutdown (set from GRACEFUL_TIMEOUT_SECS).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(sig: int, frame) -> None:
        services.draining = True
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)


def _retry_policy(settings: Settings) -> RetryPolicy:
    budget = RetryBudget(settings.retry_budget_ratio, window_secs=settings.retry_budget_window_secs)
    return RetryPolicy(max_retries=settings.retry_max, budget=budget,
                       backoff=Backoff(settings.retry_backoff_secs, 1.0, random.Random()))
