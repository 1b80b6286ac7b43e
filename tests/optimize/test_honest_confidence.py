"""Confidence that means what it says: extrapolation, fit quality, the plan's weakest change, exact totals."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.optimize.confidence import (
    ConfidencePolicy,
    assess_budget_changes,
    evidence_range,
    extrapolated,
    fit_quality,
    predict_draws,
)
from core.optimize.recommend import build_problem, recommend, solve
from core.optimize.settings import (
    AccountState,
    FixedBudget,
    Limits,
    MarginalFloor,
    RecommendSettings,
    SettingsError,
    TargetRoas,
)
from core.response import fit_curves


def _stepped(n=4, days=60, seed=3, noise=0.15, rho=0.0, flat=False):
    """Campaigns with budgets that move in weekly steps (a fitted slope) and value = a * spend^k."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        base = rng.uniform(80, 300)
        levels = np.ones(days) if flat else np.repeat(rng.uniform(0.6, 1.5, days // 7 + 1), 7)[:days]
        spend = base * levels * rng.uniform(0.97, 1.0, days)
        eps = np.zeros(days)
        for t in range(days):  # AR(1) noise, per campaign-day (tests only)
            eps[t] = (rho * eps[t - 1] if t else 0.0) + rng.normal(0, noise * np.sqrt(1 - rho**2))
        k = rng.uniform(0.4, 0.8)
        value = 3.0 * base ** (1 - k) * spend**k * np.exp(eps - noise**2 / 2)
        rows.append(pd.DataFrame({"date": pd.date_range("2026-01-01", periods=days), "platform": "meta", "account_id": "a",
                                  "entity_type": "campaign", "external_id": f"c{c}", "entity_name": f"C{c}",
                                  "spend": spend, "conversion_value": value, "clicks": (spend * 2).astype(int),
                                  "conversions": value / 50, "currency": "USD"}))
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------- evidence and extrapolation
def test_evidence_is_the_observed_daily_spend():
    df = _stepped()
    curves = fit_curves(df)
    lo, hi = evidence_range(curves)
    seen = df[df["spend"] > 0].groupby("external_id")["spend"].agg(["min", "max"]).reindex(curves.keys["external_id"])
    np.testing.assert_allclose(lo, seen["min"])
    np.testing.assert_allclose(hi, seen["max"])


def test_extrapolated_means_beyond_the_margin_and_zero_is_known():
    curves = fit_curves(_stepped())
    lo, hi = evidence_range(curves)
    assert not extrapolated(curves, hi * 1.19, margin=0.2).any()
    assert extrapolated(curves, hi * 1.25, margin=0.2).all()
    assert extrapolated(curves, lo / 1.3, margin=0.2).all()
    assert not extrapolated(curves, np.zeros(curves.n), margin=0.2).any()  # no spend returns nothing: known
    # a budget already beyond the evidence, cut toward it, is not extrapolating any further
    assert not extrapolated(curves, hi * 1.5, margin=0.2, old=hi * 2).any()


def test_beyond_the_evidence_the_draws_disagree_inside_they_do_not():
    curves = fit_curves(_stepped(days=90))
    lo, hi = evidence_range(curves)
    draws = curves.sample(400, 1)
    inside = predict_draws(curves, np.sqrt(lo * hi), draws)
    far = predict_draws(curves, hi * 3, draws)
    plain = curves.predict((hi * 3)[None, :], draws)
    np.testing.assert_allclose(inside, curves.predict(np.sqrt(lo * hi)[None, :], draws))  # inside: the fit's own draws
    assert (np.std(np.log(far), axis=0) > 1.5 * np.std(np.log(plain), axis=0)).all()  # beyond: much wider


@pytest.mark.parametrize("cap", [30.0, 50.0, 60.0])
def test_no_extrapolated_change_shows_more_than_the_cap(cap):
    df = _stepped(n=6, days=90, seed=8)
    settings = RecommendSettings(max_change=3.0, extrapolation="mark", extrapolated_confidence_cap=cap, min_confidence=0)
    rec = recommend(df, FixedBudget(), settings=settings)
    t = rec.budget_table
    assert t["extrapolated"].any(), "a 300 % max change in mark mode leaves the evidence"
    assert (t.loc[t["extrapolated"], "confidence"] <= cap + 1e-9).all()
    assert t.loc[t["extrapolated"], "confidence_limit"].str.contains("extrapolated").all()


def test_cap_mode_keeps_every_budget_at_the_edge_of_the_evidence():
    df = _stepped(n=6, days=90, seed=8)
    rec = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=3.0, extrapolation="cap", extrapolation_margin=0.1))
    t = rec.budget_table
    lo, hi = evidence_range(rec.curves)
    new, cur = t["new_budget"].to_numpy(), t["current_budget"].to_numpy()
    assert (new <= np.maximum(hi * 1.1, cur) + 0.01).all() and (new >= np.minimum(lo / 1.1, cur) - 0.01).all()
    assert not t["extrapolated"].any()


def test_a_cut_that_pays_even_if_nothing_came_back_below_the_evidence_is_not_called_extrapolated():
    """A campaign whose total value is far below what its money earns elsewhere: cutting it pays whatever
    the curve does below the observed spend, so the extrapolation cap does not hold it down."""
    df = _stepped(n=3, days=90, seed=4)
    df.loc[df["external_id"] == "c0", "conversion_value"] *= 0.05
    settings = RecommendSettings(max_change=0.95, extrapolation="mark", extrapolated_confidence_cap=40)
    rec = recommend(df, FixedBudget(), settings=settings)
    row = rec.budget_table.set_index("external_id").loc["c0"]
    assert row["new_budget"] < row["observed_min"] / 1.2  # beyond the evidence
    assert not row["extrapolated"] and row["confidence"] > 40
    assert "pays even if the campaign returned nothing below it" in row["confidence_limit"]


# ----------------------------------------------------------------------------- fit quality
def test_a_right_curve_under_heavy_noise_is_not_poor_its_draws_carry_the_noise():
    """Days of heavy noise around the right curve: R² near 0, but the form passes the lack-of-fit test, so
    the fit is not capped as poor; the noise shows instead as wide draws, so the same moves are less sure
    than under light noise (R² measures noise, not fit: capping on it would count the noise twice)."""
    settings = RecommendSettings(max_change=0.5, min_confidence=0)
    noisy = recommend(_stepped(n=4, days=90, seed=5, noise=1.2), FixedBudget(), settings=settings)
    t = noisy.budget_table
    assert (t["r2"] < 0.3).all() and (noisy.curves.diagnostics["lack_of_fit_p"] > ConfidencePolicy().poor_fit_p).all()
    assert (t["fit"] == "good").all()
    moved = t["confidence"].notna()
    np.testing.assert_allclose(t.loc[moved, "confidence"], noisy.assessment.table.loc[moved.to_numpy(), "model_confidence"])
    old, new = t["current_budget"].to_numpy(), t["new_budget"].to_numpy()
    clean = fit_curves(_stepped(n=4, days=90, seed=5, noise=0.15))
    a_noisy = assess_budget_changes(noisy.curves, old, new, noisy.hurdle).table["confidence"].to_numpy()
    a_clean = assess_budget_changes(clean, old, new, noisy.hurdle).table["confidence"].to_numpy()
    sure = np.abs(a_clean - 50) > np.abs(a_noisy - 50)
    assert sure[moved.to_numpy()].mean() >= 0.75  # the clean history is surer of (nearly) every move


def test_a_curve_whose_form_cannot_be_tested_is_poor():
    """Too few days with value for the lack-of-fit test (3 bins of 5 days): the form is unchecked, so capped."""
    df = _stepped(n=3, days=60, seed=3)
    df = df[~((df["external_id"] == "c0") & (df["date"] >= "2026-01-15"))]  # c0: 14 days, its own slope, no test
    curves = fit_curves(df)
    d = curves.diagnostics.set_index(curves.keys["external_id"].to_numpy())
    assert not d.loc["c0", "pooled"] and np.isnan(d.loc["c0", "lack_of_fit_p"])
    fq = fit_quality(curves).set_index(curves.keys["external_id"].to_numpy())
    assert fq.loc["c0", "fit"] == "poor" and fq.loc["c0", "cap"] == ConfidencePolicy().poor_fit_cap
    assert "cannot be checked" in fq.loc["c0", "why"]
    assert (fq.drop(index="c0")["fit"] == "good").all()


def test_the_slope_beyond_the_evidence_wanders_with_the_distance():
    """Just past the highest spend the draws are barely wider than the fit's own; far past it much wider:
    a curve does not turn abruptly where the data end, so a staged step past the edge stays sure enough."""
    curves = fit_curves(_stepped(days=90))
    _, hi = evidence_range(curves)
    draws = curves.sample(400, 1)
    z = np.random.default_rng(2).standard_normal((400, curves.n, 2))

    def widening(factor):
        beyond = np.std(np.log(predict_draws(curves, hi * factor, draws, z)), axis=0)
        return beyond / np.std(np.log(curves.predict((hi * factor)[None, :], draws)), axis=0)

    near, far = widening(1.05), widening(3.0)
    assert (near < 1.25).all() and (far > near + 0.5).all()


def test_streaks_in_the_residuals_widen_the_fit():
    iid = fit_curves(_stepped(n=5, days=120, seed=6, noise=0.3, rho=0.0))
    streaky = fit_curves(_stepped(n=5, days=120, seed=6, noise=0.3, rho=0.8))
    assert (streaky.diagnostics["streak_factor"] > 1.5).mean() >= 0.6
    assert np.median(streaky.cov[:, 1, 1] / np.maximum(iid.cov[:, 1, 1], 1e-12)) > 1.5


def test_an_unidentified_slope_stays_off_the_bounds():
    """Flat budgets (nothing to learn the slope from): the slope is the prior's middle, not a bound."""
    curves = fit_curves(_stepped(n=4, days=30, seed=7, flat=True))
    assert curves.diagnostics["pooled"].all()
    assert (np.abs(curves.params[:, 1] - 0.5) < 0.2).all()


# ----------------------------------------------------------------------------- the plan
def test_the_plan_is_never_more_confident_than_its_weakest_material_change():
    df = _stepped(n=6, days=90, seed=8)
    rec = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=2.0, extrapolation="mark"))
    a = rec.assessment
    material = a.table[a.table["material"]]
    assert len(material)
    assert rec.plan_confidence <= material["confidence"].min() + 1e-9
    assert rec.plan_confidence <= a.plan_model + 1e-9
    if rec.plan_confidence < a.plan_model:
        assert not a.limiting.empty and a.limiting["confidence"].iloc[0] == pytest.approx(rec.plan_confidence)
        assert a.plan_reason().startswith(f"plan confidence {rec.plan_confidence:.0f}, held down by")


def _first_beyond_the_edge(factor: float):
    """Three fitted campaigns at the middle of their evidence, the first moved to ``factor`` x its highest
    observed spend: (curves, highest observed spends, old budgets, new budgets)."""
    curves = fit_curves(_stepped(n=3, days=90, seed=9))
    lo, hi = evidence_range(curves)
    old = np.sqrt(lo * hi)
    new = old.copy()
    new[0] = hi[0] * factor
    return curves, hi, old, new


def test_assessment_words_name_the_campaign_and_the_reason():
    curves, hi, old, new = _first_beyond_the_edge(2.5)
    a = assess_budget_changes(curves, old, new, hurdle=0.5, labels=["Search", "Social", "Video"])
    row = a.table.iloc[0]
    assert row["label"] == "Search" and row["extrapolated"] and "highest daily spend observed" in row["limit"]
    assert np.isnan(a.table["confidence"].iloc[1])  # unchanged


# ----------------------------------------------------------------------------- exact totals and holds
@pytest.mark.parametrize("factor", [0.9, 1.0, 1.07, 1.2])
def test_the_proposal_spends_exactly_the_total_it_states(factor):
    df = _stepped(n=7, days=60, seed=10)
    base = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=0.5))
    total = float(np.round(base.budget_table["current_budget"].sum() * factor, 2))
    rec = recommend(df, FixedBudget(total=total), settings=RecommendSettings(max_change=0.5))
    assert rec.stated_total == Decimal(f"{total:.2f}")
    assert sum(rec.proposal.values()) == rec.stated_total
    assert all(v == v.quantize(Decimal("0.01")) for v in rec.proposal.values())
    np.testing.assert_allclose(rec.budget_table["new_budget"], [float(v) for v in rec.proposal.values()])
    budget_changes = [d for d in rec.changes if d.field == "budget"]
    unchanged = rec.budget_table["new_budget"].round(2) == rec.budget_table["current_budget"].round(2)
    assert len(budget_changes) == int((~unchanged).sum())
    assert float(sum((d.new_value for d in budget_changes), Decimal(0))) + rec.budget_table.loc[unchanged, "current_budget"].sum() \
        == pytest.approx(total, abs=1e-9)


def test_changes_the_curves_do_not_favour_are_held_and_said():
    """Short, noisy history: the moves the curves favour less than min_confidence keep today's budget."""
    df = _stepped(n=6, days=14, seed=11, noise=0.6)
    loose = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=0.5, min_confidence=0))
    weak = loose.budget_table["model_confidence"] < 50
    assert weak.any(), "the data gives some moves the curves do not favour"
    rec = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=0.5, min_confidence=50))
    t = rec.budget_table
    moved = t["new_budget"].round(2) != t["current_budget"].round(2)
    assert (t.loc[moved, "model_confidence"] >= 50).all()
    assert any("kept at today's budget" in n for n in rec.notes)
    assert rec.stated_total == sum(rec.proposal.values())
    assert float(rec.stated_total) == pytest.approx(t["current_budget"].sum(), abs=1e-9)  # the total is still spent


# ----------------------------------------------------------------------------- typed request
@pytest.mark.parametrize("kwargs, message", [
    ({"max_change": -0.1}, "max change"),
    ({"extrapolation": "ignore"}, "extrapolation must be one of"),
    ({"extrapolated_confidence_cap": 120}, "extrapolated confidence cap must be between 0 and 100"),
    ({"n_draws": 5}, "n_draws"),
    ({"curve_model": "spline"}, "curve model"),
    ({"metric": "revenue"}, "metric must be one of"),
    ({"level": "ad"}, "level must be one of"),
    ({"min_change": 2}, "min change must be between 0 and 1"),
], ids=["negative max change", "unknown extrapolation", "cap above 100", "too few draws", "unknown curve", "unknown metric",
        "ads hold no budget", "min change above 100%"])
def test_settings_refuse_what_cannot_be_used(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        RecommendSettings(**kwargs)


def test_settings_round_trip_for_storage():
    s = RecommendSettings(max_change=0.5, extrapolation="mark", level="auto", metric="conversions", seed=3)
    assert RecommendSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="unknown recommend settings"):
        RecommendSettings.from_dict({"max_chnge": 0.1})


def test_a_contradictory_keyword_request_is_refused():
    df = _stepped()
    with pytest.raises(SettingsError, match="either marginal_floor or total_budget"):
        recommend(df, marginal_floor=1.2, total_budget=500.0)
    with pytest.raises(SettingsError, match="not both"):
        recommend(df, FixedBudget(), max_change=0.2)


def test_the_keyword_form_and_the_typed_form_agree():
    df = _stepped(n=5)
    a = recommend(df, total_budget=800.0, max_change=0.4, target_roas=None)
    b = recommend(df, FixedBudget(total=800.0), settings=RecommendSettings(max_change=0.4))
    np.testing.assert_allclose(a.budget_table["new_budget"], b.budget_table["new_budget"])
    c = recommend(df, marginal_floor=1.5, target_roas=2.0, max_change=0.4)
    d = recommend(df, MarginalFloor(floor=1.5), settings=RecommendSettings(max_change=0.4, guide_roas=2.0))
    np.testing.assert_allclose(c.budget_table["new_budget"], d.budget_table["new_budget"])


def test_a_problem_is_solved_for_several_objectives():
    df = _stepped(n=5)
    problem = build_problem(df, settings=RecommendSettings(max_change=0.5), limits=Limits(locked=("c1",)))
    lo, hi = problem.feasible_total
    assert lo < problem.current.sum() < hi
    for objective in (FixedBudget(total=lo), FixedBudget(total=hi), TargetRoas(target=1.0), MarginalFloor(floor=1.0)):
        rec = solve(problem, objective)
        assert rec.budget_table.set_index("external_id").loc["c1", "new_budget"] == pytest.approx(
            rec.budget_table.set_index("external_id").loc["c1", "current_budget"])
    assert float(solve(problem, FixedBudget(total=lo)).stated_total) == pytest.approx(round(lo, 2), abs=0.011)


def test_account_state_budgets_from_a_shared_budget_are_not_one_campaigns():
    df = _stepped(n=3)
    budgets = pd.DataFrame({"platform": "meta", "external_id": ["c0", "c1", "c2"], "daily_budget": [100.0, 200.0, 300.0],
                            "shared_budget": [False, True, False]})
    problem = build_problem(df, account=AccountState(budgets=budgets))
    assert problem.known.tolist() == [True, False, True]
    assert problem.current[0] == 100.0 and problem.current[2] == 300.0


def test_a_curve_of_the_wrong_form_is_poor_however_high_its_r2():
    """Value that stops growing at a hard ceiling inside the history, read as a power law: R² stays high
    (spend explains most of the value) but the bins of similar spend show the pattern the curve misses."""
    df = _stepped(n=3, days=120, seed=9, noise=0.05)
    c0 = df["external_id"] == "c0"
    ceiling = df.loc[c0, "spend"].median()
    df.loc[c0, "conversion_value"] = 4.0 * np.minimum(df.loc[c0, "spend"], ceiling) * np.exp(
        np.random.default_rng(1).normal(0, 0.05, c0.sum()))
    curves = fit_curves(df)
    d = curves.diagnostics.set_index(curves.keys["external_id"].to_numpy())
    assert d.loc["c0", "r2"] > 0.5 and d.loc["c0", "lack_of_fit_p"] < 1e-4
    assert (d.drop(index="c0")["lack_of_fit_p"] > 0.01).all()  # right forms pass
    fq = fit_quality(curves).set_index(curves.keys["external_id"].to_numpy())
    assert fq.loc["c0", "fit"] == "poor" and "lack-of-fit test" in fq.loc["c0", "why"]
    assert fq.loc["c0", "cap"] == ConfidencePolicy().poor_fit_cap


def test_the_lack_of_fit_test_holds_its_level_on_right_curves():
    """On power-law campaigns with independent noise the test rejects about as often as its level says."""
    p = fit_curves(_stepped(n=200, days=60, seed=12, noise=0.4)).diagnostics["lack_of_fit_p"].to_numpy()
    assert np.isfinite(p).all()
    assert (p < 0.05).mean() < 0.12 and (p < 0.01).mean() < 0.05
