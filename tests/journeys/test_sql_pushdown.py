"""SQL pushdown equals import + in-memory builder, on SQLite, DuckDB and PostgreSQL (hypothesis);
BigQuery and Snowflake compile only; read-only and timeout guards; refusals."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ingest.channels import ChannelRule
from core.ingest.errors import IngestError
from core.ingest.sessionize import SessionSettings
from core.ingest.sql import read_only_connection, read_sql_source, source_engine
from core.journeys import JourneyError, build_pathtable
from core.journeys.sql import build_pathtable_sql, preview_paths_sql

BASE_MS = pd.Timestamp("2024-03-01", tz="UTC").value // 10**6
HOUR_MS = 3_600_000
USERS = ["ann", "bob", "cy", "Dee", " eve ", "\u3000fay\t", "a-very-long-user-id-0001"]
SOURCES = ["google", "facebook", "newsletter", " Google ", "", "(not set)", None, "bing", "\u2003bing\n", " NULL "]
MEDIUMS = ["cpc", "email", "organic", "paid_social", None, "(none)"]
EVENT_TYPES = ["page_view", "click", "ad_impression", "visit", "purchase", "Purchase", "signup"]


@st.composite
def event_tables(draw):
    """A random generic events table: touches and conversions mixed, ties, duplicates, blank spellings."""
    n = draw(st.integers(1, 45))
    span = 24 * draw(st.sampled_from([3, 8, 40]))
    fine = draw(st.booleans())
    rows = []
    for i in range(n):
        ms = draw(st.integers(0, span)) * HOUR_MS + (draw(st.integers(0, 999)) if fine else 0)
        etype = draw(st.sampled_from(EVENT_TYPES))
        conv = etype.lower() in ("purchase", "signup")
        rows.append({
            "user_id": draw(st.sampled_from(USERS)),
            "ts": pd.Timestamp(BASE_MS + ms, unit="ms", tz="UTC"),
            "event_type": etype,
            "source": draw(st.sampled_from(SOURCES)),
            "medium": draw(st.sampled_from(MEDIUMS)),
            "campaign_id": draw(st.sampled_from(["c1", "c2", "", None, "(not set)"])),
            "campaign": draw(st.sampled_from(["Spring", "winter sale", None])),
            "order_id": (draw(st.sampled_from([f"o{i:03d}", None])) if conv else None),
            "revenue": (draw(st.integers(0, 50_000)) / 100 if conv else None),  # cents: 19.99 must not become float32
        })
    frame = pd.DataFrame(rows)
    dupes = draw(st.lists(st.integers(0, n - 1), max_size=4))
    frame = pd.concat([frame, frame.iloc[dupes]], ignore_index=True)  # exact duplicate rows
    if draw(st.booleans()):  # integer user ids (grouped as integers in the database, as text on import)
        frame["user_id"] = frame["user_id"].map({u: i * 7_919 for i, u in enumerate(USERS)}).astype("int64")
    if draw(st.booleans()):  # a channel column with gaps that the rules fill
        frame.insert(3, "channel", draw(st.lists(st.sampled_from(["Meta", "email", "tv", None]), min_size=len(frame), max_size=len(frame))))
    frame = in_table_order(frame)
    lookback = draw(st.sampled_from([0.5, 1.0, 2.5, 30.0]))
    return frame, lookback


def in_table_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in the order the database gives a table without one: same-instant conversions by id
    (missing last), event type as the import reads it (lower case), then value."""
    def key(col):
        return col.str.lower() if col.name == "event_type" else col
    return frame.sort_values(["order_id", "event_type", "revenue"], na_position="last", kind="stable", key=key).reset_index(drop=True)


def as_dict(table):
    f = table.to_frame()
    return {p: (c, v, n) for p, c, v, n in zip(f["path"], f["total_conversions"], f["total_conversion_value"], f["total_null"])}


def assert_same(memory, pushed):
    a, b = as_dict(memory), as_dict(pushed)
    assert sorted(a) == sorted(b)
    assert tuple(memory.channels) == tuple(pushed.channels)
    for path in a:
        assert a[path][0] == b[path][0] and a[path][2] == b[path][2], path
        assert a[path][1] == pytest.approx(b[path][1], abs=1e-6), path


def store_frame(url: str, frame: pd.DataFrame) -> str:
    """``frame`` as a new table of a fresh name in the database at ``url``; the table's name."""
    table = f"ev_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    try:
        frame.to_sql(table, engine, index=False)
    finally:
        engine.dispose()
    return table


def check_equal(url, frame, lookback, level, null_lookback):
    table = store_frame(url, frame)
    try:
        auto = read_sql_source(url, table)
    except IngestError:
        auto = None
    # The database counts every event as a touch: it must refuse whenever the import would group
    # sessions (and may refuse a little more: its events-per-visit figure is an upper bound).
    try:
        pushed = build_pathtable_sql(url, table, lookback_days=lookback, level=level, null_lookback=null_lookback)
    except JourneyError as exc:
        assert "does not build sessions" in str(exc) and "--touches events" in str(exc), exc
        pushed = None
    if auto is not None and auto.report["touches_are"] == "one per session":
        assert pushed is None, auto.report["touches_reason"]
    every = SessionSettings("events")
    if pushed is None:  # every event as a touch, asked for on both sides
        pushed = build_pathtable_sql(url, table, lookback_days=lookback, level=level, null_lookback=null_lookback, sessions=every)
        assert pushed.report["touches_reason"] == "chosen"
    try:
        imported = read_sql_source(url, table, sessions=every)
    except IngestError as exc:  # an import refuses conversions with no touch at all; in the database they are all (no touch)
        assert "no touchpoints" in str(exc)
        assert set(as_dict(pushed.paths)) <= {"(no touch)"}, as_dict(pushed.paths)
        return pushed
    memory = build_pathtable(imported.touchpoints, imported.conversions, lookback, level, null_lookback=null_lookback)
    assert_same(memory, pushed.paths)
    assert pushed.report["conversions"] == len(imported.conversions)
    assert pushed.report["touches_are"] == "every event"
    return pushed


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OPTIONS = st.tuples(st.sampled_from(["channel", "campaign"]), st.booleans())


@SETTINGS
@given(event_tables(), OPTIONS)
def test_sqlite_equals_memory(tmp_path, events, options):
    frame, lookback = events
    check_equal(f"sqlite:///{tmp_path / 'src.db'}", frame, lookback, *options)


@SETTINGS
@given(event_tables(), OPTIONS)
def test_duckdb_equals_memory(tmp_path, events, options):
    frame, lookback = events
    check_equal(f"duckdb:///{tmp_path / 'src.duckdb'}", frame, lookback, *options)


def same_instant_conversions() -> pd.DataFrame:
    """One user's two conversions at one instant with no order id whose event types differ only in
    case (one conversion on import: the generated id is user + time + lower-cased type)."""
    t = pd.Timestamp("2024-03-02 20:00", tz="UTC")
    rows = [
        dict(user_id="ann", ts=t - pd.Timedelta(hours=1), event_type="click", source="google", medium="cpc", campaign_id="c1", campaign="Spring", order_id=None, revenue=None),
        dict(user_id="ann", ts=t, event_type="Purchase", source=" NULL ", medium="email", campaign_id="c2", campaign="Spring", order_id=None, revenue=36.00),
        dict(user_id="ann", ts=t, event_type="purchase", source="newsletter", medium="cpc", campaign_id="c2", campaign=None, order_id=None, revenue=1.75),
        dict(user_id="ann", ts=t, event_type="purchase", source="google", medium="cpc", campaign_id="c1", campaign="Spring", order_id="o1", revenue=2.50),
    ]
    return in_table_order(pd.DataFrame(rows))


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
@pytest.mark.parametrize("level", ["channel", "campaign"])
def test_same_instant_conversions_without_id(tmp_path, engine, level):
    """Regression (a hypothesis example): the kept conversion and the one that finds the touch are the
    same in the database and in memory when the types differ only in case."""
    frame = same_instant_conversions()
    assert frame["revenue"].dropna().tolist() == [2.50, 1.75, 36.00]  # id first, then by lower-cased type and value
    url = f"sqlite:///{tmp_path / 'src.db'}" if engine == "sqlite" else f"duckdb:///{tmp_path / 'src.duckdb'}"
    pushed = check_equal(url, frame, 2.5, level, True)
    assert pushed.report["conversions"] == 2
    assert sum(v for _, v, _ in as_dict(pushed.paths).values()) == pytest.approx(2.50 + 1.75)


@pytest.mark.postgres
@SETTINGS
@given(event_tables(), OPTIONS)
def test_postgres_equals_memory(postgres_server_url, events, options):
    frame, lookback = events
    check_equal(_pg_db(postgres_server_url), frame, lookback, *options)


@st.composite
def flag_tables(draw):
    """A table whose conversions are a flag on the rows, not an event type: the public "attribution data" shape
    (cookie, time, interaction impression / conversion, conversion 0/1, conversion_value, channel), with or without
    the interaction column, flags as 0/1 or text, and a conversion value that is 0 on touches."""
    n = draw(st.integers(1, 30))
    rows = []
    for _ in range(n):
        converted = draw(st.booleans())
        rows.append({
            "cookie": draw(st.sampled_from(USERS[:4])),
            "time": pd.Timestamp(BASE_MS + draw(st.integers(0, 24 * 6)) * HOUR_MS, unit="ms", tz="UTC"),
            "interaction": ("conversion" if converted and draw(st.booleans()) else draw(st.sampled_from(["impression", "click"]))),
            "conversion": int(converted),
            "conversion_value": draw(st.integers(1, 9_999)) / 100 if converted else 0.0,
            "channel": draw(st.sampled_from(["Facebook", "Paid Search", "Instagram", "Online Display"])),
        })
    frame = pd.DataFrame(rows)
    if draw(st.booleans()):
        frame = frame.drop(columns="interaction")
    if draw(st.booleans()):
        frame["conversion"] = frame["conversion"].map({1: "true", 0: "false"})
    frame = frame.sort_values(["conversion_value"], kind="stable").reset_index(drop=True)
    return frame, draw(st.sampled_from([1.0, 30.0]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flag_tables(), st.sampled_from(["sqlite", "duckdb"]))
def test_flagged_conversions_equal_memory(tmp_path, events, scheme):
    """The database reads a conversion flag as the import does (it ignored the flag: a flagged table gave 0
    conversions with exit status 0); a row whose interaction says conversion is not also a touch."""
    frame, lookback = events
    url = f"sqlite:///{tmp_path / 'f.db'}" if scheme == "sqlite" else f"duckdb:///{tmp_path / 'f.duckdb'}"
    pushed = check_equal(url, frame, lookback, "channel", True)
    flagged = frame[frame["conversion"].isin([1, "true"])]
    assert pushed.report["conversions"] == len(flagged.drop_duplicates(["cookie", "time"]))  # id: user + time + type


@pytest.mark.postgres
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flag_tables())
def test_flagged_conversions_equal_memory_on_postgres(postgres_server_url, events):
    frame, lookback = events
    check_equal(_pg_db(postgres_server_url), frame, lookback, "channel", True)


def test_an_interaction_that_names_the_conversion_is_not_a_touch(tmp_path):
    """Known answer on the public "attribution data" shape: the conversion row repeats the last channel; it is
    the conversion, so a user who saw Paid Search then Facebook gives each half the conversion under linear."""
    frame = pd.DataFrame({
        "cookie": ["c1", "c1", "c1", "c2", "c2"],
        "time": pd.to_datetime(["2018-07-03 09:44", "2018-07-19 07:29", "2018-07-19 07:29", "2018-07-06 23:30", "2018-07-06 23:30"], utc=True),
        "interaction": ["impression", "impression", "conversion", "impression", "conversion"],
        "conversion": [0, 0, 1, 0, 1],
        "conversion_value": [0.0, 0.0, 6.0, 0.0, 12.5],
        "channel": ["Paid Search", "Facebook", "Facebook", "Paid Search", "Paid Search"],
    })
    url = f"duckdb:///{tmp_path / 'k.duckdb'}"
    pushed = check_equal(url, frame, 30.0, "channel", True)
    assert as_dict(pushed.paths) == {"Paid Search > Facebook": (1.0, 6.0, 0.0), "Paid Search": (1.0, 12.5, 0.0)}


_PG_DB = {}


def _pg_db(server_url: str) -> str:
    """One scratch database for the whole hypothesis run (each example uses its own table)."""
    if server_url not in _PG_DB:
        from sqlalchemy.engine import make_url

        name = f"ms_test_push_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        _PG_DB[server_url] = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return _PG_DB[server_url]


@pytest.fixture(scope="module", autouse=True)
def _drop_pg_scratch():
    yield
    for server, url in list(_PG_DB.items()):
        from sqlalchemy.engine import make_url

        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()
        _PG_DB.pop(server)


# ----------------------------------------------------------------------------- fixed cases
def _events():
    return pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-02 10:00", "2024-01-01 00:00", "2024-01-05 00:00", "2024-01-03 00:00"], utc=True),
        "event_type": ["visit", "visit", "purchase", "visit", "visit", "purchase"],
        "source": ["google", "newsletter", None, "facebook", "google", None],
        "medium": ["cpc", "email", None, "paid_social", "organic", None],
        "order_id": [None, None, "o1", None, None, "o2"],
        "revenue": [None, None, 40.0, None, None, 7.5],
    })


def test_known_answer_and_epoch_query(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    frame = _events()
    frame["epoch_ms"] = frame["ts"].astype("int64") // 10**6
    eng = sa.create_engine(url)
    frame.to_sql("events", eng, index=False)
    eng.dispose()
    out = build_pathtable_sql(url, query="SELECT user_id, epoch_ms AS event_time, event_type, source, medium, order_id, revenue FROM events")
    assert as_dict(out.paths) == {"google > email": (1.0, 40.0, 0.0), "(no touch)": (1.0, 7.5, 0.0), "meta > organic": (0.0, 0.0, 1.0)}
    assert out.report["rows_fetched"] == out.paths.n_paths + 4  # the path table and the label names, nothing else
    assert "WITH" in out.sql.upper() and "OVER" in out.sql.upper()


def test_refuses_what_an_import_refuses(tmp_path):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    frame = _events()
    frame.loc[2, "revenue"] = -3.0
    eng = sa.create_engine(url)
    frame.to_sql("neg", eng, index=False)
    frame.assign(user_id=[None, "u1", "u1", "u2", "u2", "u3"], revenue=1.0).to_sql("nouser", eng, index=False)
    pd.DataFrame({"path": ["a > b"], "total_conversions": [1]}).to_sql("paths", eng, index=False)
    eng.dispose()
    with pytest.raises(JourneyError, match="negative"):
        build_pathtable_sql(url, "neg")
    with pytest.raises(JourneyError, match="user id .* missing on 1 row"):
        build_pathtable_sql(url, "nouser")
    with pytest.raises(JourneyError, match="paths data"):
        build_pathtable_sql(url, "paths")
    with pytest.raises(IngestError, match="does not exist"):
        build_pathtable_sql(url, "nope")
    with pytest.raises(IngestError, match="one SELECT"):
        build_pathtable_sql(url, query="DELETE FROM neg")
    with pytest.raises(JourneyError, match="lookback_days"):
        build_pathtable_sql(url, "neg", lookback_days=0)


def test_read_only_and_timeout_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    sa.create_engine(url).connect().close()  # the file exists (a missing one is refused, never created)
    engine = source_engine(url)
    with read_only_connection(engine, 0.3) as conn:
        with pytest.raises(sa.exc.OperationalError, match="readonly|read-only|attempt to write"):
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    with read_only_connection(engine, 0.3) as conn:
        with pytest.raises(sa.exc.OperationalError, match="interrupt"):
            conn.exec_driver_sql("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r").all()
    with engine.connect() as conn:  # a source engine cannot write even outside read_only_connection (mode=ro)
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    engine.dispose()


def test_read_only_and_timeout_duckdb(tmp_path):
    path = tmp_path / "ro.duckdb"
    eng = sa.create_engine(f"duckdb:///{path}")
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    eng.dispose()
    engine = source_engine(f"duckdb:///{path}")
    with read_only_connection(engine, 0.5) as conn:
        with pytest.raises(sa.exc.DBAPIError, match="read-only|read only"):
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with read_only_connection(engine, 0.5) as conn:
        with pytest.raises(sa.exc.DBAPIError, match="nterrupt"):
            conn.exec_driver_sql("SELECT count(*) FROM range(100000000000) a").all()
    engine.dispose()


@pytest.mark.postgres
def test_read_only_and_timeout_postgres(postgres_url):
    engine = source_engine(postgres_url)
    with read_only_connection(engine, 0.3) as conn:
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    with read_only_connection(engine, 0.3) as conn:
        with pytest.raises(sa.exc.DBAPIError, match="statement timeout"):
            conn.exec_driver_sql("SELECT pg_sleep(3)")
    engine.dispose()


# ----------------------------------------------------------------------------- compile only
GA4_COLUMNS = ["user_pseudo_id", "event_timestamp", "event_name", "source", "medium", "campaign", "transaction_id", "purchase_revenue"]
GA4_SAMPLE = [("x1", 1_709_251_200_000_000, "session_start", "google", "cpc", "spring", None, None)]


@pytest.mark.parametrize("dialect, must", [
    ("bigquery", ["REGEXP_CONTAINS(", "STRING_AGG(", "ORDER BY", "OVER (PARTITION BY", "`analytics_1`.`events_2024`"]),
    ("snowflake", ["REGEXP_INSTR(", "LISTAGG(", "WITHIN GROUP (ORDER BY", "OVER (PARTITION BY"]),
    ("postgresql", ["~*", "string_agg(", 'COLLATE "C"', "btrim("]),
    ("duckdb", ["regexp_matches(", "array_to_string(list(", "CAST(analytics_1.events_2024.event_timestamp AS BIGINT)"]),
])
def test_compiles_for_each_dialect(dialect, must):
    sql = preview_paths_sql(dialect, "analytics_1.events_2024", GA4_COLUMNS, GA4_SAMPLE, lookback_days=30, level="campaign")
    for piece in must:
        assert piece in sql, (dialect, piece)
    assert "session_start" in sql and "purchase" in sql  # GA4's touch and conversion events
    assert "1000000" not in sql.split("event_timestamp")[0]  # microseconds are used as they are


def test_bigquery_epoch_seconds_and_timestamp_kinds():
    cols = ["user_id", "ts", "event_type", "channel"]
    secs = preview_paths_sql("bigquery", "ds.ev", cols, [("u", 1_709_251_200, "visit", "email")])
    assert "ROUND(" in secs and "1000000.0" in secs
    import datetime as dt

    native = preview_paths_sql("snowflake", "ev", cols, [("u", dt.datetime(2024, 3, 1), "visit", "email")])
    assert "DATE_PART(EPOCH_MICROSECOND" in native


@pytest.mark.parametrize("dialect", ["bigquery", "duckdb", "snowflake"])
def test_refuses_patterns_a_dialect_cannot_run(dialect):
    # Channel rules are linear-time RE2 patterns everywhere (issue 11 §3): a look-ahead never reaches a dialect.
    from core.ingest import IngestError

    rules = [ChannelRule(1, "brand", r"^(?!bing)goo")]
    for name in (dialect, "postgresql"):
        with pytest.raises(IngestError, match="lookahead"):
            preview_paths_sql(name, "ev", ["user_id", "ts", "event_type", "source"], [("u", 1_709_251_200, "visit", "google")], channel_rules=rules)


def test_unsupported_dialect_is_refused():
    with pytest.raises(JourneyError, match="written for"):
        preview_paths_sql("mysql", "ev", ["user_id", "ts", "channel"], [("u", 1_709_251_200, "email")])


def test_numbers_match_memory_on_sqlite_with_custom_rules(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    eng = sa.create_engine(url)
    _events().to_sql("events", eng, index=False)
    eng.dispose()
    rules = [ChannelRule(1, "Search", "goo|bing"), ChannelRule(2, "Mail", "", "^e-?mail$"), ChannelRule(3, "Social", "face")]
    imported = read_sql_source(url, "events", channel_rules=rules)
    memory = build_pathtable(imported.touchpoints, imported.conversions, 30)
    pushed = build_pathtable_sql(url, "events", channel_rules=rules)
    assert_same(memory, pushed.paths)
    assert set(pushed.paths.channels) == {"Search", "Mail", "Social", "(no touch)"}
    assert np.isclose(pushed.paths.total_value, 47.5)


@pytest.mark.parametrize("table", ["ev", "touches", "seq", "labels"])
def test_a_source_named_like_a_query_step(tmp_path, table):
    """The query's own steps never shadow the user's table (SQLite refused "circular reference: ev")."""
    url = f"sqlite:///{tmp_path / 'n.db'}"
    eng = sa.create_engine(url)
    _events().to_sql(table, eng, index=False)
    eng.dispose()
    imported = read_sql_source(url, table)
    assert_same(build_pathtable(imported.touchpoints, imported.conversions, 30), build_pathtable_sql(url, table).paths)


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])
def test_campaign_level_with_campaign_names_only(tmp_path, scheme):
    # Only the columns a source has enter the duplicate check; campaign level then reads the names alone.
    frame = _events().assign(campaign=["spring", None, None, "x", " y ", None])
    check_equal(f"{scheme}:///{tmp_path / 'c.db'}", frame, 30, "campaign", True)
