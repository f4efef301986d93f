"""The contract tests' shape comparison itself (no servers needed)."""

from __future__ import annotations

from shape_diff import DONE, diff, diff_streams, event_shapes, shape, sse_events


def test_shape_keeps_keys_and_types_not_values() -> None:
    assert shape({"b": 1, "a": [1.5, 2.5], "c": None, "d": True}) == \
        {"a": ["float"], "b": "int", "c": "null", "d": "bool"}
    assert shape({"x": "hi"}) == shape({"x": "other"})


def test_diff_reports_missing_extra_and_retyped_keys() -> None:
    problems = diff(shape({"a": 1, "b": {"c": "x"}}), shape({"b": {"c": 2}, "z": 0}))
    assert "$.a: missing in simulator (real: \"int\")" in problems
    assert "$.z: only in simulator (\"int\")" in problems
    assert "$.b.c: real \"str\" vs simulator \"int\"" in problems
    assert diff(shape([{"a": 1}]), shape([{"a": 2}, {"a": 3}])) == []


def test_stream_shapes_collapse_repeated_chunks() -> None:
    body = 'data: {"c": "a"}\n\ndata: {"c": "b"}\n\ndata: {"c": "d", "u": 1}\n\ndata: [DONE]\n\n'
    events = sse_events(body)
    assert events[-1] == DONE
    assert event_shapes(events) == [{"c": "str"}, {"c": "str", "u": "int"}, DONE]
    assert diff_streams(event_shapes(events), event_shapes(events[1:])) == []
    assert diff_streams(event_shapes(events), event_shapes(events[:1] + events[3:]))
