"""The application factory: validated settings in, a ready FastAPI app out."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from . import __version__, error_handlers, openapi
from .api import (admin, admin_batches, batches, docs, files, inference, metrics, models, monitor,
                  responses, system)
from .api.json_response import OrjsonResponse
from .api.stack import GatewayApp
from .console.api_router import router as console_router
from .endpoints import ENDPOINTS
from .batches.protocol import BatchCreate
from .files.store import FileStore
from .observability import logs
from .routing import load_routing
from .services import running_services
from .tenancy.admin_bodies import KeyCreate, KeyRotate, OrgCreate, OrgPatch
from .settings import Settings, load_settings

# zlib's level 5 gets most of level 9's ratio on JSON for a fraction of the CPU.
GZIP_LEVEL = 5

DESCRIPTION = """One OpenAI-compatible API in front of pools of vLLM servers: chat (load-balanced),
text2sql, embeddings and rerank. Every error has the shape
`{"error": {"message", "type", "param", "code"}}`."""


def create_app(settings: Settings | None = None) -> GatewayApp:
    """Build the app; the routing table is loaded and validated here, before any request."""
    settings = settings or load_settings()
    routing = load_routing(settings.routing_file)
    secrets = tuple(s.get_secret_value() for s in (settings.admin_token, settings.backend_api_key,
                                                    settings.batch_runner_token) if s)
    logs.configure(settings.log_level, secrets)
    FileStore.prepare(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_services(settings, routing) as services:
            app.state.services = services
            # What start-up built lives as long as the worker: moved out of the collector's
            # view, a full collection no longer walks it (shorter pauses, less CPU).
            gc.collect()
            gc.freeze()
            yield

    app = GatewayApp(title="LLM inference gateway", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, default_response_class=OrjsonResponse,
                  docs_url=None, redoc_url=None)  # api/docs.py serves both pages offline
    inference_routes = inference.routes()
    app.include_router(inference_routes)
    app.include_router(models.router)
    app.include_router(responses.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(system.router)
    app.include_router(admin.router)
    app.include_router(admin_batches.router)
    app.include_router(metrics.router)
    app.include_router(monitor.router)
    app.include_router(console_router)
    docs.install(app)
    error_handlers.install(app)
    openapi.install(app, [*{e.request: None for e in ENDPOINTS}, OrgCreate, OrgPatch, KeyCreate,
                          KeyRotate, BatchCreate], openapi.model_required(routing, ENDPOINTS))
    if settings.gzip_min_bytes:
        # Innermost: it sees the answer as the route made it. It never touches text/event-stream
        # (its default exclusions), so streams are neither buffered nor compressed.
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes,
                           compresslevel=GZIP_LEVEL)
    # The chain every request passes once (request id, drain, access) is the app's own
    # (api/stack.py); inference POSTs leave it for their endpoint, the rest for FastAPI.
    app.secrets = secrets
    app.serve_inference({route.path: route.get_route_handler()
                         for route in inference_routes.routes},
                        gzip_min_bytes=settings.gzip_min_bytes, gzip_level=GZIP_LEVEL)
    return app
