"""vLLM-named Prometheus metrics, rendered in prometheus_client's text exposition format."""

from __future__ import annotations

import math
import time
from bisect import bisect_left

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                   120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
_MFU = "(for Model Flops Utilization calculations)."
_WAITING_HELP = ("Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling "
                 "capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked "
                 "status). Sum of all reasons equals vllm:num_requests_waiting.")
_SLEEP_HELP = ("Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
               "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.")
_CACHED_HELP = ("Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host "
                "(offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
                "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
                "vllm:external_prefix_cache_hits.")

# Counters in vLLM's export order: (name, help, extra label, its values). The gauges are
# rendered before "prefix_cache_queries", request_success after "generation_tokens".
_COUNTERS = (
    ("estimated_flops_per_gpu", "Estimated number of floating point operations per GPU " + _MFU, None, ()),
    ("estimated_read_bytes_per_gpu", "Estimated number of bytes read from memory per GPU " + _MFU, None, ()),
    ("estimated_write_bytes_per_gpu", "Estimated number of bytes written to memory per GPU " + _MFU, None, ()),
    ("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", None, ()),
    ("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", None, ()),
    ("external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache "
     "sharing, in terms of number of queried tokens.", None, ()),
    ("external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache "
     "sharing, in terms of number of cached tokens.", None, ()),
    ("mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items.", None, ()),
    ("mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.", None, ()),
    ("num_preemptions", "Cumulative number of preemption from the engine.", None, ()),
    ("prompt_tokens", "Number of prefill tokens processed.", None, ()),
    ("prompt_tokens_by_source", "Number of prompt tokens by source.", "source",
     ("local_compute", "local_cache_hit", "external_kv_transfer")),
    ("prompt_tokens_cached", "Number of cached prompt tokens (local + external).", None, ()),
    ("prompt_tokens_cached_by_source", _CACHED_HELP, "source", ("device", "host", "p2p", "disk",
                                                                  "external_unspecified")),
    ("generation_tokens", "Number of generation tokens processed.", None, ()),
    ("request_success", "Count of successfully processed requests.", "finished_reason", FINISH_REASONS),
)
# (name, help, buckets; None = 1-2-5 token buckets up to max_model_len), in vLLM's export order.
_HISTOGRAMS = (
    ("request_prompt_tokens", "Number of prefill tokens processed.", None),
    ("request_generation_tokens", "Number of generation tokens processed.", None),
    ("iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_BUCKETS),
    ("request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", None),
    ("request_params_n", "Histogram of the n request parameter.", (1, 2, 5, 10, 20)),
    ("request_params_max_tokens", "Histogram of the max_tokens request parameter.", None),
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS),
    ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS),
    ("request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.",
     ITL_BUCKETS),
    ("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LATENCY_BUCKETS),
    ("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", LATENCY_BUCKETS),
    ("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", LATENCY_BUCKETS),
    ("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", LATENCY_BUCKETS),
    ("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", LATENCY_BUCKETS),
    ("request_num_preemptions", "Histogram of the number of times a request was preempted.",
     (1, 2, 3, 4, 5, 10, 20)),
    ("request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill "
     "(excluding cached tokens).", None),
)

# Histograms observed once per finished request, in the order record_finished computes them.
_PER_REQUEST = ("request_prompt_tokens", "request_generation_tokens", "iteration_tokens_total",
                "request_max_num_generation_tokens", "request_params_n", "request_params_max_tokens",
                "time_to_first_token_seconds", "request_time_per_output_token_seconds",
                "e2e_request_latency_seconds", "request_queue_time_seconds", "request_inference_time_seconds",
                "request_prefill_time_seconds", "request_decode_time_seconds", "request_num_preemptions",
                "request_prefill_kv_computed_tokens")


def go_float(d: float) -> str:
    """prometheus_client's floatToGoString, so sample values are spelled identically."""
    d = float(d)
    if d == math.inf:
        return "+Inf"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _token_buckets(max_model_len: int) -> tuple:
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            if m * 10**exp > max_model_len:
                return tuple(out)
            out.append(m * 10**exp)
        exp += 1


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds):
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float):
        self.counts[bisect_left(self.bounds, v)] += 1  # le is inclusive, like Prometheus
        self.sum += v
        self.count += 1


class Metrics:
    """Engine-level counters; the request paths call record_finished and /metrics calls render."""

    def __init__(self, model_name: str, max_model_len: int):
        self.model = 'model_name="' + model_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        self.labels = 'engine="0",' + self.model  # prometheus_client sorts label names
        self.created = time.time()
        self.counters = {name: dict.fromkeys(values or ("",), 0) for name, _, _, values in _COUNTERS}
        self.success = self.counters["request_success"]
        tok = _token_buckets(max_model_len)
        self.hist = {name: Histogram(b if b is not None else tok) for name, _, b in _HISTOGRAMS}
        self._per_request = [self.hist[name] for name in _PER_REQUEST]

    def record_finished(self, reasons, prompt_tokens: int, gen_tokens: int, max_tokens: int,
                        t_arrive: float, t_run: float, t_first: float, t_end: float, cached: int = 0):
        """One finished request; reasons holds one finish reason per sequence (n > 1).

        cached: prompt tokens found in the prefix cache (vLLM's prefix-cache hits, all "device").
        """
        c, h = self.counters, self.hist
        for name in ("prompt_tokens", "prefix_cache_queries"):
            c[name][""] += prompt_tokens
        if cached:
            for name, key in (("prefix_cache_hits", ""), ("prompt_tokens_by_source", "local_cache_hit"),
                              ("prompt_tokens_cached", ""), ("prompt_tokens_cached_by_source", "device")):
                c[name][key] += cached
        c["prompt_tokens_by_source"]["local_compute"] += prompt_tokens - cached
        c["generation_tokens"][""] += gen_tokens
        for reason in reasons:
            self.success[reason] += 1
        steps = max(gen_tokens // max(len(reasons), 1), 1)
        decode = t_end - t_first
        values = (prompt_tokens, gen_tokens, prompt_tokens, max_tokens, len(reasons), max_tokens,
                  t_first - t_arrive, decode / max(steps - 1, 1), t_end - t_arrive, t_run - t_arrive,
                  t_end - t_run, t_first - t_run, decode, 0, prompt_tokens - cached)
        for hist, v in zip(self._per_request, values):  # inlined observe(): this runs on every request
            hist.counts[bisect_left(hist.bounds, v)] += 1
            hist.sum += v
            hist.count += 1
        if steps > 1:
            h["inter_token_latency_seconds"].observe(decode / (steps - 1))

    def render(self, running: int, waiting: int, kv_usage: float) -> bytes:
        out: list[str] = []
        for name, doc, label, _ in _COUNTERS:
            if name == "prefix_cache_queries":
                self._gauges(out, running, waiting, kv_usage)
            self._counter(out, name, doc, label)
            if name == "request_success":
                self._admission(out)
        for name, doc, _ in _HISTOGRAMS:
            self._histogram(out, name, doc, self.hist[name])
        return "".join(out).encode()

    def _gauges(self, out: list, running: int, waiting: int, kv_usage: float):
        lab = self.labels
        for name, doc, rows in (
            ("num_requests_running", "Number of requests in model execution batches.", (("", running),)),
            ("num_requests_waiting", "Number of requests waiting to be processed.", (("", waiting),)),
            ("num_requests_waiting_by_reason", _WAITING_HELP, ((',reason="capacity"', waiting),
                                                               (',reason="deferred"', 0))),
            ("engine_sleep_state", _SLEEP_HELP, ((',sleep_state="awake"', 1), (',sleep_state="weights_offloaded"', 0),
                                                 (',sleep_state="discard_all"', 0))),
            ("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", (("", kv_usage),)),
        ):
            out.append(f"# HELP vllm:{name} {doc}\n# TYPE vllm:{name} gauge\n")
            out.extend(f"vllm:{name}{{{lab}{extra}}} {go_float(v)}\n" for extra, v in rows)

    def _series(self, label: str | None, key: str) -> str:
        if label is None:
            return self.labels
        if label < "model_name":  # keep prometheus_client's sorted label order
            return f'engine="0",{label}="{key}",{self.model}'
        return f'{self.labels},{label}="{key}"'

    def _counter(self, out: list, name: str, doc: str, label: str | None):
        rows = [(self._series(label, key), v) for key, v in self.counters[name].items()]
        out.append(f"# HELP vllm:{name}_total {doc}\n# TYPE vllm:{name}_total counter\n")
        out.extend(f"vllm:{name}_total{{{lab}}} {go_float(v)}\n" for lab, v in rows)
        out.append(f"# HELP vllm:{name}_created {doc}\n# TYPE vllm:{name}_created gauge\n")
        out.extend(f"vllm:{name}_created{{{lab}}} {go_float(self.created)}\n" for lab, _ in rows)

    def _admission(self, out: list):
        doc = "Number of admission attempts rejected by a queue limit, by reason."
        for suffix, kind, value in (("total", "counter", 0), ("created", "gauge", self.created)):
            out.append(f"# HELP vllm:admission_rejections_{suffix} {doc}\n"
                       f"# TYPE vllm:admission_rejections_{suffix} {kind}\n")
            out.extend(f'vllm:admission_rejections_{suffix}{{{self.model},reason="{r}"}} {go_float(value)}\n'
                       for r in ("max_num_queued_reqs", "max_num_queued_tokens"))

    def _histogram(self, out: list, name: str, doc: str, h: Histogram):
        lab = self.labels
        out.append(f"# HELP vllm:{name} {doc}\n# TYPE vllm:{name} histogram\n")
        cum = 0
        for bound, n in zip(h.bounds + (math.inf,), h.counts):
            cum += n
            out.append(f'vllm:{name}_bucket{{engine="0",le="{go_float(bound)}",{self.model}}} {go_float(cum)}\n')
        out.append(f"vllm:{name}_count{{{lab}}} {go_float(h.count)}\n")
        out.append(f"vllm:{name}_sum{{{lab}}} {go_float(h.sum)}\n")
        out.append(f"# HELP vllm:{name}_created {doc}\n# TYPE vllm:{name}_created gauge\n")
        out.append(f"vllm:{name}_created{{{lab}}} {go_float(self.created)}\n")
