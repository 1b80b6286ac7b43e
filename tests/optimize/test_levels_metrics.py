"""Spend at any level (roll up to campaigns, or the level where budgets live) and spend without value."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.optimize.levels import LevelError, LevelInfo, budget_level, resolve_level
from core.optimize.metrics import METRICS, MetricError, available_metrics, choose_metric
from core.optimize.recommend import recommend
from core.optimize.settings import AccountState, FixedBudget, RecommendSettings, TargetRoas

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"111": ["g1", "g2", "g3"], "222": ["g4", "g5"]}


def _ad_groups(days=42, seed=1, with_parent=True, value=True) -> pd.DataFrame:
    """Five Google ad groups in two campaigns, budgets moving weekly, value = a * spend^0.6."""
    rng = np.random.default_rng(seed)
    rows = []
    for camp, groups in GROUPS.items():
        for g in groups:
            base = rng.uniform(50, 200)
            spend = base * np.repeat(rng.uniform(0.6, 1.5, days // 7 + 1), 7)[:days]
            v = 5 * spend**0.6 * rng.lognormal(-0.02, 0.2, days)
            frame = pd.DataFrame({"date": pd.date_range("2026-01-01", periods=days), "platform": "google", "account_id": "555",
                                  "entity_type": "ad_group", "external_id": g, "entity_name": f"Group {g}", "spend": spend,
                                  "impressions": (spend * 30).astype(int), "clicks": (spend).astype(int),
                                  "conversions": np.round(spend / 30, 1), "conversion_value": v if value else 0.0,
                                  "currency": "USD", "segment_type": "", "segment_value": ""})
            if with_parent:
                frame["campaign_id"] = camp
                frame["campaign_name"] = f"Campaign {camp}"
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------- levels
def test_ad_groups_roll_up_to_their_campaigns_exactly():
    df = _ad_groups()
    rows, info = resolve_level(df, "campaign")
    assert info == LevelInfo(level="campaign", n_entities=2, rolled_up_from="ad_group", n_children=5)
    assert info.describe() == "2 campaigns (rolled up from 5 ad groups)"
    assert set(rows["external_id"]) == {"111", "222"} and set(rows["entity_type"]) == {"campaign"}
    assert set(rows["entity_name"]) == {"Campaign 111", "Campaign 222"}
    for camp, groups in GROUPS.items():  # money is conserved, day by day
        mine = df[df["external_id"].isin(groups)].groupby("date")[["spend", "conversion_value", "clicks"]].sum()
        got = rows[rows["external_id"] == camp].set_index("date")[["spend", "conversion_value", "clicks"]]
        pd.testing.assert_frame_equal(got.sort_index(), mine.sort_index(), check_dtype=False)


def test_ad_groups_optimized_at_their_own_level_are_counted_in_their_campaigns():
    rows, info = resolve_level(_ad_groups(), "ad_group")
    assert info.describe() == "5 ad groups in 2 campaigns"
    assert sorted(rows["external_id"].unique()) == ["g1", "g2", "g3", "g4", "g5"]


@pytest.mark.parametrize("level, message", [
    ("campaign", "5 ad groups (e.g. g1) carry no campaign id, so they cannot be rolled up to campaigns"),
    ("ad_set", "the data has no ad set rows to optimize at ad set level; it has 5 ad groups"),
], ids=["roll-up without campaign ids", "a level the data does not have"])
def test_a_level_the_data_cannot_serve_says_what_is_missing(level, message):
    with pytest.raises(LevelError, match=re.escape(message)):
        resolve_level(_ad_groups(with_parent=False), level)


def test_the_campaign_of_an_ad_group_may_come_from_the_live_entities():
    df = _ad_groups(with_parent=False)
    ents = pd.DataFrame({"entity_type": ["campaign", "campaign"] + ["ad_group"] * 5, "external_id": ["111", "222", "g1", "g2", "g3", "g4", "g5"],
                         "parent_id": [None, None, "111", "111", "111", "222", "222"],
                         "entity_name": ["Brand", "Generic"] + [""] * 5, "daily_budget": [100.0, 80.0] + [None] * 5})
    rows, info = resolve_level(df, "campaign", ents)
    assert info.describe() == "2 campaigns (rolled up from 5 ad groups)" and info.budget_level == "campaign"
    assert set(rows["entity_name"]) == {"Brand", "Generic"}


def test_auto_optimizes_where_the_budgets_live():
    """Meta without campaign budget optimization: budgets on the ad sets, so auto works on ad sets."""
    df = _ad_groups().assign(entity_type="ad_set", platform="meta")
    camps = df.groupby(["date", "campaign_id"], as_index=False)[["spend", "conversion_value", "clicks", "impressions", "conversions"]].sum()
    camps = camps.rename(columns={"campaign_id": "external_id"}).assign(entity_type="campaign", platform="meta", account_id="555",
                                                                       entity_name="C", currency="USD", segment_type="", segment_value="")
    both = pd.concat([df.drop(columns=["campaign_id", "campaign_name"]), camps], ignore_index=True)
    abo = pd.DataFrame({"platform": "meta", "entity_type": ["campaign", "ad_set"], "external_id": ["111", "g1"],
                        "parent_id": [None, "111"], "daily_budget": [None, 50.0]})
    cbo = abo.assign(daily_budget=[200.0, None])
    assert budget_level(abo) == "ad_set" and budget_level(cbo) == "campaign" and budget_level(None) is None
    assert resolve_level(both, "auto", abo)[1].level == "ad_set"
    assert resolve_level(both, "auto", cbo)[1].level == "campaign"
    rec = recommend(both, FixedBudget(), settings=RecommendSettings(level="auto"), account=AccountState(budgets=abo, entities=abo))
    assert rec.level.level == "ad_set" and rec.level.executable
    assert set(rec.budget_table["entity_type"]) == {"ad_set"}
    # asked for campaigns while the budgets live on the ad sets: allowed, and said
    rec = recommend(both, FixedBudget(), settings=RecommendSettings(level="campaign"), account=AccountState(entities=abo))
    assert not rec.level.executable and any("live at ad set level" in n for n in rec.notes)


def test_recommend_on_rolled_up_campaigns_spends_the_total_and_names_the_level():
    df = _ad_groups()
    today = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=0.5)).budget_table["current_budget"].sum()
    total = round(today * 1.05, 2)
    rec = recommend(df, FixedBudget(total=total), settings=RecommendSettings(max_change=0.5))
    assert rec.level.describe() == "2 campaigns (rolled up from 5 ad groups)"
    assert float(rec.stated_total) == total and sum(rec.proposal.values()) == rec.stated_total
    assert any("sum of its ad groups" in n for n in rec.notes)
    assert {d.external_id for d in rec.changes if d.field == "budget"} <= {"111", "222"}


# ----------------------------------------------------------------------------- metrics
def test_no_value_means_conversions_labelled_as_such():
    df = _ad_groups(value=False)
    assert available_metrics(df) == ["conversions", "clicks"]
    m = choose_metric(df)
    assert m is METRICS["conversions"] and m.efficiency_label == "Cost per conversion"
    rec = recommend(df, FixedBudget(), settings=RecommendSettings(level="ad_group", max_change=0.5))
    assert rec.metric.key == "conversions"
    assert any("no conversion value" in n and "conversions" in n for n in rec.notes)
    t = rec.budget_table  # the curves predict conversions: their totals are the data's
    assert t["value_now"].sum() == pytest.approx(df.groupby("date")["conversions"].sum().mean() * 1.0, rel=0.5)
    reasons = " ".join(d.reason for d in rec.changes if d.field == "budget")
    assert "cost per conversion" in reasons and "ROAS" not in reasons


def test_a_target_cost_per_conversion_becomes_the_engines_ratio():
    df = _ad_groups(value=False)
    m = choose_metric(df)
    assert m.to_ratio(25.0) == pytest.approx(0.04) and m.efficiency(0.04) == pytest.approx(25.0)
    rec = recommend(df, TargetRoas(target=m.to_ratio(40.0)), settings=RecommendSettings(level="ad_group", max_change=0.5))
    spent, got = float(rec.stated_total), rec.allocation.total_value
    assert spent / got <= 40.0 + 1e-6  # the plan's cost per conversion reaches the target


def test_an_unreachable_cost_per_conversion_is_refused_in_its_own_words():
    from core.optimize.allocate import InfeasibleError

    df = _ad_groups(value=False)
    m = choose_metric(df)
    with pytest.raises(InfeasibleError) as err:
        recommend(df, TargetRoas(target=m.to_ratio(0.01)), settings=RecommendSettings(level="ad_group", max_change=0.5))
    text = str(err.value)
    assert "the target cost per conversion 0.01 is out of reach" in text and "ROAS" not in text
    assert re.search(r"predict cost per conversion \d", text)


@pytest.mark.parametrize("columns, requested, message", [
    ({"conversion_value": 0.0}, "value", "cannot optimize value: the performance data is zero on every row 'conversion_value'; "
                                         "it has conversions, clicks: optimize that instead"),
    ({"conversion_value": 0.0, "conversions": 0.0, "clicks": 0}, "auto",
     "has spend but no conversion value, conversions or clicks"),
], ids=["value asked, none recorded", "nothing but spend"])
def test_spend_without_any_outcome_says_exactly_what_is_missing(columns, requested, message):
    df = _ad_groups().assign(**columns)
    with pytest.raises(MetricError, match=re.escape(message)):
        recommend(df, FixedBudget(), settings=RecommendSettings(level="ad_group", metric=requested))


# ----------------------------------------------------------------------------- the command line
def _write_export(tmp_path, value=True) -> Path:
    """A Fivetran-style Google Ads ad-group export (campaign id and name beside each ad group)."""
    df = _ad_groups(value=value)
    out = pd.DataFrame({"date_day": df["date"].dt.strftime("%Y-%m-%d"), "platform": "google_ads", "account_id": "555",
                        "campaign_id": df["campaign_id"], "campaign_name": df["campaign_name"], "ad_group_id": df["external_id"],
                        "ad_group_name": df["entity_name"], "spend": df["spend"].round(2), "clicks": df["clicks"],
                        "impressions": df["impressions"], "conversions": df["conversions"],
                        "conversions_value": df["conversion_value"].round(2), "currency": "USD"})
    path = tmp_path / "ad_groups.csv"
    out.to_csv(path, index=False)
    return path


def _today(path) -> float:
    """Today's total budget of the export: the mean daily spend of its last 7 days."""
    df = pd.read_csv(path, parse_dates=["date_day"])
    return float(df[df["date_day"] > df["date_day"].max() - pd.Timedelta(days=7)]["spend"].sum() / 7)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "core", "optimize", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_optimizes_an_ad_group_export_at_the_level_asked(tmp_path):
    """Google Ads budgets live on campaigns: auto rolls the ad groups up to the campaigns the import kept;
    ``--level ad_group`` optimizes the ad groups themselves. Never "campaigns 5"."""
    path = _write_export(tmp_path)
    budget = round(_today(path), 2)
    for level, entities in (("ad_group", r"5 ad groups in 2 campaigns"), ("auto", r"2 campaigns \(rolled up from 5 ad groups\)")):
        run = _cli(path, "--budget", budget, "--level", level, "--json")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert re.fullmatch(entities, out["entities"]), out["entities"]
        assert out["total_budget"] == budget and sum(c["new_budget"] for c in out["campaigns"]) == pytest.approx(budget, abs=1e-6)
    text = _cli(path, "--budget", budget, "--level", "ad_group")
    assert text.returncode == 0 and re.search(r"Optimizing 5 ad groups", text.stdout)
    camp = _cli(path, "--budget", budget, "--json")
    assert camp.returncode == 0 and json.loads(camp.stdout)["entities"] == "2 campaigns (rolled up from 5 ad groups)"


def test_cli_without_value_optimizes_conversions_and_says_so(tmp_path):
    path = _write_export(tmp_path, value=False)
    run = _cli(path, "--budget", round(_today(path), 2), "--level", "auto")
    assert run.returncode == 0, run.stderr
    assert "maximizing conversions" in run.stdout and "Cost per conversion" in run.stdout
    assert "Predicted conversions" in run.stdout
    bad = _cli(path, "--budget", round(_today(path), 2), "--level", "auto", "--metric", "value")
    assert bad.returncode == 2 and "cannot optimize value" in bad.stderr and "conversions" in bad.stderr
