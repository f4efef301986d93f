"""Redis as it runs past one host, from Debian's redis-server on loopback: a primary, a replica
and three sentinels (`SentinelGroup`), or a cluster of primaries (`Cluster`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stacks import free_port

MASTER_NAME = "llmgw"
DOWN_AFTER_MS = 1000  # how long a silent primary takes to count as down


def _cli(port: int, *args: str, password: str | None = None) -> str:
    auth = ["-a", password, "--no-auth-warning"] if password else []
    out = subprocess.run(["redis-cli", "-p", str(port), *auth, *args], capture_output=True,
                         text=True, timeout=10)
    return out.stdout.strip()


def _wait(check, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


class _Servers:
    def __init__(self, root: Path) -> None:
        if not shutil.which("redis-server"):
            pytest.fail("redis-server is required (make test installs it)")
        self.root = root
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, name: str, *args: str, conf: str | None = None,
              password: str | None = None) -> int:
        port = free_port()
        work = self.root / f"{name}-{port}"
        work.mkdir(parents=True)
        argv = ["redis-server"]
        if conf is not None:  # a sentinel rewrites its configuration file: one of its own
            (work / "redis.conf").write_text(conf.replace("PORT", str(port)))
            argv += [str(work / "redis.conf")]
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(work), *args]
        log = open(work / "log", "wb")
        self.procs[port] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait(lambda: _cli(port, "ping", password=password) == "PONG",
              f"{name} on {port} answers")
        return port

    def kill(self, port: int) -> None:
        """SIGKILL: the host is gone, nothing is flushed."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs.clear()


class SentinelGroup(_Servers):
    """A primary, one replica and three sentinels watching them (quorum 2); with `password`,
    the data nodes and the sentinels each ask for it."""

    def __init__(self, root: Path, *, down_after_ms: int = DOWN_AFTER_MS,
                 password: str | None = None) -> None:
        super().__init__(root)
        self.password = password
        try:
            self._start_all(down_after_ms, password)
        except BaseException:
            self.stop()  # leave no server behind a start that failed half way
            raise

    def _start_all(self, down_after_ms: int, password: str | None) -> None:
        auth = ("--requirepass", password, "--masterauth", password) if password else ()
        self.primary = self.start("primary", "--save", "", "--appendonly", "no", *auth,
                                  password=password)
        self.replica = self.start("replica", "--save", "", "--appendonly", "no", *auth,
                                  "--replicaof", "127.0.0.1", str(self.primary),
                                  password=password)
        _wait(lambda: "master_link_status:up" in self._cli(self.replica, "info", "replication"),
              "the replica in sync")
        conf = (f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n")
        if password:
            conf += f"sentinel auth-pass {MASTER_NAME} {password}\nrequirepass {password}\n"
        self.sentinels = [self.start("sentinel", "--sentinel", conf=conf, password=password)
                          for _ in range(3)]
        _wait(lambda: all(self._sees_everyone(s) for s in self.sentinels),
              "every sentinel sees the replica and the other sentinels")

    def _cli(self, port: int, *args: str) -> str:
        return _cli(port, *args, password=self.password)

    def _sees_everyone(self, sentinel: int) -> bool:
        info = self._cli(sentinel, "sentinel", "master", MASTER_NAME).split("\n")
        fields = dict(zip(info[::2], info[1::2]))
        return fields.get("num-slaves") == "1" and fields.get("num-other-sentinels") == "2"

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinels)

    def named_primary(self) -> int | None:
        """The primary's port as the first sentinel names it."""
        reply = self._cli(self.sentinels[0], "sentinel", "get-master-addr-by-name", MASTER_NAME)
        parts = reply.split("\n")
        return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None


class Cluster(_Servers):
    """`shards` primaries with the 16,384 slots split among them, no replicas."""

    def __init__(self, root: Path, shards: int = 3) -> None:
        super().__init__(root)
        try:
            self._start_all(shards)
        except BaseException:
            self.stop()  # leave no server behind a start that failed half way
            raise

    def _start_all(self, shards: int) -> None:
        # The cluster bus on a port of its own: port + 10,000 may be taken, or past 65,535.
        self.ports = [self.start("shard", "--cluster-enabled", "yes", "--save", "",
                                 "--appendonly", "no", "--cluster-node-timeout", "2000",
                                 "--cluster-port", str(free_port()))
                      for _ in range(shards)]
        if shards == 1:
            _cli(self.ports[0], "cluster", "addslotsrange", "0", "16383")
        else:
            out = subprocess.run(["redis-cli", "--cluster", "create",
                                  *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-yes"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
        _wait(lambda: all("cluster_state:ok" in _cli(p, "cluster", "info") for p in self.ports),
              "the cluster ok on every node")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def keys_per_node(self) -> list[int]:
        return [int(_cli(p, "dbsize") or 0) for p in self.ports]
