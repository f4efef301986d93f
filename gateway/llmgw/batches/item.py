"""What a batch runner's request says about itself: the line it runs (organisation, job, line
number), sent in a header beside the runner's token. The gateway bills each line once by it
and runs it on the batch lane (batches/lane.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

BATCH_ITEM_HEADER = "x-llmgw-batch-item"
BATCH_KEY_HEADER = "x-llmgw-batch-key"  # the digest of the key that created the job
_ITEM = re.compile(r"^(org_[0-9a-f]{1,64})/(batch_[0-9a-f]{28})/(\d{1,6})$")


@dataclass(frozen=True, slots=True)
class BatchItem:
    org_id: str
    batch_id: str
    line: int

    def header(self) -> str:
        return f"{self.org_id}/{self.batch_id}/{self.line}"

    @classmethod
    def parse(cls, value: str) -> "BatchItem | None":
        found = _ITEM.match(value)
        return None if found is None else cls(found[1], found[2], int(found[3]))
