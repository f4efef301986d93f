"""A simulator subprocess handle for tests: start on a free port, talk to it, stop it."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time

import httpx

_READY = re.compile(r"ready on (http://[\d.]+:\d+)")


class Sim:
    """One `python -m vllm_sim` process; `url` is its base URL."""

    def __init__(self, *args: str, env: dict | None = None):
        argv = [sys.executable, "-m", "vllm_sim", "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        self.url = self._wait_ready(10.0)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def _wait_ready(self, timeout: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline, seen = time.monotonic() + timeout, b""
        while time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                line = self.proc.stdout.readline()
                seen += line
                m = _READY.search(line.decode())
                if m:
                    return m.group(1)
                if not line:
                    break
        self.proc.kill()
        raise RuntimeError(f"simulator did not start: {seen.decode(errors='replace')}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def post(self, path: str, body: dict, **kw) -> httpx.Response:
        return self.http.post(path, json=body, **kw)

    def faults(self, **changes) -> dict:
        r = self.http.post("/sim/faults", json=changes)
        assert r.status_code == 200, r.text
        return r.json()

    def stats(self) -> dict:
        return self.http.get("/sim/stats").json()

    def metric(self, name: str, **labels) -> float:
        """Value of one sample from /metrics (labels must match exactly the given subset)."""
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self):
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.stdout.close()
