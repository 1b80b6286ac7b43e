"""Canonical event frames carry user_key and channel dictionary-encoded (categoricals with sorted str
categories, user categories shared by one file's touchpoints and conversions), and every consumer still
sees plain text: comparisons, .astype(str), isin, grouping, merging, the unique-user count, storage."""

from __future__ import annotations

import pandas as pd

from core.ingest import load_events, read_files, save_import
from core.ingest.events import empty_conversions, empty_touchpoints
from core.journeys import build_journeys_with_report, build_pathtable


def _is_text_categorical(series: pd.Series) -> bool:
    dtype = series.dtype
    return (isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype == "str"
            and list(dtype.categories) == sorted(dtype.categories))


def test_import_frames_are_categorical_and_behave_as_text(events_csv):
    r = read_files([events_csv])
    t, c = r.touchpoints, r.conversions
    assert _is_text_categorical(t["user_key"]) and _is_text_categorical(t["channel"]) and _is_text_categorical(c["user_key"])
    assert t["user_key"].cat.categories.equals(c["user_key"].cat.categories)
    # only values of their own rows: no unused channel, no user of an ignored row
    assert set(t["channel"].cat.categories) == set(t["channel"]) and not (t["channel"].value_counts() == 0).any()
    assert set(t["user_key"].cat.categories) == set(t["user_key"]) | set(c["user_key"])
    assert t["user_key"].tolist() == ["u1", "u1", "u2", "u3"] and (t["user_key"] == "u1").sum() == 2
    assert t["channel"].astype(str).tolist() == ["google", "meta", "email", "direct"]
    assert t["user_key"].isin(["u2"]).tolist() == [False, False, True, False]
    assert t.groupby("user_key", observed=True).size().to_dict() == {"u1": 2, "u2": 1, "u3": 1}
    merged = t.merge(c[["user_key", "conversion_id"]], on="user_key")
    assert sorted(merged["conversion_id"]) == ["o1", "o1", "o2"]
    assert pd.concat([t["user_key"], c["user_key"]]).nunique() == r.report["users"] == 3


def test_unique_users_count_across_frames_with_different_categories(write):
    touch = write("touch.csv", "user_id,timestamp,channel\na,2024-01-01T00:00:00Z,x\nb,2024-01-02T00:00:00Z,y\n")
    conv = write("conv.csv", "user_id,timestamp,order_id,revenue\nb,2024-01-03T00:00:00Z,o1,5\nc,2024-01-04T00:00:00Z,o2,6\n")
    r = read_files([touch, conv])
    t, c = r.touchpoints, r.conversions
    # two files: the union is encoded once, shared by touchpoints and conversions (the fast path of journeys)
    assert list(t["user_key"].cat.categories) == ["a", "b", "c"] == list(c["user_key"].cat.categories)
    assert set(t["user_key"]) == {"a", "b"} and set(c["user_key"]) == {"b", "c"}
    both = pd.concat([t["user_key"], c["user_key"]])
    assert both.nunique() == r.report["users"] == 3 and sorted(both.astype(str).unique()) == ["a", "b", "c"]
    table, report = build_journeys_with_report(t, c, lookback_days=30)
    assert report.users == 3 and report.conversions == 2


def test_several_event_files_concatenate(write):
    a = write("a.csv", "user_id,timestamp,event_type,channel,order_id\nu1,2024-01-01T00:00:00Z,touch,x,\nu1,2024-01-02T00:00:00Z,purchase,,o1\n")
    b = write("b.csv", "user_id,timestamp,event_type,channel,order_id\nu2,2024-01-01T00:00:00Z,touch,y,\nu2,2024-01-02T00:00:00Z,purchase,,o2\n")
    r = read_files([a, b])
    assert r.touchpoints["user_key"].astype(str).tolist() == ["u1", "u2"]
    assert _is_text_categorical(r.touchpoints["user_key"]) and _is_text_categorical(r.touchpoints["channel"])
    assert r.report["users"] == 2 and r.report["channels"] == {"x": 1, "y": 1}
    assert build_pathtable(r.touchpoints, r.conversions).total_conversions == 2


def test_empty_frames_have_the_same_dtypes():
    assert _is_text_categorical(empty_touchpoints()["user_key"]) and _is_text_categorical(empty_touchpoints()["channel"])
    assert _is_text_categorical(empty_conversions()["user_key"])


def test_stored_data_set_reads_back_categorical_with_the_import_dtypes(engine, events_csv):
    r = read_files([events_csv])
    ds = save_import(engine, "ws", "events", r)
    t, c = load_events(engine, "ws", ds)
    assert _is_text_categorical(t["user_key"]) and _is_text_categorical(t["channel"])
    assert t["user_key"].cat.categories.equals(c["user_key"].cat.categories)
    pd.testing.assert_frame_equal(t, r.touchpoints)
    pd.testing.assert_frame_equal(c, r.conversions)
    j1, rep1 = build_journeys_with_report(t, c)
    j2, rep2 = build_journeys_with_report(t.astype({"user_key": "str", "channel": "str"}), c.astype({"user_key": "str"}))
    assert rep1 == rep2 and j1.user_key.tolist() == j2.user_key.tolist()
