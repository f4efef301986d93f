"""JSON shape (keys and value types, not values) extraction and comparison for the contract tests."""

from __future__ import annotations

import json
from typing import Any

DONE = "[DONE]"


def type_name(value: Any) -> str:
    # bool before int: JSON true is not a number; int and float stay distinct on purpose
    # (e.g. "created" must be an integer, scores and logprobs floats).
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def shape(value: Any) -> Any:
    """Dicts keep their keys; lists become the list of their distinct element shapes."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        distinct: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in distinct:
                distinct.append(s)
        return distinct
    return type_name(value)


def diff(real: Any, sim: Any, path: str = "$") -> list[str]:
    """Human-readable differences between two shapes; empty when they match."""
    if isinstance(real, dict) and isinstance(sim, dict):
        out = [f"{path}.{k}: missing in simulator (real: {_short(real[k])})" for k in real if k not in sim]
        out += [f"{path}.{k}: only in simulator ({_short(sim[k])})" for k in sim if k not in real]
        for key in real.keys() & sim.keys():
            out += diff(real[key], sim[key], f"{path}.{key}")
        return out
    if isinstance(real, list) and isinstance(sim, list):
        if len(real) == 1 and len(sim) == 1:  # the common homogeneous list
            return diff(real[0], sim[0], f"{path}[]")
        if real == sim:
            return []
        return [f"{path}: list element shapes differ: real {real} vs simulator {sim}"]
    if real != sim:
        return [f"{path}: real {_short(real)} vs simulator {_short(sim)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 120 else text[:117] + "..."


def sse_events(body: str) -> list[Any]:
    """The `data:` payloads of a server-sent-events body, JSON-decoded ([DONE] kept as is)."""
    events = []
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[len("data:"):].strip()
            events.append(DONE if data == DONE else json.loads(data))
    return events


def event_shapes(events: list[Any]) -> list[Any]:
    """Shapes of a stream's events with runs of identical shapes collapsed.

    The number of content chunks depends on the model's tokens, so only the order of the
    kinds of chunk (role, content, finish, usage, [DONE]) is part of the contract.
    """
    out: list[Any] = []
    for event in events:
        s = DONE if event == DONE else shape(event)
        if not out or out[-1] != s:
            out.append(s)
    return out


def diff_streams(real: list[Any], sim: list[Any]) -> list[str]:
    problems = []
    if len(real) != len(sim):
        problems.append(f"stream has {len(sim)} kinds of event in the simulator, {len(real)} in real vLLM")
    for i, (r, s) in enumerate(zip(real, sim)):
        problems += diff(r, s, f"event[{i}]")
    return problems
