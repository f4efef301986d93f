"""The figures of bench/peers_bench.py as Markdown: the table, ours divided by each peer, and
issue 23's targets for ours."""

from __future__ import annotations


# issue 23's "done when" for ours (CPU with Redis's): figure -> (bound, "max" or "min").
TARGETS = {"added_p50_ms": (0.4, "max"), "added_p99_ms": (0.8, "max"), "rps_64": (4000, "min"),
           "cpu_ms_64": (0.25, "max"), "cpu_ms_1": (0.4, "max"), "first_event_added_ms": (0.4, "max")}


def flat(f: dict, name: str) -> dict:
    """One number per figure (medians); ours's CPU with Redis's added."""
    redis = name == "ours"
    return {"added_p50_ms": f["added_p50_ms"]["median"], "added_p99_ms": f["added_p99_ms"]["median"],
            "rps_64": f["rps_64"]["median"],
            "cpu_ms_64": f["cpu_ms_64"]["median"] + (f["redis_cpu_ms_64"]["median"] if redis else 0),
            "cpu_ms_1": f["cpu_ms_1"]["median"] + (f["redis_cpu_ms_1"]["median"] if redis else 0),
            "first_event_added_ms": f["first_event_added_ms"],
            "rss_idle_mb": f["rss_idle_mb"], "rss_streams_mb": f["rss_streams_mb"]}


def _r(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def markdown(result: dict) -> str:
    figs, meta = result["figures"], result["meta"]
    peers = meta["peers"]
    lines = [f"# The gateway beside its peers ({meta['rounds']} rounds of {meta['seconds']} s, "
             "medians [min-max])", "",
             f"Each proxy alone on core {meta['proxy_core']}; wrk (one thread), the two simulators "
             f"(--ttft-ms 0 --itl-ms 0 --max-num-seqs 5000) and Redis on core {meta['load_core']}. "
             f"Versions: vllm-router {meta['versions']['vllm-router']}, smg "
             f"{meta['versions']['smg']}, nginx {meta['versions']['nginx']}."
             + (" Load average at start and end: {} and {} (2 cores).".format(*meta["load_average_1m"])
                if "load_average_1m" in meta else ""), "",
             "| | added p50 / p99 ms, c1 | requests/s, c64 (proxy's core used) | CPU ms per request, c64; c1 "
             "| stream first event, added ms | RSS MB idle -> streams |",
             "|---|---|---|---|---|---|"]
    for name in peers:
        f = figs[name]
        core = f["cpu_ms_64"]["median"] * f["rps_64"]["median"] / 1000
        cpu = f"{_r(f['cpu_ms_64'])}; {_r(f['cpu_ms_1'])}"
        if name == "ours":
            cpu = (f"{_r(f['cpu_ms_64'])} + Redis {_r(f['redis_cpu_ms_64'])}; "
                   f"{_r(f['cpu_ms_1'])} + Redis {_r(f['redis_cpu_ms_1'])}")
        lines.append(f"| {name} | {_r(f['added_p50_ms'])} / {_r(f['added_p99_ms'])} | "
                     f"{_r(f['rps_64'], 0)} ({core:.0%}) | {cpu} | {f['first_event_added_ms']:.3f} | "
                     f"{f['rss_idle_mb']:.0f} -> {f['rss_streams_mb']:.0f} ({f['streams']} streams) |")
    lines += ["", f"Simulator straight, c64: {_r(figs['direct_rps_64'], 0)} requests/s (the "
              "generator's core alone). A proxy using well under 100% of its core at c64 is "
              "bound by the generator's core, not by its own: its requests/s is a floor.",
              f"Ours: Redis RSS {figs['ours']['redis_rss_streams_mb']:.0f} MB with the streams "
              f"(not in the RSS column); X-Cache of new, new, repeated prompt: "
              f"{', '.join(figs['ours']['cache'])}.",
              "Log lines per request (c64): " + ", ".join(
                  f"{n} {figs[n]['log_lines_per_request']}" for n in peers) + "; cores used idle "
              "(health checks, scrapes): " + ", ".join(f"{n} {figs[n]['idle_cores']:.1%}"
                                                       for n in peers) + ".", "",
              "Ours divided by each peer (CPU: ours with Redis's; above 1 is ours costlier or "
              "slower, except requests/s where below 1 is ours slower):", "",
              "| ours / | added p50 | added p99 | requests/s c64 | CPU/req c64 | CPU/req c1 "
              "| first event | RSS idle | RSS streams |", "|---|---|---|---|---|---|---|---|---|"]
    ours = flat(figs["ours"], "ours")
    for name in peers[1:]:
        peer = flat(figs[name], name)
        cells = [f"{ours[k] / peer[k]:.2f}" if peer[k] > 0 else "n/a" for k in ours]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    met = [f"{k} {ours[k]:.3f} ({'met' if (ours[k] <= b if d == 'max' else ours[k] >= b) else 'not met'}"
           f": {'at most' if d == 'max' else 'at least'} {b})" for k, (b, d) in TARGETS.items()]
    lines += ["", "Issue 23's targets for ours: " + "; ".join(met) + "."]
    return "\n".join(lines) + "\n"
