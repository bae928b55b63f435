"""Reading a GTFS feed's CSV files out of its zip, with line numbers for error messages.

GTFS files are RFC 4180 CSV in UTF-8; real feeds add a byte-order mark, CRLF line ends,
spaces around header names (USF Bull Runner writes `, exact_times`), quoted fields with
commas or line breaks, and blank trailing lines. The standard library handles all of them
once the file is opened as `utf-8-sig` with `newline=""`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

from smartcity.transit.errors import FeedError, GtfsError, Problem

# How often (in rows) a reader reports how many bytes of its file it has read.
PROGRESS_EVERY_ROWS = 5000

BytesCallback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Header:
    """A file's columns: name → position."""

    file: str
    index: dict[str, int]

    def has(self, column: str) -> bool:
        return column in self.index

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.index]
        if missing:
            raise FeedError(
                [
                    Problem(
                        self.file,
                        1,
                        None,
                        f"the header lacks required column(s) {', '.join(missing)}; "
                        f"add them (the header is: {', '.join(self.index) or 'empty'})",
                    )
                ]
            )


class FeedArchive:
    """An open GTFS zip. Use as a context manager; files are found at the top level or in
    the single folder that holds them (some publishers zip the folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except OSError as exc:
            raise GtfsError(
                f"cannot open {path} ({exc.strerror or exc}); give the path of a GTFS .zip file"
            ) from None
        except zipfile.BadZipFile:
            raise FeedError(
                [Problem(str(path), None, None, "is not a zip archive; a GTFS feed is a .zip")]
            ) from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name = PurePosixPath(info.filename).name
            # Prefer the shallowest copy when a name appears twice (e.g. a nested backup).
            old = self._members.get(name)
            if old is None or old.filename.count("/") > info.filename.count("/"):
                self._members[name] = info

    def __enter__(self) -> FeedArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def has(self, name: str) -> bool:
        return name in self._members

    def names(self) -> list[str]:
        return sorted(self._members)

    def size(self, name: str) -> int:
        return self._members[name].file_size

    def rows(
        self, name: str, on_bytes: BytesCallback | None = None
    ) -> tuple[Header, Iterator[tuple[int, list[str]]]]:
        """The header of `name` and an iterator of (line number, fields), blank lines skipped.

        The header is read on its own and the iterator opens the file again when it starts,
        so a caller that refuses the header leaves no file open.
        """
        with self._open(name) as text:
            try:
                first = next(csv.reader(text, strict=True), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise _read_error(name, 1, exc) from None
        if first is None:
            raise FeedError([Problem(name, 1, None, "the file is empty; it needs a header row")])
        columns = [c.strip().lstrip("\ufeff") for c in first]
        header = Header(name, {c: i for i, c in reversed(list(enumerate(columns))) if c})
        return header, self._iterate(name, on_bytes)

    def _open(self, name: str) -> io.TextIOWrapper:
        raw = self._zip.open(self._members[name])
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

    def _iterate(
        self, name: str, on_bytes: BytesCallback | None
    ) -> Iterator[tuple[int, list[str]]]:
        line = 1
        done = 0
        raw = self._zip.open(self._members[name])
        with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text, strict=True)
            next(reader, None)  # the header, read already
            while True:
                start = line + 1
                try:
                    row = next(reader, None)
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise _read_error(name, start, exc) from None
                if row is None:
                    break
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield start, row
                done += 1
                if on_bytes is not None and done % PROGRESS_EVERY_ROWS == 0:
                    on_bytes(raw.tell())
        if on_bytes is not None:
            on_bytes(-1)  # the whole file is read


def _read_error(name: str, line: int, exc: Exception) -> FeedError:
    if isinstance(exc, UnicodeDecodeError):
        return FeedError(
            [
                Problem(
                    name,
                    line,
                    None,
                    "is not UTF-8 text (at or shortly after this line); GTFS files must be "
                    "UTF-8: re-save the file as UTF-8",
                )
            ]
        )
    return FeedError(
        [Problem(name, line, None, f"is not valid CSV ({exc}); check the quoting on this line")]
    )
