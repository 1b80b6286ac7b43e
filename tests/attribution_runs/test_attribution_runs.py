"""Stored attribution runs: compute -> store -> reopen, reuse by key, parameters, drill-down, chart frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import attribution_runs as ar
from core.attribution.compare import run_attribution
from core.journeys import build_journeys
from core.store.db import make_engine
from tests.attribution_runs.helpers import add_event_dataset, add_path_dataset, make_events

ALL = ("first", "last", "linear", "position", "time_decay", "markov", "shapley", "shapley_rate")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    eng = make_engine("sqlite:///" + str(tmp_path_factory.mktemp("runs") / "t.db"))
    touch, conv = make_events()
    ds = add_event_dataset(eng, "ws1", touch, conv)
    yield eng, ds, touch, conv
    eng.dispose()


@pytest.fixture(scope="module")
def stored(setup):
    eng, ds, *_ = setup
    seen = []
    run = ar.execute_run(eng, "ws1", ar.RunParams(ds, ALL, lookback_days=20, bootstrap=30, seed=3),
                         progress=lambda f, t: seen.append((f, t)))
    return run, seen


def test_stored_table_equals_engine_output(setup, stored):
    _, _, touch, conv = setup
    run, _ = stored
    journeys = build_journeys(touch, conv, lookback_days=20, level="channel")
    direct = run_attribution(journeys.to_pathtable(), journeys, list(ALL), bootstrap=30, seed=3)
    pd.testing.assert_frame_equal(run.table.reset_index(drop=True), direct.table.reset_index(drop=True),
                                  check_dtype=False, rtol=1e-12, atol=1e-12)
    assert run.details["markov"]["removal_effects"] == pytest.approx(direct.details["markov"]["removal_effects"])
    # conversions are conserved under every model
    totals = run.table.groupby("model")["conversions"].sum()
    assert np.allclose(totals.to_numpy(), len(conv))
    assert run.table["conversions_low"].notna().all() and (run.table["conversions_low"] <= run.table["conversions_high"] + 1e-9).all()


def test_progress_reaches_one_and_never_goes_back(stored):
    _, seen = stored
    fractions = [f for f, _ in seen]
    assert fractions[-1] == 1.0 and fractions[0] == 0.0
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:]))


def test_reopen_lists_and_latest(setup, stored):
    eng, ds, *_ = setup
    run, _ = stored
    again = ar.load_run(eng, "ws1", run.id)
    pd.testing.assert_frame_equal(again.table, run.table)
    assert again.params == run.params and again.dataset_name == "events"
    assert again.extra["drilldown"] == run.extra["drilldown"]
    runs = ar.list_runs(eng, "ws1", ds)
    assert run.id in runs["id"].tolist()
    assert ar.latest_run_id(eng, "ws1", ds) == runs["id"].max()
    assert ar.latest_run_id(eng, "ws1", ds + 999) is None


def test_same_parameters_reuse_the_stored_run(setup, stored):
    eng, ds, *_ = setup
    run, _ = stored
    before = len(ar.list_runs(eng, "ws1"))
    same = ar.execute_run(eng, "ws1", ar.RunParams(ds, tuple(reversed(ALL)), lookback_days=20.0, bootstrap=30, seed=3))
    assert same.reused and same.id == run.id
    assert len(ar.list_runs(eng, "ws1")) == before
    other = ar.execute_run(eng, "ws1", ar.RunParams(ds, ("first", "markov"), lookback_days=20, order=2))
    assert not other.reused and other.id != run.id
    assert ar.latest_run_id(eng, "ws1", ds) == other.id
    assert set(other.table["model"]) == {"first", "markov"}
    assert other.table["conversions_low"].isna().all()  # no bootstrap: NaN survives the JSON round trip


def test_run_key_depends_on_workspace_content_and_params():
    p = ar.RunParams(1, ("first",))
    k = ar.run_key("a", "h1", p)
    assert k == ar.run_key("a", "h1", ar.RunParams(1, ("first",)))
    assert k != ar.run_key("b", "h1", p)
    assert k != ar.run_key("a", "h2", p)
    assert k != ar.run_key("a", "h1", ar.RunParams(1, ("first",), lookback_days=7))


def test_other_workspace_cannot_see_the_run(setup, stored):
    eng, *_ = setup
    run, _ = stored
    with pytest.raises(ar.RunNotFound, match="does not exist"):
        ar.load_run(eng, "ws2", run.id)
    assert ar.list_runs(eng, "ws2").empty
    with pytest.raises(ar.RunError, match="does not exist"):
        ar.execute_run(eng, "ws2", ar.RunParams(run.dataset_id, ("first",)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"models": ()}, "at least one model"),
        ({"models": ("first", "magic")}, "unknown model"),
        ({"position_shares": (0.7, 0.5)}, "position shares"),
        ({"position_shares": (-0.1, 0.5)}, "position shares"),
        ({"order": 5}, "order must be 1 to 4"),
        ({"lookback_days": 0}, "lookback"),
        ({"level": "ad"}, "level"),
        ({"half_life_days": -1}, "half-life"),
        ({"bootstrap": -2}, "bootstrap"),
        ({"bootstrap": 10**6}, "bootstrap"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    base = {"dataset_id": 1, "models": ("first",)}
    with pytest.raises(ar.RunError, match=message):
        ar.RunParams(**(base | kwargs)).validated()


def test_drilldown_of_top_paths(setup, stored):
    _, _, touch, conv = setup
    run, _ = stored
    dd = run.extra["drilldown"]
    assert 0 < len(dd) <= ar.DRILLDOWN_PATHS
    counts = [d["conversions"] for d in dd]
    assert counts == sorted(counts, reverse=True)
    journeys = build_journeys(touch, conv, lookback_days=20)
    frame = journeys.to_pathtable().to_frame().sort_values("total_conversions", ascending=False)
    assert counts[0] == frame["total_conversions"].iloc[0]
    for entry in dd:
        split = ar.split_frame(entry)
        assert set(split["model"]) == set(ALL)
        sums = split.groupby("model")["share"].sum(min_count=1).dropna()
        assert np.allclose(sums.drop("shapley_rate", errors="ignore"), 1.0)
        first_channel = entry["path"].split(" > ")[0]
        f = split[split["model"] == "first"].set_index("channel")["share"]
        assert f[first_channel] == 1.0
        assert entry["converted"] and len(entry["touch_ts"]) == len(entry["path"].split(" > "))


def test_user_drilldown_matches_the_user(setup, stored):
    eng, _, _, conv = setup
    run, _ = stored
    paths, journeys = ar.load_inputs(eng, "ws1", run.params)
    result = ar.drilldown_result(run, paths)
    user = conv["user_key"].iloc[0]
    entries = ar.user_drilldown(result, journeys, user)
    assert entries and all(e["user_key"] == user for e in entries)
    assert any(e["conversion_id"] == conv["conversion_id"].iloc[0] for e in entries)
    with pytest.raises(ar.RunError, match="no journey"):
        ar.user_drilldown(result, journeys, "nobody")
    with pytest.raises(ar.RunError, match="path-level"):
        ar.user_drilldown(result, None, user)


def test_chart_frames(stored):
    run, _ = stored
    tf = ar.transition_frame(run)
    out_sums = tf.groupby("from")["probability"].sum()
    assert np.allclose(out_sums.to_numpy(), 1.0)
    assert "(start)" in set(tf["from"]) and "(conversion)" in set(tf["to"])
    small = ar.transition_frame(run, max_states=2)
    assert len(set(small["from"]) - {"(start)"}) <= 2
    re = ar.removal_effects(run)
    assert list(re["channel"]) == list(re.sort_values("removal_effect", ascending=False)["channel"])
    assert re.set_index("channel")["removal_effect"].to_dict() == pytest.approx(run.details["markov"]["removal_effects"])
    diff = ar.shapley_vs_markov(run.table)
    wide = run.table.pivot(index="channel", columns="model", values="conversions")
    row = diff[(diff["variant"] == "shapley") & (diff["channel"] == "search")]["difference"].iloc[0]
    assert row == pytest.approx(wide.loc["search", "shapley"] - wide.loc["search", "markov"])
    shown = ar.display_table(run)
    assert list(shown.columns) == ["channel", "model", "conversions", "value", "share", "conversions_low", "conversions_high", "value_low", "value_high", "interval"]
    assert (shown["interval"] != "").all()


def test_path_level_dataset(tmp_path):
    eng = make_engine("sqlite:///" + str(tmp_path / "p.db"))
    frame = pd.DataFrame({"path": ["a > b", "b", "a > c > b", "c"], "total_conversions": [3, 1, 2, 0],
                          "total_conversion_value": [30.0, 10.0, 20.0, 0.0], "total_null": [5, 4, 1, 6]})
    ds = add_path_dataset(eng, "default", frame)
    with pytest.raises(ar.RunError, match="time_decay needs event timestamps"):
        ar.execute_run(eng, "default", ar.RunParams(ds, ("first", "time_decay")))
    with pytest.raises(ar.RunError, match="channel level"):
        ar.execute_run(eng, "default", ar.RunParams(ds, ("first",), level="campaign"))
    run = ar.execute_run(eng, "default", ar.RunParams(ds, ("first", "markov", "shapley")))
    first = run.table[run.table["model"] == "first"].set_index("channel")["conversions"]
    assert first.to_dict() == pytest.approx({"a": 5.0, "b": 1.0, "c": 0.0})
    assert [d["path"] for d in run.extra["drilldown"]] == ["a > b", "a > c > b", "b"]
    eng.dispose()


def test_campaign_level(setup):
    eng, ds, *_ = setup
    run = ar.execute_run(eng, "ws1", ar.RunParams(ds, ("linear",), level="campaign"))
    assert run.table["channel"].str.contains(":").all()


def test_last_opened_run_is_remembered_per_data_set(engine):
    """The run the user opened last survives the session (stored in the run's parameters JSON), per data set,
    on SQLite and PostgreSQL, and never changes the run's numbers or its reuse key."""
    touch, conv = make_events(n_users=60, seed=5)
    ds = add_event_dataset(engine, "ws_open", touch, conv, name="opened events")
    a = ar.execute_run(engine, "ws_open", ar.RunParams(ds, ("first",)))
    b = ar.execute_run(engine, "ws_open", ar.RunParams(ds, ("last",)))
    assert ar.last_opened_run(engine, "ws_open", ds) is None  # nothing opened yet
    ar.mark_opened(engine, "ws_open", a.id)
    assert ar.last_opened_run(engine, "ws_open", ds) == a.id == ar.last_opened_run(engine, "ws_open")
    ar.mark_opened(engine, "ws_open", b.id)
    assert ar.last_opened_run(engine, "ws_open", ds) == b.id
    ar.mark_opened(engine, "ws_open", a.id)
    assert ar.last_opened_run(engine, "ws_open", ds) == a.id
    assert ar.last_opened_run(engine, "ws_open", ds + 999) is None
    again = ar.load_run(engine, "ws_open", a.id)
    pd.testing.assert_frame_equal(again.table, a.table)
    assert again.params == a.params and again.key == a.key
    assert ar.execute_run(engine, "ws_open", ar.RunParams(ds, ("first",))).reused  # the key still matches
    with pytest.raises(ar.RunNotFound):
        ar.mark_opened(engine, "other_ws", a.id)  # another workspace cannot touch it


def test_negative_note_says_what_negative_values_would_have_taken():
    assert ar.negative_note({}) is None
    assert ar.negative_note({"data_driven": {"negative_conversions": 0.001}}) is None
    note = ar.negative_note({"data_driven": {"negative_conversions": 5167.49}})
    assert "5,167.49 conversions" in note and "no negative credit" in note
    both = ar.negative_note({"data_driven": {"negative_conversions": 2.0}, "shapley_rate": {"negative_conversions": 142.46}})
    assert "shapley_rate: 142.46 conversions" in both and "data_driven: 2.00" in both


def test_unmeasured_note_names_the_channels_the_data_driven_model_gave_no_effect():
    assert ar.unmeasured_note({}) is None
    assert ar.unmeasured_note({"data_driven": {"unmeasured_channels": []}}) is None
    note = ar.unmeasured_note({"data_driven": {"unmeasured_channels": ["Display", "Affiliate"]}})
    assert "Display, Affiliate" in note and "their effect from zero" in note and "no credit" in note
