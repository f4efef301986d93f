"""The request path's Redis channel for a Redis Cluster: one pipelined `RedisChannel` per
primary, each command sent to the primary that owns its first key's hash slot.

Every key of one organisation's admission carries the organisation's hash tag, so a limiter
script runs on one node; organisations spread over the nodes. The slot map comes from
CLUSTER SLOTS, read on the first command and again whenever a node answers MOVED (the slot
moved) or a connection to a node fails (a failover may have promoted another); a command that
met MOVED is sent once more, to the node the map names now. A command with no key (PING) goes
to any node; SCRIPT LOAD goes to every primary, since any of them may run the script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from redis.asyncio.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError, ResponseError

from ..single_flight import SingleFlight
from .redis_channel import RedisChannel

SLOTS = 16384
_KEYED_AT = {"EVALSHA": 3, "EVAL": 3}  # where the first key is, when not right after the name


def first_key(command: tuple) -> str | bytes | None:
    """The key that routes the command, or None for a command without one."""
    name = str(command[0]).upper()
    if name in _KEYED_AT:
        return command[_KEYED_AT[name]] if int(command[2]) > 0 else None
    if name in ("PING", "SCRIPT", "TIME", "CLUSTER", "INFO"):
        return None
    return command[1] if len(command) > 1 else None


class ClusterChannel:
    """`RedisChannel`'s interface (send, timeout, patience, aclose) over every primary."""

    def __init__(self, url: str, timeout: float, *, connect_timeout: float = 0.5) -> None:
        options = parse_url(url)
        self._seed = (options.get("host", "127.0.0.1"), int(options.get("port", 6379)))
        self._scheme = "rediss" if url.startswith("rediss://") else "redis"
        user, password = options.get("username"), options.get("password")
        # Credentials as they came in REDIS_URL, quoted again for each node's URL.
        self._auth = (f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
                      if password is not None else "")
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._nodes: dict[tuple[str, int], RedisChannel] = {}
        self._slots: list[tuple[str, int]] = []
        self._maps: SingleFlight[None] = SingleFlight()
        self._prototype = self._node(self._seed)

    @property
    def timeout(self) -> float:
        return self._prototype.timeout

    @property
    def patience(self) -> float:
        return self._prototype.patience

    def send(self, command: tuple, on_late: Callable[[Any], None] | None = None, *,
             at_once: bool = False) -> asyncio.Future:
        """As `RedisChannel.send`, to the node that owns the command's key."""
        outer = asyncio.get_running_loop().create_future()
        if str(command[0]).upper() == "SCRIPT":
            self._chain(self._everywhere(command), outer, command, on_late, at_once, moved=True)
        elif self._slots:
            self._forward(command, outer, on_late, at_once, moved=False)
        else:  # no map yet: read it, then send
            self._chain(self._refresh(), outer, command, on_late, at_once, moved=False,
                        then_send=True)
        return outer

    async def aclose(self) -> None:
        for node in list(self._nodes.values()):
            await node.aclose()

    def _forward(self, command: tuple, outer: asyncio.Future,
                 on_late: Callable[[Any], None] | None, at_once: bool, *, moved: bool) -> None:
        key = first_key(command)
        address = self._slots[_slot(key)] if key is not None else self._seed
        inner = self._node(address).send(command, on_late, at_once=at_once)
        # A caller that gives up cancels the inner call too: its late reply then reaches
        # `on_late`, as on a single node.
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        self._chain(inner, outer, command, on_late, at_once, moved=moved)

    def _chain(self, inner: asyncio.Future, outer: asyncio.Future, command: tuple,
               on_late: Callable[[Any], None] | None, at_once: bool, *, moved: bool,
               then_send: bool = False) -> None:
        def done(f: asyncio.Future) -> None:
            if outer.done():
                return
            error = None if f.cancelled() else f.exception()
            if f.cancelled():
                outer.cancel()
            elif error is None and then_send:
                self._forward(command, outer, on_late, at_once, moved=False)
            elif isinstance(error, ResponseError) and str(error).startswith("MOVED") and not moved:
                # The slot lives elsewhere now: the map again, then this command once more.
                self._chain(self._refresh(), outer, command, on_late, at_once, moved=True,
                            then_send=True)
            elif error is not None:
                if isinstance(error, ConnectionError):
                    self._refresh()  # for the next commands: a failover may have moved slots
                outer.set_exception(error)
            else:
                outer.set_result(f.result())
        inner.add_done_callback(done)

    def _refresh(self) -> asyncio.Future:
        """The slot map read again (one read however many callers ask at once)."""
        return self._maps.run("slots", self._read_slots)

    async def _read_slots(self) -> None:
        errors = []
        for address in [self._seed, *(a for a in self._nodes if a != self._seed)]:
            try:
                reply = await self._node(address).send(("CLUSTER", "SLOTS"))
            except (ConnectionError, TimeoutError, OSError) as exc:
                errors.append(exc)
                continue
            slots: list[tuple[str, int]] = [address] * SLOTS
            for start, end, primary, *_ in reply:
                host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
                owner = (host or address[0], int(primary[1]))
                slots[int(start):int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            self._slots = slots
            return
        raise ConnectionError(f"no node of the Redis Cluster answered: {errors}")

    def _everywhere(self, command: tuple) -> asyncio.Future:
        """The command on every primary; the first's reply."""
        async def all_nodes() -> Any:
            if not self._slots:
                await self._refresh()
            replies = await asyncio.gather(*(self._node(a).send(command)
                                             for a in sorted(set(self._slots))))
            return replies[0]
        return asyncio.ensure_future(all_nodes())

    def _node(self, address: tuple[str, int]) -> RedisChannel:
        node = self._nodes.get(address)
        if node is None:
            host, port = address
            url = f"{self._scheme}://{self._auth}{host}:{port}/0"
            node = RedisChannel(url, self._timeout, connect_timeout=self._connect_timeout)
            self._nodes[address] = node
        return node


def _slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)
