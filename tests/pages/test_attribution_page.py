"""Attribution page through the app entry point (AppTest): run, table = engine output, charts, reopen, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import attribution_runs as ar
from core.attribution.compare import run_attribution
from core.journeys import build_journeys
from core.store.db import make_engine
from tests.attribution_runs.helpers import add_event_dataset, add_path_dataset, make_events

APP = str(Path(__file__).resolve().parents[2] / "app.py")
MODELS = ["first", "last", "linear", "position", "time_decay", "markov", "shapley", "shapley_rate", "data_driven"]


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    """A database with one small generated event data set; the app opens it (no sample data)."""
    url = "sqlite:///" + str(tmp_path / "app.db")
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    touch, conv = make_events(n_users=160, seed=11)
    ds = add_event_dataset(eng, "default", touch, conv, name="generated events")
    yield eng, ds, touch, conv
    eng.dispose()


def _page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if query:
        at.query_params.update(query)
    at.switch_page("pages/attribution.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]


def _fields(spec) -> set[str]:
    """Every encoding field named anywhere in a Vega-Lite spec (layers included)."""
    found = set()
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k == "field" and isinstance(v, str):
                found.add(v)
            else:
                found |= _fields(v)
    elif isinstance(spec, list):
        for v in spec:
            found |= _fields(v)
    return found


def test_run_shows_engine_output_and_charts_then_reopens(app_db, monkeypatch):
    eng, ds, touch, conv = app_db
    at = _page()
    assert any("No run of this data set yet" in i.value for i in at.info)
    at.number_input(key="attr.lookback").set_value(21.0)
    at.number_input(key="attr.bootstrap").set_value(20)
    at.button(key="attr.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    runs = ar.list_runs(eng, "default", ds)
    assert len(runs) == 1
    run_id = int(runs["id"].iloc[0])
    assert at.query_params["run"] == [str(run_id)] or at.query_params["run"] == str(run_id)

    # The table equals the engine's output on the same data and parameters.
    journeys = build_journeys(touch, conv, lookback_days=21.0, level="channel")
    direct = run_attribution(journeys.to_pathtable(), journeys, MODELS, bootstrap=20, seed=0).table
    shown = at.dataframe[0].value
    assert list(shown.columns) == ["channel", "model", "conversions", "value", "share", "conversions_low", "conversions_high", "value_low", "value_high", "interval"]
    merged = shown.merge(direct, on=["channel", "model"], suffixes=("", "_engine"))
    assert len(merged) == len(direct) == len(shown)
    for col in ("conversions", "value", "share", "conversions_low", "conversions_high", "value_low", "value_high"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_engine"], rtol=1e-9, atol=1e-9)

    specs = _specs(at)
    fields = [_fields(s) for s in specs]
    assert {"channel", "model", "conversions", "conversions_low", "conversions_high"} <= fields[0]  # bars + error bars
    assert any(s.get("layer") for s in specs[:1])
    assert {"channel", "variant", "difference"} <= fields[1]
    assert {"from", "to", "probability"} <= fields[2]
    assert {"channel", "removal_effect"} <= fields[3]
    assert any({"share", "model", "channel"} <= f for f in fields[4:])  # drill-down of the top path
    assert at.get("download_button")
    labels = [e.label for e in at.expander]
    assert "Shapley (coalition conversions)" in labels and "Shapley (incremental conversion rate)" in labels
    text = " ".join(m.value for m in at.markdown)
    assert "v(S) = conversions of journeys whose channels are all in the coalition" in text
    assert "v(S) = conversion rate of journeys whose channel set is exactly the coalition" in text

    # A new session (browser refresh) reopens the stored run without computing anything.
    def _no_compute(*_a, **_k):
        raise AssertionError("reopening a stored run must not recompute it")

    monkeypatch.setattr(ar, "execute_run", _no_compute)
    monkeypatch.setattr(ar, "load_inputs", _no_compute)
    again = _page({"run": str(run_id)})
    assert len(ar.list_runs(eng, "default", ds)) == 1
    pd.testing.assert_frame_equal(again.dataframe[0].value.reset_index(drop=True), shown.reset_index(drop=True))
    assert again.selectbox(key="attr.run_pick").value == run_id
    assert again.number_input(key="attr.lookback").value == 21.0  # the widgets show the reopened run's parameters
    assert again.number_input(key="attr.bootstrap").value == 20
    # Without ?run= the latest run of the workspace's data set is shown too.
    latest = _page()
    assert latest.selectbox(key="attr.run_pick").value == run_id
    assert not any("No run of this data set yet" in i.value for i in latest.info)


def test_bad_parameters_show_a_clear_error(app_db):
    eng, ds, *_ = app_db
    at = _page()
    at.number_input(key="attr.pos_first").set_value(0.7)
    at.number_input(key="attr.pos_last").set_value(0.5)
    at.button(key="attr.run").click().run()
    assert not at.exception
    assert any("position shares" in e.value and "at most 1" in e.value for e in at.error)
    at.number_input(key="attr.pos_first").set_value(0.4)
    at.multiselect(key="attr.models").set_value([])
    at.button(key="attr.run").click().run()
    assert any("at least one model" in e.value for e in at.error)
    # A path-level data set cannot run time decay (no timestamps): the page says so instead of failing.
    paths = pd.DataFrame({"path": ["a > b", "b", "a > c"], "total_conversions": [2, 1, 1],
                          "total_conversion_value": [20.0, 5.0, 8.0], "total_null": [3, 4, 2]})
    pds = add_path_dataset(eng, "default", paths)
    at = _page()
    at.selectbox(key="attr.dataset").set_value(pds).run()
    at.multiselect(key="attr.models").set_value(["first", "time_decay"])
    at.button(key="attr.run").click().run()
    assert not at.exception
    assert any("time_decay needs event timestamps" in e.value for e in at.error)
    assert ar.list_runs(eng, "default").empty
    at.multiselect(key="attr.models").set_value(["first", "markov"])
    at.button(key="attr.run").click().run()
    assert not at.exception and not at.error
    shown = at.dataframe[0].value
    assert shown[shown["model"] == "first"].set_index("channel")["conversions"].to_dict() == {"a": 3.0, "b": 1.0, "c": 0.0}


def test_too_many_channels_for_shapley_offers_to_drop_it(app_db):
    """22 channels: exact Shapley refuses, and one click removes the Shapley models (the (no touch) pseudo path
    is no player: the same table with 20 channels and untouched conversions runs Shapley)."""
    eng = app_db[0]
    names = [f"ch{i:02d}" for i in range(22)]
    paths = pd.DataFrame({"path": [f"{a} > {b}" for a, b in zip(names, names[1:] + names[:1])] + ["(no touch)"],
                          "total_conversions": [2] * 22 + [5], "total_conversion_value": [20.0] * 22 + [50.0],
                          "total_null": [3] * 22 + [0]})
    pds = add_path_dataset(eng, "default", paths, name="wide")
    at = _page()
    at.selectbox(key="attr.dataset").set_value(pds).run()
    at.multiselect(key="attr.models").set_value(["last", "markov", "shapley"])
    at.button(key="attr.run").click().run()
    assert not at.exception and any("Shapley" in e.value for e in at.error)
    at.button(key="attr.drop_shapley").click().run()
    assert at.multiselect(key="attr.models").value == ["last", "markov"]
    at.button(key="attr.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.dataframe[0].value
    assert shown[shown["model"] == "markov"].set_index("channel").loc["(no touch)", "conversions"] == 5.0

    twenty = paths[~paths["path"].str.contains("ch2[01]")]  # 20 channels and the untouched conversions
    assert twenty["path"].str.split(" > ").explode().nunique() == 21
    tds = add_path_dataset(eng, "default", twenty, name="twenty")
    at = _page()
    at.selectbox(key="attr.dataset").set_value(tds).run()
    at.multiselect(key="attr.models").set_value(["shapley"])
    at.button(key="attr.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_drilldown_by_user_and_csv(app_db):
    eng, ds, touch, conv = app_db
    run = ar.execute_run(eng, "default", ar.RunParams(ds, ("first", "last", "markov", "shapley_rate"), bootstrap=0))
    at = _page()
    assert at.selectbox(key="attr.run_pick").value == run.id
    user = conv["user_key"].iloc[0]
    at.text_input(key="attr.user_key").set_value(user).run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    tables = [d.value for d in at.dataframe]
    user_split = tables[-1]
    assert set(user_split.columns) == {"first", "last", "markov", "shapley_rate"}
    assert np.isclose(user_split["first"].sum(), 1.0) and np.isclose(user_split["markov"].sum(), 1.0)
    at.text_input(key="attr.user_key").set_value("nobody").run()
    assert any("no journey" in w.value for w in at.warning)
    # A run stored outside the page (never opened) does not replace the run the user had open: a new
    # session without ?run= reopens the run opened last, remembered in the database.
    other = ar.execute_run(eng, "default", ar.RunParams(ds, ("linear",), lookback_days=10))
    assert ar.last_opened_run(eng, "default", ds) == run.id
    at = _page()
    assert at.selectbox(key="attr.run_pick").value == run.id
    # Picking another stored run shows it, puts it in the URL and remembers it in the database.
    at.selectbox(key="attr.run_pick").set_value(other.id).run()
    assert not at.exception
    assert set(at.dataframe[0].value["model"]) == {"linear"}
    assert at.query_params["run"] in ([str(other.id)], str(other.id))
    assert ar.last_opened_run(eng, "default", ds) == other.id
    fresh = _page()  # browser refresh / new tab without the URL parameter
    assert fresh.selectbox(key="attr.run_pick").value == other.id
    assert set(fresh.dataframe[0].value["model"]) == {"linear"}
    fresh.selectbox(key="attr.run_pick").set_value(run.id).run()
    assert set(fresh.dataframe[0].value["model"]) == {"first", "last", "markov", "shapley_rate"}
    assert _page().selectbox(key="attr.run_pick").value == run.id
    # The CSV offered for download is the displayed table.
    csv = ar.display_table(run).to_csv(index=False)
    back = pd.read_csv(io.StringIO(csv))
    assert len(back) == len(run.table) and set(back["model"]) == {"first", "last", "markov", "shapley_rate"}


def test_notes_naming_channels_are_text_not_links(app_db, monkeypatch):
    """The data-driven model's note lists the channels it gives no effect: a channel named like a Markdown link
    stays those characters."""
    eng, ds, touch, conv = app_db
    hostile = "[login](http://evil.example)"
    monkeypatch.setattr(ar, "unmeasured_note", lambda details: f"data_driven gives no effect to {hostile}: test")
    at = _page()
    at.multiselect(key="attr.models").set_value(["last", "data_driven"])
    at.number_input(key="attr.bootstrap").set_value(0)
    at.button(key="attr.run").click().run()
    assert not at.exception, at.exception
    at.get("button_group")[0].set_value("fit").run()  # the "Model fit" section
    assert not at.exception, at.exception
    notes = [c.value for c in at.caption if "gives no effect" in c.value]
    assert notes and all("[login](http" not in n and r"\[login\]" in n for n in notes), notes
