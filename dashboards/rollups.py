"""SQL pieces for panels that read the rollups (docs/storage.md): local days and their bounds.

Daily rollup rows are the city's *local* day, and Grafana knows only the dashboard's range, so
the panels map the range to local days in SQL: the local day holding the range's start to the
local day holding its end (whole days, as the KPIs of docs/kpis.md are defined). The city's
time zone comes from `smartcity/cities.py` at build time, as a CASE on the `$city` variable;
a city missing there is read in UTC (its readings get hourly rows only anyway).
"""

from __future__ import annotations

from smartcity.cities import CITIES


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The selected city's IANA zone name, e.g. 'Asia/Almaty'.
CITY_TZ = (
    "(CASE '$city' "
    + " ".join(f"WHEN {_literal(c.slug)} THEN {_literal(c.tz_name)}" for c in CITIES.values())
    + " ELSE 'UTC' END)"
)

# The first and last local day of the dashboard's range.
FIRST_DAY = f"($__timeFrom()::timestamptz AT TIME ZONE {CITY_TZ})::date"
LAST_DAY = f"($__timeTo()::timestamptz AT TIME ZONE {CITY_TZ})::date"

# Daily rows of the range's local days (column `day`).
DAYS_IN_RANGE = f"day BETWEEN {FIRST_DAY} AND {LAST_DAY}"
# Hourly rows of the same local days (column `bucket`, UTC hours): a range on the index.
HOURS_OF_DAYS_IN_RANGE = (
    f"bucket >= ({FIRST_DAY}::timestamp AT TIME ZONE {CITY_TZ}) "
    f"AND bucket < (({LAST_DAY} + 1)::timestamp AT TIME ZONE {CITY_TZ})"
)
# A local day as the instant it starts, for a time axis.
DAY_START = f'(day::timestamp AT TIME ZONE {CITY_TZ}) AS "time"'
# Hour of local time of an hourly bucket.
LOCAL_HOUR = f"extract(hour FROM bucket AT TIME ZONE {CITY_TZ})"
