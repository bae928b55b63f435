"""Transit: GTFS static schedules, shape geometry, bus tracking and arrival prediction.

gtfs_import.py        wires the import: read → lay out → store, in one transaction
gtfs_csv.py           reads a feed's CSV files from the zip (BOMs, quoting, line numbers)
gtfs_fields.py        parses one field (times past 24:00, dates, numbers) or says what to fix
gtfs_rows.py          typed access to a row's fields; collects a file's problems
gtfs_read.py          parses and validates a feed file by file into a `Feed`
gtfs_stop_times.py    stop_times.txt and frequencies.txt, and the timing rules of a trip
gtfs_translations.py  translations.txt and feed_info.txt
gtfs_model.py         the parsed feed, shaped for COPY
geometry.py           distances in metres and projection of points onto shapes (numpy)
trip_layout.py        shape distances, each stop's distance along its trip, filled-in times
gtfs_store.py         writes a feed version with binary COPY; lists and removes versions
errors.py             the package's exceptions
trips.py              trip plans (shape, stop distances, times) from the active feed version
tracking.py           fixes → distance along the shape → stop arrivals and departures (pure)
tracking_store.py     the tracker per batch: vehicle state, stop_arrivals, predictions, in one
                      transaction (the ingest's after-commit hook calls it)
segment_stats.py      learned run and dwell times by hour of week: add, rebuild, load
predict.py            predicted arrivals with uncertainty; the trip factor's Kalman update
eta_accuracy.py       the ETA-accuracy horizon buckets and score (bench and transit rollups)
"""
