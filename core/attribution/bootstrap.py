"""Bootstrap intervals for attribution credit, by Poisson resampling of journeys.

Resampling every journey with a Poisson(1) weight (the Poisson bootstrap) makes a path's resampled
conversions Poisson(conversions) and its nulls Poisson(nulls), so a replicate of a whole PathTable is two
vectorised draws. A path's resampled value is its mean value per conversion times its resampled
conversions (the table keeps only per-path totals). Every model is refitted on each replicate, reusing
what does not depend on the counts (Markov state graph, coalition masks, share matrices); the interval
is the percentile interval of the replicates. Replicates without any conversion are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.pathtable import Journeys, PathTable


def poisson_replicate(table: PathTable, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One resampled (conversions, value, nulls) of ``table``'s paths."""
    conv = rng.poisson(table.conversions).astype(np.float64)
    nulls = rng.poisson(table.nulls).astype(np.float64)
    mean_value = np.zeros(table.n_paths)
    np.divide(table.value, table.conversions, out=mean_value, where=table.conversions > 0)
    return conv, mean_value * conv, nulls


def journey_weights(journeys: Journeys, rng: np.random.Generator) -> np.ndarray:
    """Poisson(1) resampling weight for every journey."""
    return rng.poisson(1.0, size=journeys.n_journeys).astype(np.float64)


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds over axis 0, ignoring dropped (NaN) replicates."""
    if not 0 < ci < 1:
        raise ValueError(f"confidence level must be between 0 and 1; got {ci}")
    if samples.shape[0] == 0 or np.all(np.isnan(samples)):
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    lo, hi = np.nanpercentile(samples, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2], axis=0)
    return lo, hi


def run_bootstrap(
    table: PathTable,
    path_models: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
    journeys: Journeys | None,
    journey_models: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]],
    replicates: int,
    seed: int,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Resampled conversion and value credit, ``{model: (replicates, n_channels)}``, and the number dropped.

    ``path_models`` refit a model from per-path (conversions, value, nulls); ``journey_models`` from a
    per-journey resampling weight. Both return (conversion credit, value credit) per channel.
    """
    if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 0:
        raise ValueError(f"bootstrap replicates must be a non-negative integer; got {replicates!r}")
    rng = np.random.default_rng(seed)
    conv_s: dict[str, list] = {m: [] for m in [*path_models, *journey_models]}
    val_s: dict[str, list] = {m: [] for m in conv_s}
    dropped = 0
    for b in range(int(replicates)):
        conv, value, nulls = poisson_replicate(table, rng)
        weights = journey_weights(journeys, rng) if journeys is not None and journey_models else None
        ok = conv.sum() > 0 and (weights is None or float(weights @ journeys.conversions) > 0)
        if not ok:
            dropped += 1
        for name, fn in path_models.items():
            c, v = fn(conv, value, nulls) if ok else (None, None)
            conv_s[name].append(c)
            val_s[name].append(v)
        for name, fn in journey_models.items():
            c, v = fn(weights) if ok else (None, None)
            conv_s[name].append(c)
            val_s[name].append(v)
        if progress is not None:
            progress((b + 1) / replicates, f"bootstrap replicate {b + 1} of {replicates}")
    out_c, out_v = {}, {}
    for name in conv_s:
        width = next((len(x) for x in conv_s[name] if x is not None), 0)
        out_c[name] = np.array([x if x is not None else np.full(width, np.nan) for x in conv_s[name]]).reshape(-1, width)
        out_v[name] = np.array([x if x is not None else np.full(width, np.nan) for x in val_s[name]]).reshape(-1, width)
    return out_c, out_v, dropped
