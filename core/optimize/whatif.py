"""What-if: any budget vector -> predicted value, ROAS and marginal ROAS, with uncertainty bands.

Bands come from sampling the curves' parameters (`CurveSet.sample`): the ``level`` central interval
of the predicted value per campaign, and of the total (sums per draw, campaigns independent).

Scenarios (named budget vectors) are stored in the ``scenarios`` table, keyed by campaign label
``platform:external_id`` with budgets as Decimal text, so they survive a browser refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.money import platform_refusal, quantize_money, to_decimal
from core.optimize.currency import require_one_currency
from core.response import CurveSet
from core.store.db import DEFAULT_WORKSPACE, transaction
from core.store.models import Scenario


@dataclass(frozen=True)
class WhatIf:
    """Per-campaign table and totals for one budget vector."""

    table: pd.DataFrame
    total: dict


def budget_vector(curves: CurveSet, budgets) -> np.ndarray:
    """A float budget per campaign from an array (curve order) or a mapping keyed by label or external id.

    Campaigns missing from a mapping get budget 0. Raises ValueError for unknown keys, negative or
    non-finite budgets, or a wrong length.
    """
    if isinstance(budgets, Mapping):
        labels = curves.labels
        pos = {lab: i for i, lab in enumerate(labels)}
        ext = curves.keys["external_id"]
        unique = ~ext.duplicated(keep=False).to_numpy()
        for i in np.flatnonzero(unique):  # a plain external id works when it is unambiguous
            pos.setdefault(ext.iloc[i], int(i))
        b = np.zeros(curves.n)
        unknown = [k for k in budgets if str(k) not in pos]
        if unknown:
            raise ValueError(f"budgets name unknown campaign(s) {unknown[:5]}")
        for key, val in budgets.items():
            b[pos[str(key)]] = float(val)
    else:
        b = np.asarray(budgets, dtype=float)
        if b.shape != (curves.n,):
            raise ValueError(f"budget vector has shape {b.shape}, expected ({curves.n},) (one per campaign)")
    if not np.isfinite(b).all() or (b < 0).any():
        i = int(np.flatnonzero(~np.isfinite(b) | (b < 0))[0])
        raise ValueError(f"budget for {curves.labels[i]} must be a non-negative number, got {b[i]}")
    return b


def what_if(curves: CurveSet, budgets, *, n_draws: int = 300, seed: int = 0, level: float = 0.9) -> WhatIf:
    """Predicted value, ROAS and marginal ROAS per campaign and in total, with a ``level`` band."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    require_one_currency(curves, "the what-if campaigns")
    b = budget_vector(curves, budgets)
    value = curves.predict(b)
    marginal = curves.marginal(b)
    draws = curves.predict(b[None, :], curves.sample(n_draws, seed))
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(draws, q, axis=0)
    tot_lo, tot_hi = np.quantile(draws.sum(axis=1), q)
    with np.errstate(divide="ignore", invalid="ignore"):
        roas = np.where(b > 0, value / b, np.nan)
    table = curves.keys[["platform", "account_id", "external_id", "entity_name", "currency"]].copy()
    table["budget"] = b
    table["value"] = value
    table["value_lo"] = lo
    table["value_hi"] = hi
    table["roas"] = roas
    table["marginal_roas"] = np.where(np.isfinite(marginal), marginal, np.nan)
    B = float(b.sum())
    V = float(value.sum())
    inside = (b > 0) & np.isfinite(marginal)
    total = {
        "budget": B,
        "value": V,
        "value_lo": float(tot_lo),
        "value_hi": float(tot_hi),
        "roas": V / B if B > 0 else float("nan"),
        # marginal ROAS of the total: value of one more unit spread in proportion to the budgets
        "marginal_roas": float((marginal[inside] * b[inside]).sum() / b[inside].sum()) if inside.any() else float("nan"),
        "level": level,
    }
    return WhatIf(table, total)


def compare_scenarios(curves: CurveSet, scenarios: Mapping[str, object], **kwargs) -> pd.DataFrame:
    """Side-by-side: one row per campaign plus a TOTAL row; per scenario budget, value, ROAS, marginal ROAS."""
    if not scenarios:
        raise ValueError("no scenarios to compare")
    base = curves.keys[["platform", "external_id", "entity_name"]].copy()
    total = {"platform": "", "external_id": "TOTAL", "entity_name": "Total"}
    cols = {}
    for name, budgets in scenarios.items():
        w = what_if(curves, budgets, **kwargs)
        for c in ("budget", "value", "roas", "marginal_roas"):
            cols[(name, c)] = np.append(w.table[c].to_numpy(), w.total[c])
    out = pd.concat([base, pd.DataFrame([total])], ignore_index=True)
    wide = pd.DataFrame({f"{n} {c}": v for (n, c), v in cols.items()})
    return pd.concat([out, wide], axis=1)


# ---------------------------------------------------------------------------------------------
# Scenario storage
# ---------------------------------------------------------------------------------------------


@guarded(Role.ANALYST, "scenario.save", target="{name}")
def save_scenario(
    engine: Engine,
    name: str,
    curves: CurveSet,
    budgets,
    *,
    workspace_id: str = DEFAULT_WORKSPACE,
    overwrite: bool = False,
    actor: str | None = None,
) -> int:
    """Store a named budget vector with its predicted summary; returns the scenario id.

    Raises ValueError if the name is empty or taken (unless ``overwrite``).
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("a scenario needs a name")
    b = budget_vector(curves, budgets)
    w = what_if(curves, b)
    currencies, platforms = curves.keys["currency"].tolist(), curves.keys["platform"].tolist()
    stored = {lab: str(quantize_money(to_decimal(float(x)), c, None if platform_refusal(c, p) else p))
              for lab, x, c, p in zip(curves.labels, b, currencies, platforms)}
    summary = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in w.total.items()}
    summary["currency"] = require_one_currency(curves)
    with transaction(engine, workspace_id) as s:
        row = s.scalars(select(Scenario).where(Scenario.name == name)).one_or_none()
        if row is not None and not overwrite:
            raise ValueError(f"a scenario named {name!r} already exists")
        if row is None:
            row = Scenario(name=name, budgets=stored, summary=summary)
            s.add(row)
        else:
            row.budgets, row.summary = stored, summary
        s.flush()
        return int(row.id)


def list_scenarios(engine: Engine, *, workspace_id: str = DEFAULT_WORKSPACE) -> pd.DataFrame:
    """Saved scenarios of the workspace: id, name, created_at, total budget, predicted value, ROAS and
    currency (None for scenarios saved before the currency was recorded)."""
    with transaction(engine, workspace_id) as s:
        rows = s.scalars(select(Scenario).order_by(Scenario.created_at, Scenario.id)).all()
        data = [
            {
                "id": r.id,
                "name": r.name,
                "created_at": r.created_at,
                "budget": (r.summary or {}).get("budget"),
                "value": (r.summary or {}).get("value"),
                "roas": (r.summary or {}).get("roas"),
                "currency": (r.summary or {}).get("currency"),
            }
            for r in rows
        ]
    return pd.DataFrame(data, columns=["id", "name", "created_at", "budget", "value", "roas", "currency"])


def load_scenario(engine: Engine, name: str, *, workspace_id: str = DEFAULT_WORKSPACE) -> dict[str, Decimal]:
    """The stored budgets of scenario ``name`` (label -> Decimal). KeyError if there is none."""
    with transaction(engine, workspace_id) as s:
        row = s.scalars(select(Scenario).where(Scenario.name == name)).one_or_none()
        if row is None:
            raise KeyError(f"no scenario named {name!r}")
        return {k: Decimal(v) for k, v in row.budgets.items()}


@guarded(Role.ANALYST, "scenario.delete", target="{name}")
def delete_scenario(engine: Engine, name: str, *, workspace_id: str = DEFAULT_WORKSPACE, actor: str | None = None) -> bool:
    """Delete scenario ``name``; True if it existed."""
    with transaction(engine, workspace_id) as s:
        row = s.scalars(select(Scenario).where(Scenario.name == name)).one_or_none()
        if row is None:
            return False
        s.delete(row)
        return True
