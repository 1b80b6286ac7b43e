"""Sessionizing: the vectorized session starts against a plain per-event reference, and the rules as
properties (hypothesis): the first event of a user, inactivity, a new collector session and new
traffic start a session; events without traffic continue it; one touch per session, at its start."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ingest import IngestError, SessionSettings, read_files, sessionize
from core.ingest.api import build_result
from core.ingest.readers import frame_table
from core.ingest.sessionize import session_starts

MIN = 60 * 10**9
BASE = pd.Timestamp("2024-01-01", tz="UTC")


def reference_starts(user, ts, key, timeout, sid=None):
    """The rules read literally, one event at a time."""
    out, last = [], None
    for i in range(len(user)):
        new = (i == 0 or user[i] != user[i - 1] or ts[i] - ts[i - 1] > timeout
               or (sid is not None and sid[i] >= 0 and sid[i - 1] >= 0 and sid[i] != sid[i - 1]))
        if new:
            last = None  # the last traffic seen in this visit
        if key[i] >= 0:
            if not new and last != key[i]:
                new = True
            last = key[i]
        out.append(new)
    return np.array(out, dtype=bool)


events = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 240), st.integers(-1, 2), st.integers(-1, 2)),
    min_size=0, max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(1, 90), st.booleans())
def test_vectorized_starts_equal_the_reference(rows, timeout_min, with_sid):
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    user = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] * MIN for r in rows], dtype=np.int64)
    key = np.array([r[2] for r in rows], dtype=np.int64)
    sid = np.array([r[3] for r in rows], dtype=np.int64) if with_sid else None
    got = session_starts(user, ts, key, timeout_min * MIN, sid)
    assert got.tolist() == reference_starts(user, ts, key, timeout_min * MIN, sid).tolist()


def _touches(rows) -> pd.DataFrame:
    """Touch events (user, minute, source or None) as the ingest step hands them to `sessionize`."""
    frame = pd.DataFrame(rows, columns=["user_key", "minute", "source"]).sort_values(["user_key", "minute"], kind="stable")
    n = len(frame)
    return pd.DataFrame({
        "user_key": frame["user_key"].astype("str").to_numpy(),
        "ts": pd.to_datetime(frame["minute"].to_numpy() * MIN, utc=True),
        "channel": frame["source"].fillna("direct").astype("str").to_numpy(),
        "source": frame["source"].astype("object").to_numpy(),
        "interaction": ["visit"] * n,
        "has_traffic": frame["source"].notna().to_numpy(),
    })


touch_rows = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 600),
                                st.sampled_from([None, None, "google", "email"])), min_size=1, max_size=50)


@settings(max_examples=200, deadline=None)
@given(touch_rows, st.integers(5, 120))
def test_one_touch_per_session_at_its_start(rows, timeout):
    touch = _touches(rows)
    out = sessionize(touch, SessionSettings("sessions", timeout))
    assert out.events == len(touch) and out.sessions == len(out.touchpoints) <= len(touch)
    assert "has_traffic" not in out.touchpoints.columns
    for user, group in touch.groupby("user_key"):
        firsts = out.touchpoints[out.touchpoints["user_key"] == user]
        assert firsts["ts"].iloc[0] == group["ts"].min(), "a user's first event starts a session"
        assert len(firsts) >= 1 + int((group["ts"].diff() > pd.Timedelta(minutes=timeout)).sum()), "inactivity starts sessions"
        assert set(firsts["ts"]) <= set(group["ts"]), "a session's touch is one of its events, at its start"


@settings(max_examples=150, deadline=None)
@given(touch_rows, st.integers(5, 60), st.integers(0, 60))
def test_a_longer_timeout_never_makes_more_sessions(rows, timeout, more):
    touch = _touches(rows)
    short = sessionize(touch, SessionSettings("sessions", timeout)).sessions
    long = sessionize(touch, SessionSettings("sessions", timeout + more)).sessions
    assert long <= short


@settings(max_examples=150, deadline=None)
@given(touch_rows)
def test_events_without_traffic_never_start_a_session_inside_a_visit(rows):
    touch = _touches(rows)
    blank = touch.assign(source=None, channel="direct", has_traffic=False)
    out = sessionize(blank, SessionSettings("sessions", 30))
    gaps = blank.groupby("user_key")["ts"].apply(lambda s: int((s.diff() > pd.Timedelta(minutes=30)).sum()) + 1).sum()
    assert out.sessions == gaps


@settings(max_examples=60, deadline=None)
@given(touch_rows, st.randoms(use_true_random=False))
def test_the_import_does_not_depend_on_row_order(rows, rnd):
    frame = pd.DataFrame(rows, columns=["user_id", "minute", "source"])
    frame["timestamp"] = (BASE + pd.to_timedelta(frame["minute"], unit="min")).astype("str")
    frame["event_name"] = "page_view"
    frame = frame.drop(columns="minute")
    shuffled = frame.sample(frac=1.0, random_state=rnd.randint(0, 10**6))
    a = build_result([frame_table("a", frame)], sessions=SessionSettings("sessions"))
    b = build_result([frame_table("a", shuffled)], sessions=SessionSettings("sessions"))
    assert a.report["sessions"] == b.report["sessions"]
    pd.testing.assert_frame_equal(a.touchpoints[["user_key", "ts", "channel"]].astype(str), b.touchpoints[["user_key", "ts", "channel"]].astype(str))


# ------------------------------------------------------------------------------------ examples
def test_a_clickstream_gets_one_touch_per_visit_by_default(write):
    rows = ["visitor,event_time,event_name,acquisition_channel"]
    for v, start, channel in (("v1", "2024-03-01T10:00", "Paid Search"), ("v1", "2024-03-02T18:00", "Email"), ("v2", "2024-03-01T09:00", "Social")):
        base = pd.Timestamp(start, tz="UTC")
        rows += [f"{v},{(base + pd.Timedelta(minutes=m)).isoformat()},page_view,{channel}" for m in (0, 2, 5, 9, 14)]
    rows.append("v1,2024-03-02T18:20:00+00:00,purchase,Email")
    r = read_files([write("clicks.csv", "\n".join(rows) + "\n")])
    rep = r.report
    assert (rep["touch_events"], rep["sessions"], rep["touchpoints"]) == (15, 3, 3)
    assert rep["touches_are"] == "one per session" and "5.0 per session" in rep["touches_reason"]
    assert r.touchpoints["channel"].astype(str).tolist() == ["Paid Search", "Email", "Social"]
    every = read_files([write("clicks2.csv", "\n".join(rows) + "\n")], sessions=SessionSettings("events"))
    assert every.report["touchpoints"] == 15 and every.report["touches_are"] == "every event"


def test_a_campaign_change_inside_a_visit_starts_a_new_session(write):
    csv = ("user_id,timestamp,event_name,utm_source,utm_medium\n"
           "u,2024-01-01T10:00:00Z,page_view,google,cpc\n"
           "u,2024-01-01T10:01:00Z,page_view,,\n"
           "u,2024-01-01T10:02:00Z,page_view,newsletter,email\n"
           "u,2024-01-01T10:03:00Z,page_view,,\n")
    r = read_files([write("utm.csv", csv)], sessions=SessionSettings("sessions"))
    assert r.touchpoints["channel"].astype(str).tolist() == ["google", "email"]


def test_timeout_is_settable_and_checked(write):
    csv = "user_id,timestamp,channel\nu,2024-01-01T10:00:00Z,seo\nu,2024-01-01T10:20:00Z,seo\n"
    p = write("t.csv", csv)
    assert read_files([p], sessions=SessionSettings("sessions", 30)).report["sessions"] == 1
    assert read_files([p], sessions=SessionSettings("sessions", 10)).report["sessions"] == 2
    with pytest.raises(IngestError, match="session timeout"):
        read_files([p], sessions=SessionSettings("sessions", -5))
    with pytest.raises(IngestError, match=r"more than 0 and at most 10080 minutes \(a week\), got 0$"):
        SessionSettings("sessions", 0).validated()  # the message does not say "between 0 and ..." of a 0 it refuses
    with pytest.raises(IngestError, match="touches mode"):
        SessionSettings("pages").validated()


def test_ad_exposure_logs_keep_every_touch_by_default(write):
    csv = ("cookie,time,interaction,conversion,conversion_value,channel\n"
           "c1,2018-07-03T13:02:11Z,impression,0,0,Instagram\n"
           "c1,2018-07-03T13:05:00Z,impression,0,0,Instagram\n"
           "c1,2018-07-03T13:09:00Z,click,1,12.5,Online Display\n")
    r = read_files([write("exposures.csv", csv)])
    assert r.report["touches_are"] == "every event" and "impressions or clicks" in r.report["touches_reason"]
    assert len(r.touchpoints) == 3
