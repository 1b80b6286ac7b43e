"""Confidence 0-100 for a recommendation: how likely the change really improves the objective.

Budget changes
--------------
The objective of one campaign's move from ``old`` to ``new`` is value minus the opportunity cost
of the money, ``f(b) - hurdle * b``, where ``hurdle`` is the marginal ROAS the money earns elsewhere
in the plan (the allocation's Lagrange multiplier). The *model confidence* is the share of
plausible curves in which ``f(new) - f(old) > hurdle * (new - old)``. Plausible curves are

* parameter draws of the fit (`core.response.CurveSet.sample`), whose covariance already allows for
  residuals that run in streaks (see ``core.response``: day-to-day correlation widens it), and
* beyond the **evidence** (the lowest and highest daily spend observed), a slope that is no longer
  known: from the edge outward each draw continues with its own elasticity at the edge plus a
  wander that grows with the distance, kept inside [0, 1] (value never falls as spend rises, and
  returns never grow). The slope wanders like a random walk in log spend, so a curve cannot turn
  abruptly where the data end: the average slope over a log-distance ``u`` past the edge has
  standard deviation ``slope_spread x sqrt(u)`` (``slope_spread`` at one e-fold, x2.7 or /2.7).
  Inside the evidence this changes nothing; a step just past the edge is nearly as sure as one
  inside; far outside the draws disagree. This is what lets staged changes learn: each executed
  step's days move the edge, and the next step starts from there.

The *stated confidence* then respects what the data can support:

* a proposal outside the evidence widened by the settable ``margin`` is **extrapolated** when its
  conclusion rests on the unseen part of the curve: its confidence is at most ``extrapolated_cap``.
  A move beyond the evidence that pays even in the worst case monotonicity allows (a cut that pays
  although the campaign returned nothing below its lowest spend; a raise that pays although it
  bought nothing above its highest) does not rest on extrapolation: it may state up to the share of
  draws in which that worst case pays;
* a curve whose form misses the pattern of its days (the lack-of-fit test of `core.response` below
  ``poor_fit_p``), or whose form cannot be tested (too few days), fits poorly; one that borrows its
  slope from the other campaigns (too little or too flat history) is borrowed. They are capped at
  ``poor_fit_cap`` / ``borrowed_cap``: such a change never shows high confidence (the caps sit below
  the default auto-approve threshold of 80).

  R² is not a test of fit: it is the share of the day-to-day variance the curve explains, so a
  campaign with a few conversions a day has a low R² under the *right* curve (Poisson noise dwarfs
  what a budget step moves). That noise is already in the plausible curves (the fit's covariance), so
  a cap on R² would count it twice; `bench/bench_confidence.py` shows the uncapped noisy fits are
  calibrated. R² stays in the diagnostics for display.

The caps' defaults are where the simulation of ``bench/bench_confidence.py`` finds such changes
really improving value; a cap is a ceiling, so a lower setting only makes a statement more modest.

A **plan**'s confidence is the probability that the whole budget vector beats today's (draws of
all campaigns at once), and never more than its weakest *material* change allows (a change moving
at least ``material_share`` of the money the plan moves). `assess_budget_changes` says which
campaigns limit it, and why, in words.

Every budget change also says **why** its confidence is what it is (`confidence_reasons`), from the
numbers: a move pays when the curve's average slope over it is on the right side of its break-even
slope; the reason names the driver (extrapolation, a poor or borrowed fit, today's return against
the hurdle when a cut pays whatever the slope, or the measured slope ± its spread against break-even)
with the days of history behind it. `CONFIDENCE_MEANING` is the one sentence on what a confidence is
and why R² is not it.

Calibration is shown by simulation, not asserted: ``bench/bench_confidence.py`` fits, recommends and
measures realized outcomes on campaigns drawn from known curves, and prints the calibration table
(also by driver, and for high confidences by R²).

Bids and pauses
---------------
* Bid change: the share of posterior CVR draws (Beta) in which the new bid is closer than the old
  one to the value-maximizing bid ``CVR x value per conversion / target ROAS``.
* Pause: ``1 - P(no conversions by luck)`` under a Poisson with the account's cost per conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.response import CurveSet

__all__ = [
    "ConfidencePolicy", "BudgetAssessment", "evidence_range", "extrapolated", "predict_draws", "plausible_curves",
    "model_confidence", "budget_change_confidence",
    "plan_confidence", "assess_budget_changes", "bid_change_confidence", "pause_confidence", "fit_quality",
    "confidence_reasons", "CONFIDENCE_MEANING", "CONFIDENCE_DRIVERS",
]


@dataclass(frozen=True, kw_only=True)
class ConfidencePolicy:
    """How model confidence becomes stated confidence (see the module docstring).

    ``margin``: how far beyond the observed spend still counts as evidence (0.2 = 20 % above the
    highest day, 1/1.2 of the lowest); ``extrapolated_cap``: the most an extrapolated change may
    show; ``slope_spread``: the standard deviation of the unknown average slope one e-fold beyond the
    evidence (it grows with the square root of the log-distance); ``poor_fit_p``: below that
    lack-of-fit p-value (a curve whose form misses the history's pattern, however high its R²), or
    with too few days for the test, a fit is poor; ``poor_fit_cap``: a
    poorly fitted change shows at most this; ``borrowed_cap``:
    the most for a curve whose slope is borrowed from other campaigns; ``material_share``: a change
    moving at least this share of the plan's moved money is material.
    """

    margin: float = 0.2
    extrapolated_cap: float = 60.0
    slope_spread: float = 0.35
    poor_fit_p: float = 0.01
    poor_fit_cap: float = 75.0
    borrowed_cap: float = 80.0
    material_share: float = 0.05

    def __post_init__(self):
        for name in ("margin", "slope_spread", "poor_fit_p", "material_share"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        for name in ("extrapolated_cap", "poor_fit_cap", "borrowed_cap"):
            v = float(getattr(self, name))
            if not 0 <= v <= 100:
                raise ValueError(f"{name} must be between 0 and 100, got {v!r}")


DEFAULT_POLICY = ConfidencePolicy()
#: Half a cent: budgets rounded to the currency's unit at the edge of the evidence stay inside it.
UNIT_TOLERANCE = 0.005


# --------------------------------------------------------------------------------------------
# Evidence and extrapolation
# --------------------------------------------------------------------------------------------


def evidence_range(curves: CurveSet) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) daily spend observed per campaign (days with spend); (0, inf) when unknown.

    Taken from the curve diagnostics (``observed_min`` / ``observed_max``, else ``spend_min`` /
    ``spend_max``); a hand-built curve set without them has no evidence limits.
    """
    d = curves.diagnostics
    lo_col = "observed_min" if "observed_min" in d.columns else "spend_min" if "spend_min" in d.columns else None
    hi_col = "observed_max" if "observed_max" in d.columns else "spend_max" if "spend_max" in d.columns else None
    lo = d[lo_col].to_numpy(float) if lo_col else np.zeros(curves.n)
    hi = d[hi_col].to_numpy(float) if hi_col else np.full(curves.n, np.inf)
    lo = np.where(np.isfinite(lo) & (lo > 0), lo, 0.0)
    hi = np.where(np.isfinite(hi) & (hi > 0), hi, np.inf)
    return lo, hi


def evidence_bounds(curves: CurveSet, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The evidence widened by ``margin``: (lowest / (1 + margin), highest x (1 + margin))."""
    lo, hi = evidence_range(curves)
    return lo / (1.0 + margin), hi * (1.0 + margin)


def extrapolated(curves: CurveSet, spend, margin: float = DEFAULT_POLICY.margin, *, old=None) -> np.ndarray:
    """Per campaign: whether ``spend`` lies beyond the evidence widened by ``margin``.

    With ``old`` given, a move that does not leave today's budget's side of the evidence any
    further (e.g. a budget already above the highest day, cut toward the evidence) is not counted.
    Zero spend is never extrapolated: no spend returns nothing, which is known.
    """
    s = np.asarray(spend, dtype=float)
    lo, hi = evidence_bounds(curves, margin)
    hi = hi * (1 + 1e-9) + UNIT_TOLERANCE  # a budget rounded to the cent at the edge is at the edge
    lo = lo * (1 - 1e-9) - UNIT_TOLERANCE
    out = ((s > hi) | (s < lo)) & (s > 0)
    if old is not None:
        o = np.asarray(old, dtype=float)
        out &= ~(((s > hi) & (s <= o)) | ((s < lo) & (s >= o)))
    return out


def _elasticity(curves: CurveSet, spend, params) -> np.ndarray:
    """d log f / d log s at ``spend`` for every draw: the slope the curve leaves the evidence with."""
    v = curves.predict(spend, params)
    m = curves.marginal(spend, params)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(v > 0, m * spend / v, 0.0)
    return np.clip(np.nan_to_num(e, nan=0.0), 0.0, 1.0)


def predict_draws(curves: CurveSet, spend, draws: np.ndarray, z: np.ndarray | None = None,
                  slope_spread: float = DEFAULT_POLICY.slope_spread) -> np.ndarray:
    """Daily value (draws, n) at ``spend`` (n,) under each draw, the slope beyond the evidence uncertain.

    ``z`` (draws, n, 2): standard normals for the slope below / above the evidence (drawn from a
    fixed seed when None); pass the same ``z`` to compare two budget vectors on the same curves.
    """
    s = np.broadcast_to(np.asarray(spend, dtype=float), (curves.n,))
    D = draws.shape[0]
    value = curves.predict(s[None, :], draws)
    lo, hi = evidence_range(curves)
    if slope_spread <= 0 or not (((s > hi) | ((s < lo) & (s > 0))).any()):
        return value
    if z is None:
        z = np.random.default_rng(12345).standard_normal((D, curves.n, 2))
    for side, edge, beyond in ((0, lo, (s < lo) & (s > 0)), (1, hi, s > hi)):
        if not beyond.any():
            continue
        e = np.where(beyond, edge, 1.0)[None, :]
        f_edge = curves.predict(e, draws)
        u = np.abs(np.log(np.where(beyond, s, 1.0) / e[0]))  # log-distance past the edge
        k = np.clip(_elasticity(curves, e, draws) + slope_spread * np.sqrt(u)[None, :] * z[..., side], 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cont = f_edge * np.power(np.where(beyond, s, 1.0)[None, :] / e, k)
        value = np.where(beyond[None, :], cont, value)
    return value


def plausible_curves(curves: CurveSet, n_draws: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(parameter draws, slope normals beyond the evidence): the plausible curves every confidence is
    computed over. Draw them once and pass them on to judge many budget vectors on the same curves."""
    rng = np.random.default_rng(seed)
    draws = curves.sample(n_draws, rng)
    z = rng.standard_normal((n_draws, curves.n, 2))
    return draws, z


_draws = plausible_curves


# --------------------------------------------------------------------------------------------
# Budget changes
# --------------------------------------------------------------------------------------------


def _gains(curves: CurveSet, old, new, hurdle: float, n_draws: int, seed: int, slope_spread: float, *, worst_case: bool = False,
           plausible: tuple[np.ndarray, np.ndarray] | None = None, values: bool = False):
    """(gain per draw and campaign, old, new[, worst-case gain][, (value at old, value at new) per draw]):
    value added net of ``hurdle`` x money.

    The worst case keeps only what monotonicity guarantees beyond the evidence: a budget cut below
    the lowest observed spend may lose everything the campaign returned (value 0 there), a raise
    above the highest buys nothing more than the value at that highest spend.
    """
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    if old.shape != (curves.n,) or new.shape != (curves.n,):
        raise ValueError(f"old and new budgets must have one entry per campaign ({curves.n})")
    if not np.isfinite(hurdle) or hurdle < 0:
        raise ValueError(f"hurdle (marginal ROAS of money elsewhere) must be a non-negative number, got {hurdle}")
    draws, z = plausible if plausible is not None else plausible_curves(curves, n_draws, seed)
    v_new = predict_draws(curves, new, draws, z, slope_spread)
    v_old = predict_draws(curves, old, draws, z, slope_spread)
    cost = hurdle * (new - old)[None, :]
    gain = v_new - v_old - cost
    out: tuple = (gain, old, new)
    if worst_case:
        lo, hi = evidence_range(curves)
        at_hi = curves.predict(np.where(np.isfinite(hi), hi, 1.0)[None, :], draws)
        v_wc = np.where((new > hi)[None, :], np.minimum(v_new, at_hi), np.where((new < lo)[None, :], 0.0, v_new))
        out += (v_wc - v_old - cost,)
    if values:
        out += ((v_old, v_new),)
    return out


def budget_change_confidence(curves: CurveSet, old, new, hurdle: float, *, n_draws: int = 400, seed: int = 0,
                             slope_spread: float = DEFAULT_POLICY.slope_spread) -> np.ndarray:
    """Per campaign, 0-100: the model probability that moving ``old -> new`` beats ``hurdle`` per unit money.

    No caps applied (see `assess_budget_changes` for the stated confidence). NaN where the budget
    does not change.
    """
    gain, old, new = _gains(curves, old, new, hurdle, n_draws, seed, slope_spread)
    conf = 100.0 * (gain > 0).mean(axis=0)
    return np.where(np.isclose(new, old, rtol=1e-9, atol=1e-12), np.nan, conf)


def plan_confidence(curves: CurveSet, old, new, hurdle: float = 0.0, *, n_draws: int = 400, seed: int = 0,
                    slope_spread: float = DEFAULT_POLICY.slope_spread) -> float:
    """0-100: the model probability that the whole budget vector ``new`` beats ``old`` (net of ``hurdle``
    x extra money). Not capped by the weakest change: see `assess_budget_changes`."""
    gain, _, _ = _gains(curves, old, new, hurdle, n_draws, seed, slope_spread)
    return float(100.0 * (gain.sum(axis=1) > 0).mean())


def fit_quality(curves: CurveSet, policy: ConfidencePolicy = DEFAULT_POLICY) -> pd.DataFrame:
    """Per campaign: ``fit`` ("good" | "poor" | "borrowed" | "unknown"), its ``cap`` and a plain ``why``.

    Poor: the lack-of-fit test rejects the curve's form, or there were too few days to run it. A
    curve set without the test's column (built by hand) is "unknown" and uncapped.
    """
    d = curves.diagnostics
    n = curves.n
    pooled = d["pooled"].to_numpy(bool) if "pooled" in d.columns else np.zeros(n, bool)
    known = "lack_of_fit_p" in d.columns
    lof = d["lack_of_fit_p"].to_numpy(float) if known else np.full(n, np.nan)
    tested = np.isfinite(lof)
    wrong_form = tested & (lof < policy.poor_fit_p)
    poor = known & ~pooled & (wrong_form | ~tested)
    fit = np.where(pooled, "borrowed", np.where(poor, "poor", "good" if known else "unknown"))
    cap = np.where(pooled, policy.borrowed_cap, np.where(poor, policy.poor_fit_cap, 100.0))
    why = np.full(n, "", dtype=object)
    for i in np.flatnonzero(pooled):
        why[i] = "too little or too flat history: its curve borrows the slope of the other campaigns"
    for i in np.flatnonzero(poor):
        why[i] = (f"its curve misses the pattern of its history (lack-of-fit test p = {lof[i]:.3f} < {policy.poor_fit_p:g})"
                  if wrong_form[i] else "its curve's form cannot be checked against the history (too few days for the "
                  "lack-of-fit test)")
    return pd.DataFrame({"fit": fit, "cap": cap, "why": why})


@dataclass(frozen=True)
class BudgetAssessment:
    """Confidence of a budget vector, per campaign and for the plan, with the reasons.

    ``table`` (one row per campaign, curve order): ``confidence`` (stated, 0-100, NaN where nothing
    changes), ``model_confidence`` (before caps), ``extrapolated``, ``fit`` (good / poor / borrowed),
    ``cap`` (the ceiling that applied), ``material``, ``limit`` (the ceiling or doubt that holds it
    down, in words; empty when only the data's noise limits it) and the columns of
    `confidence_reasons` (``driver``, ``why`` and the numbers behind them). ``plan``: the plan's stated confidence,
    ``plan_model``: its joint model probability. ``limiting``: the rows of the material changes that
    hold the plan's confidence down, weakest first.
    """

    table: pd.DataFrame
    plan: float
    plan_model: float
    limiting: pd.DataFrame

    def plan_reason(self) -> str:
        """One sentence: the plan's confidence and what limits it."""
        if not np.isfinite(self.plan):
            return "no budget changes"
        if self.limiting.empty:
            return f"plan confidence {self.plan:.0f}: the probability, under the curves' uncertainty, that the plan beats today's budgets"
        parts = [f"{r.label} ({r.confidence:.0f}: {r.why})" for r in self.limiting.head(3).itertuples()]
        more = f" and {len(self.limiting) - 3} more" if len(self.limiting) > 3 else ""
        return f"plan confidence {self.plan:.0f}, held down by " + "; ".join(parts) + more


def model_confidence(curves: CurveSet, old, new, hurdle: float, plausible: tuple[np.ndarray, np.ndarray],
                     slope_spread: float = DEFAULT_POLICY.slope_spread) -> np.ndarray:
    """Per campaign, the model confidence (no caps, no words) over given plausible curves; NaN where nothing moves."""
    gain, old, new = _gains(curves, old, new, hurdle, 0, 0, slope_spread, plausible=plausible)
    return np.where(np.isclose(new, old, rtol=1e-9, atol=1e-12), np.nan, 100.0 * (gain > 0).mean(axis=0))


def assess_budget_changes(curves: CurveSet, old, new, hurdle: float, *, policy: ConfidencePolicy = DEFAULT_POLICY,
                          n_draws: int = 400, seed: int = 0, labels: list[str] | None = None,
                          plausible: tuple[np.ndarray, np.ndarray] | None = None) -> BudgetAssessment:
    """The stated confidence of every budget change and of the plan (see the module docstring).

    Parameters
    ----------
    curves : CurveSet
    old, new : array (n,)
        Today's and the proposed daily budgets, in curve order.
    hurdle : float
        The marginal ROAS the money earns elsewhere in the plan.
    policy : ConfidencePolicy
        Evidence margin, caps, slope spread beyond the evidence, materiality.
    labels : list of str, optional
        Display names for the reasons (default ``platform:external_id``).
    plausible : (draws, z), optional
        The plausible curves (`plausible_curves`); drawn from ``n_draws`` and ``seed`` when not given.

    Returns
    -------
    BudgetAssessment
    """
    gain, old, new, worst, (v_old, v_new) = _gains(curves, old, new, hurdle, n_draws, seed, policy.slope_spread,
                                                   worst_case=True, plausible=plausible, values=True)
    same = np.isclose(new, old, rtol=1e-9, atol=1e-12)
    model = np.where(same, np.nan, 100.0 * (gain > 0).mean(axis=0))
    robust = 100.0 * (worst > 0).mean(axis=0)
    plan_model = float(100.0 * (gain.sum(axis=1) > 0).mean()) if (~same).any() else float("nan")
    fq = fit_quality(curves, policy)
    beyond = extrapolated(curves, new, policy.margin, old=old) & ~same
    # extrapolated: the conclusion rests on the curve beyond the evidence (the worst case there does not carry it)
    extra = beyond & (robust < policy.extrapolated_cap)
    fit_cap = fq["cap"].to_numpy(float)
    cap = np.where(beyond, np.minimum(fit_cap, np.maximum(policy.extrapolated_cap, robust)), fit_cap)
    stated = np.where(same, np.nan, np.minimum(model, cap))
    lo, hi = evidence_range(curves)
    names = labels if labels is not None else curves.labels
    limit = np.full(curves.n, "", dtype=object)
    fit_why = fq["why"].to_numpy()
    past = _past_edge(new, lo, hi)
    for i in np.flatnonzero(~same):  # a loop over changed campaigns (tens), for the words only
        why = []
        up = new[i] > hi[i]
        edge = f"{'highest' if up else 'lowest'} daily spend observed ({hi[i] if up else lo[i]:,.2f})"
        if extra[i]:
            why.append(f"extrapolated: {new[i]:,.2f} is {past[i]:.0%} beyond the {edge}, past its "
                       f"{policy.margin:.0%} margin")
        elif beyond[i]:
            why.append(f"beyond the {edge}, but it pays even if the campaign {'bought nothing more above it' if up else 'returned nothing below it'}")
        if fit_why[i]:
            why.append(fit_why[i])
        if not why and model[i] < 80:
            why.append("the curve's uncertainty leaves the gain in doubt")
        limit[i] = "; ".join(why)
    reasons = confidence_reasons(curves, old, new, hurdle, (v_old, v_new), stated=stated, model=model, cap=cap,
                                 extrapolated_=extra, beyond=beyond, fit=fq, limit=limit, policy=policy)
    moved = np.abs(new - old)
    total_moved = moved.sum()
    material = ~same & (moved >= policy.material_share * total_moved) if total_moved > 0 else np.zeros(curves.n, bool)
    plan = plan_model
    if material.any() and np.isfinite(plan):
        plan = float(min(plan, np.nanmin(stated[material])))
    table = pd.DataFrame({
        "label": names, "confidence": stated, "model_confidence": model, "extrapolated": extra, "beyond_evidence": beyond,
        "fit": fq["fit"].to_numpy(), "cap": np.where(same, np.nan, cap), "material": material, "limit": limit,
    })
    table = pd.concat([table, reasons], axis=1)
    limiting = table[material & (stated < plan_model - 1e-9)].sort_values("confidence", kind="stable")
    return BudgetAssessment(table, plan, plan_model, limiting.reset_index(drop=True))


#: What a confidence is, in one place (the Optimizer page and the CLI say it beside the figures).
CONFIDENCE_MEANING = (
    "Confidence (0-100) is the probability, under the uncertainty of the fitted curves, that a change really improves "
    "value net of what its money earns elsewhere in the plan; bench/bench_confidence.py checks on simulated campaigns "
    "that stated levels come true (a change at 80 improves value about 8 times in 10). R² is not confidence: it is the "
    "share of the day-to-day scatter that spend explains, so noisy daily values give a low R² even when many days pin "
    "down the campaign's return and slope; whether the curve's form fits is judged by the lack-of-fit test instead."
)

#: Machine-readable drivers of a budget change's confidence (`confidence_reasons`), each with its plain label.
CONFIDENCE_DRIVERS = {
    "extrapolated": "rests on spend beyond the observed range",
    "poor_fit": "the curve's form misses its history",
    "borrowed": "the slope is borrowed from other campaigns",
    "return_vs_hurdle": "today's return against what the money earns elsewhere",
    "slope_clear": "the measured slope is clearly on the paying side",
    "slope_close": "the measured slope is close to break-even",
    "slope_against": "the measured slope is on the losing side",
}


def _past_edge(spend, lo, hi) -> np.ndarray:
    """Per campaign, how far ``spend`` lies past the observed spend [lo, hi], as a fraction (0 inside)."""
    spend, lo, hi = np.asarray(spend, float), np.asarray(lo, float), np.asarray(hi, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((spend > hi) & (hi > 0), spend / hi - 1.0, np.where((spend > 0) & (spend < lo), 1.0 - spend / lo, 0.0))


def confidence_reasons(curves: CurveSet, old, new, hurdle: float, values: tuple[np.ndarray, np.ndarray], *, stated,
                       model, cap, extrapolated_, beyond, fit: pd.DataFrame, limit, policy: ConfidencePolicy = DEFAULT_POLICY
                       ) -> pd.DataFrame:
    """Per campaign, what drives the confidence of moving ``old -> new``, computed from the numbers.

    A move pays when the curve's average slope over it (its elasticity: % value per % spend) is on the
    right side of the **break-even slope**, the slope at which the value gained or lost equals the
    money's worth elsewhere (``hurdle`` x money moved), given today's predicted value. A cut below a
    break-even of 1 pays whatever the slope (concave returns never grow with spend), so only the level
    of today's return counts; otherwise the measured slope, its spread over the plausible curves
    (``values``: value at old and new per draw) and how far it sits from break-even decide.

    Columns: ``driver`` (a key of `CONFIDENCE_DRIVERS`, "" where nothing moves), ``why`` (one
    sentence with the numbers), ``breakeven_slope``, ``slope`` (fitted average elasticity over the
    move), ``slope_sd`` (its spread over the draws), ``slope_z`` (distance from break-even in those
    spreads, positive on the paying side), ``beyond_pct`` (how far the new budget lies past the
    observed spend, %), ``days`` (days of history with value), ``lack_of_fit_p``.
    """
    old, new = np.asarray(old, float), np.asarray(new, float)
    n = curves.n
    v_old, v_new = values
    d = curves.diagnostics
    days = d["points_used"].to_numpy(float) if "points_used" in d.columns else np.full(n, np.nan)
    lof = d["lack_of_fit_p"].to_numpy(float) if "lack_of_fit_p" in d.columns else np.full(n, np.nan)
    r2 = d["r2"].to_numpy(float) if "r2" in d.columns else np.full(n, np.nan)
    f_old, f_new = curves.predict(old), curves.predict(new)
    moves = ~np.isclose(new, old, rtol=1e-9, atol=1e-12)
    both = moves & (old > 0) & (new > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lr = np.where(both, np.log(np.where(both, new / np.where(old > 0, old, 1.0), 1.0)), np.nan)
        need = 1.0 + hurdle * (new - old) / f_old  # value at new / value at old at which the move breaks even
        e_star = np.where(need > 0, np.log(np.where(need > 0, need, 1.0)) / lr, np.inf)  # need <= 0: a cut saving more than all value
        slope = np.log(f_new / f_old) / lr
        e_draws = np.log(v_new[:, both] / v_old[:, both]) / lr[None, both]
    ok = np.isfinite(e_draws)  # a draw that returns nothing at either budget has no slope
    count = np.maximum(ok.sum(axis=0), 1)
    mean = np.where(ok, e_draws, 0.0).sum(axis=0) / count
    sd = np.full(n, np.nan)
    sd[both] = np.where(ok.any(axis=0), np.sqrt(np.where(ok, (e_draws - mean) ** 2, 0.0).sum(axis=0) / count), np.nan)
    e_star = np.where(both, e_star, np.nan)
    up = new > old
    side = np.where(up, 1.0, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(both, side * (slope - e_star) / np.where(sd > 0, sd, np.nan), np.nan)
    lo, hi = evidence_range(curves)
    beyond_pct = 100.0 * _past_edge(new, lo, hi)
    driver = np.full(n, "", dtype=object)
    why = np.full(n, "", dtype=object)
    fit_kind, fit_why = fit["fit"].to_numpy(), fit["why"].to_numpy()
    for i in np.flatnonzero(moves):  # changed campaigns only (tens), for the words
        ret_old = f_old[i] / old[i] if old[i] > 0 else np.nan
        hist = f"{days[i]:.0f} days" if np.isfinite(days[i]) else "the history"
        capped = np.isfinite(stated[i]) and stated[i] < model[i] - 1e-9
        if new[i] <= 0 or old[i] <= 0:
            driver[i] = "return_vs_hurdle"
            why[i] = (f"a cut to nothing pays if today's return per unit of spend ({ret_old:.2f}) is below the {hurdle:.2f} the "
                      "money earns elsewhere" if new[i] <= 0 else
                      f"a start from nothing pays if the return per unit at {new[i]:,.2f} ({f_new[i] / new[i]:.2f}) beats the "
                      f"{hurdle:.2f} the money earns elsewhere")
        elif extrapolated_[i]:
            driver[i] = "extrapolated"
            why[i] = f"{limit[i].split('; ')[0]}: the slope there is unknown (±{sd[i]:.2f}), so at most {cap[i]:.0f}"
        elif capped and fit_kind[i] in ("poor", "borrowed"):
            driver[i] = "poor_fit" if fit_kind[i] == "poor" else "borrowed"
            why[i] = f"{fit_why[i]}, so at most {cap[i]:.0f}"
        elif not up[i] and e_star[i] >= 1.0:
            driver[i] = "return_vs_hurdle"
            why[i] = (f"pays whatever the slope: today's return per unit of spend ({ret_old:.2f}) is below the {hurdle:.2f} the "
                      f"money earns elsewhere, and returns do not grow with spend")
        else:
            driver[i] = "slope_clear" if z[i] >= 1.0 else "slope_against" if z[i] <= -1.0 else "slope_close"
            lead = {"slope_clear": "", "slope_close": "near break-even: ", "slope_against": "unlikely to pay: "}[driver[i]]
            source = "the other campaigns' slope puts" if fit_kind[i] == "borrowed" else f"{hist} put"
            why[i] = (f"{lead}it pays if the slope over the move is {'above' if up[i] else 'below'} {e_star[i]:.2f}; "
                      f"{source} it at {slope[i]:.2f} ± {sd[i]:.2f}")
        extra_words = []
        if beyond[i] and not extrapolated_[i]:
            extra_words.append(f"{beyond_pct[i]:.0f}% beyond the observed spend, but it pays even if the campaign "
                               f"{'bought nothing more' if up[i] else 'returned nothing'} there")
        if driver[i] not in ("poor_fit", "borrowed") and fit_why[i]:
            extra_words.append(fit_why[i])
        if np.isfinite(r2[i]) and r2[i] < 0.2 and np.isfinite(stated[i]) and stated[i] >= 80:
            form = f"the curve's form fits them (lack-of-fit p {lof[i]:.2f}) and " if np.isfinite(lof[i]) and fit_kind[i] == "good" else ""
            extra_words.append(f"the days scatter widely (R² {r2[i]:.2f}), but {form}{hist} pin down the average")
        if capped and driver[i] not in ("extrapolated", "poor_fit", "borrowed"):
            extra_words.append(f"capped at {cap[i]:.0f}")
        why[i] = "; ".join([why[i], *extra_words])
    return pd.DataFrame({"driver": driver, "why": why, "breakeven_slope": e_star, "slope": np.where(both, slope, np.nan),
                         "slope_sd": np.where(both, sd, np.nan), "slope_z": z, "beyond_pct": np.where(moves, beyond_pct, np.nan),
                         "days": days, "lack_of_fit_p": lof})


# --------------------------------------------------------------------------------------------
# Bids and pauses
# --------------------------------------------------------------------------------------------


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
