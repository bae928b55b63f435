"""Smart-city telemetry: the shared core.

`smartcity` holds what every process shares: settings, domain models, topics, the database
schema and its storage modes, read-side queries and the command line. The process packages
(`ingest`, `simulators`, `api`) import from here; this package never imports them, except the
command line, which loads each one lazily when its subcommand runs.
"""

__version__ = "0.1.0"
