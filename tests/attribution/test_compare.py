"""run_attribution: the tidy table, details, errors, bootstrap intervals and the journey drill-down."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.attribution import MODEL_EXPLANATIONS, MODEL_NAMES, TABLE_COLUMNS, run_attribution
from core.pathtable import Journeys, PathTable, PathTableError

from .conftest import random_table

PATH_MODELS = [m for m in MODEL_NAMES if m != "time_decay"]


def test_table_shape_totals_and_json_details(ca_data):
    res = run_attribution(ca_data, None, PATH_MODELS, order=2)
    t = res.table
    assert list(t.columns) == TABLE_COLUMNS
    assert set(t["model"]) == set(PATH_MODELS)
    assert len(t) == len(PATH_MODELS) * ca_data.n_channels
    sums = t.groupby("model")[["conversions", "value", "share"]].sum()
    # every model shares out all conversions, except data-driven, which leaves the baseline's to no channel
    dd = res.details["data_driven"]
    sums.loc["data_driven", "conversions"] += dd["baseline_conversions"]
    sums.loc["data_driven", "value"] += dd["baseline_value"]
    assert 0 < dd["baseline_conversions"] < ca_data.total_conversions
    np.testing.assert_allclose(sums["conversions"], ca_data.total_conversions, rtol=1e-9)
    np.testing.assert_allclose(sums["value"], ca_data.total_value, rtol=1e-9)
    np.testing.assert_allclose(sums["share"], 1.0, rtol=1e-9)
    assert t["conversions_low"].isna().all()  # no bootstrap asked
    json.dumps(res.details)
    assert res.details["markov"]["order"] == 2
    assert set(res.details["markov"]["removal_effects"]) == set(ca_data.channels)
    assert "unobserved_rule" in res.details["shapley_rate"]
    assert set(MODEL_EXPLANATIONS) == set(MODEL_NAMES)


def test_markov_close_to_channelattribution_simulation(ca_data):
    # ChannelAttribution 2.2.5 markov_model(order=1, var_null="total_null") on Data.csv, run on this machine;
    # its removal effects are simulated (1e5+ paths), so only agreement to about 1e-2 is expected.
    ca_removal = {"alpha": 0.558723, "iota": 0.395745, "eta": 0.348936, "beta": 0.265957, "theta": 0.205957, "lambda": 0.136170}
    re = run_attribution(ca_data, None, ["markov"]).details["markov"]["removal_effects"]
    for name, ref in ca_removal.items():
        assert re[name] == pytest.approx(ref, abs=0.02), name


def test_model_errors():
    table = random_table(0)
    with pytest.raises(ValueError, match="Journeys"):
        run_attribution(table, None, ["linear", "time_decay"])
    with pytest.raises(ValueError, match="unknown model"):
        run_attribution(table, None, ["linear", "magic"])
    with pytest.raises(PathTableError, match="no conversions"):
        run_attribution(PathTable.from_strings(["a"], [0], None, [3]), None, ["linear"])
    with pytest.raises(PathTableError, match="negative"):
        run_attribution(PathTable.from_strings(["a", "b"], [1, 1], None, [2, -1]), None, ["markov"])


def test_all_alias_and_colon_channels():
    names = ["google:brand", "meta:prospecting", "meta:retarget"]
    table = random_table(4, n_paths=30, names=names)
    res = run_attribution(table, None, "first,last,linear,position,markov,shapley,shapley_rate", order=3)
    assert set(res.table["channel"]) == set(names)
    assert set(res.details["markov"]["removal_effects"]) == set(names)


@pytest.fixture(scope="module")
def medium_table():
    return random_table(21, n_paths=400, n_channels=6, max_len=6)


def test_bootstrap_intervals_contain_estimates_and_are_seeded(medium_table):
    res = run_attribution(medium_table, None, PATH_MODELS, bootstrap=60, seed=3)
    t = res.table
    assert t["conversions_low"].notna().all()
    assert (t["conversions_low"] <= t["conversions"] + 1e-9).all()
    assert (t["conversions"] <= t["conversions_high"] + 1e-9).all()
    assert (t["value_low"] <= t["value"] + 1e-9).all() and (t["value"] <= t["value_high"] + 1e-9).all()
    assert (t["conversions_high"] > t["conversions_low"]).all()
    again = run_attribution(medium_table, None, PATH_MODELS, bootstrap=60, seed=3).table
    np.testing.assert_array_equal(t["conversions_low"], again["conversions_low"])
    other = run_attribution(medium_table, None, PATH_MODELS, bootstrap=60, seed=4).table
    assert not np.array_equal(t["conversions_low"], other["conversions_low"])
    assert res.details["bootstrap"]["replicates"] == 60


def test_progress_is_reported(medium_table):
    seen = []
    run_attribution(medium_table, None, ["linear", "markov"], bootstrap=3, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 5


DAY = 86_400 * 10**9


def _journeys(seed: int, n: int = 300) -> Journeys:
    rng = np.random.default_rng(seed)
    channels = ("email", "search", "social")
    lengths = rng.integers(1, 5, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = rng.integers(0, 3, size=offsets[-1]).astype(np.int32)
    end = rng.integers(30, 60, size=n).astype(np.int64) * DAY
    touch = end[np.repeat(np.arange(n), lengths)] - rng.integers(0, 30 * DAY, size=offsets[-1])
    conv = (rng.random(n) < 0.3).astype(float)
    conv[0] = 1.0
    return Journeys(channels, offsets, codes, touch, end, conv, conv * rng.uniform(5, 50, size=n),
                    np.array([f"u{i}" for i in range(n)], dtype=object), np.array([None] * n, dtype=object))


def test_journeys_run_includes_time_decay_with_intervals():
    j = _journeys(2)
    res = run_attribution(None, j, MODEL_NAMES, half_life_days=3, bootstrap=40, seed=1)
    t = res.table
    td = t[t["model"] == "time_decay"]
    assert td["conversions"].sum() == pytest.approx(j.conversions.sum())
    assert td["value"].sum() == pytest.approx(j.value.sum())
    assert ((td["conversions_low"] <= td["conversions"]) & (td["conversions"] <= td["conversions_high"])).all()
    sums = t.groupby("model")["conversions"].sum()
    sums["data_driven"] += res.details["data_driven"]["baseline_conversions"]
    np.testing.assert_allclose(sums, j.conversions.sum(), rtol=1e-9)


def test_drill_down_rules(medium_table):
    res = run_attribution(medium_table, None, PATH_MODELS)
    path = ["c0", "c1", "c0", "c2"]
    d = res.explain_journey(path).pivot(index="channel", columns="model", values="share")
    np.testing.assert_allclose(d.drop(columns="data_driven").sum(axis=0), 1.0)
    assert 0 < d["data_driven"].sum() < 1  # the rest is the baseline's
    assert d.loc["c0", "first"] == 1.0 and d.loc["c2", "last"] == 1.0
    assert d.loc["c0", "linear"] == pytest.approx(0.5)
    assert d.loc["c0", "position"] == pytest.approx(0.4 + 0.1) and d.loc["c2", "position"] == pytest.approx(0.4)
    assert d.loc["c1", "shapley"] == pytest.approx(1 / 3)
    re = res.details["markov"]["removal_effects"]
    assert d.loc["c1", "markov"] == pytest.approx(re["c1"] / (re["c0"] + re["c1"] + re["c2"]))


def test_shapley_rate_drill_down_adds_up_to_the_table(medium_table):
    """Summing every path's drill-down x its conversions reproduces the model's credit."""
    res = run_attribution(medium_table, None, ["shapley_rate", "shapley"])
    total = {m: dict.fromkeys(medium_table.channels, 0.0) for m in ("shapley_rate", "shapley")}
    for i in range(medium_table.n_paths):
        if medium_table.conversions[i] == 0:
            continue
        d = res.explain_journey(medium_table.path(i))
        for row in d.itertuples():
            total[row.model][row.channel] += row.share * medium_table.conversions[i]
    t = res.table.set_index(["model", "channel"])["conversions"]
    for model, credit in total.items():
        for ch, x in credit.items():
            assert x == pytest.approx(t[(model, ch)], rel=1e-9, abs=1e-9), (model, ch)


def test_time_decay_drill_down():
    j = _journeys(3, n=50)
    res = run_attribution(None, j, ["time_decay", "last"], half_life_days=7)
    d = res.explain_journey(["email", "search"], ["2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"], "2024-01-08T00:00:00Z")
    td = d[d["model"] == "time_decay"].set_index("channel")["share"]
    assert td["email"] == pytest.approx(1 / 3) and td["search"] == pytest.approx(2 / 3)
    no_times = res.explain_journey(["email", "search"])
    assert no_times[no_times["model"] == "time_decay"]["share"].isna().all()


def test_evaluate_false_still_fits_the_model_the_chosen_models_need(medium_table):
    """``evaluate=False`` with data_driven (or shapley_rate) chosen once failed on a conversion model that
    was never fitted; the same numbers come out as with the default."""
    off = run_attribution(medium_table, None, ["data_driven", "shapley_rate"], evaluate=False, seed=3)
    default = run_attribution(medium_table, None, ["data_driven", "shapley_rate"], seed=3)
    np.testing.assert_allclose(off.table["conversions"], default.table["conversions"])
    assert off.table.loc[off.table["model"] == "data_driven", "conversions"].sum() > 0
    # a model without the conversion model pays for no cross-validation
    assert "evaluation" not in run_attribution(medium_table, None, ["linear"], evaluate=False).details
