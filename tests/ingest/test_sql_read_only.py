"""The SQL source is read-only by construction (issue 11 §1, §4): writes hidden in a WITH, long queries and
huge results are refused with a clear message, nothing is ever changed, and the app's own database is
never a source. Each test runs on SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select, text

from core.ingest import IngestError, import_sql, read_sql_source
from core.store.db import make_engine, transaction
from core.store.models import ChangePlan, Dataset, PlanEvent

WRITES = {
    "delete in a WITH": "WITH c AS (SELECT 1) DELETE FROM web_events",
    "update in a WITH": "WITH c AS (SELECT 1) UPDATE web_events SET user_id = 'x'",
    "insert in a WITH": "WITH c AS (SELECT 1) INSERT INTO web_events (user_id) SELECT 'x'",
}


@pytest.fixture
def source(db_url, events_text, pg_reader):
    eng = create_engine(db_url)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    url = pg_reader(db_url, ["web_events"]) if db_url.startswith("postgresql") else db_url
    return db_url, url


def rows(url) -> int:
    eng = create_engine(url)
    with eng.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM web_events WHERE user_id <> 'x'")).scalar_one()
    eng.dispose()
    return n


def assert_refused_and_unchanged(admin_url, url, query):
    before = rows(admin_url)
    with pytest.raises(IngestError) as info:
        read_sql_source(url, query=query)
    assert "read-only" in str(info.value) and "nothing was changed" in str(info.value)
    assert rows(admin_url) == before


@pytest.mark.parametrize("query", list(WRITES.values()), ids=list(WRITES))
def test_a_write_hidden_in_a_select_is_refused_and_changes_nothing(source, query):
    assert_refused_and_unchanged(*source, query)


@pytest.mark.postgres
def test_a_data_modifying_with_is_refused_on_postgres(postgres_url, events_text, pg_reader):
    """Even a role allowed to delete cannot delete through the SQL source."""
    eng = create_engine(postgres_url)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    url = pg_reader(postgres_url, ["web_events"], privileges="SELECT, INSERT, UPDATE, DELETE")
    for query in ("WITH d AS (DELETE FROM web_events RETURNING *) SELECT * FROM d", *WRITES.values()):
        assert_refused_and_unchanged(postgres_url, url, query)


def test_a_query_longer_than_the_time_limit_is_cancelled(source):
    _, url = source
    slow = ("SELECT pg_sleep(20)" if url.startswith("postgresql") else
            "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r")
    start = time.monotonic()
    with pytest.raises(IngestError, match=r"longer than the 0.5 s time limit"):
        read_sql_source(url, query=slow, timeout=0.5)
    assert time.monotonic() - start < 10


def test_more_rows_than_the_limit_are_refused_not_cut(source):
    _, url = source
    huge = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000000) "
            "SELECT 'u' || i AS user_id, '2024-01-01T00:00:00Z' AS timestamp, 'seo' AS channel FROM r")
    start = time.monotonic()
    with pytest.raises(IngestError, match=r"more than 1,000 rows, the row limit"):
        read_sql_source(url, query=huge, row_limit=1000, chunk_size=500)
    assert time.monotonic() - start < 20  # streamed and stopped, not 3 million rows read first
    ok = read_sql_source(url, table="web_events", row_limit=8)  # exactly at the limit is fine
    assert ok.report["sql_limits"] == {"row_limit": 8, "timeout_seconds": 600.0, "read_only": True}


def test_the_apps_own_database_is_refused(engine, db_url):
    """Pointed at the app's own database the source would have read (and, before, written) every workspace."""
    from core.changes import DraftChange, create_plan

    create_plan(engine, "other", [DraftChange("sandbox", "a", "campaign", "1", "C", "budget", 10, 12, "USD", "r", 50)],
                actor="x")
    # the same database spelled differently: another host name for the server, a detour in the file path
    spelled = db_url.replace("127.0.0.1", "localhost") if db_url.startswith("postgresql") else \
        db_url.replace("/test.db", "/./test.db")
    for url in {db_url, spelled}:
        with pytest.raises(IngestError, match="the app's own database"):
            import_sql(engine, "ws", url, query="SELECT * FROM change_plans")
    with transaction(engine, "ws") as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ChangePlan)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(PlanEvent)).scalar_one() == 1


def test_the_apps_own_sqlite_file_under_another_name_is_refused(tmp_path):
    app_path = tmp_path / "app.db"
    engine = make_engine(f"sqlite:///{app_path}")
    (tmp_path / "alias.db").symlink_to(app_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(IngestError, match="the app's own database"):
        import_sql(engine, "ws", f"sqlite:///{tmp_path / 'sub' / '..' / 'alias.db'}", table="datasets")
    engine.dispose()


def test_a_missing_sqlite_file_is_refused_not_created(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(IngestError, match="does not exist"):
        read_sql_source(f"sqlite:///{missing}", table="events")
    assert not missing.exists()


@pytest.mark.postgres
def test_a_superuser_may_not_run_free_queries(postgres_url, events_text):
    """A read-only transaction does not stop a superuser's pg_read_file: free queries need a lesser role."""
    eng = create_engine(postgres_url)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    with pytest.raises(IngestError, match="superuser"):
        read_sql_source(postgres_url, query="SELECT pg_read_file('/etc/hostname') AS user_id")
    assert read_sql_source(postgres_url, table="web_events").report["touchpoints"] == 4  # a table import is safe


@pytest.mark.postgres
def test_a_reader_role_cannot_read_server_files(postgres_url, events_text, pg_reader):
    eng = create_engine(postgres_url)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    url = pg_reader(postgres_url, ["web_events"])
    with pytest.raises(IngestError, match="failed") as info:
        read_sql_source(url, query="SELECT pg_read_file('/etc/hostname') AS user_id")
    assert "permission denied" in str(info.value).lower()


def test_the_data_page_shows_the_limits_and_imports_read_only(tmp_path, monkeypatch, events_text):
    from streamlit.testing.v1 import AppTest

    source = f"sqlite:///{tmp_path / 'source.db'}"
    eng = create_engine(source)
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    from pathlib import Path

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/data.py")
    at.run()
    assert at.number_input(key="data.sql.row_limit").value == 5_000_000
    assert at.number_input(key="data.sql.timeout").value == 600
    at.text_input(key="data.sql.url").input(source)
    at.text_area(key="data.sql.query").input("WITH c AS (SELECT 1) DELETE FROM web_events")
    at.button(key="FormSubmitter:data.sql-Import from SQL").click().run()
    assert not at.exception, at.exception
    assert any("read-only" in e.value and "Nothing was imported" in e.value for e in at.error)
    assert rows(source) == 8  # every row still there


def test_a_key_in_the_urls_query_is_never_shown_or_stored(engine, tmp_path, events_text):
    """``?api_key=`` / ``?password=`` in a source URL: not in an error, the data set's source or its report."""
    from core.ingest import list_datasets

    secret = "ak-s3cret-0042"
    src = tmp_path / "keyed.db"
    eng = create_engine(f"sqlite:///{src}")
    pd.read_csv(io.StringIO(events_text), dtype=str).to_sql("web_events", eng, index=False)
    eng.dispose()
    url = f"sqlite:///{src}?api_key={secret}&password={secret}"
    with pytest.raises(IngestError) as info:
        import_sql(engine, "ws", url, table="nope")
    assert secret not in str(info.value)
    ds, report = import_sql(engine, "ws", url, table="web_events")
    stored = list_datasets(engine, "ws").set_index("id").loc[ds]
    assert secret not in str(stored["source"]) + str(stored["report"]) + str(report)
    assert "api_key=***" in str(stored["source"])
