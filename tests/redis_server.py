"""A throwaway redis-server on a free port, for tests of the pieces that talk to Redis."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from stacks import free_port


def start_redis(*extra: str) -> tuple[subprocess.Popen, int]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is required (make test installs it)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--enable-debug-command", "local", *extra], stdout=subprocess.DEVNULL)
    auth = ["-a", extra[extra.index("--requirepass") + 1]] if "--requirepass" in extra else []
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), *auth, "--no-auth-warning", "ping"],
                         capture_output=True).stdout != b"PONG\n":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc, port
