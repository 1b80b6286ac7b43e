"""An export shorter than a week: today's budget is the mean over the days it covers, not over 7."""

from __future__ import annotations

import pandas as pd

from core.response import fit_curves


def test_today_is_the_mean_over_the_days_the_export_covers(sim):
    df, _, _ = sim(3, 2, seed=5)  # two days of history
    curves = fit_curves(df)
    per_day = df.groupby(["external_id", "date"])["spend"].sum().groupby("external_id").mean()
    got = curves.diagnostics.set_index(curves.keys["external_id"].to_numpy())["last7_mean_spend"]
    for ext, mean in per_day.items():
        assert abs(got[ext] - mean) < 1e-9 * max(1.0, mean)


def test_a_week_with_idle_days_still_counts_them_as_zero(sim):
    df, _, _ = sim(2, 30, seed=6)
    last = df["date"].max()
    idle = (df["external_id"] == df["external_id"].iloc[0]) & (df["date"] > last - pd.Timedelta(days=3))
    df = df[~idle]
    curves = fit_curves(df)
    ext = df["external_id"].iloc[0]
    week = df[(df["external_id"] == ext) & (df["date"] > last - pd.Timedelta(days=7))]["spend"].sum() / 7
    got = curves.diagnostics.set_index(curves.keys["external_id"].to_numpy())["last7_mean_spend"][ext]
    assert abs(got - week) < 1e-9 * max(1.0, week)
