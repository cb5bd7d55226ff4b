"""Log entries laid end to end: from the event loop to the database with no object per entry.

A server logging 20,000 requests a second paid more for keeping each request's entry alive
until the writer took it (a tuple of id, time and bytes, and those bytes again in the drift
window) than for making it: every kept object leaves the allocator's hot memory to the next
request. So the loop copies each one-row entry's JSON into a preallocated `Slab`, and keeps
only its time (already made) and its length; the writer takes the filled slab whole as a
`Packed` batch (a few objects for up to 500 entries, the times and lengths as arrays), which
is also what the drift window keeps and nearly the batch row's `entries` text already.
bench/README.md has the measurements.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate
from operator import add

import numpy as np
import orjson

from tabship.monitor.ids import PREFIX
from tabship.monitor.tables import Entry

# Between two entries in a slab and in a batch's text: the text is a JSON array's inside.
COMMA = ord(",")
# This process's ids, `prefix-counter` with ten hex digits (monitor/ids.py), as bytes.
_OWN = (PREFIX + "-").encode()
_WIDTH = len(_OWN) + 10
# Each byte's hex digit value; -1 for any other byte.
_HEX = np.full(256, -1, np.int64)
for _digit in "0123456789abcdef":
    _HEX[ord(_digit)] = int(_digit, 16)
_PLACES = 16 ** np.arange(9, -1, -1, dtype=np.int64)
_HEX_DIGITS = b"0123456789abcdef"


class Packed:
    """Entries as one text: their JSON, comma-separated, with each one's time and end, and
    their ids comma-separated when the loop wrote those too (`Slab`).

    A slab's batch comes with its entries' lengths, not their ends: the ends are made the
    first time they are asked for (the drift window's pieces, a batch that must be split),
    not for every batch the writer takes (an array of 500 sums held the GIL for 40 µs).
    """

    __slots__ = ("_ends", "id_text", "lengths", "text", "times")

    def __init__(
        self,
        text: bytes,
        times: array[float],
        ends: array[int] | None = None,
        id_text: bytes | None = None,
        lengths: array[int] | None = None,
    ) -> None:
        self.text = text
        self.times = times
        self._ends = ends
        self.lengths = lengths
        self.id_text = id_text

    @property
    def ends(self) -> array[int]:
        """Each entry's end in `text`: the lengths so far, one comma after each earlier one."""
        if self._ends is None:
            lengths = self.lengths if self.lengths is not None else array("q")
            sums = accumulate(lengths)
            self._ends = array("q", map(add, sums, range(len(lengths))))
        return self._ends

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> Packed:
        """Entries (id, time, JSON) packed; their ids are read back from the JSON."""
        texts = [entry[2] for entry in entries]
        # Each entry ends where its text does, one comma after the previous one's end.
        ends = [end + index for index, end in enumerate(accumulate(map(len, texts)))]
        return cls(b",".join(texts), array("d", [entry[1] for entry in entries]), array("q", ends))

    def __len__(self) -> int:
        return len(self.times)

    def json_array(self) -> bytes:
        """The entries as one JSON array (a batch row's `entries`)."""
        return b"[" + self.text + b"]"

    def json_rows(self, start: int, stop: int) -> bytes:
        """Entries `start` to `stop` - 1 as one JSON array."""
        first = self.ends[start - 1] + 1 if start else 0
        return b"[" + self.text[first : self.ends[stop - 1]] + b"]"

    def texts(self) -> Iterator[bytes]:
        """Each entry's JSON."""
        text, start = self.text, 0
        for end in self.ends:
            yield text[start:end]
            start = end + 1

    def ids(self) -> list[str]:
        """Each entry's id: the JSON string it starts with (`["id", ...`)."""
        return [_entry_id(text) for text in self.texts()]

    def own_ids(self) -> tuple[str, int, int] | None:
        """The ids comma-separated, with their lowest and highest counters, when every entry
        starts with one of this process's ids (the writer's usual batch); None otherwise.

        Read by numpy over the whole text: an id at a time in Python cost the writer (which
        shares the serving core) half a microsecond a prediction. A slab's batch comes with
        its ids written by the loop, read without gathering them from the text.
        """
        count = len(self)
        if not count:
            return None
        if self.id_text is not None and len(self.id_text) == count * (_WIDTH + 1) - 1:
            return _counted_ids(self.id_text, count)
        data = np.frombuffer(self.text, np.uint8)
        starts = np.zeros(count, np.int64)
        starts[1:] = np.frombuffer(self.ends, np.int64)[:-1] + 1
        # Each entry's first bytes: `["`, the id, its closing quote.
        places = starts[:, None] + np.arange(2, _WIDTH + 3)
        if places[-1, -1] >= len(data):
            return None
        chars = data[places]
        if not (chars[:, : len(_OWN)] == np.frombuffer(_OWN, np.uint8)).all():
            return None
        if not (chars[:, -1] == ord('"')).all():
            return None
        digits = _HEX[chars[:, len(_OWN) : _WIDTH]]
        if (digits < 0).any():
            return None
        counters = digits @ _PLACES
        chars[:, -1] = COMMA
        return chars.tobytes()[:-1].decode(), int(counters.min()), int(counters.max())

    def time_range(self) -> tuple[float, float]:
        """The earliest and latest entry's time (a batch holds at least one).

        By numpy: `min` and `max` over the array made a float object an entry, 20 µs of a
        500-row batch in the writer, which shares the serving core (5 µs now). A reduction
        over so few values keeps the GIL (numpy lets go of it past 500), so the writer does
        not wait behind the busy loop to get it back.
        """
        times = np.frombuffer(self.times, np.float64)
        return float(times.min()), float(times.max())

    def entries(self) -> list[Entry]:
        """The entries as (id, time, JSON)."""
        texts = list(self.texts())
        return list(zip(map(_entry_id, texts), self.times.tolist(), texts, strict=True))


def _counted_ids(id_text: bytes, count: int) -> tuple[str, int, int] | None:
    """`own_ids` of ids comma-separated, `_WIDTH` apart: when each is this process's kind
    (`_OWN` and ten hex digits) their order as text is their counters' order. Bytes methods
    only: numpy gathering the ids from the entries' text was 95 µs of a 500-row batch, and
    its calls let go of the GIL and waited for it again, each time behind a busy loop."""
    step = _WIDTH + 1
    # A comma where each id ends, and nothing but hex digits besides one dash an id and those
    # commas (one translate and a compare: counting the commas and dashes took twice as long).
    if (
        id_text[_WIDTH::step] != b"," * (count - 1)
        or id_text.translate(None, _HEX_DIGITS) != b"-," * (count - 1) + b"-"
    ):
        return None
    if any(id_text[at::step] != _OWN[at : at + 1] * count for at in range(len(_OWN))):
        return None
    ids = id_text.split(b",")
    start = len(_OWN)
    return id_text.decode(), int(min(ids)[start:], 16), int(max(ids)[start:], 16)


def _entry_id(text: bytes) -> str:
    """The id an entry's JSON starts with; an id with escapes in it is read by the parser."""
    end = text.index(b'"', 2)
    if b"\\" in text[2:end]:
        return str(orjson.loads(text)[0])
    return text[2:end].decode()


class Slab:
    """Preallocated room the event loop copies one batch of entries into (see `LogWriter`)."""

    __slots__ = ("data", "id_size", "ids", "lengths", "rows", "size", "times")

    def __init__(self, rows: int, size: int) -> None:
        self.data = bytearray(size)
        # Each entry's time and the length of its JSON, as the loop extends them a turn at a
        # time (a C loop over the turn: filling arrays there cost 150 ns an entry); `pack`
        # makes them arrays, in the writer's thread.
        self.times: list[float] = []
        self.lengths: list[int] = []
        # The entries' ids, each followed by a comma (room for this process's ids; an id
        # past it grows the array).
        self.ids = bytearray((_WIDTH + 1) * rows)
        self.rows = 0
        # Bytes used, each entry followed by its comma.
        self.size = 0
        self.id_size = 0

    def pack(self) -> Packed:
        """The entries copied out as one batch; the slab is then empty, for reuse."""
        with memoryview(self.data) as view:
            text = bytes(view[: self.size - 1])  # the last entry's comma left out
        with memoryview(self.ids) as view:
            ids = bytes(view[: self.id_size - 1])
        # As arrays: the batch (kept by the drift window too) then holds no object an entry.
        packed = Packed(text, array("d", self.times), None, ids, array("q", self.lengths))
        self.times.clear()
        self.lengths.clear()
        self.rows = self.size = self.id_size = 0
        return packed


__all__ = ["COMMA", "Packed", "Slab"]
