"""Imports in the database: one transaction per import (bulk Core inserts, whole or nothing), and
workspace-filtered loaders that read the canonical frames back with pandas."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from core.pathtable import PathTable
from core.access import Role, audit_target, guarded
from core.store.db import transaction
from core.store.models import AttributionRun, Conversion, Dataset, PathRow, PerformanceDaily, Touchpoint

from .api import ImportResult, read_files
from .errors import IngestError
from .events import CATEGORICAL_COLUMNS, CONVERSION_COLUMNS, TOUCH_COLUMNS, shared_user_categoricals, text_categorical
from .performance import KEY_COLUMNS, PERFORMANCE_COLUMNS

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
                progress: Callable[[float, str], None] | None = None, actor: str | None = None) -> int:
    """Store an import as a new data set in ONE transaction and return its id; nothing is stored on error."""
    progress = progress or (lambda _f, _m: None)
    name = (name or "").strip()
    if not name:
        raise IngestError("a data set needs a name")
    frames = _frames_for(result)
    for model, frame, what in frames:
        _check_lengths(model, frame, what)
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
            dataset_id = int(ds.id)
            audit_target(f"data set #{dataset_id} {name}")
        progress(1.0, f"stored data set {name!r}")
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        raise IngestError(f"storing data set {name!r} failed and nothing was saved ({type(exc).__name__}: {detail})") from exc
    return dataset_id


def _frames_for(result: ImportResult) -> list[tuple]:
    if result.kind == "journeys":
        conv = result.conversions[CONVERSION_COLUMNS].copy()
        return [(Touchpoint, result.touchpoints[TOUCH_COLUMNS], "touchpoint"), (Conversion, conv, "conversion")]
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
    from .channels import load_channel_rules

    rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
    wrap = (lambda f, m: progress(0.6 * f, m)) if progress else None
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


def load_events(engine, workspace_id: str, dataset_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(touchpoints, conversions) of a journeys data set, in the canonical columns, sorted by user and time."""
    ds = _dataset(engine, workspace_id, dataset_id, "journeys")
    if ds.source == LIVE_SOURCE:  # the collector's live data set: its own tables, read through one function
        from core.tracking.live import tracked_frames

        return tracked_frames(engine, workspace_id)
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


def content_hash(engine, workspace_id: str, dataset_id: int) -> str:
    """What a data set holds, as a hash: fixed at import; for the live tracked data set, its current fingerprint."""
    ds = _dataset(engine, workspace_id, dataset_id)
    if ds.source == LIVE_SOURCE and ds.kind == "journeys":
        from core.tracking.live import fingerprint

        return fingerprint(engine, workspace_id)
    return ds.content_hash


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
    frame = pd.DataFrame(rows, columns=["id", "name", "kind", "source", "content_hash", "created_at", "report"])
    frame["rows"] = [int((r or {}).get("rows_kept", 0)) for r in frame["report"]] if len(frame) else pd.Series(dtype="int64")
    return frame


@guarded(Role.ANALYST, "data.delete", target="data set #{dataset_id}")
def delete_dataset(engine, workspace_id: str, dataset_id: int, *, actor: str | None = None) -> bool:
    """Delete a data set and everything imported or computed from it; False if it is not in the workspace."""
    with transaction(engine, workspace_id) as session:
        found = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.id == int(dataset_id)))
        if not found:
            return False
        for model in (Touchpoint, Conversion, PathRow, PerformanceDaily, AttributionRun):
            session.execute(delete(model).where(model.workspace_id == workspace_id, model.dataset_id == int(dataset_id)))
        session.execute(delete(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.id == int(dataset_id)))
    return True


__all__ = ["save_import", "import_files", "unique_name", "load_events", "content_hash", "load_pathtable", "load_performance",
           "list_datasets", "delete_dataset"]
