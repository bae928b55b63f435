"""The exceptions of `smartcity.transit`, in one tree.

    SmartCityError
    └── GtfsError                   a GTFS feed cannot be imported, or a version does not exist
        ├── FeedError               the feed itself is broken; `problems` lists each place
        └── FeedVersionNotFoundError  no such feed version to remove or show

A `FeedError` names, for each problem, the file, the line (as a text editor counts it, the
header being line 1), the field, what is wrong and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartcity.errors import SmartCityError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a feed, and where."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.field is not None:
            where += f", field {self.field}"
        return f"{where}: {self.message}"


class GtfsError(SmartCityError):
    """Base of the transit package's errors."""


class FeedError(GtfsError):
    """A feed that is not valid GTFS; nothing was imported."""

    def __init__(self, problems: list[Problem], *, more: int = 0) -> None:
        self.problems = problems
        self.more = more
        lines = [f"the GTFS feed is invalid; nothing was imported. Fix {self._count()}:"]
        lines += [f"  {p}" for p in problems]
        if more:
            lines.append(f"  … and {more} more problems of the same kinds")
        super().__init__("\n".join(lines))

    def _count(self) -> str:
        total = len(self.problems) + self.more
        return "this" if total == 1 else f"these {total} problems"


class FeedVersionNotFoundError(GtfsError):
    """The feed version asked for does not exist."""
