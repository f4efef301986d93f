"""The peers of bench/peers_bench.py as processes: their venv, how each starts pinned to one
core, and what a process tree costs (CPU seconds and RSS read from /proc)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
from stack.processes import Proc, _spawn  # noqa: E402

REQUIREMENTS = ROOT / "bench" / "requirements-peers.txt"
VENV = ROOT / ".bench-peers"
TICK = os.sysconf("SC_CLK_TCK")


def peers_venv() -> Path:
    """The venv holding vllm-router and smg at the pinned versions, made (or remade, when the
    requirements file changed) on first use; its bin directory."""
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"installing {REQUIREMENTS.name} into {VENV.name}/ ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return VENV / "bin"


def versions(bin_dir: Path) -> dict[str, str]:
    out = subprocess.run([str(bin_dir / "pip"), "list", "--format=freeze",
                          "--disable-pip-version-check"], capture_output=True, text=True).stdout
    found = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {"vllm-router": found.get("vllm-router", "?"), "smg": found.get("smg", "?"),
            "nginx": nginx.split("/", 1)[-1]}


def pinned(core: str, argv: list[str]) -> list[str]:
    """argv started on one core: every thread it or its children make stays there, and runtimes
    that size their thread pools by the CPUs they may use (tokio) see one."""
    return ["taskset", "-c", core, *argv]


def vllm_router_argv(bin_dir: Path, port: int, workers: list[str], metrics_port: int) -> list[str]:
    return [str(bin_dir / "vllm-router"), "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *workers, "--policy", "round_robin",
            "--prometheus-port", str(metrics_port)]


def smg_argv(bin_dir: Path, port: int, workers: list[str], metrics_port: int, key: str) -> list[str]:
    return [str(bin_dir / "smg"), "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *workers, "--policy", "round_robin", f"--api-key={key}",
            "--disable-tokenizer-autoload", "--prometheus-port", str(metrics_port)]


NGINX_CONF = """daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {tmp}/nginx-access.log;  # the combined format: one line per request
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream sims {{  # round robin, nginx's default
        {servers}
        keepalive 64;  # idle upstream connections kept per worker
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sims;
            proxy_http_version 1.1;
            proxy_set_header Connection "";  # keep upstream connections open
            proxy_buffering off;  # events of a stream leave as they arrive
        }}
    }}
}}
"""


def nginx_argv(tmp: Path, port: int, workers: list[str]) -> list[str]:
    servers = "\n        ".join(f"server {w.split('//', 1)[1]};" for w in workers)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, servers=servers))
    return ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]


def spawn(name: str, argv: list[str], health: str, log_dir: Path) -> Proc:
    return Proc(name, _spawn(name, argv, dict(os.environ), log_dir), health)


def tree(root: int) -> list[int]:
    """root and every process under it."""
    parents: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        parents.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def pin_tree(root: int, core: int) -> None:
    """Every thread of root's tree onto one core (for a process started unpinned)."""
    for pid in tree(root):
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {core})


def cpu_secs(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        total += int(m.group(1)) if m else 0  # kernel threads and zombies have none
    return total / 1024
