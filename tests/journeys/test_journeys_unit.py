"""Known-answer and error tests for core.journeys."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from core.journeys import (
    NO_TOUCH,
    JourneyError,
    aggregate_paths,
    build_journeys,
    build_journeys_with_report,
    build_pathtable,
    build_pathtable_with_report,
    journeys_frame,
    unique_paths,
)


def ts(*texts):
    return pd.to_datetime(list(texts), utc=True)


def frames():
    touch = pd.DataFrame(
        {
            "user_key": ["a", "a", "a", "a", "b", "b", "c"],
            "ts": ts("2024-01-01", "2024-01-10", "2024-01-12", "2024-01-20", "2024-01-05", "2024-02-20", "2024-01-03"),
            "channel": ["meta", "email", "search", "meta", "search", "tv", "email"],
            "campaign_id": ["m1", None, "s1", "", "s2", "t1", None],
        }
    )
    conv = pd.DataFrame(
        {
            "user_key": ["a", "a", "b", "d"],
            "ts": ts("2024-01-12", "2024-01-15", "2024-01-06", "2024-01-09"),
            "conversion_id": ["o1", "o2", "o3", "o4"],
            "value": [100.0, 50.0, 20.0, 7.5],
            "currency": "USD",
        }
    )
    return touch, conv


def paths(table):
    f = table.to_frame()
    return {p: (c, v, n) for p, c, v, n in zip(f["path"], f["total_conversions"], f["total_conversion_value"], f["total_null"])}


def test_known_answer_with_edges():
    touch, conv = frames()
    j, report = build_journeys_with_report(touch, conv, lookback_days=10)
    frame = journeys_frame(j).set_index("conversion_id", drop=False)
    # o1 at 01-12: the touch at exactly 01-12 belongs to it; 01-01 is 11 days back (outside 10 days).
    assert frame.loc["o1", "path"] == "email > search"
    # o2 at 01-15: nothing after o1 -> the (no touch) pseudo channel keeps the conversion.
    assert frame.loc["o2", "path"] == NO_TOUCH
    assert frame.loc["o3", "path"] == "search"
    assert frame.loc["o4", "path"] == NO_TOUCH  # a converter with no touchpoint at all
    nulls = frame[~frame["converted"]].set_index("user_key")
    assert nulls.loc["a", "path"] == "meta" and nulls.loc["b", "path"] == "tv" and nulls.loc["c", "path"] == "email"
    assert report.touches_outside_lookback == 1 and report.no_touch_conversions == 2
    assert report.null_journeys == 3 and report.converting_journeys == 4
    table = build_pathtable(touch, conv, lookback_days=10)
    assert paths(table) == {
        "email > search": (1.0, 100.0, 0.0),
        NO_TOUCH: (2.0, 57.5, 0.0),
        "search": (1.0, 20.0, 0.0),
        "meta": (0.0, 0.0, 1.0),
        "tv": (0.0, 0.0, 1.0),
        "email": (0.0, 0.0, 1.0),
    }
    assert table.total_conversions == 4 and table.total_value == pytest.approx(177.5)
    table.validate()


def test_lookback_boundary_is_inclusive_and_touch_at_previous_conversion_belongs_to_it():
    touch = pd.DataFrame(
        {"user_key": ["u"] * 3, "ts": ts("2024-01-01", "2024-01-11", "2024-01-21"), "channel": ["x", "y", "z"]}
    )
    conv = pd.DataFrame({"user_key": ["u", "u"], "ts": ts("2024-01-11", "2024-01-21"), "conversion_id": ["a", "b"], "value": [1.0, 2.0]})
    frame = journeys_frame(build_journeys(touch, conv, lookback_days=10)).set_index("conversion_id")
    assert frame.loc["a", "path"] == "x > y"  # exactly 10 days back is inside; 01-11 is at conversion a
    assert frame.loc["b", "path"] == "z"  # the 01-11 touch went to a, not to b
    assert len(frame) == 2  # no tail: the last touch is at the last conversion


def test_same_instant_ties_break_by_label_name():
    touch = pd.DataFrame({"user_key": ["u", "u", "u"], "ts": ts("2024-01-02", "2024-01-02", "2024-01-01"), "channel": ["zeta", "alpha", "mid"]})
    conv = pd.DataFrame({"user_key": ["u"], "ts": ts("2024-01-03"), "conversion_id": ["o"], "value": [1.0]})
    j = build_journeys(touch, conv)
    assert j.path(0) == ("mid", "alpha", "zeta")


def test_null_lookback_switch():
    touch = pd.DataFrame({"user_key": ["u"] * 3, "ts": ts("2024-01-01", "2024-03-01", "2024-03-02"), "channel": ["a", "b", "c"]})
    conv = pd.DataFrame(columns=["user_key", "ts", "conversion_id", "value"]).astype({"ts": "datetime64[ns, UTC]", "value": float})
    assert build_journeys(touch, conv, 30).path(0) == ("b", "c")
    assert build_journeys(touch, conv, 30, null_lookback=False).path(0) == ("a", "b", "c")
    _, report = build_pathtable_with_report(touch, conv, 30)
    assert report.touches_outside_null_window == 1 and report.touches_in_nulls == 2


def test_campaign_level_labels_and_fallback():
    touch, conv = frames()
    table = build_pathtable(touch, conv, lookback_days=10, level="campaign")
    assert set(table.channels) == {"email", "search:s1", "search:s2", "meta", "tv:t1", NO_TOUCH}
    assert "email > search:s1" in paths(table)
    with pytest.raises(JourneyError, match="campaign level needs campaign ids or names"):
        build_pathtable(touch.drop(columns="campaign_id"), conv, lookback_days=10, level="campaign")
    # a campaign name stands in where a touch has no id
    named = touch.assign(campaign=touch["campaign_id"].map({"s1": "spring", "s2": "summer", "t1": "tv"}))
    named.loc[named["campaign_id"] == "s2", "campaign_id"] = None
    by_name = build_pathtable(named, conv, lookback_days=10, level="campaign")
    assert set(by_name.channels) == {"email", "search:s1", "search:summer", "meta", "tv:t1", NO_TOUCH}


def test_categorical_and_string_inputs_agree():
    touch, conv = frames()
    cat = touch.assign(user_key=touch["user_key"].astype("category"), channel=touch["channel"].astype("category"))
    cat["channel"] = cat["channel"].cat.add_categories(["unused"])
    assert paths(build_pathtable(cat, conv, 10)) == paths(build_pathtable(touch, conv, 10))
    assert build_pathtable(cat, conv, 10).channels == build_pathtable(touch, conv, 10).channels


def test_empty_inputs():
    touch, conv = frames()
    j = build_journeys(touch.iloc[:0], conv.iloc[:0])
    assert j.n_journeys == 0 and j.channels == ()
    only_conv = build_pathtable(touch.iloc[:0], conv)
    assert paths(only_conv) == {NO_TOUCH: (4.0, 177.5, 0.0)}
    only_touch = build_pathtable(touch, conv.iloc[:0], 365)
    assert only_touch.total_conversions == 0 and only_touch.total_nulls == 3


def test_progress_is_reported_in_order():
    touch, conv = frames()
    seen = []
    build_pathtable(touch, conv, progress=lambda f, text: seen.append((f, text)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 5


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t, c: (t.drop(columns="channel"), c), "touchpoints lacks column(s): channel"),
        (lambda t, c: (t, c.drop(columns="ts")), "conversions lacks column(s): ts"),
        (lambda t, c: (t.assign(ts=t["ts"].dt.tz_localize(None)), c), "touchpoints.ts is timezone-naive"),
        (lambda t, c: (t.assign(ts=t["ts"].astype(str)), c), "touchpoints.ts must be a tz-aware datetime"),
        (lambda t, c: (t, c.assign(value=[1.0, -2.0, 3.0, 4.0])), "conversions.value is negative on row 2"),
        (lambda t, c: (t, c.assign(value=[1.0, None, 3.0, 4.0])), "conversions.value is missing on row 2"),
        (lambda t, c: (t, c.assign(value=["1", "x", "3", "4"])), "conversions.value is not a number on row 2"),
        (lambda t, c: (t.assign(user_key=["a", None, "a", "a", "b", "b", "c"]), c), "touchpoints.user_key is missing on row 2"),
        (lambda t, c: (t.assign(channel=["a", "b", None, "a", "b", "b", "c"]), c), "touchpoints.channel is missing on row 3"),
        (lambda t, c: ("not a frame", c), "touchpoints must be a pandas DataFrame"),
    ],
)
def test_bad_input_names_what_and_where(mutate, message):
    touch, conv = mutate(*frames())
    with pytest.raises(JourneyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_pathtable(touch, conv)


@pytest.mark.parametrize("kwargs, message", [({"lookback_days": 0}, "lookback_days"), ({"lookback_days": float("nan")}, "lookback_days"),
                                             ({"lookback_days": "x"}, "lookback_days"), ({"level": "ad"}, "level must be one of")])
def test_bad_parameters(kwargs, message):
    touch, conv = frames()
    with pytest.raises(JourneyError, match=message):
        build_pathtable(touch, conv, **kwargs)


def test_unique_paths_with_paths_longer_than_one_word():
    rng = np.random.default_rng(3)
    n_symbols = 300  # 9 bits per code -> 7 codes per 64-bit word, so long paths span several words
    seqs = [list(rng.integers(0, 4, rng.integers(1, 30))) for _ in range(400)]
    seqs += seqs[:150]  # duplicates
    seqs += [s[:-1] for s in seqs[:50] if len(s) > 1]  # prefixes: same words but one shorter
    lengths = np.array([len(s) for s in seqs])
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    inverse, first = unique_paths(offsets, codes, n_symbols)
    groups = defaultdict(set)
    for i, s in enumerate(seqs):
        groups[tuple(s)].add(int(inverse[i]))
    assert all(len(g) == 1 for g in groups.values())
    assert len({next(iter(g)) for g in groups.values()}) == len(groups) == first.shape[0]
    for k, i in enumerate(first):
        assert inverse[i] == k
    table = aggregate_paths(tuple(f"c{i}" for i in range(n_symbols)), offsets, codes, np.ones(len(seqs)), np.arange(len(seqs), dtype=float), np.zeros(len(seqs)))
    assert table.n_paths == len(groups) and table.total_conversions == len(seqs)
    assert table.total_value == pytest.approx(np.arange(len(seqs)).sum())
    assert {tuple(int(c[1:]) for c in table.path(i)) for i in range(table.n_paths)} == set(groups)


def test_categorical_users_keep_the_string_order_and_skip_unused_categories():
    """Categorical keys (as `core.ingest` hands them over) give the same journeys, in the same order,
    as plain strings; categories no row uses neither count as users nor shift any code."""
    touch, conv = frames()
    cats = pd.CategoricalDtype(["zz", *sorted(set(touch["user_key"]) | set(conv["user_key"])), "zzz"])
    variants = [
        (touch.assign(user_key=touch["user_key"].astype(cats)), conv.assign(user_key=conv["user_key"].astype(cats))),
        (touch.assign(user_key=touch["user_key"].astype("category")), conv.assign(user_key=conv["user_key"].astype("category"))),
        (touch.assign(user_key=touch["user_key"].astype("category")), conv),
    ]
    ref, ref_report = build_journeys_with_report(touch, conv, 10)
    for t, c in variants:
        got, report = build_journeys_with_report(t.assign(channel=t["channel"].astype("category")), c, 10)
        assert report == ref_report and report.users == 4
        assert got.user_key.tolist() == ref.user_key.tolist()
        assert [got.path(i) for i in range(got.n_journeys)] == [ref.path(i) for i in range(ref.n_journeys)]
        assert got.conversion_id.tolist() == ref.conversion_id.tolist()
