"""What-if bands and scenarios, bid shrinkage and modifiers, advice and confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.optimize.advice import advise
from core.optimize.bids import beta_prior, bid_modifiers, suggest_bids
from core.optimize.confidence import budget_change_confidence, pause_confidence
from core.optimize.whatif import compare_scenarios, delete_scenario, list_scenarios, load_scenario, save_scenario, what_if
from core.response import fit_curves
from core.store.db import make_engine


def test_what_if_band_and_totals(sim):
    df, _, _ = sim(6, 60, seed=11)
    cs = fit_curves(df)
    b = np.full(cs.n, 200.0)
    w = what_if(cs, b, n_draws=400, level=0.9)
    t = w.table
    assert (t["value_lo"] <= t["value"]).all() and (t["value"] <= t["value_hi"]).all()
    assert w.total["value"] == pytest.approx(t["value"].sum())
    assert w.total["roas"] == pytest.approx(t["value"].sum() / 1200.0)
    assert w.total["value_lo"] < w.total["value"] < w.total["value_hi"]
    np.testing.assert_allclose(t["marginal_roas"], cs.marginal(b))
    more = what_if(cs, b * 1.5)
    assert (more.table["value"] >= t["value"]).all()
    by_label = what_if(cs, {"meta:c0000": 300.0, "c0001": 100.0})
    assert by_label.table["budget"].tolist()[:3] == [300.0, 100.0, 0.0]
    with pytest.raises(ValueError, match="unknown campaign"):
        what_if(cs, {"nope": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        what_if(cs, -b)


def test_scenarios_saved_listed_compared(sim, tmp_path):
    df, _, _ = sim(4, 40, seed=12)
    cs = fit_curves(df)
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    sid = save_scenario(engine, "base", cs, np.full(4, 100.0), workspace_id="w1")
    save_scenario(engine, "push", cs, np.array([200.0, 100, 50, 50]), workspace_id="w1")
    with pytest.raises(ValueError, match="already exists"):
        save_scenario(engine, "base", cs, np.full(4, 1.0), workspace_id="w1")
    assert sid > 0
    lst = list_scenarios(engine, workspace_id="w1")
    assert lst["name"].tolist() == ["base", "push"] and lst["budget"].tolist() == [400.0, 400.0]
    assert list_scenarios(engine, workspace_id="other").empty  # workspaces are separate
    loaded = load_scenario(engine, "push", workspace_id="w1")
    assert str(loaded["meta:c0000"]) == "200.00"
    cmp = compare_scenarios(cs, {"base": load_scenario(engine, "base", workspace_id="w1"), "push": loaded})
    assert cmp["external_id"].iloc[-1] == "TOTAL"
    assert cmp["push value"].iloc[-1] == pytest.approx(what_if(cs, loaded).total["value"])
    assert delete_scenario(engine, "push", workspace_id="w1") and not delete_scenario(engine, "push", workspace_id="w1")
    engine.dispose()


def test_beta_prior_and_shrinkage():
    rng = np.random.default_rng(0)
    p = rng.beta(20, 980, 200)  # true rates around 2% with modest spread
    n = rng.integers(2000, 20000, 200).astype(float)
    x = rng.binomial(n.astype(int), p).astype(float)
    m, kappa = beta_prior(x, n)
    assert m[0] == pytest.approx(x.sum() / n.sum())
    assert 300 < kappa[0] < 3000  # true strength is 1000
    # rates that differ only by chance give full pooling
    x2 = rng.binomial(n.astype(int), 0.02).astype(float)
    assert beta_prior(x2, n)[1][0] > 1e4
    with pytest.raises(ValueError, match="successes <= trials"):
        beta_prior([5.0], [2.0])


def test_bid_shrinkage_pulls_thin_entities_more(sim):
    df, _, _ = sim(30, 30, seed=13)
    rng = np.random.default_rng(13)
    rate = rng.beta(30, 970, 30)  # true conversion rates differ between campaigns (about 3% +- 0.5%)
    camp = df["external_id"].str[1:].astype(int).to_numpy()
    df["conversions"] = rng.binomial(df["clicks"].to_numpy(), rate[camp]).astype(float)
    thin = df["external_id"] == "c0000"
    df.loc[thin, "clicks"] = 10
    df.loc[thin, "conversions"] = np.where(df.loc[thin].index % 10 == 0, 1.0, 0.0)  # 3 / 300 = 1%
    bids = suggest_bids(df, target_roas=2.0).set_index("external_id")
    mean = bids["prior_cvr"].iloc[0]
    thin_row, thick = bids.loc["c0000"], bids.drop("c0000")
    pull_thin = abs(thin_row["cvr"] - thin_row["cvr_raw"]) / abs(mean - thin_row["cvr_raw"])
    pull_thick = (abs(thick["cvr"] - thick["cvr_raw"]) / abs(mean - thick["cvr_raw"]).replace(0, np.nan)).median()
    assert pull_thin > 0.5 and pull_thin > 3 * pull_thick
    assert bids["bid_target"].to_numpy() == pytest.approx((bids["cvr"] * bids["value_per_conversion"] / 2.0).to_numpy())
    bounded = suggest_bids(df, target_roas=2.0, current_bids={("meta", "c0001"): 0.01}, max_change=0.3).set_index("external_id")
    assert bounded.loc["c0001", "bid"] == pytest.approx(0.013) and bounded.loc["c0001", "bounded"]
    assert np.isnan(bounded.loc["c0002", "current_bid"])
    with pytest.raises(ValueError, match="target ROAS"):
        suggest_bids(df, target_roas=0)


def test_bid_modifiers_from_segments(sim):
    df, _, _ = sim(2, 20, seed=14)
    seg = []
    for dev, cvr in (("mobile", 0.01), ("desktop", 0.04)):
        s = df.assign(segment_type="device", segment_value=dev, clicks=1000, conversions=1000 * cvr)
        seg.append(s)
    hour = df.assign(segment_type="hour", segment_value="3", clicks=5, conversions=1.0)
    perf = pd.concat([df.assign(segment_type="", segment_value="")] + seg + [hour], ignore_index=True)
    mods = bid_modifiers(perf, max_change=0.3)
    dev = mods[(mods["external_id"] == "c0000") & (mods["segment_type"] == "device")].set_index("segment_value")
    assert dev.loc["desktop", "modifier_raw"] > 1.5 and dev.loc["desktop", "modifier"] == pytest.approx(1.3)
    assert dev.loc["mobile", "modifier"] == pytest.approx(0.7)
    assert bid_modifiers(df).empty


def test_advice_pause_targeting_creative(sim):
    df, _, _ = sim(5, 40, seed=15)
    burn = df["external_id"] == "c0001"
    df.loc[burn, ["conversions", "conversion_value"]] = 0.0
    fade = df["external_id"] == "c0002"
    day = (df.loc[fade, "date"] - df["date"].min()).dt.days.to_numpy()
    df.loc[fade, "clicks"] = (df.loc[fade, "impressions"] * 0.05 * (1 - day / 50)).astype("int64")
    low = df["external_id"] == "c0003"
    df.loc[low, "conversion_value"] *= 0.01
    target = float((df.loc[~low & ~burn, "conversion_value"].sum() / df.loc[~low & ~burn, "spend"].sum()) * 0.5)
    adv = advise(df, target_roas=target)
    kinds = {(r.external_id, r.kind) for r in adv.itertuples()}
    assert ("c0001", "pause") in kinds and ("c0003", "targeting") in kinds and ("c0002", "creative") in kinds
    assert ("c0001", "targeting") not in kinds and ("c0000", "pause") not in kinds
    pause = adv[adv["kind"] == "pause"].iloc[0]
    assert pause["confidence"] > 99 and "without a conversion" in pause["reason"]
    assert "CTR fell" in adv[adv["kind"] == "creative"].iloc[0]["reason"]
    freq = advise(df.assign(frequency=np.where(df["external_id"] == "c0004", 4.5, 1.2)))
    assert ((freq["external_id"] == "c0004") & (freq["kind"] == "creative")).any()
    assert "frequency is 4.5" in freq[freq["external_id"] == "c0004"]["reason"].iloc[0]


def test_confidence_is_lower_for_thin_data(sim):
    df, _, _ = sim(8, 60, seed=16)
    thin_df = df[(df["external_id"] != "c0000") | (df["date"] >= "2024-02-24")]  # c0000 keeps 6 days

    def conf_of_c0000(frame):
        cs = fit_curves(frame)
        old = np.full(cs.n, 200.0)
        new = old * 1.2
        # hurdle 10% below the point estimate's return on the extra money: only uncertainty lowers confidence
        gain = (cs.predict(new) - cs.predict(old)) / (new - old)
        i = cs.index_of("meta", "c0000")
        conf = budget_change_confidence(cs, old, np.where(np.arange(cs.n) == i, new, old), 0.9 * gain[i], n_draws=800)
        return cs, conf[i]

    cs_full, full = conf_of_c0000(df)
    cs_thin, thin = conf_of_c0000(thin_df)
    assert cs_thin.diagnostics["pooled"][0] and not cs_full.diagnostics["pooled"][0]
    assert 0 <= thin <= 100 and 0 <= full <= 100
    assert full > 75 and thin < full - 10
    cs, lam = cs_full, 1.0
    old = np.full(cs.n, 200.0)
    assert np.isnan(budget_change_confidence(cs, old, old, lam)).all()
    assert pause_confidence([0.0, 3.0])[0] == 0 and pause_confidence([3.0])[0] == pytest.approx(100 * (1 - np.exp(-3)))


def test_confidence_is_the_probability_under_parameter_uncertainty():
    """A power curve whose only uncertain parameter is log a ~ N(log 10, sd^2): the probability that
    raising the budget 100 -> 150 beats a hurdle h per unit money is known in closed form."""
    from scipy.stats import norm

    from core.response import CurveSet

    keys = pd.DataFrame({"platform": "meta", "account_id": "x", "entity_type": "campaign", "external_id": ["c0"],
                         "entity_name": ["C0"], "currency": "USD"})
    diag = pd.DataFrame({"pooled": [False], "warnings": [""]})
    old, new, k = np.array([100.0]), np.array([150.0]), 0.5
    hurdle = 0.9 * 10 * (new[0] ** k - old[0] ** k) / 50  # 10% below the point estimate's return on the extra money
    confs = []
    for sd in (0.02, 0.1, 0.5, 2.0):
        cs = CurveSet("power", keys, np.array([[10.0, k]]), np.array([[[sd**2, 0.0], [0.0, 0.0]]]), diag, pd.DataFrame({"idx": []}))
        conf = budget_change_confidence(cs, old, new, hurdle, n_draws=20_000, seed=1)[0]
        # gain > 0  <=>  log a > log(hurdle * 50 / (150^k - 100^k))
        exact = 100 * norm.sf((np.log(hurdle * 50 / (new[0] ** k - old[0] ** k)) - np.log(10.0)) / sd)
        assert conf == pytest.approx(exact, abs=1.0)
        confs.append(conf)
    # wider uncertainty (thinner data) -> lower confidence, toward a coin flip
    assert confs[0] > 99 and all(np.diff(confs) < 0) and 50 < confs[-1] < 55


def test_confidence_falls_as_history_thins(sim):
    df, _, _ = sim(8, 60, seed=16)
    confs = []
    for days in (60, 20, 6):
        frame = df[(df["external_id"] != "c0000") | (df["date"] > df["date"].max() - pd.Timedelta(days=days))]
        cs = fit_curves(frame)
        old = np.full(cs.n, 200.0)
        new = np.where(np.arange(cs.n) == 0, 240.0, old)
        gain = (cs.predict(new) - cs.predict(old))[0] / 40.0
        confs.append(budget_change_confidence(cs, old, new, 0.9 * gain, n_draws=2000)[0])
    assert confs[0] > confs[1] > confs[2], confs
