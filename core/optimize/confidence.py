"""Confidence 0-100 for a recommendation: how likely the change improves the objective.

* Budget change of one campaign from ``old`` to ``new``: the objective is value minus the
  opportunity cost of the money, ``f(b) - hurdle * b``, where ``hurdle`` is the marginal ROAS the
  money earns elsewhere in the plan (the allocation's Lagrange multiplier). Confidence is the share
  of parameter draws (`CurveSet.sample`) in which ``f(new) - f(old) > hurdle * (new - old)``.
  Thin data means wide parameter draws, so the share drifts toward 50 (a coin flip) or below.
* Bid change: the share of posterior CVR draws (Beta) in which the new bid is closer than the old
  one to the value-maximizing bid ``CVR x value per conversion / target ROAS``.
* Pause: ``1 - P(no conversions by luck)`` under a Poisson with the account's cost per conversion.
"""

from __future__ import annotations

import numpy as np

from core.response import CurveSet


def budget_change_confidence(
    curves: CurveSet, old, new, hurdle: float, *, n_draws: int = 400, seed: int = 0
) -> np.ndarray:
    """Per campaign, 0-100: the probability that moving ``old -> new`` beats ``hurdle`` per unit money.

    NaN where the budget does not change.
    """
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    if old.shape != (curves.n,) or new.shape != (curves.n,):
        raise ValueError(f"old and new budgets must have one entry per campaign ({curves.n})")
    if not np.isfinite(hurdle) or hurdle < 0:
        raise ValueError(f"hurdle (marginal ROAS of money elsewhere) must be a non-negative number, got {hurdle}")
    draws = curves.sample(n_draws, seed)
    gain = curves.predict(new[None, :], draws) - curves.predict(old[None, :], draws) - hurdle * (new - old)[None, :]
    conf = 100.0 * (gain > 0).mean(axis=0)
    return np.where(np.isclose(new, old, rtol=1e-9, atol=1e-12), np.nan, conf)


def plan_confidence(curves: CurveSet, old, new, hurdle: float = 0.0, *, n_draws: int = 400, seed: int = 0) -> float:
    """0-100: the probability that the whole budget vector ``new`` beats ``old`` (net of ``hurdle`` x extra money)."""
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    draws = curves.sample(n_draws, seed)
    gain = (curves.predict(new[None, :], draws) - curves.predict(old[None, :], draws)).sum(axis=1)
    gain -= hurdle * (new.sum() - old.sum())
    return float(100.0 * (gain > 0).mean())


def bid_change_confidence(
    alpha, beta, value_per_conversion, target_roas: float, old_bid, new_bid, *, n_draws: int = 400, seed: int = 0
) -> np.ndarray:
    """Per entity, 0-100: P(new bid is closer to the optimal bid than the old one) under CVR ~ Beta(alpha, beta)."""
    alpha = np.asarray(alpha, dtype=float)
    beta = np.asarray(beta, dtype=float)
    if (alpha <= 0).any() or (beta <= 0).any():
        raise ValueError("Beta posterior parameters must be positive")
    rng = np.random.default_rng(seed)
    cvr = rng.beta(alpha, beta, size=(n_draws, alpha.size))
    best = cvr * np.asarray(value_per_conversion, dtype=float) / float(target_roas)
    old_bid = np.asarray(old_bid, dtype=float)
    new_bid = np.asarray(new_bid, dtype=float)
    better = np.abs(new_bid - best) < np.abs(old_bid - best)
    conf = 100.0 * better.mean(axis=0)
    return np.where(np.isclose(new_bid, old_bid), np.nan, conf)


def pause_confidence(expected_conversions) -> np.ndarray:
    """0-100: the probability that zero conversions are not bad luck, given the expected count."""
    e = np.maximum(np.asarray(expected_conversions, dtype=float), 0.0)
    return 100.0 * (1.0 - np.exp(-e))
