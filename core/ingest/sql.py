"""SQL source: a SQLAlchemy URL plus a table name or a SELECT query returning events (or paths or
performance rows); the result is mapped, checked and converted exactly like a file.

A source is read-only by construction, not by pattern, for the import and for the SQL pushdown of
journeys alike (`source_engine` + `read_only_connection` + `source_selectable`):

* SQLite files are opened ``mode=ro`` (a missing file is refused, never created) and every read runs
  with ``PRAGMA query_only`` and an interrupt past its deadline; DuckDB files are opened read-only
  with a timer that interrupts; PostgreSQL sessions default to read-only transactions, every read
  runs in ``SET TRANSACTION READ ONLY`` with a ``statement_timeout``, and a free query is refused for
  a role that may read or run the server's files (a superuser's ``pg_read_file`` is a read).
* Nothing is ever committed; other dialects are refused (their read-only mode cannot be promised).
* The app's own database (`core.store.db.is_app_database`) is never a source.

An import has a row limit (a source returning more is refused, never cut) and a time limit, both
shown on the Data page and recorded in the import report.
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from sqlalchemy import column, create_engine, inspect, literal_column, select, text
from sqlalchemy import table as sa_table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.access import Role, guarded
from core.redact import register_secret, url_secrets
from core.store.db import is_app_database, redact_url, scrub_url

from .api import ImportResult, build_result
from .errors import IngestError
from .readers import frame_table

_READ_ONLY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
#: Longest a statement on a user's database may run before it is cancelled (seconds).
DEFAULT_STATEMENT_TIMEOUT = 600.0
#: The most rows a SQL import reads unless the user sets another limit: beyond it the import is refused.
DEFAULT_SQL_ROW_LIMIT = 5_000_000
#: Dialects whose read-only mode the database itself enforces.
READ_ONLY_DIALECTS = ("sqlite", "postgresql", "duckdb")


def _sqlite_read_only_url(parsed) -> str | None:
    """A ``mode=ro`` URI URL for a SQLite file, refusing a missing one (opening it would create it)."""
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    path = database[5:].split("?")[0] if database.startswith("file:") else database
    if not Path(path).exists():
        raise IngestError(f"the SQLite file {path} does not exist")
    query = {k: v for k, v in parsed.query.items() if k not in ("mode", "uri", "immutable")}
    extra = "".join(f"&{quote(str(k))}={quote(str(v))}" for k, v in query.items())
    return f"sqlite:///file:{quote(os.path.abspath(path))}?mode=ro&uri=true{extra}"


def source_engine(url: str, **kwargs):
    """An engine on a user's database that cannot write even outside `read_only_connection`: SQLite
    ``mode=ro``, DuckDB ``read_only``, PostgreSQL sessions with read-only transactions by default.
    Raises `IngestError`, never echoing the URL's secrets."""
    register_secret(*url_secrets(url))
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        connect_args = dict(kwargs.pop("connect_args", {}))
        if backend not in READ_ONLY_DIALECTS:
            raise IngestError(f"a SQL source must be {', '.join(READ_ONLY_DIALECTS)} (read-only by construction), "
                              f"not {backend}")
        if backend == "sqlite":
            ro = _sqlite_read_only_url(parsed)
            return create_engine(ro or parsed, connect_args={"check_same_thread": False, **connect_args}, **kwargs)
        if backend == "duckdb" and parsed.database not in (None, "", ":memory:") \
                and not str(parsed.database).startswith(":memory:"):
            connect_args.setdefault("read_only", True)
        if backend == "postgresql":
            connect_args.setdefault("options", "-c default_transaction_read_only=on")
            connect_args.setdefault("connect_timeout", 15)
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    except IngestError:
        raise
    except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
        raise IngestError(f"cannot use database URL {redact_url(url)} ({scrub_url(str(exc), url)})") from None


@contextmanager
def read_only_connection(engine, timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT):
    """A connection whose transaction cannot write and whose statements stop after ``timeout_s``.

    PostgreSQL: ``SET TRANSACTION READ ONLY`` and a local ``statement_timeout`` (and UTC as the session
    zone, so text times without an offset read as UTC); SQLite: ``PRAGMA query_only`` and a progress
    handler that interrupts past the deadline; DuckDB: a timer that interrupts the statement (file
    databases are also opened read-only by `source_engine`). The transaction is always rolled back.
    The app's own database is refused. Shared by the SQL import and the SQL pushdown of journeys.
    """
    name = engine.dialect.name
    if name not in READ_ONLY_DIALECTS:
        raise IngestError(f"a SQL source must be {', '.join(READ_ONLY_DIALECTS)} (read-only by construction), not {name}")
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
                    deadline = time.monotonic() + timeout_s
                    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            elif name == "duckdb":
                conn.exec_driver_sql("SET TimeZone = 'UTC'") if _duckdb_has_icu(conn) else None
                if timeout_s:
                    target = getattr(raw, "_ConnectionWrapper__c", None) or getattr(raw, "c", None) or raw
                    timer = threading.Timer(timeout_s, lambda: target.interrupt())
                    timer.daemon = True
                    timer.start()
            if name in ("sqlite", "postgresql") and is_app_database(conn):
                raise IngestError("this is the app's own database: it cannot be a SQL source (read from the database "
                                  "that holds your events)")
            yield conn
        finally:
            if timer is not None:
                timer.cancel()
            if name == "sqlite":
                raw.set_progress_handler(None, 0)
                conn.rollback()
                conn.exec_driver_sql("PRAGMA query_only = OFF")  # a source engine is opened mode=ro anyway
            conn.rollback()


def _duckdb_has_icu(conn) -> bool:
    try:
        conn.exec_driver_sql("SELECT current_setting('TimeZone')")
        return True
    except SQLAlchemyError:
        conn.rollback()
        return False


def _refuse_powerful_role(conn) -> None:
    """A free query on PostgreSQL runs only as a role that cannot touch the server's files or programs.

    A read-only transaction stops writes to tables, not a superuser's ``pg_read_file`` or
    ``lo_export``; a table source (``SELECT`` of a named table, built here) is safe either way.
    """
    row = conn.exec_driver_sql(
        "SELECT current_user, r.rolsuper, "
        "pg_has_role(current_user, 'pg_read_server_files', 'USAGE') "
        "OR pg_has_role(current_user, 'pg_write_server_files', 'USAGE') "
        "OR pg_has_role(current_user, 'pg_execute_server_program', 'USAGE') "
        "FROM pg_roles r WHERE r.rolname = current_user").one_or_none()
    if row is not None and (row[1] or row[2]):
        kind = "a superuser" if row[1] else "a role that may read or run the server's files"
        raise IngestError(f"the query would run as {row[0]}, {kind}: such a query could read the database server's "
                          "files, so free queries are refused for it. Read a table by name, or connect as a role "
                          "that may only read your tables (GRANT SELECT ...)")


def source_selectable(conn, table: str | None, query: str | None):
    """``(FROM clause carrying the source's columns, name for messages)`` for a table or one SELECT.

    Columns come from a zero-row probe rather than reflection, so any dialect that runs SELECT works
    (DuckDB's reflection, for one, fails on SQLAlchemy 2.1); a missing table is a clear error. A free
    query runs only as a PostgreSQL role that cannot read the server's files.
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
    if conn.dialect.name == "postgresql":
        _refuse_powerful_role(conn)
    keys = list(conn.execute(select(literal_column("*")).select_from(text(f"({q}) AS probe")).limit(0)).keys())
    return text(q).columns(*(column(k) for k in keys)).subquery("src"), "sql:query"


def source_error(exc: BaseException, url: str, timeout_s: float | None, doing: str = "reading from") -> IngestError:
    """A clear message for what the database refused or cancelled, else its own first line (no secret)."""
    cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
    orig = getattr(cause, "orig", cause)
    detail = str(orig).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__
    lowered = str(orig).lower()
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    # a write in a subquery or a server-side cursor is a syntax error at its keyword
    dml = re.search(r'syntax error at or near "(insert|update|delete|merge|truncate|drop|alter|create|grant|copy)"',
                    lowered) or re.search(r'near "(insert|update|delete|drop|create|alter)": syntax error', lowered)
    if ("readonly database" in lowered or "read-only transaction" in lowered or "data-modifying" in lowered
            or "read-only mode" in lowered or sqlstate == "25006" or dml):
        return IngestError("the SQL source is read-only: the query tried to change the database and was refused; "
                           "nothing was changed and nothing was imported")
    if "interrupt" in lowered or "statement timeout" in lowered or sqlstate == "57014":
        limit = f"the {timeout_s:g} s time limit" if timeout_s else "its time limit"
        return IngestError(f"the query ran longer than {limit} of a SQL source and was cancelled; narrow it "
                           "(a WHERE clause, a shorter date range) or raise the limit")
    return IngestError(f"{doing} {redact_url(url)} failed ({type(orig).__name__}: {scrub_url(detail, url)})")


def read_sql_source(url: str, table: str | None = None, query: str | None = None, *, mapping_overrides=None,
                    channel_rules=None, timezone: str = "UTC", chunk_size: int = 100_000,
                    row_limit: int | None = DEFAULT_SQL_ROW_LIMIT, timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
                    progress=None, **kwargs) -> ImportResult:
    """Run ``SELECT * FROM table`` (or ``query``) on ``url`` read-only and import the rows like a file.

    Parameters
    ----------
    row_limit : the most rows read; a source returning more is refused (never cut silently). None: no limit.
    timeout : seconds the query may run before it is cancelled and the import refused.

    Rows are streamed in chunks (progress is reported per chunk, with the limits) inside a read-only
    transaction (`read_only_connection`), always rolled back. Errors name ``sql:<table>`` and the
    1-based result row. Raises `IngestError`.
    """
    report = progress or (lambda _f, _m: None)
    if row_limit is not None and int(row_limit) < 1:
        raise IngestError("the row limit of a SQL import must be at least 1")
    if timeout is not None and timeout <= 0:
        raise IngestError("the time limit of a SQL import must be positive")
    limits = (f"limit {row_limit:,} rows" if row_limit is not None else "no row limit") + \
        (f", {timeout:g} s" if timeout else "")
    engine = source_engine(url)
    started = time.monotonic()
    try:
        chunks, n = [], 0
        with read_only_connection(engine, timeout) as conn:
            source, name = source_selectable(conn, table, query)
            stream = conn.execution_options(stream_results=True, max_row_buffer=chunk_size)
            for chunk in pd.read_sql(select(source), stream, chunksize=chunk_size):
                n += len(chunk)
                if row_limit is not None and n > row_limit:
                    raise IngestError(f"the source returns more than {row_limit:,} rows, the row limit of this SQL "
                                      "import: narrow the query (a WHERE clause, a shorter date range) or raise the "
                                      "limit", file=name)
                if timeout and time.monotonic() - started > timeout:  # a server-side cursor times each fetch alone
                    raise IngestError(f"the query ran longer than the {timeout:g} s time limit of a SQL source and "
                                      "was cancelled; narrow it or raise the limit", file=name)
                chunks.append(chunk)
                report(min(0.5, 0.5 * n / (n + chunk_size)), f"fetched {n:,} rows from {name} ({limits})")
    except IngestError:
        raise
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise source_error(exc, url, timeout) from None
    finally:
        engine.dispose()
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    raw = frame_table(name, frame, "sql")
    result = build_result([raw], mapping_overrides, channel_rules, timezone, progress=lambda f, m: report(0.5 + 0.5 * f, m), **kwargs)
    result.report["source"] = f"{redact_url(url)} {table or 'query'}"
    result.report["sql_limits"] = {"row_limit": row_limit, "timeout_seconds": timeout, "read_only": True}
    return result


@guarded(Role.ANALYST, "data.import")
def import_sql(engine, workspace_id: str, url: str, table: str | None = None, query: str | None = None,
               name: str | None = None, *, channel_rules=None, actor: str | None = None, **kwargs) -> tuple[int, dict]:
    """Read a SQL source (never the app's own database) and store it as one data set; returns ``(dataset_id, report)``."""
    from .channels import load_channel_rules
    from .persist import save_import, unique_name

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    result = read_sql_source(url, table, query, channel_rules=rules, **kwargs)
    name = name or unique_name(engine, workspace_id, f"SQL {table or 'query'}")
    dataset_id = save_import(engine, workspace_id, name, result, source=f"sql:{redact_url(url)}:{table or 'query'}",
                             actor=actor)
    return dataset_id, result.report


__all__ = ["read_sql_source", "import_sql", "source_engine", "source_selectable", "read_only_connection",
           "source_error", "DEFAULT_STATEMENT_TIMEOUT", "DEFAULT_SQL_ROW_LIMIT"]
