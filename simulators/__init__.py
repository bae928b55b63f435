"""Device simulators: realistic, deterministic feeds for lighting, metering and buses.

Each fleet (`lighting`, `metering`, `transit` on a `gtfs` network, placed by `citymodel`) is an
endless, time-ordered stream of (simulated time, topic, payload) built from the seed alone;
`scenario` merges the fleets of a run, `live` paces it on the `clock` to the `publish`er and/or
a `recording`, `replay` republishes or records, `backfill` writes history, and `faults`
injects faults with a ground-truth log. See docs/simulators.md.
"""
