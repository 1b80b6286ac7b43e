"""Calibration of attribution credit to lift experiments.

A lift test (geo test, conversion-lift study) measures one channel's incremental conversions over a
period, with an interval. A model's credit for that channel *in that period* is its credit for the
whole run times the share of the channel's converting journeys that converted in the period (the run
stores converting journeys per channel and day; a path-level data set has no dates, so its whole
credit is compared). Several tests of one channel are pooled (their periods' credit and their
results added up).

Calibrated credit of a chosen model: a tested channel's credit is moved to the nearest end of the test's
interval when it lies outside (``factor = clip(credit, low, high) / credit``), so it agrees with the
experiment and moves no more than the experiment demands; every channel without a test is scaled by the
pooled factor of the tested ones (``sum of calibrated / sum of model credit`` over the tests): the
model's error that the experiments revealed, applied consistently. Channels cannot together be credited
with more conversions than happened: if they would be, the untested channels are scaled down to fit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

TEST_COLUMNS = ["id", "channel", "start_date", "end_date", "incremental_conversions", "low", "high", "source", "note"]


class CalibrationError(ValueError):
    """A lift test or a calibration request that cannot be used; the message says why."""


@dataclass(frozen=True)
class LiftResult:
    """One experiment's result (validated)."""

    channel: str
    start_date: dt.date
    end_date: dt.date
    incremental_conversions: float
    low: float
    high: float
    source: str = ""
    note: str = ""

    def validated(self) -> "LiftResult":
        channel = str(self.channel).strip()
        if not channel:
            raise CalibrationError("a lift test needs the channel it measured")
        start, end = _date(self.start_date, "start date"), _date(self.end_date, "end date")
        if end < start:
            raise CalibrationError(f"the test period ends ({end}) before it starts ({start})")
        try:
            point, low, high = float(self.incremental_conversions), float(self.low), float(self.high)
        except (TypeError, ValueError):
            raise CalibrationError("incremental conversions and their interval must be numbers") from None
        if not all(np.isfinite([point, low, high])):
            raise CalibrationError("incremental conversions and their interval must be finite numbers")
        if not low <= point <= high:
            raise CalibrationError(f"the interval must contain the estimate: low {low:g} <= {point:g} <= high {high:g}")
        return LiftResult(channel, start, end, point, low, high, str(self.source or "").strip()[:200], str(self.note or ""))


def _date(value, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise CalibrationError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def channel_members(channel: str, run_channels) -> list[str]:
    """The run's channels a test of ``channel`` covers: the channel itself, or at campaign level every
    ``channel:campaign`` of it."""
    return [c for c in run_channels if c == channel or c.startswith(channel + ":")]


def period_fraction(channel_days: dict | None, members: list[str], start: dt.date, end: dt.date) -> float:
    """Share of the members' converting journeys that converted between ``start`` and ``end`` (inclusive).

    ``channel_days`` maps channel -> {ISO date: converting journeys}; None (a path-level data set) -> 1.
    """
    if channel_days is None:
        return 1.0
    inside = total = 0.0
    for ch in members:
        for day, count in (channel_days.get(ch) or {}).items():
            total += count
            if start.isoformat() <= day <= end.isoformat():
                inside += count
    return inside / total if total > 0 else 0.0


def compare(credit: pd.DataFrame, tests: pd.DataFrame, channel_days: dict | None) -> pd.DataFrame:
    """Each model's credit for each tested channel in the test's period against the test's result.

    ``credit``: a run's tidy table (channel, model, conversions). Returns one row per (test, model):
    test id, channel, period, result and interval, the model's credit in the period, whether it lies
    within the interval, and credit / result.
    """
    rows = []
    run_channels = credit["channel"].astype(str).unique().tolist()
    wide = credit.pivot_table(index="channel", columns="model", values="conversions", aggfunc="sum")
    for t in tests.itertuples(index=False):
        members = channel_members(t.channel, run_channels)
        frac = period_fraction(channel_days, members, _date(t.start_date, "start"), _date(t.end_date, "end"))
        for model in wide.columns:
            period = float(wide.loc[members, model].sum()) * frac if members else float("nan")
            rows.append({"test": int(t.id), "channel": t.channel, "period": f"{t.start_date} – {t.end_date}",
                         "model": model, "credit_in_period": period, "test_result": float(t.incremental_conversions),
                         "low": float(t.low), "high": float(t.high), "period_share": frac,
                         "within_interval": bool(members) and float(t.low) <= period <= float(t.high),
                         "ratio": period / float(t.incremental_conversions) if t.incremental_conversions else float("nan"),
                         "in_run": bool(members)})
    return pd.DataFrame(rows, columns=["test", "channel", "period", "model", "credit_in_period", "test_result", "low",
                                       "high", "period_share", "within_interval", "ratio", "in_run"])


def calibrate(credit: pd.DataFrame, model: str, tests: pd.DataFrame, channel_days: dict | None,
              total_conversions: float) -> tuple[pd.DataFrame, dict]:
    """Calibrated credit of ``model`` (module docstring): per channel the model's and the calibrated
    conversions and value, the factor applied and whether a test set it; plus a summary."""
    rows = credit[credit["model"] == model]
    if rows.empty:
        raise CalibrationError(f"the run has no credit for model {model!r}")
    if tests.empty:
        raise CalibrationError("enter at least one lift test to calibrate to")
    channels = rows["channel"].astype(str).tolist()
    conv = rows["conversions"].to_numpy(dtype=float)
    value = rows["value"].to_numpy(dtype=float)
    index = {c: i for i, c in enumerate(channels)}
    new_conv, new_val = conv.copy(), value.copy()
    factor = np.ones(len(channels))
    tested = np.zeros(len(channels), dtype=bool)
    value_per_conv = value.sum() / conv.sum() if conv.sum() > 0 else 0.0
    tested_model = tested_cal = 0.0
    used, skipped = [], []
    for channel, grp in tests.groupby(tests["channel"].astype(str), sort=True):
        idx = [index[m] for m in channel_members(channel, channels)]
        if not idx:
            skipped.append(channel)
            continue
        members = [channels[i] for i in idx]
        fracs = [period_fraction(channel_days, members, _date(t.start_date, "start"), _date(t.end_date, "end"))
                 for t in grp.itertuples(index=False)]
        model_period = float(conv[idx].sum()) * sum(fracs)
        low, high = float(grp["low"].sum()), float(grp["high"].sum())
        target = min(max(model_period, low), high)
        tested[idx] = True
        if model_period > 0:
            factor[idx] = target / model_period
            new_conv[idx] = conv[idx] * factor[idx]
            new_val[idx] = value[idx] * factor[idx]
        else:  # no positive credit to scale: the interval's nearest end, spread over the members and the periods
            factor[idx] = np.nan
            share = sum(fracs) or 1.0
            new_conv[idx] = target / share / len(idx)
            new_val[idx] = new_conv[idx] * value_per_conv
        tested_model += model_period
        tested_cal += target
        used.append(channel)
    if not used:
        raise CalibrationError(f"no tested channel is in this run (tests of: {', '.join(skipped)}; the run's channels: "
                               f"{', '.join(channels)})")
    pooled = tested_cal / tested_model if tested_model > 0 else 1.0
    new_conv[~tested] = conv[~tested] * pooled
    new_val[~tested] = value[~tested] * pooled
    factor[~tested] = pooled
    capped = False
    over = new_conv.sum() - float(total_conversions)
    untested_sum = new_conv[~tested].sum()
    if over > 1e-9 and untested_sum > 0:
        scale = max(untested_sum - over, 0.0) / untested_sum
        new_conv[~tested] *= scale
        new_val[~tested] *= scale
        factor[~tested] *= scale
        capped = True
    out = pd.DataFrame({"channel": channels, "model_conversions": conv, "calibrated_conversions": new_conv,
                        "model_value": value, "calibrated_value": new_val, "factor": factor, "tested": tested})
    summary = {"model": model, "tested_channels": used, "skipped_channels": skipped, "pooled_factor": pooled,
               "capped_at_total": capped, "tests": [int(i) for i in tests["id"]]}
    return out, summary


def channel_days(journeys) -> dict:
    """Converting journeys per channel and day of conversion (UTC): {channel: {ISO date: journeys}}.

    A journey counts once for each distinct channel on it; this is what `period_fraction` reads.
    """
    conv = journeys.conversions > 0
    idx = journeys.journey_index
    keep = conv[idx]
    n_ch = len(journeys.channels)
    day = (journeys.end_ts // (86_400 * 10**9)).astype(np.int64)
    pair = np.unique(idx[keep].astype(np.int64) * n_ch + journeys.codes[keep])
    j, ch = pair // n_ch, pair % n_ch
    d = day[j]
    if d.size == 0:
        return {}
    d0 = int(d.min())
    width = int(d.max()) - d0 + 1
    counts = np.bincount(ch * width + (d - d0), weights=journeys.conversions[j], minlength=n_ch * width).reshape(n_ch, width)
    out: dict[str, dict[str, float]] = {}
    for c in np.flatnonzero(counts.sum(axis=1) > 0).tolist():
        days = np.flatnonzero(counts[c] > 0)
        out[journeys.channels[c]] = {(dt.date(1970, 1, 1) + dt.timedelta(days=d0 + int(x))).isoformat(): float(counts[c, x])
                                     for x in days.tolist()}
    return out
