"""The prefix-cache model (vllm_sim.kv_cache) in process: hits, chaining, LRU, pinning, usage."""

from __future__ import annotations

import asyncio

import pytest

from vllm_sim import generate as gen
from vllm_sim.capacity import Capacity
from vllm_sim.kv_cache import KVCache, PromptBlocks, chain_hashes

pytestmark = pytest.mark.timeout(10)
BS = 4  # small blocks keep the arithmetic readable


def toks(tag: str, n: int) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def run(kv: KVCache, prompt: list, out_len: int = 1, n: int = 1, keep: bool = False):
    """Admit one request (prompt, n choices of out_len tokens), finish it and (unless keep) free it."""
    claim = kv.claim([PromptBlocks(prompt, [toks(f"out{i}-", out_len) for i in range(n)], BS)])
    assert claim.admit()
    claim.finish()
    if not keep:
        claim.free()
    return claim


def test_repeated_prefix_hits_its_full_blocks_and_counts_tokens():
    kv = KVCache(32, BS)
    first = run(kv, toks("p", 10))
    assert (first.hit_tokens, first.uncached_tokens) == (0, 10)
    second = run(kv, toks("p", 10) + toks("q", 6))
    assert (second.hit_tokens, second.uncached_tokens) == (8, 8)  # 2 full blocks; the partial 3rd was never cached
    assert (kv.queries, kv.hits) == (26, 8)


def test_block_holding_the_last_prompt_token_is_recomputed():
    kv = KVCache(32, BS)
    run(kv, toks("p", 8))
    assert run(kv, toks("p", 8)).hit_tokens == 4  # like vLLM: at most prompt_len - 1 tokens can hit
    assert run(kv, toks("p", 9)).hit_tokens == 8


def test_hash_chain_needs_the_same_prefix_not_just_the_same_block():
    assert chain_hashes(toks("a", 8), BS)[1] != chain_hashes(toks("b", 4) + toks("a", 8)[4:], BS)[1]
    kv = KVCache(32, BS)
    run(kv, toks("a", 12))
    assert run(kv, ["other"] + toks("a", 12)[1:]).hit_tokens == 0  # blocks 2-3 equal, parents differ


def test_multi_turn_chat_reuses_the_earlier_turns_blocks():
    turn1 = [{"role": "system", "content": "You are terse. " * 20}, {"role": "user", "content": "Say hello"}]
    turn2 = turn1 + [{"role": "assistant", "content": "hello there"}, {"role": "user", "content": "Again"}]
    p1, p2 = (gen.tokenize(gen.render_chat(m), specials=True) for m in (turn1, turn2))
    kv = KVCache(64, BS)
    run(kv, p1)
    assert run(kv, p2).hit_tokens == (len(p1) - 1) // BS * BS > 40


def test_generated_blocks_are_cached_when_the_request_finishes():
    kv = KVCache(32, BS)
    prompt, out = toks("p", 6), toks("out0-", 9)  # 15 tokens; the KV of 14 exists: blocks 0-2 full
    claim = kv.claim([PromptBlocks(prompt, [out], BS)])
    assert claim.admit()
    assert kv.snapshot()["cached_blocks"] == 1  # the prompt's full block, cached at admission
    claim.finish()
    claim.free()
    assert kv.snapshot()["cached_blocks"] == 3
    assert run(kv, prompt + out + ["next"]).hit_tokens == 12


def test_lru_evicts_the_least_recently_used_prefix():
    kv = KVCache(6, BS)  # a 6-token request takes 2 blocks, its first (full prompt) block stays cached
    for tag in "abc":
        run(kv, toks(tag, 5))
    run(kv, toks("a", 5))  # a hit: a becomes the most recently used, b the least
    run(kv, toks("d", 5))  # needs 2 blocks: an uncached one, then b's (FIFO order would evict a's)
    assert kv.evictions == 1
    assert [run(kv, toks(tag, 5)).hit_tokens for tag in "cab"] == [4, 4, 0]


def test_pinned_blocks_are_never_evicted_and_the_request_waits():
    kv = KVCache(4, BS)
    run(kv, toks("a", 8))  # caches a's 2 prompt blocks
    run(kv, toks("b", 5))  # caches b's first block; no blank block is left
    holder = run(kv, toks("a", 9), out_len=3, keep=True)  # pins a's 2 blocks and takes 1 more
    assert (holder.hit_tokens, kv.snapshot()["used_blocks"]) == (8, 3)
    two = kv.claim([PromptBlocks(toks("c", 6), [toks("o", 2)], BS)])
    assert not two.admit()  # needs 2 blocks, 1 is free: nothing changes
    assert kv.evictions == 0 and kv.queries == 8 + 5 + 9
    assert run(kv, toks("d", 3)).hit_tokens == 0 and kv.evictions == 1  # took b's block, not a's
    holder.free()
    assert run(kv, toks("a", 9)).hit_tokens == 8


def test_evictable_hit_blocks_count_against_the_free_blocks():
    kv = KVCache(4, BS)
    run(kv, toks("a", 8))  # a's 2 prompt blocks cached, evictable
    holder = run(kv, toks("x", 3), keep=True)  # 3 blocks left free, 2 of them a's
    again = kv.claim([PromptBlocks(toks("a", 9), [toks("o", 4)], BS)])  # 2 hits + 2 new blocks: 4 > 3
    assert not again.admit() and kv.snapshot()["used_blocks"] == 1
    holder.free()
    assert again.admit() and again.hit_tokens == 8 and kv.usage == 1.0


def test_usage_counts_pinned_blocks_only():
    kv = KVCache(10, BS)
    assert kv.usage == 0.0
    claim = run(kv, toks("a", 10), out_len=6, keep=True)  # 16 tokens: 4 blocks
    assert kv.usage == pytest.approx(0.4)
    claim.free()
    assert kv.usage == 0.0 and kv.snapshot()["cached_blocks"] == 3  # cached but evictable


def test_n_choices_share_the_prompt_blocks():
    kv = KVCache(32, BS)
    claim = run(kv, toks("p", 8), out_len=4, n=3, keep=True)
    # 2 shared prompt blocks + each choice's own 12-token tail: (ceil(12/4) - 2) = 1 block each.
    assert kv.snapshot()["used_blocks"] == 2 + 3
    assert (claim.hit_tokens, claim.uncached_tokens) == (0, 8)


def test_request_larger_than_the_pool_runs_alone_without_over_allocating():
    kv = KVCache(4, BS)
    small = run(kv, toks("s", 3), keep=True)
    huge = kv.claim([PromptBlocks(toks("h", 8), [toks(f"o{i}", 8) for i in range(4)], BS)])
    assert not huge.admit()  # could never fit: waits for an idle pool
    small.free()
    assert huge.admit() and kv.snapshot()["used_blocks"] == 4 and kv.usage == 1.0
    huge.free()
    assert kv.usage == 0.0


def test_capacity_waits_fifo_for_blocks_and_frees_them_on_release():
    async def scenario():
        kv, cap = KVCache(4, BS), Capacity(8)
        first = kv.claim([PromptBlocks(toks("a", 8), [toks("o", 4)], BS)])  # 3 blocks
        assert cap.try_acquire(1, first)
        blocked = kv.claim([PromptBlocks(toks("b", 6), [toks("o", 2)], BS)])  # 2 blocks
        small = kv.claim([PromptBlocks(toks("c", 2), [toks("o", 1)], BS)])  # 1 block: fits, but FIFO
        tasks = [asyncio.create_task(cap.acquire(1, c)) for c in (blocked, small)]
        await asyncio.sleep(0)
        assert cap.waiting == 2 and cap.running == 1
        cap.release(1, first)
        await asyncio.gather(*tasks)
        assert cap.running == 2 and kv.snapshot()["used_blocks"] == 3

    asyncio.run(scenario())


def test_claim_cancelled_after_hand_over_gives_its_blocks_back():
    async def scenario():
        kv, cap = KVCache(4, BS), Capacity(8)
        first = kv.claim([PromptBlocks(toks("a", 12), [toks("o", 4)], BS)])  # all 4 blocks
        assert cap.try_acquire(1, first)
        waiter = asyncio.create_task(cap.acquire(1, kv.claim([PromptBlocks(toks("b", 3), [["o"]], BS)])))
        await asyncio.sleep(0)
        cap.release(1, first)  # hands the blocks to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cap.running == 0 and kv.usage == 0.0

    asyncio.run(scenario())
