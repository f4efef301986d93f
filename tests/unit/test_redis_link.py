"""redis_link: the sentinel list is parsed and refused when malformed; with Sentinel, the
redis-py clients and the request path's channel connect to the primary the sentinels name,
and a connection to a primary that was demoted is dropped, so the next command asks again.
Real redis-server processes (a primary, a replica, three sentinels) on loopback."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from llmgw.admission.cluster_channel import ClusterChannel
from llmgw.admission.redis_channel import RedisChannel
from llmgw.redis_link import RedisLink, parse_sentinels
from llmgw.settings import Settings
from redis_topology import MASTER_NAME, SentinelGroup


def test_sentinel_lists_parse():
    assert parse_sentinels("") == []
    assert parse_sentinels(" a:1 , b:26380,c ,[::1]:5") == [("a", 1), ("b", 26380), ("c", 26379),
                                                            ("::1", 5)]


@pytest.mark.parametrize("bad", ["a:", ":1", "a:0", "a:65536", "a:x", "a:١٢"])
def test_malformed_sentinels_are_refused_at_start_up(bad):
    with pytest.raises(ValueError, match="REDIS_SENTINELS|host:port"):
        Settings(redis_sentinels=bad)


def test_sentinels_need_a_tcp_redis_url():
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        Settings(redis_url="unix:///tmp/redis.sock", redis_sentinels="a:1")


@pytest.mark.parametrize("settings, refusal", [
    (dict(redis_cluster=True), "GLOBAL_MAX_CONCURRENT must be 0"),
    (dict(redis_cluster=True, global_max_concurrent=0, redis_sentinels="a:1"), "exclude"),
    (dict(redis_cluster=True, global_max_concurrent=0, redis_url="unix:///r.sock"), "REDIS_URL"),
])
def test_a_cluster_needs_what_it_can_keep(settings, refusal):
    with pytest.raises(ValueError, match=refusal):
        Settings(**settings)


def test_the_channel_fits_the_topology():
    cluster = RedisLink("redis://h:7000/0", cluster=True)
    assert isinstance(cluster.channel(0.5), ClusterChannel)
    assert type(RedisLink("redis://h:7000/0").channel(0.5)) is RedisChannel
    assert type(cluster.client(0.5)).__name__ == "RedisCluster"


def test_without_sentinels_the_url_is_the_address():
    async def main():
        link = RedisLink("redis://h:7000/2")
        assert not link.sentinel and await link.primary() == ("h", 7000)
    asyncio.run(main())


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    group = SentinelGroup(tmp_path_factory.mktemp("link-sentinel"))
    yield group
    group.stop()


def _link(group: SentinelGroup) -> RedisLink:
    return RedisLink("redis://ignored:1/0", sentinels=parse_sentinels(group.addresses),
                     master_name=MASTER_NAME)


def test_clients_and_channel_reach_the_named_primary(group):
    async def main():
        link = _link(group)
        assert await link.primary() == ("127.0.0.1", group.primary)
        client = link.client(2.0)
        await client.set("llmgw:test:link", "1")
        channel = RedisChannel(link.url, 2.0, locate=link.primary)
        assert await channel.send(("GET", "llmgw:test:link")) == b"1"
        await channel.aclose()
        await client.aclose()
        await link.aclose()
    asyncio.run(main())


def test_a_demoted_primary_is_left_for_the_new_one(group):
    """The primary becomes a replica (as after a failover it missed): its READONLY answer
    closes the channel's connection; the next command connects where `locate` says now."""
    async def main():
        where = {"port": group.primary}

        async def locate():
            return ("127.0.0.1", where["port"])
        channel = RedisChannel("redis://ignored:1/0", 2.0, locate=locate)
        assert await channel.send(("SET", "llmgw:test:demoted", "1")) == b"OK"
        where["port"] = group.replica
        # The primary demoted behind the channel's back: its open connection now gets READONLY.
        subprocess.run(["redis-cli", "-p", str(group.replica), "replicaof", "no", "one"],
                       check=True, capture_output=True)
        subprocess.run(["redis-cli", "-p", str(group.primary), "replicaof", "127.0.0.1",
                        str(group.replica)], check=True, capture_output=True)
        with pytest.raises(RedisConnectionError, match="replica"):
            await channel.send(("SET", "llmgw:test:demoted", "2"))
        assert await channel.send(("SET", "llmgw:test:demoted", "3")) == b"OK"  # the new one
        await channel.aclose()
    try:
        asyncio.run(main())
    finally:  # back as it was, for the other tests of the module
        subprocess.run(["redis-cli", "-p", str(group.primary), "replicaof", "no", "one"],
                       capture_output=True)
        subprocess.run(["redis-cli", "-p", str(group.replica), "replicaof", "127.0.0.1",
                        str(group.primary)], capture_output=True)


def test_passwords_for_the_sentinels_and_the_data_nodes(tmp_path):
    """Sentinels with requirepass (REDIS_SENTINEL_PASSWORD) and data nodes with their own
    (in REDIS_URL): both clients and the channel get through; a wrong sentinel password
    finds no primary."""
    group = SentinelGroup(tmp_path, password="s3cret-pass-for-tests")

    async def main():
        link = RedisLink("redis://:s3cret-pass-for-tests@ignored:1/0",
                         sentinels=parse_sentinels(group.addresses), master_name=MASTER_NAME,
                         sentinel_password="s3cret-pass-for-tests")
        client = link.client(2.0)
        await client.set("llmgw:test:auth", "1")
        channel = link.channel(2.0)
        assert await channel.send(("GET", "llmgw:test:auth")) == b"1"
        await channel.aclose()
        await client.aclose()
        await link.aclose()
        wrong = RedisLink("redis://:s3cret-pass-for-tests@ignored:1/0",
                          sentinels=parse_sentinels(group.addresses), master_name=MASTER_NAME,
                          sentinel_password="not-the-password")
        with pytest.raises(RedisConnectionError):
            await wrong.primary()
        await wrong.aclose()
    try:
        asyncio.run(main())
    finally:
        group.stop()
