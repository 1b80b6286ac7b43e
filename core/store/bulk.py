"""Bulk writes in few statements: many rows in, one round trip, no per-row Python in SQLAlchemy.

SQLAlchemy's executemany / "insertmanyvalues" paths cost tens of microseconds of Python per row (a
dict of bound parameters per row; on psycopg, a fresh parse of a statement with thousands of
placeholders at every call). The collector and the dispatcher write thousands of rows a second, so:

* inserts on PostgreSQL send the rows as ONE JSON document read by ``json_to_recordset`` (one text
  parameter: the client binds no per-column arrays, which cost more than the rows themselves for the
  collector's small groups), with one SQL text whatever the row count;
* inserts on SQLite are ``VALUES`` lists of at most 999 bound values per statement (SQLite binds them
  in C; reading a JSON document with ``json_extract`` per column cost about twice as much per row);
* updates send one array per column (PostgreSQL, ``unnest``) or one JSON document (SQLite, ``json_each``).

Every value first goes through its column type's own bind processor, so what lands is exactly what
the ORM would have stored. Both functions run on the caller's connection, inside the caller's transaction.
An insert runs on that connection's DBAPI cursor: SQLAlchemy's statement and result machinery cost
about 100 us per statement, as much as SQLite's own insert and commit of a collector group (a
driver error is raised as SQLAlchemy's `DBAPIError`, as from ``exec_driver_sql``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import namedtuple
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import JSON, Table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError


#: Bound values per SQLite statement: every SQLite build takes 999 (newer ones far more).
_SQLITE_VARIABLES = 999


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


@lru_cache(maxsize=256)
def _converters(table: Table, names: tuple[str, ...], dialect, json_mode: str) -> tuple:
    """Per column, the function that makes a Python value a bound value (None: as it is), from the
    column type's own bind processor. ``json_mode`` for JSON-typed columns: ``"text"`` (JSON text,
    PostgreSQL casts it back), ``"native"`` (the Python value, sent inside a JSON document) or
    ``"processor"`` (the type's processor: on SQLite it already makes text)."""
    out = []
    for name in names:
        col_type = table.c[name].type
        process = col_type.dialect_impl(dialect).bind_processor(dialect)
        if isinstance(col_type, JSON) and json_mode != "processor":
            process = json.dumps if json_mode == "text" else None
        out.append(process)
    return tuple(out)


def _columns(conn: Connection | Engine, table: Table, rows: Sequence[Mapping], names: Sequence[str], *,
             json_text: bool, json_native: bool = False) -> list[list]:
    """The rows' values column by column, each through its type's bind processor (`_converters`)."""
    mode = "native" if json_native else "text" if json_text else "processor"
    return [[r[name] for r in rows] if process is None else [None if (v := r[name]) is None else process(v) for r in rows]
            for name, process in zip(names, _converters(table, tuple(names), conn.dialect, mode))]


def _pg_array_type(conn: Connection, table: Table, name: str) -> str:
    col_type = table.c[name].type
    return "TEXT[]" if isinstance(col_type, JSON) else f"{col_type.compile(dialect=conn.dialect)}[]"


def _pg_value(conn: Connection, table: Table, name: str, expr: str) -> str:
    return f"CAST({expr} AS {table.c[name].type.compile(dialect=conn.dialect)})" if isinstance(table.c[name].type, JSON) else expr


def _json_value(value):
    """A bound value JSON cannot hold as it is: datetimes and dates as ISO 8601 text, decimals as their
    exact digits (PostgreSQL reads both back into the column's type)."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a bulk insert")


def _sqlite_document(columns: list[list]) -> str:
    return json.dumps([list(r) for r in zip(*columns)], separators=(",", ":"), allow_nan=False)


def _pg_document(columns: list[list]) -> str:
    """The rows as one JSON array of objects keyed c0, c1, ... (read by ``json_to_recordset``)."""
    keys = [f"c{i}" for i in range(len(columns))]
    return json.dumps([dict(zip(keys, r)) for r in zip(*columns)], separators=(",", ":"), allow_nan=False,
                      default=_json_value)




@lru_cache(maxsize=512)
def _insert_sql(dialect, table: Table, names: tuple[str, ...], skip_conflicts_on: tuple[str, ...],
                returning: tuple[str, ...], n: int) -> str:
    """The INSERT text of `insert_rows` (built once per shape): on PostgreSQL from one JSON document,
    on SQLite a VALUES list of ``n`` rows."""
    quote = dialect.identifier_preparer.quote
    target = ", ".join(quote(c) for c in names)
    conflict = f" ON CONFLICT ({', '.join(quote(c) for c in skip_conflicts_on)}) DO NOTHING" if skip_conflicts_on else ""
    back = f" RETURNING {', '.join(quote(c) for c in returning)}" if returning else ""
    if dialect.name == "postgresql":
        record = ", ".join(f"c{i} {table.c[c].type.compile(dialect=dialect)}" for i, c in enumerate(names))
        select = ", ".join(f"r.c{i}" for i in range(len(names)))
        return (f"INSERT INTO {quote(table.name)} ({target}) SELECT {select} "
                f"FROM json_to_recordset(%s::json) AS r({record}){conflict}{back}")
    one = "(" + ", ".join("?" * len(names)) + ")"
    return f"INSERT INTO {quote(table.name)} ({target}) VALUES {', '.join([one] * n)}{conflict}{back}"


def _checked_names(table: Table, rows: Sequence[Mapping]) -> list[str]:
    names = list(rows[0].keys())
    if any(len(r) != len(names) for r in rows):
        raise ValueError(f"every row inserted into {table.name} must have the same keys")
    unknown = [n for n in names if n not in table.c]
    if unknown:
        raise KeyError(f"{table.name} has no column {unknown[0]!r}")
    return names


def pg_insert_statement(bind: Connection | Engine, table: Table, rows: Sequence[Mapping], *,
                        skip_conflicts_on: Sequence[str] = (), returning: Sequence[str] = ()) -> tuple[str, tuple]:
    """The SQL text and parameters `insert_rows` runs on PostgreSQL (for a caller with a driver connection
    of its own: the collector's event loop sends them on an asynchronous psycopg connection)."""
    names = _checked_names(table, rows)
    columns = _columns(bind, table, rows, names, json_text=False, json_native=True)
    return (_insert_sql(bind.dialect, table, tuple(names), tuple(skip_conflicts_on), tuple(returning), 0),
            (_pg_document(columns),))


def returned_rows(returning: Sequence[str], rows: Sequence[tuple]) -> list:
    """Rows of a RETURNING clause as named tuples (``row.event_id``)."""
    make = _returned_row(tuple(returning))._make
    return [make(r) for r in rows]


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping], *, skip_conflicts_on: Sequence[str] = (),
                returning: Sequence[str] = ()) -> list[tuple]:
    """Insert ``rows`` (dicts with the same keys, one per column written) in one statement (on SQLite, one
    per 999 bound values).

    ``skip_conflicts_on``: a unique key; a row that collides with a stored one is skipped (``ON CONFLICT
    DO NOTHING``). ``returning``: columns of the rows actually inserted, returned (in no set order) as
    named tuples (``row.event_id``).
    Columns not in the rows take the database's default (or NULL): pass every column that has a Python-side default.
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _run(conn, *pg_insert_statement(conn, table, rows, skip_conflicts_on=skip_conflicts_on, returning=returning),
                    returning)
    names = _checked_names(table, rows)
    shape = (table, tuple(names), tuple(skip_conflicts_on), tuple(returning))
    if dialect == "sqlite":
        columns = _columns(conn, table, rows, names, json_text=False)
        flat = [value for row in zip(*columns) for value in row]
        per = max(1, _SQLITE_VARIABLES // len(names))  # rows per statement
        found = []
        for lo in range(0, len(rows), per):
            n = min(per, len(rows) - lo)
            found += _run(conn, _insert_sql(conn.dialect, *shape, n), tuple(flat[lo * len(names):(lo + n) * len(names)]),
                          returning)
        return found
    raise NotImplementedError(f"bulk insert on {dialect}")  # pragma: no cover - the two supported databases


@lru_cache(maxsize=64)
def _returned_row(names: tuple[str, ...]):
    """The row type of a RETURNING clause: fields by name (``row.event_id``) and by position."""
    return namedtuple("Returned", names)


def _run(conn: Connection, sql: str, params: tuple, returning: Sequence[str]) -> list:
    """Execute ``sql`` on the connection's DBAPI cursor, in the connection's transaction (begun here if
    none is, as SQLAlchemy's autobegin does); the rows of its RETURNING clause."""
    if not conn.in_transaction():
        conn.begin()
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return returned_rows(returning, cursor.fetchall()) if returning else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc
    finally:
        cursor.close()


def update_rows(conn: Connection, table: Table, rows: Sequence[Mapping], *, match: Mapping[str, str],
                values: Sequence[str]) -> int:
    """Update many rows, each with its own values, in one statement; returns how many rows changed.

    ``match`` maps a column to the key holding the value it must equal (e.g. ``{"id": "delivery_id",
    "lease_owner": "token"}``), so a row is updated only where every match holds; ``values`` names the
    columns set, each from the row's key of the same name.
    """
    if not rows:
        return 0
    keys = list(match.items())
    match_names = [c for c, _ in keys]
    dialect = conn.dialect.name
    key_rows = [{c: r[k] for c, k in keys} for r in rows]
    key_columns = _columns(conn, table, key_rows, match_names, json_text=dialect == "postgresql")
    value_columns = _columns(conn, table, rows, list(values), json_text=dialect == "postgresql")
    t = _quote(conn, table.name)
    n_keys = len(match_names)
    if dialect == "postgresql":
        names = match_names + list(values)
        arrays = ", ".join(f"%s::{_pg_array_type(conn, table, n)}" for n in names)
        alias = ", ".join(f"c{i}" for i in range(len(names)))
        sets = ", ".join(f"{_quote(conn, n)} = {_pg_value(conn, table, n, f'u.c{n_keys + i}')}" for i, n in enumerate(values))
        where = " AND ".join(f"{t}.{_quote(conn, n)} = u.c{i}" for i, n in enumerate(match_names))
        sql = f"UPDATE {t} SET {sets} FROM unnest({arrays}) AS u({alias}) WHERE {where}"
        result = conn.exec_driver_sql(sql, tuple(key_columns + value_columns))
    elif dialect == "sqlite":
        names = match_names + list(values)
        fields = ", ".join(f"json_extract(value, '$[{i}]') AS c{i}" for i in range(len(names)))
        sets = ", ".join(f"{_quote(conn, n)} = u.c{n_keys + i}" for i, n in enumerate(values))
        where = " AND ".join(f"{t}.{_quote(conn, n)} = u.c{i}" for i, n in enumerate(match_names))
        sql = f"UPDATE {t} SET {sets} FROM (SELECT {fields} FROM json_each(?)) AS u WHERE {where}"
        result = conn.exec_driver_sql(sql, (_sqlite_document(key_columns + value_columns),))
    else:  # pragma: no cover
        raise NotImplementedError(f"bulk update on {dialect}")
    return int(result.rowcount or 0)


__all__ = ["insert_rows", "update_rows"]
