"""SQL source: a SQLAlchemy URL plus a table name or a SELECT query returning events (or paths or
performance rows); the result is mapped, checked and converted exactly like a file."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager

import pandas as pd
from sqlalchemy import column, create_engine, inspect, literal_column, select, text
from sqlalchemy import table as sa_table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.access import Role, guarded
from core.store.db import redact_url, scrub_url

from .api import ImportResult, build_result
from .errors import IngestError
from .readers import frame_table

_READ_ONLY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)

#: Longest a statement on a user's database may run before it is cancelled (seconds).
DEFAULT_STATEMENT_TIMEOUT = 600.0


def source_engine(url: str, **kwargs):
    """An engine on a user's database, opened read-only where the driver can promise it (DuckDB
    files); every statement still runs inside `read_only_connection`. Raises `IngestError`, never
    echoing the URL's password."""
    try:
        parsed = make_url(url)
        connect_args = dict(kwargs.pop("connect_args", {}))
        if parsed.get_backend_name() == "duckdb" and parsed.database not in (None, "", ":memory:") \
                and not str(parsed.database).startswith(":memory:"):
            connect_args.setdefault("read_only", True)
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise IngestError(f"cannot use database URL {redact_url(url)} ({scrub_url(str(exc), url)})") from None


@contextmanager
def read_only_connection(engine, timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT):
    """A connection whose transaction cannot write and whose statements stop after ``timeout_s``.

    PostgreSQL: ``SET TRANSACTION READ ONLY`` and a local ``statement_timeout`` (and UTC as the session
    zone, so text times without an offset read as UTC); SQLite: ``PRAGMA query_only`` and a progress
    handler that interrupts past the deadline; DuckDB: a timer that interrupts the statement (file
    databases are also opened read-only by `source_engine`). The transaction is always rolled back.
    Shared by the SQL import and the SQL pushdown of journeys.
    """
    name = engine.dialect.name
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        timer = None
        try:
            if name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
                if timeout_s:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            elif name == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = ON")
                if timeout_s:
                    import time

                    deadline = time.monotonic() + timeout_s
                    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            elif name == "duckdb":
                conn.exec_driver_sql("SET TimeZone = 'UTC'") if _duckdb_has_icu(conn) else None
                if timeout_s:
                    target = getattr(raw, "_ConnectionWrapper__c", None) or getattr(raw, "c", None) or raw
                    timer = threading.Timer(timeout_s, lambda: target.interrupt())
                    timer.daemon = True
                    timer.start()
            yield conn
        finally:
            if timer is not None:
                timer.cancel()
            if name == "sqlite":
                raw.set_progress_handler(None, 0)
                conn.rollback()
                conn.exec_driver_sql("PRAGMA query_only = OFF")
            conn.rollback()


def _duckdb_has_icu(conn) -> bool:
    try:
        conn.exec_driver_sql("SELECT current_setting('TimeZone')")
        return True
    except SQLAlchemyError:
        conn.rollback()
        return False


def source_selectable(conn, table: str | None, query: str | None):
    """``(FROM clause carrying the source's columns, name for messages)`` for a table or one SELECT.

    Columns come from a zero-row probe rather than reflection, so any dialect that runs SELECT works
    (DuckDB's reflection, for one, fails on SQLAlchemy 2.1); a missing table is a clear error.
    """
    if (table is None) == (query is None):
        raise IngestError("give either a table name or a SELECT query")
    if table is not None:
        schema, _, name = table.strip().rpartition(".")
        if not inspect(conn).has_table(name, schema=schema or None):
            raise IngestError(f"table {table!r} does not exist in the database")
        keys = list(conn.execute(select(literal_column("*")).select_from(sa_table(name, schema=schema or None)).limit(0)).keys())
        return sa_table(name, *(column(k) for k in keys), schema=schema or None), f"sql:{table.strip()}"
    q = query.strip().rstrip(";").strip()
    if not _READ_ONLY.match(q) or ";" in q:
        raise IngestError("the query must be one SELECT (or WITH ... SELECT) statement")
    keys = list(conn.execute(select(literal_column("*")).select_from(text(f"({q}) AS probe")).limit(0)).keys())
    return text(q).columns(*(column(k) for k in keys)).subquery("src"), "sql:query"


def read_sql_source(url: str, table: str | None = None, query: str | None = None, *, mapping_overrides=None,
                    channel_rules=None, timezone: str = "UTC", chunk_size: int = 100_000, max_rows: int | None = None,
                    progress=None, **kwargs) -> ImportResult:
    """Run ``SELECT * FROM table`` (or ``query``) on ``url`` and import the rows like a file.

    Rows are fetched in chunks (progress is reported per chunk) inside a read-only transaction with a
    statement timeout (`read_only_connection`), always rolled back. Errors name ``sql:<table>`` and the 1-based result row.
    """
    report = progress or (lambda _f, _m: None)
    engine = source_engine(url)
    try:
        chunks, n = [], 0
        with read_only_connection(engine) as conn:
            source, name = source_selectable(conn, table, query)
            stmt = select(source)
            for chunk in pd.read_sql(stmt, conn, chunksize=chunk_size):
                chunks.append(chunk)
                n += len(chunk)
                report(min(0.5, 0.5 * n / (n + chunk_size)), f"fetched {n:,} rows from {name}")
                if max_rows is not None and n >= max_rows:
                    break
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        detail = str(getattr(cause, "orig", cause)).splitlines()[0][:300]
        exc = cause
        raise IngestError(f"reading from {redact_url(url)} failed ({type(exc).__name__}: {scrub_url(detail, url)})") from None
    finally:
        engine.dispose()
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    if max_rows is not None:
        frame = frame.head(max_rows)
    raw = frame_table(name, frame, "sql")
    result = build_result([raw], mapping_overrides, channel_rules, timezone, progress=lambda f, m: report(0.5 + 0.5 * f, m), **kwargs)
    result.report["source"] = f"{redact_url(url)} {table or 'query'}"
    return result


@guarded(Role.ANALYST, "data.import")
def import_sql(engine, workspace_id: str, url: str, table: str | None = None, query: str | None = None,
               name: str | None = None, *, channel_rules=None, actor: str | None = None, **kwargs) -> tuple[int, dict]:
    """Read a SQL source and store it as one data set; returns ``(dataset_id, report)``."""
    from .channels import load_channel_rules
    from .persist import save_import, unique_name

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    result = read_sql_source(url, table, query, channel_rules=rules, **kwargs)
    name = name or unique_name(engine, workspace_id, f"SQL {table or 'query'}")
    dataset_id = save_import(engine, workspace_id, name, result, source=f"sql:{redact_url(url)}:{table or 'query'}",
                             actor=actor)
    return dataset_id, result.report


__all__ = ["read_sql_source", "import_sql", "source_engine", "source_selectable", "read_only_connection", "DEFAULT_STATEMENT_TIMEOUT"]
