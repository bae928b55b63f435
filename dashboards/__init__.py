"""Grafana dashboards as code (built with grafana-foundation-sdk; see the dashboards issue)."""
