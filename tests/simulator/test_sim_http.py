"""HTTP/1.1 behaviour over raw sockets: keep-alive, Connection: close, chunked bodies, bad input."""

from __future__ import annotations

import json
import socket
import time

import pytest

pytestmark = pytest.mark.timeout(20)
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()


def request(body: bytes = BODY, extra: bytes = b"", path: bytes = b"/v1/chat/completions") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def read_response(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, leftover) of one Content-Length response."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest[:length], rest[length:]


def connect(sim) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    return s


def test_keep_alive_serves_many_requests_on_one_connection(chat_sim):
    with connect(chat_sim) as s:
        for _ in range(3):
            s.sendall(request())
            head, body, _ = read_response(s)
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["object"] == "chat.completion"


def test_connection_close_is_honoured(chat_sim):
    with connect(chat_sim) as s:
        s.sendall(request(extra=b"Connection: close\r\n"))
        head, _, _ = read_response(s)
        assert b"connection: close" in head.lower()
        assert s.recv(100) == b""  # server closed its side


def test_chunked_request_body(chat_sim):
    half = len(BODY) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:])
    with connect(chat_sim) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        head, body, _ = read_response(s)
        assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["usage"]["completion_tokens"] == 2


def test_pipelined_requests_answered_in_order(chat_sim):
    with connect(chat_sim) as s:
        s.sendall(request(path=b"/tokenize", body=b'{"prompt":"a b c"}') + request())
        head1, body1, rest = read_response(s)
        head2, body2, _ = read_response(s, rest)
        assert json.loads(body1)["count"] == 3 and json.loads(body2)["object"] == "chat.completion"


def test_malformed_http_gets_400_and_server_survives(chat_sim):
    with connect(chat_sim) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 400")
    with connect(chat_sim) as s:
        s.sendall(request(body=b"\xff\xfe not json"))
        head, body, _ = read_response(s)
        assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == 400
    assert chat_sim.http.get("/health").status_code == 200


def test_abrupt_client_close_mid_request_is_harmless(chat_sim):
    with connect(chat_sim) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"mess")
    assert chat_sim.http.get("/health").status_code == 200


def test_idle_keep_alive_connections_are_closed_like_uvicorn(start_sim):
    sim = start_sim("--keep-alive-timeout", "0.4")
    with connect(sim) as s:
        s.sendall(request(path=b"/tokenize", body=b'{"prompt":"a"}'))
        head, _, _ = read_response(s)
        assert head.startswith(b"HTTP/1.1 200")
        s.settimeout(3)
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server after ~0.4-0.5 s of idleness
        assert 0.3 < time.monotonic() - t0 < 2.0
