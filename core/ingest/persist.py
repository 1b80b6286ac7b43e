"""Imports stored whole or not at all, and workspace-filtered loaders that read the canonical frames back.

Event-level rows of journeys data sets are Parquet files under the storage location
(`core.store.event_store`): staged first, then the data set's rows are committed in ONE transaction,
then the files are published; any failure before the commit removes the staged files. Path tables and
daily performance stay rows in the database (bulk Core inserts in the same single transaction). Data sets
stored by earlier versions as touchpoint / conversion rows are still read (`load_events`), and
`move_row_events_to_files` moves them into files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from core.pathtable import PathTable
from core.access import Role, audit_target, guarded, register_self_checked
from core.store.db import transaction
from core.store import event_store
from core.store.models import AttributionRun, Conversion, Dataset, EventSet, PathRow, PerformanceDaily, Touchpoint

from .api import ImportResult, read_files
from .errors import IngestError
from .events import (
    CATEGORICAL_COLUMNS,
    CONVERSION_COLUMNS,
    TOUCH_COLUMNS,
    empty_conversions,
    empty_touchpoints,
    shared_user_categoricals,
    text_categorical,
)
from .performance import KEY_COLUMNS, PERFORMANCE_COLUMNS
from .readers import release_unused_memory

BATCH = 50_000
#: ``Dataset.source`` of a workspace's live data set (events received by the collector, `core.tracking.live`).
LIVE_SOURCE = "tracking"


def _check_lengths(model, frame: pd.DataFrame, what: str) -> None:
    """Text longer than its column would be cut by some databases and refused by others: refuse it here."""
    for col in frame.columns:
        column = model.__table__.c.get(col)
        length = getattr(getattr(column, "type", None), "length", None)
        if length and frame[col].dtype != "float64" and len(frame):
            values = frame[col]
            if isinstance(values.dtype, pd.CategoricalDtype):  # each distinct value once
                values = pd.Series(values.cat.categories, dtype="str")
            lens = values.astype("str").str.len().where(values.notna(), 0)
            if (lens > length).any():
                at = lens.idxmax()
                raise IngestError(f"{what} value {str(values[at])[:40]!r}... is longer than {length} characters", column=col)


def _records(frame: pd.DataFrame, **constants) -> list[dict]:
    df = frame.copy()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = pd.Series(df[col].dt.to_pydatetime(), index=df.index, dtype=object)
    df = df.astype(object).where(df.notna(), None)
    for key, value in constants.items():
        df[key] = value
    return df.to_dict("records")


def _insert(session, model, frame: pd.DataFrame, progress, start: float, span: float, **constants) -> None:
    n = len(frame)
    for lo in range(0, n, BATCH):
        session.execute(insert(model.__table__), _records(frame.iloc[lo : lo + BATCH], **constants))
        progress(start + span * min(n, lo + BATCH) / max(n, 1), f"stored {min(n, lo + BATCH):,} of {n:,} {model.__tablename__}")


@guarded(Role.ANALYST, "data.import", target="{name}")
def save_import(engine, workspace_id: str, name: str, result: ImportResult, *, source: str | None = None,
                progress: Callable[[float, str], None] | None = None, storage: str | None = None,
                actor: str | None = None) -> int:
    """Store an import as a new data set and return its id; nothing is stored on error.

    Journeys go to Parquet files under ``storage`` (default: `event_store.storage_location`), the data
    set's rows to the database in ONE transaction; the files become visible only after the commit.
    """
    progress = progress or (lambda _f, _m: None)
    name = (name or "").strip()
    if not name:
        raise IngestError("a data set needs a name")
    frames = _frames_for(result)
    for model, frame, what in frames:
        _check_lengths(model, frame, what)
    staged = None
    if result.kind == "journeys":
        repeated = result.conversions["conversion_id"].duplicated()
        if repeated.any():
            raise IngestError(f"storing data set {name!r} failed and nothing was saved: conversion id "
                              f"{result.conversions['conversion_id'][repeated].iloc[0]!r} appears twice", column="conversion_id")
        _clean_orphans_quietly(engine, storage)
        try:
            staged = event_store.stage(engine, event_tables(result.touchpoints, result.conversions), storage,
                                       progress=lambda f, m: progress(0.9 * f, m))
        except (OSError, event_store.EventStoreError, pa_errors()) as exc:
            raise IngestError(f"storing data set {name!r} failed and nothing was saved (writing its event files: {exc})") from None
        frames = []
    try:
        with transaction(engine, workspace_id) as session:
            if session.scalar(select(Dataset.id).where(Dataset.workspace_id == workspace_id, Dataset.name == name)) is not None:
                raise IngestError(f"a data set named {name!r} already exists in workspace {workspace_id!r}")
            ds = Dataset(workspace_id=workspace_id, name=name[:300], kind=result.kind,
                         source=source if source is not None else ", ".join(result.files),
                         content_hash=result.content_hash, report=result.report)
            session.add(ds)
            session.flush()
            for i, (model, frame, _what) in enumerate(frames):
                _insert(session, model, frame, progress, i / len(frames), 1 / len(frames), workspace_id=workspace_id, dataset_id=ds.id)
            if staged is not None:
                session.add(EventSet(workspace_id=workspace_id, dataset_id=ds.id, key=staged.key, uri=staged.uri,
                                     touchpoints=staged.rows.get("touchpoints", 0), conversions=staged.rows.get("conversions", 0),
                                     files=staged.files, bytes=staged.bytes))
            dataset_id = int(ds.id)
            audit_target(f"data set #{dataset_id} {name}")
    except BaseException as exc:
        if staged is not None:
            event_store.discard(staged)
        if isinstance(exc, SQLAlchemyError):
            detail = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
            raise IngestError(f"storing data set {name!r} failed and nothing was saved ({type(exc).__name__}: {detail})") from exc
        raise
    if staged is not None:
        try:
            event_store.publish(staged)
        except OSError:
            pass  # committed: the next reader or cleanup finishes the publish from the staged files
    progress(1.0, f"stored data set {name!r}")
    return dataset_id


def pa_errors():
    import pyarrow as pa

    return pa.ArrowException


def _clean_orphans_quietly(engine, storage) -> None:
    """Remove files left by interrupted imports or failed deletions (never fails an import)."""
    try:
        event_store.clean_orphans(engine, storage)
    except Exception:  # noqa: BLE001 - housekeeping only; the import itself reports its own errors
        pass


def event_tables(touchpoints: pd.DataFrame, conversions: pd.DataFrame) -> dict:
    """Canonical frames as the Arrow tables stored in Parquet: repeated text dictionary-encoded, times
    in UTC nanoseconds, conversion values as exact decimals (20 digits, 6 after the point)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def table(frame: pd.DataFrame, columns: list[str], plain_text: set[str]) -> pa.Table:
        arrays = []
        for c in columns:
            values = frame[c]
            if c == "ts":
                arr = pa.array(values.array.asi8 if len(values) else [], type=pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            elif c == "value":
                arr = pa.array(values.to_numpy(dtype="float64").round(6)).cast(pa.decimal128(20, 6))
            elif isinstance(values.dtype, pd.CategoricalDtype):
                arr = pa.DictionaryArray.from_arrays(  # the codes' own width (int8 for a few channels)
                    pa.array(values.cat.codes.to_numpy(), mask=values.isna().to_numpy()),
                    pa.array(values.cat.categories.astype("str").to_numpy(dtype=object), type=pa.string()))
            else:  # Arrow-backed text goes over as it is: no Python object per row
                arr = getattr(values.array, "_pa_array", None)
                if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                    arr = pa.array(values.astype("str").to_numpy(dtype=object, na_value=None), type=pa.large_string())
                if c not in plain_text:
                    arr = pc.dictionary_encode(arr)
                arr = arr.cast(pa.dictionary(pa.int32(), pa.string()) if c not in plain_text else pa.string())
            arrays.append(arr)
        return pa.table([a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a]) for a in arrays], names=columns)

    return {"touchpoints": table(touchpoints, TOUCH_COLUMNS, set()),
            "conversions": table(conversions, CONVERSION_COLUMNS, {"conversion_id"})}


def _frames_for(result: ImportResult) -> list[tuple]:
    if result.kind == "journeys":
        return []  # stored as files
    if result.kind == "paths":
        p = result.paths
        frame = pd.DataFrame({"path": p.path_strings(), "conversions": p.conversions, "value": p.value, "nulls": p.nulls})
        return [(PathRow, frame, "path")]
    if result.kind == "performance":
        perf = result.performance[PERFORMANCE_COLUMNS].copy()
        perf["date"] = pd.Series(perf["date"].dt.date, index=perf.index, dtype=object)
        perf["spend"] = perf["spend"].round(6)
        perf["conversion_value"] = perf["conversion_value"].round(6)
        return [(PerformanceDaily, perf, "performance")]
    raise IngestError(f"unknown import kind {result.kind!r}")


def unique_name(engine, workspace_id: str, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``... whichever is free in the workspace."""
    base = (base or "import").strip()[:280]
    with transaction(engine, workspace_id) as session:
        taken = set(session.scalars(select(Dataset.name).where(Dataset.workspace_id == workspace_id, Dataset.name.like(f"{base}%"))))
    if base not in taken:
        return base
    k = 2
    while f"{base} ({k})" in taken:
        k += 1
    return f"{base} ({k})"


@guarded(Role.ANALYST, "data.import")
def import_files(engine, workspace_id: str, paths, name: str | None = None, *, channel_rules=None,
                 progress=None, actor: str | None = None, **read_kwargs) -> tuple[int, dict]:
    """Read files and store them as one data set; returns ``(dataset_id, report)``.

    The workspace's saved channel rules are used unless ``channel_rules`` is given.
    """
    from . import stream
    from .channels import load_channel_rules

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    wrap = (lambda f, m: progress(0.6 * f, m)) if progress else None
    paths = list(paths)
    result = None
    if stream.wanted(paths):  # large event CSVs block by block, with bounded memory; else (or if refused) whole
        try:
            result = stream.read_files_streamed(paths, channel_rules=rules, progress=wrap, **read_kwargs)
        except stream.StreamRefused:
            release_unused_memory()
    if result is None:
        result = read_files(paths, channel_rules=rules, progress=wrap, **read_kwargs)
    name = name or unique_name(engine, workspace_id, ", ".join(result.files))
    store = (lambda f, m: progress(0.6 + 0.4 * f, m)) if progress else None
    dataset_id = save_import(engine, workspace_id, name, result, progress=store, actor=actor)
    return dataset_id, result.report


# ------------------------------------------------------------------------------------ reading back
def _dataset(engine, workspace_id: str, dataset_id: int, kind: str | None = None) -> Dataset:
    with transaction(engine, workspace_id) as session:
        ds = session.scalar(select(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.id == int(dataset_id)))
        if ds is None:
            raise LookupError(f"data set {dataset_id} does not exist in workspace {workspace_id!r}")
        session.expunge(ds)
    if kind and ds.kind != kind:
        raise IngestError(f"data set {dataset_id} ({ds.name!r}) holds {ds.kind} data, not {kind}")
    return ds


def _read(engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.as_unit("ns")


def _text(frame: pd.DataFrame, cols) -> pd.DataFrame:
    for c in cols:
        frame[c] = frame[c].astype("str").where(frame[c].notna())
    return frame


def _event_set(engine, workspace_id: str, dataset_id: int) -> EventSet | None:
    with transaction(engine, workspace_id) as session:
        found = session.scalar(select(EventSet).where(EventSet.workspace_id == workspace_id, EventSet.dataset_id == int(dataset_id)))
        if found is not None:
            session.expunge(found)
    return found


def stored_events(engine, workspace_id: str, dataset_id: int, columns: dict[str, list[str]] | None = None):
    """``(touchpoints, conversions)`` of a journeys data set as Arrow tables, straight from its Parquet
    files (``columns``: ``{"touchpoints": [...], "conversions": [...]}`` to read only those). Rows come
    in day order, not sorted by user. None for a data set stored as database rows by an older version."""
    _dataset(engine, workspace_id, dataset_id, "journeys")
    found = _event_set(engine, workspace_id, dataset_id)
    if found is None:
        return None
    columns = columns or {}
    try:
        return event_store.read_tables(found.uri, {name: columns.get(name) for name in event_store.TABLES})
    except event_store.EventStoreError as exc:
        raise IngestError(f"data set {dataset_id}: {exc}") from None


def stored_event_files(engine, workspace_id: str, dataset_id: int) -> dict:
    """``{"touchpoints": (filesystem, [files]), "conversions": (...)}``: the Parquet files of a data set,
    for engines that read them themselves (Dask, DuckDB). Partitioned by ``date=YYYY-MM-DD`` folders."""
    _dataset(engine, workspace_id, dataset_id, "journeys")
    found = _event_set(engine, workspace_id, dataset_id)
    if found is None:
        raise IngestError(f"data set {dataset_id} is stored as database rows (an older import); move it to files first")
    return {name: event_store.event_files(found.uri, name) for name in event_store.TABLES}


#: The columns journeys need (channel level): what attribution reads when it needs nothing else.
JOURNEY_COLUMNS = {"touchpoints": ["user_key", "ts", "channel"], "conversions": ["user_key", "ts", "conversion_id", "value"]}


def load_events(engine, workspace_id: str, dataset_id: int, columns: dict[str, list[str]] | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(touchpoints, conversions) of a journeys data set, in the canonical columns, sorted by user and time.

    ``columns`` (e.g. `JOURNEY_COLUMNS`) reads only those columns of the event files: much less to
    read and decode for a large set."""
    ds = _dataset(engine, workspace_id, dataset_id, "journeys")
    if ds.source == LIVE_SOURCE:  # the collector's live data set: its own tables, read through one function
        from core.tracking.live import tracked_frames

        touch, conv = tracked_frames(engine, workspace_id)
        if columns:
            touch, conv = touch[columns.get("touchpoints", list(touch.columns))], conv[columns.get("conversions", list(conv.columns))]
        return touch, conv
    tables = stored_events(engine, workspace_id, dataset_id, columns)
    if tables is None:
        touch, conv = _load_row_events(engine, workspace_id, dataset_id)
        if columns:
            touch, conv = touch[columns.get("touchpoints", TOUCH_COLUMNS)], conv[columns.get("conversions", CONVERSION_COLUMNS)]
        return touch, conv
    touch, conv = frames_from_tables(*tables)
    if columns:  # a table without rows has no files to pick columns from
        touch, conv = touch[columns.get("touchpoints", list(touch.columns))], conv[columns.get("conversions", list(conv.columns))]
    return touch, conv


def frames_from_tables(touch, conv) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored Arrow tables -> the canonical frames of a fresh import (shared sorted user categories,
    channel categorical, other text as ``str``), each sorted by user and time (stable)."""
    import pyarrow as pa

    touch_cols = TOUCH_COLUMNS if touch is None else [c for c in TOUCH_COLUMNS if c in touch.column_names]
    conv_cols = CONVERSION_COLUMNS if conv is None else [c for c in CONVERSION_COLUMNS if c in conv.column_names]
    t_users, c_users = _shared_sorted_categories([None if touch is None else touch["user_key"], None if conv is None else conv["user_key"]])

    def frame(table, users, cols, empty):
        if table is None or table.num_rows == 0:
            return empty()[cols]
        ts = table["ts"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
        if "user_key" in cols:
            order, user_codes = _user_time_order(users.codes, ts)
        else:
            order, user_codes = np.argsort(ts, kind="stable"), None
        out = {}
        for c in cols:
            if c == "user_key":
                out[c] = pd.Categorical.from_codes(user_codes, dtype=users.dtype, validate=False)
            elif c == "ts":
                out[c] = pd.DatetimeIndex(_take(ts, order)).tz_localize("UTC")
            elif c == "value":
                out[c] = _take(table[c].cast(pa.float64()).to_numpy(), order)
            elif c == "channel":  # dictionary codes re-ranked once: no string per row is built
                channel = _shared_sorted_categories([table[c]])[0]
                out[c] = pd.Categorical.from_codes(_take(channel.codes, order), dtype=channel.dtype, validate=False)
            else:
                values = table[c] if order is None else table[c].take(order)
                out[c] = pd.Series(_text_array(values), dtype="str").array
        return pd.DataFrame(out)[cols]

    return (frame(touch, t_users, touch_cols, empty_touchpoints), frame(conv, c_users, conv_cols, empty_conversions))


def _take(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    return values if order is None else values[order]


def _user_time_order(users: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The stable order of the rows by (user code, time), None when they are in it already, and the
    user codes in that order.

    Stored day files hold runs already sorted by (user, time), in day order, so within a user the rows
    are in time order once the runs are merged by user: ONE integer sort of (user, row number) packed
    into int64 does that (no lexsort over time), and a check in one pass confirms it; rows that are not
    (files written otherwise) get the full stable lexsort. Either way the result is the lexsort's."""
    n = users.shape[0]
    users = users.astype(np.int64, copy=False)
    if n == 0:
        return None, users
    step = np.diff(users)
    if (step >= 0).all() and not ((step == 0) & (np.diff(ts) < 0)).any():
        return None, users
    row_bits = max(int(n - 1).bit_length(), 1)
    if int(users.max()).bit_length() + row_bits <= 62:
        key = users << row_bits  # missing users (-1) stay first, as in the lexsort
        key |= np.arange(n, dtype=np.int64)
        key.sort()
        order = key & ((1 << row_bits) - 1)
        key >>= row_bits
        s_ts = ts[order]
        if not ((key[1:] == key[:-1]) & (s_ts[1:] < s_ts[:-1])).any():
            return order, key
    order = np.lexsort((ts, users))
    return order, users[order]


def _text_array(values):
    import pyarrow as pa

    return values.cast(pa.large_string()) if not pa.types.is_large_string(values.type) else values


def _shared_sorted_categories(columns: list) -> list:
    """Text columns (Arrow, possibly dictionary-encoded, possibly None) as pandas Categoricals over ONE
    sorted category index of the values that occur, without a Python object per row."""
    values, codes = event_store.sorted_dictionary(columns)
    dtype = _sorted_categories_dtype(values)
    return [pd.Categorical.from_codes(c, dtype=dtype, validate=False) for c in codes]


def _sorted_categories_dtype(values) -> pd.CategoricalDtype:
    """The categorical dtype over ``values`` (an Arrow string array, strictly increasing: sorted distinct
    values from `sorted_dictionary`), built straight from Arrow. pandas would re-check the categories for
    repeats by hashing every one (seconds for millions of user keys); they are distinct by construction,
    so its fast path is taken where this pandas has it."""
    categories = pd.Index(pd.array(values, dtype="str"))
    fastpath = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    return fastpath(categories, False) if fastpath is not None else pd.CategoricalDtype(categories)


def _load_row_events(engine, workspace_id: str, dataset_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A data set stored as touchpoint / conversion rows by an older version (read with pandas, not the ORM)."""
    t = Touchpoint
    touch = _read(engine, select(*(getattr(t, c) for c in TOUCH_COLUMNS))
                  .where(t.workspace_id == workspace_id, t.dataset_id == int(dataset_id)).order_by(t.user_key, t.ts, t.id))
    c = Conversion
    conv = _read(engine, select(*(getattr(c, k) for k in CONVERSION_COLUMNS))
                 .where(c.workspace_id == workspace_id, c.dataset_id == int(dataset_id)).order_by(c.user_key, c.ts, c.id))
    touch["ts"] = _utc(touch["ts"]) if len(touch) else pd.Series(dtype="datetime64[ns, UTC]")
    conv["ts"] = _utc(conv["ts"]) if len(conv) else pd.Series(dtype="datetime64[ns, UTC]")
    conv["value"] = conv["value"].astype("float64")
    touch = _text(touch, [k for k in TOUCH_COLUMNS if k not in ("ts", *CATEGORICAL_COLUMNS)])
    conv = _text(conv, ["conversion_id", "type", "currency"])
    # The same dtypes as a fresh import: dictionary-encoded user keys shared by both frames, channels.
    touch["user_key"], conv["user_key"] = shared_user_categoricals(touch["user_key"], conv["user_key"])
    touch["channel"] = text_categorical(touch["channel"])
    return touch, conv


def move_row_events_to_files(engine, storage: str | None = None, progress=None, *, actor=None) -> list[int]:
    """Move every journeys data set still stored as database rows (an older version's import) into
    Parquet files, one data set per transaction; returns the ids moved. Safe to rerun. Storage upkeep:
    the actor must be admin of each workspace moved."""
    from core.access import acting
    from core.store.db import list_workspaces

    moved = []
    for ws in list_workspaces(engine):
        with transaction(engine, ws) as session:
            ids = session.scalars(select(Dataset.id).where(Dataset.workspace_id == ws, Dataset.kind == "journeys", Dataset.source != LIVE_SOURCE,
                                                           Dataset.id.not_in(select(EventSet.dataset_id)))).all()
        for ds_id in ids:
            touch, conv = _load_row_events(engine, ws, ds_id)
            staged = event_store.stage(engine, event_tables(touch, conv), storage)
            try:
                with acting(engine, ws, actor, Role.ADMIN, "storage.move-events", target=f"data set #{ds_id}"), \
                        transaction(engine, ws) as session:
                    session.add(EventSet(workspace_id=ws, dataset_id=ds_id, key=staged.key, uri=staged.uri,
                                         touchpoints=len(touch), conversions=len(conv), files=staged.files, bytes=staged.bytes))
                    for model in (Touchpoint, Conversion):
                        session.execute(delete(model).where(model.workspace_id == ws, model.dataset_id == ds_id))
            except BaseException:
                event_store.discard(staged)
                raise
            event_store.publish(staged)
            moved.append(int(ds_id))
            if progress:
                progress(len(moved), f"moved data set {ds_id} ({len(touch) + len(conv):,} events) to files")
    return moved


register_self_checked(move_row_events_to_files, Role.ADMIN, "storage.move-events")


def content_hash(engine, workspace_id: str, dataset_id: int) -> str:
    """What a data set holds, as a hash: fixed at import; for the live tracked data set, and for performance a
    platform sync or the sandbox keeps adding to (no import hash), a fingerprint of what it holds now."""
    ds = _dataset(engine, workspace_id, dataset_id)
    if ds.source == LIVE_SOURCE and ds.kind == "journeys":
        from core.tracking.live import fingerprint

        return fingerprint(engine, workspace_id)
    if ds.kind == "performance" and not ds.content_hash:
        return _performance_fingerprint(engine, workspace_id, dataset_id)
    return ds.content_hash


def _performance_fingerprint(engine, workspace_id: str, dataset_id: int) -> str:
    """Rows, last id and totals of a performance data set: changes when a sync adds days or restates one."""
    p = PerformanceDaily
    with transaction(engine, workspace_id) as session:
        row = session.execute(select(func.count(p.id), func.max(p.id), func.sum(p.spend), func.sum(p.conversion_value),
                                     func.sum(p.conversions), func.sum(p.clicks), func.sum(p.impressions))
                              .where(p.dataset_id == dataset_id)).one()
    return "rows:" + ":".join("" if v is None else str(v) for v in row)


def load_pathtable(engine, workspace_id: str, dataset_id: int) -> PathTable:
    """The PathTable of a path-level data set."""
    _dataset(engine, workspace_id, dataset_id, "paths")
    p = PathRow
    frame = _read(engine, select(p.path, p.conversions.label("total_conversions"), p.value.label("total_conversion_value"),
                                 p.nulls.label("total_null")).where(p.workspace_id == workspace_id, p.dataset_id == int(dataset_id)).order_by(p.id))
    return PathTable.from_frame(frame)


def load_performance(engine, workspace_id: str, dataset_ids=None) -> pd.DataFrame:
    """Daily performance rows of the workspace (all performance data sets, or those given).

    Where data sets overlap (the same entity, day and segment), the row of the newest data set wins.
    """
    p = PerformanceDaily
    cols = [getattr(p, c) for c in PERFORMANCE_COLUMNS]
    stmt = select(p.dataset_id, *cols).where(p.workspace_id == workspace_id)
    if dataset_ids is not None:
        ids = [int(i) for i in dataset_ids]
        if not ids:
            return _empty_perf()
        stmt = stmt.where(p.dataset_id.in_(ids))
    frame = _read(engine, stmt.order_by(p.dataset_id, p.id))
    if frame.empty:
        return _empty_perf()
    frame = frame.drop_duplicates(subset=KEY_COLUMNS, keep="last")
    frame["date"] = pd.to_datetime(frame["date"]).dt.as_unit("ns")
    for c in ("spend", "conversion_value", "conversions"):
        frame[c] = frame[c].astype("float64")
    for c in ("impressions", "clicks"):
        frame[c] = frame[c].astype("int64")
    frame = _text(frame, ["platform", "account_id", "entity_type", "external_id", "entity_name", "currency", "segment_type", "segment_value"])
    return frame.sort_values(["platform", "account_id", "entity_type", "external_id", "date", "segment_type", "segment_value"],
                             ignore_index=True)[PERFORMANCE_COLUMNS]


def _empty_perf() -> pd.DataFrame:
    from .performance import empty_performance

    return empty_performance()


def list_datasets(engine, workspace_id: str, kind: str | None = None) -> pd.DataFrame:
    """The workspace's data sets, newest first: id, name, kind, source, created_at, rows, report."""
    d = Dataset
    stmt = select(d.id, d.name, d.kind, d.source, d.content_hash, d.created_at, d.report).where(d.workspace_id == workspace_id)
    if kind:
        stmt = stmt.where(d.kind == kind)
    with transaction(engine, workspace_id) as session:
        rows = session.execute(stmt.order_by(d.id.desc())).all()
        # performance rows as stored: a synced or simulated set has no import report, and a sync adds rows later
        stored = dict(session.execute(select(PerformanceDaily.dataset_id, func.count())
                                      .group_by(PerformanceDaily.dataset_id)).all())
    frame = pd.DataFrame(rows, columns=["id", "name", "kind", "source", "content_hash", "created_at", "report"])
    frame["rows"] = pd.Series([int(stored.get(i, 0)) if kind == "performance" else int((r or {}).get("rows_kept", 0))
                               for i, kind, r in zip(frame["id"], frame["kind"], frame["report"])], index=frame.index,
                              dtype="int64")
    return frame


@guarded(Role.ANALYST, "data.delete", target="data set #{dataset_id}")
def delete_dataset(engine, workspace_id: str, dataset_id: int, *, actor: str | None = None) -> bool:
    """Delete a data set and everything imported or computed from it; False if it is not in the workspace."""
    with transaction(engine, workspace_id) as session:
        found = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.id == int(dataset_id)))
        if not found:
            return False
        uri = session.scalar(select(EventSet.uri).where(EventSet.workspace_id == workspace_id, EventSet.dataset_id == int(dataset_id)))
        session.execute(delete(EventSet).where(EventSet.workspace_id == workspace_id, EventSet.dataset_id == int(dataset_id)))
        for model in (Touchpoint, Conversion, PathRow, PerformanceDaily, AttributionRun):
            session.execute(delete(model).where(model.workspace_id == workspace_id, model.dataset_id == int(dataset_id)))
        session.execute(delete(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.id == int(dataset_id)))
    if uri:
        event_store.remove(uri)  # after the commit; what fails here clean_orphans removes later
    return True


__all__ = ["save_import", "import_files", "unique_name", "load_events", "content_hash", "load_pathtable", "load_performance",
           "list_datasets", "delete_dataset", "stored_events", "stored_event_files", "frames_from_tables", "event_tables",
           "move_row_events_to_files", "JOURNEY_COLUMNS"]
