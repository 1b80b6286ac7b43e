"""Events -> journeys -> PathTable (DESIGN.md §2) on three engines with one contract.

* `core.journeys.memory` – the numpy kernel: the definition of every rule (lookback, one journey per
  conversion, the null tail, ``(no touch)``, campaign labels, ties) and the reference the other
  engines are tested against.
* `core.journeys.sql` – SQL pushdown: the same rules compiled into one query that runs in the source
  database; only the path table comes back.
* `core.journeys.dask` – the memory kernel per user partition on a Dask cluster, path counts reduced.

`core.journeys.engines` picks an engine for a source and runs it (the one switch behind
``python -m core paths --engine`` and the Data page). Everything of the memory kernel is re-exported
here, so ``from core.journeys import build_pathtable`` keeps working.
"""

from .memory import (  # noqa: F401  (re-exported)
    LEVELS,
    NO_TOUCH,
    NS_PER_DAY,
    JourneyError,
    JourneyReport,
    Progress,
    _assemble,
    aggregate_paths,
    build_journeys,
    build_journeys_with_report,
    build_pathtable,
    build_pathtable_with_report,
    journeys_frame,
    unique_paths,
)

__all__ = [
    "LEVELS", "NO_TOUCH", "NS_PER_DAY", "JourneyError", "JourneyReport", "Progress", "aggregate_paths",
    "build_journeys", "build_journeys_with_report", "build_pathtable", "build_pathtable_with_report",
    "journeys_frame", "unique_paths",
]
