"""Public entry points of ingestion: files or uploads -> `ImportResult` (detected kind, canonical
frames, the mapping used, an import report); `import_files` also stores the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.pathtable import PathTable, PathTableError

from . import parse
from .errors import IngestError
from .events import (
    CONVERSION_COLUMNS,
    TOUCH_COLUMNS,
    EventPart,
    empty_conversions,
    empty_touchpoints,
    events_from_table,
    text_categorical,
)
from .mapping import PROFILES, ColumnMapping, mapping_for
from .performance import combine_performance, performance_from_table
from .readers import DEFAULT_SIZE_LIMIT, RawTable, read_source

Progress = Callable[[float, str], None]


@dataclass
class ImportResult:
    """What an import produced, before (or without) storing it.

    ``kind`` is ``journeys`` (``touchpoints`` + ``conversions``), ``paths`` (``paths``) or
    ``performance`` (``performance``). ``mappings`` holds one `ColumnMapping` per file, ``report``
    the figures the Data page and the command line show (JSON-serializable).
    """

    kind: str
    mappings: dict[str, ColumnMapping]
    report: dict
    touchpoints: pd.DataFrame | None = None
    conversions: pd.DataFrame | None = None
    paths: PathTable | None = None
    performance: pd.DataFrame | None = None
    files: list[str] = field(default_factory=list)
    content_hash: str = ""
    source_system: str = "csv"

    @property
    def mapping(self) -> ColumnMapping:
        """The mapping of the first file (the usual single-file case)."""
        return next(iter(self.mappings.values()))

    def preview(self, n: int = 20) -> pd.DataFrame:
        """The first rows of the main canonical frame."""
        if self.kind == "paths":
            return self.paths.to_frame().head(n)
        if self.kind == "performance":
            return self.performance.head(n)
        return self.touchpoints.head(n) if len(self.touchpoints) else self.conversions.head(n)


def _noop(_f: float, _m: str) -> None:
    return None


def read_files(paths, mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
               conversion_events=None, default_currency: str = "USD", platform: str | None = None,
               size_limit: int = DEFAULT_SIZE_LIMIT, progress: Progress | None = None) -> ImportResult:
    """Read, detect, map, validate and convert files (CSV, CSV.gz, Parquet, JSON lines).

    ``mapping_overrides``: ``{field: column}`` for every file, ``{file name: {field: column}}`` per
    file, or `ColumnMapping` objects (by file name) as edited on the Data page; ``"profile"`` in a
    dict forces a format. Naive timestamps are taken in ``timezone``. Raises `IngestError`.
    """
    progress = progress or _noop
    paths = [Path(p) for p in paths]
    if not paths:
        raise IngestError("no files given")
    tables = []
    for i, path in enumerate(paths):
        progress(0.5 * i / len(paths), f"reading {path.name}")
        tables.append(read_source(path, size_limit=size_limit))
    return build_result(tables, mapping_overrides, channel_rules, timezone, conversion_events=conversion_events,
                        default_currency=default_currency, platform=platform, progress=progress)


def read_uploaded(files, mapping_overrides=None, channel_rules=None, timezone: str = "UTC", **kwargs) -> ImportResult:
    """`read_files` for in-memory uploads: ``[(name, bytes), ...]`` (Streamlit's UploadedFile.getvalue())."""
    progress = kwargs.pop("progress", None) or _noop
    size_limit = kwargs.pop("size_limit", DEFAULT_SIZE_LIMIT)
    files = list(files)
    if not files:
        raise IngestError("no files given")
    names = [n for n, _ in files]
    if len(set(names)) != len(names):
        raise IngestError(f"two uploads share a name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    tables = []
    for i, (name, data) in enumerate(files):
        progress(0.5 * i / len(files), f"reading {name}")
        tables.append(read_source(data, name=name, size_limit=size_limit))
    return build_result(tables, mapping_overrides, channel_rules, timezone, progress=progress, **kwargs)


def read_performance(path, mapping_overrides=None, **kwargs) -> pd.DataFrame:
    """The canonical daily performance frame of one export (Meta, Google Ads, Fivetran, generic)."""
    result = read_files([path], mapping_overrides, **kwargs)
    if result.kind != "performance":
        raise IngestError(f"holds {result.kind} data, not campaign performance", file=Path(path).name)
    return result.performance


def _overrides_for(table: RawTable, overrides, names: set[str]):
    if overrides is None:
        return None
    if isinstance(overrides, ColumnMapping):
        return overrides if overrides.file == table.name or len(names) == 1 else None
    if isinstance(overrides, dict) and overrides and set(overrides) <= names | {"profile"} and any(k in names for k in overrides):
        return overrides.get(table.name)
    return overrides


def build_result(tables: list[RawTable], mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
                 conversion_events=None, default_currency: str = "USD", platform: str | None = None,
                 progress: Progress | None = None) -> ImportResult:
    """Map and convert already-read tables (files or a SQL result) into one `ImportResult`."""
    progress = progress or _noop
    names = {t.name for t in tables}
    if len(names) != len(tables):
        raise IngestError("the same file name is given twice")
    mappings: dict[str, ColumnMapping] = {}
    for t in tables:
        m = mapping_for(t.name, t.frame.columns, _overrides_for(t, mapping_overrides, names))
        missing = m.missing_required()
        if missing:
            raise IngestError(f"missing required column(s) for {PROFILES[m.profile].label}: {', '.join(missing)}", file=t.name, column=missing[0])
        mappings[t.name] = m
    kinds = {m.kind for m in mappings.values()}
    if len(kinds) > 1:
        detail = "; ".join(f"{f} is {m.kind}" for f, m in mappings.items())
        raise IngestError(f"the files hold different kinds of data ({detail}); import them separately")
    kind = kinds.pop()
    progress(0.6, f"converting {kind}")
    files = [t.name for t in tables]
    digest = tables[0].content_hash if len(tables) == 1 else _combined_hash(t.content_hash for t in tables)
    base = {"kind": kind, "format": sorted({PROFILES[m.profile].label for m in mappings.values()}), "files": files,
            "rows_read": int(sum(t.frame.shape[0] for t in tables))}
    if kind == "journeys":
        result = _journeys(tables, mappings, base, channel_rules, timezone, conversion_events, default_currency, progress)
    elif kind == "paths":
        result = _paths(tables, mappings, base)
    else:
        result = _performance(tables, mappings, base, default_currency, platform)
    for t in tables:  # blank numbers read as 0: an explicit, counted warning, never silent
        for column, n in t.filled_blanks.items():
            result.report.setdefault("warnings", []).append(f"{t.name}: {n:,} blank value(s) in column {column!r} read as 0")
    progress(1.0, "done")
    return replace(result, files=files, content_hash=digest)


def _combined_hash(hashes) -> str:
    import hashlib

    return hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()


def _shared_categories(touch: pd.DataFrame, conv: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User keys of touchpoints and conversions as one categorical encoding, channels as another."""
    users = text_categorical(pd.concat([touch["user_key"].astype("object"), conv["user_key"].astype("object")],
                                       ignore_index=True))
    touch = touch.assign(user_key=users.iloc[: len(touch)].set_axis(touch.index),
                         channel=text_categorical(touch["channel"].astype("object")))
    conv = conv.assign(user_key=users.iloc[len(touch):].set_axis(conv.index))
    return touch, conv


def _journeys(tables, mappings, base, rules, timezone, conversion_events, currency, progress=_noop) -> ImportResult:
    parts: list[EventPart] = []
    for i, t in enumerate(tables):
        progress(0.6 + 0.25 * i / len(tables), f"checking and mapping {t.name} ({t.frame.shape[0]:,} rows)")
        parts.append(events_from_table(t, mappings[t.name], channel_rules=rules, timezone=timezone,
                                       conversion_events=conversion_events, default_currency=currency))
    progress(0.85, "sorting events and dropping duplicates")
    touch = pd.concat([p.touchpoints for p in parts if len(p.touchpoints)] or [empty_touchpoints()], ignore_index=True)
    conv = pd.concat([p.conversions for p in parts if len(p.conversions)] or [empty_conversions()], ignore_index=True)
    if len(parts) > 1:  # concatenating files' categoricals gives plain text: encode the union once more
        touch, conv = _shared_categories(touch, conv)
    n_touch, n_conv = len(touch), len(conv)
    touch = _sorted_unique(touch[TOUCH_COLUMNS], TOUCH_COLUMNS)
    conv = conv[~conv.duplicated(subset=["conversion_id"])]
    conv = _sorted_unique(conv[CONVERSION_COLUMNS], None)
    dup_touch, dup_conv = n_touch - len(touch), n_conv - len(conv)
    warnings = [w for p in parts for w in p.warnings]
    if dup_touch:
        warnings.append(f"{dup_touch} duplicate touchpoint(s) dropped")
    if dup_conv:
        warnings.append(f"{dup_conv} duplicate conversion id(s) dropped")
    if len(conv) == 0:
        warnings.append("no conversions: every journey will be a null journey")
    if len(touch) == 0:
        warnings.append("no touchpoints: conversions have no channels to credit")
    times = pd.concat([touch["ts"], conv["ts"]])
    users = pd.concat([touch["user_key"], conv["user_key"]]).nunique()
    report = dict(
        base,
        rows_kept=int(len(touch) + len(conv)),
        duplicate_events_dropped=int(sum(p.duplicate_events for p in parts) + dup_touch),
        duplicate_conversions_dropped=int(dup_conv),
        events_ignored=int(sum(p.ignored for p in parts)),
        users=int(users),
        touchpoints=int(len(touch)),
        conversions=int(len(conv)),
        value=round(float(conv["value"].sum()), 6),
        currency=sorted(conv["currency"].unique().tolist()),
        channels={str(k): int(v) for k, v in touch["channel"].value_counts().items()},
        date_min=times.min().isoformat() if len(times) else None,
        date_max=times.max().isoformat() if len(times) else None,
        timezone_assumed_for_naive=timezone,
        warnings=warnings,
    )
    systems = sorted(set(touch["source_system"].unique()))
    return ImportResult("journeys", mappings, report, touchpoints=touch, conversions=conv,
                        source_system=systems[0] if len(systems) == 1 else "mixed" if systems else "csv")


def _sorted_unique(frame: pd.DataFrame, dedupe_on: list[str] | None) -> pd.DataFrame:
    """Rows sorted by (user_key, ts), stable, with exact duplicates over ``dedupe_on`` dropped (the
    first in input order kept), in ONE row gather.

    Users are factorized once and ranked by their key, so the sort is an integer lexsort rather than
    a string sort; duplicates share user and time, so after the sort only runs of equal (user, time)
    need a full-row comparison.
    """
    n = len(frame)
    if n == 0:
        return frame.reset_index(drop=True)
    codes, uniques = pd.factorize(frame["user_key"], sort=False)
    rank = np.empty(len(uniques), dtype=np.int64)
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.array(np.asarray(pd.Index(uniques).astype("str"), dtype=object), type=pa.large_string()) \
        if not isinstance(getattr(uniques, "dtype", None), pd.StringDtype) or uniques.dtype.storage != "pyarrow" \
        else pa.chunked_array(uniques._pa_array) if hasattr(uniques, "_pa_array") else pa.array(uniques)
    rank[pc.sort_indices(keys).to_numpy()] = np.arange(len(uniques))
    users = rank[codes]
    ts = frame["ts"].array.asi8 if isinstance(frame["ts"].dtype, pd.DatetimeTZDtype) else frame["ts"].to_numpy().view(np.int64)
    order = np.lexsort((ts, users))
    keep = np.ones(n, dtype=bool)
    if dedupe_on is not None and n > 1:
        u, t = users[order], ts[order]
        same = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
        tied = np.zeros(n, dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        if tied.any():
            candidates = order[tied]
            dup = frame.iloc[candidates].duplicated(subset=dedupe_on).to_numpy()
            keep[np.flatnonzero(tied)[dup]] = False
    return frame.take(order[keep]).reset_index(drop=True)


def _paths(tables, mappings, base) -> ImportResult:
    frames = []
    for t in tables:
        col = mappings[t.name].column
        path = parse.text(t, col("path"))
        if path.isna().any():
            raise IngestError("path is empty", column=col("path"), **t.where(path.isna().idxmax()))
        only_separators = path.str.fullmatch(r"[\s>|]*").fillna(False).astype(bool)
        if only_separators.any():
            raise IngestError(f"path {path[only_separators.idxmax()]!r} has no channels", column=col("path"), **t.where(only_separators.idxmax()))
        frames.append(pd.DataFrame({
            "path": path,
            "total_conversions": parse.numbers(t, col("conversions"), empty_as=0.0),
            "total_conversion_value": parse.numbers(t, col("value"), empty_as=0.0) if col("value") else 0.0,
            "total_null": parse.numbers(t, col("nulls"), empty_as=0.0) if col("nulls") else 0.0,
        }))
    frame = pd.concat(frames, ignore_index=True)
    try:
        table = PathTable.from_frame(frame)
    except PathTableError as exc:
        raise IngestError(str(exc), file=", ".join(base["files"])) from None
    warnings = []
    merged = int(len(frame) - table.n_paths)
    if merged:
        warnings.append(f"{merged} duplicate path row(s) summed into their path")
    if table.total_conversions <= 0:
        warnings.append("the path table has no conversions")
    report = dict(
        base, rows_kept=int(table.n_paths), duplicate_paths_merged=merged, paths=int(table.n_paths),
        conversions=round(table.total_conversions, 6), value=round(table.total_value, 6), nulls=round(table.total_nulls, 6),
        channels=list(table.channels), max_path_length=int(table.lengths.max()) if table.n_paths else 0, warnings=warnings,
    )
    return ImportResult("paths", mappings, report, paths=table, source_system="paths")


def _performance(tables, mappings, base, currency, platform) -> ImportResult:
    parts = [performance_from_table(t, mappings[t.name], default_currency=currency, platform=platform) for t in tables]
    frame, dups, merged = combine_performance([p.frame for p in parts])
    warnings = [w for p in parts for w in p.warnings]
    if dups:
        warnings.append(f"{dups} duplicate row(s) dropped")
    if merged:
        warnings.append(f"{merged} row(s) sharing entity, day and segment were summed")
    report = dict(
        base, rows_kept=int(len(frame)), total_rows_dropped=int(sum(p.total_rows_dropped for p in parts)),
        duplicates_dropped=int(dups), rows_merged=int(merged),
        platforms=sorted(frame["platform"].unique().tolist()),
        entities=int(frame[["platform", "account_id", "entity_type", "external_id"]].drop_duplicates().shape[0]),
        spend=round(float(frame["spend"].sum()), 6), conversions=round(float(frame["conversions"].sum()), 6),
        conversion_value=round(float(frame["conversion_value"].sum()), 6),
        currency=sorted(frame["currency"].unique().tolist()),
        date_min=frame["date"].min().date().isoformat(), date_max=frame["date"].max().date().isoformat(), warnings=warnings,
    )
    return ImportResult("performance", mappings, report, performance=frame, source_system="performance")


__all__ = ["ImportResult", "read_files", "read_uploaded", "read_performance", "build_result"]
