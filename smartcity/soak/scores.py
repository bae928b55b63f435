"""Hook for the alert and ETA scores in the soak report (issue 10 asks for both).

The scoring belongs to the benchmarks that define it — `smartcity bench alerts` (precision and
recall of raised alerts against the simulators' fault log) and `smartcity bench eta` (the
Transit App ETA buckets against the simulators' ground-truth arrivals) — which are being built
separately. When such a module exposes a function

    score_soak(conninfo: str, specs: list[SimSpec], root: str) -> dict[str, object]

the soak calls it after the run on its own database and puts the result in the report under
`alerts` / `eta`. Until then both are reported as null, with the reason in `config.scores`.

(For a meaningful alert score the simulators must inject device faults, `--fault KIND=RATE`;
the soak runs them without, so the scoring function is expected to pass its own fault rates
through `SimSpec` when it lands — the place to add them is `procs.scenario_options`.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smartcity.soak.procs import SimSpec

SCORERS = {"alerts": "smartcity.bench.alerts", "eta": "smartcity.bench.eta"}


def score(
    name: str, conninfo: str, specs: list[SimSpec], root: str
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
    result = scorer(conninfo, specs, root)
    return dict(result), f"{module_name}.score_soak"
