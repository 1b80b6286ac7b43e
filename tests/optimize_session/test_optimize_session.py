"""The Optimizer page's glue: data sources, loading, today's budgets, value source, controls, tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from core.changes import DraftChange
from core.optimize import session as S
from core.optimize.allocate import Bounds, InfeasibleError, allocate, build_bounds
from core.optimize.recommend import build_problem, recommend
from core.optimize.settings import AccountState, FixedBudget, MarginalFloor, SettingsError, TargetRoas
from core.response import fit_curves
from core.store.db import make_engine, transaction
from core.store.models import AdEntity, AttributionRun, Dataset, PerformanceDaily

WS = "default"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """One database with the synced sandbox account (module-scoped: creating it takes ~1 s)."""
    eng = make_engine("sqlite:///" + str(tmp_path_factory.mktemp("sess") / "t.db"))
    src = S.ensure_sandbox(eng, WS)
    yield eng, src
    eng.dispose()


def _import_perf(eng, ws, name, days=20, campaigns=(("meta", "m1", 100.0, 3.0), ("google", "g1", 50.0, 5.0))):
    """A small imported performance data set with known spend (spend rises 1 % a day) and ROAS."""
    with transaction(eng, ws) as s:
        ds = Dataset(name=name, kind="performance", source="test.csv")
        s.add(ds)
        s.flush()
        d0 = dt.date(2026, 1, 1)
        for plat, xid, spend, roas in campaigns:
            for d in range(days):
                sp = spend * (1.0 + 0.01 * d) * (1.3 if d % 3 == 0 else 0.8)
                s.add(PerformanceDaily(dataset_id=ds.id, platform=plat, account_id="acc", external_id=xid,
                                       entity_name=f"{plat} campaign", date=d0 + dt.timedelta(days=d),
                                       spend=Decimal(f"{sp:.2f}"), conversion_value=Decimal(f"{sp * roas * (1 + 0.05 * np.sin(d)):.2f}"),
                                       clicks=100, impressions=1000, conversions=5.0))
        return ds.id


def test_sources_sandbox_first_then_imports(sandbox):
    eng, src = sandbox
    assert S.list_sources(eng, "empty-ws") == []
    ds_id = _import_perf(eng, "imports", "perf.csv")
    assert [s.kind for s in S.list_sources(eng, "imports")] == ["dataset"]
    ds2 = _import_perf(eng, WS, "perf.csv")
    srcs = S.list_sources(eng, WS)
    assert [s.kind for s in srcs] == ["sync", "dataset"]
    assert srcs[0] == src and (src.platform, src.account_id, src.entity_platform) == ("sandbox", "sandbox-1", "sandbox")
    assert srcs[1].dataset_id == ds2 != ds_id and srcs[1].platform is None and srcs[1].entity_platform is None
    assert S.entity_state(eng, WS, srcs[1]).empty


def test_load_performance_canonical_and_exact(sandbox):
    eng, src = sandbox
    df = S.load_performance(eng, WS, src.dataset_id)
    assert list(df.columns) == S.PERFORMANCE_COLUMNS
    assert df["spend"].dtype == np.float64 and df["clicks"].dtype == np.int64
    assert (df["date"] == df["date"].dt.normalize()).all()
    with transaction(eng, WS) as s:
        rows = s.execute(select(PerformanceDaily.spend).where(PerformanceDaily.dataset_id == src.dataset_id)).scalars().all()
    assert len(df) == len(rows)
    assert df["spend"].sum() == pytest.approx(float(sum(rows, Decimal(0))), rel=1e-12)
    with pytest.raises(S.OptimizerInputError, match="does not exist"):
        S.load_performance(eng, WS, 99999)
    with pytest.raises(S.OptimizerInputError, match="does not exist"):
        S.load_performance(eng, "other", src.dataset_id)  # not visible from another workspace


def test_todays_budgets_live_and_fallback(sandbox, tmp_path):
    """Live budgets from the account; an imported data set's from its last 7 days of spend."""
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    ents = S.entity_state(eng, WS, src)
    problem = build_problem(perf, account=AccountState(budgets=ents))
    with transaction(eng, WS) as s:
        live = {e.external_id: float(e.daily_budget) for e in s.scalars(select(AdEntity).where(
            AdEntity.platform == "sandbox", AdEntity.entity_type == "campaign"))}
    assert problem.known.all()
    assert dict(zip(problem.curves.keys["external_id"], problem.current)) == live

    eng2 = make_engine("sqlite:///" + str(tmp_path / "f.db"))
    ds_id = _import_perf(eng2, WS, "perf.csv")
    src2 = next(s for s in S.list_sources(eng2, WS) if s.dataset_id == ds_id)
    perf2 = S.load_performance(eng2, WS, ds_id)
    p2 = build_problem(perf2, account=AccountState(budgets=S.entity_state(eng2, WS, src2)))
    last7 = perf2[perf2["date"] > perf2["date"].max() - pd.Timedelta(days=7)]
    expect = last7.groupby("external_id")["spend"].sum() / 7
    assert not p2.known.any()
    for xid, cur in zip(p2.curves.keys["external_id"], p2.current):
        assert cur == pytest.approx(expect[xid], abs=0.005)
    eng2.dispose()


def test_fingerprint_tracks_data_and_budgets(sandbox):
    eng, src = sandbox
    a = S.fingerprint(eng, WS, src)
    assert S.fingerprint(eng, WS, src) == a
    with transaction(eng, WS) as s:
        row = s.scalars(select(AdEntity).where(AdEntity.platform == "sandbox", AdEntity.entity_type == "campaign")).first()
        old = row.daily_budget
        row.daily_budget = old + Decimal("1.00")
    b = S.fingerprint(eng, WS, src)
    assert b != a
    with transaction(eng, WS) as s:
        s.execute(update(AdEntity).where(AdEntity.id == row.id).values(daily_budget=old))
    assert S.fingerprint(eng, WS, src) == a
    with transaction(eng, WS) as s:
        p = s.scalars(select(PerformanceDaily).where(PerformanceDaily.dataset_id == src.dataset_id)).first()
        p.spend = p.spend + Decimal("0.01")
    assert S.fingerprint(eng, WS, src) not in (a, b)
    with transaction(eng, WS) as s:
        s.execute(update(PerformanceDaily).where(PerformanceDaily.id == p.id).values(spend=p.spend - Decimal("0.01")))
    assert S.fingerprint(eng, WS, src) == a


def test_page_limits_and_engine_messages(sandbox):
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    curves = fit_curves(perf)
    ids = curves.keys["external_id"].tolist()
    x0, x1 = ids[0], ids[1]
    lim = S.page_limits(ids, {x0: 50.0, x1: None}, {x1: 80.0}, [x0])
    assert lim.min_budget[0] == 50.0 and lim.min_budget[1] == 0.0 and np.isinf(lim.max_budget[0])
    assert lim.max_budget[1] == 80.0 and lim.locked == (x0,)
    with pytest.raises(S.OptimizerInputError, match="unknown campaign 'nope'"):
        S.page_limits(ids, {"nope": 1.0})
    with pytest.raises(S.OptimizerInputError, match=f"min budget of {x0}"):
        S.page_limits(ids, {x0: -1.0})
    with pytest.raises(S.OptimizerInputError, match="lock given for unknown"):
        S.page_limits(ids, locked=["nope"])
    # contradictory bounds reach the engine, which names the campaign
    ents = S.entity_state(eng, WS, src)
    bad = S.page_limits(ids, {x0: 500.0}, {x0: 100.0})
    with pytest.raises(InfeasibleError, match=x0):
        recommend(perf, FixedBudget(total=1000.0), limits=bad, account=AccountState(budgets=ents), curves=curves)


@pytest.mark.parametrize("kind, expected", [
    ("value", (FixedBudget(total=100.0), 3.0)),
    ("cap", (TargetRoas(target=3.0, cap=100.0), 3.0)),
    ("target", (TargetRoas(target=3.0), 3.0)),
    ("floor", (MarginalFloor(floor=1.5), 3.0)),
], ids=["best split", "target with cap", "target", "floor"])
def test_page_objective(kind, expected):
    assert S.page_objective(kind, 100, 3, 1.5) == expected


def test_page_objective_refuses_unknown_and_bad_numbers():
    with pytest.raises(S.OptimizerInputError, match="objective"):
        S.page_objective("max", 1, 1, 1)
    with pytest.raises(SettingsError, match="target ROAS must be a positive number"):
        S.page_objective("target", 1, 0, 1)


def test_before_after_equals_engine_allocation(sandbox):
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    curves = fit_curves(perf)
    ents = S.entity_state(eng, WS, src)
    rec = recommend(perf, curves=curves, current_budgets=ents, total_budget=1500.0, max_change=0.5)
    t = S.before_after(rec.budget_table)
    assert t["campaign"].iloc[-1] == "Total" and len(t) == curves.n + 1
    cur = build_problem(perf, account=AccountState(budgets=ents), curves=curves).current
    camps = curves.keys
    # the default keeps every budget within the observed daily spend (campaign totals) +- 20 %
    tot = perf[(perf["entity_type"] == "campaign") & (perf["segment_type"] == "") & (perf["spend"] > 0)]
    seen = tot.groupby("external_id")["spend"].agg(["min", "max"]).reindex(camps["external_id"])
    box = build_bounds(curves.n, current=cur, max_change=0.5)
    lo = np.maximum(box.lo, np.minimum(seen["min"].to_numpy() / 1.2, cur))
    hi = np.minimum(box.hi, np.maximum(seen["max"].to_numpy() * 1.2, cur))
    # campaigns a rule keeps at today's budget say so in the table (held: the rule; held_because: in words);
    # the rest is the engine's allocation around them
    held_code = rec.budget_table["held"].to_numpy()
    held = held_code != ""
    assert set(held_code) <= {"", "low_confidence", "min_change", "evidence", "optimum"}
    assert (rec.budget_table.loc[held, "held_because"].str.len() > 0).all()
    first = allocate(curves, 1500.0, Bounds(lo, hi)).budgets
    first_small = ~np.isclose(first, cur) & (np.abs(first - cur) < 0.01 * cur) & (np.abs(first - cur) >= 0.01)
    assert (held_code[first_small] == "min_change").all()  # moves below min_change (1 %) of the first solution
    weak = [n for n in rec.notes if n.startswith("kept at today's budget, the curves do not favour")]
    names = camps["entity_name"].astype(str).to_numpy()
    assert bool(weak) == (held_code == "low_confidence").any()  # the note is made from the column
    assert all(f"{n} (" in weak[0] for n in names[held_code == "low_confidence"])
    np.testing.assert_array_equal(t["held"].iloc[:-1], held_code)  # the page's table carries it
    assert held.sum() < curves.n  # the total differs from today's, so not every budget can be held
    lo, hi = np.where(held, cur, lo), np.where(held, cur, hi)
    alloc = allocate(curves, 1500.0, Bounds(lo, hi))
    np.testing.assert_allclose(t["budget_after"].iloc[:-1], alloc.budgets, atol=0.01)  # rounded to cents
    np.testing.assert_allclose(t["budget_after"].iloc[:-1][held], cur[held])
    np.testing.assert_allclose(t["budget_before"].iloc[:-1], cur)
    assert t["budget_after"].iloc[-1] == pytest.approx(1500.0, abs=1e-9)  # exactly the stated total
    new = t["budget_after"].iloc[:-1].to_numpy()
    assert t["value_after"].iloc[-1] == pytest.approx(curves.predict(new).sum())
    assert t["roas_after"].iloc[-1] == pytest.approx(curves.predict(new).sum() / 1500.0)
    np.testing.assert_allclose(t["mroas_after"].iloc[:-1], curves.marginal(new))


def test_attribution_value_source(sandbox):
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    with transaction(eng, WS) as s:
        run = AttributionRun(dataset_id=src.dataset_id, params={"models": ["linear", "markov"]}, results=[
            {"channel": "meta", "model": "linear", "conversions": 10.0, "value": 300.0},
            {"channel": "google", "model": "linear", "conversions": 10.0, "value": 100.0},
            {"channel": "meta", "model": "markov", "conversions": 10.0, "value": 100.0},
            {"channel": "google", "model": "markov", "conversions": 10.0, "value": 100.0},
        ])
        s.add(run)
        s.flush()
        run_id = run.id
    runs = S.list_attribution_runs(eng, WS)
    assert run_id in runs["id"].tolist() and "linear, markov" in runs.loc[runs["id"] == run_id, "label"].iloc[0]
    credit = S.run_credit(eng, WS, run_id)
    assert S.run_models(credit) == ["linear", "markov"]
    cv = S.channel_value(credit, "linear", run_id)
    assert cv == {"meta": 300.0, "google": 100.0}
    with pytest.raises(S.OptimizerInputError, match="no results for model 'shapley'"):
        S.channel_value(credit, "shapley", run_id)
    with pytest.raises(S.OptimizerInputError, match="does not exist"):
        S.run_credit(eng, WS, 424242)

    mapping = S.guess_campaign_channels(perf, list(cv))
    assert mapping["meta-c001"] == "meta" and mapping["google-c001"] == "google" and len(mapping) == 8
    ents = S.entity_state(eng, WS, src)
    parents = {c: p for c, p in zip(ents["external_id"], ents["parent_id"]) if p}
    for par in (None, parents):
        adj = S.apply_value_source(perf, "attribution", cv, parents=par)
        tot = (adj["segment_type"] == "") & (adj["entity_type"] == "campaign")
        by = adj[tot].groupby(adj.loc[tot, "external_id"].str.split("-").str[0])["conversion_value"].sum()
        # shares follow the credit (3:1) and the total reported value is kept
        assert by["meta"] / by["google"] == pytest.approx(3.0, rel=1e-5)  # child rows are rounded to cents
        ptot = (perf["segment_type"] == "") & (perf["entity_type"] == "campaign")
        assert by.sum() == pytest.approx(perf.loc[ptot, "conversion_value"].sum(), rel=1e-5)
        # ad sets / ad groups follow their campaign's channel, and are left out when their campaign is unknown
        kids = adj[adj["entity_type"] != "campaign"]
        assert len(kids) == (0 if par is None else int((perf["entity_type"] != "campaign").sum()))
    assert S.apply_value_source(perf, "platform") is perf
    with pytest.raises(S.OptimizerInputError, match="needs a stored attribution run"):
        S.apply_value_source(perf, "attribution", {})
    with pytest.raises(S.OptimizerInputError, match="cannot tell which attribution channel"):
        S.guess_campaign_channels(perf, ["email", "seo"])
    assert S.guess_campaign_channels(perf, ["email", "meta"], strict=False) == {k: "meta" for k in mapping if k.startswith("meta")}
    with pytest.raises(S.OptimizerInputError, match="no attribution channel chosen for campaign"):
        S.apply_value_source(perf, "attribution", cv, {"meta-c001": "meta"})
    with pytest.raises(S.OptimizerInputError, match="channel\\(s\\) email are not in the attribution run"):
        S.apply_value_source(perf, "attribution", cv, {**mapping, "meta-c001": "email"})


def test_recommendations_frame_and_plan_groups():
    d = [DraftChange("sandbox", "a1", "campaign", "c1", "C1", "budget", Decimal("10.00"), Decimal("12.00"), "USD", "why", 91.0, True),
         DraftChange("meta", "a2", "campaign", "c2", "C2", "status", "ACTIVE", "PAUSED", "USD", "burns money", 99.0, True),
         DraftChange("sandbox", "a1", "ad_set", "c1-as1", "C1/1", "bid", Decimal("1.00"), Decimal("0.90"), "USD", "cvr", 55.0)]
    f = S.recommendations_frame(d)
    assert f["new_value"].tolist() == ["12.00", "PAUSED", "0.90"]
    assert f["auto_approve"].tolist() == [True, True, False]
    g = S.plan_groups(d)
    assert list(g) == [("sandbox", "a1"), ("meta", "a2")] and [x.external_id for x in g[("sandbox", "a1")]] == ["c1", "c1-as1"]


def test_curve_chart_frames(sandbox):
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    curves = fit_curves(perf)
    draws = curves.sample(50, seed=1)
    points, line, marks = S.curve_chart_frames(curves, draws, 2, 100.0, 150.0)
    assert len(points) == int((curves.daily["idx"] == 2).sum())
    assert (np.diff(line["spend"]) > 0).all() and line["spend"].iloc[-1] >= 150.0
    assert (line["low"] <= line["high"] + 1e-9).all()
    assert marks["which"].tolist() == ["today", "proposed"]
    np.testing.assert_allclose(marks["value"], curves.predict(np.array([[100.0], [150.0]]) * np.eye(curves.n)[2])[:, 2])
    _, _, m2 = S.curve_chart_frames(curves, draws, 0, 100.0, None)
    assert m2["which"].tolist() == ["today"]


def test_cache_key_is_stable_and_sensitive():
    assert S.cache_key("ws", 1, "abc") == S.cache_key("ws", 1, "abc")
    assert S.cache_key("ws", 1, "abc") != S.cache_key("ws", 2, "abc")


# --------------------------------------------------------------------------------------------
# Currencies
# --------------------------------------------------------------------------------------------


def _import_two_currencies(eng, ws, name="two currencies"):
    """Meta campaigns in EUR (m1, m2) and a Google campaign in USD (g1, the most spend)."""
    with transaction(eng, ws) as s:
        ds = Dataset(name=name, kind="performance", source="test.csv")
        s.add(ds)
        s.flush()
        d0 = dt.date(2026, 1, 1)
        for plat, xid, spend, cur in (("meta", "m1", 80.0, "EUR"), ("meta", "m2", 40.0, "EUR"), ("google", "g1", 300.0, "USD")):
            for d in range(20):
                sp = spend * (1.3 if d % 3 == 0 else 0.8)
                s.add(PerformanceDaily(dataset_id=ds.id, platform=plat, account_id="acc", external_id=xid, entity_name=xid.upper(),
                                       date=d0 + dt.timedelta(days=d), spend=Decimal(f"{sp:.2f}"), currency=cur,
                                       conversion_value=Decimal(f"{sp * 3 * (1 + 0.05 * np.sin(d)):.2f}"),
                                       clicks=100, impressions=1000, conversions=5.0))
        return ds.id


def test_source_currencies_and_filter_to_one(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'cur.db'}")
    ds_id = _import_two_currencies(eng, WS)
    src = next(s for s in S.list_sources(eng, WS) if s.dataset_id == ds_id)
    perf = S.load_performance(eng, WS, ds_id)
    spend = S.source_currencies(eng, WS, src)
    assert list(spend.index) == ["USD", "EUR"] == S.list_currencies(perf)  # most spend first
    assert spend["EUR"] == pytest.approx(float(perf.loc[perf["currency"] == "EUR", "spend"].sum()))
    with pytest.raises(S.MixedCurrencyError, match="EUR, USD|USD, EUR"):
        recommend(perf)
    eur, _ = S.filter_to_currency(perf, "EUR")
    assert set(eur["external_id"]) == {"m1", "m2"} and set(eur["currency"]) == {"EUR"}
    rec = recommend(eur)
    assert set(rec.budget_table["currency"]) == {"EUR"} and {d.currency for d in rec.changes} <= {"EUR"}
    assert rec.budget_table["external_id"].tolist() == ["m1", "m2"]
    with pytest.raises(S.OptimizerInputError, match="no campaigns in currency 'GBP': the data has USD, EUR"):
        S.filter_to_currency(perf, "GBP")
    eng.dispose()


def test_filter_to_currency_keeps_the_live_entities_of_that_currency(sandbox):
    eng, src = sandbox
    perf = S.load_performance(eng, WS, src.dataset_id)
    ents = S.entity_state(eng, WS, src)
    (code,) = S.list_currencies(perf)
    same, kept = S.filter_to_currency(perf, code.lower(), ents)
    assert len(same) == len(perf) and len(kept) == len(ents)  # one currency: nothing is lost
    other = ents.assign(currency=np.where(ents["entity_type"] == "campaign", "XYZ", None))
    _, none = S.filter_to_currency(perf, code, other)
    assert none.empty  # the campaigns are in another currency; their ad sets follow them


def test_the_two_sandbox_data_sets_are_told_apart(sandbox):
    """The sandbox's own simulated record and the synced copy the optimizer reads carry different, plain names."""
    from core.ingest.persist import list_datasets
    from core.platforms.sync import dataset_label

    eng, src = sandbox
    names = list_datasets(eng, WS, kind="performance")["name"].tolist()
    labels = [dataset_label(n) for n in names if n.startswith(("sandbox:", "sync:sandbox:"))]
    assert len(labels) == 2 and len(set(labels)) == 2
    assert any("simulated platform record" in x for x in labels) and any("synced copy" in x and "Optimizer" in x for x in labels)
    assert all(":" not in x.split(" — ")[0] for x in labels)  # no internal keys in what a user reads
    assert src.label == "Sandbox account sandbox-1 — synced copy (what the Optimizer uses)"
