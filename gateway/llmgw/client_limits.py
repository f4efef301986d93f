"""How much a client may send to the gateway's port, and how slowly: headers, deadlines.

uvicorn's httptools protocol bounds none of these: it took 100,000 header fields or a 60 MB
header (httptools gathers a field by concatenation, so that one also cost quadratic CPU), and
held a connection open for as long as its client sent a byte now and then, or nothing at all.
nginx bounds them in production, but the local stack and anything reaching the gateway's port
directly meet uvicorn alone. Refusals are answered here, before any request reaches the app,
in OpenAI's error shape, with `Connection: close`: 431 for headers too large or too many, 408
for a request too slow; a connection that never started a request, or whose refused request
would answer out of turn, is closed without a word (as nginx). An answer given before its
request's body was in full (a 413, a 401 before the body is read) closes the connection too:
the rest of the body would otherwise be read as the next request, or, once discarded, hold the
connection open past every deadline; the close lingers (lingering.py) so the answer arrives.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import GatewayError, HeadersTooLarge, InvalidRequest, RequestTimeout
from .lingering import LingeringTransport
from .request_id import new_request_id
from .settings import Settings

log = logging.getLogger("llmgw.edge")
Phase = Literal["idle", "head", "body"]  # between requests, reading headers, reading a body
# The ASGI scope key under which a request the app already has learns that it was refused here.
EDGE_REFUSAL = "llmgw.edge_refusal"
UPLOAD_PATHS = frozenset((b"/v1/files",))


@dataclass(frozen=True, slots=True)
class ClientLimits:
    max_header_bytes: int
    max_header_fields: int
    header_timeout_secs: float
    body_timeout_secs: float
    # File uploads (UPLOAD_PATHS) may be 200 times the size of other bodies: their own deadline.
    upload_timeout_secs: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClientLimits":
        return cls(settings.client_max_header_bytes, settings.client_max_header_fields,
                   settings.client_header_timeout_secs, settings.client_body_timeout_secs,
                   settings.files_upload_timeout_secs)


class _Refused(Exception):
    """Raised in a parser callback to stop httptools; uvicorn then calls send_400_response."""


class _UvicornLog(logging.LoggerAdapter):
    """uvicorn's logger for one connection, less its "Invalid HTTP request received." warning
    when the request was refused here: `_refuse` logs the real reason, and the warning would
    send an operator looking for a malformed request that never was."""

    def __init__(self, logger: logging.Logger, protocol: "BoundedHttpToolsProtocol") -> None:
        super().__init__(logger)
        self._protocol = protocol

    @property
    def level(self) -> int:  # uvicorn reads it to decide on its trace lines
        return self.logger.level

    def warning(self, msg, *args, **kwargs) -> None:
        if self._protocol._refusal is None:
            self.logger.warning(msg, *args, **kwargs)


def refusal_bytes(error: GatewayError, default_headers: list[tuple[bytes, bytes]],
                  request_id: str | None = None) -> bytes:
    """A whole answer written by the protocol, and the connection closes. Its id is the app's
    when the app has the request (so the client's answer matches the access line), else new."""
    body = error.body_bytes()
    head = [STATUS_LINE[error.status]]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
                b"x-request-id: %s\r\n\r\n" % (len(body), (request_id or new_request_id()).encode()))
    return b"".join(head) + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above.

    One deadline runs at a time: the headers' (from the opening of the connection, or the first
    byte of a later request: keep-alive idleness stays uvicorn's timer) or the body's (from the
    end of the headers). Time spent while uvicorn itself stopped reading (a pipelined request
    waiting its turn, a body the app is slow to take) is never counted against the client.

    A request is kept alive only if its body was in full when its answer began: until then its
    cycle's keep_alive is off, so uvicorn writes `connection: close` and closes after the answer.
    """

    def __init__(self, *args, limits: ClientLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _UvicornLog(self.logger, self)
        self.limits = limits
        self._phase: Phase = "idle"
        self._head_bytes = 0  # bytes of the current head seen so far (see data_received)
        self._header_fields = 0
        self._completed_in_feed = False
        self._refusal: GatewayError | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_phase: Phase = "idle"
        self._keep_alive_after_body = False  # what the client asked for, once its body is in
        self._upload = False  # the current request is a file upload (its body's deadline)
        self._closer: LingeringTransport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Mid-request, the client may still be sending: a close then lingers.
        self._closer = LingeringTransport(transport, self.loop, lambda: self._phase != "idle")
        super().connection_made(self.wrap_transport(self._closer))
        self._watch("head")  # the first request's headers are due from the opening, as in nginx

    def wrap_transport(self, transport: LingeringTransport) -> asyncio.Transport:
        """The transport uvicorn writes to; a subclass may wrap this one (it must pass close()
        on, after what it holds)."""
        return transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._watch("idle")
        self._closer.connection_lost()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._keep_alive_after_body = False  # uvicorn's shutdown turns keep-alive off for good
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._closer.is_closing():  # answered and closing: nothing more is parsed
            self._closer.discard(data)
            return
        # The whole chunk is head bytes only if no body was being read when it came and no
        # request ended within it (pipelining); otherwise it is not counted here, and
        # on_headers_complete still measures the finished head exactly.
        whole_chunk_is_head = self._phase != "body"
        self._completed_in_feed = False
        super().data_received(data)
        if self.transport.is_closing():
            return
        if whole_chunk_is_head and self._phase == "head" and not self._completed_in_feed:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._too_large())
                return
        if self._completed_in_feed:
            self._watch("idle")  # a request that began in this chunk gets a deadline of its own
        self._watch(self._phase)

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._header_fields = "head", 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > self.limits.max_header_fields:
            self._stop(HeadersTooLarge(f"more than {self.limits.max_header_fields} header fields"))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # Request line and fields as sent, give or take the method and version (a few bytes):
        # exact whatever the chunks were (a pipelined head shares one with the last request).
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._stop(self._too_large())
        self._phase = "body"
        self._upload = self.url.split(b"?", 1)[0] in UPLOAD_PATHS
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not for an upgrade (no new cycle)
            self._keep_alive_after_body, cycle.keep_alive = cycle.keep_alive, False

    def on_message_complete(self) -> None:
        self._phase, self._head_bytes, self._completed_in_feed = "idle", 0, True
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:  # the body is in before the answer
            cycle.keep_alive = self._keep_alive_after_body
        super().on_message_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if self._closer.is_closing() and cycle is not None:
            # Answered and closing: what was taken of a body nobody will read goes now, not
            # when the client lets go of the socket (up to 64 KiB or more per connection).
            cycle.body = bytearray()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools could not parse (or that a callback stopped)."""
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal or InvalidRequest(msg))

    # --- refusals and deadlines ---

    def _too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"request headers exceed {self.limits.max_header_bytes} bytes")

    def _stop(self, refusal: GatewayError) -> None:
        self._refusal = refusal
        raise _Refused

    def _refuse(self, refusal: GatewayError) -> None:
        log.warning("request refused at the edge: %s", refusal.code)
        self._watch("idle")
        if self._answering():
            # A refusal now would be read as the answer under way (a pipelined request's, or
            # a 401 sent before the body was read): no second answer, just stop.
            self.transport.close()
            return
        request_id = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app, if it has the request, must not answer too
            # It sees only a disconnect: this tells its access line and metrics what was said.
            self.cycle.scope[EDGE_REFUSAL] = refusal
            request_id = self.cycle.scope.get("state", {}).get("request_id")
        self.transport.write(refusal_bytes(refusal, self.server_state.default_headers, request_id))
        self.transport.close()

    def _watch(self, phase: Phase) -> None:
        """Run the deadline of `phase` ("idle": none); one that already runs keeps running."""
        if phase == self._deadline_phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_phase = phase
        if phase != "idle":
            self._deadline = self.loop.call_later(self._timeout(phase), self._expired)

    def _expired(self) -> None:
        phase, self._deadline, self._deadline_phase = self._deadline_phase, None, "idle"
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # uvicorn stopped reading, not the client: start again
            self._watch(phase)
        elif self._phase == "idle":  # never started a request: nothing to answer, as nginx
            self.transport.close()
        else:
            what = "headers" if phase == "head" else "body"
            self._refuse(RequestTimeout(f"the request's {what} took longer than "
                                        f"{self._timeout(phase):g} s to arrive"))

    def _answering(self) -> bool:
        """Whether an answer has begun that a refusal would garble: while a head is read, the
        previous request's (pipelined); while a body is read, this request's own."""
        cycle = self.cycle
        if cycle is None:
            return False
        return not cycle.response_complete if self._phase == "head" else cycle.response_started

    def _timeout(self, phase: Phase) -> float:
        if phase == "head":
            return self.limits.header_timeout_secs
        return self.limits.upload_timeout_secs if self._upload else self.limits.body_timeout_secs
