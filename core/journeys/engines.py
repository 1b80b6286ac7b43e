"""One switch over the three journey engines: a source (files, a folder or glob, or a SQLAlchemy URL
with a table or query) and an engine name (memory, sql, dask, or None to pick by size) -> PathTable.

* memory: read and import in this process, then the numpy kernel (keeps per-journey detail).
* sql: the database builds the paths (`core.journeys.sql`); files are queried in place by DuckDB.
* dask: the kernel per user partition on a Dask cluster (`core.journeys.dask_engine`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.pathtable import PathTable

from .memory import JourneyError, Progress

ENGINES = ("memory", "sql", "dask")
#: Event files larger than this on disk go to Dask by default (a 10 M-event CSV is about 0.6 GB and
#: builds in memory in seconds; in memory, a file takes several times its disk size).
MEMORY_ENGINE_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class EventSource:
    """Where events are: ``files`` (paths), or ``url`` with ``table`` or ``query``."""

    files: tuple[str, ...] = ()
    url: str | None = None
    table: str | None = None
    query: str | None = None

    @property
    def is_sql(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        from core.store.db import redact_url

        if self.is_sql:
            return f"{redact_url(self.url)} {self.table or 'query'}"
        return ", ".join(self.files) if len(self.files) <= 3 else f"{len(self.files)} files"


@dataclass
class EngineResult:
    paths: PathTable
    engine: str
    report: dict = field(default_factory=dict)
    journeys: object | None = None  # Journeys, from the memory engine on event-level input
    sql: str | None = None  # the pushdown query, from the sql engine


def looks_like_url(text: str) -> bool:
    return "://" in str(text) and not os.path.exists(str(text))


def event_source(items, table: str | None = None, query: str | None = None) -> EventSource:
    """Read a command line's SOURCE arguments: one SQLAlchemy URL (with table or query), or files,
    folders and globs (expanded to the Parquet/CSV files they hold)."""
    from .dask_engine import list_event_files

    items = [str(i) for i in (items if isinstance(items, (list, tuple)) else [items])]
    urls = [i for i in items if looks_like_url(i)]
    if urls:
        if len(items) != 1:
            raise JourneyError("give one database URL, or files; not both")
        if (table is None) == (query is None):
            raise JourneyError("a database source needs --table T or --query Q (one of them)")
        return EventSource(url=urls[0], table=table, query=query)
    if table or query:
        raise JourneyError("--table and --query go with a database URL")
    expanded: list[str] = []
    for item in items:
        if os.path.isfile(item):
            expanded.append(item)  # any format the import reads (JSON lines, paths tables ...)
        else:
            expanded.extend(list_event_files(item))
    return EventSource(files=tuple(expanded))


def default_engine(source: EventSource) -> str:
    """sql for a database (the data stays there), dask for files too big for memory, else memory."""
    if source.is_sql:
        return "sql"
    size = sum(os.path.getsize(f) for f in source.files)
    return "dask" if size > MEMORY_ENGINE_MAX_BYTES else "memory"


def _duckdb_query(files: tuple[str, ...]) -> str:
    from .dask_engine import _kind

    kinds = {_kind(f) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise JourneyError("the sql engine reads Parquet or CSV files (all of one kind) through DuckDB")
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    reader = "read_parquet" if kinds == {"parquet"} else "read_csv_auto"
    return f"SELECT * FROM {reader}([{listed}])"


def build_paths(source: EventSource, engine: str | None = None, *, lookback_days: float = 30, level: str = "channel",
                null_lookback: bool = True, channel_rules=None, scheduler: str | None = None, n_workers: int = 2,
                memory_limit: str | int = "2GB", progress: Progress | None = None, sessions=None) -> EngineResult:
    """The PathTable of ``source`` on ``engine`` (None: `default_engine`); ``sessions``
    (`core.ingest.SessionSettings`, default auto) says whether touches are sessions or every event."""
    engine = engine or default_engine(source)
    if engine not in ENGINES:
        raise JourneyError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "memory":
        return _memory(source, lookback_days, level, null_lookback, channel_rules, progress, sessions)
    if engine == "sql":
        from .sql import build_pathtable_sql

        url, table, query = (source.url, source.table, source.query) if source.is_sql else ("duckdb:///:memory:", None, _duckdb_query(source.files))
        out = build_pathtable_sql(url, table, query, lookback_days=lookback_days, level=level, null_lookback=null_lookback,
                                  channel_rules=channel_rules, progress=progress, sessions=sessions)
        return EngineResult(out.paths, "sql", out.report, sql=out.sql)
    if source.is_sql:
        raise JourneyError("the dask engine reads files; a database builds its own paths with --engine sql")
    from .dask_engine import build_pathtable_dask

    out = build_pathtable_dask(list(source.files), lookback_days=lookback_days, level=level, null_lookback=null_lookback,
                               channel_rules=channel_rules, scheduler=scheduler, n_workers=n_workers,
                               memory_limit=memory_limit, progress=progress, sessions=sessions)
    return EngineResult(out.paths, "dask", out.report)


def as_import_result(result: EngineResult, source: EventSource):
    """An engine's path table as a path-level `ImportResult`, to store as a data set like an upload."""
    from core.ingest.api import ImportResult

    paths = result.paths
    report = dict(kind="paths", format=[f"paths built by the {result.engine} engine"], files=[source.describe()],
                  rows_kept=paths.n_paths, paths=paths.n_paths, conversions=round(paths.total_conversions, 6),
                  value=round(paths.total_value, 6), nulls=round(paths.total_nulls, 6), channels=list(paths.channels),
                  engine=result.engine, warnings=[],
                  **{k: v for k, v in result.report.items() if k in ("rows", "bytes_fetched", "seconds", "peak_worker_memory_bytes", "dialect",
                                                                     "touches_are", "touches_reason")})
    return ImportResult("paths", {}, report, paths=paths, files=[source.describe()], source_system=f"paths:{result.engine}")


def _memory(source, lookback_days, level, null_lookback, channel_rules, progress, sessions=None) -> EngineResult:
    from core.ingest import read_files
    from core.ingest.sql import read_sql_source

    from .memory import build_journeys_with_report

    step = progress or (lambda _f, _m: None)
    if source.is_sql:
        result = read_sql_source(source.url, source.table, source.query, channel_rules=channel_rules,
                                 progress=lambda f, m: step(0.5 * f, m), sessions=sessions)
    else:
        result = read_files(list(source.files), channel_rules=channel_rules, progress=lambda f, m: step(0.5 * f, m),
                            sessions=sessions)
    if result.kind == "paths":
        if level != "channel":
            raise JourneyError("a path-level table has no campaign ids: use --level channel")
        return EngineResult(result.paths, "memory", dict(engine="memory", paths=result.paths.n_paths))
    if result.kind != "journeys":
        raise JourneyError(f"{source.describe()}: this is {result.kind} data, not journeys or paths")
    journeys, report = build_journeys_with_report(result.touchpoints, result.conversions, lookback_days, level,
                                                  lambda f, m: step(0.5 + 0.5 * f, m), null_lookback=null_lookback)
    paths = journeys.to_pathtable()
    return EngineResult(paths, "memory", dict(engine="memory", paths=paths.n_paths, **report.as_dict()), journeys=journeys)


__all__ = ["ENGINES", "EventSource", "EngineResult", "as_import_result", "build_paths", "default_engine", "event_source", "MEMORY_ENGINE_MAX_BYTES"]
