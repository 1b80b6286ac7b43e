"""Attribution engine: heuristics, exact Markov (order 1-4), exact Shapley (two games), bootstrap, comparison.

Entry point: `run_attribution` (see `core.attribution.compare`).
"""

from core.attribution.compare import (
    MODEL_EXPLANATIONS,
    MODEL_NAMES,
    TABLE_COLUMNS,
    AttributionResult,
    explain_journey,
    run_attribution,
)
from core.attribution.markov import MAX_ORDER, markov_attribution
from core.attribution.shapley import MAX_SHAPLEY_CHANNELS, shapley_rate, shapley_zhao

__all__ = [
    "MAX_ORDER",
    "MAX_SHAPLEY_CHANNELS",
    "MODEL_EXPLANATIONS",
    "MODEL_NAMES",
    "TABLE_COLUMNS",
    "AttributionResult",
    "explain_journey",
    "markov_attribution",
    "run_attribution",
    "shapley_rate",
    "shapley_zhao",
]
