"""The single-container entrypoint (python -m llmgw.single_host) run as a real process, outside
Docker: the simulator stands in for vLLM (BACKEND_COMMAND), a redis-server of its own inside.

Start and serve (a key made with gatewayctl), `gatewayctl smoke`, a backend killed with
SIGKILL (503 with Retry-After while it is down, restarted, serving again), SIGTERM (everything
stops, exit 0, no process left), and a bad setting (a clear message, nothing started).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy_support import ROOT
from stacks import free_port

MODEL = "tiny-chat"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
# The pause before the first restart: long enough to see the gateway's answer meanwhile.
RESTART_PAUSE_SECS = 2.0
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("gateway", "simulator"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    sim = f"{sys.executable} -m vllm_sim --port {{port}} --served-model-name {{served_model_name}}"
    return {"PATH": os.environ["PATH"], "PYTHONPATH": PYTHONPATH,
            "MODEL": MODEL, "BACKEND_COMMAND": sim, "ADMIN_TOKEN": secrets.token_urlsafe(24),
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(free_port()),
            "VLLM_PORT": str(free_port()), "REDIS_PORT": str(free_port()),
            "DATA_DIR": str(tmp_path / "data"),
            "GUNICORN_CONF": str(ROOT / "gateway" / "gunicorn.conf.py"),
            "GATEWAY_WORKERS": "2", "HEALTH_CHECK_INTERVAL_SECS": "0.5",
            "BACKEND_RESTART_MIN_SECS": str(RESTART_PAUSE_SECS),
            # Stopping at the end of a test: nothing is left to drain.
            "GRACEFUL_TIMEOUT_SECS": "5", **extra}


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


class SingleHost:
    def __init__(self, tmp_path: Path) -> None:
        self.env = _env(tmp_path)
        self.base_url = f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"
        self.log = tmp_path / "single-host.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "llmgw.single_host"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=tmp_path)
        self.seen: set[int] = set()  # every process it ever had, checked at the end

    def processes(self) -> set[int]:
        found = descendants(self.proc.pid)
        self.seen |= found
        return found

    def backend_pid(self) -> int | None:
        return next((p for p in self.processes() if "vllm_sim" in cmdline(p)), None)

    def ready(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmgw.ctl.main", *args],
                              env={**self.env, "GATEWAY_URL": self.base_url},
                              capture_output=True, text=True, timeout=120)

    def chat(self, key: str) -> httpx.Response:
        return httpx.post(self.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})

    def kill_all(self) -> None:
        for pid in self.processes() | {self.proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    running_host = SingleHost(tmp_path_factory.mktemp("single-host"))
    try:
        wait_for(lambda: running_host.proc.poll() is not None or running_host.ready(), 60,
                 "the gateway ready")
        assert running_host.proc.poll() is None, running_host.log.read_text()[-3000:]
        yield running_host
    finally:
        running_host.kill_all()  # a no-op once test_sigterm_stops_everything has run


@pytest.fixture(scope="module")
def api_key(host) -> str:
    made = host.ctl("org", "create", "single-host-test", "--json")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["api_key"]


def test_serves_a_chat_completion_with_a_key_from_gatewayctl(host, api_key):
    resp = host.chat(api_key)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == MODEL
    assert resp.json()["choices"][0]["message"]["content"]


def test_gatewayctl_smoke_passes(host):
    checked = host.ctl("smoke")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_killed_backend_is_restarted_and_answered_for_meanwhile(host, api_key):
    assert host.chat(api_key).status_code == 200
    old = host.backend_pid()
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    # Until chat works again, every answer is 503 backend_unavailable with a Retry-After.
    refusals = []
    while (resp := host.chat(api_key)).status_code != 200:
        refusals.append(resp)
        assert time.monotonic() - killed < 30, "chat not served again within 30 s"
        time.sleep(0.1)
    recovered = time.monotonic() - killed
    print(f"backend killed -> chat served again: {recovered:.1f} s "
          f"(restart pause {RESTART_PAUSE_SECS} s, {len(refusals)} refusals meanwhile)")
    assert refusals and recovered >= RESTART_PAUSE_SECS
    for down in refusals:
        assert down.status_code == 503, down.text
        assert int(down.headers["retry-after"]) >= 1
        assert down.json()["error"]["code"] == "backend_unavailable"
    new = host.backend_pid()
    assert new not in (None, old)
    log = host.log.read_text()
    assert "backend was killed by SIGKILL" in log and "restarting backend in 2.0 s" in log


def test_sigterm_stops_everything_in_order_and_exits_0(host):
    wait_for(host.ready, 30, "the gateway ready")  # each worker probes the backend itself
    host.processes()
    assert len(host.seen) >= 5  # redis, the backend, gunicorn's master and its 2 workers
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(60) == 0, host.log.read_text()[-3000:]
    wait_for(lambda: not any(running(p) for p in host.seen), 10, "no process left")
    log = host.log.read_text()
    order = [log.index(f"stopping {name}") for name in ("gateway", "backend", "redis")]
    assert order == sorted(order)


@pytest.mark.parametrize("setting, message", [
    ({"VLLM_PORT": "eighty"}, "VLLM_PORT: Input should be a valid integer"),
    ({"MODEL": "", "MODEL_ENDPOINTS": "chat,talk"}, "MODEL_ENDPOINTS: must list endpoints"),
    ({"BACKEND_RESTART_MIN_SECS": "90"}, "BACKEND_RESTART_MIN_SECS cannot exceed"),
    ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN: Value error, ADMIN_TOKEN must be at least 16"),
])
def test_a_bad_setting_stops_start_up_with_a_clear_message(tmp_path, setting, message):
    env = _env(tmp_path, **setting)
    done = subprocess.run([sys.executable, "-m", "llmgw.single_host"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert "started" not in done.stderr  # no process was started
