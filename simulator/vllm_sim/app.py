"""Routing: auth, loading/health faults, endpoint handlers and the /sim control API."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import orjson

from . import generate as gen
from . import openai_shapes as shapes
from . import classify, cohere, lora, messages, plans, pooling, responses, tool_request
from .capacity import Capacity
from .faults import Faults, error_type
from .inference import Engine
from .kv_cache import KVCache
from .metrics import Metrics
from .stats import Stats
from .validate import ApiError, check_model, get_bool, get_str, invalid, json_body, require_list

GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")  # vLLM's AuthenticationMiddleware
_NOT_FOUND = orjson.dumps({"detail": "Not Found"})
_NOT_ALLOWED = orjson.dumps({"detail": "Method Not Allowed"})
_UNAUTHORIZED = orjson.dumps({"error": "Unauthorized"})
_LOADING = shapes.error("The model is still loading; the server is not ready yet.", "ServiceUnavailableError", 503)
_METRICS_TYPE = b"text/plain; version=1.0.0; charset=utf-8"
# What a broken exporter or a proxy's error page might send: no usable vllm: sample in it.
_METRICS_GARBAGE = (b"<html><body>\x00\xff not metrics</body></html>\n"
                    b"vllm:num_requests_running{model_name=\"x\"} NaN\nvllm:num_requests_waiting{ oops\n")
_KIND_ROUTES = {
    "chat": {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/responses": "responses",
             "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"},
    "embed": {"/v1/embeddings": "embeddings", "/pooling": "pool", "/v2/embed": "cohere_embed"},
    "rerank": {"/rerank": "rerank", "/v1/rerank": "rerank", "/v2/rerank": "rerank",
               "/score": "score", "/v1/score": "score", "/pooling": "pool", "/classify": "classify"},
}


class App:
    """Callable handed to every HttpConnection: returns None (answered) or a coroutine to schedule."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.faults = Faults(cfg.faults, cfg.seed)
        self.capacity = Capacity(cfg.max_num_seqs, by_priority=cfg.scheduling_policy == "priority")
        self.metrics = Metrics(cfg.model_name, cfg.max_model_len)
        self.stats = Stats()
        # Only generating engines keep a KV cache worth modelling (pooling runs one forward pass).
        self.kv = KVCache(cfg.num_gpu_blocks, cfg.block_size) if cfg.num_gpu_blocks and cfg.kind == "chat" else None
        self.engine = Engine(cfg, self.faults, self.capacity, self.metrics, self.stats, self.kv)
        self.created = int(time.time())
        self._key_hashes = [hashlib.sha256(k.encode()).digest() for k in cfg.api_keys]
        self.routes = self._build_routes()

    def _build_routes(self) -> dict:
        routes = {
            "/health": {"GET": self._health}, "/ping": {"GET": self._health, "POST": self._health},
            "/v1/models": {"GET": self._models}, "/version": {"GET": self._version},
            "/metrics": {"GET": self._metrics}, "/load": {"GET": self._load},
            "/tokenize": {"POST": self._tokenize}, "/detokenize": {"POST": self._detokenize},
        }
        for path, name in _KIND_ROUTES[self.cfg.kind].items():
            routes[path] = {"POST": getattr(self, "_" + name)}
        routes.update({"/sim/faults": {"GET": self._sim_faults, "POST": self._sim_faults},
                       "/sim/stats": {"GET": self._sim_stats, "POST": self._sim_stats}})
        return routes

    # ---- entry point ------------------------------------------------------
    def __call__(self, req, conn):
        path = req.path
        sim = path.startswith("/sim/")
        if not sim and self._refused(req, conn):
            return None
        route = self.routes.get(path)
        if route is None:
            conn.respond(404, _NOT_FOUND)
            return None
        handler = route.get(req.method)
        if handler is None:
            allow = b"allow: " + ", ".join(route).encode() + b"\r\n"
            conn.respond(405, _NOT_ALLOWED, extra_headers=allow + conn.default_headers)
            return None
        if sim:
            return handler(req, conn)
        self.stats.in_flight += 1
        result = handler(req, conn)
        if result is None:
            self.stats.in_flight -= 1
            return None
        return self._tracked(result)

    def _refused(self, req, conn) -> bool:
        """Count the request, then answer it early if the model is loading or auth fails."""
        path = req.path
        self.stats.total += 1
        self.stats.by_endpoint[path if path in self.routes else "other"] += 1
        if self.faults.loading_until and self.faults.loading():
            self.stats.rejected_loading += 1
            if path == "/health":
                conn.respond(503, b"", b"")
            else:
                conn.respond(503, _LOADING)
            return True
        if self._key_hashes and path.startswith(GUARDED_PREFIX) and req.method != "OPTIONS" \
                and not self._authorized(req.headers):
            conn.respond(401, _UNAUTHORIZED, extra_headers=b"")  # auth runs outside the CORS layer
            return True
        return False

    async def _tracked(self, coro):
        try:
            await coro
        finally:
            self.stats.in_flight -= 1

    def _authorized(self, headers: dict) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = hashlib.sha256(token.encode()).digest()
        return any(secrets.compare_digest(digest, h) for h in self._key_hashes)

    # ---- engine-bound endpoints --------------------------------------------
    def _engine_call(self, req, conn, work):
        """Shared path: injected error or hang first, then parse, then run through the engine."""
        f = self.faults
        if f.error_rate and f.roll_error():
            self.stats.injected_errors += 1
            status = f.error_status
            conn.respond(status, shapes.error("Simulated server error (fault injection).", error_type(status), status))
            return None
        if f.hang:
            self.stats.hung += 1
            return self._hang()
        try:
            return work(json_body(req.headers, req.body), req.headers, time.perf_counter())
        except ApiError as exc:
            conn.respond(exc.status, exc.body)
            return None

    async def _hang(self):
        # Never answer; the client's disconnect cancels this task.
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.stats.aborted += 1
            raise

    def _chat(self, req, conn):
        return self._engine_call(req, conn, lambda b, h, t0: self.engine.run_generation(
            plans.chat_plan(b, h, self.cfg), conn, t0))

    def _completions(self, req, conn):
        return self._engine_call(req, conn, lambda b, h, t0: self.engine.run_generation(
            plans.completion_plan(b, h, self.cfg), conn, t0))

    def _responses(self, req, conn):
        return self._engine_call(req, conn, lambda b, h, t0: responses.run(self.engine, b, self.cfg, conn, t0))

    def _messages(self, req, conn):
        return self._engine_call(req, conn, lambda b, h, t0: messages.run(self.engine, b, h, self.cfg, conn, t0))

    def _count_tokens(self, req, conn):
        try:
            conn.respond(200, messages.count_tokens(json_body(req.headers, req.body), self.cfg))
        except ApiError as exc:
            conn.respond(exc.status, exc.body)

    def _pooling(self, req, conn, build):
        return self._engine_call(req, conn, lambda b, h, t0: self.engine.run_pooling(
            *build(b, h, self.cfg), conn, t0))

    def _embeddings(self, req, conn):
        return self._pooling(req, conn, pooling.embeddings)

    def _rerank(self, req, conn):
        return self._pooling(req, conn, pooling.rerank)

    def _score(self, req, conn):
        return self._pooling(req, conn, pooling.score)

    def _pool(self, req, conn):
        return self._pooling(req, conn, classify.pool)

    def _classify(self, req, conn):
        return self._pooling(req, conn, classify.classify)

    def _cohere_embed(self, req, conn):
        return self._pooling(req, conn, cohere.embed)

    # ---- tokenizer endpoints ---------------------------------------------
    def _tokenize(self, req, conn):
        try:
            body = json_body(req.headers, req.body)
            check_model(body, self.cfg.served_model_names, adapters=self.cfg.lora_names)
            if "messages" in body:
                rendered = gen.render_chat(require_list(body, "messages"),
                                           get_bool(body, "add_generation_prompt", True),
                                           tool_request.tokenize_tools(body))
                pieces = gen.tokenize(rendered, specials=True)
            else:
                pieces = gen.tokenize(get_str(body, "prompt", required=True))
            strs = [gen.token_display(p) for p in pieces] if get_bool(body, "return_token_strs", False) else None
            out = shapes.tokenize_response(gen.token_ids(pieces), self.cfg.max_model_len, strs)
            conn.respond(200, orjson.dumps(out))
        except ValueError as exc:
            conn.respond(400, shapes.error(str(exc), "BadRequestError", 400))
        except ApiError as exc:
            conn.respond(exc.status, exc.body)

    def _detokenize(self, req, conn):
        try:
            body = json_body(req.headers, req.body)
            check_model(body, self.cfg.served_model_names, adapters=self.cfg.lora_names)
            ids = require_list(body, "tokens")
            if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
                raise invalid("int_type", "tokens", "Input should be a valid integer greater than or equal to 0", ids)
            conn.respond(200, orjson.dumps({"prompt": gen.detokenize(ids)}))
        except ApiError as exc:
            conn.respond(exc.status, exc.body)

    # ---- plain GET endpoints ---------------------------------------------
    def _health(self, req, conn):
        conn.respond(503 if self.faults.health_fail else 200, b"", b"")

    def _models(self, req, conn):
        cfg = self.cfg
        body = shapes.models_response(cfg.served_model_names, cfg.model_path, cfg.max_model_len, int(time.time()),
                                      lora.listed(cfg.lora_modules, cfg.served_model_names))
        conn.respond(200, orjson.dumps(body))

    def _version(self, req, conn):
        conn.respond(200, orjson.dumps({"version": self.cfg.version}))

    def _load(self, req, conn):
        conn.respond(200, orjson.dumps({"server_load": self.capacity.running + self.capacity.waiting}))

    def _metrics(self, req, conn):
        fault = self.faults.metrics_fault
        if fault == "hang":
            return asyncio.get_running_loop().create_future()  # the client's disconnect cancels it
        if fault == "garbage":
            conn.respond(200, _METRICS_GARBAGE, _METRICS_TYPE)
            return None
        if fault == "error":
            conn.respond(500, b"Internal Server Error", b"text/plain; charset=utf-8")
            return None
        cap = self.capacity
        usage = self.kv.usage if self.kv is not None else cap.usage  # without blocks: share of slots in use
        conn.respond(200, self.metrics.render(cap.running, cap.waiting, usage), _METRICS_TYPE)

    # ---- simulator control -------------------------------------------------
    def _sim_faults(self, req, conn):
        if req.method == "POST":
            try:
                body = orjson.loads(req.body or b"{}")
            except orjson.JSONDecodeError as exc:
                conn.respond(400, shapes.error(f"invalid JSON: {exc}", "BadRequestError", 400))
                return
            problem = self.faults.update(body)
            if problem:
                conn.respond(400, shapes.error(problem, "BadRequestError", 400))
                return
        conn.respond(200, orjson.dumps(self.faults.snapshot()))

    def _sim_stats(self, req, conn):
        if req.method == "POST":
            try:
                body = orjson.loads(req.body) if req.body.strip() else {}
            except orjson.JSONDecodeError as exc:
                conn.respond(400, shapes.error(f"invalid JSON: {exc}", "BadRequestError", 400))
                return
            if isinstance(body, dict) and body.get("reset"):
                self.stats.reset()
                if self.kv is not None:
                    self.kv.reset_counters()
        cap = self.capacity
        out = self.stats.snapshot(cap.running, cap.waiting, cap.limit)
        if self.kv is not None:
            out["kv_cache"] = self.kv.snapshot()
        conn.respond(200, orjson.dumps(out))
