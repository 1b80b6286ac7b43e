"""Held-out evaluation: folds, metrics against scikit-learn, the Markov predictor, the choice and the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from core.attribution import evaluate
from core.attribution.fitted import ModelForm
from core.attribution.simulate import simulate
from core.pathtable import PathTable

from .conftest import random_table


def test_folds_deal_every_journey_once_and_are_seeded():
    conv = np.array([0, 1, 5, 7.5, 120])
    nulls = np.array([3, 0, 9, 2, 1000])
    fc, fn = evaluate.make_folds(conv, nulls, 3, seed=1)
    np.testing.assert_allclose(fc.sum(axis=0), conv)
    np.testing.assert_allclose(fn.sum(axis=0), nulls)
    assert (fc >= 0).all() and (fn >= 0).all()
    assert np.all(fc[:, :3] == np.round(fc[:, :3]))  # whole journeys
    again = evaluate.make_folds(conv, nulls, 3, seed=1)
    np.testing.assert_array_equal(fc, again[0])
    assert not np.array_equal(fn, evaluate.make_folds(conv, nulls, 3, seed=2)[1])
    with pytest.raises(ValueError, match="at least 2 folds"):
        evaluate.make_folds(conv, nulls, 1, seed=0)


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.9, 40)
    p[5] = p[6]  # a tie
    conv = rng.integers(0, 4, 40).astype(float)
    nulls = rng.integers(0, 6, 40).astype(float)
    ll, auc, brier = evaluate._metrics(p, conv, nulls)
    y = np.r_[np.ones(40), np.zeros(40)]
    w = np.r_[conv, nulls]
    keep = w > 0
    pp = np.r_[p, p]
    assert ll == pytest.approx(log_loss(y[keep], pp[keep], sample_weight=w[keep]))
    assert auc == pytest.approx(roc_auc_score(y[keep], pp[keep], sample_weight=w[keep]))
    assert brier == pytest.approx(np.average((y - pp) ** 2, weights=w))


def test_markov_prediction_is_the_share_converting_at_the_last_state_with_back_off():
    table = PathTable.from_strings(["a > b", "c > b", "b", "a > c", "b > a > c"], [2, 1, 0, 3, 1], None, [2, 3, 4, 1, 0])
    ids1 = evaluate._last_k_ids(table, 1)
    ids2 = evaluate._last_k_ids(table, 2)
    p = evaluate._markov_predict([ids1, ids2], table.conversions, table.nulls)
    rows = {table.path_strings()[i]: p[i] for i in range(table.n_paths)}
    assert rows["a > b"] == pytest.approx(2 / 4)  # order 2 state (a, b) seen in training
    # "a > c" and "b > a > c" share their last two touches (a, c): (3 + 1) / (4 + 1) converted
    assert rows["a > c"] == pytest.approx(4 / 5) and rows["b > a > c"] == pytest.approx(4 / 5)
    # order 1 only: the share converting among all journeys ending in b
    p1 = evaluate._markov_predict([ids1], table.conversions, table.nulls)
    b_end = [i for i, s in enumerate(table.path_strings()) if s.endswith("b")]
    assert p1[b_end[0]] == pytest.approx(3 / 12)
    # a state with no training journey backs off to the overall rate
    zero = evaluate._markov_predict([ids1], np.zeros(5) + np.array([1, 0, 0, 0, 0]), np.array([1.0, 0, 0, 0, 0]))
    assert zero[2] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def evaluation():
    sim = simulate(8, 120_000, seed=3)
    return sim, evaluate.cross_validate(sim.paths, seed=0)


def test_cross_validation_scores_every_predicting_model(evaluation):
    sim, ev = evaluation
    models = set(ev.scores["model"])
    assert models == {"data_driven", "shapley_rate", "markov", "constant"}
    assert set(ev.scores[ev.scores["model"] == "markov"]["variant"]) == {f"order {k}" for k in (1, 2, 3, 4)}
    assert ev.scores["log_loss"].is_monotonic_increasing
    assert np.allclose(ev.scores["journeys"], sim.paths.total_conversions + sim.paths.total_nulls)
    const = ev.scores[ev.scores["model"] == "constant"].iloc[0]
    assert const["auc"] == pytest.approx(0.5, abs=0.02)
    chosen = ev.scores[ev.scores["variant"].str.endswith("chosen")].iloc[0]
    assert chosen["log_loss"] < const["log_loss"]
    rate = ev.scores[ev.scores["model"] == "shapley_rate"].set_index("variant")["log_loss"]
    assert rate["exact-set rates shrunk toward the fitted model"] < rate["exact-set rates, no shrinkage"]
    # calibration of the chosen model: predicted and observed rates close on held-out journeys
    cal = ev.calibration[ev.calibration["model"] == "data_driven"]
    assert len(cal) == evaluate.CALIBRATION_BINS
    assert np.average(np.abs(cal["predicted"] - cal["observed"]), weights=cal["journeys"]) < 0.01


def test_recommendation_is_the_lowest_held_out_log_loss(evaluation):
    sim, ev = evaluation
    cands = ev.scores[ev.scores["model"].isin(["data_driven", "shapley_rate", "markov"])]
    cands = cands[~((cands["model"] == "data_driven") & ~cands["variant"].str.endswith("chosen"))]
    cands = cands[~((cands["model"] == "shapley_rate") & cands["variant"].str.contains("no shrinkage"))]
    assert ev.recommended == cands.sort_values("log_loss").iloc[0]["model"]
    assert "log loss" in ev.reason and "overall rate" in ev.reason
    markov = ev.scores[ev.scores["model"] == "markov"].sort_values("log_loss")
    assert ev.markov_order == int(markov.iloc[0]["variant"].split()[-1])
    assert ev.form is not None and ev.form.link == "noisy_or"  # the simulator is a noisy-OR
    back = evaluate.Evaluation.from_dict(ev.to_dict())
    pd.testing.assert_frame_equal(back.scores, ev.scores)
    assert back.form == ev.form and back.reason == ev.reason


def test_recommend_rule_on_given_scores():
    rows = [("data_driven", "noisy_or (penalty 1) — chosen", 0.30), ("shapley_rate", "exact-set rates shrunk toward the fitted model", 0.29),
            ("markov", "order 1", 0.31), ("markov", "order 2", 0.305), ("constant", "overall conversion rate", 0.32)]
    scores = pd.DataFrame([{"model": m, "variant": v, "log_loss": ll, "auc": 0.6, "brier": 0.1, "journeys": 1.0,
                            "conversions": 1.0, "seconds": 0.0} for m, v, ll in rows]).sort_values("log_loss", ignore_index=True)
    rec, order, reason, m_order, _ = evaluate._recommend(scores, ModelForm(), (1, 2))
    assert rec == "shapley_rate" and m_order == 2 and order == 2
    assert "next data_driven at 0.3000" in reason
    # within the tie margin the data-driven model is preferred
    scores.loc[scores["model"] == "data_driven", "log_loss"] = 0.29 + evaluate.TIE / 2
    assert evaluate._recommend(scores.sort_values("log_loss", ignore_index=True), ModelForm(), (1, 2))[0] == "data_driven"


def test_a_constant_that_beats_every_model_is_not_called_barely_better():
    """Channels that are noise: the overall rate alone predicts held-out journeys best. The reason says so,
    never that the recommended model is "barely better" than it."""
    rows = [("data_driven", "noisy_or (penalty 1) — chosen", 0.6856), ("shapley_rate", "exact-set rates shrunk toward the fitted model", 0.6874),
            ("markov", "order 1", 0.6901), ("constant", "overall conversion rate", 0.6815)]
    scores = pd.DataFrame([{"model": m, "variant": v, "log_loss": ll, "auc": 0.5, "brier": 0.2, "journeys": 1.0,
                            "conversions": 1.0, "seconds": 0.0} for m, v, ll in rows]).sort_values("log_loss", ignore_index=True)
    reason = evaluate._recommend(scores, ModelForm(), (1,))[2]
    assert "barely better" not in reason
    assert "the overall rate alone scores 0.6815; better than every model" in reason
    scores.loc[scores["model"] == "constant", "log_loss"] = 0.6860  # a hair worse than the best model: barely better
    assert "barely better" in evaluate._recommend(scores.sort_values("log_loss", ignore_index=True), ModelForm(), (1,))[2]


def test_tiny_data_falls_back_to_the_simplest_form_and_says_so():
    from core.attribution.incremental import fit_data_driven

    table = PathTable.from_strings(["a > b", "b", "a"], [1, 0, 0], None, [2, 3, 1])
    fit = fit_data_driven(table, seed=0)
    assert fit.model.form == ModelForm()
    assert any("simplest form" in n for n in fit.evaluation.notes)


def test_large_data_is_thinned_for_scoring(monkeypatch):
    monkeypatch.setattr(evaluate, "CV_MAX_JOURNEYS", 5_000)
    table = random_table(4, n_paths=300, n_channels=4)
    big = table.with_counts(table.conversions * 40, table.value * 40, table.nulls * 40)
    ev = evaluate.cross_validate(big, seed=0, forms=[ModelForm()], orders=(1,))
    assert ev.scores["journeys"].iloc[0] < 6_000
    assert any("scored on a random" in n for n in ev.notes)


def test_channels_without_a_measured_effect_are_dropped_unless_held_out_journeys_want_them(monkeypatch):
    from core.attribution import fitted
    from core.attribution.incremental import fit_data_driven

    sim = simulate(6, 120_000, seed=3)
    zero = sim.paths.channels.index(sim.zero_channel)
    fit = fit_data_driven(sim.paths, seed=0)
    assert fit.evaluation.measured_only
    assert fit.model.measured is not None and not fit.model.measured[zero] and fit.model.main[zero] == 0.0
    assert any(v.startswith("every channel: ") for v in fit.evaluation.scores["variant"])  # the gate was scored
    assert fit.details(fit.credit(), sim.paths.channels)["unmeasured_channels"] == [sim.zero_channel]
    # a gate that drops the strongest channel: the held-out journeys want every channel back
    strongest = int(np.argmax(sim.effects))
    monkeypatch.setattr(fitted, "measured_channels", lambda s, plain=None, **kw: np.arange(6) != strongest)
    fit = fit_data_driven(sim.paths, seed=0)
    assert not fit.evaluation.measured_only
    assert fit.model.measured is None and fit.model.main[strongest] > 0.01
    chosen = fit.evaluation.scores[fit.evaluation.scores["variant"].str.endswith("chosen")].iloc[0]
    gated = fit.evaluation.scores[fit.evaluation.scores["variant"].str.startswith("measured channels only: ")].iloc[0]
    assert chosen["log_loss"] < gated["log_loss"]
    assert not evaluate.Evaluation.from_dict(fit.evaluation.to_dict()).measured_only
