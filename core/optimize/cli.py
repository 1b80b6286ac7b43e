"""``python -m core optimize PERFORMANCE_FILE --budget B [--level campaign|ad_set|ad_group|auto]
[--metric auto|value|conversions|clicks] [--max-change 0.3] [--target-roas R] [--extrapolation cap|mark]
[--margin 0.2] [--currency C] [--json]``.

Reads any supported performance export through `core.ingest.read_performance`, fits the response
curves at the level asked (ad sets / ad groups rolled up to their campaigns by default), allocates the
budget and returns the text to print: the allocation with each change's confidence, the plan's
confidence and what limits it, and the predicted outcome. A file without conversion value is
optimized for conversions (or clicks), and says so.

Today's budgets are not known from a file, so each entity's mean daily spend of the last 7 days
stands in for it (the max change applies to that). Money of different currencies is never added: a
file with campaigns in several currencies needs ``--currency`` (the error lists them, most spend
first); only that currency's campaigns are optimized.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.ingest import read_performance
from core.optimize.confidence import CONFIDENCE_MEANING
from core.money import format_money, money_places
from core.optimize.currency import currency_spend, filter_currency
from core.optimize.recommend import Recommendations, recommend
from core.optimize.settings import FixedBudget, RecommendSettings, TargetRoas


def read_performance_file(path: str) -> pd.DataFrame:
    """The canonical performance frame of ``path``: any export `core.ingest.read_performance` reads
    (Meta Ads Manager, Google Ads, Fivetran ad reporting, a generic or already-canonical CSV, ...).

    Raises `FileNotFoundError` for a missing file and `core.ingest.IngestError` (a ValueError naming
    the file, row and column) for anything it cannot read as campaign performance.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"performance file not found: {path}")
    return read_performance(p)


def select_currency(perf: pd.DataFrame, currency: str | None, source: str = "the file") -> tuple[pd.DataFrame, str | None]:
    """(the rows in one currency, that currency). With ``currency`` None the data must hold one
    currency; otherwise a ValueError lists the currencies (with their spend) and asks for ``--currency``."""
    spend = currency_spend(perf)
    listing = ", ".join(f"{c or '(none)'} (spend {v:,.2f})" for c, v in spend.items())
    if currency is None:
        if len(spend) > 1:
            raise ValueError(
                f"{source} has campaigns in {len(spend)} currencies: {listing}; budgets in different currencies cannot be "
                f"optimized together: choose one with --currency {spend.index[0]}"
            )
        return perf, (spend.index[0] if len(spend) else None)
    code = str(currency).strip().upper()
    if code not in spend.index:
        raise ValueError(f"--currency {currency}: {source} has no campaigns in {code}; its currencies are {listing}")
    return filter_currency(perf, code), code


def _num(x: float, nd: int = 2):
    """A JSON number rounded to ``nd`` places (None for NaN/inf), never -0.0."""
    return None if x is None or not np.isfinite(x) else round(float(x), nd) + 0.0


def optimize_command(
    performance_file: str, budget: float, max_change: float = 0.3, target_roas: float | None = None, as_json: bool = False,
    currency: str | None = None, level: str = "campaign", metric: str = "auto", extrapolation: str = "cap",
    margin: float = 0.2,
) -> str:
    """Allocate ``budget`` (daily, in ``currency``) over the file's entities at ``level``; with ``target_roas``
    (for a count metric: the target cost per conversion / click) the largest budget up to ``budget`` that
    reaches it. Returns the allocation, confidences and predicted outcome as text or JSON. ``currency``
    picks the campaigns of one currency; it is required when the file mixes currencies (the ValueError
    lists them)."""
    if not budget or budget <= 0:
        raise ValueError(f"--budget must be a positive daily budget, got {budget}")
    perf, code = select_currency(read_performance_file(performance_file), currency, f"performance file {performance_file}")
    settings = RecommendSettings(max_change=max_change, level=level, metric=metric, extrapolation=extrapolation,
                                 extrapolation_margin=margin)
    from core.optimize.metrics import choose_metric

    m = choose_metric(perf, metric)
    if target_roas is not None:
        objective = TargetRoas(target=m.to_ratio(target_roas), cap=float(budget))
    else:
        objective = FixedBudget(total=float(budget))
    rec = recommend(perf, objective, settings=settings)
    return _as_json(rec, code) if as_json else _as_text(rec, code)


def _as_json(rec: Recommendations, code: str | None) -> str:
    t, a, m = rec.budget_table, rec.allocation, rec.metric
    rows = [
        {
            "platform": r.platform,
            "external_id": r.external_id,
            "entity_type": r.entity_type,
            "name": r.entity_name,
            "current_budget": _num(r.current_budget),
            "new_budget": _num(r.new_budget),
            "predicted_value": _num(r.value_new),
            "roas": _num(r.roas_new, 4),
            "marginal_roas": _num(r.marginal_new, 4),
            "confidence": _num(r.confidence, 1),
            "extrapolated": bool(r.extrapolated),
            "fit": r.fit,
            "confidence_limit": r.confidence_limit,
            "confidence_driver": r.confidence_driver,
            "confidence_why": r.confidence_why,
            "r2": _num(r.r2, 3),
            "held": r.held,
            "held_because": r.held_because,
            "warnings": r.warnings,
        }
        for r in t.itertuples(index=False)
    ]
    return json.dumps(
        {
            "objective": a.objective,
            "level": rec.level.level,
            "entities": rec.level.describe(),
            "metric": m.key,
            "total_budget": float(rec.stated_total),
            "predicted_value": _num(a.total_value),
            "roas": _num(a.roas, 4),
            "marginal_roas": _num(rec.hurdle, 4),
            "current_total_budget": _num(float(t["current_budget"].sum())),
            "current_predicted_value": _num(float(t["value_now"].sum())),
            "plan_confidence": _num(rec.plan_confidence, 1),
            "plan_model_confidence": _num(rec.assessment.plan_model, 1) if rec.assessment else None,
            "limiting": [] if rec.assessment is None else [
                {"name": r.label, "confidence": _num(r.confidence, 1), "why": r.why} for r in rec.assessment.limiting.itertuples()],
            "currency": [code] if code else [],
            "notes": rec.notes,
            "campaigns": rows,
        },
        indent=2,
    )


def _as_text(rec: Recommendations, code: str | None) -> str:
    t, a, m = rec.budget_table, rec.allocation, rec.metric
    noun = rec.level.noun
    cur = code or "?"
    eff = m.efficiency_label
    show = pd.DataFrame(
        {
            noun: t["platform"] + ":" + t["external_id"],
            "name": t["entity_name"].str.slice(0, 30),
            "today": t["current_budget"].round(money_places(code)),
            "new": t["new_budget"].round(money_places(code)),
            "change %": np.round(t["change_pct"].to_numpy(float), 1) + 0.0,
            f"{m.label}/day": t["value_new"].round(2),
            eff: np.round(m.efficiency(t["roas_new"].to_numpy(float)), 2),
            f"marginal {eff}": np.round(m.efficiency(t["marginal_new"].to_numpy(float)), 3),
            "confidence": t["confidence"].round(0),
            "extrapolated": np.where(t["extrapolated"], "yes", ""),
            "held": t["held"],
        }
    )
    v_now = float(t["value_now"].sum())
    b_now = float(t["current_budget"].sum())
    unit = f"{cur} a day" if m.money else "a day"
    lam = m.efficiency(rec.hurdle) if np.isfinite(rec.hurdle) else float("nan")
    lines = [
        f"Optimizing {rec.level.describe()}, maximizing {m.label}. Objective: {a.objective} (daily amounts in {cur})",
        show.to_string(index=False),
        "",
        f"Total budget {format_money(rec.stated_total, code)} {cur} a day (today {format_money(b_now, code)})",
        f"{m.value_label} {a.total_value:,.2f} {unit} (today's budgets: {v_now:,.2f}); {eff} {m.efficiency(a.roas):.2f}; "
        f"marginal {eff} {lam:.3f}",
    ]
    if rec.assessment is not None and np.isfinite(rec.plan_confidence):
        lines.append(rec.assessment.plan_reason()[0].upper() + rec.assessment.plan_reason()[1:])
    lines += [f"Note: {n}" for n in rec.notes]
    moved = t["confidence"].notna()
    if moved.any():
        lines += ["", "Why each confidence:"] + [f"  {r.entity_name}: {r.confidence:.0f}, {r.confidence_why}"
                                                 for r in t[moved].itertuples(index=False)]
        lines.append(CONFIDENCE_MEANING)
    return "\n".join(lines)
