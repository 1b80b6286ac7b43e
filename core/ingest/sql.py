"""SQL source: a SQLAlchemy URL plus a table name or a SELECT query returning events (or paths or
performance rows); the result is mapped, checked and converted exactly like a file."""

from __future__ import annotations

import re

import pandas as pd
from sqlalchemy import MetaData, Table, create_engine, text
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from core.store.db import redact_url, scrub_url

from .api import ImportResult, build_result
from .errors import IngestError
from .readers import frame_table

_READ_ONLY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


def _statement(engine, table: str | None, query: str | None):
    if (table is None) == (query is None):
        raise IngestError("give either a table name or a SELECT query")
    if table is not None:
        schema, _, name = table.strip().rpartition(".")
        try:
            return Table(name, MetaData(), schema=schema or None, autoload_with=engine).select(), f"sql:{table.strip()}"
        except NoSuchTableError:
            raise IngestError(f"table {table!r} does not exist in the database") from None
    q = query.strip().rstrip(";").strip()
    if not _READ_ONLY.match(q) or ";" in q:
        raise IngestError("the query must be one SELECT (or WITH ... SELECT) statement")
    return text(q), "sql:query"


def read_sql_source(url: str, table: str | None = None, query: str | None = None, *, mapping_overrides=None,
                    channel_rules=None, timezone: str = "UTC", chunk_size: int = 100_000, max_rows: int | None = None,
                    progress=None, **kwargs) -> ImportResult:
    """Run ``SELECT * FROM table`` (or ``query``) on ``url`` and import the rows like a file.

    Rows are fetched in chunks (progress is reported per chunk); the connection is read-only in intent
    and its transaction is rolled back. Errors name ``sql:<table>`` and the 1-based result row.
    """
    report = progress or (lambda _f, _m: None)
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise IngestError(f"cannot use database URL {redact_url(url)} ({scrub_url(str(exc), url)})") from None
    try:
        stmt, name = _statement(engine, table, query)
        chunks, n = [], 0
        with engine.connect() as conn:
            for chunk in pd.read_sql(stmt, conn, chunksize=chunk_size):
                chunks.append(chunk)
                n += len(chunk)
                report(min(0.5, 0.5 * n / (n + chunk_size)), f"fetched {n:,} rows from {name}")
                if max_rows is not None and n >= max_rows:
                    break
            conn.rollback()
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


def import_sql(engine, workspace_id: str, url: str, table: str | None = None, query: str | None = None,
               name: str | None = None, *, channel_rules=None, **kwargs) -> tuple[int, dict]:
    """Read a SQL source and store it as one data set; returns ``(dataset_id, report)``."""
    from .channels import load_channel_rules
    from .persist import save_import, unique_name

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    result = read_sql_source(url, table, query, channel_rules=rules, **kwargs)
    name = name or unique_name(engine, workspace_id, f"SQL {table or 'query'}")
    dataset_id = save_import(engine, workspace_id, name, result, source=f"sql:{redact_url(url)}:{table or 'query'}")
    return dataset_id, result.report


__all__ = ["read_sql_source", "import_sql"]
