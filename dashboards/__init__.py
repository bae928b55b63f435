"""Grafana dashboards as code, built with grafana-foundation-sdk.

registry.py       every dashboard: name -> build() (add a dashboard here)
lighting.py       Energy — street lighting
metering.py       Energy — metering
transit.py        Transit
alerts.py         Alerts
ingest_health.py  Ingest health (PostgreSQL and Prometheus panels)
panels.py         panel constructors and the Board that numbers and places them
sql.py            the PostgreSQL query type the SDK lacks; both datasources' uids
build.py          JSON generation into json/ (committed; Grafana provisions it)
check.py          structure, SQL and EXPLAIN checks (`smartcity dashboards check`)
macros.py         Grafana's SQL macros and variables, expanded as Grafana does
push.py           upload to a running Grafana (`smartcity dashboards push`)
"""
