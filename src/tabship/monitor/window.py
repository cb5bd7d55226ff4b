"""A server's own recent inputs, for its drift gauges: the newest batches the log wrote."""

from __future__ import annotations

from collections import deque
from typing import Any

from tabship.exact_json import loads_exact
from tabship.monitor.handover import pieces
from tabship.monitor.packed import Packed
from tabship.monitor.profile import ReferenceProfile

DRIFT_WINDOW_ROWS = 20_000
# The window keeps the records (as text): bound its cells, so a wide model keeps fewer rows
# (500 features: 1,000 rows) and a pod's memory stays well under its limit.
DRIFT_WINDOW_CELLS = 500_000


class RecentInputs:
    """This process's recent inputs for its drift gauges: the newest batches, as written.

    A batch is kept as the writer took it (`Packed`: one text, two arrays), so keeping 20,000
    rows is 40 objects, none of which the garbage collector tracks or the loop's allocations
    land between. The rows are read back into columns only when the gauges are refreshed.
    """

    def __init__(self, profile: ReferenceProfile) -> None:
        self.names = [f.name for f in profile.features]
        width = max(1, len(self.names))
        self.size = max(1000, min(DRIFT_WINDOW_ROWS, DRIFT_WINDOW_CELLS // width))
        self.batches: deque[Packed] = deque()
        self.rows = 0

    def extend(self, batch: Packed) -> None:
        """Keep a batch, dropping the oldest ones not needed for the newest `size` rows."""
        self.batches.append(batch)
        self.rows += len(batch)
        while self.rows - len(self.batches[0]) >= self.size:
            self.rows -= len(self.batches.popleft())

    def since(self, cutoff: float) -> tuple[dict[str, list[Any]], list[Any]]:
        """The newest `size` kept rows from `cutoff` on, by feature name, and their
        predictions."""
        columns: dict[str, list[Any]] = {name: [] for name in self.names}
        predictions = []
        surplus = self.rows - self.size  # the oldest batch's rows past the newest `size`
        for batch in list(self.batches):
            skip, surplus = max(0, surplus), 0
            # Read a piece at a time, the core handed over between pieces: a whole batch's
            # text (500 rows) held the serving thread for a millisecond.
            for start, rows in pieces(range(len(batch))):
                stop = start + len(rows)
                entries = loads_exact(batch.json_rows(start, stop))
                for entry, ts in zip(entries, batch.times[start:stop], strict=True):
                    if ts < cutoff:
                        continue
                    if skip:
                        skip -= 1
                        continue
                    record = entry[4]
                    for name, column in columns.items():
                        column.append(record.get(name))
                    predictions.append(entry[5])
        return columns, predictions


__all__ = ["DRIFT_WINDOW_CELLS", "DRIFT_WINDOW_ROWS", "RecentInputs"]
