"""What talking to a backend over HTTP can fail with.

BackendHTTPError
├── ConnectError        no connection: refused, unreachable, TLS handshake failed
├── ConnectTimeout      no connection within the connect timeout
├── PoolTimeout         no free slot under the connection cap in time (the gateway's limit)
├── ReadTimeout         the backend fell silent for longer than the read timeout
├── ConnectionDropped   the connection closed before the response was complete
└── ProtocolError       what came back is not HTTP/1.1

The request path turns these into the user-safe errors of `llmgw.errors`; no text here ever
reaches a client.
"""

from __future__ import annotations


class BackendHTTPError(Exception):
    pass


class ConnectError(BackendHTTPError):
    pass


class ConnectTimeout(BackendHTTPError):
    pass


class PoolTimeout(BackendHTTPError):
    pass


class ReadTimeout(BackendHTTPError):
    pass


class ConnectionDropped(BackendHTTPError):
    pass


class ProtocolError(BackendHTTPError):
    pass
