"""Recommendations: allocation + bids + advice -> a list of `core.changes.DraftChange`.

`recommend` runs the whole optimizer on a performance frame in two steps, which callers that
re-solve often (the Optimizer page, a scheduled run) may also call on their own:

1. `build_problem` — what is optimized: the metric (value, or conversions / clicks when the data
   has no value), the entity level (campaigns, rolled up from ad sets / ad groups when needed, or
   the level where budgets live), the response curves, today's budgets and every campaign's
   lower/upper budget (min/max, max change, locks, pauses, and in the default ``"cap"`` mode the
   edge of the observed spend). `Problem.feasible_total` is the range of total budgets it allows.
2. `solve` — for one objective (`FixedBudget`, `TargetRoas`, `MarginalFloor`): the exact allocation;
   budget moves below ``min_change`` (or below ``min_confidence``) are dropped and the rest re-solved;
   every campaign that keeps today's budget says which rule kept it in ``budget_table["held"]`` (a
   key of `HELD`) and ``held_because`` (the notes are made from them); then the budgets are
   rounded to the currency's unit so that **the proposal spends exactly the total it states**; every
   budget change gets a confidence that accounts for fit quality and extrapolation
   (`core.optimize.confidence.assess_budget_changes`), the plan a confidence no higher than its
   weakest material change, and each a plain reason.

Bids are suggested where today's bids are known; advice (pause, targeting, creative) is listed.

Today's budget per campaign comes from `AccountState.budgets` (e.g. `current_budgets_from_entities`);
one without a known budget uses its mean daily spend over the last 7 days, and its reason says so.

>>> import pandas as pd, numpy as np
>>> days = pd.date_range("2026-01-01", periods=28)
>>> spend = np.tile([50.0, 80.0, 120.0, 60.0], 7)
>>> perf = pd.DataFrame({"date": days, "platform": "meta", "external_id": "c1", "spend": spend,
...                      "conversion_value": 12 * spend ** 0.6})
>>> two = pd.concat([perf, perf.assign(external_id="c2", conversion_value=20 * spend ** 0.5)])
>>> rec = recommend(two, FixedBudget(total=200.0), settings=RecommendSettings(max_change=0.5))
>>> str(rec.stated_total), str(sum(rec.proposal.values()))
('200.00', '200.00')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.changes import DraftChange
from core.money import format_money, money_step, platform_refusal, quantize_money, split_exact, to_decimal
from core.optimize.advice import advise
from core.optimize.allocate import (
    Allocation,
    Bounds,
    InfeasibleError,
    allocate,
    allocate_for_marginal_floor,
    allocate_for_target_roas,
    build_bounds,
)
from core.optimize.bids import _lookup, suggest_bids
from core.optimize.confidence import (
    BudgetAssessment,
    ConfidencePolicy,
    assess_budget_changes,
    bid_change_confidence,
    evidence_bounds,
    model_confidence,
    plausible_curves,
)
from core.optimize.currency import require_one_currency
from core.optimize.levels import LevelInfo, resolve_level
from core.optimize.metrics import Metric, choose_metric, metric_frame
from core.optimize.settings import (
    AccountState,
    FixedBudget,
    Limits,
    MarginalFloor,
    Objective,
    RecommendSettings,
    SettingsError,
    TargetRoas,
)
from core.response import CurveSet, fit_curves
from core.store.db import DEFAULT_WORKSPACE, transaction
from core.store.models import AdEntity

__all__ = ["recommend", "build_problem", "solve", "extras", "Extras", "Problem", "Recommendations", "HELD", "held_reasons", "held_notes",
           "current_budgets_from_entities", "budgets_as_decimal", "keyword_request", "policy_for"]


@dataclass
class Recommendations:
    """Everything the optimizer concluded, for display and for freezing into a change plan.

    ``allocation.budgets`` and ``budget_table.new_budget`` are the proposal as it will be executed
    (rounded to the currency's unit); ``proposal`` maps each label to its Decimal budget and
    ``stated_total`` is their exact sum. ``assessment`` holds the confidence of every change and of
    the plan with the reasons; ``plan_confidence`` is its stated plan figure.
    """

    curves: CurveSet
    allocation: Allocation
    budget_table: pd.DataFrame
    changes: list[DraftChange]
    advice: pd.DataFrame
    bids: pd.DataFrame | None = None
    plan_confidence: float = float("nan")
    notes: list[str] = field(default_factory=list)
    assessment: BudgetAssessment | None = None
    proposal: dict[str, Decimal] = field(default_factory=dict)
    stated_total: Decimal = Decimal("0")
    level: LevelInfo | None = None
    metric: Metric | None = None
    objective: Objective | None = None
    feasible_total: tuple[float, float] = (0.0, float("inf"))
    hurdle: float = float("nan")


@dataclass(frozen=True)
class Problem:
    """What is optimized, before any objective: curves, today's budgets and the bounds.

    ``performance``: the frame as valued by the metric (all levels, for bids); ``rows``: its totals
    rows at the optimized level (rolled up when needed; for curves and advice);
    ``current``: today's budgets (curve order); ``known``: which came from the account (the rest
    are last-7-day mean spend); ``bounds``: per-campaign lower/upper budgets with their sources;
    ``paused``: campaigns the advice says to pause (held at 0); ``notes``: what the user should know;
    ``plausible``: the curve draws every confidence of this problem is computed over (drawn once).
    """

    performance: pd.DataFrame
    rows: pd.DataFrame
    curves: CurveSet
    current: np.ndarray
    known: np.ndarray
    bounds: Bounds
    locked: np.ndarray
    paused: np.ndarray
    pause_advice: pd.DataFrame
    statuses: dict[str, str]
    level: LevelInfo
    metric: Metric
    settings: RecommendSettings
    policy: ConfidencePolicy
    notes: tuple[str, ...] = ()
    plausible: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def feasible_total(self) -> tuple[float, float]:
        """(lowest, highest) total daily budget the bounds allow."""
        return float(self.bounds.lo.sum()), float(self.bounds.hi.sum())

    @property
    def currency(self) -> str:
        cur = self.curves.keys["currency"]
        return str(cur.iloc[0]) if len(cur) else ""


def current_budgets_from_entities(
    engine: Engine, *, workspace_id: str = DEFAULT_WORKSPACE, entity_type: str | None = None
) -> pd.DataFrame:
    """Today's budgets, bids and statuses from ``ad_entities``: platform, external_id, entity_type,
    parent_id, daily_budget, bid, status, currency (budgets/bids as float, NaN where unknown)."""
    with transaction(engine, workspace_id) as s:
        q = select(AdEntity)
        if entity_type is not None:
            q = q.where(AdEntity.entity_type == entity_type)
        rows = s.scalars(q).all()
        data = [
            {
                "platform": r.platform,
                "account_id": r.account_id,
                "entity_type": r.entity_type,
                "external_id": r.external_id,
                "parent_id": r.parent_id,
                "daily_budget": float(r.daily_budget) if r.daily_budget is not None else np.nan,
                "bid": float(r.bid) if r.bid is not None else np.nan,
                "status": r.status,
                "currency": r.currency,
            }
            for r in rows
        ]
    cols = ["platform", "account_id", "entity_type", "external_id", "parent_id", "daily_budget", "bid", "status", "currency"]
    return pd.DataFrame(data, columns=cols)


# --------------------------------------------------------------------------------------------
# The keyword form
# --------------------------------------------------------------------------------------------

_KEYWORDS = {"total_budget", "target_roas", "marginal_floor", "guide_roas", "max_change", "min_budget", "max_budget", "locked",
             "current_budgets", "current_bids", "statuses", "confidence_threshold", "model", "min_change", "n_draws", "seed"}


def keyword_request(**kw) -> tuple[Objective, RecommendSettings, Limits, AccountState]:
    """The typed request behind the keyword form ``recommend(perf, total_budget=..., max_change=...)``.

    Objective: ``marginal_floor`` -> `MarginalFloor` (a ``target_roas`` beside it guides bids and
    advice); ``target_roas`` -> `TargetRoas` (capped at ``total_budget`` when both are given);
    otherwise `FixedBudget` of ``total_budget``. A floor together with a total budget is a
    contradiction and raises `SettingsError`.
    """
    unknown = set(kw) - _KEYWORDS
    if unknown:
        raise TypeError(f"recommend() got unexpected keyword argument(s) {sorted(unknown)}")
    total, target, floor = kw.get("total_budget"), kw.get("target_roas"), kw.get("marginal_floor")
    guide = kw.get("guide_roas")
    if floor is not None:
        if total is not None:
            raise SettingsError("a marginal ROAS floor sets the total budget itself: give either marginal_floor or total_budget")
        objective: Objective = MarginalFloor(floor=floor)
        guide = target if target is not None else guide
    elif target is not None:
        objective = TargetRoas(target=target, cap=total)
    else:
        objective = FixedBudget(total=total)
    opts = {k: kw[k] for k in ("max_change", "confidence_threshold", "min_change", "n_draws", "seed") if k in kw}
    if "model" in kw:
        opts["curve_model"] = kw["model"]
    settings = RecommendSettings(guide_roas=guide, **opts)
    limits = Limits(min_budget=kw.get("min_budget", 0.0), max_budget=kw.get("max_budget", np.inf), locked=tuple(kw.get("locked") or ()))
    account = AccountState(budgets=kw.get("current_budgets"), bids=kw.get("current_bids"), statuses=kw.get("statuses"))
    return objective, settings, limits, account


# --------------------------------------------------------------------------------------------
# Problem
# --------------------------------------------------------------------------------------------


def _mask(curves: CurveSet, selected) -> np.ndarray:
    """Boolean mask over campaigns from labels ``platform:external_id`` or plain external ids."""
    if not selected:
        return np.zeros(curves.n, dtype=bool)
    sel = {str(x) for x in selected}
    labels = pd.Series(curves.labels)
    m = (labels.isin(sel) | curves.keys["external_id"].isin(sel)).to_numpy()
    unknown = sel - set(labels) - set(curves.keys["external_id"])
    if unknown:
        raise ValueError(f"locked campaign(s) {sorted(unknown)[:5]} are not in the performance data")
    return m


def _per_campaign(curves: CurveSet, value, name: str) -> np.ndarray | float:
    """A scalar, an array in curve order, or a mapping keyed by label/external id (missing -> NaN)."""
    if value is None or np.isscalar(value):
        return value
    if isinstance(value, dict):
        return _lookup(curves.keys, value, name)
    arr = np.asarray(value, dtype=float)
    if arr.shape != (curves.n,):
        raise ValueError(f"{name} must be a number, a mapping or one value per campaign ({curves.n})")
    return arr


def _status_lookup(statuses) -> dict[str, str]:
    if statuses is None:
        return {}
    if isinstance(statuses, pd.DataFrame):
        if "status" not in statuses.columns:
            return {}
        return dict(zip(statuses["platform"].astype(str) + ":" + statuses["external_id"].astype(str), statuses["status"].astype(str)))
    out = {}
    for k, v in dict(statuses).items():
        out[f"{k[0]}:{k[1]}" if isinstance(k, tuple) else str(k)] = str(v)
    return out


def _entities(account: AccountState) -> pd.DataFrame | None:
    if account.entities is not None:
        return account.entities
    for frame in (account.budgets, account.bids, account.statuses):
        if isinstance(frame, pd.DataFrame) and {"entity_type", "external_id"} <= set(frame.columns):
            return frame
    return None


def policy_for(settings: RecommendSettings) -> ConfidencePolicy:
    """The confidence policy a settings object implies (margin and the cap of extrapolated changes)."""
    return ConfidencePolicy(margin=settings.extrapolation_margin, extrapolated_cap=settings.extrapolated_confidence_cap)


def build_problem(performance: pd.DataFrame, *, settings: RecommendSettings | None = None, limits: Limits | None = None,
                  account: AccountState | None = None, curves: CurveSet | None = None,
                  policy: ConfidencePolicy | None = None) -> Problem:
    """The optimization problem before an objective is chosen (see the module docstring).

    Raises `core.optimize.metrics.MetricError` / `core.optimize.levels.LevelError` when the data has
    nothing to optimize at the metric / level asked, `core.response.CurveFitError` for data no curve
    can be fitted to, `core.optimize.currency.MixedCurrencyError` for several currencies, and
    `InfeasibleError` naming the campaign whose limits contradict each other.
    """
    settings = settings or RecommendSettings()
    limits = limits or Limits()
    account = account or AccountState()
    policy = policy or policy_for(settings)
    require_one_currency(performance)
    metric = choose_metric(performance, settings.metric)
    valued = metric_frame(performance, metric)
    ents = _entities(account)
    rows, level = resolve_level(valued, settings.level, ents)
    curves = curves if curves is not None else fit_curves(rows, settings.curve_model, entity_type=level.level)
    require_one_currency(curves, "the response curves")
    n = curves.n
    notes: list[str] = []
    if metric.key != "value":
        notes.append(f"the data has no conversion value: the optimizer maximizes {metric.label} (cost per {metric.unit} "
                     f"instead of ROAS)")
    if level.rolled_up_from:
        notes.append(f"optimizing {level.describe()}: each campaign's performance is the sum of its {level.rolled_up_from.replace('_', ' ')}s")
    if not level.executable:
        notes.append(f"the budgets of this account live at {level.budget_level.replace('_', ' ')} level: changes to "
                     f"{level.noun} budgets can be reviewed but not sent")
    budgets = account.budgets
    if isinstance(budgets, pd.DataFrame) and "shared_budget" in budgets.columns:  # a shared budget is not one campaign's
        budgets = budgets[~budgets["shared_budget"].fillna(False).astype(bool)]
    known = _lookup(curves.keys, budgets, "daily_budget") if budgets is not None else np.full(n, np.nan)
    fallback = ~np.isfinite(known)
    current = np.where(fallback, curves.diagnostics["last7_mean_spend"].to_numpy(), known)
    currency = str(curves.keys["currency"].iloc[0]) if n else "USD"
    notes += [why for why in dict.fromkeys(platform_refusal(currency, p) for p in curves.keys["platform"].astype(str)) if why]
    step = money_step(currency, _platforms(curves))
    current = np.round(current, _places(step))  # today's budgets are whole steps of money
    if fallback.any():
        notes.append(f"{int(fallback.sum())} {level.noun}(s) without a known budget use their mean daily spend of the last 7 days")
    lock = _mask(curves, limits.locked)
    user_min = np.nan_to_num(np.asarray(_per_campaign(curves, limits.min_budget, "min_budget"), dtype=float), nan=0.0)
    user_max = np.nan_to_num(np.asarray(_per_campaign(curves, limits.max_budget, "max_budget"), dtype=float), nan=np.inf)
    bounds = build_bounds(n, current=current, min_budget=user_min, max_budget=user_max, max_change=settings.max_change,
                          locked=lock, labels=curves.labels)
    if settings.extrapolation == "cap":
        bounds = _cap_at_evidence(curves, bounds, current, lock, user_min, policy.margin)
    advice = advise(rows, target_roas=None, entity_type=level.level)
    status_now = _status_lookup(account.statuses)
    pause_advice = advice[advice["kind"] == "pause"]
    pause_labels = {f"{r.platform}:{r.external_id}" for r in pause_advice.itertuples(index=False)}
    pause_labels -= {lab for lab, st in status_now.items() if st == "PAUSED"}
    candidates = pd.Series(curves.labels).isin(pause_labels).to_numpy() & ~lock
    kept = candidates & (user_min > 0)  # the user's minimum budget outranks the advice to pause
    if kept.any():
        names = ", ".join(np.asarray(curves.labels)[kept])
        notes.append(f"not pausing {names}: a minimum budget is set for it; the pause advice is listed as advice only")
    paused = candidates & ~kept
    if paused.any():  # campaigns to pause get no budget; their money is reallocated
        bounds = Bounds(np.where(paused, 0.0, bounds.lo), np.where(paused, 0.0, bounds.hi), bounds.lo_sources, bounds.hi_sources)
        notes.append(f"{int(paused.sum())} {level.noun}(s) recommended for pausing get no budget in the allocation")
    return Problem(plausible=plausible_curves(curves, settings.n_draws, settings.seed), performance=valued, rows=rows, curves=curves, current=current, known=~fallback, bounds=bounds, locked=lock,
                   paused=paused, pause_advice=pause_advice, statuses=status_now, level=level, metric=metric,
                   settings=settings, policy=policy, notes=tuple(notes))


def _cap_at_evidence(curves: CurveSet, bounds: Bounds, current, lock, user_min, margin: float) -> Bounds:
    """Bounds held inside the observed spend widened by ``margin`` (today's budget always allowed;
    a user's minimum and locks win; zero curves may still be cut, since no spend returns nothing)."""
    e_lo, e_hi = evidence_bounds(curves, margin)
    zero = curves.params[:, 0] <= 0
    lo = np.where(lock | zero, bounds.lo, np.maximum(bounds.lo, np.minimum(e_lo, current)))
    hi = np.where(lock, bounds.hi, np.minimum(bounds.hi, np.maximum(e_hi, current)))
    hi = np.maximum(hi, np.maximum(user_min, lo))
    lo = np.minimum(lo, hi)
    pct = f"{margin:.0%}"
    return Bounds(lo, hi, f"{bounds.lo_sources} and the lowest spend observed (less {pct})",
                  f"{bounds.hi_sources} and the highest spend observed (plus {pct})")


# --------------------------------------------------------------------------------------------
# Solve
# --------------------------------------------------------------------------------------------


def _allocate(problem: Problem, objective: Objective, bounds: Bounds) -> tuple[Allocation, list[str]]:
    alloc, notes = _allocate_value(problem, objective, bounds)
    return replace(alloc, objective=_objective_words(problem.metric, objective, alloc, problem.currency)), notes


def _objective_words(metric: Metric, objective: Objective, alloc: Allocation, currency: str | None = None) -> str:
    """The objective in the metric's words: a count (conversions, clicks) is never called value or ROAS."""
    if metric.money:
        return alloc.objective
    if isinstance(objective, MarginalFloor):
        return f"largest budget with {metric.marginal_label.lower()} <= {metric.efficiency(objective.floor):g}"
    if isinstance(objective, TargetRoas) and alloc.objective.startswith("largest budget"):
        return f"largest budget with {metric.efficiency_label.lower()} <= {metric.efficiency(objective.target):g}"
    return f"maximize {metric.label} at total budget {format_money(alloc.total_budget, currency)}"


def _allocate_value(problem: Problem, objective: Objective, bounds: Bounds) -> tuple[Allocation, list[str]]:
    curves, notes = problem.curves, []
    if isinstance(objective, MarginalFloor):
        return allocate_for_marginal_floor(curves, objective.floor, bounds), notes
    if isinstance(objective, TargetRoas):
        metric = problem.metric
        alloc = allocate_for_target_roas(curves, objective.target, bounds, describe=metric.describe_efficiency)
        if objective.cap is not None and alloc.total_budget > objective.cap:
            alloc = allocate(curves, objective.cap, bounds)
            notes.append(f"the budget cap {format_money(objective.cap, problem.currency)} binds before the plan reaches the target "
                         f"{metric.describe_efficiency(objective.target)}")
        return alloc, notes
    if isinstance(objective, FixedBudget):
        total = float(problem.current.sum()) if objective.total is None else objective.total
        return allocate(curves, total, bounds), notes
    raise SettingsError(f"objective must be FixedBudget, TargetRoas or MarginalFloor, got {type(objective).__name__}")


def _hurdle(curves: CurveSet, alloc: Allocation) -> float:
    """The marginal return the plan's money earns elsewhere: the multiplier, or, when every campaign is
    held by a bound, the middle of the range the bounds leave it (geometric mean of its limits)."""
    if np.isfinite(alloc.lam):
        return float(alloc.lam)
    b = alloc.budgets
    m = curves.marginal(b)
    free = alloc.hi > alloc.lo
    low = m[free & alloc.at_lo & ~alloc.at_hi & np.isfinite(m)]
    high = m[free & alloc.at_hi & ~alloc.at_lo & np.isfinite(m)]
    lower = float(low.max()) if low.size else None
    upper = float(high.min()) if high.size else None
    if lower is not None and upper is not None and lower > 0 and upper > 0:
        return float(np.sqrt(lower * upper))
    if lower is not None or upper is not None:
        return float(lower if lower is not None else upper)
    finite = m[np.isfinite(m)]
    return float(np.median(finite)) if finite.size else 0.0


@dataclass(frozen=True)
class Extras:
    """What does not depend on the budget split: advice and bid suggestions for one target.

    Computed by `extras` (or inside `solve`); a caller that re-solves often for the same target
    (a total-budget slider) computes it once and passes it to `solve`.
    """

    guide: float | None
    advice: pd.DataFrame
    bids: pd.DataFrame | None
    bid_changes: tuple[DraftChange, ...]


def guide_of(problem: Problem, objective: Objective) -> float | None:
    """The ROAS bids and advice aim at: the objective's target, else the settings' guide."""
    return objective.target if isinstance(objective, TargetRoas) else problem.settings.guide_roas


def extras(problem: Problem, guide: float | None, bids=None) -> Extras:
    """Advice (pause, targeting, creative) and, with today's ``bids`` and a ``guide``, bid changes."""
    advice = advise(problem.rows, target_roas=guide, entity_type=problem.level.level)
    bid_table, bid_changes = None, []
    if bids is not None and guide is not None:
        paused = {problem.curves.keys["external_id"].iloc[i] for i in np.flatnonzero(problem.paused)}
        bid_table, bid_changes = _bid_changes(problem, bids, guide, paused)
    return Extras(guide, advice, bid_table, tuple(bid_changes))


def solve(problem: Problem, objective: Objective | None = None, *, bids=None, extra: Extras | None = None) -> Recommendations:
    """Recommendations for one objective over a built `Problem` (see the module docstring).

    ``bids``: today's bids (a frame or mapping as in `AccountState`); bid changes are suggested for
    the entities that have one when a target or guide ROAS is known. ``extra``: advice and bids
    already computed for this problem and target (`extras`). Raises `InfeasibleError` when the
    objective cannot be met within the bounds (a total budget outside `Problem.feasible_total`).
    """
    objective = objective or FixedBudget()
    settings, curves = problem.settings, problem.curves
    current, bounds = problem.current, problem.bounds
    names = curves.keys["entity_name"].astype(str).tolist()
    notes = list(problem.notes)
    alloc, more = _allocate(problem, objective, bounds)
    # budget moves too small to propose, or that the curves do not favour, are held at today's budget
    # and the rest re-solved around them (a fixed total stays exactly the total)
    held = problem.locked.copy()
    inside = (current >= bounds.lo - 1e-9) & (current <= bounds.hi + 1e-9)
    refused = np.full(current.size, np.nan)  # the change (%) or model confidence a held campaign was refused for
    why_held = np.full(current.size, "", dtype=object)
    for attempt in range(9):
        b = alloc.budgets
        moved = ~np.isclose(b, current, rtol=1e-12, atol=1e-9)
        small = ~held & ~problem.paused & inside & moved & (np.abs(b - current) < settings.min_change * np.maximum(current, 1e-12))
        proposal_d, stated = _round_proposal(problem, alloc, objective)
        new = np.array([float(x) for x in proposal_d])
        hurdle = _hurdle(curves, replace(alloc, budgets=new))
        model = model_confidence(curves, current, new, hurdle, problem.plausible, problem.policy.slope_spread)
        weak = ~held & ~problem.paused & inside & moved & ~small & (model < settings.min_confidence)
        if not (small | weak).any() or attempt == 8:
            break
        trial = held | small | weak
        lo = np.where(trial, current, bounds.lo)
        hi = np.where(trial, current, bounds.hi)
        try:
            alloc, more = _allocate(problem, objective, Bounds(lo, hi, bounds.lo_sources, bounds.hi_sources))
        except InfeasibleError:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            refused = np.where(small, 100.0 * (b - current) / current, np.where(weak, model, refused))
        why_held = np.where(small, "min_change", np.where(weak, "low_confidence", why_held))
        held = trial
    notes += more
    if alloc.note:
        notes.append(alloc.note)
    alloc = replace(alloc, budgets=new, values=curves.predict(new))
    assessment = assess_budget_changes(curves, current, new, hurdle, policy=problem.policy, labels=names,
                                       plausible=problem.plausible)
    table = _budget_table(problem, alloc, assessment, hurdle)
    held_code, held_text = held_reasons(problem, table, why_held, refused)
    table["held"], table["held_because"] = held_code, held_text
    notes += held_notes(table, refused, settings)
    changes = _pause_changes(problem) + _budget_changes(problem, table, proposal_d, hurdle, alloc.objective)
    if extra is None:
        extra = extras(problem, guide_of(problem, objective), bids)
    changes += list(extra.bid_changes)
    return Recommendations(
        curves=curves, allocation=alloc, budget_table=table, changes=changes, advice=extra.advice, bids=extra.bids,
        plan_confidence=assessment.plan, notes=notes, assessment=assessment,
        proposal=dict(zip(curves.labels, proposal_d)), stated_total=stated, level=problem.level, metric=problem.metric,
        objective=objective, feasible_total=problem.feasible_total, hurdle=hurdle,
    )


#: Why a campaign keeps today's budget (``budget_table["held"]``), with its plain label.
HELD = {
    "locked": "locked",
    "min_change": "move below the minimum change",
    "low_confidence": "the curves do not favour moving it",
    "limits": "no room within its limits",
    "evidence": "at the edge of the observed spend",
    "optimum": "already at the best budget",
}


def held_reasons(problem: Problem, table: pd.DataFrame, why_held: np.ndarray, refused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code, sentence) per campaign that keeps today's budget ("" for the others): a key of `HELD` and
    why, with the numbers. ``why_held``/``refused``: the rules `solve` applied (min change, min
    confidence) and the change % / model confidence each refused; the rest follows from the bounds."""
    settings, bounds = problem.settings, problem.bounds
    cur, new = table["current_budget"].to_numpy(float), table["new_budget"].to_numpy(float)
    step = money_step(problem.currency or "USD", _platforms(problem.curves))  # budgets are rounded to it
    places, unit = _places(step), float(step)
    kept = np.round(new, places) == np.round(cur, places)
    e_lo, e_hi = evidence_bounds(problem.curves, problem.policy.margin)
    capped = settings.extrapolation == "cap"
    pinned = np.abs(bounds.hi - bounds.lo) < unit
    at_hi = table["at_hi"].to_numpy(bool) & (np.abs(bounds.hi - cur) < unit)
    at_lo = table["at_lo"].to_numpy(bool) & (np.abs(bounds.lo - cur) < unit)
    at_edge = capped & ((at_hi & (cur >= e_hi - unit)) | (at_lo & (cur <= e_lo + unit)))
    code = np.where(kept & ~problem.paused, why_held, "").astype(object)
    code = np.where(kept & problem.locked, "locked", code)
    sub_unit = (code == "min_change") & (np.abs(refused) * cur / 100.0 < unit)  # a move smaller than a cent is no move:
    code = np.where(sub_unit, "", code)                                          # the bounds say why it stays
    rest = kept & (code == "") & ~problem.paused
    code = np.where(rest & pinned, "limits", np.where(rest & at_edge, "evidence",
                    np.where(rest & (at_hi | at_lo), "limits", np.where(rest, "optimum", code))))
    text = np.full(cur.size, "", dtype=object)
    for i in np.flatnonzero(code != ""):  # held campaigns only, for the words
        c = code[i]
        if c == "locked":
            text[i] = "locked: keeps today's budget"
        elif c == "min_change":
            text[i] = f"the move it would get ({refused[i]:+.2f}%) is below the {settings.min_change:.0%} minimum change"
        elif c == "low_confidence":
            text[i] = (f"the curves do not favour moving it: model confidence {refused[i]:.0f} is below the minimum "
                       f"{settings.min_confidence:g}")
        elif c == "evidence":
            text[i] = ("the curve favours " + ("more" if at_hi[i] else "less") + ", but today's budget is already at the "
                       + ("highest" if at_hi[i] else "lowest") + f" spend observed (with its {problem.policy.margin:.0%} margin)")
        elif c == "limits":
            text[i] = ("its limits leave no room (min = max budget, or a max change of 0)" if pinned[i] else
                       f"the curve favours {'more' if at_hi[i] else 'less'}, but its {'max' if at_hi[i] else 'min'} budget is "
                       "today's")
        else:
            text[i] = "today's budget is already where the curves put it"
    return code, text


def held_notes(table: pd.DataFrame, refused: np.ndarray, settings: RecommendSettings) -> list[str]:
    """The notes that name the campaigns a rule kept at today's budget, from ``table["held"]`` and the
    model confidence each refused (for people; programs read the column)."""
    names = table["entity_name"].astype(str).to_numpy()
    code = table["held"].to_numpy()
    out = []
    weak = np.flatnonzero(code == "low_confidence")
    if weak.size:
        said = [f"{names[i]} ({refused[i]:.0f})" for i in weak]
        out.append(f"kept at today's budget, the curves do not favour moving them (model confidence below "
                   f"{settings.min_confidence:g}): {', '.join(said)}")
    small = np.flatnonzero(code == "min_change")
    if small.size:
        out.append(f"kept at today's budget, the move is below the {settings.min_change:.0%} minimum change: "
                   f"{', '.join(names[small])}")
    return out


def _round_proposal(problem: Problem, alloc: Allocation, objective: Objective) -> tuple[list[Decimal], Decimal]:
    """Budgets in currency units that add up to exactly the stated total.

    Unchanged campaigns keep today's budget to the cent; the others share what is left by largest
    remainder, so a fixed total budget is met exactly (other objectives state the rounded sum).
    """
    cur, where = problem.currency, _platforms(problem.curves)
    b = alloc.budgets
    today = [quantize_money(to_decimal(float(x)), cur, where) for x in problem.current]
    same = np.isclose(b, problem.current, rtol=1e-12, atol=1e-9)
    out = [today[i] if same[i] else None for i in range(b.size)]
    free = [i for i in range(b.size) if not same[i]]
    if isinstance(objective, FixedBudget):
        total = quantize_money(to_decimal(float(alloc.total_budget)), cur, where)
        rest = total - sum((today[i] for i in range(b.size) if same[i]), Decimal(0))
        try:
            split = split_exact([max(float(b[i]), 0.0) for i in free], rest, cur, where) if free else []
        except ValueError:  # held budgets were rounded away from the exact total: round each instead
            split = [quantize_money(to_decimal(float(b[i])), cur, where) for i in free]
    else:
        split = [quantize_money(to_decimal(max(float(b[i]), 0.0)), cur, where) for i in free]
    for i, v in zip(free, split):
        out[i] = v
    return out, sum(out, Decimal(0))


def _budget_table(problem: Problem, alloc: Allocation, assessment: BudgetAssessment, hurdle: float) -> pd.DataFrame:
    curves = problem.curves
    b0, b1 = np.asarray(problem.current, dtype=float), alloc.budgets
    v0, v1 = curves.predict(b0), curves.predict(b1)
    a = assessment.table
    e_lo, e_hi = evidence_bounds(curves, 0.0)
    diag = curves.diagnostics
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = {
            "current_budget": b0,
            "budget_source": np.where(problem.known, "platform budget", "mean spend, last 7 days"),
            "lo": alloc.lo, "hi": alloc.hi, "new_budget": b1,
            "change_pct": np.where(b0 > 0, np.round((b1 - b0) / b0 * 100, 6) + 0.0, np.nan),
            "value_now": v0, "value_new": v1,
            "roas_now": np.where(b0 > 0, v0 / b0, np.nan), "roas_new": np.where(b1 > 0, v1 / b1, np.nan),
            "marginal_now": curves.marginal(b0), "marginal_new": curves.marginal(b1),
            "at_lo": alloc.at_lo, "at_hi": alloc.at_hi, "locked": problem.locked, "paused": problem.paused,
            "confidence": a["confidence"].to_numpy(float), "model_confidence": a["model_confidence"].to_numpy(float),
            "extrapolated": a["extrapolated"].to_numpy(bool), "fit": a["fit"].to_numpy(),
            "confidence_limit": a["limit"].to_numpy(), "confidence_driver": a["driver"].to_numpy(),
            "confidence_why": a["why"].to_numpy(), "breakeven_slope": a["breakeven_slope"].to_numpy(float),
            "slope": a["slope"].to_numpy(float), "slope_sd": a["slope_sd"].to_numpy(float),
            "observed_min": e_lo, "observed_max": e_hi, "pooled": diag["pooled"].to_numpy(),
            "r2": diag["r2"].to_numpy(float) if "r2" in diag.columns else np.full(curves.n, np.nan),
            "lack_of_fit_p": a["lack_of_fit_p"].to_numpy(float), "days": a["days"].to_numpy(float),
            "warnings": diag["warnings"].to_numpy(),
        }
    keys = curves.keys.reset_index(drop=True)
    return pd.concat([keys, pd.DataFrame(cols)], axis=1)


def _pause_changes(problem: Problem) -> list[DraftChange]:
    out = []
    labels = problem.curves.labels
    threshold = problem.settings.confidence_threshold
    for row in problem.pause_advice.itertuples(index=False):
        label = f"{row.platform}:{row.external_id}"
        if label not in labels or not problem.paused[labels.index(label)]:
            continue
        out.append(DraftChange(
            platform=row.platform, account_id=row.account_id, entity_type=row.entity_type, external_id=row.external_id,
            entity_name=row.entity_name, field="status", old_value=problem.statuses.get(label, "ACTIVE"), new_value="PAUSED",
            currency=row.currency, reason=row.reason, confidence=round(float(row.confidence), 1),
            auto_approve=bool(row.confidence >= threshold)))
    return out


def _budget_changes(problem: Problem, table: pd.DataFrame, proposal: list[Decimal], hurdle: float, objective: str) -> list[DraftChange]:
    out = []
    threshold = problem.settings.confidence_threshold
    for i, k in enumerate(table.to_dict("records")):  # one draft per campaign whose budget moves (campaigns, not events)
        if problem.paused[i]:
            continue
        old_d = quantize_money(to_decimal(float(problem.current[i])), k["currency"], _platforms(problem.curves))
        new_d = proposal[i]
        if new_d == old_d:
            continue
        conf = float(k["confidence"]) if np.isfinite(k["confidence"]) else 0.0
        out.append(DraftChange(
            platform=k["platform"], account_id=k["account_id"], entity_type=k["entity_type"], external_id=k["external_id"],
            entity_name=k["entity_name"], field="budget", old_value=old_d, new_value=new_d, currency=k["currency"],
            reason=_budget_reason(k, hurdle, objective, problem.metric, problem.settings.min_change),
            confidence=round(conf, 1), auto_approve=bool(conf >= threshold)))
    return out


def _bid_changes(problem: Problem, bids, guide: float, paused_ids: set[str]) -> tuple[pd.DataFrame, list[DraftChange]]:
    settings = problem.settings
    table = suggest_bids(problem.performance, guide, current_bids=bids, max_change=settings.max_change or np.inf)
    have = np.isfinite(table["current_bid"].to_numpy())
    bconf = bid_change_confidence(
        table["alpha"], table["beta"], table["value_per_conversion"], guide,
        np.where(have, table["current_bid"], 0.0), table["bid"], n_draws=settings.n_draws, seed=settings.seed,
    )
    table["confidence"] = bconf
    out = []
    for i in np.flatnonzero(have):
        r = table.iloc[i]
        if r["external_id"] in paused_ids:
            continue
        where = None if platform_refusal(r["currency"], r["platform"]) else r["platform"]
        old_d = quantize_money(to_decimal(float(r["current_bid"])), r["currency"], where)
        new_d = quantize_money(to_decimal(float(r["bid"])), r["currency"], where)
        if new_d == old_d or abs(r["bid"] - r["current_bid"]) < settings.min_change * r["current_bid"]:
            continue
        c = float(bconf[i]) if np.isfinite(bconf[i]) else 0.0
        out.append(DraftChange(
            platform=r["platform"], account_id=r["account_id"], entity_type=r["entity_type"], external_id=r["external_id"],
            entity_name=r["entity_name"], field="bid", old_value=old_d, new_value=new_d, currency=r["currency"],
            reason=_bid_reason(r, guide, settings.max_change, problem.metric), confidence=round(c, 1),
            auto_approve=c >= settings.confidence_threshold))
    return table, out


def recommend(performance: pd.DataFrame, objective: Objective | None = None, *, settings: RecommendSettings | None = None,
              limits: Limits | None = None, account: AccountState | None = None, curves: CurveSet | None = None,
              policy: ConfidencePolicy | None = None, **keywords) -> Recommendations:
    """Optimize and produce draft changes: `build_problem` then `solve`.

    Parameters
    ----------
    performance : DataFrame
        Daily performance in the canonical columns (one currency; a mix raises
        `core.optimize.currency.MixedCurrencyError` naming the currencies).
    objective : FixedBudget | TargetRoas | MarginalFloor, default FixedBudget() (today's total)
    settings : RecommendSettings
    limits : Limits
        Per-campaign min/max budgets and locks.
    account : AccountState
        Today's budgets, bids, statuses (and entities with their parents).
    curves : CurveSet, optional
        Already fitted curves of the same rows (skips fitting).
    **keywords
        The keyword form (``total_budget=``, ``target_roas=``, ``marginal_floor=``, ``max_change=``,
        ``current_budgets=``, ...; see `keyword_request`). Not together with the typed objects.

    Returns
    -------
    Recommendations
    """
    if keywords:
        if objective is not None or settings is not None or limits is not None or account is not None:
            raise SettingsError("give either the typed objective/settings/limits/account or the keyword form, not both")
        objective, settings, limits, account = keyword_request(**keywords)
    account = account or AccountState()
    problem = build_problem(performance, settings=settings, limits=limits, account=account, curves=curves, policy=policy)
    return solve(problem, objective, bids=account.bids)


def _budget_reason(k: dict, hurdle: float, objective: str, metric: Metric, min_change: float) -> str:
    up = k["new_budget"] > k["current_budget"]
    what = metric.label

    def money(x: float) -> str:  # at the campaign's currency's precision: KWD 12.345, JPY 1,500
        return format_money(x, k["currency"])

    parts = [
        f"{'Raise' if up else 'Cut'} the daily budget {money(k['current_budget'])} -> {money(k['new_budget'])} "
        f"({k['change_pct']:+.0f}%)" if np.isfinite(k["change_pct"]) else f"Set the daily budget to {money(k['new_budget'])}"
    ]
    if metric.money:
        parts.append(
            f"each extra unit here returns {k['marginal_now']:.2f} today against {hurdle:.2f} for the plan's last unit, "
            f"so money {'moves here' if up else 'earns more elsewhere'}")
        parts.append(f"predicted value {money(k['value_now'])} -> {money(k['value_new'])} a day "
                     f"(ROAS {k['roas_now']:.2f} -> {k['roas_new']:.2f})")
    else:
        m_now = metric.efficiency(k["marginal_now"])
        m_plan = metric.efficiency(hurdle)
        parts.append(
            f"one more {metric.unit} here costs {money(m_now)} today against {money(m_plan)} for the plan's last one, "
            f"so money {'moves here' if up else 'earns more elsewhere'}")
        parts.append(f"predicted {what} {k['value_now']:,.1f} -> {k['value_new']:,.1f} a day "
                     f"(cost per {metric.unit} {money(metric.efficiency(k['roas_now']))} -> {money(metric.efficiency(k['roas_new']))})")
    if k["at_hi"] and up or k["at_lo"] and not up:
        parts.append("held by the max change / budget limits / the edge of the observed spend")
    if k["budget_source"] != "platform budget":
        parts.append("today's budget is unknown; the mean daily spend of the last 7 days stands in for it")
    if k["confidence_why"]:
        parts.append(f"confidence {k['confidence']:.0f}: {k['confidence_why']}")
    return "; ".join(parts) + f" [{objective}]."


def _bid_reason(r: pd.Series, target: float, max_change, metric: Metric) -> str:
    def money(x: float) -> str:  # at the currency's precision: KWD 0.123, JPY 45
        return format_money(x, r["currency"])

    head = f"{'Raise' if r['bid'] > r['current_bid'] else 'Lower'} the bid {money(r['current_bid'])} -> {money(r['bid'])}: "
    if metric.money:
        txt = head + (
            f"conversion rate {r['cvr']:.2%} (raw {r['cvr_raw']:.2%} on {r['clicks']:,.0f} clicks, shrunk toward the account's "
            f"{r['prior_cvr']:.2%}) x value per conversion {money(r['value_per_conversion'])} / target ROAS {target:g} "
            f"= {money(r['bid_target'])}")
    else:
        txt = head + (
            f"{metric.unit}s per click {r['cvr']:.2%} (raw {r['cvr_raw']:.2%} on {r['clicks']:,.0f} clicks, shrunk toward the "
            f"account's {r['prior_cvr']:.2%}) x target cost per {metric.unit} {money(metric.efficiency(target))} = {money(r['bid_target'])}")
    if r["bounded"] and max_change:
        txt += f"; limited to a {max_change:.0%} change"
    return txt + "."


def budgets_as_decimal(curves: CurveSet, budgets: np.ndarray) -> dict[str, Decimal]:
    """Budgets per label as `Decimal` rounded to each campaign's money step (currency and platform)."""
    cur, where = curves.keys["currency"].tolist(), curves.keys["platform"].tolist()
    return {lab: quantize_money(to_decimal(float(b)), c, None if platform_refusal(c, p) else p)
            for lab, b, c, p in zip(curves.labels, budgets, cur, where)}


def _places(step: Decimal) -> int:
    """Decimals of a money step (a power of ten): 2 for 0.01, 0 for 1, 3 for 0.001."""
    return max(0, -step.as_tuple().exponent)


def _platforms(curves: CurveSet) -> list[str]:
    """The platforms the campaigns of ``curves`` run on that can hold their currency: budgets move by the
    coarsest step among them (one a platform cannot hold is refused by name when the plan is reviewed)."""
    keys = curves.keys
    if "platform" not in keys.columns or not len(keys):
        return []
    currency = str(keys["currency"].iloc[0])
    return [p for p in sorted(set(keys["platform"].astype(str))) if not platform_refusal(currency, p)]

