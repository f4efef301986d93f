"""Checking a batch input file against the shipped routing table: a good file's line index
(blank lines skipped, the model resolved through its alias), each kind of bad line named by
its line number, the error list capped, the line cap, and the index written and read back."""

from __future__ import annotations

from array import array
from pathlib import Path

import orjson
import pytest

from llmgw.batches import validate
from llmgw.batches.validate import check_file, read_span, write_spans
from llmgw.endpoints import BY_NAME
from llmgw.routing import load_routing

SHIPPED = Path(__file__).resolve().parents[3] / "gateway" / "routing.yaml"
URL = "/v1/chat/completions"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def routing():
    return load_routing(SHIPPED, env={})


def _line(custom_id: str, model: str = "qwen", url: str = URL, **body) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}) + b"\n"


def _check(tmp_path, routing, raw: bytes, **kw):
    path = tmp_path / "input.jsonl"
    path.write_bytes(raw)
    return check_file(path, URL, BY_NAME["chat"], routing, **kw)


def test_a_good_file_yields_its_line_index_and_model(tmp_path, routing):
    lines = [_line("a"), b"\n", b"   \n", _line("b", model=QWEN), _line("c").rstrip(b"\n")]
    raw = b"".join(lines)
    checked = _check(tmp_path, routing, raw)
    assert checked.errors == [] and checked.more_errors == 0
    assert checked.model == QWEN  # the alias resolved to the public name
    spans = list(checked.spans)
    pairs = list(zip(spans[::2], spans[1::2]))
    assert [raw[o:o + n] for o, n in pairs] == [lines[0], lines[3], lines[4]]


@pytest.mark.parametrize("bad,code,param", [
    (b"{not json\n", "invalid_json_line", None),
    (orjson.dumps({"custom_id": "x", "method": "GET", "url": URL, "body": {}}) + b"\n",
     "invalid_request", "method"),
    (orjson.dumps({"custom_id": "x", "method": "POST", "url": URL, "body": {}, "extra": 1}) + b"\n",
     "invalid_request", "extra"),
    (_line("x", url="/v1/completions"), "invalid_url", "url"),
    (_line("x", stream=True), "invalid_request", "body.stream"),
    (_line("x", model="no-such-model"), "model_not_found", "body.model"),
    (_line("x", messages="not a list"), "invalid_request", "body.messages"),
    (_line("x", model="text2sql"), "mismatched_model", "body.model"),
    (_line("a"), "duplicate_custom_id", "custom_id"),
])
def test_each_bad_line_is_named_by_its_line_number(tmp_path, routing, bad, code, param):
    checked = _check(tmp_path, routing, _line("a") + b"\n" + bad)
    assert [(e.code, e.line, e.param) for e in checked.errors] == [(code, 3, param)]
    assert checked.errors[0].message


def test_an_empty_file_is_refused(tmp_path, routing):
    checked = _check(tmp_path, routing, b"\n  \n")
    assert [(e.code, e.line) for e in checked.errors] == [("empty_file", None)]


def test_errors_are_listed_up_to_the_cap_and_the_rest_counted(tmp_path, routing, monkeypatch):
    monkeypatch.setattr(validate, "MAX_ERRORS", 3)
    checked = _check(tmp_path, routing, b"nope\n" * 5)
    assert [e.line for e in checked.errors] == [1, 2, 3] and checked.more_errors == 2


def test_a_file_over_the_line_cap_stops_at_the_first_extra_line(tmp_path, routing):
    raw = b"".join(_line(f"c{i}") for i in range(5))
    checked = _check(tmp_path, routing, raw, max_lines=3)
    assert [(e.code, e.line) for e in checked.errors] == [("too_many_requests", 4)]
    assert len(checked.spans) == 6  # the three lines within the cap


def test_the_line_index_is_written_whole_and_read_back_by_item(tmp_path):
    index = tmp_path / "lines.idx"
    write_spans(array("Q", [0, 10, 10, 250, 260, 2**40]), index)
    assert not index.with_suffix(".part").exists()
    assert [read_span(index, i) for i in range(3)] == [(0, 10), (10, 250), (260, 2**40)]
