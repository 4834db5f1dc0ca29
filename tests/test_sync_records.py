"""The invalidation log's record format and reader (:mod:`regions.sync`), without a server."""

from __future__ import annotations

import json

import pytest

from regions.sync import MAX_GAP, Record, SyncLog, record
from regions.sync.records import FORMAT_VERSION


class Storage:
    """A :class:`~regions.backends.contract.LogStorage` in a dict."""

    def __init__(self) -> None:
        self.seq = 1000
        self.kept: dict[int, bytes] = {}

    def head(self) -> int:
        return self.seq

    def append(self, raw: bytes) -> int:
        self.seq += 1
        self.kept[self.seq] = raw
        return self.seq

    def records(self, first: int, last: int) -> dict[int, bytes]:
        return {n: self.kept[n] for n in range(first, last + 1) if n in self.kept}


@pytest.mark.parametrize(
    ("op", "namespace", "key", "tags"),
    [("clear", None, None, None), ("namespace", "ns", None, None), ("key", "ns", "text", None),
     ("key", "ns", (1, "a", b"\x00\xff", None), None), ("tags", None, None, ["a", "b"])],
)
def test_a_record_reads_back_as_written(
    op: str, namespace: str | None, key: object, tags: list[str] | None
) -> None:
    raw = record("me", op, namespace, key, tags)
    assert json.loads(raw)["v"] == FORMAT_VERSION
    rec = Record(raw)
    assert (rec.origin, rec.op, rec.namespace, rec.key, rec.tags) == ("me", op, namespace, key, tags or [])


@pytest.mark.parametrize(
    "raw",
    [b'{"o":"x","op":"clear"}', b'{"v":2,"o":"x","op":"clear"}', b'{"v":"1","o":"x","op":"clear"}',
     b'{"v":true,"o":"x","op":"clear"}', b'{"v":1,"o":"x","op":"drop"}', b'{"v":1,"op":"key","ns":"n"}',
     b'{"v":1,"op":"key","ns":"n","k":{"t":[{"b":"zz"}]}}', b"[1]", b"\xff", b"[" * 100_000],
)
def test_a_record_of_another_version_or_malformed_is_refused(raw: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        Record(raw)


def test_the_reader_resets_on_a_record_it_cannot_read_and_skips_its_own() -> None:
    storage = Storage()
    reader, writer = SyncLog(storage), SyncLog(storage)
    assert reader.changes() is None  # the first look
    writer.publish("key", "ns", "k")
    reader.publish("clear")
    assert [(r.op, r.key) for r in reader.changes() or []] == [("key", "k")]
    storage.append(b'{"v":2,"o":"x","op":"clear"}')
    assert reader.changes() is None
    assert reader.changes() == []
    storage.append(b"[" * 100_000)  # too deep to parse: a reset too, not a failed look
    assert reader.changes() is None


def test_the_reader_resets_on_a_gap() -> None:
    storage = Storage()
    reader = SyncLog(storage)
    reader.changes()
    storage.seq += 1  # a record lost
    assert reader.changes() is None
    storage.seq += MAX_GAP + 1
    storage.kept.update((n, record("x", "clear")) for n in range(storage.seq - MAX_GAP - 1, storage.seq + 1))
    assert reader.changes() is None
    storage.seq -= 10  # went back
    assert reader.changes() is None
