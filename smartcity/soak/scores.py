"""The alert and ETA scores in the soak report (issue 10 asks for both).

The scoring belongs to the benchmarks that define it — `smartcity bench alerts` (precision and
recall of raised alerts against injected faults) and `smartcity bench eta` (the Transit App
ETA buckets against the simulators' ground-truth arrivals). Each exposes

    score_soak(conninfo, specs: list[SimSpec], root, windows) -> dict[str, object]

which the soak calls after the run on its own database: the ground truth is what the key
walk wrote (`SimSpec.faults_path`, `SimSpec.arrivals_path`; smartcity.soak.truth), the
alerts are what the ingest workers' alert hook raised, the predictions what their tracker
predicted (sampled during the run). `windows` are the system faults' windows in event time.
The result goes into the report under `alerts` / `eta`; `config.scores` says where it came
from, or why there is none.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smartcity.soak.procs import SimSpec

SCORERS = {"alerts": "smartcity.bench.alerts", "eta": "smartcity.bench.eta"}


def score(
    name: str,
    conninfo: str,
    specs: list[SimSpec],
    root: str,
    windows: list[tuple[datetime, datetime]],
) -> tuple[dict[str, Any] | None, str]:
    """(the score, or None; a note saying where it came from or why there is none)."""
    module_name = SCORERS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None, f"{module_name} does not exist yet"
    scorer = getattr(module, "score_soak", None)
    if scorer is None:
        return None, f"{module_name} has no score_soak(conninfo, specs, root) yet"
    result = scorer(conninfo, specs, root, windows)
    return dict(result), f"{module_name}.score_soak"
