"""The real GTFS fixtures, and feeds made from them by editing a file or a row."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "gtfs"
POA = FIXTURES / "poa_gtfs.zip"
BULLRUNNER = FIXTURES / "bullrunner-gtfs.zip"

Table = list[list[str]]  # header first, as csv.reader gives it


def read_table(feed: Path, name: str) -> Table:
    with zipfile.ZipFile(feed) as zf:
        text = zf.read(name).decode("utf-8-sig")
    return [row for row in csv.reader(io.StringIO(text, newline="")) if row]


def column(table: Table, name: str) -> int:
    return [c.strip() for c in table[0]].index(name)


def find_row(table: Table, **match: str) -> int:
    """Index of the first row whose columns equal `match` (the header is index 0, so a
    row's index + 1 is its line number in a file without multi-line fields)."""
    cols = {column(table, k): v for k, v in match.items()}
    for i, row in enumerate(table[1:], start=1):
        if all(row[c] == v for c, v in cols.items()):
            return i
    raise AssertionError(f"no row with {match}")


def to_csv(table: Table, *, bom: bool = False, line_end: str = "\n") -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=line_end).writerows(table)
    return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


def rewrite(
    source: Path,
    target: Path,
    *,
    edit: dict[str, Callable[[Table], Table | None]] | None = None,
    drop: tuple[str, ...] = (),
    add: dict[str, bytes] | None = None,
) -> Path:
    """Copy a feed to `target`, editing tables (in place or by returning a new one),
    dropping files and adding raw ones."""
    edit = edit or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            name = info.filename
            if name in drop:
                continue
            if name in edit:
                table = read_table(source, name)
                changed = edit[name](table)
                dst.writestr(name, to_csv(changed if changed is not None else table))
            else:
                dst.writestr(name, src.read(name))
        for name, data in (add or {}).items():
            dst.writestr(name, data)
    return target


def set_cell(name: str, value: str, **match: str) -> Callable[[Table], None]:
    """An edit that sets column `name` of the first row matching `match`."""

    def edit(table: Table) -> None:
        table[find_row(table, **match)][column(table, name)] = value

    return edit


def both(*edits: Callable[[Table], None]) -> Callable[[Table], None]:
    """One edit that applies several in turn."""

    def edit(table: Table) -> None:
        for one in edits:
            one(table)

    return edit


def scaled_copy(source: Path, target: Path, copies: int) -> Path:
    """A larger feed: every trip (with its stop_times) repeated `copies` times under new ids."""

    def trips(table: Table) -> Table:
        at = column(table, "trip_id")
        return [table[0]] + [
            [*row[:at], f"{row[at]}~{k}", *row[at + 1 :]]
            for k in range(copies)
            for row in table[1:]
        ]

    return rewrite(source, target, edit={"trips.txt": trips, "stop_times.txt": trips})
