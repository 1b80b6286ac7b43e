"""What the optimizer maximizes: conversion value, or conversions / clicks when the data has no value.

A performance export without a revenue column (lead generation, app installs, a Google Ads report
without conversion value) still says what spend bought: conversions, or at least clicks. The
optimizer then fits its curves to that count instead, and every figure is labelled as such:
"predicted conversions a day", "cost per conversion" instead of ROAS.

Internally the chosen count takes the place of ``conversion_value`` (`metric_frame`), so curves,
allocation, confidence, bids (``bid = CVR x value per conversion / target``: a target cost per
conversion becomes ``1 / target``) and advice work unchanged; `Metric` carries the words and turns
ratios back into what a user reads.

>>> METRICS["conversions"].efficiency_label
'Cost per conversion'
>>> METRICS["conversions"].efficiency(0.04)
25.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Metric", "METRICS", "MetricError", "choose_metric", "metric_frame", "available_metrics"]


class MetricError(ValueError):
    """The data has nothing the optimizer could maximize; the message says what is missing."""


@dataclass(frozen=True)
class Metric:
    """One optimizable outcome and its words.

    ``key``: the column it comes from; ``unit``: singular noun of one unit ("conversion"); ``money``:
    whether it is an amount of money (then ROAS is the efficiency, else cost per unit).
    """

    key: str
    column: str
    label: str
    unit: str
    money: bool

    @property
    def value_label(self) -> str:
        """'Predicted value' / 'Predicted conversions'."""
        return f"Predicted {self.label}"

    @property
    def efficiency_label(self) -> str:
        return "ROAS" if self.money else f"Cost per {self.unit}"

    @property
    def marginal_label(self) -> str:
        return "Marginal ROAS" if self.money else f"Marginal cost per {self.unit}"

    @property
    def target_label(self) -> str:
        return "Target ROAS" if self.money else f"Target cost per {self.unit}"

    def describe_efficiency(self, ratio: float) -> str:
        """A return-per-money ratio in the metric's words: 'ROAS 2.5' or 'cost per conversion 8.33'."""
        return f"ROAS {float(ratio):.4g}" if self.money else f"cost per {self.unit} {self.efficiency(float(ratio)):.4g}"

    def efficiency(self, ratio):
        """ROAS as it is; for counts, the cost per unit (1 / ratio), NaN where there is no return."""
        if self.money:
            return ratio
        r = np.asarray(ratio, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(r > 0, 1.0 / r, np.nan)
        return float(out) if out.ndim == 0 else out

    def to_ratio(self, shown: float) -> float:
        """A target as the user gives it (ROAS, or cost per unit) -> the return-per-money ratio the engine uses."""
        shown = float(shown)
        if self.money:
            return shown
        if not shown > 0:
            raise MetricError(f"{self.target_label.lower()} must be positive, got {shown:g}")
        return 1.0 / shown


METRICS = {
    "value": Metric("value", "conversion_value", "value", "unit of value", True),
    "conversions": Metric("conversions", "conversions", "conversions", "conversion", False),
    "clicks": Metric("clicks", "clicks", "clicks", "click", False),
}


def _total(performance: pd.DataFrame, column: str) -> float:
    if column not in performance.columns:
        return 0.0
    rows = performance
    if "segment_type" in rows.columns:
        rows = rows[rows["segment_type"].fillna("").astype(str) == ""]
    return float(pd.to_numeric(rows[column], errors="coerce").fillna(0.0).clip(lower=0).sum())


def available_metrics(performance: pd.DataFrame) -> list[str]:
    """The metrics with something recorded, in order of preference (value, conversions, clicks)."""
    return [k for k, m in METRICS.items() if _total(performance, m.column) > 0]


def choose_metric(performance: pd.DataFrame, requested: str = "auto") -> Metric:
    """The metric to optimize: ``requested``, or with "auto" the first the data has (value, conversions, clicks).

    Raises `MetricError` naming what is missing: a requested metric that is zero on every row (and
    what the data has instead), or data with spend and nothing else.
    """
    have = available_metrics(performance)
    if requested != "auto":
        if requested not in METRICS:
            raise MetricError(f"metric must be one of auto, {', '.join(METRICS)}; got {requested!r}")
        if requested in have:
            return METRICS[requested]
        col = METRICS[requested].column
        where = "has no column" if col not in performance.columns else "is zero on every row"
        instead = f"; it has {', '.join(have)}: optimize that instead" if have else ""
        raise MetricError(f"cannot optimize {METRICS[requested].label}: the performance data {where} {col!r}{instead}")
    if not have:
        spend = _total(performance, "spend")
        what = "spend but" if spend > 0 else "neither spend nor"
        raise MetricError(
            f"the performance data has {what} no conversion value, conversions or clicks (columns conversion_value, "
            "conversions, clicks are zero or absent): a response curve needs an outcome to relate spend to; export "
            "the report with conversion value (revenue) or at least conversions"
        )
    return METRICS[have[0]]


def metric_frame(performance: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The performance frame with the metric in ``conversion_value`` (for clicks also in ``conversions``,
    so a bid becomes a cost per click). The value metric returns the frame unchanged."""
    if metric.key == "value":
        return performance
    out = performance.copy()
    out["conversion_value"] = pd.to_numeric(out[metric.column], errors="coerce").fillna(0.0).astype(float)
    if metric.key == "clicks":
        out["conversions"] = out["conversion_value"]
    return out
