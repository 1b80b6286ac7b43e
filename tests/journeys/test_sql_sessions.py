"""The SQL pushdown counts every event as a touch: it must refuse (with the reason and the way out)
whenever the import would turn the events into one touch per session, and equal the import when
every event is asked for as a touch. Clickstream-shaped tables on SQLite and DuckDB; a hypothesis
property that the refusal is sound (never a silent difference)."""

from __future__ import annotations


import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ingest.sessionize import SessionSettings
from core.ingest.sql import read_sql_source
from core.journeys import JourneyError, build_pathtable
from core.journeys.engines import EventSource, build_paths
from core.journeys.sql import build_pathtable_sql

from .test_sql_pushdown import assert_same, store_frame

SCHEMES = ["sqlite", "duckdb"]
T0 = pd.Timestamp("2024-03-01 09:00", tz="UTC")


def _clickstream() -> pd.DataFrame:
    """Visits of several page views each: an ad click lands, pages follow within minutes, a purchase."""
    rows = []
    for u in range(6):
        start = T0 + pd.Timedelta(hours=5 * u)
        for visit, (source, medium) in enumerate([("google", "cpc"), ("newsletter", "email")]):
            at = start + pd.Timedelta(days=visit)
            rows.append((f"u{u}", at, "page_view", source, medium, None, None))
            for k in range(1, 4):  # later pages of the visit carry no traffic information
                rows.append((f"u{u}", at + pd.Timedelta(minutes=2 * k), "page_view", None, None, None, None))
        if u % 2 == 0:
            rows.append((f"u{u}", start + pd.Timedelta(days=1, minutes=9), "purchase", None, None, f"o{u}", 10.0 + u))
    return pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "source", "medium", "order_id", "revenue"])


def _url(scheme, tmp_path):
    return f"{scheme}:///{tmp_path / ('s.' + scheme)}"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_clickstream_memory_sessionizes_sql_refuses(scheme, tmp_path):
    url = _url(scheme, tmp_path)
    table = store_frame(url, _clickstream())
    imported = read_sql_source(url, table)
    assert imported.report["touches_are"] == "one per session" and imported.report["sessions"] == 12
    with pytest.raises(JourneyError, match=r"48 touch events fall in at most 12 visits \(4.0 per visit.*memory or Dask engine.*--touches events"):
        build_pathtable_sql(url, table)
    with pytest.raises(JourneyError, match="clickstream"):  # through the one switch, as the Data page and the CLI call it
        build_paths(EventSource(url=url, table=table), "sql")
    # A shorter timeout makes every page its own visit (pages are 2 minutes apart): then events are visits already.
    short = SessionSettings("auto", 1.0)
    assert read_sql_source(url, table, sessions=short).report["touches_are"] == "every event"
    out = build_pathtable_sql(url, table, sessions=short)
    assert out.report["touches_are"] == "every event" and "at most 1.0 per session" in out.report["touches_reason"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_event_asked_for_equals_memory(scheme, tmp_path):
    url = _url(scheme, tmp_path)
    table = store_frame(url, _clickstream())
    every = SessionSettings("events")
    imported = read_sql_source(url, table, sessions=every)
    memory = build_pathtable(imported.touchpoints, imported.conversions, 30)
    out = build_pathtable_sql(url, table, sessions=every)
    assert_same(memory, out.paths)
    assert out.report["touches_are"] == "every event" and out.report["touches_reason"] == "chosen"
    # ... and differs from the sessionized answer, which is why the default refuses.
    auto = read_sql_source(url, table)
    assert build_pathtable(auto.touchpoints, auto.conversions, 30).to_frame()["path"].str.count(">").max() < \
        memory.to_frame()["path"].str.count(">").max()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sessions_asked_for_and_session_ids_are_refused(scheme, tmp_path):
    url = _url(scheme, tmp_path)
    visits = _clickstream().groupby(["user_id"], as_index=False).head(1)  # one event per visit: auto keeps events
    table = store_frame(url, visits)
    assert build_pathtable_sql(url, table).report["touches_are"] == "every event"
    with pytest.raises(JourneyError, match="one touch per session was asked for.*--touches events"):
        build_pathtable_sql(url, table, sessions=SessionSettings("sessions"))
    with_ids = store_frame(url, _clickstream().assign(session_id=lambda f: f["user_id"] + "-" + f["ts"].dt.day.astype(str)))
    assert read_sql_source(url, with_ids).report["touches_are"] == "one per session"
    with pytest.raises(JourneyError, match="'session_id' holds the collector's session ids"):
        build_pathtable_sql(url, with_ids)
    assert build_pathtable_sql(url, with_ids, sessions=SessionSettings("events")).report["touches_reason"] == "chosen"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_ad_exposure_log_keeps_every_event(scheme, tmp_path):
    # Many impressions per user within minutes, but the file says they are impressions: each is a touch.
    url = _url(scheme, tmp_path)
    frame = _clickstream().assign(interaction=lambda f: f["event_type"].map({"page_view": "impression", "purchase": None}),
                                  source="meta", medium="paid_social")
    table = store_frame(url, frame)
    imported = read_sql_source(url, table)
    assert imported.report["touches_are"] == "every event"
    out = build_pathtable_sql(url, table)
    assert "ad impressions or clicks" in out.report["touches_reason"]
    assert_same(build_pathtable(imported.touchpoints, imported.conversions, 30), out.paths)


def test_ga4_exports_are_refused_in_auto(tmp_path):
    from core.journeys.sql import SourceShape, touch_mode

    shape = SourceShape({"user_key": "user_pseudo_id", "ts": "event_timestamp"}, "ga4")
    with pytest.raises(JourneyError, match="GA4 exports are event streams.*--touches events"):
        touch_mode(None, shape, SessionSettings("auto"), "events_2024")
    assert touch_mode(None, shape, SessionSettings("events"), "events_2024") == ("events", "chosen")


@st.composite
def bursty_tables(draw):
    """Users with bursts of events minutes apart (clickstream-like) or hours apart, sources changing."""
    rows = []
    for u in range(draw(st.integers(1, 5))):
        t = T0 + pd.Timedelta(minutes=draw(st.integers(0, 600)))
        for _ in range(draw(st.integers(1, 9))):
            t += pd.Timedelta(minutes=draw(st.sampled_from([0, 1, 5, 29, 30, 31, 45, 240])))
            kind = draw(st.sampled_from(["page_view", "page_view", "visit", "purchase"]))
            source = draw(st.sampled_from(["google", "newsletter", None, None]))
            rows.append((f"u{u}", t, kind, source, "cpc" if source == "google" else ("email" if source else None),
                         f"o{len(rows)}" if kind == "purchase" else None, 5.0 if kind == "purchase" else None))
    return pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "source", "medium", "order_id", "revenue"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bursty_tables(), st.sampled_from([5.0, 30.0]))
def test_refusal_is_sound_and_events_equal_memory(tmp_path, frame, timeout):
    url = f"duckdb:///{tmp_path / 'h.duckdb'}"
    table = store_frame(url, frame)
    chosen = SessionSettings("auto", timeout)
    try:
        auto = read_sql_source(url, table, sessions=chosen)
    except Exception:  # conversions without any touch: the import refuses, nothing to compare
        return
    try:
        out = build_pathtable_sql(url, table, sessions=chosen)
    except JourneyError as exc:
        assert "does not build sessions" in str(exc)
        out = None
    if auto.report["touches_are"] == "one per session":
        assert out is None, auto.report["touches_reason"]  # never a silent difference
    else:
        if out is not None:
            assert_same(build_pathtable(auto.touchpoints, auto.conversions, 30), out.paths)
        every = SessionSettings("events", timeout)
        imported = read_sql_source(url, table, sessions=every)
        assert_same(build_pathtable(imported.touchpoints, imported.conversions, 30),
                    build_pathtable_sql(url, table, sessions=every).paths)
