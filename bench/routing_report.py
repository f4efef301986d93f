"""Figures and tables of bench/routing_bench.py: one run's summary, the Markdown report and
the issue's Done-when checks computed from them."""

from __future__ import annotations

import statistics

from routing_client import Sample

NEW_POLICIES = ("prefix", "session")
WARMUP_SHARE = 0.2  # latency figures leave out requests sent in the run's first fifth


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def _spread(values: list[float]) -> float | None:
    mean = statistics.fmean(values) if values else 0
    return round(max(values) / mean, 2) if mean else None


def summarise(samples: list[Sample], duration: float, stats: dict[str, dict],
              occupancy: dict[str, list], oracle: float | None, client_cpu: float, *,
              policy: str, rate: float) -> dict:
    """One run's figures (latencies in ms)."""
    warm = duration * WARMUP_SHARE
    window = [s for s in samples if warm <= s.sent < duration]
    ok = [s for s in window if s.ok]
    ttft = [s.ttft for s in ok if s.ttft is not None]
    finished = [s for s in samples if s.ok and warm <= s.sent + s.e2e < duration]
    hits = sum(st["kv_cache"]["hits"] for st in stats.values())
    queries = sum(st["kv_cache"]["queries"] for st in stats.values())
    served = {name: st["completed"] for name, st in stats.items()}
    load = {name: statistics.fmean(r + w for r, w in occ) for name, occ in occupancy.items() if occ}
    waiting = {name: statistics.fmean(w for _, w in occ) for name, occ in occupancy.items() if occ}
    lags = [s.lag for s in window]
    return {"policy": policy, "target_rps": round(rate, 2),
            "offered_rps": round(len(window) / (duration - warm), 2),
            "throughput_rps": round(len(finished) / (duration - warm), 2),
            "requests": len(window), "errors": len(window) - len(ok),
            "ttft_p50_ms": _pct(ttft, 0.5), "ttft_p90_ms": _pct(ttft, 0.9),
            "ttft_p99_ms": _pct(ttft, 0.99), "e2e_p50_ms": _pct([s.e2e for s in ok], 0.5),
            "hit_rate": round(hits / queries, 3) if queries else None,
            "oracle_hit_rate": round(oracle, 3) if oracle is not None else None,
            "served": served, "served_spread": _spread(list(served.values())),
            "mean_load": {k: round(v, 2) for k, v in load.items()},
            "load_spread": _spread(list(load.values())),
            "waiting_spread": _spread(list(waiting.values())),
            "client_cpu_share": round(client_cpu, 3), "client_lag_p99_ms": _pct(lags, 0.99)}


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.2f}" if isinstance(value, float) and value < 10
                                      else str(value))


SPREAD_FIELDS = ("ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "throughput_rps")


def merged(rows: list[dict]) -> list[dict]:
    """One row per (load, policy): a figure's median over its repeats, with `runs` and the
    min-max `range` of SPREAD_FIELDS; single runs as they are."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["load"], r["policy"]), []).append(r)
    out = []
    for group in groups.values():
        row = dict(group[0], runs=len(group))
        if len(group) > 1:
            for field, value in group[0].items():
                values = [g[field] for g in group if g.get(field) is not None]
                if isinstance(value, (int, float)) and field not in ("load", "repeat") and values:
                    row[field] = round(statistics.median(values), 3)
            row["range"] = {f: [min(v), max(v)] for f in SPREAD_FIELDS
                            if (v := [g[f] for g in group if g.get(f) is not None])}
        out.append(row)
    return out


def _with_range(r: dict, field: str) -> str:
    low_high = r.get("range", {}).get(field)
    return _fmt(r[field]) + (f" ({_fmt(low_high[0])}–{_fmt(low_high[1])})" if low_high else "")


def _table(name: str, w: dict) -> list[str]:
    lines = [f"### `{name}` (capacity under least_load: {w['capacity_rps']} req/s)", "",
             "| load | policy | runs | offered / done req/s | TTFT p50 / p90 / p99 ms | e2e p50 ms | hit rate | oracle | served max/mean | load max/mean | errors | client CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in merged(w["rows"]):
        lines.append(
            f"| {r['load']:.0%} | {r['policy']} | {r['runs']} | {r['offered_rps']} / "
            f"{_with_range(r, 'throughput_rps')} | "
            f"{_with_range(r, 'ttft_p50_ms')} / {_fmt(r['ttft_p90_ms'])} / "
            f"{_with_range(r, 'ttft_p99_ms')} | "
            f"{_fmt(r['e2e_p50_ms'])} | {_fmt(r['hit_rate'])} | {_fmt(r['oracle_hit_rate'])} | "
            f"{_fmt(r['served_spread'])} | {_fmt(r['load_spread'])} | {r['errors']} | "
            f"{r['client_cpu_share']:.0%} |")
    return lines + [""]


def _rows(result: dict, workload: str, load: float | None = None) -> dict[str, dict]:
    rows = merged(result["workloads"].get(workload, {}).get("rows", []))
    return {r["policy"]: r for r in rows if load is None or abs(r["load"] - load) < 1e-9}


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def checks(result: dict) -> list[str]:
    """The issue's Done-when lines, each with its figures and whether it holds."""
    out = []
    for policy, row in _rows(result, "shared", 0.7).items():
        base = _rows(result, "shared", 0.7).get("least_load")
        if policy.split("(")[0] not in NEW_POLICIES or not base:
            continue
        p50 = _ratio(base["ttft_p50_ms"], row["ttft_p50_ms"])
        p90 = _ratio(base["ttft_p90_ms"], row["ttft_p90_ms"])
        share = _ratio(row["hit_rate"], row["oracle_hit_rate"])
        ok = all(x is not None for x in (p50, p90, share)) and p50 >= 2 and p90 >= 2 and share >= 0.8
        out.append(f"- (a) shared, 70 %, {policy}: TTFT p50 {p50}x, p90 {p90}x better than least_load "
                   f"(need 2x); hit rate {row['hit_rate']} = {share} of the oracle's "
                   f"{row['oracle_hit_rate']} (need 0.8): **{'holds' if ok else 'does not hold'}**")
    out += _unique_checks(result) + _hot_checks(result)
    return out


def _unique_checks(result: dict) -> list[str]:
    out = []
    for load in sorted({r["load"] for r in result["workloads"].get("unique", {}).get("rows", [])}):
        rows = _rows(result, "unique", load)
        base = rows.get("least_load")
        for policy, row in rows.items():
            if policy.split("(")[0] not in NEW_POLICIES or not base:
                continue
            p50 = _ratio(row["ttft_p50_ms"], base["ttft_p50_ms"])
            tput = _ratio(row["throughput_rps"], base["throughput_rps"])
            ok = p50 is not None and tput is not None and p50 <= 1.05 and tput >= 0.95
            out.append(f"- (b) unique, {load:.0%}, {policy}: TTFT p50 {p50}x least_load's, throughput "
                       f"{tput}x (need within 5 %): **{'holds' if ok else 'does not hold'}**")
    return out


def _hot_checks(result: dict) -> list[str]:
    out = []
    for load in sorted({r["load"] for r in result["workloads"].get("hot", {}).get("rows", [])}):
        rows = _rows(result, "hot", load)
        base = rows.get("least_load")
        for policy, row in rows.items():
            if policy.split("(")[0] not in NEW_POLICIES or not base:
                continue
            p99 = _ratio(row["ttft_p99_ms"], base["ttft_p99_ms"])
            spread = row["load_spread"]
            ok = p99 is not None and p99 <= 1.0 and spread is not None and spread <= 2
            out.append(f"- (c) hot, {load:.0%}, {policy}: busiest replica's time-averaged queue "
                       f"(running+waiting) {spread}x the mean (need <= 2); TTFT p99 {p99}x "
                       f"least_load's (need <= 1): **{'holds' if ok else 'does not hold'}**")
    return out


def headline(result: dict, load: float = 0.7) -> list[str]:
    """One table of every workload at one load: the README's."""
    lines = ["| workload | policy | TTFT p50 / p90 / p99 ms | e2e p50 ms | done req/s "
             "| hit rate (oracle) | load max/mean |",
             "|---|---|---|---|---|---|---|"]
    for name in result["workloads"]:
        for policy, r in _rows(result, name, load).items():
            lines.append(f"| {name} | {policy} | {_fmt(r['ttft_p50_ms'])} / {_fmt(r['ttft_p90_ms'])} / "
                         f"{_fmt(r['ttft_p99_ms'])} | {_fmt(r['e2e_p50_ms'])} | {r['throughput_rps']} | "
                         f"{_fmt(r['hit_rate'])} ({_fmt(r['oracle_hit_rate'])}) | {_fmt(r['load_spread'])} |")
    return lines + [""]


def markdown(result: dict) -> str:
    lines = ["## Prefix-aware routing (bench/routing_bench.py)", "",
             f"4 simulated chat replicas (`{' '.join(result['sim_argv'])}`), gateway with 2 "
             f"workers; open loop (Poisson), {result['duration_s']:.0f} s of arrivals per run, "
             f"cold caches each run; latencies over requests sent after the first "
             f"{WARMUP_SHARE:.0%}. Hit rates in prompt tokens, from the simulators; the oracle "
             "knows every cache. Load spread: time-averaged running+waiting per replica, "
             "max / mean. The client's CPU (share of a core) is in the tables, its send lag "
             "(p99) in routing.json. With several runs per row: medians, and the min–max of "
             "TTFT p50 and p99 and of throughput in brackets.", ""]
    if any(_rows(result, name, 0.7) for name in result["workloads"]):
        lines += ["At 70 % of capacity:", ""] + headline(result)
    for name, w in result["workloads"].items():
        lines += _table(name, w)
    cpu = result["routing_cpu"]
    lines += ["Routing decision CPU for an 8k-token chat prompt (key + pick, in process): " +
              ", ".join(f"{k} p50 {v['p50_us']} µs / p99 {v['p99_us']} µs" for k, v in cpu.items()),
              ""]
    if "agreement" in result:
        a = result["agreement"]
        lines += [f"Agreement (prefix policy, 2 gateway replicas x 2 workers): {a['prefixes']} "
                  f"prefixes x {a['repeats']} requests; {a['one_backend_share']:.1%} of prefixes "
                  f"always on one backend, {a['modal_request_share']:.1%} of requests on their "
                  "prefix's usual backend."]
        if a.get("loaded"):
            b = a["loaded"]
            lines += [f"Under load (`shared` at {b['rate_rps']} req/s, both replicas in turns): "
                      f"{b['prefixes']} documents, {b['requests']} requests; "
                      f"{b['one_backend_share']:.1%} of documents always on one backend, "
                      f"{b['modal_request_share']:.1%} of requests on their document's usual "
                      "backend (the rest spilled by the load bound)."]
        lines += [""]
    lines += ["Done when:", ""] + checks(result) + _cpu_checks(result)
    if "run_time_s" in result:
        lines += ["", f"Bench run time: {result['run_time_s']} s."]
    return "\n".join(lines) + "\n"


def _cpu_checks(result: dict) -> list[str]:
    out = []
    if "agreement" in result:
        share = result["agreement"]["one_backend_share"]
        out.append(f"- agreement: {share:.1%} of prefixes on one backend (need 95 %): "
                   f"**{'holds' if share >= 0.95 else 'does not hold'}**")
    p50 = result["routing_cpu"]["prefix"]["p50_us"]
    out.append(f"- routing CPU, 8k-token prompt, prefix policy: p50 {p50} µs (need <= 30): "
               f"**{'holds' if p50 <= 30 else 'does not hold'}**")
    return out
