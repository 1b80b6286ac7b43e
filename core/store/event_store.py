"""Event-level data of journeys data sets as Parquet, partitioned by day, under a storage location.

The location is a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``);
the database keeps the metadata (one `EventSet` row per data set: where its files are, how many rows).
Layout under the location::

    {location}/{instance}/sets/{key}/touchpoints/date=2024-01-31/part-0.parquet
    {location}/{instance}/sets/{key}/conversions/date=2024-01-31/part-0.parquet
    {location}/{instance}/sets/{key}/users.parquet  the set's user keys, sorted and distinct
    {location}/{instance}/staging/{key}/...        an import being written

Every event file keeps its ``user_key`` text (for DuckDB, Dask or any Parquet reader) and also the row's
index into ``users.parquet`` (``user_code``), with each day's rows sorted by (user, time): reading a set
back then needs no string per row and no hashing, only one integer sort that merges the days' sorted runs
(`core.ingest.persist.frames_from_tables`). Sets written before ``users.parquet`` existed are read from
their ``user_key`` text, with the same result.

``instance`` is this database's own id (``store_settings``), so several databases can share one location
and each cleans only its own files. An import writes to ``staging``, commits its database rows, then
publishes (renames) the folder into ``sets``. A crash before the commit leaves only a staged folder with
no row: `clean_orphans` removes it (at once when the process that wrote it is gone, else after a day). A
crash after the commit leaves a staged folder that has a row: the next reader or cleanup publishes it.

Reading is columnar (pyarrow datasets), never row by row: `read_events` gives Arrow tables, `event_files`
the Parquet files and the filesystem, for engines that read them themselves (Dask, DuckDB).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

#: Environment variable naming the storage location of event files (a folder or an fsspec URL).
STORAGE_URL_ENV = "MARKETING_SUITE_STORAGE_URL"
#: The tables of an event set.
TABLES = ("touchpoints", "conversions")
#: A staged folder whose writer cannot be checked (another host) counts as abandoned after this long.
ABANDONED_AFTER_S = 24 * 3600
_WRITER = "_writer.json"
#: Text columns that repeat: read back dictionary-encoded (no string per row is decoded).
_DICTIONARY_COLUMNS = ["user_key", "channel", "campaign_id", "campaign", "source", "medium", "interaction", "source_system",
                       "type", "currency"]
_INSTANCE_KEY = "event_store_instance"
#: The set's user keys (one ``user_key`` column, sorted by code point, distinct, only keys that occur).
USERS_FILE = "users.parquet"
#: Column of the event files: the row's index into `USERS_FILE` (null where the user key is).
USER_CODE = "user_code"


class EventStoreError(OSError):
    """The storage location cannot be used (unreachable, missing files, no driver for its URL)."""


# ----------------------------------------------------------------------------------------- location
def storage_location(engine=None, explicit: str | None = None) -> str:
    """Where event files go: ``explicit`` (from secrets), else ``$MARKETING_SUITE_STORAGE_URL``, else a
    folder beside a SQLite database file (so a database and its events stay together), else
    ``events`` in the user's data directory."""
    chosen = explicit or os.environ.get(STORAGE_URL_ENV)
    if chosen:
        return str(chosen)
    database = getattr(getattr(engine, "url", None), "database", None)
    if engine is not None and engine.dialect.name == "sqlite" and database and database != ":memory:":
        path = Path(database).expanduser().resolve()
        return str(path.with_name(path.stem + "_events"))
    from platformdirs import user_data_dir

    return str(Path(user_data_dir("marketing-suite", appauthor=False)) / "events")


def _filesystem(url: str):
    """(fsspec filesystem, root path) of a location; a clear error when its driver is missing."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise EventStoreError(f"the storage location {_shown(url)} needs a package that is not installed ({exc})") from None
    except (ValueError, OSError) as exc:
        raise EventStoreError(f"the storage location {_shown(url)} cannot be used ({exc})") from None
    return fs, path.rstrip("/") or "/"


def _shown(url: str) -> str:
    from core.store.db import redact_url

    return redact_url(url) if "://" in url and "@" in url else url


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def instance_id(engine) -> str:
    """This database's folder name under a storage location (made once, kept in ``store_settings``)."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from core.store.models import StoreSetting

    with engine.connect() as conn:
        found = conn.scalar(select(StoreSetting.value).where(StoreSetting.key == _INSTANCE_KEY))
    if found:
        return found
    try:
        with engine.begin() as conn:
            conn.execute(insert(StoreSetting).values(key=_INSTANCE_KEY, value=uuid.uuid4().hex))
    except IntegrityError:  # another process made it first
        pass
    with engine.connect() as conn:
        return conn.scalar(select(StoreSetting.value).where(StoreSetting.key == _INSTANCE_KEY))


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _url_join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


# ------------------------------------------------------------------------------------------ writing
@dataclass
class StagedSet:
    """Event files written to staging, not yet visible as a data set."""

    key: str
    uri: str  # the published location (stored in the database)
    fs: object
    staging: str
    final: str
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0


def stage(engine, tables: dict[str, pa.Table], location: str | None = None, *, progress=None) -> StagedSet:
    """Write ``{"touchpoints": table, "conversions": table}`` (each with a tz-aware ``ts``) as Parquet
    partitioned by UTC day into a new staging folder; nothing is visible until `publish`."""
    location = storage_location(engine, location)
    fs, root = _filesystem(location)
    instance, key = instance_id(engine), uuid.uuid4().hex
    staged = StagedSet(key=key, uri=_url_join(location, instance, "sets", key), fs=fs,
                       staging=_join(root, instance, "staging", key), final=_join(root, instance, "sets", key))
    try:
        fs.makedirs(staged.staging, exist_ok=True)
        with fs.open(_join(staged.staging, _WRITER), "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, fh)
        tables, users = _with_user_codes(tables)
        if users is not None:
            _write_users(fs, _join(staged.staging, USERS_FILE), users)
        for i, (name, table) in enumerate(tables.items()):
            if progress:
                progress(i / max(len(tables), 1), f"writing {table.num_rows:,} {name}")
            _write_days(fs, _join(staged.staging, name), table)
            staged.rows[name] = table.num_rows
        for info in fs.find(staged.staging, detail=True).values():
            if not info["name"].endswith(_WRITER):
                staged.files += 1
                staged.bytes += int(info.get("size") or 0)
    except BaseException:
        discard(staged)
        raise
    return staged


def sorted_dictionary(columns: list) -> tuple[pa.Array, list]:
    """Text columns (Arrow, plain or dictionary-encoded, None for none) coded into ONE index of the
    distinct values that occur, sorted by code point: ``(values, [int64 codes per column])``, code -1
    for a missing value. No Python object per row. When every chunk shares one strictly increasing
    dictionary (a stored set's user keys, an import's categoricals) its indices are the codes and no
    string is hashed; otherwise the dictionaries are unified once and ranked."""
    import numpy as np
    import pyarrow.compute as pc

    chunks, lengths = [], []
    for col in columns:
        n = 0
        for chunk in ([] if col is None else col.chunks):
            if not pa.types.is_dictionary(chunk.type):
                chunk = pc.dictionary_encode(chunk)
            chunks.append(chunk.cast(pa.dictionary(pa.int32(), chunk.type.value_type)))
            n += len(chunk)
        lengths.append(n)
    if not chunks:
        return pa.array([], type=pa.string()), [np.empty(0, dtype=np.int64) for _ in columns]
    first = chunks[0].dictionary
    shared = all(_same_array(c.dictionary, first) for c in chunks[1:]) and _strictly_increasing(first)
    if shared:
        dictionary = first
    else:
        if len({c.type.value_type for c in chunks}) > 1:
            chunks = [c.cast(pa.dictionary(pa.int32(), pa.large_string())) for c in chunks]
        chunks = pa.chunked_array(chunks).unify_dictionaries().chunks
        dictionary = chunks[0].dictionary
    codes = np.concatenate([c.indices.fill_null(-1).to_numpy() for c in chunks]).astype(np.int64)
    used = np.bincount(codes[codes >= 0], minlength=len(dictionary)) > 0
    if not (shared and used.all()):
        keep = np.flatnonzero(used)
        kept = dictionary.take(pa.array(keep))
        order = np.arange(len(keep)) if shared else pc.array_sort_indices(kept).to_numpy()
        rank = np.full(len(dictionary) + 1, -1, dtype=np.int64)  # code -1 (missing) reads the last entry
        rank[keep[order]] = np.arange(len(keep))
        codes = rank[codes]
        dictionary = kept.take(pa.array(order))
    bounds = np.cumsum(lengths)[:-1]
    return dictionary, np.split(codes, bounds)


def _same_array(a: pa.Array, b: pa.Array) -> bool:
    """Equal arrays, decided without reading them when both are views of the same buffers."""
    if a is b:
        return True
    if len(a) != len(b) or a.type != b.type:
        return False
    if a.offset == b.offset and [x.address if x else None for x in a.buffers()] == [y.address if y else None for y in b.buffers()]:
        return True
    return a.equals(b)


def _strictly_increasing(values: pa.Array) -> bool:
    """Sorted by code point with no repeat and no missing value (so usable as categories as they are)."""
    import pyarrow.compute as pc

    if values.null_count:
        return False
    if len(values) < 2:
        return True
    return bool(pc.all(pc.less(values.slice(0, len(values) - 1), values.slice(1))).as_py())


def _with_user_codes(tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], pa.Array | None]:
    """The tables with a `USER_CODE` column added (each row's index into the set's sorted users), and those users."""
    import numpy as np

    named = [name for name, t in tables.items() if "user_key" in t.column_names and t.num_rows]
    if not named:
        return tables, None
    users, codes = sorted_dictionary([tables[name]["user_key"] for name in named])
    out = dict(tables)
    for name, code in zip(named, codes):
        missing = code < 0
        out[name] = tables[name].append_column(USER_CODE, pa.array(code.astype(np.int32), mask=missing if missing.any() else None))
    return out, users


def _write_users(fs, path: str, users: pa.Array) -> None:
    import pyarrow.parquet as pq

    with fs.open(path, "wb") as fh:
        pq.write_table(pa.table({"user_key": users}), fh, compression="zstd")


def _user_time_order(table: pa.Table):
    """None when the rows are already ordered by (`USER_CODE`, ts) (an import's are), else the stable
    order that sorts them so."""
    import numpy as np

    if USER_CODE not in table.column_names:
        return None
    users = table[USER_CODE].fill_null(-1).to_numpy()
    ts = table["ts"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    step = np.diff(users)
    if (step >= 0).all() and not ((step == 0) & (np.diff(ts) < 0)).any():
        return None
    return np.lexsort((ts, users))


def _write_days(fs, folder: str, table: pa.Table) -> None:
    """One Parquet file per UTC day (``date=YYYY-MM-DD/part-0.parquet``), a day's rows ordered by (user,
    time) when the table has `USER_CODE`, ties (and tables without it) in input order. Dictionary columns
    are written as text, which Parquet dictionary-encodes per file with only the values that file holds
    (and which reads back dictionary-encoded, see `_DICTIONARY_COLUMNS`)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if table.num_rows == 0:
        return
    day = pc.cast(pc.cast(table["ts"], pa.timestamp("ns", tz="UTC")), pa.date32()).cast(pa.int32()).to_numpy()
    within = _user_time_order(table)
    order = np.argsort(day if within is None else day[within], kind="stable")
    if within is not None:
        order = within[order]
    day = day[order]
    plain = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    # A day's user codes ascend: deltas take a few bits a row, where a dictionary of them would not repeat.
    encodings = {"use_dictionary": [c for c in plain.names if c != USER_CODE],
                 "column_encoding": {USER_CODE: "DELTA_BINARY_PACKED"}} if USER_CODE in plain.names else {}
    starts = np.r_[0, np.flatnonzero(np.diff(day)) + 1]
    ends = np.r_[starts[1:], len(day)]
    for lo, hi in zip(starts, ends):  # one day's rows gathered at a time: the whole table is never copied
        date = np.datetime64(int(day[lo]), "D").astype(str)
        path = _join(folder, f"date={date}")
        fs.makedirs(path, exist_ok=True)
        part = table.take(pa.array(order[lo:hi])).cast(plain)
        with fs.open(_join(path, "part-0.parquet"), "wb") as fh:
            pq.write_table(part, fh, compression="zstd", row_group_size=1 << 20, **encodings)


def publish(staged: StagedSet) -> None:
    """Make a staged set the data set's files (after its database row is committed)."""
    _publish(staged.fs, staged.staging, staged.final)


def _publish(fs, staging: str, final: str) -> None:
    if fs.exists(_join(staging, _WRITER)):
        fs.rm(_join(staging, _WRITER))
    parent = final.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if _is_local(fs):
        if os.path.exists(final):  # a publish interrupted half-way on a filesystem without rename
            fs.rm(final, recursive=True)
        os.replace(staging, final)
    else:  # object stores have no rename: copy then delete; a rerun finishes an interrupted one
        fs.mv(staging, final, recursive=True)
        if fs.exists(staging):
            fs.rm(staging, recursive=True)


def discard(staged: StagedSet) -> None:
    """Remove a staged set (the import failed)."""
    try:
        if staged.fs.exists(staged.staging):
            staged.fs.rm(staged.staging, recursive=True)
    except OSError:
        pass  # clean_orphans removes it later


# ------------------------------------------------------------------------------------------ reading
def _locate(uri: str) -> tuple[object, str]:
    """(filesystem, folder) of a published set, finishing a publish that a crash interrupted."""
    fs, final = _filesystem(uri)
    head, _, key = final.rpartition("/sets/")
    staging = _join(head, "staging", key)
    try:
        if not fs.exists(final) and fs.exists(staging):
            _publish(fs, staging, final)
        if not fs.exists(final):
            raise EventStoreError(
                f"the event files of this data set are missing at {_shown(uri)}; if the storage location moved, "
                f"set {STORAGE_URL_ENV} or copy the files back")
    except OSError as exc:
        raise EventStoreError(f"the event files at {_shown(uri)} cannot be read ({exc})") from None
    return fs, final


def _files(fs, folder: str, table: str) -> list[str]:
    base = _join(folder, table)
    return sorted(p for p in (fs.find(base) if fs.exists(base) else []) if p.endswith(".parquet"))


def event_files(uri: str, table: str) -> tuple[object, list[str]]:
    """(fsspec filesystem, Parquet file paths) of one table of a set, in day order: for Dask or DuckDB."""
    fs, folder = _locate(uri)
    return fs, _files(fs, folder, table)


def read_table(uri: str, table: str, columns: list[str] | None = None, filter=None) -> pa.Table | None:
    """One table of a set as Arrow (None when it has no rows), in day order, each day's rows in the order
    they were written; ``columns`` reads only those, ``filter`` (a pyarrow expression, e.g. on ``date``)
    prunes whole days. ``user_key`` comes dictionary-encoded; in a set with `USERS_FILE` every chunk
    shares that one sorted dictionary (read from the row codes, no string per row)."""
    return read_tables(uri, {table: columns}, filter)[0]


def read_tables(uri: str, columns: dict[str, list[str] | None], filter=None) -> tuple[pa.Table | None, ...]:
    """`read_table` of each table named in ``columns`` (``{table: columns or None}``), the set's user
    keys read once for all of them."""
    import pyarrow.dataset as ds

    for table in columns:
        if table not in TABLES:
            raise ValueError(f"unknown event table {table!r}")
    fs, folder = _locate(uri)
    users, out = None, []
    try:
        for table, wanted in columns.items():
            files = _files(fs, folder, table)
            if not files:
                out.append(None)
                continue
            fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=_DICTIONARY_COLUMNS))
            dataset = ds.dataset(files, filesystem=fs, format=fmt, partition_base_dir=_join(folder, table),
                                 partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"))
            names = dataset.schema.names
            wanted = [c for c in (wanted or [n for n in names if n != USER_CODE]) if c != "date"]
            coded = "user_key" in wanted and USER_CODE in names and fs.exists(_join(folder, USERS_FILE))
            read = list(dict.fromkeys(USER_CODE if c == "user_key" else c for c in wanted)) if coded else wanted
            result = dataset.to_table(columns=read, filter=filter)
            if coded:
                if users is None:
                    users = _read_users(fs, _join(folder, USERS_FILE))
                keys = pa.chunked_array([pa.DictionaryArray.from_arrays(c, users, safe=True) for c in result[USER_CODE].chunks],
                                        type=pa.dictionary(pa.int32(), users.type))
                result = pa.table([keys if c == "user_key" else result[c] for c in wanted], names=wanted)
            out.append(result)
    except (OSError, pa.ArrowException) as exc:  # a code past the users file: ArrowIndexError
        raise EventStoreError(f"the event files at {_shown(uri)} cannot be read ({exc})") from None
    return tuple(out)


def _read_users(fs, path: str) -> pa.Array:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as fh:
        users = pq.read_table(fh, columns=["user_key"])["user_key"]
    return users.combine_chunks() if users.num_chunks != 1 else users.chunk(0)


def remove(uri: str) -> None:
    """Delete a set's files (its row is already deleted); what fails now `clean_orphans` removes later."""
    try:
        fs, final = _filesystem(uri)
        if fs.exists(final):
            fs.rm(final, recursive=True)
    except (OSError, EventStoreError):
        pass


# ------------------------------------------------------------------------------------------ orphans
def _writer_gone(fs, folder: str, min_age: float) -> bool:
    """True when a staged folder's writer is a dead process of this host, or it is older than ``min_age``."""
    try:
        with fs.open(_join(folder, _WRITER), "r") as fh:
            writer = json.load(fh)
    except (OSError, ValueError):
        writer = None
    if writer and writer.get("host") == socket.gethostname():
        try:
            os.kill(int(writer["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError):
            pass
        else:
            return False  # its writer is still running
    started = float(writer["started"]) if writer and "started" in writer else None
    if started is None:
        try:
            started = fs.modified(folder).timestamp()
        except (OSError, NotImplementedError, AttributeError, ValueError):
            started = 0.0
    return time.time() - started > min_age


def clean_orphans(engine, location: str | None = None, *, min_age: float = ABANDONED_AFTER_S) -> dict:
    """Remove files no data set owns, finish interrupted publishes; returns what was done.

    Folders are listed BEFORE the database is read: a set is published only after its row is committed,
    so a published folder missing from the database really has no data set (it was deleted)."""
    from sqlalchemy import select

    from core.store.models import EventSet

    done = {"published": 0, "removed_staged": 0, "removed_sets": 0}
    location = storage_location(engine, location)
    fs, root = _filesystem(location)
    base = _join(root, instance_id(engine))

    def listing(folder):
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)] if fs.exists(folder) else []
        except (OSError, FileNotFoundError):
            return []

    staged, published = listing(_join(base, "staging")), listing(_join(base, "sets"))
    with engine.connect() as conn:
        known = set(conn.scalars(select(EventSet.key)))
    for key in staged:
        folder = _join(base, "staging", key)
        if key in known:
            _publish(fs, folder, _join(base, "sets", key))
            done["published"] += 1
        elif _writer_gone(fs, folder, min_age):
            fs.rm(folder, recursive=True)
            done["removed_staged"] += 1
    for key in published:
        if key not in known:
            fs.rm(_join(base, "sets", key), recursive=True)
            done["removed_sets"] += 1
    return done


def summary(engine) -> dict:
    """How many event sets this database has, their events and bytes (all workspaces)."""
    from sqlalchemy import func, select

    from core.store.models import EventSet

    with engine.connect() as conn:
        n, events, size = conn.execute(select(func.count(), func.coalesce(func.sum(EventSet.touchpoints + EventSet.conversions), 0),
                                              func.coalesce(func.sum(EventSet.bytes), 0))).one()
    return {"sets": int(n), "events": int(events), "bytes": int(size)}


__all__ = ["summary", "STORAGE_URL_ENV", "TABLES", "USERS_FILE", "USER_CODE", "EventStoreError", "StagedSet", "storage_location",
           "instance_id", "stage", "publish", "discard", "read_table", "read_tables", "sorted_dictionary", "event_files", "remove",
           "clean_orphans"]
