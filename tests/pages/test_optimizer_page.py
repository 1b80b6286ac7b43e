"""AppTest of the Optimizer page from the app's entry point, on a SQLite database with the synced sandbox account."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from core.optimize import session as S
from core.optimize.recommend import build_problem, recommend
from core.optimize.settings import AccountState, FixedBudget, RecommendSettings
from core.store.db import make_engine, transaction
from core.store.models import ChangePlan, Scenario

ROOT = Path(__file__).resolve().parents[2]
WS = "default"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """A database with the sandbox account created and synced once; each test gets a copy."""
    path = tmp_path_factory.mktemp("opt_tpl") / "tpl.db"
    eng = make_engine(f"sqlite:///{path}")
    S.ensure_sandbox(eng, WS)
    eng.dispose()
    return path


@pytest.fixture
def db(template_db, tmp_path, monkeypatch):
    path = tmp_path / "app.db"
    shutil.copy(template_db, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def at(db):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/optimizer.py").run()
    _ok(app)
    return app


def _open_limits(app):
    """Open the per-campaign limits: their widgets are drawn only while the expander is open."""
    app.session_state["opt.limits_open"] = True
    app.run()
    _ok(app)


def _ok(app):
    assert not app.exception, [e.value for e in app.exception]


def _frame(app, column: str):
    """The first st.dataframe on the page that has ``column``."""
    for d in app.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no dataframe with column {column!r}; have {[list(d.value.columns)[:3] for d in app.dataframe]}")


def _engine_view(eng):
    """Curves and today's budgets computed straight from the engine, independent of the page."""
    src = S.list_sources(eng, WS)[0]
    perf = S.load_performance(eng, WS, src.dataset_id)
    ents = S.entity_state(eng, WS, src)
    problem = build_problem(perf, settings=RecommendSettings(max_change=0.3),
                            account=AccountState(budgets=ents, bids=ents, statuses=ents, entities=ents))
    return problem.curves, problem.curves.keys, problem.current, perf


def _observed(perf, ids):
    """Lowest and highest daily spend of each campaign, straight from the rows."""
    tot = perf[(perf["entity_type"] == "campaign") & (perf["segment_type"] == "") & (perf["spend"] > 0)]
    seen = tot.groupby("external_id")["spend"].agg(["min", "max"]).reindex(ids)
    return seen["min"].to_numpy(float), seen["max"].to_numpy(float)


def test_before_after_table_is_the_engines_allocation(at, db):
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "budget_after")
    curves, keys, cur, perf = _engine_view(db)
    total = float(at.slider(key="opt.total_budget").value)
    assert total == round(cur.sum())
    body = table.iloc[:-1]
    assert body["external_id"].tolist() == keys["external_id"].tolist()
    new = body["budget_after"].to_numpy(float)
    np.testing.assert_allclose(body["budget_before"].to_numpy(float), cur)
    # the proposal spends exactly the total it states, in cents, each budget within max change and the evidence
    assert round(new.sum(), 2) == total and np.allclose(new * 100, np.round(new * 100))
    lo_seen, hi_seen = _observed(perf, keys["external_id"])
    lo = np.maximum(0.7 * cur, np.minimum(lo_seen / 1.2, cur))
    hi = np.minimum(1.3 * cur, np.maximum(hi_seen * 1.2, cur))
    assert ((new >= lo - 0.01) & (new <= hi + 0.01)).all()
    np.testing.assert_allclose(body["value_after"].to_numpy(float), curves.predict(new), rtol=1e-9)
    # the same request of the engine gives the same plan
    rec = recommend(perf, FixedBudget(total=total), settings=RecommendSettings(max_change=0.3, n_draws=400),
                    account=AccountState(budgets=S.entity_state(db, WS, S.list_sources(db, WS)[0])))
    np.testing.assert_allclose(new, rec.budget_table["new_budget"].to_numpy(float))
    assert table.iloc[-1]["campaign"] == "Total"
    assert table.iloc[-1]["budget_after"] == pytest.approx(total, abs=1e-9)
    assert [m.value for m in at.metric][0] == f"{total:,.2f}"
    # the response-curve chart carries the evidence, the band, the curve, the observed points and today / the proposal
    charts = at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")
    spec = json.loads(charts[0].proto.spec) if charts else None
    assert spec is not None and len(spec["layer"]) == 5


def test_budget_slider_changes_the_proposal_and_locks_hold(at, db):
    before = _frame(at, "budget_after")["budget_after"].to_numpy(float)
    slider = at.slider(key="opt.total_budget")
    total = float(slider.value)
    more = min(total + 150.0, float(slider.max))
    assert more > total
    slider.set_value(more).run()
    _ok(at)
    after = _frame(at, "budget_after")
    assert after.iloc[-1]["budget_after"] == pytest.approx(more, abs=1e-9)
    assert not np.allclose(after["budget_after"].to_numpy(float)[:-1], before[:-1])
    assert after.iloc[-1]["value_after"] > after.iloc[-1]["value_before"]
    cid = after["external_id"].iloc[0]
    _open_limits(at)
    at.checkbox(key=f"opt.{cid}.lock").check().run()
    _ok(at)
    locked = _frame(at, "budget_after")
    assert locked.iloc[0]["budget_after"] == pytest.approx(locked.iloc[0]["budget_before"])
    assert locked.iloc[-1]["budget_after"] == pytest.approx(float(at.slider(key="opt.total_budget").value), abs=1e-9)


def test_total_slider_covers_exactly_the_feasible_totals(at, db):
    """The slider's ends are the sum of the lower and the upper budget bounds (max change, evidence, limits)."""
    curves, keys, cur, perf = _engine_view(db)
    lo_seen, hi_seen = _observed(perf, keys["external_id"])
    for pct in (30, 100):
        at.slider(key="opt.max_change").set_value(pct).run()
        _ok(at)
        m = pct / 100
        lo = np.maximum((1 - m) * cur, np.minimum(lo_seen / 1.2, cur)).sum()
        hi = np.minimum((1 + m) * cur, np.maximum(hi_seen * 1.2, cur)).sum()
        slider = at.slider(key="opt.total_budget")
        assert float(slider.min) == np.ceil(lo - 1e-9) and float(slider.max) == np.floor(hi + 1e-9)
        assert float(slider.min) <= float(slider.value) <= float(slider.max)
        at.slider(key="opt.total_budget").set_value(float(slider.max)).run()
        _ok(at)
        assert not at.error, [e.value for e in at.error]
        assert _frame(at, "budget_after").iloc[-1]["budget_after"] == pytest.approx(float(slider.max), abs=1e-9)
    # narrowing the max change again moves the kept total into the new range instead of losing the page
    at.slider(key="opt.max_change").set_value(10).run()
    _ok(at)
    assert not at.error and float(at.slider(key="opt.total_budget").value) <= float(at.slider(key="opt.total_budget").max)


def test_infeasible_limits_keep_the_last_feasible_plan_with_the_reason(at):
    table = _frame(at, "budget_after")
    cid = table["external_id"].iloc[1]
    _open_limits(at)
    at.number_input(key=f"opt.{cid}.min").set_value(500.0).run()
    at.number_input(key=f"opt.{cid}.max").set_value(100.0).run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any("cannot be met" in e and cid in e and "min budget 500" in e for e in errors), errors
    kept = _frame(at, "budget_after")  # the KPIs and the table of the last feasible answer stay
    np.testing.assert_allclose(kept["budget_after"].to_numpy(float), table["budget_after"].to_numpy(float))
    assert any("last feasible plan" in i.value for i in at.info)
    assert len(at.metric) >= 5 and not at.get("button") or not [b for b in at.button if b.key == "opt.freeze"]
    at.number_input(key=f"opt.{cid}.min").set_value(None).run()
    at.number_input(key=f"opt.{cid}.max").set_value(None).run()
    assert not at.error and not any("last feasible plan" in i.value for i in at.info), [e.value for e in at.error]


def test_no_negative_zero_anywhere(at):
    """A plan that changes nothing shows deltas of 0.00, never "-0.00"."""
    at.slider(key="opt.max_change").set_value(0).run()
    _ok(at)
    shown = [m.value for m in at.metric] + [str(m.proto.delta) for m in at.metric]
    assert not any("-0.00" in x or "-0.0%" in x for x in shown), shown
    table = _frame(at, "budget_after")
    assert not any(np.signbit(v) and v == 0 for v in table["change_pct"].dropna())


def test_start_from_the_proposal_reproduces_its_figures(at, db):
    curves, keys, cur, _ = _engine_view(db)
    table = _frame(at, "budget_after")
    proposal = table["budget_after"].to_numpy(float)[:-1]
    at.button(key="opt.whatif.from_proposal").click().run()
    _ok(at)
    wi = _frame(at, "value_lo")
    np.testing.assert_allclose(wi["budget"].to_numpy(float), proposal)  # to the cent
    np.testing.assert_allclose(wi["value"].to_numpy(float), table["value_after"].to_numpy(float)[:-1], rtol=1e-12)
    labels = {m.label: m.value for m in at.metric}
    plan = [m.value for m in at.metric]
    assert labels["What-if daily budget (USD)"] == plan[0]
    assert labels["Predicted value a day (USD)"] == f"{table.iloc[-1]['value_after']:,.2f}"


def test_saving_a_scenario_lists_it_and_compares(at, db):
    curves, keys, cur, _ = _engine_view(db)
    cid = keys["external_id"].iloc[0]
    at.slider(key=f"opt.whatif.{cid}").set_value(float(round(cur[0])) + 20.0).run()
    _ok(at)
    wi = _frame(at, "value_lo")
    assert wi["budget"].iloc[0] == pytest.approx(round(cur[0]) + 20.0)
    assert wi["value"].iloc[0] == pytest.approx(float(curves.predict(wi["budget"].to_numpy(float))[0]))
    at.text_input(key="opt.scenario_name").input("push search").run()
    at.button(key="opt.save_scenario").click().run()
    _ok(at)
    assert any("push search" in s.value for s in at.success)
    listed = _frame(at, "created_at")
    assert listed["name"].tolist() == ["push search"]
    with transaction(db, WS) as s:
        row = s.scalars(select(Scenario)).one()
        assert row.name == "push search" and float(row.budgets[f"sandbox:{cid}"]) == pytest.approx(round(cur[0]) + 20.0)
    at.multiselect(key="opt.compare").select("push search").run()
    _ok(at)
    cmp_ = _frame(at, "push search budget")
    assert "(what-if) budget" in cmp_.columns and cmp_["push search budget"].iloc[0] == pytest.approx(round(cur[0]) + 20.0)
    # a duplicate name is refused with the engine's message
    at.button(key="opt.save_scenario").click().run()
    assert any("already exists" in e.value for e in at.error)


def test_extrapolation_off_marks_and_caps_and_names_the_limiting_campaigns(at, db):
    at.slider(key="opt.max_change").set_value(200).run()
    at.toggle(key="opt.within_evidence").set_value(False).run()
    _ok(at)
    table = _frame(at, "budget_after").iloc[:-1]
    ex = table[table["extrapolated"]]
    assert len(ex), "with a max change of 200 % some budget leaves the observed spend"
    assert (ex["confidence"] <= 60 + 1e-9).all() and ex["why"].str.contains("extrapolated").all()
    plan = float(next(m.value for m in at.metric if m.label == "Plan confidence"))
    assert plan <= ex["confidence"].min() + 0.5 or plan <= table["confidence"].min() + 0.5
    text = " ".join(m.value for m in at.markdown)
    assert "What limits the plan's confidence" in text and any(n in text for n in ex["campaign"])


def test_the_table_says_why_each_confidence_and_which_campaigns_are_held(at, db):
    """Beside each confidence its computed reason and the fit's R²; a campaign kept at today's budget says
    which rule kept it; the page says in one sentence what confidence means and why R² is not it."""
    table = _frame(at, "budget_after").iloc[:-1]
    assert {"why", "r2", "held_because"} <= set(table.columns) and "held" not in table.columns  # the code is for the download
    moved = table["confidence"].notna()
    assert moved.any() and (table.loc[moved, "why"].str.len() > 20).all() and (table.loc[moved, "held_because"] == "").all()
    kept = table["budget_after"].round(2) == table["budget_before"].round(2)
    assert (table.loc[kept, "held_because"].str.len() > 0).all()
    # the engine's table behind the page: the same reasons and held codes
    curves, keys, cur, perf = _engine_view(db)
    rec = recommend(perf, FixedBudget(total=float(at.slider(key="opt.total_budget").value)),
                    settings=RecommendSettings(max_change=0.3, n_draws=400),
                    account=AccountState(budgets=S.entity_state(db, WS, S.list_sources(db, WS)[0])))
    assert table["why"].tolist() == rec.budget_table["confidence_why"].tolist()
    assert table["held_because"].tolist() == rec.budget_table["held_because"].tolist()
    np.testing.assert_allclose(table["r2"].to_numpy(float), rec.budget_table["r2"].to_numpy(float))
    captions = " ".join(c.value for c in at.caption)
    assert "R² is not confidence" in captions.replace("\\", "")
    text = " ".join(m.value for m in at.markdown)
    a = rec.assessment
    if not a.limiting.empty:  # the plan's limiting campaigns are named with their computed reasons
        assert "What limits the plan's confidence" in text and a.limiting["label"].iloc[0] in text
    assert any(b.label.startswith("Download before/after") for b in at.get("download_button"))


def test_freeze_creates_a_draft_plan(at, db):
    at.radio(key="opt.objective").set_value("cap").run()
    _ok(at)
    recs = _frame(at, "field")
    assert {"budget", "bid"} <= set(recs["field"])
    assert recs["reason"].str.len().min() > 10 and recs["confidence"].between(0, 100).all()
    at.button(key="opt.freeze").click().run()
    _ok(at)
    with transaction(db, WS) as s:
        plans = s.scalars(select(ChangePlan)).all()
        assert len(plans) == 1
        plan = plans[0]
        assert plan.status == "draft" and plan.origin == "optimizer" and plan.platform == "sandbox"
        assert len(plan.changes) == len(recs)
        stored = {(c.external_id, c.field): c.new_value for c in plan.changes}
    shown = {(x, f): v for x, f, v in zip(recs["external_id"], recs["field"], recs["new_value"])}
    assert stored == shown
    assert at.session_state["review.plan_id"] == plan.id
    if (ROOT / "pages" / "review.py").exists():  # the button hands over to the Review page
        assert not any("Optimizer" in t.value for t in at.title)


def test_attribution_adjusted_value_and_hill_curves(at, db):
    from core.store.models import AttributionRun

    platform_table = _frame(at, "budget_after")
    src = S.list_sources(db, WS)[0]
    with transaction(db, WS) as s:
        s.add(AttributionRun(dataset_id=src.dataset_id, params={"models": ["markov"]}, results=[
            {"channel": "meta", "model": "markov", "conversions": 30.0, "value": 3000.0},
            {"channel": "google", "model": "markov", "conversions": 10.0, "value": 1000.0}]))
    at.radio(key="opt.value_source").set_value("Attribution-adjusted").run()
    _ok(at)
    assert at.selectbox(key="opt.meta-c001.channel").value == "meta"
    assert at.selectbox(key="opt.google-c001.channel").value == "google"
    adjusted = _frame(at, "budget_after")
    assert not at.error, [e.value for e in at.error]
    meta = adjusted["external_id"].str.startswith("meta")
    v_meta = adjusted.loc[meta, "value_before"].sum()
    v_google = adjusted.loc[adjusted["external_id"].str.startswith("google"), "value_before"].sum()
    p_meta = platform_table.loc[platform_table["external_id"].str.startswith("meta"), "value_before"].sum()
    assert v_meta / v_google > p_meta / (platform_table.iloc[-1]["value_before"] - p_meta)  # meta gains credit (3:1)
    at.radio(key="opt.curve_model").set_value("hill").run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    hill = _frame(at, "budget_after")
    assert hill.iloc[-1]["budget_after"] == pytest.approx(adjusted.iloc[-1]["budget_after"])
    assert not np.allclose(hill["value_before"].to_numpy(float), adjusted["value_before"].to_numpy(float))


def test_imported_data_set_can_be_chosen(at, db):
    import datetime as dt
    from decimal import Decimal

    from core.store.models import Dataset, PerformanceDaily

    with transaction(db, WS) as s:
        ds = Dataset(name="perf.csv", kind="performance", source="perf.csv")
        s.add(ds)
        s.flush()
        for xid, base, roas in (("m1", 100.0, 3.0), ("m2", 60.0, 5.0)):
            for d in range(30):
                sp = base * (0.6 + 0.8 * ((d * 7) % 11) / 10)
                s.add(PerformanceDaily(dataset_id=ds.id, platform="meta", account_id="act_1", external_id=xid, entity_name=xid.upper(),
                                       date=dt.date(2026, 3, 1) + dt.timedelta(days=d), spend=Decimal(f"{sp:.2f}"),
                                       conversion_value=Decimal(f"{roas * sp ** 0.8 * 2:.2f}"), clicks=50, impressions=900, conversions=3.0))
        ds_id = ds.id
    at.run()
    label = next(o for o in at.selectbox(key="opt.source").options if o.startswith(f"Data set #{ds_id}"))
    at.selectbox(key="opt.source").set_value(label).run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "budget_after")
    assert table["external_id"].tolist()[:-1] == ["m1", "m2"]
    perf = S.load_performance(db, WS, ds_id)
    last7 = perf[perf["date"] > perf["date"].max() - np.timedelta64(7, "D")].groupby("external_id")["spend"].sum() / 7
    np.testing.assert_allclose(table["budget_before"].to_numpy(float)[:-1], last7[["m1", "m2"]].to_numpy(), atol=0.006)
    assert any("no live account" in c.value for c in at.caption)


def test_first_start_loads_the_sample_and_opens_the_sandbox(tmp_path, monkeypatch):
    """A fresh database: the app loads the sample data; the Optimizer opens the sandbox account and picks it."""
    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.delenv("MARKETING_SUITE_NO_SAMPLE", raising=False)
    from tests.pages.conftest import wait_for_first_start

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    app.run()
    wait_for_first_start()
    app.switch_page("pages/optimizer.py").run()
    _ok(app)
    assert not app.error, [e.value for e in app.error]
    options = app.selectbox(key="opt.source").options
    assert options[0].startswith("Sandbox account sandbox-1") and app.selectbox(key="opt.source").value == options[0]
    assert any("Sample ad performance" in o for o in options)
    assert _frame(app, "budget_after")["external_id"].str.startswith(("meta-", "google-")).iloc[:-1].all()


def _chart_datasets(proto) -> dict:
    """Named datasets of a Vega-Lite chart element (sent as Arrow) as lists of row dicts."""
    import pyarrow as pa

    out = {}
    for ds in proto.datasets:
        frame = pa.ipc.open_stream(ds.data.data).read_pandas()
        out[ds.name] = frame.to_dict("records")
    return out


def test_curve_chart_per_campaign_shows_points_curve_today_and_proposal(at, db):
    """For every campaign: observed days, the fitted curve, and today's / the proposed spend of the before/after table."""
    curves, camps, cur, _ = _engine_view(db)
    table = _frame(at, "budget_after").iloc[:-1].set_index("external_id")
    box = at.selectbox(key="opt.chart_campaign")
    for i, xid in enumerate(camps["external_id"]):
        at.selectbox(key="opt.chart_campaign").set_value(i).run()
        _ok(at)
        spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
        data = _chart_datasets(at.get("vega_lite_chart")[0].proto)
        layers = spec["layer"]
        by_mark = {}
        for layer in layers:
            mark = layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
            by_mark[mark] = data[layer.get("data", spec.get("data"))["name"]]
        points, line, marks = by_mark["circle"], by_mark["line"], by_mark["rule"]
        seen = by_mark["rect"][0]  # the observed spend, shaded
        assert seen["lo"] == pytest.approx(min(p["spend"] for p in points if p["spend"] > 0)) and seen["hi"] == pytest.approx(
            max(p["spend"] for p in points))
        n_days = int((curves.daily["idx"] == curves.index_of("sandbox", xid)).sum())
        assert len(points) == n_days and n_days > 20, xid
        spend = np.array([p["spend"] for p in line])
        np.testing.assert_allclose([p["value"] for p in line], curves.predict(spend[:, None])[:, curves.index_of("sandbox", xid)], rtol=1e-9)
        where = {m["which"]: m["spend"] for m in marks}
        assert where["today"] == pytest.approx(table.loc[xid, "budget_before"])
        assert where["proposed"] == pytest.approx(table.loc[xid, "budget_after"])
        assert spend.max() >= max(where.values())  # both markers inside the drawn curve
        assert spec["title"] == camps["entity_name"].iloc[i]
    assert box.options


def _two_currency_csv() -> bytes:
    """45 days of a Meta account in EUR (m1, m2) and a Google account in USD (g1, g2; the most spend)."""
    lines = ["date,platform,account_id,campaign_id,campaign_name,spend,impressions,clicks,conversions,conversion_value,currency"]
    d0 = np.datetime64("2026-02-01")
    for plat, acct, xid, base, a, cur in (("meta", "act_9", "m1", 120.0, 9.0, "EUR"), ("meta", "act_9", "m2", 60.0, 14.0, "EUR"),
                                          ("google", "555", "g1", 400.0, 7.0, "USD"), ("google", "555", "g2", 250.0, 11.0, "USD")):
        for d in range(45):
            sp = base * (0.5 + ((d * 7 + len(xid) * 3 + int(base)) % 13) / 12)
            lines.append(f"{d0 + d},{plat},{acct},{xid},{xid.upper()} campaign,{sp:.2f},{int(sp * 40)},{int(sp)},{sp / 25:.1f},"
                         f"{a * sp ** 0.7:.2f},{cur}")
    return ("\n".join(lines) + "\n").encode()


def _import_file(eng, name: str, data: bytes) -> int:
    from core.ingest import read_uploaded, save_import

    return save_import(eng, WS, name, read_uploaded([(name, data)]))


def _column_headers(el) -> dict:
    """column -> header label of an st.dataframe element (from its column config)."""
    cfg = json.loads(el.proto.columns or "{}")
    return {k.removeprefix("col:name:") if isinstance(k, str) else k: v.get("label") for k, v in cfg.items()}


def test_two_currencies_pick_one_label_it_and_freeze_only_it(at, db):
    ds_id = _import_file(db, "two-currencies.csv", _two_currency_csv())
    at.run()
    label = next(o for o in at.selectbox(key="opt.source").options if o.startswith(f"Data set #{ds_id}"))
    at.selectbox(key="opt.source").set_value(label).run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    picker = at.selectbox(key="opt.currency")
    assert picker.options[0].startswith("USD") and picker.options[1].startswith("EUR")  # most spend first
    assert picker.value == "USD"
    table = _frame(at, "budget_after")
    assert table["external_id"].tolist()[:-1] == ["g1", "g2"]
    perf = S.load_performance(db, WS, ds_id)
    usd = perf[perf["currency"] == "USD"]
    last7 = usd[usd["date"] > usd["date"].max() - np.timedelta64(7, "D")]["spend"].sum() / 7
    assert float(at.slider(key="opt.total_budget").value) == round(last7)  # the USD campaigns' budgets only
    assert table.iloc[-1]["budget_before"] == pytest.approx(last7, abs=0.02)
    assert "(USD)" in at.slider(key="opt.total_budget").label
    labels = [m.label for m in at.metric]
    assert "Total daily budget (USD)" in labels and "Predicted value a day (USD)" in labels and not any("EUR" in x for x in labels)
    el = next(d for d in at.dataframe if "budget_after" in d.value.columns)
    headers = _column_headers(el)
    assert headers.get("budget_before") == "Budget today (USD/day)" and headers.get("value_after") == "Predicted value, proposed (USD/day)"
    assert any("Only the campaigns in USD" in c.value and "EUR" in c.value for c in at.caption)

    at.selectbox(key="opt.currency").set_value("EUR").run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "budget_after")
    assert table["external_id"].tolist()[:-1] == ["m1", "m2"]
    eur = perf[perf["currency"] == "EUR"]
    last7 = eur[eur["date"] > eur["date"].max() - np.timedelta64(7, "D")]["spend"].sum() / 7
    assert float(at.slider(key="opt.total_budget").value) == round(last7)  # the total starts afresh for EUR
    assert "(EUR)" in at.slider(key="opt.total_budget").label
    labels = [m.label for m in at.metric]
    assert "Total daily budget (EUR)" in labels and not any("USD" in x for x in labels)
    headers = _column_headers(next(d for d in at.dataframe if "budget_after" in d.value.columns))
    assert headers.get("budget_after") == "Proposed budget (EUR/day)"

    at.radio(key="opt.objective").set_value("cap").run()
    _ok(at)
    recs = _frame(at, "field")
    assert len(recs) and set(recs["external_id"]) <= {"m1", "m2"}
    at.button(key="opt.freeze").click().run()
    _ok(at)
    with transaction(db, WS) as s:
        plans = s.scalars(select(ChangePlan)).all()
        assert len(plans) == 1
        changes = plans[0].changes
        assert changes and {c.external_id for c in changes} <= {"m1", "m2"}
        assert {c.currency for c in changes} == {"EUR"}


def test_one_currency_shows_no_picker(at):
    assert not [s for s in at.selectbox if s.key == "opt.currency"]
    assert any("(USD)" in m.label or "(EUR)" in m.label for m in at.metric)


def test_limits_hold_while_their_expander_is_closed(at):
    """The limit widgets are drawn only while open; a lock and a min set there keep acting when it is closed
    and show again when it is reopened."""
    table = _frame(at, "budget_after")
    locked_id, floor_id = table["external_id"].iloc[0], table["external_id"].iloc[2]
    assert not [w for w in at.checkbox if str(w.key).endswith(".lock")]  # closed: nothing drawn
    _open_limits(at)
    at.checkbox(key=f"opt.{locked_id}.lock").check().run()
    floor = float(table["budget_before"].iloc[2]) + 1.0
    at.number_input(key=f"opt.{floor_id}.min").set_value(floor).run()
    _ok(at)
    at.session_state["opt.limits_open"] = False
    at.slider(key="opt.total_budget").set_value(float(at.slider(key="opt.total_budget").min)).run()
    _ok(at)
    assert not [w for w in at.checkbox if str(w.key).endswith(".lock")]
    closed = _frame(at, "budget_after")
    assert closed.iloc[0]["budget_after"] == pytest.approx(closed.iloc[0]["budget_before"])
    assert closed.iloc[2]["budget_after"] >= floor - 1e-9
    _open_limits(at)
    assert at.checkbox(key=f"opt.{locked_id}.lock").value is True
    assert at.number_input(key=f"opt.{floor_id}.min").value == pytest.approx(floor)
