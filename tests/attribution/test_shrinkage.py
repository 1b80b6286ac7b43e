"""Empirical-Bayes shrinkage of the rate game toward the fitted model."""

from __future__ import annotations

import numpy as np
import pytest

from core.attribution import run_attribution, shapley, shrinkage
from core.attribution.fitted import ModelForm, fit
from core.attribution.journey_features import summarize
from core.attribution.simulate import simulate

from .conftest import random_table


@pytest.mark.parametrize("kappa", [20.0, 500.0])
def test_strength_is_recovered_from_beta_binomial_data(kappa):
    rng = np.random.default_rng(int(kappa))
    m = rng.uniform(0.05, 0.3, 3000)
    n = rng.integers(20, 400, 3000).astype(float)
    rates = rng.beta(kappa * m, kappa * (1 - m))
    c = rng.binomial(n.astype(int), rates).astype(float)
    est = shrinkage.estimate_strength(c, n, m)
    assert kappa / 1.6 < est < kappa * 1.6


def test_data_that_follow_the_model_exactly_trust_the_model():
    rng = np.random.default_rng(1)
    m = rng.uniform(0.05, 0.3, 2000)
    n = rng.integers(20, 400, 2000).astype(float)
    c = rng.binomial(n.astype(int), m).astype(float)  # no spread beyond sampling noise
    assert shrinkage.estimate_strength(c, n, m) > 1_000  # far above the 20-400 journeys of a set: the model rules


def test_shrunk_rate_lies_between_the_set_and_the_model():
    prior = shrinkage.RatePrior(np.array([0.0, 0.1, 0.2, 0.3]), 50.0)
    conv = np.array([0.0, 10.0, 0.0, 3000.0])
    jour = np.array([0.0, 20.0, 0.0, 6000.0])
    v = prior.shrink(conv, jour)
    assert v[2] == pytest.approx(0.2)  # never seen: the model
    assert 0.1 < v[1] < 0.5 and v[1] == pytest.approx((10 + 5) / 70)
    assert v[3] == pytest.approx(0.5, abs=0.003)  # seen 6,000 times: its own rate
    np.testing.assert_allclose(prior.data_weight(jour), jour / (jour + 50))


def test_shrunk_game_keeps_efficiency_and_tames_a_rare_set():
    sim = simulate(6, 60_000, seed=2)
    table = sim.paths
    s = summarize(table)
    model = fit(s, ModelForm("noisy_or"))
    prior = shrinkage.rate_prior(model, s)
    masks = shapley.coalition_masks(table)
    shrunk = shapley.shapley_rate_from_masks(masks, 6, table.conversions, table.value, table.nulls, prior)
    assert shrunk.conversions.sum() == pytest.approx(table.total_conversions)  # v(empty) = 0: all conversions shared
    # a rare channel set whose journeys all happened to convert: the raw game follows it, the shrunk one barely
    jour = np.bincount(masks, weights=table.conversions + table.nulls, minlength=64)
    rare = int(np.flatnonzero((jour > 0) & (jour < 15))[0])
    rows = masks == rare
    lucky = table.with_counts(np.where(rows, table.conversions + table.nulls, table.conversions), table.value,
                              np.where(rows, 0.0, table.nulls))
    raw_a = shapley.shapley_rate_from_masks(masks, 6, table.conversions, table.value, table.nulls)
    raw_b = shapley.shapley_rate_from_masks(masks, 6, lucky.conversions, lucky.value, lucky.nulls)
    shr_b = shapley.shapley_rate_from_masks(masks, 6, lucky.conversions, lucky.value, lucky.nulls,
                                            shrinkage.RatePrior(prior.mean, prior.strength))
    raw_swing = np.abs(raw_b.game - raw_a.game)[rare]
    shrunk_swing = np.abs(shr_b.game - shrunk.game)[rare]
    assert shrunk_swing < raw_swing / 3


def test_run_reports_the_journeys_behind_each_channel():
    table = random_table(11, n_paths=200, n_channels=5, max_len=4)
    res = run_attribution(table, None, ["shapley_rate"])
    sup = res.details["shapley_rate"]["support"]
    masks = shapley.coalition_masks(table)
    for i, ch in enumerate(sup["channel"]):
        has = ((masks >> table.channels.index(ch)) & 1).astype(bool)
        assert sup["journeys"][i] == pytest.approx((table.conversions + table.nulls)[has].sum())
        assert sup["converting_journeys"][i] == pytest.approx(table.conversions[has].sum())
        assert 0 <= sup["data_weight"][i] <= 1
    assert res.details["shapley_rate"]["shrinkage"]["strength"] > 0
