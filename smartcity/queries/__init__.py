"""Read-side SQL, one module per resource. Used by the API (and mirrored by the dashboards)."""
