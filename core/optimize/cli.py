"""``python -m core optimize PERFORMANCE_FILE --budget B [--max-change 0.3] [--target-roas R] [--currency C] [--json]``.

Reads any supported performance export through `core.ingest.read_performance`, fits the response
curves, allocates the budget and returns the text to print: the allocation table and the predicted
value.
Today's budgets are not known from a file, so each campaign's mean daily spend of the last 7 days
stands in for it (the max change applies to that).
Money of different currencies is never added: a file with campaigns in several currencies needs
``--currency`` (the error lists them, most spend first); only that currency's campaigns are optimized.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.ingest import read_performance
from core.optimize.currency import currency_spend, filter_currency
from core.optimize.recommend import recommend


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


def optimize_command(
    performance_file: str, budget: float, max_change: float = 0.3, target_roas: float | None = None, as_json: bool = False,
    currency: str | None = None,
) -> str:
    """Allocate ``budget`` (daily, in ``currency``) over the file's campaigns; with ``target_roas`` the
    largest budget up to ``budget`` that reaches it. Returns the allocation table and predicted value
    as text or JSON. ``currency`` picks the campaigns of one currency; it is required when the file
    mixes currencies (the ValueError lists them)."""
    if not budget or budget <= 0:
        raise ValueError(f"--budget must be a positive daily budget, got {budget}")
    perf, code = select_currency(read_performance_file(performance_file), currency, f"performance file {performance_file}")
    rec = recommend(perf, total_budget=float(budget), target_roas=target_roas, max_change=max_change)
    t = rec.budget_table
    a = rec.allocation
    v_now = float(t["value_now"].sum())
    b_now = float(t["current_budget"].sum())
    if as_json:
        rows = [
            {
                "platform": r.platform,
                "external_id": r.external_id,
                "name": r.entity_name,
                "current_budget": round(float(r.current_budget), 2),
                "new_budget": round(float(r.new_budget), 2),
                "predicted_value": round(float(r.value_new), 2),
                "roas": None if not np.isfinite(r.roas_new) else round(float(r.roas_new), 4),
                "marginal_roas": None if not np.isfinite(r.marginal_new) else round(float(r.marginal_new), 4),
                "confidence": None if not np.isfinite(r.confidence) else round(float(r.confidence), 1),
                "warnings": r.warnings,
            }
            for r in t.itertuples(index=False)
        ]
        return json.dumps(
            {
                "objective": a.objective,
                "total_budget": round(a.total_budget, 2),
                "predicted_value": round(a.total_value, 2),
                "roas": round(a.roas, 4),
                "marginal_roas": None if not np.isfinite(a.lam) else round(a.lam, 4),
                "current_total_budget": round(b_now, 2),
                "current_predicted_value": round(v_now, 2),
                "currency": [code] if code else [],
                "notes": rec.notes,
                "campaigns": rows,
            },
            indent=2,
        )
    show = pd.DataFrame(
        {
            "campaign": t["platform"] + ":" + t["external_id"],
            "name": t["entity_name"].str.slice(0, 30),
            "today": t["current_budget"].round(2),
            "new": t["new_budget"].round(2),
            "change %": t["change_pct"].round(1),
            "value/day": t["value_new"].round(2),
            "ROAS": t["roas_new"].round(2),
            "marginal ROAS": t["marginal_new"].round(3),
            "confidence": t["confidence"].round(0),
        }
    )
    cur = code or "?"
    lines = [
        f"Objective: {a.objective} (daily amounts in {cur})",
        show.to_string(index=False),
        "",
        f"Total budget {a.total_budget:,.2f} {cur} a day (today {b_now:,.2f})",
        f"Predicted value {a.total_value:,.2f} {cur} a day (today's budgets: {v_now:,.2f}); ROAS {a.roas:.2f}; "
        f"marginal ROAS {a.lam:.3f}",
    ]
    lines += [f"Note: {n}" for n in rec.notes]
    return "\n".join(lines)
