"""Recommendations: allocation + bids + advice -> a list of `core.changes.DraftChange`.

`recommend` runs the whole optimizer on a performance frame: fit curves, bound and allocate the
budget (total budget, target ROAS or marginal ROAS floor), score each budget change's confidence,
suggest bids where today's bids are known, collect advice, and turn it all into draft changes with
old and new values as `Decimal` (rounded to the currency's unit), a plain reason and a confidence.
``auto_approve`` is set where confidence >= the user's threshold.

Today's budget per campaign comes from ``current_budgets`` (e.g. `current_budgets_from_entities`,
read from ``ad_entities``); a campaign without a known budget uses its mean daily spend over the last
7 days of the data, and its reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.changes import DraftChange
from core.money import quantize_money, to_decimal
from core.optimize.advice import advise
from core.optimize.allocate import (
    Allocation,
    Bounds,
    allocate,
    allocate_for_marginal_floor,
    allocate_for_target_roas,
    build_bounds,
)
from core.optimize.bids import _lookup, suggest_bids
from core.optimize.currency import require_one_currency
from core.optimize.confidence import bid_change_confidence, budget_change_confidence, plan_confidence
from core.response import CurveSet, fit_curves
from core.store.db import DEFAULT_WORKSPACE, transaction
from core.store.models import AdEntity


@dataclass
class Recommendations:
    """Everything the optimizer concluded, for display and for freezing into a change plan."""

    curves: CurveSet
    allocation: Allocation
    budget_table: pd.DataFrame
    changes: list[DraftChange]
    advice: pd.DataFrame
    bids: pd.DataFrame | None = None
    plan_confidence: float = float("nan")
    notes: list[str] = field(default_factory=list)


def current_budgets_from_entities(
    engine: Engine, *, workspace_id: str = DEFAULT_WORKSPACE, entity_type: str | None = None
) -> pd.DataFrame:
    """Today's budgets, bids and statuses from ``ad_entities``: platform, external_id, entity_type,
    daily_budget, bid, status, currency (budgets/bids as float, NaN where unknown)."""
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
                "daily_budget": float(r.daily_budget) if r.daily_budget is not None else np.nan,
                "bid": float(r.bid) if r.bid is not None else np.nan,
                "status": r.status,
                "currency": r.currency,
            }
            for r in rows
        ]
    cols = ["platform", "account_id", "entity_type", "external_id", "daily_budget", "bid", "status", "currency"]
    return pd.DataFrame(data, columns=cols)


def _mask(curves: CurveSet, selected) -> np.ndarray:
    """Boolean mask over campaigns from labels ``platform:external_id`` or plain external ids."""
    if selected is None:
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


def recommend(
    performance: pd.DataFrame,
    *,
    total_budget: float | None = None,
    target_roas: float | None = None,
    marginal_floor: float | None = None,
    guide_roas: float | None = None,
    max_change: float | None = 0.3,
    min_budget=0.0,
    max_budget=np.inf,
    locked=None,
    current_budgets=None,
    current_bids=None,
    statuses=None,
    confidence_threshold: float = 80.0,
    model: str = "power",
    curves: CurveSet | None = None,
    min_change: float = 0.01,
    n_draws: int = 400,
    seed: int = 0,
) -> Recommendations:
    """Optimize and produce draft changes.

    Objective: with ``marginal_floor`` the largest budget whose marginal ROAS stays above it; with
    ``target_roas`` (and no ``total_budget``) the largest budget reaching that ROAS; with both
    ``target_roas`` and ``total_budget`` the target-ROAS budget capped at ``total_budget``; otherwise
    the best split of ``total_budget`` (default: today's total). ``current_budgets``/``current_bids``:
    a frame (platform, external_id, daily_budget / bid) or a mapping keyed by ``(platform,
    external_id)``, ``"platform:external_id"`` or external id. ``locked``: labels or external ids.
    Budget changes smaller than ``min_change`` (fraction) are not proposed. ``guide_roas`` is the
    ROAS the bids and targeting advice aim at when the objective itself has no target (the plain
    budget split); ``target_roas`` takes its place when given.

    The campaigns must share one currency: a mix raises `core.optimize.currency.MixedCurrencyError`
    naming the currencies (filter first, e.g. `core.optimize.session.filter_to_currency`).
    """
    require_one_currency(performance)
    guide = target_roas if target_roas is not None else guide_roas
    curves = curves if curves is not None else fit_curves(performance, model)
    require_one_currency(curves, "the response curves")
    n = curves.n
    notes: list[str] = []
    known = _lookup(curves.keys, current_budgets, "daily_budget") if current_budgets is not None else np.full(n, np.nan)
    fallback = ~np.isfinite(known)
    current = np.where(fallback, curves.diagnostics["last7_mean_spend"].to_numpy(), known)
    if fallback.any():
        notes.append(f"{int(fallback.sum())} campaign(s) without a known budget use their mean daily spend of the last 7 days")
    lock = _mask(curves, locked)
    user_min = np.nan_to_num(np.asarray(_per_campaign(curves, min_budget, "min_budget"), dtype=float), nan=0.0)
    bounds = build_bounds(
        n,
        current=current,
        min_budget=user_min,
        max_budget=np.nan_to_num(np.asarray(_per_campaign(curves, max_budget, "max_budget"), dtype=float), nan=np.inf),
        max_change=max_change,
        locked=lock,
        labels=curves.labels,
    )
    advice = advise(performance, target_roas=guide)
    status_now = _status_lookup(curves, statuses)
    pause_labels = {
        f"{r.platform}:{r.external_id}" for r in advice[advice["kind"] == "pause"].itertuples(index=False)
    } - {lab for lab, st in status_now.items() if st == "PAUSED"}
    candidates = pd.Series(curves.labels).isin(pause_labels).to_numpy() & ~lock
    kept = candidates & (user_min > 0)  # the user's minimum budget outranks the advice to pause
    if kept.any():
        names = ", ".join(np.asarray(curves.labels)[kept])
        notes.append(f"not pausing {names}: a minimum budget is set for it; the pause advice is listed as advice only")
    pause_mask = candidates & ~kept
    if pause_mask.any():  # campaigns to pause get no budget; their money is reallocated
        bounds = Bounds(np.where(pause_mask, 0.0, bounds.lo), np.where(pause_mask, 0.0, bounds.hi), bounds.lo_sources, bounds.hi_sources)
        notes.append(f"{int(pause_mask.sum())} campaign(s) recommended for pausing get no budget in the allocation")
    if marginal_floor is not None:
        alloc = allocate_for_marginal_floor(curves, marginal_floor, bounds)
    elif target_roas is not None and total_budget is None:
        alloc = allocate_for_target_roas(curves, target_roas, bounds)
    elif target_roas is not None:
        alloc = allocate_for_target_roas(curves, target_roas, bounds)
        if alloc.total_budget > total_budget:
            alloc = allocate(curves, total_budget, bounds)
            notes.append(f"the budget cap {total_budget:,.2f} binds before ROAS falls to the target {target_roas:g}")
    else:
        alloc = allocate(curves, float(current.sum()) if total_budget is None else total_budget, bounds)
    if alloc.note:
        notes.append(alloc.note)
    new = alloc.budgets
    hurdle = alloc.lam if np.isfinite(alloc.lam) else float(np.nanmedian(curves.marginal(new)))
    conf = budget_change_confidence(curves, current, new, hurdle, n_draws=n_draws, seed=seed)
    plan_conf = plan_confidence(curves, current, new, hurdle, n_draws=n_draws, seed=seed)
    table = _budget_table(curves, current, fallback, alloc, conf, lock)
    changes: list[DraftChange] = []

    paused = set()
    for row in advice[advice["kind"] == "pause"].itertuples(index=False):
        label = f"{row.platform}:{row.external_id}"
        old_status = status_now.get(label, "ACTIVE")
        if label not in pause_labels or not pause_mask[curves.labels.index(label)]:
            continue
        paused.add(label)
        changes.append(
            DraftChange(
                row.platform, row.account_id, row.entity_type, row.external_id, row.entity_name, "status",
                old_status, "PAUSED", row.currency, row.reason, round(float(row.confidence), 1),
                bool(row.confidence >= confidence_threshold),
            )
        )
    labels = curves.labels
    for i in range(n):  # one draft per campaign whose budget moves (a loop over campaigns, not events)
        if labels[i] in paused:
            continue
        cur_txt = table.loc[i, "currency"]
        old_d = quantize_money(to_decimal(float(current[i])), cur_txt)
        new_d = quantize_money(to_decimal(float(new[i])), cur_txt)
        if new_d == old_d or abs(new[i] - current[i]) < min_change * max(current[i], 1e-12):
            continue
        k = table.loc[i]
        changes.append(
            DraftChange(
                k["platform"], k["account_id"], k["entity_type"], k["external_id"], k["entity_name"], "budget",
                old_d, new_d, cur_txt, _budget_reason(k, hurdle, alloc.objective),
                round(float(conf[i]), 1) if np.isfinite(conf[i]) else 0.0,
                bool(np.isfinite(conf[i]) and conf[i] >= confidence_threshold),
            )
        )

    bids = None
    if current_bids is not None and guide is not None:
        bids = suggest_bids(performance, guide, current_bids=current_bids, max_change=max_change or np.inf)
        have = np.isfinite(bids["current_bid"].to_numpy())
        bconf = bid_change_confidence(
            bids["alpha"], bids["beta"], bids["value_per_conversion"], guide,
            np.where(have, bids["current_bid"], 0.0), bids["bid"], n_draws=n_draws, seed=seed,
        )
        bids["confidence"] = bconf
        for i in np.flatnonzero(have):
            r = bids.iloc[i]
            if f"{r['platform']}:{r['external_id']}" in paused:
                continue
            old_d = quantize_money(to_decimal(float(r["current_bid"])), r["currency"])
            new_d = quantize_money(to_decimal(float(r["bid"])), r["currency"])
            if new_d == old_d or abs(r["bid"] - r["current_bid"]) < min_change * r["current_bid"]:
                continue
            c = float(bconf[i]) if np.isfinite(bconf[i]) else 0.0
            changes.append(
                DraftChange(
                    r["platform"], r["account_id"], r["entity_type"], r["external_id"], r["entity_name"], "bid",
                    old_d, new_d, r["currency"], _bid_reason(r, guide, max_change), round(c, 1), c >= confidence_threshold,
                )
            )
    return Recommendations(curves, alloc, table, changes, advice, bids, plan_conf, notes)


def _status_lookup(curves: CurveSet, statuses) -> dict[str, str]:
    if statuses is None:
        return {}
    if isinstance(statuses, pd.DataFrame):
        return dict(zip(statuses["platform"].astype(str) + ":" + statuses["external_id"].astype(str), statuses["status"].astype(str)))
    out = {}
    for k, v in dict(statuses).items():
        out[f"{k[0]}:{k[1]}" if isinstance(k, tuple) else str(k)] = str(v)
    return out


def _budget_table(curves: CurveSet, current, fallback, alloc: Allocation, conf, lock) -> pd.DataFrame:
    t = curves.keys.copy()
    b0, b1 = np.asarray(current, dtype=float), alloc.budgets
    v0, v1 = curves.predict(b0), curves.predict(b1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t["current_budget"] = b0
        t["budget_source"] = np.where(fallback, "mean spend, last 7 days", "platform budget")
        t["lo"], t["hi"] = alloc.lo, alloc.hi
        t["new_budget"] = b1
        t["change_pct"] = np.where(b0 > 0, (b1 - b0) / b0 * 100, np.nan)
        t["value_now"], t["value_new"] = v0, v1
        t["roas_now"] = np.where(b0 > 0, v0 / b0, np.nan)
        t["roas_new"] = np.where(b1 > 0, v1 / b1, np.nan)
        t["marginal_now"] = curves.marginal(b0)
        t["marginal_new"] = curves.marginal(b1)
    t["at_lo"], t["at_hi"] = alloc.at_lo, alloc.at_hi
    t["locked"] = lock
    t["confidence"] = conf
    t["pooled"] = curves.diagnostics["pooled"].to_numpy()
    t["warnings"] = curves.diagnostics["warnings"].to_numpy()
    return t


def _budget_reason(k: pd.Series, hurdle: float, objective: str) -> str:
    up = k["new_budget"] > k["current_budget"]
    parts = [
        f"{'Raise' if up else 'Cut'} the daily budget {k['current_budget']:,.2f} -> {k['new_budget']:,.2f} "
        f"({k['change_pct']:+.0f}%)" if np.isfinite(k["change_pct"]) else f"Set the daily budget to {k['new_budget']:,.2f}"
    ]
    parts.append(
        f"each extra unit here returns {k['marginal_now']:.2f} today against {hurdle:.2f} for the plan's last unit, "
        f"so money {'moves here' if up else 'earns more elsewhere'}"
    )
    parts.append(f"predicted value {k['value_now']:,.2f} -> {k['value_new']:,.2f} a day (ROAS {k['roas_now']:.2f} -> {k['roas_new']:.2f})")
    if k["at_hi"] and up or k["at_lo"] and not up:
        parts.append("held by the max change / budget limits")
    if k["budget_source"] != "platform budget":
        parts.append("today's budget is unknown; the mean daily spend of the last 7 days stands in for it")
    if k["pooled"]:
        parts.append("little history: the curve borrows its shape from the other campaigns, so confidence is lower")
    return "; ".join(parts) + f" [{objective}]."


def _bid_reason(r: pd.Series, target_roas: float, max_change) -> str:
    txt = (
        f"{'Raise' if r['bid'] > r['current_bid'] else 'Lower'} the bid {r['current_bid']:,.2f} -> {r['bid']:,.2f}: "
        f"conversion rate {r['cvr']:.2%} (raw {r['cvr_raw']:.2%} on {r['clicks']:,.0f} clicks, shrunk toward the account's "
        f"{r['prior_cvr']:.2%}) x value per conversion {r['value_per_conversion']:,.2f} / target ROAS {target_roas:g} "
        f"= {r['bid_target']:,.2f}"
    )
    if r["bounded"] and max_change:
        txt += f"; limited to a {max_change:.0%} change"
    return txt + "."


def budgets_as_decimal(curves: CurveSet, budgets: np.ndarray) -> dict[str, Decimal]:
    """Budgets per label as `Decimal` rounded to each campaign's currency unit."""
    cur = curves.keys["currency"].tolist()
    return {lab: quantize_money(to_decimal(float(b)), c) for lab, b, c in zip(curves.labels, budgets, cur)}
