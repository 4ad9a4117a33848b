"""Each rank's share of the images and its shard of per-image results, kept so that a killed run resumes.

Rank r of N takes images r, r + N, r + 2N, ... and appends one JSON line per finished image to
OUT/shards/rank-<r>.jsonl, flushed and fsynced, so a kill loses at most the image in progress (a torn last
line is ignored on reading). On (re)start every rank reads every shard: an image recorded by any earlier run
is not done again, whatever the number of processes was then.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator


def shard_dir(out: Path) -> Path:
    return Path(out) / "shards"


def read_records(out: Path) -> dict[int, dict]:
    """Every complete per-image record of every shard, by image index (a repeated image keeps its first)."""
    records: dict[int, dict] = {}
    for path in sorted(shard_dir(out).glob("rank-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a killed process was writing
            if isinstance(record, dict) and "index" in record:
                records.setdefault(int(record["index"]), record)
    return records


def my_indices(total: int, rank: int, world: int, done: set[int]) -> list[int]:
    """This rank's images still to do."""
    return [i for i in range(rank, total, world) if i not in done]


class ShardWriter:
    """Appends this rank's records; a torn last line from a killed run is cut first."""

    def __init__(self, out: Path, rank: int):
        shard_dir(out).mkdir(parents=True, exist_ok=True)
        self.path = shard_dir(out) / f"rank-{rank}.jsonl"
        self._cut_torn_tail()
        self._file = open(self.path, "a", encoding="utf-8")

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[:data.rfind(b"\n") + 1])

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ordered(records: dict[int, dict]) -> Iterator[dict]:
    """Records by image index: the summary is the same whatever rank computed what."""
    for index in sorted(records):
        yield records[index]
