"""gatewayctl's printing: aligned tables and records with readable cells, JSON sorted."""

from __future__ import annotations

import io
import json

from llmgw.ctl.render import as_json, record, table


def _printed(fn, *args) -> str:
    out = io.StringIO()
    fn(*args, out=out)
    return out.getvalue()


def test_a_table_aligns_columns_and_renders_cells():
    rows = [{"id": "org_1", "scopes": ["chat", "batch"], "limits": {"rpm": 10, "tpm": 5},
             "created_at": 1_700_000_000.0},
            {"id": "org_22", "scopes": [], "limits": {}, "created_at": None, "extra": "ignored"}]
    assert _printed(table, rows, ["id", "scopes", "limits", "created_at"]).splitlines() == [
        "ID      SCOPES      LIMITS        CREATED_AT",
        "org_1   chat,batch  rpm=10 tpm=5  2023-11-14 22:13:20Z",
        "org_22              -             -",
    ]


def test_small_numbers_are_not_taken_for_times():
    assert _printed(table, [{"n": 12.5, "k": 3}], ["n", "k"]).splitlines() == ["N     K", "12.5  3"]


def test_an_empty_table_is_its_header():
    assert _printed(table, [], ["id", "name"]) == "ID  NAME\n"


def test_a_record_aligns_its_keys():
    assert _printed(record, {"id": "k1", "expires_at": None, "scopes": ["chat"]}).splitlines() == [
        "id          k1", "expires_at  -", "scopes      chat"]
    assert _printed(record, {}) == ""


def test_json_is_sorted_and_indented():
    text = _printed(as_json, {"b": 1, "a": [1, {"d": None, "c": "é"}]})
    assert json.loads(text) == {"b": 1, "a": [1, {"d": None, "c": "é"}]}
    assert text.index('"a"') < text.index('"b"') and text.startswith('{\n  "a"')
