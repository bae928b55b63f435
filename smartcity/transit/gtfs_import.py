"""`smartcity gtfs import`: read → validate → lay out → store, as one new feed version.

The feed is read and checked completely in memory before the database is touched, so a
broken feed costs no transaction at all. Writing happens in one transaction, serialised per
feed id by an advisory lock; until it commits, readers keep seeing the previous version.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from smartcity.db.connect import connect
from smartcity.errors import ConfigurationError
from smartcity.transit.errors import GtfsError
from smartcity.transit.gtfs_model import ProgressFn
from smartcity.transit.gtfs_read import read_feed
from smartcity.transit.gtfs_store import write_version
from smartcity.transit.trip_layout import lay_out

# Feed ids appear in commands and URLs: keep them to a plain slug.
FEED_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ImportResult:
    feed_id: str
    version_id: int
    row_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    max_stop_offset_m: float = 0.0
    seconds: float = 0.0


def default_feed_id(path: Path) -> str:
    """A feed id from the file name: 'Porto Alegre GTFS.zip' → 'porto-alegre-gtfs'."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-._")
    return slug[:63] or "feed"


def import_feed(
    conninfo: str,
    path: Path,
    *,
    feed_id: str | None = None,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Import the GTFS zip at `path` as a new version of `feed_id` (default: from the name)."""
    started = time.perf_counter()
    feed_id = feed_id or default_feed_id(path)
    if not FEED_ID_PATTERN.match(feed_id):
        raise ConfigurationError(
            f"feed id {feed_id!r} is not allowed; use lower-case letters, digits, '_', '.', '-' "
            "(at most 63, starting with a letter or digit), e.g. --feed-id shymkent"
        )
    feed = read_feed(path, progress)
    layout = lay_out(feed, progress)
    sha256 = _sha256(path)
    with connect(conninfo) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('gtfs:' || %s))", (feed_id,))
                version_id, counts = write_version(
                    conn,
                    feed_id=feed_id,
                    source_name=path.name,
                    source_sha256=sha256,
                    feed=feed,
                    layout=layout,
                    progress=progress,
                )
        except psycopg.errors.UndefinedTable:
            raise GtfsError(
                "the database has no GTFS tables yet; run 'smartcity db migrate' first"
            ) from None
    return ImportResult(
        feed_id=feed_id,
        version_id=version_id,
        row_counts=counts,
        warnings=feed.warnings,
        max_stop_offset_m=layout.max_offset_m,
        seconds=time.perf_counter() - started,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
