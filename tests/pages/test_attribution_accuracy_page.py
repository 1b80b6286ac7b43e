"""Attribution page, accuracy sections (issue 14) and default models (issue 9 §5), through the app (AppTest)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import attribution_runs as ar
from core.attribution import lift_store
from core.attribution.calibration import LiftResult
from core.optimize import session as opt_session
from core.store.db import make_engine
from tests.attribution_runs.helpers import add_event_dataset, add_path_dataset, make_events

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    url = "sqlite:///" + str(tmp_path / "app.db")
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    touch, conv = make_events(n_users=400, seed=5)
    ds = add_event_dataset(eng, "default", touch, conv, name="generated events")
    yield eng, ds
    eng.dispose()


def _page(query: dict | None = None, section: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if query:
        at.query_params.update(query)
    at.switch_page("pages/attribution.py")
    at.run()
    assert not at.exception, at.exception
    if section is not None:  # only the section on screen is drawn
        at.segmented_control(key="attr.section").set_value(section).run()
        assert not at.exception, at.exception
    return at


def _fields(spec) -> set[str]:
    found = set()
    if isinstance(spec, dict):
        for k, v in spec.items():
            found |= {v} if k == "field" and isinstance(v, str) else _fields(v)
    elif isinstance(spec, list):
        for v in spec:
            found |= _fields(v)
    return found


def _chart_fields(at: AppTest) -> list[set[str]]:
    return [_fields(json.loads(el.proto.spec)) for el in at.get("vega_lite_chart")]


@pytest.fixture
def stored(app_db):
    eng, ds = app_db
    run = ar.execute_run(eng, "default", ar.RunParams(ds, ("last", "markov", "shapley_rate", "data_driven"), bootstrap=0))
    return eng, ds, run


def test_evaluation_recommendation_and_markov_order(stored):
    eng, ds, run = stored
    at = _page({"run": str(run.id)})
    ev = ar.run_evaluation(run)
    success = " ".join(s.value for s in at.success)  # the recommendation is on every section
    assert "Recommended" in success and ev.reason.split(":")[0] in success
    at.segmented_control(key="attr.section").set_value("fit").run()
    scores = next(d.value for d in at.dataframe if "log_loss" in d.value.columns)
    assert set(scores["model"]) >= {"data_driven", "shapley_rate", "markov", "constant"}
    assert any({"predicted", "observed"} <= f for f in _chart_fields(at))  # the calibration chart
    if ev.markov_order != run.params.order:  # the suggested order goes into the next run's parameters
        at.button(key="attr.use_order").click().run()
        assert at.selectbox(key="attr.order").value == ev.markov_order


def test_baseline_support_and_path_explorer_are_shown(stored):
    eng, ds, run = stored
    at = _page({"run": str(run.id)}, section="fit")
    info = " ".join(i.value for i in at.info)
    base = ar.baseline_info(run)
    assert "Data-driven baseline" in info and f"{base['conversions']:,.1f}" in info
    frames = [d.value for d in at.dataframe]
    support = next(f for f in frames if "data_weight" in f.columns)
    assert set(support["channel"]) == set(run.table["channel"]) and (support["journeys"] > 0).all()
    assert any("first_touch_multiplier" in f.columns or "effect" in f.columns for f in frames)
    at.segmented_control(key="attr.section").set_value("paths").run()
    assert not at.exception
    roles = next(d.value for d in at.dataframe if "introducer" in d.value.columns)
    # every converting journey has one first touch (solo or introducer) and, with 2+ touches, one closer
    assert roles["introducer"].sum() + roles["solo"].sum() == pytest.approx(run.extra["total_conversions"])
    assert roles["closer"].sum() == pytest.approx(roles["introducer"].sum())
    fields = _chart_fields(at)
    assert any({"y_low", "y_high", "source"} <= f for f in fields)  # Sankey ribbons
    assert any({"time_to_convert", "conversions"} <= f for f in fields)
    assert any({"touches", "conversions"} <= f for f in fields)


def test_lift_test_calibration_feeds_the_optimizer(stored):
    eng, ds, run = stored
    at = _page({"run": str(run.id)}, section="experiments")
    days = run.extra["channel_days"]
    first_day = min(min(d) for d in days.values())
    last_day = max(max(d) for d in days.values())
    at.selectbox(key="attr.lift.channel").set_value("search")
    at.date_input(key="attr.lift.start").set_value(dt.date.fromisoformat(first_day))
    at.date_input(key="attr.lift.end").set_value(dt.date.fromisoformat(last_day))
    at.number_input(key="attr.lift.point").set_value(30.0)
    at.number_input(key="attr.lift.low").set_value(25.0)
    at.number_input(key="attr.lift.high").set_value(35.0)
    at.text_input(key="attr.lift.source").set_value("geo test")
    at.get("form_submit_button")[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    tests = lift_store.list_lift_tests(eng, "default")
    assert tests["channel"].tolist() == ["search"] and tests["source"].tolist() == ["geo test"]
    assert any({"credit_in_period", "model"} <= f for f in _chart_fields(at))
    calibrated = next(d.value for d in at.dataframe if "calibrated_conversions" in d.value.columns).set_index("channel")
    assert 25.0 - 1e-6 <= calibrated.loc["search", "calibrated_conversions"] <= 35.0 + 1e-6  # the test covers every day
    at.button(key="attr.cal_save").click().run()
    assert not at.exception and any("Stored as run" in s.value for s in at.success)
    runs = ar.list_runs(eng, "default", ds)
    new_id = int(runs["id"].iloc[0])
    assert new_id != run.id and "calibrated" in runs["label"].iloc[0]
    credit = opt_session.run_credit(eng, "default", new_id)
    model = f"{at.selectbox(key=f'attr.cal_model.{run.id}').value}_calibrated"
    assert model in opt_session.run_models(credit)
    value = opt_session.channel_value(credit, model, new_id)
    assert set(value) == set(run.table["channel"])


def test_bad_lift_test_is_refused_with_a_reason(stored):
    eng, ds, run = stored
    at = _page({"run": str(run.id)}, section="experiments")
    at.date_input(key="attr.lift.start").set_value(dt.date(2024, 3, 10))
    at.date_input(key="attr.lift.end").set_value(dt.date(2024, 3, 1))
    at.number_input(key="attr.lift.point").set_value(5.0)
    at.number_input(key="attr.lift.high").set_value(6.0)
    at.get("form_submit_button")[0].click().run()
    assert any("ends" in e.value and "before it starts" in e.value for e in at.error)
    assert lift_store.list_lift_tests(eng, "default").empty


def test_path_table_default_leaves_time_decay_out_with_a_note(app_db):
    eng, ds = app_db
    paths = pd.DataFrame({"path": ["a > b", "b", "a > c", "c > b"], "total_conversions": [3, 1, 2, 1],
                          "total_conversion_value": [30.0, 5.0, 18.0, 7.0], "total_null": [5, 9, 4, 6]})
    pds = add_path_dataset(eng, "default", paths)
    at = _page()
    at.selectbox(key="attr.dataset").set_value(ds).run()
    assert "time_decay" in at.multiselect(key="attr.models").value  # the event-level data set runs it
    assert not any("time_decay is left out" in c.value for c in at.caption)
    at.selectbox(key="attr.dataset").set_value(pds).run()
    chosen = at.multiselect(key="attr.models").value
    assert "time_decay" not in chosen and "data_driven" in chosen and "markov" in chosen
    assert any("time_decay is left out" in c.value and "event timestamps" in c.value for c in at.caption)
    at.number_input(key="attr.bootstrap").set_value(0)
    at.button(key="attr.run").click().run()  # the default selection runs
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert set(ar.load_run(eng, "default", ar.latest_run_id(eng, "default", pds)).params.models) == set(chosen)
