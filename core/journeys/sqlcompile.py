"""Dialect pieces of the SQL pushdown: regex search, epoch microseconds, whitespace trim, binary
string order and an ordered string aggregate, each compiled for PostgreSQL, SQLite, DuckDB, BigQuery
and Snowflake (SQLAlchemy ``@compiles``), plus the check of what a dialect's regex engine can express.
"""

from __future__ import annotations

import re

from sqlalchemy import Boolean, BigInteger, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

#: Dialects the pushdown is written and tested for (BigQuery and Snowflake compile-only).
SUPPORTED_DIALECTS = ("postgresql", "sqlite", "duckdb", "bigquery", "snowflake")
#: Every character Python's ``str.strip()`` removes (what the import's text cleaning trims).
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # U+3000 is the last
#: Name of the case-insensitive search function registered on SQLite connections (Python ``re``).
SQLITE_REGEXP = "ms_regexp_search"

_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")
_PY_ONLY = re.compile(r"\(\?P<|\(\?>|\(\?#|\\[AZ]|[*+?}][+]")


def regex_problem(pattern: str, dialect: str) -> str | None:
    """Why ``dialect``'s regex engine cannot run ``pattern`` exactly like Python's ``re``, or None."""
    if dialect == "sqlite":
        return None  # Python's own re, registered on the connection
    if dialect in ("duckdb", "bigquery") or dialect == "snowflake":
        if _LOOKAROUND.search(pattern):
            return "look-ahead/look-behind is not supported by RE2/POSIX regular expressions"
        if _BACKREF.search(pattern):
            return "back-references are not supported by RE2/POSIX regular expressions"
    if dialect == "snowflake" and re.search(r"\(\?[:imsx]|[*+?}]\?", pattern):
        return "Snowflake's POSIX regular expressions have no (?...) groups and no lazy quantifiers"
    if _PY_ONLY.search(pattern):
        return "named groups, atomic groups, \\A/\\Z and possessive quantifiers are Python-only syntax"
    return None


def sqlite_regexp_search(pattern, value) -> bool:
    """The SQLite side of `RegexSearch`: ``re.search`` ignoring case, like pandas ``str.contains``."""
    if value is None or pattern is None:
        return False
    return re.search(pattern, value, re.IGNORECASE) is not None


class RegexSearch(ColumnElement):
    """``pattern`` found anywhere in ``value``, ignoring case (``re.search(p, v, re.I)``)."""

    type = Boolean()
    inherit_cache = True

    def __init__(self, value, pattern: str):
        from sqlalchemy import literal

        self.value = value
        self.pattern = literal(pattern, String())


@compiles(RegexSearch)
def _regex_default(element, compiler, **kw):
    raise NotImplementedError(f"no regular expression search for dialect {compiler.dialect.name}")


@compiles(RegexSearch, "postgresql")
def _regex_pg(element, compiler, **kw):
    return f"({compiler.process(element.value, **kw)} ~* {compiler.process(element.pattern, **kw)})"


@compiles(RegexSearch, "sqlite")
def _regex_sqlite(element, compiler, **kw):
    return f"{SQLITE_REGEXP}({compiler.process(element.pattern, **kw)}, {compiler.process(element.value, **kw)})"


@compiles(RegexSearch, "duckdb")
def _regex_duckdb(element, compiler, **kw):
    return f"regexp_matches({compiler.process(element.value, **kw)}, {compiler.process(element.pattern, **kw)}, 'i')"


@compiles(RegexSearch, "bigquery")
def _regex_bq(element, compiler, **kw):
    return f"REGEXP_CONTAINS({compiler.process(element.value, **kw)}, CONCAT('(?i)', {compiler.process(element.pattern, **kw)}))"


@compiles(RegexSearch, "snowflake")
def _regex_sf(element, compiler, **kw):
    return f"(REGEXP_INSTR({compiler.process(element.value, **kw)}, {compiler.process(element.pattern, **kw)}, 1, 1, 0, 'i') > 0)"


class EpochMicros(FunctionElement):
    """Microseconds since the epoch (UTC) of a timestamp, ISO text or epoch number.

    ``kind`` is ``timestamp`` (native type; no zone means UTC), ``text`` (ISO 8601, an offset is
    honoured, none means UTC) or ``epoch`` with ``scale`` microseconds per stored unit.
    SQLite's date functions resolve milliseconds, so there sub-millisecond parts are lost.
    """

    type = BigInteger()
    inherit_cache = False
    name = "epoch_us"

    def __init__(self, expr, kind: str, scale: float = 1.0):
        self.kind, self.scale = kind, scale
        super().__init__(expr)


def _epoch_arg(element, compiler, **kw):
    return compiler.process(list(element.clauses)[0], **kw)


def _epoch_number(element, compiler, bigint: str, **kw):
    x = _epoch_arg(element, compiler, **kw)
    if element.scale == 1:
        return f"CAST({x} AS {bigint})"
    return f"CAST(ROUND({x} * {element.scale!r}) AS {bigint})"


@compiles(EpochMicros)
def _epoch_default(element, compiler, **kw):
    raise NotImplementedError(f"no epoch conversion for dialect {compiler.dialect.name}")


@compiles(EpochMicros, "postgresql")
def _epoch_pg(element, compiler, **kw):
    if element.kind == "epoch":
        return _epoch_number(element, compiler, "BIGINT", **kw)
    x = _epoch_arg(element, compiler, **kw)
    if element.kind == "text":
        x = f"CAST({x} AS TIMESTAMPTZ)"
    return f"CAST(EXTRACT(EPOCH FROM {x}) * 1000000 AS BIGINT)"


@compiles(EpochMicros, "sqlite")
def _epoch_sqlite(element, compiler, **kw):
    if element.kind == "epoch":
        return _epoch_number(element, compiler, "INTEGER", **kw)
    x = _epoch_arg(element, compiler, **kw)
    return f"(CAST(ROUND((julianday({x}) - 2440587.5) * 86400000.0) AS INTEGER) * 1000)"


@compiles(EpochMicros, "duckdb")
def _epoch_duckdb(element, compiler, **kw):
    if element.kind == "epoch":
        return _epoch_number(element, compiler, "BIGINT", **kw)
    x = _epoch_arg(element, compiler, **kw)
    return f"epoch_us(CAST({x} AS TIMESTAMPTZ))" if element.kind == "text" else f"epoch_us({x})"


@compiles(EpochMicros, "bigquery")
def _epoch_bq(element, compiler, **kw):
    if element.kind == "epoch":
        return _epoch_number(element, compiler, "INT64", **kw)
    return f"UNIX_MICROS(CAST({_epoch_arg(element, compiler, **kw)} AS TIMESTAMP))"


@compiles(EpochMicros, "snowflake")
def _epoch_sf(element, compiler, **kw):
    if element.kind == "epoch":
        return _epoch_number(element, compiler, "BIGINT", **kw)
    x = _epoch_arg(element, compiler, **kw)
    if element.kind == "text":
        x = f"TRY_TO_TIMESTAMP_TZ({x})"
    return f"DATE_PART(EPOCH_MICROSECOND, {x})"


class StripWhitespace(FunctionElement):
    """Text with the characters of `WHITESPACE` trimmed from both ends (Python's ``str.strip()``)."""

    type = String()
    inherit_cache = True
    name = "strip_ws"


@compiles(StripWhitespace)
def _strip_default(element, compiler, **kw):
    from sqlalchemy import literal

    chars = compiler.process(literal(WHITESPACE, String()), **kw)
    fn = "TRIM" if compiler.dialect.name in ("bigquery", "snowflake") else "trim"
    return f"{fn}({compiler.process(list(element.clauses)[0], **kw)}, {chars})"


def _guarded_strip(element, compiler, test: str, trim: str, **kw) -> str:
    """Trim only values that start or end with whitespace: a trim over a set of 30 characters costs
    about ten times a regex test of both ends, and almost no value needs it."""
    from sqlalchemy import literal

    x = compiler.process(list(element.clauses)[0], **kw)
    edges = compiler.process(literal(f"^[{WHITESPACE}]|[{WHITESPACE}]$", String()), **kw)
    chars = compiler.process(literal(WHITESPACE, String()), **kw)
    return f"CASE WHEN {test.format(x=x, p=edges, c=chars)} THEN {trim}({x}, {chars}) ELSE {x} END"


@compiles(StripWhitespace, "duckdb")
def _strip_duckdb(element, compiler, **kw):
    return _guarded_strip(element, compiler, "regexp_matches({x}, {p})", "trim", **kw)


@compiles(StripWhitespace, "postgresql")
def _strip_pg(element, compiler, **kw):
    # PostgreSQL: looking the end characters up in the set beats both a regex and btrim.
    return _guarded_strip(element, compiler, "(strpos({c}, left({x}, 1)) > 0 OR strpos({c}, right({x}, 1)) > 0)", "btrim", **kw)


class BinaryOrder(ColumnElement):
    """A string compared byte-wise (code point order, like Python's ``sorted``) in ORDER BY."""

    inherit_cache = True

    def __init__(self, expr):
        self.expr = expr
        self.type = expr.type


@compiles(BinaryOrder)
def _binary_default(element, compiler, **kw):
    return compiler.process(element.expr, **kw)  # SQLite BINARY, DuckDB, BigQuery and Snowflake compare bytes


@compiles(BinaryOrder, "postgresql")
def _binary_pg(element, compiler, **kw):
    return f'({compiler.process(element.expr, **kw)} COLLATE "C")'


class OrderedConcat(FunctionElement):
    """Aggregate: integer codes of a group as text joined by ``,`` in the order of ``order_by``."""

    type = String()
    inherit_cache = False
    name = "ordered_concat"

    def __init__(self, expr, *order_by):
        self.order_by = order_by
        super().__init__(expr)


def _order(element, compiler, **kw):
    return ", ".join(compiler.process(o, **kw) for o in element.order_by)


def _code(element, compiler, **kw):
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(OrderedConcat)
def _concat_default(element, compiler, **kw):  # PostgreSQL
    return f"string_agg(CAST({_code(element, compiler, **kw)} AS TEXT), ',' ORDER BY {_order(element, compiler, **kw)})"


@compiles(OrderedConcat, "duckdb")
def _concat_duckdb(element, compiler, **kw):
    # An ordered list of integers joined afterwards: DuckDB's ordered string_agg is several times slower.
    return f"array_to_string(list({_code(element, compiler, **kw)} ORDER BY {_order(element, compiler, **kw)}), ',')"


@compiles(OrderedConcat, "bigquery")
def _concat_bq(element, compiler, **kw):
    return f"STRING_AGG(CAST({_code(element, compiler, **kw)} AS STRING), ',' ORDER BY {_order(element, compiler, **kw)})"


@compiles(OrderedConcat, "snowflake")
def _concat_sf(element, compiler, **kw):
    return f"LISTAGG(CAST({_code(element, compiler, **kw)} AS VARCHAR), ',') WITHIN GROUP (ORDER BY {_order(element, compiler, **kw)})"


@compiles(OrderedConcat, "sqlite")
def _concat_sqlite(element, compiler, **kw):
    raise NotImplementedError("SQLite before 3.44 has no ordered group_concat: the pushdown uses a window instead")
