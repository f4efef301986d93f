"""Printing admin API answers: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json
import sys


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:  # epoch seconds
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def table(rows: list[dict], columns: list[str], out=sys.stdout) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)


def record(data: dict, out=sys.stdout) -> None:
    width = max(len(k) for k in data) if data else 0
    for key, value in data.items():
        print(f"{key.ljust(width)}  {_cell(value)}", file=out)


def as_json(data, out=sys.stdout) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), file=out)
