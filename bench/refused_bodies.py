"""What connections refused before their body was read cost the gateway: time to close, fds, RSS.

Starts its own stack (one gunicorn worker), then opens N connections that each send a whole
over-limit body (Content-Length or chunked, with its final chunk) to /v1/chat/completions with
a valid key, read the 413 and keep their socket open as a pooling client would. It reports how
long after the answer the gateway closed each one (EOF seen by the client), and the worker's
open fds and RSS before, just after, and `--wait` seconds later. Loopback only.

    .venv/bin/python bench/refused_bodies.py [--connections 300] [--wait 60] [--chunked]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from stacks import TestStack  # noqa: E402

BODY_BYTES = 1_150_000  # over MAX_BODY_BYTES (1 MiB), as in the report of issue 17
EOF_WAIT_SECS = 5.0  # how long a client waits for the close after its answer


def request(key: str, chunked: bool) -> bytes:
    body = b'{"model":"qwen","messages":[{"role":"user","content":"' + b"a" * BODY_BYTES + b'"}]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n")
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    return (head + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")


def one(port: int, payload: bytes, held: list) -> tuple[int, float | None]:
    """Send it all, read the answer; (status, seconds from the answer to EOF or None)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    held.append(sock)
    sender = threading.Thread(target=_send_all, args=(sock, payload), daemon=True)
    sender.start()
    seen = b""
    while b"\r\n\r\n" not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, None
        seen += chunk
    head, _, body = seen.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    answered = time.monotonic()
    sender.join()
    sock.settimeout(EOF_WAIT_SECS)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return int(head[9:12]), None
    except ConnectionResetError:
        pass
    return int(head[9:12]), time.monotonic() - answered


def _send_all(sock: socket.socket, payload: bytes) -> None:
    try:
        sock.sendall(payload)
    except OSError:
        pass  # the server may close before all of it is sent


def worker_state(master: int) -> dict:
    pid = int(subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                             text=True).stdout.split()[0])
    status = Path(f"/proc/{pid}/status").read_text()
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--wait", type=float, default=60)
    parser.add_argument("--chunked", action="store_true")
    args = parser.parse_args()
    stack = TestStack("sim", Path(tempfile.mkdtemp(prefix="llmgw-refused-")), workers=1).start()
    held: list[socket.socket] = []
    try:
        payload = request(stack.api_key, args.chunked)
        master = stack.gateway.popen.pid
        before = worker_state(master)
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: one(stack.cfg.gateway_port, payload, held),
                                    range(args.connections)))
        after = worker_state(master)
        time.sleep(args.wait)
        later = worker_state(master)
        closes = sorted(t for _, t in results if t is not None)
        print(json.dumps({
            "connections": args.connections, "chunked": args.chunked,
            "statuses": sorted({s for s, _ in results}),
            "closed_within_secs": EOF_WAIT_SECS, "closed": len(closes),
            "close_secs_max": round(closes[-1], 3) if closes else None,
            "close_secs_median": round(closes[len(closes) // 2], 3) if closes else None,
            "worker_before": before, "worker_after": after,
            f"worker_{args.wait:g}s_later": later}, indent=1))
    finally:
        for sock in held:
            sock.close()
        stack.stop()


if __name__ == "__main__":
    main()
