"""Talking to backends: one pooled HTTP client, backend choice, retries and their deadline.

Every failure leaves this module as a GatewayError whose text names no URL, host or key
(backend_errors.py): the client learns what went wrong, never where the GPUs live.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

import orjson

from .admission.cost import TOKENIZE, ExactCount
from .backend_errors import relayed_error, transport_error
from .backend_http import (BackendHTTP, BackendHTTPError, ConnectError, PoolTimeout, ReadTimeout,
                           Response)
from .errors import BadGateway, GatewayError, UpstreamTimeout
from .observability.metrics import Metrics
from .observability.trace import Trace
from .placement.policy import Placement
from .resilience.retry import RetryableFailure, RetryPolicy
from .resilience.selector import BackendSelector
from .resilience.tries import Tries, TryLimits
from .routing import Backend, Model
from .settings import Settings

TRANSPORT_ERRORS = (BackendHTTPError,)  # what a backend's transport can raise
# /tokenize only refines an estimate that would refuse the request, before the main call: it
# gets a few seconds of its own (retries within them), not a second upstream deadline, and
# when it fails the estimate stands.
TOKENIZE_SECS = 5.0


def _attempt_failure(exc: BaseException, backend: Backend, selector: BackendSelector) -> Exception:
    """What a transport error before the response means: breaker outcome and retry reason."""
    error = transport_error(exc, backend)
    if isinstance(exc, PoolTimeout):
        # The gateway's own connection cap, not the backend: not counted, and another backend
        # shares the cap (and the deadline that bounded the wait).
        return error
    breakers = selector.breakers
    breakers.failure(backend.name)
    selector.suspects.failed(backend.name)
    if isinstance(exc, ConnectError):
        # Nothing listens there: out of rotation until a health probe passes.
        breakers.refused(backend.name)
    if isinstance(exc, ReadTimeout):
        return RetryableFailure(error, "timeout")
    # Refused, or dropped before any response (a killed backend): nothing was generated for
    # the client yet, so another backend may answer instead.
    return RetryableFailure(error, "connect")


def _served(backend: Backend, selector: BackendSelector) -> None:
    """The backend answered: its breaker's failure count and any suspicion end."""
    selector.breakers.success(backend.name)
    selector.suspects.served(backend.name)


def _status_failure(status: int, content: bytes, backend: Backend,
                    selector: BackendSelector) -> Exception:
    error = relayed_error(status, content, backend)
    if status < 500:
        _served(backend, selector)  # a client's 4xx: the backend is fine
        return error
    # Any 5xx, as Envoy's `5xx` retry policy has it: nothing reached the client yet, and
    # another replica may well answer. Whether it may be retried and whether it counts
    # against the breaker depend on the request's other tries (resilience/tries.py).
    return RetryableFailure(error, "status")


class Upstream:
    """Forwards validated requests to the least busy backend of a model's pool, retrying
    another backend while nothing has reached the client yet.

    A request's attempts share one deadline, UPSTREAM_TIMEOUT_SECONDS from the first: for the
    whole answer of a non-streaming call, for the response head of a stream, waits for a
    connection included. A retry gets only what is left, so a hung backend costs a request
    that long once, not once per try. Waiting for admission to the pool (QUEUE_TIMEOUT_SECS)
    counts against it too; a /tokenize call before the main one has its own TOKENIZE_SECS.
    While a sound backend the request has not tried could take over, a retry there is
    failover (no retry budget needed) and the current try is cut short (TryLimits), so a hung
    replica still leaves time for another.
    """

    def __init__(self, http: BackendHTTP, selector: BackendSelector,
                 retry: RetryPolicy, settings: Settings, metrics: Metrics | None = None) -> None:
        self._http = http
        self._selector = selector
        self.balancer = selector.balancer
        self._breakers = selector.breakers
        self._retry = retry
        # How long one try may wait while another sound backend could take over.
        self._try_limits = TryLimits(stream_head=settings.failover_stream_head_secs,
                                     answer=settings.failover_answer_secs)
        self._metrics = metrics
        self._max_secs = settings.max_request_secs
        # How long a request's attempts together may wait for an answer (a stream: its head).
        self._answer_timeout = settings.upstream_timeout_seconds
        # The longest silence of a stream, its head included.
        self._stream_timeout = settings.stream_idle_timeout_secs
        self._headers = b"Content-Type: application/json\r\nAccept-Encoding: identity\r\n"
        if settings.backend_api_key is not None:  # the settings refuse a key with CR or LF
            key = settings.backend_api_key.get_secret_value()
            self._headers += b"Authorization: Bearer %s\r\n" % key.encode()

    async def _post(self, backend: Backend, path: str, body: dict, request_id: str,
                    left: float, cap: float, *, stream: bool) -> Response:
        """POST within `left`, what remains of the request's deadline: getting a connection
        (also within the connect timeout) and the response head; for a non-streaming call the
        whole answer, for a stream only its head (then the silence limit holds). `cap` is
        this try's own limit on the head (a stream) or the answer (TryLimits)."""
        # The request id is ours or passed our check (request_id.py): no CR or LF in it.
        headers = self._headers + b"X-Request-ID: %s\r\n" % request_id.encode()
        head_by = min(left, cap)
        return await self._http.request(
            backend.origin, b"POST", path.encode(), headers, orjson.dumps(body),
            read_timeout=self._stream_timeout if stream else head_by, head_timeout=head_by,
            answer_timeout=math.inf if stream else head_by, connect_within=left)

    def _time_left(self, limit: float) -> Callable[[], float]:
        """What is left of a request's answer deadline, `limit` from now."""
        loop = asyncio.get_running_loop()
        answer_by = loop.time() + limit
        return lambda: answer_by - loop.time()

    def _spent(self, left: float) -> None:
        """A retry that reached a backend with no time left (the queue or backoff took it)."""
        if left <= 0:
            raise UpstreamTimeout(f"no backend answered within {self._answer_timeout:g} s")

    async def _attempts(self, model: Model, trace: Trace | None, once,
                        time_left: Callable[[], float], *, stream: bool,
                        placement: Placement | None = None) -> object:
        """Run `once(backend, cap, prefill)` with retries on other backends while `time_left()`, all
        within MAX_REQUEST_SECS. `cap` limits the one try while a sound backend the request
        has not tried could take over; a retry there is failover and needs no retry budget."""
        tries = Tries(self._selector, model, trace.org if trace else None, placement)

        async def attempt(_n: int):
            backend, prefill = await tries.acquire()
            try:
                return await once(backend, self._try_limits.cap(stream, tries.failover_left()),
                                  prefill)
            except RetryableFailure as failure:
                if failure.reason != "status":
                    raise
                raise tries.status_failure(backend, failure) from None

        def on_retry(reason: str) -> None:
            if trace is not None:
                trace.retries += 1
            if self._metrics is not None:
                self._metrics.retries.labels(model.pool.name, reason).inc()

        try:
            # asyncio's own timeout: anyio's cancel scope costs several times more per request.
            async with asyncio.timeout(self._max_secs):
                return await self._retry.run(attempt, on_retry, time_left, tries.failover_left)
        except TimeoutError:
            raise UpstreamTimeout(f"the request exceeded the gateway's limit of "
                                  f"{self._max_secs:g} s") from None

    async def forward(self, model: Model, path: str, body: dict, request_id: str,
                      trace: Trace | None = None, limit: float | None = None,
                      placement: Placement | None = None) -> dict:
        """A non-streaming call: the parsed answer (the caller renames and meters it), all of
        it within `limit` (UPSTREAM_TIMEOUT_SECONDS unless given). `placement` places it by
        its pool's policy (placement/policy.py)."""
        time_left = self._time_left(self._answer_timeout if limit is None else limit)

        async def once(backend: Backend, cap: float, prefill: int) -> dict:
            return await self._forward_once(backend, path, body, request_id, trace, time_left(),
                                            cap, prefill)
        return await self._attempts(model, trace, once, time_left, stream=False,
                                    placement=placement)

    async def _forward_once(self, backend: Backend, path: str, body: dict, request_id: str,
                            trace: Trace | None, left: float, cap: float,
                            prefill: int = 0) -> dict:
        started = time.perf_counter()
        if trace is not None:
            trace.backend = backend.name  # known while the call runs (batches/lane.py preempts by it)
        try:
            self._spent(left)
            resp = await self._post(backend, path, body, request_id, left, cap, stream=False)
            try:
                status, content = resp.status, await resp.read()
            finally:
                resp.close()  # cancelled or failed mid-body: the connection goes
        except TRANSPORT_ERRORS as exc:
            raise _attempt_failure(exc, backend, self._selector) from None
        finally:
            self._breakers.abandon(backend.name)  # cancelled mid-call: free a half-open trial
            self._selector.release(backend, prefill)
            if trace is not None:
                trace.backend, trace.upstream_secs = backend.name, time.perf_counter() - started
        if status != 200:
            raise _status_failure(status, content, backend, self._selector)
        _served(backend, self._selector)
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise BadGateway(f"backend {backend.name} sent an answer that is not a JSON object")
        return answer

    async def open_stream(self, model: Model, path: str, body: dict, request_id: str,
                          trace: Trace | None = None,
                          placement: Placement | None = None) -> "OpenStream":
        """A streaming call, once the backend has accepted it (status 200, headers read)."""
        deadline = asyncio.get_running_loop().time() + self._max_secs
        time_left = self._time_left(self._answer_timeout)

        async def once(backend: Backend, cap: float, prefill: int) -> OpenStream:
            return await self._open_once(backend, path, body, request_id, trace, deadline,
                                         time_left(), cap, prefill)
        return await self._attempts(model, trace, once, time_left, stream=True,
                                    placement=placement)

    async def _open_once(self, backend: Backend, path: str, body: dict, request_id: str,
                         trace: Trace | None, deadline: float, left: float,
                         cap: float, prefill: int = 0) -> "OpenStream":
        started = time.perf_counter()
        try:
            self._spent(left)
            resp = await self._post(backend, path, body, request_id, left, cap, stream=True)
        except BaseException as exc:
            self._breakers.abandon(backend.name)
            self._selector.release(backend, prefill)
            if isinstance(exc, TRANSPORT_ERRORS):
                raise _attempt_failure(exc, backend, self._selector) from None
            raise
        finally:
            if trace is not None:
                trace.backend, trace.upstream_secs = backend.name, time.perf_counter() - started
        if resp.status != 200:
            try:
                content = await resp.read()
            except TRANSPORT_ERRORS:
                content = b""
            finally:
                resp.close()
                self._selector.release(backend, prefill)
            raise _status_failure(resp.status, content, backend, self._selector)
        _served(backend, self._selector)
        return OpenStream(resp, backend, self._selector, deadline, self._max_secs, prefill)

    async def tokenize(self, model: Model, body: dict, request_id: str,
                       counter: ExactCount = TOKENIZE) -> int | None:
        """The backend's exact prompt token count (vLLM /tokenize, or the endpoint's own
        counting route), or None if it cannot say within TOKENIZE_SECS."""
        fields = {k: body[k] for k in counter.fields if k in body}
        if not isinstance(fields.get("prompt", ""), str):
            return None  # token ids are counted exactly already; lists of prompts are not supported
        try:
            answer = await self.forward(model, counter.path, {"model": model.served_name, **fields},
                                        request_id, limit=min(self._answer_timeout, TOKENIZE_SECS))
        except GatewayError:
            return None
        count = answer.get(counter.answer)
        return count if isinstance(count, int) else None


class OpenStream:
    """An accepted upstream stream; `close` frees the backend slot and the connection, once.

    `deadline` (event-loop time) is the request's hard cap: the relay stops reading there.
    `prefill` is the request's prefill estimate on the backend, given back at its first event.
    """

    def __init__(self, resp: Response, backend: Backend, selector: BackendSelector,
                 deadline: float, max_secs: float, prefill: int = 0) -> None:
        self.resp, self.backend, self._selector, self._closed = resp, backend, selector, False
        self.deadline, self.max_secs, self._prefill = deadline, max_secs, prefill

    def prefilled(self) -> None:
        """The first event came: the backend has prefilled the prompt."""
        if self._prefill:
            self._selector.prefilled(self.backend, self._prefill)
            self._prefill = 0

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a silence longer than the idle limit raises a timeout."""
        return self.resp.chunks()

    def failure(self, exc: BaseException) -> GatewayError:
        """A transport error mid-stream: the backend failed (counted), the client is told."""
        self._selector.breakers.failure(self.backend.name)
        self._selector.suspects.failed(self.backend.name)
        return transport_error(exc, self.backend)

    def overrun(self) -> GatewayError:
        return UpstreamTimeout(f"the request exceeded the gateway's limit of {self.max_secs:g} s")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._selector.release(self.backend, self._prefill)
        self._prefill = 0
        # Complete: the connection went back to the pool already. Cut short (client gone, idle
        # limit, deadline): closing the connection is what makes vLLM abort the generation.
        self.resp.close()
