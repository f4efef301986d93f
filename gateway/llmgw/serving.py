"""The inference request path, top to bottom: scope, body, schema, model, cost, admission,
backend, answer, settlement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from .admission.cost import Cost, check_bounds, output_budget
from .admission.gate import Ticket
from .admission.overlap import admit_beside, free_if_finished
from .body import read_json_object
from .batches.lane import check_priority, require_batch_scope
from .cache.lookup import BYPASS, Bypass, Lookup
from .cache.store import CachedAnswer
from .endpoints import EndpointSpec
from .errors import BadInput, GatewayError, StateUnavailable
from .messages.stream import MessagesMeter
from .observability.trace import Trace
from .placement.policy import Placement
from .protocol import validate
from .responses.conversation import Turn
from .responses.store import StoredResponse, TooLarge
from .responses.stream import ResponsesMeter
from .routing import Model
from .services import Services
from .streaming import RelayResponse, StreamMeter, relay
from .upstream import OpenStream
from .tenancy.auth import Principal
from .tenancy.limits import Limits

# The gateway always asks for usage on every chunk: a stream cut short still reports what
# it generated. What the client did not ask for is removed on the way out.
METERED = {"include_usage": True, "continuous_usage_stats": True}
T = TypeVar("T")
log = structlog.get_logger("llmgw.serving")


async def serve(request: Request, services: Services, principal: Principal,
                endpoint: EndpointSpec) -> Response:
    require_batch_scope(principal, endpoint.scope)
    body = await read_json_object(request, services.settings.max_body_bytes)
    parsed = validate(endpoint.request, body)
    model = services.routing.resolve(body.get("model"), endpoint.serves,
                                     principal.may_use if principal.restricted else None)
    if principal.batch is not None:
        services.batch_lane.check_room(model)  # refused at once while realtime needs the room
    if model.pool.priority_scheduling:
        check_priority(principal, body)  # batch lines wait behind realtime requests there
    body["model"] = model.served_name
    request_id = request.state.request_id
    trace: Trace = request.state.trace
    # Only an endpoint with a stream format streams: `stream` elsewhere is an unknown field.
    trace.model = model.name
    trace.stream = endpoint.events is not None and bool(getattr(parsed, "stream", False))
    # A Responses API turn carries its stored conversation (404 if it is not this org's).
    turn = await Turn.begin(body, principal.org_id, services.responses) \
        if endpoint.conversation else None
    if services.settings.log_content:
        trace.content = _content(body)[:2000]
    cost = await _cost(services, model, endpoint, body, principal.limits, request_id)
    # A batch line neither reads nor fills the cache: a hit would bill outside bill-once.
    cached = BYPASS if principal.batch is not None else services.cache.plan(
        principal.org_id, endpoint, model.name, body, request.headers.get("cache-control"))
    try:
        hit = await cached.find()
        lane = "" if principal.batch is None else "batch/"  # usage shows batch on its own
        admission = _Admission(services, principal, cost.reserve, request_id,
                               f"{principal.key_id}|{model.name}|{lane}{endpoint.name}|", trace,
                               cached)
        if hit is not None:
            return await _from_cache(services, admission, cached, hit, body)
        # None: placed by request counts
        placement = model.pool.policy.place(body, request.headers, model.prefix_salt)
        if trace.stream:
            return await _stream(services, model, endpoint, body, admission, cached,
                                 placement, turn)
        return await _answer(services, model, endpoint, body, admission, cached,
                             placement, turn)
    finally:
        cached.close()  # identical requests waiting on this call get its answer, or call themselves


class _Admission:
    """This request's admission, asked for on first use: alone (a cache hit), or beside the
    backend call when the key has room (admission/overlap.py)."""

    def __init__(self, services: Services, principal: Principal, reserve: int, request_id: str,
                 meter_key: str, trace: Trace, cached: Bypass) -> None:
        self._gate, self._principal, self._reserve = services.admission, principal, reserve
        self.org_id, self.batch = principal.org_id, principal.batch is not None
        self.request_id, self.meter_key, self.trace, self._cached = request_id, meter_key, trace, cached

    async def final(self, billed: int, usage: dict[str, int]) -> Ticket:
        """A request answered without a backend: admitted and settled in one step."""
        return self._label(await self._gate.admit(self._principal, billed, self.request_id, usage))

    async def beside(self, call: Callable[[], Awaitable[T]],
                     discard: Callable[[T], Awaitable[None]] | None = None) -> tuple[Ticket, Awaitable[T]]:
        early = self._gate.may_start_early(self._principal)
        ticket, pending = await admit_beside(self._admit(), call, early=early, discard=discard)
        return self._label(ticket), pending

    def _admit(self) -> Awaitable[Ticket]:
        return self._gate.admit(self._principal, self._reserve, self.request_id)

    def _label(self, ticket: Ticket) -> Ticket:
        ticket.trace, ticket.meter_key = self.trace, self.meter_key
        ticket.headers.update(self._cached.headers)
        self._cached.count(self.trace)
        return ticket


async def _cost(services: Services, model: Model, endpoint: EndpointSpec, body: dict,
                limits: Limits, request_id: str) -> Cost:
    prompt, prompts = endpoint.prompt(body)
    max_tokens, n = output_budget(endpoint.output, body, limits)
    cost = Cost(prompt, n * prompts if max_tokens else 0, max_tokens)
    try:
        check_bounds(cost, limits)
    except BadInput:
        # Refuse on the exact count only: the estimate is an upper bound, not the truth.
        if endpoint.output is None:  # /tokenize counts a chat or completion prompt only
            raise
        exact = await services.upstream.tokenize(model, body, request_id, endpoint.counter)
        if exact is None or exact >= cost.prompt:
            raise
        cost.prompt = exact
        check_bounds(cost, limits)
    return cost


def _content(body: dict) -> str:
    """The text a content log shows: the last message, or the prompt, input or query."""
    if body.get("messages"):
        content = body["messages"][-1].get("content")
        return content if isinstance(content, str) else orjson.dumps(content).decode()
    value = body.get("prompt", body.get("input", body.get("query", "")))
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _used(usage: dict | None) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return 0, 0
    # chat and completions say prompt/completion tokens; the Responses API input/output
    prompt = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
    completion = usage.get("completion_tokens") or usage.get("output_tokens") or 0
    if not completion and usage.get("total_tokens"):
        prompt = usage["total_tokens"]  # rerank reports only a total
    return int(prompt), int(completion)


def _usage(meter_key: str, outcome: str, prompt: int, completion: int,
           cache_hit: bool = False) -> dict[str, int]:
    """The usage fields a request adds to its organisation's hourly and daily buckets."""
    usage = {meter_key + "requests": 1, meter_key + outcome: 1,
             meter_key + "prompt_tokens": prompt, meter_key + "completion_tokens": completion}
    if cache_hit:
        usage[meter_key + "cache_hits"] = 1
    return usage


def _meter(services: Services, ticket: Ticket, prompt: int, completion: int) -> None:
    trace, metrics = ticket.trace, services.metrics
    trace.prompt_tokens, trace.completion_tokens = prompt, completion
    org = metrics.org(ticket.org_id)
    counters = (metrics.tokens, metrics.batch_tokens) if ticket.batch else (metrics.tokens,)
    for counter in counters:
        if prompt:  # each is a multiprocess file write: none for nothing (a hit bills no tokens)
            counter.labels(*org, trace.model, "input").inc(prompt)
        if completion:
            counter.labels(*org, trace.model, "output").inc(completion)


def _settle(services: Services, ticket: Ticket, outcome: str, usage: dict | None,
            *, wait: bool = False) -> Awaitable[bool] | None:
    """Settle in the background; with `wait`, hand back the awaitable saying whether Redis
    took the settlement."""
    prompt, completion = _used(usage)
    _meter(services, ticket, prompt, completion)
    ticket.usage = _usage(ticket.meter_key, outcome, prompt, completion)
    settling = services.admission.settle(ticket, prompt + completion)
    if wait:
        return settling
    services.tasks.spawn(settling)
    return None


async def _from_cache(services: Services, admission: _Admission, cached: Lookup,
                      hit: CachedAnswer, body: dict) -> Response:
    """A hit counts as a request, and bills tokens only with CACHE_HIT_BILLING=tokens. It holds
    no backend, so its admission takes no lease and counts its usage: nothing to settle."""
    prompt, completion = _used(cached.billed_usage(hit))
    ticket = await admission.final(prompt + completion, _usage(admission.meter_key, "success",
                                                               prompt, completion, cache_hit=True))
    _meter(services, ticket, prompt, completion)
    return cached.response(hit, ticket.headers, body.get("stream_options"))


async def _answer(services: Services, model: Model, endpoint: EndpointSpec, body: dict,
                  admission: _Admission, cached: Bypass,
                  placement: Placement | None, turn: Turn | None) -> Response:
    async def forward() -> dict:
        return await services.upstream.forward(model, endpoint.backend_path, body,
                                               admission.request_id,
                                               admission.trace, placement=placement)
    if admission.batch:  # a batch line gives its backend back when realtime needs it
        forward = services.batch_lane.preemptible(forward, admission.trace)

    ticket, answering = await admission.beside(forward)
    try:
        answer = await answering
        if endpoint.names_model:
            answer["model"] = model.name
        if turn is not None:
            await _keep(services, admission.org_id, turn.answered(answer))
        payload = cached.fill(orjson.dumps(answer))
    except BaseException as exc:
        _refund(services, ticket, exc)
        raise
    billing = _settle(services, ticket, "success", endpoint.usage(answer), wait=ticket.batch)
    if billing is not None and not await billing:
        # A batch line's answer never outruns its bill: unbilled, the runner runs it again
        # (billed once then; a settlement that did land makes the rerun free).
        raise StateUnavailable()
    return Response(payload, media_type="application/json", headers=ticket.headers)


async def _stream(services: Services, model: Model, endpoint: EndpointSpec, body: dict,
                  admission: _Admission, cached: Bypass,
                  placement: Placement | None, turn: Turn | None) -> Response:
    meter = _stream_meter(services, model, endpoint, body, admission, cached, turn)

    async def open_stream() -> OpenStream:
        return await services.upstream.open_stream(model, endpoint.backend_path, body,
                                                   admission.request_id, admission.trace,
                                                   placement=placement)

    ticket, opening = await admission.beside(open_stream, discard=OpenStream.close)
    try:
        stream = await opening
    except BaseException as exc:
        await free_if_finished(opening, OpenStream.close)
        _refund(services, ticket, exc)
        raise

    def finished() -> None:
        """The backend's stream has ended: settled before its last block leaves."""
        _settle(services, ticket, "success", meter.usage)
        cached.fill_stream(meter.usage)

    async def finish() -> None:
        await stream.close()
        if ticket.done:
            return  # settled as the stream ended
        if meter.failed:  # the backend broke: refund
            _settle(services, ticket, "error_bad_gateway", None)
        else:  # the client left, or the stream stopped short: bill what was generated
            _settle(services, ticket, "success" if meter.finished else "error_client_closed",
                    meter.usage)
            if meter.finished:
                cached.fill_stream(meter.usage)

    return RelayResponse(relay(stream, meter, finished), headers=ticket.headers, on_close=finish)


def _stream_meter(services: Services, model: Model, endpoint: EndpointSpec, body: dict,
                  admission: _Admission, cached: Bypass, turn: Turn | None):
    """The meter of the endpoint's stream format (what it reads and rewrites per event). Chat
    and completions streams are asked for usage on every chunk; Responses and Messages
    streams carry theirs anyway (vLLM asks itself for it behind /v1/messages)."""
    if endpoint.events == "messages":
        return MessagesMeter(model.name)
    if turn is not None:
        return ResponsesMeter(model.name, turn, lambda kept: _keep(services, admission.org_id, kept))
    asked = body.get("stream_options") or {}
    body["stream_options"] = {**asked, **METERED}
    return StreamMeter(model.name, keep_final_usage=bool(asked.get("include_usage")),
                       keep_each_usage=bool(asked.get("continuous_usage_stats")),
                       collector=cached.collector())


async def _keep(services: Services, org_id: str, kept: StoredResponse) -> None:
    """Store a Responses answer its client asked to keep; if it cannot be, the answer says
    `store: false` (and why in the log), so the client knows not to chain it."""
    if not kept.response.get("store"):
        return
    try:
        await services.responses.put(org_id, kept)
    except (TooLarge, RedisError, OSError) as exc:
        kept.response["store"] = False
        log.warning("response_not_stored", response_id=kept.response.get("id"),
                    reason=type(exc).__name__)


def _refund(services: Services, ticket: Ticket, exc: BaseException) -> None:
    """The backend call failed (or the request was cancelled): nothing is billed, the lease
    goes back, and an error answer carries the rate-limit headers too."""
    if isinstance(exc, GatewayError):
        _settle(services, ticket, f"error_{exc.code}", None)
        exc.headers.update(ticket.headers)
    else:
        _settle(services, ticket, "error_cancelled", None)
