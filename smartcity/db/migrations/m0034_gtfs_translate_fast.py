"""`gtfs_translate` by index: the stop-arrivals endpoint calls it a few times per request.

Migration 30's body finds a translation with one OR'ed condition (by record id, or by the
original text), which no index serves: each call scanned a field's translations (a city's
~3,000 stop names). The same lookup in two steps, each an index lookup, with the same result:
by record id (+ sub id) first, else by the original text; within each, the exact language
before a regional variant ('kk' before 'kk-KZ'); else the feed's own text.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 34
DESCRIPTION = "gtfs_translate by index lookups"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # the same in both storage modes
    conn.execute(
        "CREATE INDEX gtfs_translations_by_record "
        "ON gtfs_translations (version_id, table_name, field_name, record_id)"
    )
    conn.execute(
        "CREATE INDEX gtfs_translations_by_value "
        "ON gtfs_translations (version_id, table_name, field_name, field_value) "
        "WHERE record_id IS NULL"
    )
    conn.execute(
        """
        CREATE OR REPLACE FUNCTION gtfs_translate(
            p_version bigint, p_table text, p_field text, p_record text, p_value text,
            p_lang text, p_sub text DEFAULT NULL
        ) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN p_lang IS NULL THEN p_value ELSE coalesce(
                (SELECT t.translation
                 FROM gtfs_translations t
                 WHERE t.version_id = p_version
                   AND t.table_name = p_table
                   AND t.field_name = p_field
                   AND t.record_id = p_record
                   AND (t.record_sub_id IS NULL OR t.record_sub_id = p_sub)
                   AND (lower(t.language) = lower(p_lang)
                        OR lower(t.language) LIKE lower(p_lang) || '-%')
                 ORDER BY lower(t.language) <> lower(p_lang)
                 LIMIT 1),
                (SELECT t.translation
                 FROM gtfs_translations t
                 WHERE t.version_id = p_version
                   AND t.table_name = p_table
                   AND t.field_name = p_field
                   AND t.record_id IS NULL
                   AND t.field_value = p_value
                   AND (lower(t.language) = lower(p_lang)
                        OR lower(t.language) LIKE lower(p_lang) || '-%')
                 ORDER BY lower(t.language) <> lower(p_lang)
                 LIMIT 1),
                p_value) END
        $$
        """
    )
