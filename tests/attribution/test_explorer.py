"""Path explorer tables: conservation rules checked against the path table."""

from __future__ import annotations

import numpy as np
import pytest

from core.attribution import explorer
from core.pathtable import Journeys, PathTable

from .conftest import random_table


def test_top_paths_are_ordered_and_complete():
    t = random_table(3, n_paths=60, n_channels=4)
    top = explorer.top_paths(t, n=10)
    assert top["conversions"].is_monotonic_decreasing and len(top) == 10
    assert top["conversions"].iloc[0] == t.conversions.max()
    nul = explorer.top_paths(t, n=10, converting=False)
    assert nul["non_converting"].iloc[0] == t.nulls.max()
    np.testing.assert_allclose(top["journeys"], top["conversions"] + top["non_converting"])


def test_roles_account_for_every_conversion_once():
    t = PathTable.from_strings(["a > b > c > b", "a", "c > a", "b > b"], [2, 3, 1, 4], None, [1, 1, 1, 1])
    r = explorer.roles(t).set_index("channel")
    assert r.loc["a", "introducer"] == 2 and r.loc["a", "solo"] == 3 and r.loc["c", "introducer"] == 1
    assert r.loc["b", "assister"] == 2 and r.loc["c", "assister"] == 2  # b counted once in a > b > c > b
    assert r.loc["b", "closer"] == 6 and r.loc["a", "closer"] == 1
    assert r["introducer"].sum() + r["solo"].sum() == t.total_conversions


def test_sankey_conserves_journeys_at_every_step():
    t = random_table(5, n_paths=120, n_channels=7, max_len=6)
    g = explorer.sankey(t, steps=3, nodes_per_step=3)
    journeys = t.total_conversions + t.total_nulls
    links = g["links"]
    out0 = sum(link["weight"] for link in links if link["step"] == 0)
    assert out0 == pytest.approx(journeys)
    ended = sum(link["weight"] for link in links if link["target"] in (explorer.CONVERTED, explorer.NOT_CONVERTED))
    assert ended == pytest.approx(journeys)  # every journey ends somewhere
    conv = sum(link["weight"] for link in links if link["target"] == explorer.CONVERTED)
    assert conv == pytest.approx(t.total_conversions)
    for step in range(3):  # at most 3 channels (+ other) per step
        labels = {n["label"] for n in g["nodes"] if n["step"] == step} - {explorer.CONVERTED, explorer.NOT_CONVERTED}
        assert len(labels - {explorer.OTHER}) <= 3
    nodes, bands = explorer.sankey_geometry(g)
    assert (nodes["y1"] >= nodes["y0"]).all() and (bands["y_high"] >= bands["y_low"] - 1e-12).all()


def test_touches_and_time_to_convert():
    t = PathTable.from_strings(["a", "a > b", "a > b > c"], [1, 2, 3], None, [5, 5, 5])
    tc = explorer.touches_to_convert(t)
    assert tc.set_index("touches").loc[["1", "2", "3"], "conversions"].tolist() == [1, 2, 3]
    day = 86_400 * 10**9
    j = Journeys(("a",), np.array([0, 1, 3, 4]), np.zeros(4, dtype=np.int32), np.array([0, 0, 5, 0]) * day,
                 np.array([0.5, 10, 40]) * day, np.array([1.0, 1.0, 0.0]), np.zeros(3), np.array(["u"] * 3, dtype=object),
                 np.array(["1", "2", None], dtype=object))
    ttc = explorer.time_to_convert(j).set_index("time_to_convert")["conversions"]
    assert ttc["under 1 day"] == 1 and ttc["8-14 days"] == 1 and ttc.sum() == 2
    assert explorer.time_to_convert_summary(j)["median_days"] == pytest.approx(5.25)
