"""Compact sequences for a million rows: `CallRequest`s, row numbers and cell kinds without a Python
object per row.

`Calls` holds each valid row's index, callID, logID, disposition and notes in arrays and lists of the
strings the table already holds (about 36 bytes a row against 130 for a CallRequest and its logID);
a `CallRequest` is made when the row is iterated or indexed, and dropped after use. `Calls.subset()`
gives an empty `Selection` to `append` chosen requests to (4 bytes a row), in the same order.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence

from .models import CallRequest, Column


class RowNumbers(array):  # type: ignore[type-arg]
    """Row numbers in 4 bytes each (a list of ints takes 36; a sheet has at most 1,048,576 rows); equal to a
    list of the same numbers."""

    def __new__(cls, numbers: Sequence[int] = ()) -> RowNumbers:
        return super().__new__(cls, "i", numbers)  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.tolist() == other
        return array.__eq__(self, other)  # type: ignore[operator]

    __hash__ = None  # type: ignore[assignment]


class Kinds(Column[str]):
    """A column of cell kinds ("", "date", "bool") in one byte a row; equal to a list of the same kinds."""

    NAMES = ("", "date", "bool")

    def __init__(self) -> None:
        self._codes = bytearray()

    def append(self, kind: str) -> None:
        self._codes.append(self.NAMES.index(kind))

    def __len__(self) -> int:
        return len(self._codes)

    def _at(self, position: int) -> str:
        return self.NAMES[self._codes[position]]


class NumberTexts(Column[str]):
    """A column of texts that are mostly whole numbers (logIDs) in 8 bytes a row instead of about 65.

    A text that is exactly a whole number's own spelling (`87278`: ASCII digits, no leading zero, at most
    18 of them) is kept as the number; any other text (`87278.0`, `abc`, blank) is kept as itself. It reads
    back as the same texts and equals a list of them. A column where other texts are common (a CSV whose
    logIDs all end in `.0`) turns into a plain list, so it never takes more than a list would."""

    def __init__(self) -> None:
        self._numbers: array[int] | None = array("q")
        self._texts: dict[int, str] = {}  # position -> a text that is not a number's own spelling
        self._list: list[str] | None = None

    def append(self, text: str) -> None:
        if self._list is not None:
            self._list.append(text)
            return
        numbers = self._numbers
        assert numbers is not None
        if text.isdigit() and text.isascii() and len(text) <= 18 and (text[0] != "0" or text == "0"):
            numbers.append(int(text))
            return
        self._texts[len(numbers)] = text
        numbers.append(0)
        if len(self._texts) > 1000 and 4 * len(self._texts) > len(numbers):  # mostly other texts: a list
            self._list = list(self)
            self._numbers, self._texts = None, {}

    def __len__(self) -> int:
        return len(self._list) if self._list is not None else len(self._numbers or ())

    def _at(self, position: int) -> str:
        if self._list is not None:
            return self._list[position]
        text = self._texts.get(position)
        return text if text is not None else str(self._numbers[position])  # type: ignore[index]


class _Requests(Column[CallRequest]):
    """A compact sequence of requests: subclasses build the one at a position (`_at`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} requests)"


class Calls(_Requests):
    """The valid rows of one table, in table order."""

    def __init__(self, rows: Sequence[int]) -> None:
        self._rows = rows  # table index -> spreadsheet row number
        self._index = array("i")  # table indexes: a sheet has at most 1,048,576 rows
        self._log_id = array("q")
        self._call_id: list[str] = []
        self._disposition: list[str] = []
        self._notes: list[str] = []

    def add(self, index: int, call_id: str, log_id: int, disposition: str, notes: str) -> None:
        self._index.append(index)
        self._log_id.append(log_id)
        self._call_id.append(call_id)
        self._disposition.append(disposition)
        self._notes.append(notes)

    def __len__(self) -> int:
        return len(self._index)

    def _at(self, position: int) -> CallRequest:
        index = self._index[position]
        return CallRequest(index=index, row=self._rows[index], call_id=self._call_id[position],
                           log_id=self._log_id[position], disposition=self._disposition[position],
                           notes=self._notes[position])

    def position(self, index: int) -> int:
        """Where the row of table index `index` is in this sequence (it must be there)."""
        found = bisect.bisect_left(self._index, index)
        if found == len(self._index) or self._index[found] != index:
            raise ValueError(f"table index {index} is not a valid row")
        return found

    def subset(self) -> Selection:
        """An empty selection of these requests, to `append` to in order."""
        return Selection(self)


class Selection(_Requests):
    """Some of a `Calls`' requests (those to send), 4 bytes each."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._positions = array("i")

    def append(self, call: CallRequest) -> None:
        self._positions.append(self._calls.position(call.index))

    def subset(self) -> Selection:
        """An empty selection of the same requests."""
        return Selection(self._calls)

    def __len__(self) -> int:
        return len(self._positions)

    def _at(self, position: int) -> CallRequest:
        return self._calls[self._positions[position]]
