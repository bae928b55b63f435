#!/bin/sh
# Runs once, when the database volume is first initialised (docker-entrypoint-initdb.d):
# a read-only role for Grafana, so dashboards can never change data. pg_read_all_data
# (PostgreSQL 14+) also covers the tables and views that later migrations create.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="${GRAFANA_DB_PASSWORD:?set GRAFANA_DB_PASSWORD in .env}" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'password';
GRANT pg_read_all_data TO grafana_reader;
SQL
