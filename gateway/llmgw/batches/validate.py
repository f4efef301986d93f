"""Checking a batch input file before any line runs, as the realtime endpoint would check each
body: JSON lines, unique custom_ids, the batch's url, one known model, a valid body, at most
MAX_LINES lines. A good file yields its line index (where each line starts, for the runners);
a bad one the errors that name its lines, OpenAI style."""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from ..endpoints import EndpointSpec
from ..errors import GatewayError
from ..protocol import validate
from ..routing import RoutingTable
from .protocol import MAX_LINES, BatchError, InputLine

MAX_ERRORS = 100  # listed in the batch's `errors`; the count says how many more there were


@dataclass
class Checked:
    """What validation found: the model and the lines' (offset, length), or the errors."""
    model: str | None = None
    spans: array = field(default_factory=lambda: array("Q"))
    errors: list[BatchError] = field(default_factory=list)
    more_errors: int = 0

    def refuse(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(BatchError(code=code, message=message, line=line, param=param))
        else:
            self.more_errors += 1


def check_file(path: Path, url: str, endpoint: EndpointSpec, routing: RoutingTable,
               max_lines: int = MAX_LINES) -> Checked:
    """Read the file once, line by line (never whole in memory). Blank lines are skipped;
    `line` in an error is the file's line number, from 1."""
    checked, seen = Checked(), set()
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if len(checked.spans) // 2 >= max_lines:
                checked.refuse("too_many_requests", f"a batch holds at most {max_lines} "
                               "requests", number)
                break
            _check_line(raw, number, url, endpoint, routing, checked, seen)
            checked.spans.extend((start, len(raw)))
    if not checked.spans and not checked.errors:
        checked.refuse("empty_file", "the input file holds no requests", None)
    return checked


def _check_line(raw: bytes, number: int, url: str, endpoint: EndpointSpec,
                routing: RoutingTable, checked: Checked, seen: set[str]) -> None:
    try:
        line = InputLine.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        checked.refuse("invalid_json_line", "this line is not a JSON object", number)
        return
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        checked.refuse("invalid_request", f"{param}: {first['msg']}", number, param)
        return
    if line.custom_id in seen:
        checked.refuse("duplicate_custom_id", f"custom_id {line.custom_id[:64]!r} is used "
                       "by an earlier line", number, "custom_id")
    seen.add(line.custom_id)
    if line.url != url:
        checked.refuse("invalid_url", f"url {line.url[:100]!r} is not the batch's endpoint "
                       f"{url}", number, "url")
        return
    if line.body.get("stream"):
        checked.refuse("invalid_request", "a batch request cannot stream", number, "body.stream")
        return
    try:
        validate(endpoint.request, line.body)
        model = routing.resolve(line.body.get("model"), endpoint.serves).name
    except GatewayError as exc:
        param = f"body.{exc.param}" if exc.param else None
        code = "model_not_found" if param == "body.model" else "invalid_request"
        checked.refuse(code, exc.message, number, param)
        return
    if checked.model is None:
        checked.model = model
    elif model != checked.model:
        checked.refuse("mismatched_model", f"every request of a batch must use one model: "
                       f"{model!r} here, {checked.model!r} before", number, "body.model")


def write_spans(spans: array, path: Path) -> None:
    """The line index, written whole and synced before it is renamed into place."""
    partial = path.with_suffix(".part")
    with open(partial, "wb") as f:
        spans.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(partial, path)


def read_span(index: Path, item: int) -> tuple[int, int]:
    """Item `item`'s (offset, length) in the input file."""
    with open(index, "rb") as f:
        f.seek(item * 16)
        pair = array("Q")
        pair.frombytes(f.read(16))
    return pair[0], pair[1]
