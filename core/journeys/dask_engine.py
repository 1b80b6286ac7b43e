"""Dask engine: a folder or glob of Parquet/CSV event files -> PathTable on a Dask cluster.

Rows are shuffled by (cleaned) user key so every user's events land in one partition; each
partition goes through the project's own import rules (`core.ingest.build_result`) and journey
kernel (`core.journeys.memory`), and only its small path counts travel back to be summed. The answer
equals reading the same files in memory and building paths there, except that duplicate conversion
ids are dropped within a user (in memory: across the whole data), and epoch units are read per
partition (in memory: per file set). Memory per worker is bounded by ``memory_limit`` and by the
partition size (``blocksize`` for CSV, row groups for Parquet), not by the data set.

By default a `LocalCluster` of worker processes listens on 127.0.0.1 only, dashboard included;
``scheduler`` connects to a cluster the user runs instead.
"""

from __future__ import annotations

import glob
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.pathtable import PathTable

from .memory import JourneyError, Progress, _lookback_ns, aggregate_paths, _assemble

#: Separates labels inside a path key while counts travel between workers (never in channel names).
_SEP = "\x1f"
_PATH_COLUMNS = {"path": "str", "conversions": "float64", "value": "float64", "nulls": "float64"}
_KEY = "__ms_user__"


@dataclass
class DaskPaths:
    paths: PathTable
    report: dict


def list_event_files(source) -> list[str]:
    """The Parquet/CSV files of a folder, a glob, a file or a list of those, sorted; an error if none."""
    items = source if isinstance(source, (list, tuple)) else [source]
    files: list[str] = []
    for item in items:
        item = str(item)
        if os.path.isdir(item):
            found = [str(p) for p in sorted(Path(item).rglob("*")) if p.is_file() and _kind(str(p))]
        elif any(ch in item for ch in "*?["):
            found = sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f) and _kind(f))
        elif os.path.isfile(item):
            found = [item]
        else:
            raise JourneyError(f"{item}: no such file, folder or pattern")
        files.extend(found)
    if not files:
        raise JourneyError(f"{', '.join(map(str, items))}: no Parquet or CSV files found")
    kinds = {_kind(f) for f in files}
    if None in kinds or len(kinds) > 1:
        raise JourneyError("the files must all be Parquet or all CSV (.csv, .csv.gz)")
    return files


def _kind(path: str) -> str | None:
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    return None


def read_events_frame(files: list[str], blocksize: str | int = "64MB"):
    """The files as one dask DataFrame (text columns stay text, like the import reads them)."""
    import dask.dataframe as dd

    if _kind(files[0]) == "parquet":
        return dd.read_parquet(files)
    compression = "gzip" if files[0].lower().endswith(".gz") else None
    return dd.read_csv(files, dtype="object", blocksize=None if compression else blocksize, compression=compression,
                       keep_default_na=False, na_values=[""])


def _with_user_key(part: pd.DataFrame, user_col: str) -> pd.DataFrame:
    """The shuffle key: the user id as text, trimmed (what the import's text cleaning compares).
    Integer ids are their own key: the import's text of an integer is one-to-one with it, and
    hashing integers moves far less than text."""
    ids = part[user_col]
    if pd.api.types.is_integer_dtype(ids.dtype) and not pd.api.types.is_bool_dtype(ids.dtype):
        return part.assign(**{_KEY: ids.astype("int64")})
    key = ids.astype("string").str.strip()
    return part.assign(**{_KEY: key.fillna("")})


def partition_paths(part: pd.DataFrame, mapping: dict, rules, lookback_days: float, level: str, null_lookback: bool,
                    timezone: str, sessions=None) -> pd.DataFrame:
    """One partition's events -> its path counts (path key, conversions, value, nulls), by the import's
    rules and the memory kernel, plus one row naming how its touches were made (`_touch_row`). Runs on a worker."""
    from core.ingest.api import build_result
    from core.ingest.readers import RawTable

    empty = pd.DataFrame({k: pd.Series(dtype=v) for k, v in _PATH_COLUMNS.items()})
    part = part.drop(columns=[_KEY], errors="ignore")
    if len(part) == 0:
        return empty
    result = build_result([RawTable("partition", part.reset_index(drop=True), "frame")], mapping, rules, timezone, sessions=sessions)
    if result.kind != "journeys":
        raise JourneyError(f"the files hold {result.kind} data, not event-level journeys")
    touch_row = _touch_row(result.report)
    a = _assemble(result.touchpoints, result.conversions, lookback_days, level, None, null_lookback)
    table = aggregate_paths(a.channels, a.offsets, a.codes, a.conversions, a.value, 1.0 - a.conversions)
    names = np.asarray(table.channels, dtype=object)
    keys = [_SEP.join(names[table.codes[s:e]]) for s, e in zip(table.offsets[:-1].tolist(), table.offsets[1:].tolist())]
    counts = pd.DataFrame({"path": pd.array(keys, dtype="str"), "conversions": table.conversions, "value": table.value, "nulls": table.nulls})
    return pd.concat([counts, touch_row], ignore_index=True)


def _touch_row(report: dict) -> pd.DataFrame:
    """A partition's touch choice as one extra row: key ``_SEP + mode + _SEP + rule`` (a path key never
    starts with the separator), touch events / sessions / touches in the number columns, summed like
    paths. Users never straddle partitions, so the sums are the whole data's."""
    from core.ingest.sessionize import decision_rule

    mode = "sessions" if report.get("touches_are") == "one per session" else "events"
    key = _SEP + mode + _SEP + decision_rule(str(report.get("touches_reason", "")))
    return pd.DataFrame({"path": pd.array([key], dtype="str"), "conversions": [float(report.get("touch_events", 0))],
                         "value": [float(report.get("sessions", 0))], "nulls": [float(report.get("touchpoints", 0))]})


def _touch_choice(rows: pd.DataFrame, settings) -> dict:
    """The partitions' touch rows -> the report's touch figures. In auto mode every partition decides
    by `choose_mode` on its own users; when all decided by the same rule the same way, the whole data
    decides so too (each rule compares a ratio of sums, which lies between the partitions' ratios);
    otherwise the answer would depend on the partitioning, and that is refused."""
    kinds = {}
    for key, events, sessions, touches in rows[["path", "conversions", "value", "nulls"]].itertuples(index=False):
        mode, rule = key[1:].split(_SEP)
        if rule == "empty":
            continue
        kinds[(mode, rule)] = (events, sessions, touches)
    totals = [sum(v[i] for v in kinds.values()) for i in range(3)]
    if len(kinds) > 1:
        raise JourneyError("the partitions disagree on whether touches are sessions or every event "
                           f"({', '.join(sorted(f'{m} by {r}' for m, r in kinds))}): choose it (--touches sessions or --touches events)")
    mode, rule = next(iter(kinds), ("events", "empty"))
    return dict(touch_events=int(totals[0]), sessions=int(totals[1]), touchpoints=int(totals[2]),
                touches_are="one per session" if mode == "sessions" else "every event",
                touches_reason="chosen" if settings.mode != "auto" else f"{rule} (decided per partition, all alike)",
                session_timeout_minutes=settings.timeout_minutes)


def local_cluster(n_workers: int = 2, memory_limit: str | int = "2GB", threads_per_worker: int = 1):
    """A `LocalCluster` of worker processes reachable on 127.0.0.1 only (dashboard on a free loopback port)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, host="127.0.0.1",
                        dashboard_address="127.0.0.1:0", memory_limit=memory_limit, silence_logs=40)


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def build_pathtable_dask(source, *, lookback_days: float = 30, level: str = "channel", null_lookback: bool = True,
                         channel_rules=None, mapping_overrides=None, timezone: str = "UTC", scheduler: str | None = None,
                         n_workers: int = 2, memory_limit: str | int = "2GB", npartitions: int | None = None,
                         blocksize: str | int = "64MB", progress: Progress | None = None, sessions=None) -> DaskPaths:
    """Build the PathTable of event files (folder, glob, file or list) on a Dask cluster.

    ``scheduler``: the address of a running cluster (``tcp://host:8786``); otherwise a LocalCluster of
    ``n_workers`` processes with ``memory_limit`` each, on 127.0.0.1, closed afterwards.
    ``npartitions``: partitions after the shuffle by user (default: as many as were read).
    ``sessions`` (`core.ingest.SessionSettings`, default auto): touches per session or every event,
    as the import makes them.
    """
    from core.ingest.sessionize import SessionSettings

    from distributed import Client, as_completed

    from core.ingest.channels import DEFAULT_RULES
    from core.ingest.errors import IngestError
    from core.ingest.mapping import mapping_for

    step = progress or (lambda _f, _m: None)
    _lookback_ns(lookback_days)
    settings = (sessions or SessionSettings()).validated()
    started = time.perf_counter()
    files = list_event_files(source)
    step(0.0, f"reading {len(files)} file(s)")
    ddf = read_events_frame(files, blocksize)
    mapping = mapping_for(Path(files[0]).name, list(ddf.columns), mapping_overrides)
    if mapping.kind != "journeys":
        raise JourneyError(f"the files hold {mapping.kind} data, not event-level journeys")
    missing = mapping.missing_required()
    if missing:
        raise IngestError(f"missing required column(s): {', '.join(missing)}", file=files[0], column=missing[0])
    if mapping.profile not in ("events", "ga4"):
        raise JourneyError(f"the files look like a {mapping.profile} export; its identity stitching needs all events "
                           "at once: use the memory engine")
    fixed = dict(mapping.as_dict(), profile=mapping.profile)
    rules = list(channel_rules) if channel_rules is not None else list(DEFAULT_RULES)
    user_col = mapping.column("user_key")

    cluster = None if scheduler else local_cluster(n_workers, memory_limit)
    client = Client(scheduler or cluster, set_as_default=False)
    meta = pd.DataFrame({k: pd.Series(dtype=v) for k, v in _PATH_COLUMNS.items()})
    try:
        with client.as_current():  # the p2p shuffle finds its client here
            keyed = ddf.map_partitions(_with_user_key, user_col)
            n_out = npartitions or max(ddf.npartitions, n_workers)
            shuffled = keyed.shuffle(on=_KEY, npartitions=n_out)
            counted = shuffled.map_partitions(partition_paths, fixed, rules, lookback_days, level, null_lookback, timezone,
                                              settings, meta=meta)
            parts = counted.to_delayed()
            step(0.02, f"{ddf.npartitions} input partition(s) -> {len(parts)} user partition(s) on "
                       f"{len(client.scheduler_info()['workers'])} worker(s)")
            futures = client.compute(parts)
            totals: pd.DataFrame | None = None
            for done, future in enumerate(as_completed(futures), start=1):
                frame = future.result()
                future.release()
                totals = frame if totals is None else pd.concat([totals, frame], ignore_index=True).groupby("path", sort=False, as_index=False).sum()
                step(0.02 + 0.96 * done / len(parts), f"{done}/{len(parts)} partitions done, {len(totals):,} unique paths so far")
        peaks = client.run(_peak_rss)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    totals = totals if totals is not None else meta
    totals = totals.groupby("path", sort=False, as_index=False).sum()
    marks = totals["path"].str.startswith(_SEP)
    touches = _touch_choice(totals[marks], settings)
    totals = totals[~marks]
    sequences = [p.split(_SEP) for p in totals["path"].tolist()]
    paths = PathTable.from_sequences(sequences, totals["conversions"].to_numpy(), totals["value"].to_numpy(), totals["nulls"].to_numpy())
    step(1.0, f"{paths.n_paths:,} unique paths")
    report = dict(engine="dask", files=len(files), input_partitions=int(ddf.npartitions), user_partitions=len(parts),
                  scheduler=scheduler or "LocalCluster 127.0.0.1", workers=len(peaks), paths=paths.n_paths,
                  conversions=round(paths.total_conversions, 6), value=round(paths.total_value, 6),
                  null_journeys=round(paths.total_nulls, 6), peak_worker_memory_bytes=max(peaks.values()) if peaks else 0,
                  peak_memory_per_worker=dict(peaks), seconds=round(time.perf_counter() - started, 3), **touches)
    return DaskPaths(paths, report)


__all__ = ["DaskPaths", "build_pathtable_dask", "list_event_files", "local_cluster", "partition_paths", "read_events_frame"]
