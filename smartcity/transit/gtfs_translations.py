"""translations.txt (the current, table-based format) and feed_info.txt.

The current format names what it translates by `table_name` + `field_name`, and the record
either by `record_id` (+ `record_sub_id`) or by the original text in `field_value`. Feeds
from before 2019 used another format (`trans_id`, `lang`); we skip those with a warning
rather than refuse the feed, since translations are optional.
"""

from __future__ import annotations

from collections.abc import Callable

from smartcity.transit import gtfs_fields as fld
from smartcity.transit.gtfs_csv import FeedArchive
from smartcity.transit.gtfs_model import Feed
from smartcity.transit.gtfs_rows import BadFieldError, Fields, Problems

FILE = "translations.txt"
TABLES = frozenset(
    {
        "agency",
        "stops",
        "routes",
        "trips",
        "stop_times",
        "pathways",
        "levels",
        "feed_info",
        "attributions",
    }
)


def read_translations(
    archive: FeedArchive, feed: Feed, on_bytes: Callable[[int], None] | None
) -> None:
    header, rows = archive.rows(FILE, on_bytes)
    if header.has("trans_id") and not header.has("table_name"):
        feed.warnings.append(
            "translations.txt uses the legacy trans_id/lang format and was skipped; "
            "republish it with table_name, field_name, language, translation"
        )
        return
    header.require("table_name", "field_name", "language", "translation")
    problems, f = Problems(), Fields(header)
    for line in f.each(rows):
        with problems.row(FILE, line):
            table = f.required("table_name")
            if table not in TABLES:
                raise BadFieldError(
                    "table_name",
                    f"{table!r} is not a table; use one of {', '.join(sorted(TABLES))}",
                )
            record_id = f.text("record_id")
            field_value = f.text("field_value")
            if record_id is None and field_value is None and table != "feed_info":
                raise BadFieldError(
                    "record_id", "is empty and so is field_value; give one to say what to translate"
                )
            feed.translations.append(
                (
                    table,
                    f.required("field_name"),
                    f.required("language"),
                    f.required("translation"),
                    record_id,
                    f.text("record_sub_id"),
                    field_value,
                )
            )
    problems.raise_if_any()


def read_feed_info(archive: FeedArchive, feed: Feed) -> None:
    name = "feed_info.txt"
    header, rows = archive.rows(name)
    problems, f = Problems(), Fields(header)
    for line in f.each(rows):
        with problems.row(name, line):
            feed.info.publisher_name = f.text("feed_publisher_name")
            feed.info.feed_version = f.text("feed_version")
            feed.info.start_date = f.parsed("feed_start_date", fld.parse_date)
            feed.info.end_date = f.parsed("feed_end_date", fld.parse_date)
        break  # feed_info has one row
    problems.raise_if_any()
