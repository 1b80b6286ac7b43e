"""Event-level data of journeys data sets as Parquet, partitioned by day, under a storage location.

The location is a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``);
the database keeps the metadata (one `EventSet` row per data set: where its files are, how many rows).
Layout under the location::

    {location}/{instance}/sets/{key}/touchpoints/date=2024-01-31/part-0.parquet
    {location}/{instance}/sets/{key}/conversions/date=2024-01-31/part-0.parquet
    {location}/{instance}/staging/{key}/...        an import being written

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


def _write_days(fs, folder: str, table: pa.Table) -> None:
    """One Parquet file per UTC day (``date=YYYY-MM-DD/part-0.parquet``), rows of a day in their input
    order. Dictionary columns are written as text, which Parquet dictionary-encodes per file with only
    the values that file holds (and which reads back dictionary-encoded, see `_DICTIONARY_COLUMNS`)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if table.num_rows == 0:
        return
    day = pc.cast(pc.cast(table["ts"], pa.timestamp("ns", tz="UTC")), pa.date32()).cast(pa.int32()).to_numpy()
    order = np.argsort(day, kind="stable")
    day = day[order]
    plain = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    starts = np.r_[0, np.flatnonzero(np.diff(day)) + 1]
    ends = np.r_[starts[1:], len(day)]
    for lo, hi in zip(starts, ends):  # one day's rows gathered at a time: the whole table is never copied
        date = np.datetime64(int(day[lo]), "D").astype(str)
        path = _join(folder, f"date={date}")
        fs.makedirs(path, exist_ok=True)
        part = table.take(pa.array(order[lo:hi])).cast(plain)
        with fs.open(_join(path, "part-0.parquet"), "wb") as fh:
            pq.write_table(part, fh, compression="zstd", row_group_size=1 << 20)


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
    prunes whole days."""
    import pyarrow.dataset as ds

    if table not in TABLES:
        raise ValueError(f"unknown event table {table!r}")
    fs, folder = _locate(uri)
    try:
        files = _files(fs, folder, table)
        if not files:
            return None
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=_DICTIONARY_COLUMNS))
        dataset = ds.dataset(files, filesystem=fs, format=fmt, partition_base_dir=_join(folder, table),
                             partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"))
        wanted = [c for c in (columns or dataset.schema.names) if c != "date"]
        return dataset.to_table(columns=wanted, filter=filter)
    except (OSError, pa.ArrowInvalid) as exc:
        raise EventStoreError(f"the event files at {_shown(uri)} cannot be read ({exc})") from None


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


__all__ = ["summary", "STORAGE_URL_ENV", "TABLES", "EventStoreError", "StagedSet", "storage_location", "instance_id", "stage",
           "publish", "discard", "read_table", "event_files", "remove", "clean_orphans"]
