"""Command-line flags and the immutable per-process configuration they produce."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from .lora import LoraModule, check_modules, parse_modules

VLLM_VERSION = "0.32.0"
KINDS = ("chat", "embed", "rerank")
TOOL_PARSERS = ("hermes",)  # tool-call formats the simulator can emit and parse


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    served_model_names: tuple[str, ...]
    model_path: str
    kind: str
    max_model_len: int
    max_num_seqs: int
    embed_dim: int
    default_max_tokens: int
    natural_len: tuple[int, int]
    api_keys: tuple[str, ...]
    seed: int
    version: str
    keep_alive_timeout: float
    num_gpu_blocks: int  # 0: no KV/prefix-cache model (kv_cache_usage_perc = running / max_num_seqs)
    block_size: int
    # --enable-auto-tool-choice with a --tool-call-parser: vLLM then loads the parser, and only then
    # accepts tool_choice "auto", "required" or a named tool. None: no parser (those are refused).
    tool_parser: str | None
    faults: dict  # start-up fault/latency settings, same names as POST /sim/faults
    lora_modules: tuple[LoraModule, ...] = ()  # --enable-lora --lora-modules (lora.py)
    scheduling_policy: str = "fcfs"

    @property
    def model_name(self) -> str:
        return self.served_model_names[0]

    @property
    def lora_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.lora_modules)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vllm_sim", description="Fast vLLM 0.32 OpenAI-server simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+", default=["sim-model"])
    p.add_argument("--model", default=None, help="reported as 'root' in /v1/models (default: first served name)")
    p.add_argument("--kind", choices=KINDS, default="chat")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--scheduling-policy", choices=("fcfs", "priority"), default="fcfs",
                   help="the waiting queue's order: arrival, or each request's priority (lower first)")
    p.add_argument("--embed-dim", type=int, default=1024)
    p.add_argument("--default-max-tokens", type=int, default=16,
                   help="chat max_tokens when the request gives none (completions default to 16 like vLLM)")
    p.add_argument("--output-len-min", type=int, default=16, help="shortest natural (EOS) output length")
    p.add_argument("--output-len-max", type=int, default=128, help="longest natural (EOS) output length")
    p.add_argument("--api-key", nargs="+", default=None, help="require Bearer key on /v1, /v2 (env VLLM_API_KEY)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault-injection PRNG")
    p.add_argument("--version-string", default=VLLM_VERSION)
    p.add_argument("--keep-alive-timeout", type=float, default=5.0,
                   help="close connections idle this long between requests (uvicorn/vLLM default 5 s; 0: never)")
    p.add_argument("--num-gpu-blocks", type=int, default=0,
                   help="KV cache size in blocks; turns on the prefix-cache model (0: off)")
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV block")
    p.add_argument("--enable-auto-tool-choice", action="store_true",
                   help="load the --tool-call-parser: tool_choice auto/required/named are served")
    p.add_argument("--tool-call-parser", default=None,
                   help=f"tool-call format ({', '.join(TOOL_PARSERS)}); used only with --enable-auto-tool-choice")
    p.add_argument("--enable-lora", action="store_true", help="serve LoRA adapters (--lora-modules)")
    p.add_argument("--lora-modules", nargs="+", default=None,
                   help="adapters served beside the model: name=path or JSON {name, path, base_model_name}")
    p.add_argument("--max-lora-rank", type=int, default=16, help="accepted for vLLM's command line")
    p.add_argument("--max-loras", type=int, default=1, help="accepted for vLLM's command line")
    g = p.add_argument_group("latency and faults (runtime-settable via POST /sim/faults)")
    g.add_argument("--ttft-ms", type=float, default=0.0)
    g.add_argument("--itl-ms", type=float, default=0.0)
    g.add_argument("--prefill-ms-per-token", type=float, default=0.0,
                   help="prefill cost per uncached prompt token; prefills of one engine run one at a time")
    g.add_argument("--slow-factor", type=float, default=1.0)
    g.add_argument("--error-rate", type=float, default=0.0)
    g.add_argument("--error-status", type=int, default=500)
    g.add_argument("--loading-secs", type=float, default=0.0)
    g.add_argument("--hang", action="store_true")
    g.add_argument("--drop-after-tokens", type=int, default=None)
    g.add_argument("--health-fail", action="store_true")
    g.add_argument("--trickle-ms", type=float, default=0.0)
    g.add_argument("--metrics-fault", choices=("hang", "garbage", "error"), default=None,
                   help="/metrics never answers, answers garbage, or answers 500")
    return p


def _check_kv(args) -> None:
    if args.block_size < 1 or args.num_gpu_blocks < 0:
        raise SystemExit("--block-size must be >= 1 and --num-gpu-blocks >= 0")
    # vLLM refuses to start when one max-length sequence cannot fit in the KV cache.
    if args.num_gpu_blocks and args.num_gpu_blocks * args.block_size < args.max_model_len:
        raise SystemExit(f"--max-model-len {args.max_model_len} is larger than the KV cache "
                         f"({args.num_gpu_blocks} blocks of {args.block_size} tokens)")


def _tool_parser(args) -> str | None:
    """vLLM's start-up checks; without --enable-auto-tool-choice the parser is never loaded."""
    if not args.enable_auto_tool_choice:
        return None
    if not args.tool_call_parser:
        raise SystemExit("Error: --enable-auto-tool-choice requires --tool-call-parser")
    if args.tool_call_parser not in TOOL_PARSERS:
        choices = ",".join(TOOL_PARSERS)
        raise SystemExit(f"invalid tool call parser: {args.tool_call_parser} (chose from {{ {choices} }})")
    return args.tool_call_parser


def parse_config(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    if args.output_len_min < 1 or args.output_len_max < args.output_len_min:
        raise SystemExit("--output-len-min must be >= 1 and <= --output-len-max")
    if args.max_num_seqs < 1:
        raise SystemExit("--max-num-seqs must be >= 1")
    _check_kv(args)
    # Like vLLM: --api-key wins over VLLM_API_KEY.
    keys = [k for k in (args.api_key or [os.environ.get("VLLM_API_KEY", "")]) if k]
    faults = {
        "ttft_ms": args.ttft_ms,
        "itl_ms": args.itl_ms,
        "prefill_ms_per_token": args.prefill_ms_per_token,
        "slow_factor": args.slow_factor,
        "error_rate": args.error_rate,
        "error_status": args.error_status,
        "loading_secs": args.loading_secs,
        "hang": args.hang,
        "drop_after_tokens": args.drop_after_tokens,
        "health_fail": args.health_fail,
        "trickle_ms": args.trickle_ms,
        "metrics_fault": args.metrics_fault,
    }
    return Config(
        host=args.host,
        port=args.port,
        served_model_names=tuple(args.served_model_name),
        model_path=args.model or args.served_model_name[0],
        kind=args.kind,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        embed_dim=args.embed_dim,
        default_max_tokens=args.default_max_tokens,
        natural_len=(args.output_len_min, args.output_len_max),
        api_keys=tuple(keys),
        seed=args.seed,
        version=args.version_string,
        keep_alive_timeout=args.keep_alive_timeout,
        num_gpu_blocks=args.num_gpu_blocks,
        block_size=args.block_size,
        tool_parser=_tool_parser(args),
        faults=faults,
        lora_modules=check_modules(parse_modules(args.lora_modules), args.enable_lora,
                                   tuple(args.served_model_name)),
        scheduling_policy=args.scheduling_policy,
    )
