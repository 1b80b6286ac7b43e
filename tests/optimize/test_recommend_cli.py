"""Recommendations as draft changes, today's budgets from ad_entities, and the CLI."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.changes import DraftChange
from core.optimize.allocate import InfeasibleError
from core.optimize.cli import optimize_command
from core.optimize.recommend import current_budgets_from_entities, recommend
from core.store.db import make_engine, transaction
from core.store.models import AdEntity


def _perf(sim):
    df, _, _ = sim(6, 45, seed=21)
    burn = df["external_id"] == "c0005"
    df.loc[burn, ["conversions", "conversion_value"]] = 0.0
    return df


def test_recommend_produces_draft_changes(sim):
    df = _perf(sim)
    budgets = {("meta", f"c000{i}"): 150.0 + 20 * i for i in range(5)}  # c0005 unknown -> last 7 days spend
    rec = recommend(df, total_budget=1000.0, current_budgets=budgets, confidence_threshold=90, max_change=0.3)
    assert all(isinstance(c, DraftChange) for c in rec.changes)
    status = [c for c in rec.changes if c.field == "status"]
    assert [(c.external_id, c.old_value, c.new_value) for c in status] == [("c0005", "ACTIVE", "PAUSED")]
    budget = [c for c in rec.changes if c.field == "budget"]
    assert budget and all(isinstance(c.old_value, Decimal) and c.new_value == c.new_value.quantize(Decimal("0.01")) for c in budget)
    for c in budget:
        row = rec.budget_table.set_index("external_id").loc[c.external_id]
        assert float(c.new_value) == pytest.approx(row["new_budget"], abs=0.005)
        assert abs(float(c.new_value) / float(c.old_value) - 1) <= 0.3 + 1e-3
        assert 0 <= c.confidence <= 100 and c.auto_approve == (c.confidence >= 90)
        assert c.reason and ("Raise" in c.reason or "Cut" in c.reason)
    # the paused campaign's money is reallocated; the total holds
    assert rec.allocation.total_budget == pytest.approx(1000.0)
    assert rec.budget_table.set_index("external_id").loc["c0005", "new_budget"] == 0
    assert rec.budget_table.set_index("external_id").loc["c0005", "budget_source"] == "mean spend, last 7 days"
    assert any("mean daily spend" in n for n in rec.notes)


def test_a_minimum_budget_outranks_the_advice_to_pause(sim):
    """A campaign the user gave a minimum budget is not paused behind their back: it keeps its minimum."""
    df = _perf(sim)
    budgets = {("meta", f"c000{i}"): 150.0 + 20 * i for i in range(6)}
    rec = recommend(df, total_budget=1000.0, current_budgets=budgets, min_budget={"c0005": 120.0}, max_change=0.3)
    assert not [c for c in rec.changes if c.field == "status"]
    assert rec.budget_table.set_index("external_id").loc["c0005", "new_budget"] >= 120.0 - 1e-9
    assert any("not pausing meta:c0005" in n for n in rec.notes)


def test_unknown_budget_is_said_in_the_reason(sim):
    df, _, _ = sim(4, 40, seed=22)
    rec = recommend(df, max_change=0.5)
    assert rec.allocation.total_budget == pytest.approx(rec.budget_table["current_budget"].sum())
    assert rec.changes and all("mean daily spend of the last 7 days" in c.reason for c in rec.changes if c.field == "budget")
    assert rec.allocation.total_value >= rec.budget_table["value_now"].sum() - 1e-6


def test_locked_and_bids(sim):
    df, _, _ = sim(4, 40, seed=23)
    rec = recommend(df, total_budget=900.0, current_budgets={"meta:c0000": 200, "meta:c0001": 200, "meta:c0002": 200, "meta:c0003": 200},
                    locked=["c0001"], target_roas=0.5, current_bids={("meta", "c0002"): 0.10}, max_change=0.5)
    t = rec.budget_table.set_index("external_id")
    assert t.loc["c0001", "new_budget"] == pytest.approx(200)
    bids = [c for c in rec.changes if c.field == "bid"]
    assert [c.external_id for c in bids] == ["c0002"] and float(bids[0].new_value) == pytest.approx(0.15)
    assert "shrunk toward the account" in bids[0].reason
    with pytest.raises(ValueError, match="not in the performance data"):
        recommend(df, locked=["zzz"])


def test_guide_roas_gives_bids_under_the_plain_budget_split(sim):
    """The best split of a total budget still suggests bids, aimed at the guide ROAS, without changing the split."""
    df, _, _ = sim(4, 40, seed=23)
    budgets = {"meta:c0000": 200, "meta:c0001": 200, "meta:c0002": 200, "meta:c0003": 200}
    plain = recommend(df, total_budget=800.0, current_budgets=budgets, current_bids={("meta", "c0002"): 0.10}, max_change=0.5)
    guided = recommend(df, total_budget=800.0, current_budgets=budgets, current_bids={("meta", "c0002"): 0.10}, max_change=0.5,
                       guide_roas=0.5)
    assert not [c for c in plain.changes if c.field == "bid"]
    bids = [c for c in guided.changes if c.field == "bid"]
    assert [c.external_id for c in bids] == ["c0002"] and "target ROAS 0.5" in bids[0].reason
    np.testing.assert_allclose(guided.allocation.budgets, plain.allocation.budgets)


def test_current_budgets_from_entities(sim, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with transaction(engine, "w") as s:
        s.add(AdEntity(platform="meta", account_id="act1", entity_type="campaign", external_id="c0000", name="A",
                       status="ACTIVE", daily_budget=Decimal("123.45"), currency="USD"))
        s.add(AdEntity(platform="meta", account_id="act1", entity_type="campaign", external_id="c0001", name="B",
                       status="PAUSED", daily_budget=None, currency="USD"))
    cur = current_budgets_from_entities(engine, workspace_id="w")
    assert cur.set_index("external_id").loc["c0000", "daily_budget"] == pytest.approx(123.45)
    assert np.isnan(cur.set_index("external_id").loc["c0001", "daily_budget"])
    df, _, _ = sim(3, 30, seed=24)
    rec = recommend(df, current_budgets=cur, statuses=cur, max_change=0.3)
    t = rec.budget_table.set_index("external_id")
    assert t.loc["c0000", "current_budget"] == pytest.approx(123.45) and t.loc["c0000", "budget_source"] == "platform budget"
    assert t.loc["c0001", "budget_source"] == "mean spend, last 7 days"
    engine.dispose()


def test_cli_text_and_json(sim, tmp_path):
    df, _, _ = sim(5, 40, seed=25)
    path = tmp_path / "perf.csv"
    df.to_csv(path, index=False)
    today = df[df["date"] > df["date"].max() - pd.Timedelta(days=7)].groupby("external_id")["spend"].sum().sum() / 7
    text = optimize_command(str(path), today * 1.1)
    assert "meta:c0000" in text and "Predicted value" in text and "marginal ROAS" in text
    out = json.loads(optimize_command(str(path), today * 1.1, as_json=True))
    assert out["total_budget"] == pytest.approx(today * 1.1, abs=0.01)
    assert len(out["campaigns"]) == 5 and out["predicted_value"] > out["current_predicted_value"]
    assert sum(c["new_budget"] for c in out["campaigns"]) == pytest.approx(today * 1.1, abs=0.05)
    with pytest.raises(InfeasibleError, match="above the sum of maximum budgets"):
        optimize_command(str(path), today * 3)
    with pytest.raises(FileNotFoundError):
        optimize_command(str(tmp_path / "missing.csv"), 100)
    with pytest.raises(ValueError, match="positive"):
        optimize_command(str(path), 0)


def _exports(sim, tmp_path):
    """The same 45-day history of 4 campaigns written as a Meta, a Google Ads and a Fivetran export."""
    df, _, _ = sim(4, 45, seed=26)
    day = df["date"].dt.strftime("%Y-%m-%d")
    meta = pd.DataFrame({"Reporting starts": day, "Reporting ends": day, "Campaign name": df["entity_name"],
                         "Campaign ID": df["external_id"], "Amount spent (EUR)": df["spend"].round(2), "Impressions": df["impressions"],
                         "Link clicks": df["clicks"], "Results": df["conversions"], "Purchases conversion value": df["conversion_value"].round(2)})
    google = pd.DataFrame({"Day": day, "Campaign": df["entity_name"], "Campaign ID": df["external_id"], "Currency code": "USD",
                           "Cost": df["spend"].round(2), "Impr.": df["impressions"], "Clicks": df["clicks"],
                           "Conversions": df["conversions"], "Conv. value": df["conversion_value"].round(2)})
    fivetran = pd.DataFrame({"date_day": day, "platform": "facebook_ads", "account_id": "act1", "campaign_id": df["external_id"],
                             "campaign_name": df["entity_name"], "spend": df["spend"].round(2), "clicks": df["clicks"],
                             "impressions": df["impressions"], "conversions": df["conversions"],
                             "conversions_value": df["conversion_value"].round(2), "currency": "GBP"})
    paths = {}
    for name, frame in (("meta.csv", meta), ("google.csv", google), ("fivetran.csv", fivetran), ("canonical.csv", df)):
        paths[name] = tmp_path / name
        frame.to_csv(paths[name], index=False)
    return df, paths


@pytest.mark.parametrize("name, platform, currency", [("meta.csv", "meta", "EUR"), ("google.csv", "google", "USD"),
                                                      ("fivetran.csv", "meta", "GBP"), ("canonical.csv", "meta", "USD")])
def test_cli_end_to_end_on_platform_exports(sim, tmp_path, name, platform, currency):
    """`python -m core optimize FILE --budget B --json` in a subprocess, on each export format."""
    import subprocess
    import sys
    from pathlib import Path

    df, paths = _exports(sim, tmp_path)
    last7 = df[df["date"] > df["date"].max() - pd.Timedelta(days=7)]
    today = last7.groupby("external_id")["spend"].sum() / 7
    budget = round(float(today.sum()) * 1.1, 2)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "core", "optimize", str(paths[name]), "--budget", str(budget), "--max-change", "0.3",
                          "--json"], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["currency"] == [currency]
    assert out["total_budget"] == pytest.approx(budget, abs=0.01)
    rows = {c["external_id"]: c for c in out["campaigns"]}
    assert sorted(rows) == sorted(today.index) and {c["platform"] for c in out["campaigns"]} == {platform}
    for xid, c in rows.items():
        assert c["current_budget"] == pytest.approx(today[xid], abs=0.02)
        assert abs(c["new_budget"] / c["current_budget"] - 1) <= 0.3 + 1e-3  # --max-change held
    assert out["predicted_value"] > out["current_predicted_value"]
    # the same allocation as the engine on the frame directly (the file round trip loses only cents)
    direct = json.loads(optimize_command(str(paths["canonical.csv"]), budget, as_json=True))
    np.testing.assert_allclose(sorted(c["new_budget"] for c in out["campaigns"]), sorted(c["new_budget"] for c in direct["campaigns"]),
                               rtol=2e-3)
    text = subprocess.run([sys.executable, "-m", "core", "optimize", str(paths[name]), "--budget", str(budget), "--target-roas", "1.5"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "Predicted value" in text.stdout and f"{currency} a day" in text.stdout and ("ROAS >= 1.5" in text.stdout or "target ROAS 1.5" in text.stdout)


def test_cli_bad_input_exits_with_a_clear_message(sim, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    _, paths = _exports(sim, tmp_path)
    journeys = tmp_path / "journeys.csv"
    journeys.write_text("user_id,timestamp,channel\nu1,2024-01-01T00:00:00Z,email\n")
    cases = [
        ([str(tmp_path / "missing.csv"), "--budget", "100"], "performance file not found"),
        ([str(journeys), "--budget", "100"], "not campaign performance"),
        ([str(paths["meta.csv"]), "--budget", "1"], "below the sum of minimum budgets"),
    ]
    for args, message in cases:
        run = subprocess.run([sys.executable, "-m", "core", "optimize", *args], cwd=root, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
