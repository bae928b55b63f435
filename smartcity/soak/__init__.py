"""`smartcity soak`: the whole system at city scale, under load and faults, for long enough to
show leaks and drift (issue 10; docs/soak.md).

One run, wired in `smartcity.soak.run`:

    private broker + database (servers.py)  ──  or the configured ones (--configured-servers)
    simulators, three cities, one process each (procs.py, simulators.live)
      ──MQTT──► broker ──► `smartcity ingest --workers 2` ──► PostgreSQL ◄── `smartcity api`
    a lag probe (traffic.py: readings stamped when published)          ▲
    operators and residents (traffic.py: open-loop HTTP load) ─────────┘
    faults on a schedule (faults.py): kill -9 an ingest worker, restart the broker, pause the
      database, a burst of malformed messages, a reconnect storm of many devices
    memory of every long-running process (procs.MemorySampler, psutil)

then the accounting (count.py: every reading the simulators, the probe and the storm got
acknowledged is regenerated and looked up in the database), the report and the plot
(report.py).

Modules here import the process packages (`simulators`, `ingest`) only inside functions, as the
CLI does: the soak drives them, `smartcity` itself does not depend on them.

Errors: `smartcity.errors.ServiceUnavailableError` when a server or process cannot start;
`SoakError` (below) when the run itself cannot be completed (a simulator died, the ingest never
caught up) — the message says which part and what to look at.
"""

from smartcity.errors import SmartCityError


class SoakError(SmartCityError):
    """The soak could not complete a step; the message names the part that failed."""
