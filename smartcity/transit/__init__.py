"""Transit: GTFS static schedules and the geometry that tracking and prediction build on.

gtfs_csv.py      reads a feed's CSV files from the zip (BOMs, quoting, line numbers)
gtfs_fields.py   parses one field (times past 24:00, dates, numbers) or says what to fix
gtfs_read.py     parses and validates a whole feed into a `Feed` (references, order)
geometry.py      distances in metres and the projection of points onto shapes (numpy)
trip_layout.py   shape distances, each stop's distance along its trip, interpolated times
gtfs_store.py    writes a feed version with binary COPY; lists and removes versions
gtfs_import.py   wires them: read → lay out → store, in one transaction
"""
