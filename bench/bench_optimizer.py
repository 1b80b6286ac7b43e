"""Optimizer benchmark: prints allocation and fitting times and the SLSQP comparison.

Targets (issue 4): allocation of 10,000 campaigns < 50 ms; 100 campaigns >= 100x faster than scipy
SLSQP with the same or better objective; fitting 1,000 campaigns x 90 days < 2 s.
Run: ``python bench/bench_optimizer.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.optimize.allocate import allocate, build_bounds  # noqa: E402
from core.response import CurveSet, fit_curves  # noqa: E402


def power_curves(a, k) -> CurveSet:
    n = a.size
    keys = pd.DataFrame({"platform": "meta", "account_id": "x", "entity_type": "campaign",
                         "external_id": [f"c{i}" for i in range(n)], "entity_name": "", "currency": "USD"})
    diag = pd.DataFrame({"pooled": np.zeros(n, bool), "warnings": [""] * n})
    return CurveSet("power", keys, np.column_stack([a, k]), np.zeros((n, 2, 2)), diag, pd.DataFrame({"idx": []}))


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def instance(n, seed):
    rng = np.random.default_rng(seed)
    curves = power_curves(rng.uniform(1, 50, n), rng.uniform(0.2, 0.9, n))
    cur = rng.uniform(10, 1000, n)
    bounds = build_bounds(n, current=cur, min_budget=5.0, max_change=0.4)
    return curves, bounds, float(cur.sum() * 1.1)


def slsqp(curves, bounds, B):
    n = curves.n
    scale = B / n
    x0 = np.clip(np.full(n, B / n), bounds.lo, bounds.hi) / scale
    res = minimize(
        lambda z: -curves.predict(z * scale).sum() / B,
        x0,
        jac=lambda z: -curves.marginal(np.maximum(z * scale, 1e-12)) * scale / B,
        bounds=list(zip(bounds.lo / scale, bounds.hi / scale)),
        constraints=[{"type": "eq", "fun": lambda z: z.sum() * scale / B - 1.0, "jac": lambda z: np.full(n, scale / B)}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    return np.clip(res.x * scale, bounds.lo, bounds.hi)


def simulate(n_campaigns, n_days, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(2, 20, n_campaigns)
    k = rng.uniform(0.3, 0.8, n_campaigns)
    spend = rng.uniform(50, 500, n_campaigns)[:, None] * rng.lognormal(0, 0.5, (n_campaigns, n_days))
    value = a[:, None] * spend ** k[:, None] * rng.lognormal(-0.02, 0.2, (n_campaigns, n_days))
    return pd.DataFrame({
        "date": np.tile(pd.date_range("2024-01-01", periods=n_days), n_campaigns), "platform": "meta",
        "account_id": "act1", "entity_type": "campaign", "external_id": np.repeat([f"c{i:05d}" for i in range(n_campaigns)], n_days),
        "entity_name": "", "spend": spend.ravel(), "impressions": 0, "clicks": 0, "conversions": 0.0,
        "conversion_value": value.ravel(), "currency": "USD",
    }), k


def main() -> None:
    curves, bounds, B = instance(10_000, 1)
    allocate(curves, B, bounds)
    t, alloc = best_of(lambda: allocate(curves, B, bounds), 7)
    print(f"allocation, 10,000 campaigns: {t * 1e3:.1f} ms (target < 50 ms); sum error {abs(alloc.total_budget - B):.2e}")

    ratios, rel = [], []
    for seed in range(3):
        curves, bounds, B = instance(100, 10 + seed)
        t_ours, ours = best_of(lambda: allocate(curves, B, bounds), 20)
        t_ref, ref = best_of(lambda: slsqp(curves, bounds, B), 1)
        v_ref = curves.predict(ref).sum()
        ratios.append(t_ref / t_ours)
        rel.append((ours.total_value - v_ref) / v_ref)
        print(f"  100 campaigns #{seed}: water filling {t_ours * 1e3:.2f} ms, SLSQP {t_ref * 1e3:.1f} ms "
              f"({t_ref / t_ours:.0f}x), objective ours-SLSQP {rel[-1]:+.2e} relative")
    print(f"100 campaigns vs SLSQP: {min(ratios):.0f}x-{max(ratios):.0f}x faster (target >= 100x); "
          f"objective difference min {min(rel):+.2e} relative (>= 0 means same or better)")

    perf, k = simulate(1_000, 90)
    fit_curves(perf)
    t, cs = best_of(lambda: fit_curves(perf), 3)
    print(f"fit 1,000 campaigns x 90 days: {t:.3f} s (target < 2 s); median |k error| {np.median(np.abs(cs.params[:, 1] - k)):.3f}")
    small, _ = simulate(100, 90, seed=2)
    t, _ = best_of(lambda: fit_curves(small, "hill"), 1)
    print(f"fit Hill curves, 100 campaigns x 90 days: {t:.3f} s")


if __name__ == "__main__":
    main()
