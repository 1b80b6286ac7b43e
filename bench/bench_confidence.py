"""Calibration of the optimizer's confidence, shown by simulation.

Many ad accounts are simulated from **known** response curves with realistic histories, then the
optimizer fits its curves, recommends a plan and states a confidence per budget change; each change
is then judged against the true curve. A change "really improved value" when the true value it
adds exceeds what its money earns at the plan's marginal ROAS (``f*(new) - f*(old) > hurdle x
(new - old)``: exactly the event the confidence states the probability of; for a plan at a fixed
total budget this is "the true total value rose").

The accounts mix what real accounts show:

* true curves: power laws, concave Hill curves, S-shaped curves (convex at low spend: a cut below
  the history loses more than any power law says) and hard saturation (little beyond the history);
* histories: 90, 35 or 12 days; budgets that moved in steps every 1-2 weeks, or stayed flat;
* noise: lognormal day-to-day noise that runs in streaks (AR(1)), weekly seasonality, or Poisson
  counts of conversions times a noisy order value (small campaigns: a few conversions a day);
* settings: max change 30 % or 100 %, extrapolation capped at the evidence or marked.

Printed: the calibration table (stated confidence bucket vs the share of changes that really
improved value), the same for whole plans, by fit quality, and the extrapolated changes (their
highest stated confidence against the cap). Target (issue 10): every bucket with at least 30
changes within 10 points of its stated level, and no extrapolated change above the cap. A plan's
confidence is held to its weakest material change, so plans are only checked for never being
overconfident. The caps' defaults were chosen on seed 2; the default seed (1) and others check them.

Run: ``python bench/bench_confidence.py [--accounts 400] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.optimize.recommend import recommend  # noqa: E402
from core.optimize.settings import AccountState, FixedBudget, RecommendSettings  # noqa: E402

N_CAMPAIGNS = 6
PACING = 0.975  # the share of its budget a campaign spends on an average day
MIN_BUCKET = 30
TOLERANCE = 10.0


# ------------------------------------------------------------------------------------------ truth
def true_curve(rng: np.random.Generator, budget: float):
    """A known expected-value curve f*(spend), with ROAS 1-5 at today's budget, of one of four families."""
    roas = rng.uniform(1.0, 5.0)
    level = roas * budget  # value a day at today's budget
    family = rng.choice(["power", "hill", "s_shape", "saturation"], p=[0.35, 0.25, 0.2, 0.2])
    if family == "power":
        k = rng.uniform(0.3, 0.9)
        return family, lambda s: level * np.power(np.maximum(s, 0) / budget, k)
    if family in ("hill", "s_shape"):
        h = rng.uniform(0.6, 1.0) if family == "hill" else rng.uniform(1.3, 2.5)
        ec = budget * (np.exp(rng.uniform(-0.5, 1.5)) if family == "hill" else rng.uniform(0.4, 1.2))
        r0 = (budget / ec) ** h
        vmax = level * (1 + r0) / r0
        return family, lambda s: vmax * (np.maximum(s, 0) / ec) ** h / (1 + (np.maximum(s, 0) / ec) ** h)
    theta = budget * rng.uniform(0.5, 2.0)
    vmax = level / (1 - np.exp(-budget / theta))
    return family, lambda s: vmax * (1 - np.exp(-np.maximum(s, 0) / theta))


def history(rng: np.random.Generator, days: int, flat: bool) -> np.ndarray:
    """Budget multipliers of today's budget, day by day, ending at 1 (today's budget)."""
    out = np.ones(days)
    if flat:
        return out
    end, lvl = days, 1.0
    while end > 0:
        start = max(0, end - int(rng.integers(7, 15)))
        out[start:end] = lvl
        lvl = float(np.clip(np.exp(rng.normal(0.0, 0.35)), 0.45, 1.9))
        end = start
    return out


def noise(rng: np.random.Generator, days: int, expected: np.ndarray) -> np.ndarray:
    """Observed daily value around ``expected`` (mean-preserving): streaky lognormal x weekly season, or counts."""
    season = 1.0 + rng.uniform(0.0, 0.15) * np.sin(2 * np.pi * (np.arange(days) + rng.integers(7)) / 7)
    if rng.random() < 0.3:  # few conversions a day: Poisson counts x a noisy order value
        aov = float(expected.mean() / rng.uniform(1.0, 30.0))
        counts = rng.poisson(expected * season / aov)
        return counts * aov * rng.lognormal(-0.02, 0.2, days)
    sigma = rng.choice([0.1, 0.25, 0.5])
    rho = rng.choice([0.0, 0.6])
    eps = np.empty(days)
    eps[0] = rng.normal(0, sigma)
    for t in range(1, days):  # a short AR(1) recursion per campaign (days, not events)
        eps[t] = rho * eps[t - 1] + rng.normal(0, sigma * np.sqrt(1 - rho**2))
    return expected * season * np.exp(eps - sigma**2 / 2)


def simulate_account(rng: np.random.Generator, account: int):
    days = int(rng.choice([90, 35, 12], p=[0.45, 0.35, 0.2]))
    flat = rng.random() < 0.2
    dates = pd.date_range("2026-01-01", periods=days)
    frames, truths, families, budgets = [], [], [], {}
    for c in range(N_CAMPAIGNS):
        budget = float(np.round(rng.uniform(20, 500), 2))
        family, f = true_curve(rng, budget)
        spend = np.round(budget * history(rng, days, flat) * rng.uniform(0.95, 1.0, days), 2)
        value = noise(rng, days, f(spend))
        xid = f"a{account}c{c}"
        frames.append(pd.DataFrame({"date": dates, "platform": "meta", "account_id": f"a{account}", "entity_type": "campaign",
                                    "external_id": xid, "spend": spend, "conversion_value": np.round(value, 2),
                                    "currency": "USD"}))
        truths.append(f)
        families.append(family)
        budgets[xid] = budget
    return pd.concat(frames, ignore_index=True), truths, families, budgets, days, flat


# ------------------------------------------------------------------------------------------ run
def run(n_accounts: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    changes, plans = [], []
    for a in range(n_accounts):
        perf, truths, families, budgets, days, flat = simulate_account(rng, a)
        max_change = float(rng.choice([0.3, 1.0]))
        mode = str(rng.choice(["cap", "mark"]))
        total = float(np.round(sum(budgets.values()) * rng.uniform(0.85, 1.15), 2))
        settings = RecommendSettings(max_change=max_change, extrapolation=mode, n_draws=400, seed=a)
        try:
            rec = recommend(perf, FixedBudget(total=total), settings=settings, account=AccountState(budgets=budgets))
        except ValueError:  # an infeasible total within the evidence (cap mode): no plan, nothing to judge
            try:
                rec = recommend(perf, FixedBudget(), settings=settings, account=AccountState(budgets=budgets))
            except ValueError:
                continue
        t = rec.budget_table
        assessed = rec.assessment.table  # per campaign, curve order
        lam = rec.hurdle
        idx = [int(x.split("c")[-1]) for x in t["external_id"]]
        f_old = np.array([truths[i](PACING * b) for i, b in zip(idx, t["current_budget"])])
        f_new = np.array([truths[i](PACING * b) for i, b in zip(idx, t["new_budget"])])
        gain = f_new - f_old - lam * PACING * (t["new_budget"].to_numpy() - t["current_budget"].to_numpy())
        moved = np.isfinite(t["confidence"].to_numpy(float))
        for j in np.flatnonzero(moved):
            changes.append({
                "confidence": float(t["confidence"].iloc[j]), "model": float(assessed["model_confidence"].iloc[j]),
                "improved": bool(gain[j] > 0), "extrapolated": bool(t["extrapolated"].iloc[j]), "fit": t["fit"].iloc[j],
                "family": families[idx[j]], "days": days, "flat": flat, "mode": mode, "max_change": max_change,
                "change": float(t["change_pct"].iloc[j]), "driver": t["confidence_driver"].iloc[j],
                "r2": float(t["r2"].iloc[j]),
            })
        if moved.any():
            plans.append({"confidence": rec.plan_confidence, "model": rec.assessment.plan_model,
                          "improved": bool(gain[moved].sum() > 0)})
    return pd.DataFrame(changes), pd.DataFrame(plans)


def calibration(frame: pd.DataFrame, edges=(0, 50, 60, 70, 80, 90, 100.001), *, one_sided: bool = False) -> pd.DataFrame:
    """Stated confidence bucket vs realized share; ``ok`` judges |gap| <= TOLERANCE, or with ``one_sided`` only
    overconfidence (gap >= -TOLERANCE)."""
    b = pd.cut(frame["confidence"], list(edges), right=False)
    out = frame.groupby(b, observed=False).agg(n=("improved", "size"), stated=("confidence", "mean"),
                                               realized=("improved", "mean"))
    out["realized"] *= 100
    out["gap"] = out["realized"] - out["stated"]
    within = out["gap"] >= -TOLERANCE if one_sided else out["gap"].abs() <= TOLERANCE
    out["ok"] = np.where(out["n"] >= MIN_BUCKET, np.where(within, "yes", "NO"), "(few)")
    out.index = [f"{int(i.left)}-{min(int(i.right), 100)}" for i in out.index]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write every judged change to this CSV")
    args = ap.parse_args()
    t0 = time.perf_counter()
    changes, plans = run(args.accounts, args.seed)
    secs = time.perf_counter() - t0
    if args.out:
        changes.to_csv(args.out, index=False)
    pd.set_option("display.width", 140)
    print(f"{args.accounts} simulated accounts x {N_CAMPAIGNS} campaigns: {len(changes)} budget changes, {len(plans)} plans "
          f"({secs:.1f} s)\n")
    table = calibration(changes)
    print("Budget changes: stated confidence vs share that really improved value")
    print(table.round(1).to_string(), "\n")
    plan_table = calibration(plans, one_sided=True)
    print("Whole plans (plan confidence vs the true total value rising). A plan's confidence is held to its weakest")
    print("material change, so it is modest by construction: the check is that it is never too high.")
    print(plan_table.round(1).to_string(), "\n")
    by_fit = changes.groupby("fit").agg(n=("improved", "size"), stated=("confidence", "mean"), max_stated=("confidence", "max"),
                                        realized=("improved", "mean"))
    by_fit["realized"] *= 100
    print("By fit quality:")
    print(by_fit.round(1).to_string(), "\n")
    ex = changes[changes["extrapolated"]]
    cap = RecommendSettings().extrapolated_confidence_cap
    print(f"Extrapolated changes (mark mode): {len(ex)}; highest stated confidence {ex['confidence'].max() if len(ex) else float('nan'):.1f} "
          f"(cap {cap:g}); mean stated {ex['confidence'].mean() if len(ex) else float('nan'):.1f}, really improved "
          f"{100 * ex['improved'].mean() if len(ex) else float('nan'):.1f} %")
    by_family = changes.groupby("family").agg(n=("improved", "size"), stated=("confidence", "mean"), realized=("improved", "mean"))
    by_family["realized"] *= 100
    print("\nBy true curve family:")
    print(by_family.round(1).to_string())
    by_driver = changes.groupby("driver").agg(n=("improved", "size"), stated=("confidence", "mean"), realized=("improved", "mean"))
    by_driver["realized"] *= 100
    print("\nBy what drives the confidence (the reason each change states; core.optimize.confidence.CONFIDENCE_DRIVERS):")
    print(by_driver.round(1).to_string())
    sure = changes[changes["confidence"] >= 90]
    by_r2 = sure.groupby(pd.cut(sure["r2"], [-np.inf, 0.1, 0.3, np.inf], labels=["R² < 0.1", "0.1-0.3", ">= 0.3"]),
                         observed=False).agg(n=("improved", "size"), stated=("confidence", "mean"), realized=("improved", "mean"))
    by_r2["realized"] *= 100
    print("\nChanges stated at 90 or more, by the fit's R² (a low R² is noise, not a wrong curve):")
    print(by_r2.round(1).to_string())
    ok_buckets = (table.loc[table["n"] >= MIN_BUCKET, "gap"].abs() <= TOLERANCE).all()
    ok_cap = ex.empty or ex["confidence"].max() <= cap + 1e-9
    ok_plans = (plan_table.loc[plan_table["n"] >= MIN_BUCKET, "gap"] >= -TOLERANCE).all()
    print(f"\nTarget: every bucket with >= {MIN_BUCKET} changes within {TOLERANCE:g} points: {'met' if ok_buckets else 'NOT met'}; "
          f"no extrapolated change above the cap: {'met' if ok_cap else 'NOT met'}; "
          f"no plan bucket overconfident by more than {TOLERANCE:g}: {'met' if ok_plans else 'NOT met'}")
    return 0 if ok_buckets and ok_cap and ok_plans else 1


if __name__ == "__main__":
    sys.exit(main())
