"""Reading fields out of one CSV row, and collecting the problems a file has.

A file's rows are all read before the feed is refused, so one run lists every bad row (up to
`MAX_LISTED_PROBLEMS`) rather than one per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from smartcity.transit.errors import FeedError, Problem
from smartcity.transit.gtfs_csv import Header
from smartcity.transit.gtfs_fields import FieldError

T = TypeVar("T")

# Enough to show every kind of mistake in a file; a feed with thousands of the same mistake
# gets a count instead of a wall of text.
MAX_LISTED_PROBLEMS = 20


class BadFieldError(Exception):
    """A field of the current row is wrong; caught per row by the file's reader."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


class Problems:
    """Problems found so far in a feed."""

    def __init__(self) -> None:
        self.listed: list[Problem] = []
        self.more = 0

    def add(self, file: str, line: int | None, column: str | None, message: str) -> None:
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(Problem(file, line, column, message))
        else:
            self.more += 1

    def row(self, file: str, line: int) -> _RowGuard:
        """Read one row in this block: a bad field is recorded and the next row follows."""
        return _RowGuard(self, file, line)

    def raise_if_any(self) -> None:
        if self.listed:
            raise FeedError(self.listed, more=self.more)


class _RowGuard:
    """Context of one row (a class, not @contextmanager: it runs once per row, millions of
    times for a large stop_times.txt)."""

    __slots__ = ("file", "line", "problems")

    def __init__(self, problems: Problems, file: str, line: int) -> None:
        self.problems = problems
        self.file = file
        self.line = line

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, BadFieldError):
            self.problems.add(self.file, self.line, exc.column, exc.message)
            return True
        return False


class Fields:
    """Typed access to the columns of one file's rows, the current row set by `each`."""

    def __init__(self, header: Header) -> None:
        self.header = header
        self._pos = header.index
        self._width = max(header.index.values(), default=-1) + 1
        self._row: list[str] = []

    def each(self, rows: Iterable[tuple[int, list[str]]]) -> Iterator[int]:
        """The line number of each row, with this object reading that row meanwhile."""
        width = self._width
        for line, row in rows:
            # A row may stop short of the header when its last fields are empty.
            self._row = row if len(row) >= width else row + [""] * (width - len(row))
            yield line

    def text(self, column: str) -> str | None:
        """The stripped value, or None when it is empty or the file lacks the column."""
        pos = self._pos.get(column)
        if pos is None:
            return None
        return self._row[pos].strip() or None

    def required(self, column: str) -> str:
        value = self.text(column)
        if value is None:
            raise BadFieldError(column, "is empty; this field is required")
        return value

    def parsed(self, column: str, parser: Callable[[str], T]) -> T | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            return parser(value)
        except FieldError as exc:
            raise BadFieldError(column, str(exc)) from None

    def parsed_required(self, column: str, parser: Callable[[str], T]) -> T:
        value = self.parsed(column, parser)
        if value is None:
            raise BadFieldError(column, "is empty; this field is required")
        return value


def unresolved(value: str, where: str) -> str:
    """The message for a reference to an id that the file it points to does not define."""
    return f"{value!r} is not defined in {where}; add it there or correct this reference"
