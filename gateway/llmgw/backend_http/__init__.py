"""The gateway's HTTP/1.1 client for its backends: pooled keep-alive connections (pool.py), one
request at a time on each (connection.py), and the errors they raise (errors.py).

Built for this one job rather than general use: vLLM's OpenAI server (uvicorn) answers every
request with Content-Length or chunked encoding, on keep-alive connections. In a one-off
measurement when it replaced aiohttp (not a repository benchmark: aiohttp is gone), aiohttp
spent about 400 µs of CPU per backend call where a bare protocol on the same socket spent
175 µs, most of it system calls; this client is that protocol.
"""

from .connection import Response
from .errors import (BackendHTTPError, ConnectError, ConnectionDropped, ConnectTimeout,
                     PoolTimeout, ProtocolError, ReadTimeout)
from .pool import BackendHTTP, Origin

__all__ = ["BackendHTTP", "Origin", "Response", "BackendHTTPError", "ConnectError",
           "ConnectTimeout", "PoolTimeout", "ReadTimeout", "ConnectionDropped", "ProtocolError"]
