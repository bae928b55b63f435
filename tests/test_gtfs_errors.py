"""Broken feeds are refused with the file, line and field of each problem; awkward but valid
ones (BOM, CRLF, quoting, empty optional fields, times past 24:00) are read correctly."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from smartcity.transit.errors import FeedError, GtfsError, Problem
from smartcity.transit.gtfs_read import read_feed
from smartcity.transit.trip_layout import lay_out
from tests.gtfs_feeds import (
    BULLRUNNER,
    POA,
    Table,
    both,
    column,
    find_row,
    read_table,
    rewrite,
    set_cell,
    to_csv,
)


def _problems(feed: Path) -> list[Problem]:
    with pytest.raises(FeedError) as caught:
        read_feed(feed)
    return caught.value.problems


# Each case: (file edited, the edit, then the expected file, line, field, words in the message).
# Lines are where the edited row sits in the original file (row index + 1: the header is 1).
_BR_STOP_TIME = {"trip_id": "1", "stop_sequence": "3"}


def _line(name: str, **match: str) -> int:
    return find_row(read_table(BULLRUNNER, name), **match) + 1


Case = tuple[str, Callable[[Table], None], str, int, str, str]
CASES: dict[str, Case] = {
    "bad time": (
        "stop_times.txt",
        set_cell("departure_time", "07:61:38", **_BR_STOP_TIME),
        "stop_times.txt",
        _line("stop_times.txt", **_BR_STOP_TIME),
        "departure_time",
        "is not a time",
    ),
    "stop_times out of order": (
        "stop_times.txt",
        both(
            set_cell("arrival_time", "07:00:30", **_BR_STOP_TIME),
            set_cell("departure_time", "07:00:30", **_BR_STOP_TIME),
        ),
        "stop_times.txt",
        _line("stop_times.txt", **_BR_STOP_TIME),
        "arrival_time",
        "out of order",
    ),
    "duplicate stop_sequence": (
        "stop_times.txt",
        set_cell("stop_sequence", "2", **_BR_STOP_TIME),
        "stop_times.txt",
        _line("stop_times.txt", **_BR_STOP_TIME),
        "stop_sequence",
        "appears twice",
    ),
    "stop_time to an unknown stop": (
        "stop_times.txt",
        set_cell("stop_id", "9999", **_BR_STOP_TIME),
        "stop_times.txt",
        _line("stop_times.txt", **_BR_STOP_TIME),
        "stop_id",
        "'9999' is not defined in stops.txt",
    ),
    "stop_time to an unknown trip": (
        "stop_times.txt",
        set_cell("trip_id", "99", **_BR_STOP_TIME),
        "stop_times.txt",
        _line("stop_times.txt", **_BR_STOP_TIME),
        "trip_id",
        "'99' is not defined in trips.txt",
    ),
    "trip to an unknown route": (
        "trips.txt",
        set_cell("route_id", "Z", trip_id="4"),
        "trips.txt",
        _line("trips.txt", trip_id="4"),
        "route_id",
        "'Z' is not defined in routes.txt",
    ),
    "trip to an unknown service": (
        "trips.txt",
        set_cell("service_id", "Holiday", trip_id="4"),
        "trips.txt",
        _line("trips.txt", trip_id="4"),
        "service_id",
        "'Holiday' is not defined in calendar.txt or calendar_dates.txt",
    ),
    "trip to an unknown shape": (
        "trips.txt",
        set_cell("shape_id", "77", trip_id="4"),
        "trips.txt",
        _line("trips.txt", trip_id="4"),
        "shape_id",
        "'77' is not defined in shapes.txt",
    ),
    "bad date": (
        "calendar.txt",
        set_cell("start_date", "2015-01-01", service_id="Fr"),
        "calendar.txt",
        _line("calendar.txt", service_id="Fr"),
        "start_date",
        "write YYYYMMDD",
    ),
    "bad number": (
        "stops.txt",
        set_cell("stop_lat", "28,0592", stop_id="102"),
        "stops.txt",
        _line("stops.txt", stop_id="102"),
        "stop_lat",
        "is not a number",
    ),
    "latitude out of range": (
        "stops.txt",
        set_cell("stop_lat", "128.05", stop_id="102"),
        "stops.txt",
        _line("stops.txt", stop_id="102"),
        "stop_lat",
        "out of range",
    ),
    "unknown time zone": (
        "agency.txt",
        set_cell("agency_timezone", "Eastern", agency_name="USF Bull Runner"),
        "agency.txt",
        2,
        "agency_timezone",
        "is not a time zone",
    ),
    "frequency that ends before it starts": (
        "frequencies.txt",
        set_cell("end_time", "06:00:00", trip_id="3"),
        "frequencies.txt",
        _line("frequencies.txt", trip_id="3"),
        "end_time",
        "is not after start_time",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_broken_row_is_named_by_file_line_and_field(case: str, tmp_path: Path) -> None:
    edited, edit, file, line, field, words = CASES[case]
    problems = _problems(rewrite(BULLRUNNER, tmp_path / "broken.zip", edit={edited: edit}))
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.file, problem.line, problem.field) == (file, line, field)
    assert words in problem.message
    text = str(problem)
    assert text.startswith(f"{file} line {line}, field {field}: ")


def test_a_missing_required_file_is_named(tmp_path: Path) -> None:
    feed = rewrite(BULLRUNNER, tmp_path / "f.zip", drop=("stops.txt", "calendar.txt"))
    problems = _problems(feed)
    assert [p.file for p in problems] == ["stops.txt", "calendar.txt"]
    assert "is missing from the zip" in problems[0].message
    assert "calendar_dates.txt" in problems[1].message


def test_a_missing_required_column_is_named(tmp_path: Path) -> None:
    def drop_lat(table: Table) -> Table:
        at = column(table, "stop_lat")
        return [row[:at] + row[at + 1 :] for row in table]

    problems = _problems(rewrite(BULLRUNNER, tmp_path / "f.zip", edit={"stops.txt": drop_lat}))
    assert (problems[0].file, problems[0].line) == ("stops.txt", 1)
    assert "lacks required column(s) stop_lat" in problems[0].message


def test_the_message_lists_every_bad_row_and_says_nothing_was_imported(tmp_path: Path) -> None:
    def break_all_lats(table: Table) -> None:
        for row in table[1:]:
            row[column(table, "stop_lat")] = "north"

    feed = rewrite(BULLRUNNER, tmp_path / "f.zip", edit={"stops.txt": break_all_lats})
    with pytest.raises(FeedError) as caught:
        read_feed(feed)
    text = str(caught.value)
    assert text.startswith("the GTFS feed is invalid; nothing was imported. Fix these 125 problems")
    assert "stops.txt line 2, field stop_lat: 'north' is not a number" in text
    assert "… and 105 more problems" in text


def test_not_a_zip_or_no_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "feed.zip"
    bogus.write_text("agency_id,agency_name\n")
    with pytest.raises(FeedError, match="is not a zip archive"):
        read_feed(bogus)
    with pytest.raises(GtfsError, match=r"cannot open .*nowhere\.zip \(No such file"):
        read_feed(tmp_path / "nowhere.zip")


def test_a_trip_whose_clock_restarts_at_midnight_is_read_as_the_same_service_day() -> None:
    feed = read_feed(POA)
    late = feed.stop_times["T2-1@1#2310"]
    assert late[0].departure_s == 23 * 3600 + 10 * 60
    assert late[-1].arrival_s == 24 * 3600 + 2 * 60  # written 00:02:00 in the feed
    assert any("00:xx" in w for w in feed.warnings)


def test_awkward_but_valid_files_are_read(tmp_path: Path) -> None:
    """BOM and CRLF, a quoted name with a comma, a quote and a line break, spaces around
    header names, empty optional fields, times past 24:00, calendar_dates without calendar."""

    def stops(table: Table) -> bytes:
        table[0] = [f" {c} " for c in table[0]]
        row = table[find_row(table, stop_id="102")]
        row[column(table, "stop_name")] = 'Library, "LIB"\nnorth door'
        return to_csv(table, bom=True, line_end="\r\n")

    def late_trip(table: Table) -> None:
        for row in table[1:]:
            if row[0] == "7":  # route C's Sunday trip: push it past midnight
                h, m, sec = (int(x) for x in row[1].split(":"))
                row[1] = row[2] = f"{h + 18:02d}:{m:02d}:{sec:02d}"

    calendar_dates = to_csv(
        [["service_id", "date", "exception_type"]]
        + [[s, "20190304", "1"] for s in ("Mo", "Fr", "Su")]
    )
    stops_bytes = stops(read_table(BULLRUNNER, "stops.txt"))
    feed_path = rewrite(
        BULLRUNNER,
        tmp_path / "awkward.zip",
        drop=("stops.txt", "calendar.txt"),
        edit={
            "stop_times.txt": late_trip,
            "frequencies.txt": lambda t: [t[0]] + [r for r in t[1:] if r[0] != "7"],
        },
        add={"stops.txt": stops_bytes, "calendar_dates.txt": calendar_dates},
    )
    feed = read_feed(feed_path)
    names = {str(s[0]): s[2] for s in feed.stops}
    assert names["102"] == 'Library, "LIB"\nnorth door'
    assert names["101"] == "Math & Engineering"  # trailing space in the feed, stripped
    assert len(feed.stops) == 125
    assert len(feed.calendar) == 0
    assert len(feed.calendar_dates) == 3
    sunday = feed.stop_times["7"]
    assert sunday[0].departure_s is not None
    assert sunday[0].departure_s >= 24 * 3600
    assert [s.stop_sequence for s in sunday] == sorted(s.stop_sequence for s in sunday)


def test_legacy_translations_are_skipped_with_a_note_and_feed_info_is_read(
    tmp_path: Path,
) -> None:
    legacy = to_csv([["trans_id", "lang", "translation"], ["Library LIB", "kk", "Кітапхана"]])
    info = to_csv(
        [
            ["feed_publisher_name", "feed_publisher_url", "feed_lang", "feed_version",
             "feed_start_date", "feed_end_date"],
            ["USF", "https://www.usf.edu", "en", "2019-03", "20190101", "20191231"],
        ]
    )  # fmt: skip
    feed = read_feed(
        rewrite(
            BULLRUNNER,
            tmp_path / "f.zip",
            add={"translations.txt": legacy, "feed_info.txt": info},
        )
    )
    assert feed.translations == []
    assert any("legacy trans_id/lang format" in w for w in feed.warnings)
    assert (feed.info.publisher_name, feed.info.feed_version) == ("USF", "2019-03")
    assert (feed.info.start_date, feed.info.end_date) == (date(2019, 1, 1), date(2019, 12, 31))


def test_progress_is_reported_for_every_step_and_reaches_its_total() -> None:
    seen: dict[str, list[tuple[int, int]]] = {}
    feed = read_feed(POA, lambda task, done, total: seen.setdefault(task, []).append((done, total)))
    lay_out(feed, lambda task, done, total: seen.setdefault(task, []).append((done, total)))
    assert "read stop_times.txt" in seen
    assert "lay out trips on shapes" in seen
    for task, calls in seen.items():
        done = [d for d, _ in calls]
        assert done == sorted(done), task
        assert calls[-1][0] == calls[-1][1], task  # finished
    # stop_times.txt is read in several steps, not one jump at the end.
    assert len(seen["read stop_times.txt"]) > 3


def test_a_feed_zipped_inside_a_folder_is_read(tmp_path: Path) -> None:
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(BULLRUNNER) as src, zipfile.ZipFile(nested, "w") as dst:
        for name in src.namelist():
            dst.writestr(f"bullrunner-gtfs/{name}", src.read(name))
        dst.writestr("__MACOSX/bullrunner-gtfs/._stops.txt", b"\x00\x05\x16\x07")
    feed = read_feed(nested)
    assert (len(feed.stops), len(feed.trips), len(feed.frequencies)) == (125, 15, 15)
