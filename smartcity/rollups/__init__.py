"""Hourly and daily rollups of the raw readings, kept current by `smartcity maintain`.

* `registers` — the rule for register deltas (shared by the rollups and the raw-tier queries).
* `lighting`, `metering`, `transit` — the SQL that rebuilds one range of hourly buckets and
  one range of local days for each domain (transit: from the observed stop arrivals).
* `maintain` — the watermark over `ingested_at`, the dirty-bucket search, partitions ahead
  and retention; `smartcity maintain` runs it.
"""
