"""Water-filling allocation: against scipy SLSQP, closed form, constraints and their messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from core.optimize.allocate import (
    Bounds,
    InfeasibleError,
    allocate,
    allocate_for_marginal_floor,
    allocate_for_target_roas,
    build_bounds,
)
from core.response import CurveSet


def power_curves(a, k) -> CurveSet:
    a, k = np.asarray(a, float), np.asarray(k, float)
    n = a.size
    keys = pd.DataFrame({"platform": "meta", "account_id": "x", "entity_type": "campaign", "external_id": [f"c{i}" for i in range(n)],
                         "entity_name": [f"C{i}" for i in range(n)], "currency": "USD"})
    diag = pd.DataFrame({"pooled": np.zeros(n, bool), "warnings": [""] * n})
    return CurveSet("power", keys, np.column_stack([a, k]), np.zeros((n, 2, 2)), diag, pd.DataFrame({"idx": []}))


def hill_curves(vmax, ec, h) -> CurveSet:
    c = power_curves(vmax, h)
    return CurveSet("hill", c.keys, np.column_stack([vmax, ec, h]), np.zeros((len(vmax), 3, 3)), c.diagnostics, c.daily)


def slsqp(curves, B, lo, hi):
    x0 = np.clip(lo + (B - lo.sum()) * (np.minimum(hi, 1e9) - lo) / (np.minimum(hi, 1e9) - lo).sum(), lo, hi)
    scale = B / curves.n
    res = minimize(
        lambda z: -curves.predict(z * scale).sum() / 1e3,
        x0 / scale,
        jac=lambda z: -curves.marginal(np.maximum(z * scale, 1e-12)) * scale / 1e3,
        bounds=list(zip(lo / scale, np.where(np.isfinite(hi), hi / scale, None))),
        constraints=[{"type": "eq", "fun": lambda z: z.sum() * scale / B - 1.0, "jac": lambda z: np.full(z.size, scale / B)}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 2000},
    )
    return res.x * scale


def check_constraints(alloc, B, lo, hi):
    b = alloc.budgets
    assert b.sum() == pytest.approx(B, rel=1e-10)
    assert (b >= lo - 1e-9 * max(B, 1)).all() and (b <= hi + 1e-9 * max(B, 1)).all()


@pytest.mark.parametrize("seed", range(8))
def test_matches_slsqp_on_random_instances(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    curves = power_curves(rng.uniform(1, 50, n), rng.uniform(0.2, 0.9, n))
    current = rng.uniform(50, 500, n)
    bounds = build_bounds(n, current=current, min_budget=rng.uniform(0, 60, n), max_budget=rng.uniform(400, 900, n),
                          max_change=float(rng.uniform(0.2, 0.6)), locked=rng.random(n) < 0.1)
    B = float(bounds.lo.sum() + rng.uniform(0.1, 0.9) * (bounds.hi.sum() - bounds.lo.sum()))
    alloc = allocate(curves, B, bounds)
    check_constraints(alloc, B, bounds.lo, bounds.hi)
    ref = slsqp(curves, B, bounds.lo, bounds.hi)
    ours, theirs = alloc.total_value, curves.predict(np.clip(ref, bounds.lo, bounds.hi)).sum()
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours >= theirs * (1 - 1e-9)
    # KKT: free campaigns share the marginal ROAS lam; bound ones sit on the right side of it
    m = curves.marginal(alloc.budgets)
    free = ~alloc.at_lo & ~alloc.at_hi
    np.testing.assert_allclose(m[free], alloc.lam, rtol=1e-6)
    assert (m[alloc.at_lo & ~alloc.at_hi] <= alloc.lam * (1 + 1e-6)).all()
    assert (m[alloc.at_hi & ~alloc.at_lo] >= alloc.lam * (1 - 1e-6)).all()


@pytest.mark.parametrize("seed", range(3))
def test_hill_curves_match_slsqp(seed):
    rng = np.random.default_rng(100 + seed)
    n = 12
    curves = hill_curves(rng.uniform(500, 5000, n), rng.uniform(100, 800, n), rng.uniform(0.5, 1.0, n))
    lo, hi = np.full(n, 10.0), np.full(n, 2000.0)
    B = 3000.0
    alloc = allocate(curves, B, Bounds(lo, hi))
    check_constraints(alloc, B, lo, hi)
    ref = slsqp(curves, B, lo, hi)
    assert alloc.total_value == pytest.approx(curves.predict(ref).sum(), rel=1e-6)
    assert alloc.total_value >= curves.predict(ref).sum() * (1 - 1e-9)


def test_closed_form_for_equal_exponents():
    rng = np.random.default_rng(0)
    a, k, B = rng.uniform(1, 20, 50), 0.6, 10_000.0
    alloc = allocate(power_curves(a, np.full(50, k)), B)
    expected = B * a ** (1 / (1 - k)) / (a ** (1 / (1 - k))).sum()
    np.testing.assert_allclose(alloc.budgets, expected, rtol=1e-9)
    assert alloc.lam == pytest.approx(a[0] * k * expected[0] ** (k - 1), rel=1e-9)


def test_more_budget_never_predicts_less_value():
    rng = np.random.default_rng(3)
    curves = power_curves(rng.uniform(1, 20, 30), rng.uniform(0.2, 0.9, 30))
    bounds = Bounds(np.full(30, 5.0), np.full(30, 800.0))
    values = [allocate(curves, B, bounds).total_value for B in np.linspace(150, 24_000, 60)]
    assert (np.diff(values) > 0).all()


def test_large_instance_is_exact():
    rng = np.random.default_rng(4)
    n = 10_000
    curves = power_curves(rng.uniform(1, 50, n), rng.uniform(0.2, 0.9, n))
    cur = rng.uniform(10, 1000, n)
    bounds = build_bounds(n, current=cur, max_change=0.3)
    alloc = allocate(curves, cur.sum() * 1.05, bounds)
    check_constraints(alloc, cur.sum() * 1.05, bounds.lo, bounds.hi)


def test_infeasible_total_names_the_constraint():
    curves = power_curves([1, 2, 3], [0.5, 0.5, 0.5])
    bounds = build_bounds(3, current=[200, 300, 386], min_budget=[100, 100, 100], max_change=0.3)
    with pytest.raises(InfeasibleError, match=r"total budget 500 is below the sum of minimum budgets 620.2 \(min budgets and max change 30% from today\)") as e:
        allocate(curves, 500, bounds)
    assert e.value.constraint == "total budget vs minimum budgets"
    with pytest.raises(InfeasibleError, match=r"above the sum of maximum budgets 1,151.8 \(max budgets and max change 30% from today\)"):
        allocate(curves, 5000, bounds)
    locked = build_bounds(3, current=[200, 300, 400], locked=[True, True, False])
    with pytest.raises(InfeasibleError, match="1 locked|2 locked"):
        allocate(curves, 100, locked)


def test_contradictory_bounds_are_rejected():
    with pytest.raises(InfeasibleError, match=r"campaign #1: min budget 500 is above its max budget 100"):
        build_bounds(2, min_budget=[0, 500], max_budget=[1000, 100])
    with pytest.raises(InfeasibleError, match=r"campaign b: min budget 200 is above today's budget 100 \+ max change 30% = 130"):
        build_bounds(2, current=[100, 100], min_budget=[0, 200], max_change=0.3, labels=["a", "b"])
    with pytest.raises(InfeasibleError, match=r"max budget 50 is below today's budget 100 - max change 30% = 70"):
        build_bounds(1, current=[100], max_budget=[50], max_change=0.3)
    with pytest.raises(ValueError, match="need today's budgets"):
        build_bounds(2, max_change=0.3)
    with pytest.raises(ValueError, match="non-negative"):
        allocate(power_curves([1], [0.5]), -5)


def test_locked_campaign_keeps_its_budget():
    curves = power_curves([10, 1, 1], [0.5, 0.5, 0.5])
    bounds = build_bounds(3, current=[100, 100, 100], locked=[False, True, False])
    alloc = allocate(curves, 300, bounds)
    assert alloc.budgets[1] == pytest.approx(100)
    assert alloc.budgets[0] > alloc.budgets[2]


def test_zero_curves_get_their_minimum():
    curves = power_curves([5, 0, 3], [0.5, 0.5, 0.5])
    alloc = allocate(curves, 900, Bounds(np.array([10.0, 20, 10]), np.full(3, np.inf)))
    assert alloc.budgets[1] == pytest.approx(20) and alloc.budgets.sum() == pytest.approx(900)
    # when the positive campaigns are full the rest goes to the zero ones and the note says so
    full = allocate(curves, 900, Bounds(np.zeros(3), np.array([100.0, 1000, 100])))
    assert full.budgets[[0, 2]] == pytest.approx([100, 100]) and "no predicted return" in full.note


def test_target_roas_gives_largest_budget_reaching_it():
    rng = np.random.default_rng(5)
    curves = power_curves(rng.uniform(5, 20, 10), rng.uniform(0.4, 0.8, 10))
    bounds = Bounds(np.full(10, 1.0), np.full(10, 1e5))
    alloc = allocate_for_target_roas(curves, 2.0, bounds)
    assert alloc.roas == pytest.approx(2.0, rel=1e-8)
    # it is the optimal split of that budget, and a larger budget falls below the target
    same = allocate(curves, alloc.total_budget, bounds)
    assert same.total_value == pytest.approx(alloc.total_value, rel=1e-9)
    assert allocate(curves, alloc.total_budget * 1.01, bounds).roas < 2.0
    with pytest.raises(InfeasibleError, match="target ROAS 1e\\+06 is out of reach"):
        allocate_for_target_roas(curves, 1e6, bounds)


def test_marginal_floor():
    curves = power_curves([10, 20], [0.5, 0.5])
    alloc = allocate_for_marginal_floor(curves, 0.5)
    np.testing.assert_allclose(curves.marginal(alloc.budgets), 0.5)
    np.testing.assert_allclose(alloc.budgets, [100, 400])
    with pytest.raises(ValueError, match="positive"):
        allocate_for_marginal_floor(curves, 0)
