"""Talking to backends: one pooled HTTP client, backend choice, and transport errors made user-safe.

Every failure leaves this module as a GatewayError whose text names no URL, host or key:
the client learns what went wrong, never where the GPUs live.
"""

from __future__ import annotations

import time

import anyio
import httpx
import orjson

from .balancer import LeastInFlightBalancer
from .errors import BackendUnavailable, BadGateway, GatewayError, UpstreamError, UpstreamTimeout
from .routing import Backend, Model
from .observability.trace import Trace
from .settings import Settings


def build_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled client a worker uses for every backend (connections are reused)."""
    limits = httpx.Limits(max_connections=settings.http_max_connections,
                          max_keepalive_connections=settings.http_max_keepalive,
                          # below vLLM's (uvicorn's) 5 s keep-alive, so the gateway closes an
                          # idle connection before the backend does and never sends on a dying one
                          keepalive_expiry=4.0)
    timeout = httpx.Timeout(settings.upstream_timeout_seconds,
                            connect=settings.upstream_connect_timeout_secs)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)


def _transport_error(exc: Exception, backend: Backend) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(f"backend {backend.name} did not answer in time")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return BackendUnavailable(f"backend {backend.name} is unreachable",
                                  headers={"Retry-After": "1"})
    return BadGateway(f"backend {backend.name} broke the connection")


def _relayed_error(status: int, content: bytes, backend: Backend) -> GatewayError:
    """A backend's error answer, keeping only the whitelisted OpenAI fields."""
    if status == 401 or status == 403:
        # Our credentials were refused: the client's key is not at fault, the deployment is.
        return BadGateway(f"backend {backend.name} refused the gateway's credentials")
    if status == 503:
        return BackendUnavailable(f"backend {backend.name} is not ready", headers={"Retry-After": "5"})
    if status >= 500:
        return BadGateway(f"backend {backend.name} failed with status {status}")
    try:
        err = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if not isinstance(err, dict):
        err = {}
    message = err.get("message") if isinstance(err.get("message"), str) else f"backend rejected the request ({status})"
    code = err.get("code") if isinstance(err.get("code"), str) else None
    param = err.get("param") if isinstance(err.get("param"), str) else None
    type_ = err.get("type") if isinstance(err.get("type"), str) else "invalid_request_error"
    return UpstreamError(status, message[:2000], type_=type_, param=param, code=code)


class Upstream:
    """Forwards validated requests to the least busy backend of a model's pool."""

    def __init__(self, client: httpx.AsyncClient, balancer: LeastInFlightBalancer,
                 settings: Settings) -> None:
        self._client = client
        self._balancer = balancer
        self._stream_timeout = httpx.Timeout(settings.stream_idle_timeout_secs,
                                             connect=settings.upstream_connect_timeout_secs)
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if settings.backend_api_key is not None:
            self._headers["Authorization"] = f"Bearer {settings.backend_api_key.get_secret_value()}"

    def _choose(self, model: Model) -> Backend:
        backend = self._balancer.pick(model.pool)
        if backend is None:
            raise BackendUnavailable(f"no backend available for model {model.name}",
                                     headers={"Retry-After": "5"})
        return backend

    def _request(self, backend: Backend, path: str, body: dict, request_id: str,
                 timeout: httpx.Timeout | None = None) -> httpx.Request:
        headers = {**self._headers, "X-Request-ID": request_id}
        kwargs = {"timeout": timeout} if timeout is not None else {}
        return self._client.build_request("POST", backend.url + path, content=orjson.dumps(body),
                                          headers=headers, **kwargs)

    async def forward(self, model: Model, path: str, body: dict, request_id: str,
                      trace: Trace | None = None) -> dict:
        """A non-streaming call: the parsed answer (the caller renames and meters it)."""
        backend = self._choose(model)
        started = time.perf_counter()
        with self._balancer.hold(backend):
            try:
                resp = await self._client.send(self._request(backend, path, body, request_id))
            except httpx.HTTPError as exc:
                raise _transport_error(exc, backend) from None
            finally:
                if trace is not None:
                    trace.backend, trace.upstream_secs = backend.name, time.perf_counter() - started
        if resp.status_code != 200:
            raise _relayed_error(resp.status_code, resp.content, backend)
        try:
            answer = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise BadGateway(f"backend {backend.name} sent an answer that is not a JSON object")
        return answer

    async def open_stream(self, model: Model, path: str, body: dict, request_id: str,
                          trace: Trace | None = None) -> "OpenStream":
        """A streaming call, once the backend has accepted it (status 200, headers read)."""
        backend = self._choose(model)
        backend.in_flight += 1
        request = self._request(backend, path, body, request_id, self._stream_timeout)
        started = time.perf_counter()
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            backend.in_flight -= 1
            raise _transport_error(exc, backend) from None
        finally:
            if trace is not None:
                trace.backend, trace.upstream_secs = backend.name, time.perf_counter() - started
        if resp.status_code != 200:
            try:
                content = await resp.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await resp.aclose()
                backend.in_flight -= 1
            raise _relayed_error(resp.status_code, content, backend)
        return OpenStream(resp, backend)

    async def tokenize(self, model: Model, body: dict, request_id: str) -> int | None:
        """The backend's exact prompt token count (vLLM /tokenize), or None if it cannot say."""
        fields = {k: body[k] for k in ("messages", "prompt", "tools", "add_generation_prompt")
                  if k in body}
        if not isinstance(fields.get("prompt", ""), str):
            return None  # token ids are counted exactly already; lists of prompts are not supported
        try:
            answer = await self.forward(model, "/tokenize", {"model": model.served_name, **fields},
                                        request_id)
        except GatewayError:
            return None
        count = answer.get("count")
        return count if isinstance(count, int) else None


class OpenStream:
    """An accepted upstream stream; `close` frees the backend slot and the connection, once."""

    def __init__(self, resp: httpx.Response, backend: Backend) -> None:
        self.resp, self.backend, self._closed = resp, backend, False

    def failure(self, exc: Exception) -> GatewayError:
        return _transport_error(exc, self.backend)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.backend.in_flight -= 1
        with anyio.CancelScope(shield=True):  # closing must finish even if the task is cancelled
            await self.resp.aclose()
