"""Imports in the database (one transaction, workspace isolation) and the SQL source.

The ``engine`` / ``db_url`` fixtures (tests/conftest.py) run each test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select

from core.ingest import (
    IngestError,
    delete_dataset,
    import_files,
    import_sql,
    list_datasets,
    load_events,
    load_pathtable,
    load_performance,
    read_files,
    read_sql_source,
    save_import,
)
from core.store.db import transaction
from core.store.models import Dataset, EventSet

PERF_A = ("date,platform,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value,currency\n"
          "2024-05-01,facebook_ads,c1,One,10.25,1,100,1,20,EUR\n2024-05-02,facebook_ads,c1,One,11,1,100,1,20,EUR\n")
PERF_B = ("date,platform,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value,currency\n"
          "2024-05-02,facebook_ads,c1,One,99,9,900,9,90,EUR\n")


def _count(engine, model, ws=None):
    with engine.connect() as conn:
        stmt = select(func.count()).select_from(model)
        if ws:
            stmt = stmt.where(model.workspace_id == ws)
        return conn.execute(stmt).scalar_one()


def _stored_touchpoints(engine, ws=None):
    """Touchpoints held in event files (by the data sets' event-set rows)."""
    with engine.connect() as conn:
        stmt = select(func.coalesce(func.sum(EventSet.touchpoints), 0))
        if ws:
            stmt = stmt.where(EventSet.workspace_id == ws)
        return conn.execute(stmt).scalar_one()


def test_events_roundtrip(engine, events_csv):
    result = read_files([events_csv])
    ds = save_import(engine, "ws", "events", result)
    touch, conv = load_events(engine, "ws", ds)
    pd.testing.assert_frame_equal(touch, result.touchpoints, check_dtype=False)
    assert str(touch["ts"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(conv, result.conversions)
    listed = list_datasets(engine, "ws")
    assert listed["name"].tolist() == ["events"] and listed["kind"].tolist() == ["journeys"]
    assert listed["report"].iloc[0]["conversions"] == 2 and listed["rows"].iloc[0] == 6


def test_paths_and_performance_roundtrip(engine, write):
    r = read_files([write("p.csv", "path,total_conversions,total_conversion_value,total_null\na > b,2,20,1\nb,1,5,0\na > b,1,1,1\n")])
    ds = save_import(engine, "ws", "paths", r)
    back = load_pathtable(engine, "ws", ds)
    assert back.to_frame().sort_values("path").reset_index(drop=True).equals(r.paths.to_frame().sort_values("path").reset_index(drop=True))
    a = save_import(engine, "ws", "perf a", read_files([write("a.csv", PERF_A)]))
    perf = load_performance(engine, "ws")
    assert perf["spend"].tolist() == [10.25, 11.0] and perf["platform"].unique().tolist() == ["meta"]
    assert str(perf["date"].dtype) == "datetime64[ns]" and perf["clicks"].dtype == "int64"
    b = save_import(engine, "ws", "perf b", read_files([write("b.csv", PERF_B)]))
    both = load_performance(engine, "ws")
    assert both["spend"].tolist() == [10.25, 99.0]  # the newer data set wins the overlapping day
    assert load_performance(engine, "ws", [a])["spend"].tolist() == [10.25, 11.0]
    assert load_performance(engine, "ws", [b])["spend"].tolist() == [99.0]
    with pytest.raises(IngestError, match="not journeys"):
        load_events(engine, "ws", b)


def test_workspace_isolation(engine, events_csv):
    ds = save_import(engine, "alpha", "events", read_files([events_csv]))
    with pytest.raises(LookupError):
        load_events(engine, "beta", ds)
    assert list_datasets(engine, "beta").empty
    assert delete_dataset(engine, "beta", ds) is False
    assert _stored_touchpoints(engine, "alpha") == 4
    assert load_performance(engine, "beta").empty


def test_import_is_one_transaction(engine, events_csv):
    result = read_files([events_csv])
    broken = result.conversions.copy()
    broken.loc[1, "conversion_id"] = broken.loc[0, "conversion_id"]  # violates the unique constraint on insert
    result.conversions = broken
    with pytest.raises(IngestError, match="nothing was saved"):
        save_import(engine, "ws", "broken", result)
    assert _count(engine, Dataset) == 0 and _count(engine, EventSet) == 0


def test_duplicate_name_and_delete(engine, events_csv):
    result = read_files([events_csv])
    ds = save_import(engine, "ws", "same", result)
    with pytest.raises(IngestError, match="already exists"):
        save_import(engine, "ws", "same", result)
    assert save_import(engine, "other", "same", result) != ds  # names are per workspace
    assert delete_dataset(engine, "ws", ds) is True
    assert _stored_touchpoints(engine, "ws") == 0 and _stored_touchpoints(engine, "other") == 4
    assert list_datasets(engine, "ws").empty


def test_import_files_names_and_uses_saved_rules(engine, write):
    from core.ingest import ChannelRule, save_channel_rules

    p = write("e.csv", "user_id,ts,source,medium\nu,2024-01-01T00:00:00Z,google,cpc\n")
    save_channel_rules(engine, "ws", [ChannelRule(1, "search_ads", source_pattern="google")])
    seen = []
    ds1, report = import_files(engine, "ws", [p], progress=lambda f, m: seen.append(f))
    ds2, _ = import_files(engine, "ws", [p])
    assert report["channels"] == {"search_ads": 1}
    assert list_datasets(engine, "ws").set_index("id").loc[[ds1, ds2], "name"].tolist() == ["e.csv", "e.csv (2)"]
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def test_nothing_stored_on_bad_file(engine, write):
    with pytest.raises(IngestError):
        import_files(engine, "ws", [write("bad.csv", "user_id,ts,channel\nu,nope,seo\n")])
    assert _count(engine, Dataset) == 0


# ------------------------------------------------------------------------------------------ SQL source
@pytest.fixture
def source_db(db_url, events_text, pg_reader):
    """The event fixture loaded as a table into the database under test (on PostgreSQL reached as a role
    that may only read it: free queries are refused for a superuser)."""
    import io

    eng = create_engine(db_url)
    frame = pd.read_csv(io.StringIO(events_text), dtype=str)
    frame.to_sql("web_events", eng, index=False)
    eng.dispose()
    return pg_reader(db_url, ["web_events"]) if db_url.startswith("postgresql") else db_url


def test_sql_table_and_query_map_like_a_file(source_db, events_csv):
    from_file = read_files([events_csv])
    by_table = read_sql_source(source_db, table="web_events")
    pd.testing.assert_frame_equal(by_table.conversions, from_file.conversions)
    assert by_table.touchpoints["channel"].tolist() == from_file.touchpoints["channel"].tolist()
    assert (by_table.touchpoints["source_system"] == "sql").all()
    assert by_table.report["source"].endswith("web_events")
    by_query = read_sql_source(source_db, query="SELECT * FROM web_events WHERE user_id = 'u2';")
    assert by_query.report["users"] == 1 and by_query.conversions["conversion_id"].tolist() == ["o2"]


def test_sql_errors(source_db):
    with pytest.raises(IngestError, match="does not exist"):
        read_sql_source(source_db, table="nope")
    with pytest.raises(IngestError, match="one SELECT"):
        read_sql_source(source_db, query="DELETE FROM web_events")
    with pytest.raises(IngestError, match="one SELECT"):
        read_sql_source(source_db, query="SELECT 1; DROP TABLE web_events")
    with pytest.raises(IngestError, match="either a table"):
        read_sql_source(source_db)
    with pytest.raises(IngestError, match="returned no rows"):
        read_sql_source(source_db, query="SELECT * FROM web_events WHERE 1 = 0")
    with pytest.raises(IngestError, match="failed"):
        read_sql_source(source_db, query="SELECT no_such_column FROM web_events")


def test_sql_password_never_shown():
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"
    with pytest.raises(IngestError) as info:
        read_sql_source(url, table="t")
    assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)
    for unreadable in ("not a url s3cret", "s3cret-without-scheme@host/db"):
        with pytest.raises(IngestError) as info:
            read_sql_source(unreadable, table="t")
        assert "s3cret" not in str(info.value) and "unreadable URL" in str(info.value)


@pytest.fixture
def other_source_db(tmp_path, events_text):
    """The event fixture as a table of another database than the app's (a SQLite file of its own)."""
    import io

    url = f"sqlite:///{tmp_path / 'source.db'}"
    eng = create_engine(url)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    return url


def test_import_sql_stores_dataset(engine, other_source_db):
    ds, report = import_sql(engine, "ws", other_source_db, table="web_events")
    touch, conv = load_events(engine, "ws", ds)
    assert len(touch) == report["touchpoints"] == 4 and len(conv) == 2
    assert list_datasets(engine, "ws")["source"].iloc[0].startswith("sql:")


@pytest.mark.postgres
def test_sql_source_on_postgres(postgres_url, events_text):
    """Explicitly on PostgreSQL (timestamptz column, real types), independent of the db_url parameter."""
    import io

    eng = create_engine(postgres_url)
    frame = pd.read_csv(io.StringIO(events_text), dtype=str).iloc[[0, 1, 2]]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="mixed")
    frame.to_sql("typed_events", eng, index=False)
    eng.dispose()
    r = read_sql_source(postgres_url, table="typed_events")
    assert r.touchpoints["ts"].tolist() == [pd.Timestamp("2024-01-01 10:00", tz="UTC"), pd.Timestamp("2024-01-02 11:00", tz="UTC")]
    assert r.conversions["ts"].tolist() == [pd.Timestamp("2024-01-03 10:00", tz="UTC")]
