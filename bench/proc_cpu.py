"""CPU seconds used by the processes under this one, grouped by what they are (read from
/proc: utime + stime of every descendant, by its command line). Benches diff two readings
to say where the CPU of a phase went."""

from __future__ import annotations

import os
from pathlib import Path

# (group, substring of the command line); the first match names the process.
GROUPS = (("runner", "batches.main"), ("runner", "llmgw-batch-runner"), ("simulator", "vllm_sim"),
          ("gateway", "gunicorn"), ("gateway", "uvicorn"), ("gateway", "llmgw"),
          ("redis", "redis-server"), ("nginx", "nginx"))
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK  # ppid, utime + stime


def _group(pid: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((name for name, part in GROUPS if part in cmd), "other")


def reading(root: int | None = None) -> dict[str, float]:
    """CPU seconds so far per group, over `root` (default: this process) and its descendants;
    this process itself counts as "bench"."""
    root = root or os.getpid()
    stats = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := _stat(pid))}
    children: dict[int, list[str]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, float] = {"bench": stats.get(str(root), (0, 0.0))[1]}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        group = _group(pid)
        out[group] = out.get(group, 0.0) + stats[pid][1]
        todo.extend(children.get(int(pid), []))
    return out


def rate(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores used per group between two readings."""
    return {k: round((after.get(k, 0.0) - before.get(k, 0.0)) / seconds, 3)
            for k in sorted(set(before) | set(after))}
