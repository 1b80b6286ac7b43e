"""SQL source: a SQLAlchemy URL plus a table name or a SELECT query returning events (or paths or
performance rows); the result is mapped, checked and converted exactly like a file.

The source is read-only by construction, not by pattern: SQLite is opened with ``mode=ro`` and
``PRAGMA query_only``; PostgreSQL sessions default to read-only transactions and the read runs in
``SET TRANSACTION READ ONLY``; nothing is ever committed. Every read has a row limit (refused beyond
it, never cut silently) and a timeout (PostgreSQL's ``statement_timeout`` plus a deadline between
fetches; an interrupt on SQLite), both shown to the user. The app's own database is refused as a source.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from sqlalchemy import MetaData, Table, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from core.redact import register_secret, url_secrets
from core.store.db import redact_url, scrub_url

from .api import ImportResult, build_result
from .errors import IngestError
from .readers import frame_table

_READ_ONLY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
#: The most rows a SQL import reads unless the user sets another limit: beyond it the import is refused.
DEFAULT_SQL_ROW_LIMIT = 5_000_000
#: Seconds a SQL import's query may run before it is cancelled.
DEFAULT_SQL_TIMEOUT = 300.0
#: Dialects whose read-only mode is enforced by the database itself.
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


class _Deadline:
    """The read's deadline: SQLite's progress handler and the loop between fetches both consult it."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.at = float("inf")

    def start(self) -> None:
        self.at = time.monotonic() + self.seconds

    def passed(self) -> bool:
        return time.monotonic() > self.at


def _sqlite_read_only_url(url) -> str | None:
    """A ``mode=ro`` URI URL for a SQLite file (refusing a missing file: opening would create it)."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    path = database[5:].split("?")[0] if database.startswith("file:") else database
    if not Path(path).exists():
        raise IngestError(f"the SQLite file {path} does not exist")
    resolved = os.path.abspath(path)
    query = {k: v for k, v in url.query.items() if k not in ("mode", "uri", "immutable")}
    extra = "".join(f"&{quote(str(k))}={quote(str(v))}" for k, v in query.items())
    return f"sqlite:///file:{quote(resolved)}?mode=ro&uri=true{extra}"


def read_only_engine(url: str, timeout: float = DEFAULT_SQL_TIMEOUT) -> tuple[Engine, _Deadline]:
    """An engine on ``url`` that cannot write, with the read's deadline (raises `IngestError`)."""
    try:
        parsed = make_url(url)
        dialect = parsed.get_backend_name()
    except Exception as exc:
        raise IngestError(f"cannot use database URL {redact_url(url)} ({scrub_url(str(exc), url)})") from None
    if dialect not in SUPPORTED_DIALECTS:
        raise IngestError(f"a SQL source must be SQLite or PostgreSQL (read-only by construction), not {dialect}")
    deadline = _Deadline(timeout)
    try:
        if dialect == "sqlite":
            ro = _sqlite_read_only_url(parsed)
            engine = create_engine(ro or url, connect_args={"check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_read_only(dbapi_conn, _record):  # pragma: no cover - trivial
                dbapi_conn.execute("PRAGMA query_only = ON")
                # an interrupt once the deadline passed: SQLite checks every 10,000 virtual machine steps
                dbapi_conn.set_progress_handler(lambda: 1 if deadline.passed() else 0, 10_000)
        else:
            ms = max(1, int(timeout * 1000))
            engine = create_engine(url, pool_pre_ping=False, connect_args={
                "options": f"-c default_transaction_read_only=on -c statement_timeout={ms} "
                           f"-c idle_in_transaction_session_timeout={ms + 60_000}",
                "connect_timeout": 15})
    except IngestError:
        raise
    except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
        raise IngestError(f"cannot use database URL {redact_url(url)} ({scrub_url(str(exc), url)})") from None
    return engine, deadline


def _identity(conn) -> tuple | None:
    """What identifies a database wherever it is reached from: SQLite's file, PostgreSQL's server and database."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("PRAGMA database_list").all()
        path = next((r[2] for r in rows if r[1] == "main"), "")
        if not path or not os.path.exists(path):
            return None
        st = os.stat(path)
        return ("sqlite", st.st_dev, st.st_ino)
    if conn.dialect.name == "postgresql":
        row = conn.exec_driver_sql(
            "SELECT current_database(), pg_postmaster_start_time()::text, "
            "(SELECT oid FROM pg_database WHERE datname = current_database()), current_setting('port')").one()
        return ("postgresql", *tuple(str(v) for v in row))
    return None


def _refuse_own_database(conn, app_engine: Engine | None) -> None:
    if app_engine is None:
        return
    with app_engine.connect() as app_conn:
        own = _identity(app_conn)
    if own is not None and _identity(conn) == own:
        raise IngestError("this is the app's own database: it cannot be a SQL source (import from the database that "
                          "holds your events)")


def _refuse_powerful_role(conn) -> None:
    """A free query on PostgreSQL runs only as a role that cannot touch the server's files or programs.

    A read-only transaction stops writes to tables, not a superuser's ``pg_read_file`` or
    ``lo_export``; a table import (``SELECT * FROM`` a named table, built here) is safe either way.
    """
    try:
        row = conn.exec_driver_sql(
            "SELECT current_user, r.rolsuper, "
            "pg_has_role(current_user, 'pg_read_server_files', 'USAGE') "
            "OR pg_has_role(current_user, 'pg_write_server_files', 'USAGE') "
            "OR pg_has_role(current_user, 'pg_execute_server_program', 'USAGE') "
            "FROM pg_roles r WHERE r.rolname = current_user").one_or_none()
    except SQLAlchemyError:  # a server without these roles: nothing more powerful to fear than rolsuper
        conn.rollback()
        row = conn.exec_driver_sql("SELECT current_user, rolsuper, false FROM pg_roles WHERE rolname = current_user"
                                   ).one_or_none()
    if row is not None and (row[1] or row[2]):
        kind = "a superuser" if row[1] else "a role that may read or run the server's files"
        raise IngestError(f"the query would run as {row[0]}, {kind}: such a query could read the database server's "
                          "files, so free queries are refused for it. Import a table by name, or connect as a role "
                          "that may only read your tables (GRANT SELECT ...)")


def _statement(conn, table: str | None, query: str | None):
    if (table is None) == (query is None):
        raise IngestError("give either a table name or a SELECT query")
    if table is not None:
        schema, _, name = table.strip().rpartition(".")
        try:
            return Table(name, MetaData(), schema=schema or None, autoload_with=conn).select(), f"sql:{table.strip()}"
        except NoSuchTableError:
            raise IngestError(f"table {table!r} does not exist in the database") from None
    q = query.strip().rstrip(";").strip()
    if not _READ_ONLY.match(q) or ";" in q:
        raise IngestError("the query must be one SELECT (or WITH ... SELECT) statement")
    return text(q), "sql:query"


def _refusal(exc: BaseException, url: str, timeout: float) -> IngestError:
    """A clear message for what the database refused or cancelled, else its own first line (no secret)."""
    cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
    orig = getattr(cause, "orig", cause)
    detail = str(orig).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__
    lowered = str(orig).lower()
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    # PostgreSQL reads through a server-side cursor, which takes only a query that returns rows: a write
    # there is a syntax error at its keyword
    dml = re.search(r'syntax error at or near "(insert|update|delete|merge|truncate|drop|alter|create|grant|copy)"',
                    lowered)
    if ("readonly database" in lowered or "read-only transaction" in lowered or "data-modifying" in lowered
            or sqlstate == "25006" or dml):
        return IngestError("the SQL source is read-only: the query tried to change the database and was refused; "
                           "nothing was changed and nothing was imported")
    if "interrupted" in lowered or "statement timeout" in lowered or sqlstate == "57014":
        return IngestError(f"the query ran longer than the {timeout:g} s time limit of a SQL import and was cancelled; "
                           "narrow it (a WHERE clause, a shorter date range) or raise the limit")
    return IngestError(f"reading from {redact_url(url)} failed ({type(orig).__name__}: {scrub_url(detail, url)})")


def read_sql_source(url: str, table: str | None = None, query: str | None = None, *, mapping_overrides=None,
                    channel_rules=None, timezone: str = "UTC", chunk_size: int = 100_000,
                    row_limit: int | None = DEFAULT_SQL_ROW_LIMIT, timeout: float = DEFAULT_SQL_TIMEOUT,
                    app_engine: Engine | None = None, progress=None, **kwargs) -> ImportResult:
    """Run ``SELECT * FROM table`` (or ``query``) on ``url`` read-only and import the rows like a file.

    Parameters
    ----------
    row_limit : the most rows read; a source returning more is refused (never cut silently). None: no limit.
    timeout : seconds the query may run before it is cancelled (and the import refused).
    app_engine : the app's own database, refused as a source.

    Rows are fetched in chunks (progress is reported per chunk, with the limits); the transaction is
    rolled back. Errors name ``sql:<table>`` and the 1-based result row. Raises `IngestError`.
    """
    report = progress or (lambda _f, _m: None)
    if row_limit is not None and int(row_limit) < 1:
        raise IngestError("the row limit of a SQL import must be at least 1")
    if not timeout or timeout <= 0:
        raise IngestError("the time limit of a SQL import must be positive")
    register_secret(*url_secrets(url))
    engine, deadline = read_only_engine(url, timeout)
    limits = f"limit {row_limit:,} rows, {timeout:g} s" if row_limit is not None else f"no row limit, {timeout:g} s"
    try:
        chunks, n = [], 0
        with engine.connect() as conn:
            _refuse_own_database(conn, app_engine)
            if conn.dialect.name == "postgresql" and query is not None:
                _refuse_powerful_role(conn)
            conn.rollback()  # the read below starts a transaction of its own
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            stmt, name = _statement(conn, table, query)
            deadline.start()
            stream = conn.execution_options(stream_results=True, max_row_buffer=chunk_size)
            for chunk in pd.read_sql(stmt, stream, chunksize=chunk_size):
                n += len(chunk)
                if row_limit is not None and n > row_limit:
                    raise IngestError(f"the source returns more than {row_limit:,} rows, the row limit of this SQL "
                                      "import: narrow the query (a WHERE clause, a shorter date range) or raise the "
                                      "limit", file=name)
                if deadline.passed():
                    raise IngestError(f"the query ran longer than the {timeout:g} s time limit of a SQL import and "
                                      "was cancelled; narrow it or raise the limit", file=name)
                chunks.append(chunk)
                report(min(0.5, 0.5 * n / (n + chunk_size)), f"fetched {n:,} rows from {name} ({limits})")
            conn.rollback()  # never committed, whatever ran
    except IngestError:
        raise
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise _refusal(exc, url, timeout) from None
    finally:
        engine.dispose()
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    raw = frame_table(name, frame, "sql")
    result = build_result([raw], mapping_overrides, channel_rules, timezone, progress=lambda f, m: report(0.5 + 0.5 * f, m), **kwargs)
    result.report["source"] = f"{redact_url(url)} {table or 'query'}"
    result.report["sql_limits"] = {"row_limit": row_limit, "timeout_seconds": timeout, "read_only": True}
    return result


def import_sql(engine, workspace_id: str, url: str, table: str | None = None, query: str | None = None,
               name: str | None = None, *, channel_rules=None, **kwargs) -> tuple[int, dict]:
    """Read a SQL source (never the app's own database ``engine``) and store it as one data set;
    returns ``(dataset_id, report)``."""
    from .channels import load_channel_rules
    from .persist import save_import, unique_name

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    kwargs.setdefault("app_engine", engine)
    result = read_sql_source(url, table, query, channel_rules=rules, **kwargs)
    name = name or unique_name(engine, workspace_id, f"SQL {table or 'query'}")
    dataset_id = save_import(engine, workspace_id, name, result, source=f"sql:{redact_url(url)}:{table or 'query'}")
    return dataset_id, result.report


__all__ = ["read_sql_source", "import_sql", "read_only_engine", "DEFAULT_SQL_ROW_LIMIT", "DEFAULT_SQL_TIMEOUT"]
