"""The batch item header: what a runner's request says about the line it runs."""

from __future__ import annotations

import pytest

from llmgw.batches.item import BatchItem

BATCH = "batch_" + "0123456789abcdef0123456789ab"


def test_a_header_parses_back_to_its_item():
    item = BatchItem("org_00ff", BATCH, 49_999)
    assert item.header() == f"org_00ff/{BATCH}/49999"
    assert BatchItem.parse(item.header()) == item


@pytest.mark.parametrize("value", [
    "", f"org_00ff/{BATCH}", f"org_00ff/{BATCH}/-1", f"org_00ff/{BATCH}/1234567",
    f"org_XY/{BATCH}/1", f"org_00ff/{BATCH[:-1]}/1", f"org_00ff/{BATCH}a/1",
    f"org_00ff/{BATCH}/1 ", f"other/{BATCH}/1", f"org_00ff/{BATCH}/1/2",
])
def test_anything_else_is_no_item(value):
    assert BatchItem.parse(value) is None
