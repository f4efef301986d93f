"""vLLM-style automatic prefix cache: fixed-size KV blocks, hash-chained full blocks, LRU eviction.

Modelled on vLLM v1's KVCacheManager/BlockPool: a token sequence is cut into blocks of
block_size tokens; each *full* block gets a hash covering its parent block's hash and its own
tokens, so equal hashes mean equal prefixes. A request's cache hit is the longest run of its
leading full prompt blocks already cached (never the block holding the last prompt token, which
vLLM always recomputes). Blocks in use are pinned by a reference count; released blocks keep
their hash and join the tail of an LRU free list, and are evicted only when a new block is
taken from its head. kv_cache_usage_perc is pinned blocks / all blocks.

Differences from vLLM, kept on purpose: a request reserves its blocks for prompt + planned
output at admission (vLLM allocates during decode and preempts on shortage), so admitted
requests always finish; the n choices of one prompt share its full prompt blocks.
"""

from __future__ import annotations

from collections import OrderedDict


def chain_hashes(tokens, block_size: int, parent: int = 0) -> list[int]:
    """Hash chain over the full blocks of `tokens` (token strings or ids), starting after `parent`.

    Python's tuple hash is used because it is ~3x cheaper than blake2b here; it is salted per
    process, which is fine because every cache lives in one process.
    """
    out = []
    for end in range(block_size, len(tokens) + 1, block_size):
        parent = hash((parent, tuple(tokens[end - block_size:end])))
        out.append(parent)
    return out


class PromptBlocks:
    """One prompt of a request and the n sequences (choices) generated from it."""

    __slots__ = ("tokens", "hashes", "seqs")

    def __init__(self, prompt, outputs: list, block_size: int, salt: int = 0):
        """prompt: its tokens; outputs: the token list of each choice (known up front in the simulator);
        salt: starts the hash chain (a LoRA adapter's blocks never match the base model's)."""
        self.tokens = len(prompt)
        self.hashes = chain_hashes(prompt, block_size, salt)
        full = len(self.hashes) * block_size
        tail, parent = prompt[full:], (self.hashes[-1] if self.hashes else salt)
        self.seqs = []  # per choice: (blocks beyond the full prompt blocks, hashes of its finished full blocks)
        for out in outputs:
            total = self.tokens + len(out)
            own = -(-total // block_size) - len(self.hashes)
            # vLLM never computes the KV of the last sampled token: blocks full after total - 1 tokens.
            done = max((total - 1) // block_size - len(self.hashes), 0)
            seq_tokens = list(tail) + list(out[:max(done * block_size - len(tail), 0)])
            self.seqs.append((own, chain_hashes(seq_tokens, block_size, parent)))


class Block:
    __slots__ = ("hash", "ref")

    def __init__(self):
        self.hash = None  # set while the block holds a cached full block
        self.ref = 0  # requests using it; 0 = in the free list (evictable)


class Claim:
    """One request's hold on KV blocks; Capacity calls admit() at the head of the queue and free()."""

    __slots__ = ("cache", "prompts", "held", "outputs", "hit_tokens", "uncached_tokens")

    def __init__(self, cache: "KVCache", prompts: list[PromptBlocks]):
        self.cache, self.prompts = cache, prompts
        self.held: list[Block] = []  # every block reference taken, in allocation order
        self.outputs: list[tuple[list, list]] = []  # per choice: (its own blocks, hashes to cache at finish)
        self.hit_tokens = 0
        self.uncached_tokens = 0

    def admit(self) -> bool:
        return self.cache.admit(self)

    def finish(self) -> None:
        self.cache.cache_outputs(self)

    def free(self) -> None:
        self.cache.free(self)


class KVCache:
    """The block pool of one engine, with prefix-cache statistics in tokens (like vLLM)."""

    def __init__(self, num_blocks: int, block_size: int):
        self.total, self.block_size = num_blocks, block_size
        self.free_list: OrderedDict[Block, None] = OrderedDict((Block(), None) for _ in range(num_blocks))
        self.cached: dict[int, Block] = {}
        self.reset_counters()

    def reset_counters(self) -> None:
        self.queries = self.hits = self.evictions = 0

    def claim(self, prompts: list[PromptBlocks]) -> Claim:
        return Claim(self, prompts)

    @property
    def usage(self) -> float:
        return 1.0 - len(self.free_list) / self.total

    # ---- admission ------------------------------------------------------
    def _hits(self, p: PromptBlocks) -> list[Block]:
        """Cached blocks of the longest cached run of leading prompt blocks (last token excluded)."""
        out = []
        for h in p.hashes[:(p.tokens - 1) // self.block_size]:
            b = self.cached.get(h)
            if b is None:
                break
            out.append(b)
        return out

    def _need(self, prompts: list[PromptBlocks], hits: list[list[Block]]) -> int:
        """Free-list blocks the request would consume: evictable hits it pins plus new blocks."""
        revived = {b for run in hits for b in run if b.ref == 0}
        new = sum(len(p.hashes) - len(run) + sum(own for own, _ in p.seqs) for p, run in zip(prompts, hits))
        return len(revived) + new

    def admit(self, claim: Claim) -> bool:
        """Pin the request's hit blocks and allocate the rest, or change nothing and return False."""
        hits = [self._hits(p) for p in claim.prompts]
        need = self._need(claim.prompts, hits)
        if need > len(self.free_list):
            # A request larger than the whole pool (n choices of long sequences) could never fit;
            # it runs alone in an idle pool, with only the blocks that exist (never over-allocated).
            if need <= self.total or len(self.free_list) < self.total:
                return False
        for run in hits:  # pin hits before allocating, so allocation cannot evict them
            for b in run:
                self._pin(b)
            claim.held.extend(run)
        for p, run in zip(claim.prompts, hits):
            self._allocate(claim, p, run)
        return True

    def _allocate(self, claim: Claim, p: PromptBlocks, run: list[Block]) -> None:
        hit = len(run) * self.block_size
        self.queries += p.tokens
        self.hits += hit
        claim.hit_tokens += hit
        claim.uncached_tokens += p.tokens - hit
        chain_ok = True
        for h in p.hashes[len(run):]:  # computed now (prefill), so cached now, as vLLM does
            b = self._take()
            if b is None:
                chain_ok = False
                break
            claim.held.append(b)
            self._register(b, h)
        for own, hashes in p.seqs:
            blocks = [b for b in (self._take() for _ in range(own)) if b is not None]
            claim.held.extend(blocks)
            claim.outputs.append((blocks, hashes if chain_ok else []))

    def _pin(self, b: Block) -> None:
        if b.ref == 0:
            del self.free_list[b]
        b.ref += 1

    def _take(self) -> Block | None:
        """The least recently used free block, its cached content evicted."""
        if not self.free_list:
            return None
        b, _ = self.free_list.popitem(last=False)
        if b.hash is not None:
            del self.cached[b.hash]
            b.hash = None
            self.evictions += 1
        b.ref = 1
        return b

    def _register(self, b: Block, h: int) -> None:
        if h not in self.cached:  # an equal block already cached stays the one found by lookups
            b.hash = h
            self.cached[h] = b

    # ---- release --------------------------------------------------------
    def cache_outputs(self, claim: Claim) -> None:
        """A finished request's generated full blocks become cached, as vLLM caches decoded blocks."""
        for blocks, hashes in claim.outputs:
            for b, h in zip(blocks, hashes):
                self._register(b, h)
        claim.outputs = []

    def free(self, claim: Claim) -> None:
        """Unpin; blocks join the LRU tail in reverse order, so a sequence's tail is evicted first."""
        for b in reversed(claim.held):
            b.ref -= 1
            if b.ref == 0:
                self.free_list[b] = None
        claim.held = []

    def snapshot(self) -> dict:
        return {"num_gpu_blocks": self.total, "block_size": self.block_size,
                "used_blocks": self.total - len(self.free_list), "cached_blocks": len(self.cached),
                "usage": self.usage, "queries": self.queries, "hits": self.hits, "evictions": self.evictions}
