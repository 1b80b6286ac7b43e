"""Property tests: events -> journeys -> PathTable against a slow brute-force reference (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.journeys import NO_TOUCH, NS_PER_DAY, _assemble, build_journeys, build_journeys_with_report, build_pathtable

BASE = pd.Timestamp("2024-03-01", tz="UTC").value
HOUR = 3_600 * 10**9
USERS = ["ann", "bob", "cy", "dee", "eve"]
CHANNELS = ["email", "meta", "search", "tv"]


@st.composite
def event_sets(draw):
    """Random touchpoints and conversions; coarse hour times so that ties and window edges happen."""
    n_t = draw(st.integers(0, 40))
    n_c = draw(st.integers(0, 12))
    fine = draw(st.booleans())  # nanosecond jitter exercises the no-gcd path of the packed sort
    hours = st.integers(0, 24 * draw(st.sampled_from([3, 8, 40])))

    def times(k):
        h = np.array(draw(st.lists(hours, min_size=k, max_size=k)), dtype=np.int64)
        jitter = np.array(draw(st.lists(st.integers(0, 999), min_size=k, max_size=k)), dtype=np.int64) if fine else 0
        return pd.to_datetime(BASE + h * HOUR + jitter, utc=True)

    touch = pd.DataFrame(
        {
            "user_key": draw(st.lists(st.sampled_from(USERS), min_size=n_t, max_size=n_t)),
            "ts": times(n_t),
            "channel": draw(st.lists(st.sampled_from(CHANNELS), min_size=n_t, max_size=n_t)),
            "campaign_id": draw(st.lists(st.sampled_from(["c1", "c2", "", None]), min_size=n_t, max_size=n_t)),
        }
    )
    conv = pd.DataFrame(
        {
            "user_key": draw(st.lists(st.sampled_from(USERS), min_size=n_c, max_size=n_c)),
            "ts": times(n_c),
            "conversion_id": [f"o{i}" for i in range(n_c)],
            "value": draw(st.lists(st.floats(0, 500, allow_nan=False).map(lambda v: round(v, 2)), min_size=n_c, max_size=n_c)),
        }
    )
    touch["user_key"] = touch["user_key"].astype("str")
    conv["user_key"] = conv["user_key"].astype("str")
    lookback = draw(st.sampled_from([0.5, 1.0, 2.5, 30.0]))
    return touch, conv, lookback


def label_of(row, level):
    camp = row["campaign_id"]
    if level == "campaign" and camp is not None and not pd.isna(camp) and str(camp).strip() != "":
        return f"{row['channel']}:{camp}"
    return row["channel"]


def reference(touch: pd.DataFrame, conv: pd.DataFrame, lookback_days: float, level="channel", null_lookback=True):
    """The definition, written as plainly as possible: a list of journeys as comparable tuples."""
    window = int(round(lookback_days * NS_PER_DAY))
    touches = defaultdict(list)
    for _, r in touch.iterrows():
        touches[r["user_key"]].append((r["ts"].value, label_of(r, level)))
    convs = defaultdict(list)
    for i, r in conv.iterrows():
        convs[r["user_key"]].append((r["ts"].value, i, r["conversion_id"], float(r["value"])))
    out = []
    for user in set(touches) | set(convs):
        ts_list = sorted(touches[user])  # by time, then label name
        prev = None
        for ts, _row, cid, value in sorted(convs[user]):
            inside = [(t, lab) for t, lab in ts_list if (prev is None or t > prev) and t <= ts and ts - t <= window]
            if not inside:
                inside = [(ts, NO_TOUCH)]
            out.append((user, cid, tuple(lab for _, lab in inside), tuple(t for t, _ in inside), ts, 1.0, value))
            prev = ts
        tail = [(t, lab) for t, lab in ts_list if prev is None or t > prev]
        if tail:
            end = tail[-1][0]
            if null_lookback:
                tail = [(t, lab) for t, lab in tail if end - t <= window]
            out.append((user, None, tuple(lab for _, lab in tail), tuple(t for t, _ in tail), end, 0.0, 0.0))
    return sorted(out, key=repr)


def as_tuples(j):
    rows = []
    for i in range(j.n_journeys):
        a, b = j.offsets[i], j.offsets[i + 1]
        rows.append(
            (
                str(j.user_key[i]),
                j.conversion_id[i],
                j.path(i),
                tuple(int(t) for t in j.touch_ts[a:b]),
                int(j.end_ts[i]),
                float(j.conversions[i]),
                float(j.value[i]),
            )
        )
    return sorted(rows, key=repr)


def reference_paths(ref):
    agg = defaultdict(lambda: [0.0, 0.0, 0.0])
    for _u, _c, path, _t, _e, conv, value in ref:
        a = agg[" > ".join(path)]
        a[0] += conv
        a[1] += value
        a[2] += 1.0 - conv
    return {k: tuple(round(x, 6) for x in v) for k, v in agg.items()}


def table_paths(table):
    f = table.to_frame()
    return {p: (round(c, 6), round(v, 6), round(n, 6)) for p, c, v, n in zip(f["path"], f["total_conversions"], f["total_conversion_value"], f["total_null"])}


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(event_sets(), st.sampled_from(["channel", "campaign"]), st.booleans())
def test_matches_brute_force_reference(events, level, null_lookback):
    touch, conv, lookback = events
    ref = reference(touch, conv, lookback, level, null_lookback)
    journeys = build_journeys(touch, conv, lookback, level, null_lookback=null_lookback)
    assert as_tuples(journeys) == ref
    table = build_pathtable(touch, conv, lookback, level, null_lookback=null_lookback)
    assert table_paths(table) == reference_paths(ref)
    assert table_paths(journeys.to_pathtable()) == reference_paths(ref)


@SETTINGS
@given(event_sets())
def test_conservation_and_windows(events):
    touch, conv, lookback = events
    window = int(round(lookback * NS_PER_DAY))
    j, report = build_journeys_with_report(touch, conv, lookback)
    table = build_pathtable(touch, conv, lookback)
    # Conversions and value are conserved exactly (count) and to rounding (sum).
    assert table.total_conversions == len(conv) == j.conversions.sum()
    assert table.total_value == pytest.approx(conv["value"].sum(), abs=1e-9)
    assert report.converting_journeys == len(conv)
    # Every touch is used once or counted as dropped.
    real = np.asarray([c != NO_TOUCH for c in j.channels])[j.codes] if j.codes.size else np.zeros(0, bool)
    assert int(real.sum()) == report.touches_in_conversions + report.touches_in_nulls
    assert report.touchpoints == len(touch) == (
        report.touches_in_conversions + report.touches_in_nulls + report.touches_outside_lookback + report.touches_outside_null_window
    )
    conv_ts = conv.groupby("user_key")["ts"].agg(lambda s: sorted(x.value for x in s)).to_dict() if len(conv) else {}
    jidx = j.journey_index
    for i in range(j.n_journeys):
        ts = j.touch_ts[j.offsets[i] : j.offsets[i + 1]]
        assert len(ts) >= 1
        assert np.all(np.diff(ts) >= 0), "path order is chronological"
        assert np.all(j.end_ts[i] - ts <= window) and np.all(ts <= j.end_ts[i])
        times = conv_ts.get(j.user_key[i], [])
        if j.conversions[i] > 0:
            before = [t for t in times if t < j.end_ts[i]]
            if before and j.path(i) != (NO_TOUCH,):
                assert ts.min() > max(before), "touch lies after the previous conversion"
        else:
            assert not times or ts.min() > max(times), "null journeys only hold touches after the last conversion"
            assert j.conversion_id[i] is None and j.value[i] == 0
    assert jidx.shape[0] == j.codes.shape[0]
    # One null journey per user tail.
    nulls = [u for u, c in zip(j.user_key, j.conversions) if c == 0]
    assert len(nulls) == len(set(nulls))


@SETTINGS
@given(event_sets(), st.randoms(use_true_random=False))
def test_input_row_order_does_not_matter(events, rnd):
    touch, conv, lookback = events
    t_perm = list(range(len(touch)))
    c_perm = list(range(len(conv)))
    rnd.shuffle(t_perm)
    rnd.shuffle(c_perm)
    a = build_journeys(touch, conv, lookback, "campaign")
    b = build_journeys(touch.iloc[t_perm].reset_index(drop=True), conv.iloc[c_perm].reset_index(drop=True), lookback, "campaign")
    # Conversion ids name the same conversion in both; equal-time conversions of one user may swap
    # which of them carries the touches, so compare without the id when times tie.
    strip = lambda rows: sorted((r[0], r[2], r[3], r[4], r[5]) for r in rows)  # noqa: E731
    assert strip(as_tuples(a)) == strip(as_tuples(b))
    assert a.channels == b.channels


@SETTINGS
@given(event_sets(), st.sampled_from([1, 12, 20, 40]))
def test_sort_fallbacks_agree_with_packed_sort(events, max_bits):
    """The dense-rank and lexsort fallbacks (used when the packed key does not fit) give the same journeys."""
    touch, conv, lookback = events
    fast = _assemble(touch, conv, lookback, "campaign", None, True)
    slow = _assemble(touch, conv, lookback, "campaign", None, True, max_bits=max_bits)
    for name in ("offsets", "codes", "touch_ts", "end_ts", "conversions", "value", "journey_user", "journey_conv"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.channels == slow.channels and fast.report == slow.report
