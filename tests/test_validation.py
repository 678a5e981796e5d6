"""The checks a sync message passes before the store: a bad timestamp is found fast and
named exactly."""

from __future__ import annotations

import pytest

from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.errors import InvalidArgument
from services.master.validation import clean_batch

from .conftest import NOW


@pytest.mark.parametrize(
    ("where", "seconds", "nanos"),
    [("messages[3].create_time", 253_402_300_800, 0), ("comments[1].created_at", -62_135_596_801, 0), ("messages[0].create_time", NOW, 1_000_000_000)],
)
def test_a_timestamp_out_of_range_is_refused_by_its_path(where: str, seconds: int, nanos: int) -> None:
    sample = SampleAccount("acc", seed=2, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=3, contents=1, comments_per_content=3)
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(sample.batch)
    clean_batch(batch, "acc", "delta.upserts")  # the sample itself is clean
    collection, _, rest = where.partition("[")
    index, _, field = rest.partition("].")
    stamp = getattr(getattr(batch, collection)[int(index)], field)
    stamp.seconds, stamp.nanos = seconds, nanos
    with pytest.raises(InvalidArgument) as refused:
        clean_batch(batch, "acc", "delta.upserts")
    assert refused.value.field == f"delta.upserts.{where}"
