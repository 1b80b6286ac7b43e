"""Response curves: parameter recovery, diagnostics, pooled fallback, bad input, value source."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.response import CurveFitError, attribution_adjusted, fit_curves


def test_power_fit_recovers_known_parameters(sim):
    df, a, k = sim(200, 90, seed=1, noise=0.15)
    cs = fit_curves(df)
    assert cs.model == "power" and cs.n == 200
    assert np.median(np.abs(cs.params[:, 1] - k)) < 0.03
    assert np.median(np.abs(cs.params[:, 0] / a - 1)) < 0.15
    # predictions at the observed spend are unbiased (smearing) within a few percent
    s = np.full(cs.n, 200.0)
    assert np.median(cs.predict(s) / (a * s**k)) == pytest.approx(1.0, abs=0.03)
    # standard errors are calibrated: z-scores of k have unit spread
    z = (cs.params[:, 1] - k) / np.sqrt(cs.cov[:, 1, 1])
    assert 0.8 < z.std() < 1.25
    d = cs.diagnostics
    assert (d["points_used"] == 90).all() and not d["pooled"].any()
    assert (d["r2"] > 0).mean() > 0.9


def test_more_budget_never_predicts_less_value(sim):
    df, _, _ = sim(30, 60, seed=2)
    for model in ("power", "hill"):
        cs = fit_curves(df, model)
        grid = np.linspace(0, 5000, 400)[:, None] * np.ones(cs.n)
        v = cs.predict(grid)
        assert (np.diff(v, axis=0) >= -1e-9).all(), model
        m = cs.marginal(grid[1:])
        assert (m >= 0).all() and (np.diff(m, axis=0) <= 1e-9).all(), model  # concave


def test_hill_fit_is_concave_and_fits(sim):
    df, a, k = sim(10, 90, seed=3, noise=0.1)
    cs = fit_curves(df, "hill")
    assert cs.model == "hill"
    assert ((cs.params[:, 2] > 0) & (cs.params[:, 2] <= 1)).all()
    assert (cs.diagnostics["r2"] > 0.3).all()
    s = np.full(cs.n, 150.0)
    assert np.median(cs.predict(s) / (a * s**k)) == pytest.approx(1.0, abs=0.15)
    draws = cs.sample(50)
    assert draws.shape == (50, 10, 3) and (draws[..., 2] <= 1).all()


def test_thin_history_falls_back_to_pooled_curve(sim):
    df, _, k = sim(10, 60, seed=4)
    thin = df[(df["external_id"] != "c0003") | (df["date"] >= "2024-02-25")]  # c0003 keeps 5 days
    cs = fit_curves(thin, min_days=14)
    d = cs.diagnostics.set_index(cs.keys["external_id"])
    assert d.loc["c0003", "pooled"] and not d.drop("c0003")["pooled"].any()
    assert "too few days" in d.loc["c0003", "warnings"] and "pooled" in d.loc["c0003", "warnings"]
    i = cs.index_of("meta", "c0003")
    assert cs.params[i, 1] == pytest.approx(np.mean(cs.params[np.arange(10) != i, 1]), abs=0.1)
    # the pooled campaign's slope is far less certain than a well-measured one
    assert cs.cov[i, 1, 1] > 5 * np.median(np.delete(cs.cov[:, 1, 1], i))


def test_narrow_spend_range_is_flagged(sim):
    df, _, _ = sim(6, 40, seed=5)
    flat = df.copy()
    m = flat["external_id"] == "c0002"
    flat.loc[m, "spend"] = 100.0 + np.linspace(0, 5, m.sum())
    cs = fit_curves(flat)
    d = cs.diagnostics.set_index(cs.keys["external_id"])
    assert d.loc["c0002", "pooled"] and "spend range too narrow" in d.loc["c0002", "warnings"]


def test_campaign_with_spend_but_no_value_gets_zero_curve(sim):
    df, _, _ = sim(5, 30, seed=6)
    df.loc[df["external_id"] == "c0001", "conversion_value"] = 0.0
    cs = fit_curves(df)
    i = cs.index_of("meta", "c0001")
    assert cs.params[i, 0] == 0 and cs.predict(np.full(5, 100.0))[i] == 0
    assert "without any conversion value" in cs.diagnostics["warnings"][i]
    assert (cs.sample(20)[:, i, 0] == 0).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.assign(spend=np.where(d.index == 7, -5.0, d["spend"])), "negative spend"),
        (lambda d: d.assign(conversion_value=np.where(d.index == 3, -1.0, d["conversion_value"])), "negative conversion_value"),
        (lambda d: d.assign(conversion_value=0.0), "zero on every row"),
        (lambda d: d[d["date"] == d["date"].min()], "single day"),
        (lambda d: d.drop(columns=["spend"]), "missing column"),
        (lambda d: d.assign(spend=np.where(d.index == 2, np.nan, d["spend"])), "spend is missing or not a number"),
        (lambda d: d.assign(entity_type="ad_group"), "no totals rows of entity_type 'campaign'"),
    ],
)
def test_bad_input_gets_a_clear_error(sim, mutate, message):
    df, _, _ = sim(3, 20, seed=7)
    with pytest.raises(CurveFitError, match=message):
        fit_curves(mutate(df))


def test_negative_spend_error_names_the_campaign(sim):
    df, _, _ = sim(3, 20, seed=7)
    df.loc[25, "spend"] = -1.0
    with pytest.raises(CurveFitError, match=r"meta c0001 on 2024-01-06"):
        fit_curves(df)


def test_segment_rows_are_ignored_for_curves(sim):
    df, _, _ = sim(3, 30, seed=8)
    seg = df.assign(segment_type="device", segment_value="mobile", spend=df["spend"] * 100)
    base = fit_curves(df.assign(segment_type=""))
    both = fit_curves(pd.concat([df.assign(segment_type=""), seg], ignore_index=True))
    np.testing.assert_allclose(base.params, both.params)


def test_attribution_adjusted_matches_channel_totals(sim):
    meta, _, _ = sim(4, 30, seed=9, platform="meta")
    google, _, _ = sim(3, 30, seed=10, platform="google")
    perf = pd.concat([meta, google], ignore_index=True)
    out = attribution_adjusted(perf, {"meta": 1000.0, "google": 3000.0})
    tot = out.groupby("platform")["conversion_value"].sum()
    assert tot["meta"] == pytest.approx(1000.0) and tot["google"] == pytest.approx(3000.0)
    # within a channel, the campaigns keep their relative value and daily shape
    ratio = out["conversion_value"] / perf["conversion_value"]
    r_meta = ratio[perf["platform"] == "meta"]
    assert np.ptp(r_meta) < 1e-12 * r_meta.mean()
    # shares redistribute the reported total
    sh = attribution_adjusted(perf, {"meta": 0.25, "google": 0.75}, shares=True)
    assert sh["conversion_value"].sum() == pytest.approx(perf["conversion_value"].sum())
    assert sh.loc[sh["platform"] == "google", "conversion_value"].sum() == pytest.approx(0.75 * perf["conversion_value"].sum())
    # a campaign -> channel mapping overrides the platform
    mapped = attribution_adjusted(perf, {"meta": 1000.0, "google": 3000.0, "brand": 50.0}, {"meta:c0000": "brand"})
    assert mapped.loc[mapped["external_id"].eq("c0000") & mapped["platform"].eq("meta"), "conversion_value"].sum() == pytest.approx(50.0)
    with pytest.raises(CurveFitError, match=r"no attributed value for channel\(s\) \['google'\]"):
        attribution_adjusted(perf, {"meta": 1.0})


def test_hill_draws_stay_finite_and_centred_when_saturation_is_not_visible(sim):
    """A narrow spend range hides the saturation: curve_fit's covariance explodes, the draws must not."""
    import warnings

    df, _, _ = sim(10, 90, seed=3, noise=0.5, spread=0.1)
    cs = fit_curves(df, "hill")
    assert np.sqrt(cs.cov[:, 1, 1]).max() > 100  # the situation that overflowed exp() before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draws = cs.sample(400, seed=1)
        s = cs.diagnostics["mean_spend"].to_numpy()
        pred = cs.predict(s[None, :], draws)
    assert np.isfinite(draws).all() and np.isfinite(pred).all()
    box = cs.theta_box()
    theta_draws = np.stack([np.log(draws[..., 0]), np.log(draws[..., 1]), draws[..., 2]], axis=-1)
    assert (theta_draws >= box[None, ..., 0] - 1e-9).all() and (theta_draws <= box[None, ..., 1] + 1e-9).all()
    assert ((draws[..., 2] > 0) & (draws[..., 2] <= 1)).all()
    # meaningful: at the spend the data saw, the draws centre on the fit and their band holds it
    point = cs.predict(s)
    assert np.median(np.median(pred, axis=0) / point) == pytest.approx(1.0, abs=0.15)
    lo, hi = np.percentile(pred, [5, 95], axis=0)
    assert ((lo <= point) & (point <= hi)).all()
    assert np.median(hi / lo) < 3


def test_power_draws_keep_the_exponent_concave_without_clipping_mass(sim):
    """Thin data widens the exponent's draws; they are redrawn inside (0, 1), not piled on the bounds."""
    df, _, _ = sim(8, 60, seed=16)
    thin = df[(df["external_id"] != "c0000") | (df["date"] >= "2024-02-24")]
    cs = fit_curves(thin)
    k = cs.sample(2000, seed=0)[:, 0, 1]
    assert ((k >= 0.02) & (k <= 0.98)).all()
    assert (np.isclose(k, 0.02) | np.isclose(k, 0.98)).mean() < 0.01


def test_attribution_adjusted_counts_each_account_once_across_levels():
    """Meta synced with campaigns and their ad sets, Google exported at ad-group level only: the
    reported value of Meta is its campaigns' value, not campaigns plus ad sets."""
    import pandas as pd

    from core.response import attribution_adjusted

    rows = []
    for day in pd.date_range("2026-01-01", periods=3):
        rows.append(dict(date=day, platform="meta", account_id="m", entity_type="campaign", external_id="c1", spend=10.0, conversion_value=100.0))
        rows += [dict(date=day, platform="meta", account_id="m", entity_type="ad_set", external_id=s, spend=5.0, conversion_value=50.0) for s in ("s1", "s2")]
        rows.append(dict(date=day, platform="google", account_id="g", entity_type="ad_group", external_id="a1", spend=10.0, conversion_value=100.0))
    perf = pd.DataFrame(rows)
    out = attribution_adjusted(perf, {"meta": 0.75, "google": 0.25}, shares=True)
    campaign = out[(out["entity_type"] == "campaign")]["conversion_value"].sum()
    google = out[out["platform"] == "google"]["conversion_value"].sum()
    assert campaign == pytest.approx(450.0) and google == pytest.approx(150.0)  # 600 reported, split 3:1
