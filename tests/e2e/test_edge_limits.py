"""What a client may send to the gateway's own port, and how slowly: raw sockets against real
gunicorn with no nginx in front (as the local stack exposes it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from stack.processes import ROOT, Proc, stop, wait_healthy
from stack.topology import gateway_env
from stacks import TestStack, free_port

# Short deadlines so a refused connection shows within seconds; every bound asserted below
# leaves a wide margin over them for a loaded two-core machine.
DEADLINE_SECS = 2
ENV = {"CLIENT_HEADER_TIMEOUT_SECS": str(DEADLINE_SECS),
       "CLIENT_BODY_TIMEOUT_SECS": str(DEADLINE_SECS)}
BOUND_SECS = DEADLINE_SECS + 13
POST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CHAT = b'{"model":"qwen","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("edge"), workers=1, env=ENV,
                      sim_args=("--ttft-ms", "5", "--itl-ms", "2")).start()
    yield stack
    stack.stop()


def _connect(stack: TestStack, port: int | None = None) -> socket.socket:
    port = port or stack.cfg.gateway_port
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND_SECS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; fails past the bound."""
    start, data = time.monotonic(), b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            pytest.fail(f"the gateway held the connection open for {BOUND_SECS} s; "
                        f"got {data[:200]!r}")
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def _send_in_background(sock: socket.socket, pieces) -> threading.Thread:
    """Writes until the server stops reading (it may close before everything is sent)."""
    def run():
        try:
            for piece in pieces:
                sock.sendall(piece)
        except OSError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def _openai_error(answer: bytes, status: int, code: str) -> None:
    assert _status(answer) == status, answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower()
    assert head.lower().count(b"\r\nx-request-id: ") == 1
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code


def _access_line(stack: TestStack, request_id: str) -> dict:
    """The gateway's access line for a request (written just after the answer: wait for it)."""
    for _ in range(50):
        for line in (stack.logs / "gateway.log").read_text().splitlines():
            if f'"request_id":"{request_id}"' in line and '"event":"request"' in line:
                return orjson.loads(line)
        time.sleep(0.1)
    pytest.fail(f"no access line for {request_id}")


def _send_too_many_fields(sock: socket.socket) -> bytes:
    def pieces():
        yield b"GET /livez HTTP/1.1\r\nHost: x\r\n"
        for chunk in range(100):
            yield b"".join(b"X-F%d: v\r\n" % (chunk * 1000 + i) for i in range(1000))
        yield b"\r\n"
    _send_in_background(sock, pieces())
    return _read_until_closed(sock)[0]


def test_too_many_header_fields_get_431(edge):
    log = edge.logs / "gateway.log"
    misleading = log.read_text().count("Invalid HTTP request received.")
    with _connect(edge) as sock:
        answer = _send_too_many_fields(sock)
    _openai_error(answer, 431, "headers_too_large")
    # Logged with its reason, not as the malformed request uvicorn would call it.
    time.sleep(0.2)
    text = log.read_text()
    assert "request refused at the edge: headers_too_large" in text
    assert text.count("Invalid HTTP request received.") == misleading


def test_the_worker_class_is_bounded_without_gunicorn_conf(edge, tmp_path):
    """`gunicorn -k llmgw.worker.GatewayWorker`, no config file and so no hooks: the limits
    come with the worker class (they once came from a post_fork hook only)."""
    port = free_port()
    env = {**os.environ, **edge.cfg.env, **gateway_env(edge.specs), "REDIS_URL": edge.redis_url,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with open(tmp_path / "bare.log", "ab") as log:
        popen = subprocess.Popen(
            [gunicorn, "-k", "llmgw.worker.GatewayWorker", "-w", "1", "-b", f"127.0.0.1:{port}",
             "llmgw.app:create_app()"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy([Proc("bare", popen, f"http://127.0.0.1:{port}/healthz")], 60, tmp_path)
        with _connect(edge, port) as sock:
            answer = _send_too_many_fields(sock)
    finally:
        stop([popen.pid], grace=10)
    _openai_error(answer, 431, "headers_too_large")


def test_a_refused_pipelined_request_never_answers_out_of_turn(edge):
    """Two requests in one write, the second with too many fields: the first's answer is due
    first, so a 431 now would be read as its answer. The connection just closes (as nginx)."""
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
    with _connect(edge) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /livez HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        answer, _ = _read_until_closed(sock)
    assert answer == b"" or (answer.startswith(b"HTTP/1.1 200 ")
                             and answer.count(b"HTTP/1.1 ") == 1), answer[:300]


@pytest.mark.parametrize("one_field", [True, False], ids=["one-huge-field", "many-lines"])
def test_a_60_mb_header_gets_431_long_before_it_is_sent(edge, one_field):
    sent = []
    with _connect(edge) as sock:
        def pieces():
            yield b"GET /livez HTTP/1.1\r\nHost: x\r\n" + (b"X-Big: " if one_field else b"")
            for _ in range(60 * 16):  # 60 MiB in 64 KiB writes
                sent.append(1)
                yield b"a" * 65536 if one_field else b"X-Line: " + b"a" * 65526 + b"\r\n"
            yield b"\r\n\r\n"
        _send_in_background(sock, pieces())
        answer, _ = _read_until_closed(sock)
    _openai_error(answer, 431, "headers_too_large")
    assert len(sent) < 60 * 16 // 4, "the gateway read most of the header before refusing it"


def test_headers_sent_slowly_get_408(edge):
    with _connect(edge) as sock:
        def pieces():
            yield b"GET /livez HTTP/1.1\r\nHost: x\r\n"
            for i in range(4 * BOUND_SECS):  # a header line every 0.25 s: never idle, never done
                time.sleep(0.25)
                yield b"X-Slow-%d: v\r\n" % i
        _send_in_background(sock, pieces())
        answer, took = _read_until_closed(sock)
    _openai_error(answer, 408, "request_timeout")
    assert took >= DEADLINE_SECS * 0.9


def test_a_connection_that_sends_nothing_is_closed(edge):
    with _connect(edge) as sock:
        answer, took = _read_until_closed(sock)
    assert answer == b"" and took >= DEADLINE_SECS * 0.9


def test_a_body_sent_slowly_gets_408(edge):
    head = (POST + b"Authorization: Bearer " + edge.api_key.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(CHAT))
    with _connect(edge) as sock:
        def pieces():
            yield head
            for i in range(len(CHAT)):  # a byte every 0.25 s: never idle, done after ~20 s
                yield CHAT[i:i + 1]
                time.sleep(0.25)
        _send_in_background(sock, pieces())
        answer, took = _read_until_closed(sock)
    _openai_error(answer, 408, "request_timeout")
    assert took >= DEADLINE_SECS * 0.9
    # The app had the request and saw only a disconnect; it records what the client was told.
    request_id = answer.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
    line = _access_line(edge, request_id)
    assert (line["status"], line["error"]) == (408, "request_timeout"), line


def test_a_refused_requests_slow_body_is_cut_off_too(edge):
    """Answered (401) before its body was read; the rest of the body may not trickle forever."""
    with _connect(edge) as sock:
        def pieces():
            yield (POST + b"Content-Length: 1000\r\n\r\n{")
            for _ in range(999):
                time.sleep(0.25)
                yield b" "
        _send_in_background(sock, pieces())
        answer, _ = _read_until_closed(sock)
    assert _status(answer) == 401


def test_a_huge_declared_body_is_413_at_once(edge):
    with _connect(edge) as sock:
        sock.sendall(POST + b"Authorization: Bearer " + edge.api_key.encode() + b"\r\n"
                     b"Content-Length: 62914560\r\n\r\n{")
        answer, _ = _read_until_closed(sock)  # the 413, then the body deadline closes
    assert _status(answer) == 413 and b'"request_too_large"' in answer


# Over MAX_BODY_BYTES (1 MiB), as in issue 17's report.
BIG = b'{"model":"qwen","messages":[{"role":"user","content":"' + b"a" * 1_150_000 + b'"}]}'


def _big_request(stack: TestStack, chunked: bool) -> bytes:
    head = POST + b"Authorization: Bearer " + stack.api_key.encode() + b"\r\n"
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(BIG) + BIG
    pieces = [BIG[i:i + 65536] for i in range(0, len(BIG), 65536)]
    return (head + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")


def _answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole answer (head, body) with a Content-Length, and nothing after it."""
    seen = b""
    while b"\r\n\r\n" not in seen:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {seen[:200]!r}"
        seen += chunk
    head, _, body = seen.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    assert len(body) == length, "more than one answer"
    return head, body


def _closed_within(sock: socket.socket, secs: float) -> bool:
    """Whether the server ends the connection within `secs`, sending nothing more."""
    sock.settimeout(secs)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_over_limit_body_sent_in_full_gets_413_and_the_connection_closes(edge, chunked):
    """Issue 17: the 413 came at once, but the body was then read and dropped and the
    connection held for good (the keep-alive timer was never armed again)."""
    with _connect(edge) as sock:
        sender = _send_in_background(sock, [_big_request(edge, chunked)])
        head, body = _answer(sock)
        sender.join(BOUND_SECS)  # all of it was sent: the gateway read it, or lingered over it
        assert _status(head) == 413 and b'"request_too_large"' in body
        assert b"\r\nconnection: close" in head.lower()
        assert _closed_within(sock, 1.0), "the connection outlived its 413 by a second"


def test_a_request_pipelined_behind_a_refused_body_is_not_served(edge):
    """The 413 says `connection: close`; what follows it on the connection is dropped, never
    parsed (a leftover of the refused body must not pass for a request either)."""
    with _connect(edge) as sock:
        _send_in_background(sock, [_big_request(edge, False)
                                   + b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"])
        answers, _ = _read_until_closed(sock)
    assert _status(answers) == 413 and answers.count(b"HTTP/1.1 ") == 1, answers[:300]


def test_an_answer_before_the_body_closes_and_one_after_it_keeps_alive(edge):
    """A 401 given while the body is still on its way closes the connection; the same 401
    for a body already in keeps it open for the next request."""
    head = POST + b"Authorization: Bearer sk-wrong\r\nContent-Length: %d\r\n\r\n" % len(CHAT)
    with _connect(edge) as sock:
        sock.sendall(head)  # the body follows only after the answer
        answer_head, _ = _answer(sock)
        assert _status(answer_head) == 401 and b"\r\nconnection: close" in answer_head.lower()
        sock.sendall(CHAT)
        assert _closed_within(sock, 1.0)
    with _connect(edge) as sock:
        for _ in range(2):
            sock.sendall(head + CHAT)
            answer_head, _ = _answer(sock)
            assert _status(answer_head) == 401 and b"connection: close" not in answer_head.lower()


def _worker_fds(stack: TestStack) -> int:
    master = stack.gateway.popen.pid
    worker = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return len(os.listdir(f"/proc/{worker.stdout.split()[0]}/fd"))


def test_refused_connections_are_let_go_though_their_clients_keep_them(edge):
    """Clients that keep their sockets after the 413 (as a pool does): the worker holds
    none of them a few seconds later (it held every one, and its memory, for good)."""
    request = _big_request(edge, False)
    before = _worker_fds(edge)
    held = [_connect(edge) for _ in range(40)]
    try:
        for sock in held:
            sender = _send_in_background(sock, [request])
            assert _status(_answer(sock)[0]) == 413
            sender.join(BOUND_SECS)
        for _ in range(100):
            if _worker_fds(edge) <= before + 2:
                break
            time.sleep(0.1)
        assert _worker_fds(edge) <= before + 2, (before, _worker_fds(edge))
    finally:
        for sock in held:
            sock.close()


def test_normal_traffic_is_untouched(edge):
    """Keep-alive across idle gaps longer than the deadlines, a stream outlasting them, a large
    but legal header, and a body that arrives in pieces within its deadline."""
    with httpx.Client(base_url=edge.base_url, timeout=30, headers=edge.auth,
                      limits=httpx.Limits(max_connections=1)) as client:
        first = client.post("/v1/chat/completions", content=CHAT,
                            headers={"content-type": "application/json", "x-pad": "p" * 20_000})
        assert first.status_code == 200, first.text
        time.sleep(DEADLINE_SECS + 1)  # idle on the same connection: keep-alive, not a header wait
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "qwen", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "max_tokens": 40}) as resp:
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert resp.status_code == 200 and events[-1] == "data: [DONE]"
        assert len(events) > 10

        def slow_pieces():
            for i in range(0, len(CHAT), 20):
                time.sleep(0.1)
                yield CHAT[i:i + 20]
        again = client.post("/v1/chat/completions", content=slow_pieces(),
                            headers={"content-type": "application/json"})
        assert again.status_code == 200, again.text
    with _connect(edge) as sock:  # raw keep-alive: requests one by one, then two pipelined
        for _ in range(2):
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _status(sock.recv(65536)) == 200
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 8000) for i in range(12))  # ~96 KB, legal
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n"
                     b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers, _ = _read_until_closed(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 2, answers[:300]


def test_a_stream_longer_than_the_deadlines_completes(edge):
    for name in ("chat0", "chat1"):
        httpx.post(edge.backend_url(name) + "/sim/faults", json={"itl_ms": 150}).raise_for_status()
    try:
        start = time.monotonic()
        with httpx.stream("POST", edge.base_url + "/v1/chat/completions", timeout=30,
                          headers=edge.auth,
                          json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                                "stream": True, "max_tokens": 20}) as resp:
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert resp.status_code == 200 and events[-1] == "data: [DONE]"
        assert time.monotonic() - start > DEADLINE_SECS  # it did outlast them
    finally:
        for name in ("chat0", "chat1"):
            faults = edge.backend_url(name) + "/sim/faults"
            httpx.post(faults, json={"reset": True}).raise_for_status()
