"""Public entry points of ingestion: files, uploads or tables -> `ImportResult` (detected kind,
canonical frames, the mapping used, an import report); `import_files` also stores the result.

The flow is the same for files, uploads and SQL results: read (`read_tables`), prepare the formats
that need it (GA4 records expanded, raw connector tables given their level), map each table's
columns (`core.ingest.mapping`; `MappingNeeded` when a role is still missing, with every file's
proposal for the editor), convert, and for journeys group touch events into sessions
(`core.ingest.sessionize`) before the report is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.pathtable import PathTable, PathTableError

from . import connectors, ga4, parse
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
from .mapping import PROFILES, ColumnMapping, MappingNeeded, MappingProposal, propose_with_overrides
from .performance import combine_performance, describe_levels, performance_from_table
from .readers import DEFAULT_SIZE_LIMIT, RawTable, read_source, release_unused_memory
from .sessionize import SESSION_COLUMN, TRAFFIC_COLUMN, SessionSettings, sessionize

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


def read_tables(sources, *, size_limit: int = DEFAULT_SIZE_LIMIT, progress: Progress | None = None) -> list[RawTable]:
    """Paths, or ``(name, bytes)`` uploads, read into raw tables (the slow step, done once per upload)."""
    progress = progress or _noop
    sources = list(sources)
    if not sources:
        raise IngestError("no files given")
    names = [s[0] if isinstance(s, tuple) else Path(s).name for s in sources]
    if len(set(names)) != len(names):
        raise IngestError(f"two files share a name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    tables = []
    for i, source in enumerate(sources):
        progress(0.5 * i / len(sources), f"reading {names[i]}")
        if isinstance(source, tuple):
            tables.append(read_source(source[1], name=source[0], size_limit=size_limit))
        else:
            tables.append(read_source(Path(source), size_limit=size_limit))
    return tables


def read_files(paths, mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
               size_limit: int = DEFAULT_SIZE_LIMIT, progress: Progress | None = None, **kwargs) -> ImportResult:
    """Read, detect, map, validate and convert files (CSV, CSV.gz, Parquet, JSON lines).

    ``mapping_overrides``: ``{field: column}`` for every file, ``{file name: {field: column}}`` per
    file, or `ColumnMapping` objects (by file name) as edited on the Data page; ``"profile"`` in a
    dict forces a format. Naive timestamps are taken in ``timezone``. Other keywords go to
    `build_result` (``sessions``, ``conversion_events``, ``default_currency``, ``platform``).
    Raises `IngestError` (`MappingNeeded` when a role could not be found).
    """
    paths = [Path(p) for p in paths]
    tables = read_tables(paths, size_limit=size_limit, progress=progress)
    return build_result(tables, mapping_overrides, channel_rules, timezone, progress=progress, **kwargs)


def read_uploaded(files, mapping_overrides=None, channel_rules=None, timezone: str = "UTC", **kwargs) -> ImportResult:
    """`read_files` for in-memory uploads: ``[(name, bytes), ...]`` (Streamlit's UploadedFile.getvalue())."""
    progress = kwargs.pop("progress", None)
    size_limit = kwargs.pop("size_limit", DEFAULT_SIZE_LIMIT)
    tables = read_tables([(n, d) for n, d in files], size_limit=size_limit, progress=progress)
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


_REPEATED = re.compile(r"^(.*) \((\d+)\)'*$")


def prepare_tables(tables: list[RawTable]) -> tuple[list[RawTable], list[str]]:
    """Formats that need work before mapping: GA4 records expanded into ``ga4__*`` columns, raw
    connector stats tables given their level (``conn__*``). Returns the tables and notes."""
    out, notes = [], []
    for t in tables:
        repeated = [c for c in t.frame.columns if _REPEATED.match(str(c)) and _REPEATED.match(str(c)).group(1) in t.frame.columns]
        if repeated:
            notes.append(f"{t.name}: the header repeats column(s) {', '.join(repr(_REPEATED.match(c).group(1)) for c in repeated)}; "
                         f"the repeat is read as {', '.join(map(repr, repeated))}")
        if ga4.looks_like_ga4(t.frame.columns) and not any(str(c).startswith(ga4.PREFIX) for c in t.frame.columns):
            t, more = ga4.expand_ga4(t)
            notes.extend(more)
        else:
            t = connectors.prepare(t)
        out.append(t)
    return out, notes


def propose_mappings(tables: list[RawTable], mapping_overrides=None, remembered: dict | None = None) -> list[MappingProposal]:
    """Every table's mapping proposal (hand-set fields applied; else a mapping remembered for its
    column set; else detection)."""
    names = {t.name for t in tables}
    proposals = []
    for t in tables:
        given = _overrides_for(t, mapping_overrides, names)
        method = "override"
        if not given and remembered and t.name in remembered:
            given, method = remembered[t.name], "remembered"
        proposals.append(propose_with_overrides(t.name, t.frame.columns, given, method))
    return proposals


def build_result(tables: list[RawTable], mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
                 conversion_events=None, default_currency: str = "USD", platform: str | None = None,
                 progress: Progress | None = None, sessions: SessionSettings | None = None,
                 remembered: dict | None = None, prepared: bool = False) -> ImportResult:
    """Map and convert already-read tables (files or a SQL result) into one `ImportResult`.

    ``sessions`` decides how touch events become touches (default: chosen from the data);
    ``remembered`` maps a table name to the overrides remembered for its column set.
    """
    progress = progress or _noop
    names = {t.name for t in tables}
    if len(names) != len(tables):
        raise IngestError("the same file name is given twice")
    notes: list[str] = []
    if not prepared:
        tables, notes = prepare_tables(tables)
    proposals = propose_mappings(tables, mapping_overrides, remembered)
    if not all(p.complete for p in proposals):
        exc = MappingNeeded(proposals)
        exc.tables = tables
        raise exc
    mappings = {t.name: p.mapping for t, p in zip(tables, proposals)}
    dimension = [t for t in tables if mappings[t.name].kind == "dimension"]
    facts = [t for t in tables if mappings[t.name].kind != "dimension"]
    if not facts:
        raise IngestError(f"{', '.join(t.name for t in dimension)}: an entity history table only names the rows of a stats table; "
                          "import it together with the stats table (e.g. facebook_ads.basic_ad with facebook_ads.ad_history)")
    kinds = {mappings[t.name].kind for t in facts}
    if len(kinds) > 1:
        detail = "; ".join(f"{t.name} is {mappings[t.name].kind}" for t in facts)
        raise IngestError(f"the files hold different kinds of data ({detail}); import them separately")
    kind = kinds.pop()
    if dimension and kind != "performance":
        raise IngestError(f"{dimension[0].name} is an ad entity history table; it goes with performance files, not {kind}")
    progress(0.6, f"converting {kind}")
    files = [t.name for t in tables]
    digest = tables[0].content_hash if len(tables) == 1 else _combined_hash(t.content_hash for t in tables)
    base = {"kind": kind, "format": sorted({PROFILES[m.profile].label for m in mappings.values()}), "files": files,
            "rows_read": int(sum(t.frame.shape[0] for t in tables))}
    if kind == "journeys":
        result = _journeys(facts, mappings, base, channel_rules, timezone, conversion_events, default_currency, sessions, notes, progress)
    elif kind == "paths":
        result = _paths(facts, mappings, base, notes)
    else:
        result = _performance(facts, dimension, mappings, base, default_currency, platform, notes)
    for t in tables:  # blank numbers read as 0: an explicit, counted warning, never silent
        for column, n in t.filled_blanks.items():
            result.report.setdefault("warnings", []).append(f"{t.name}: {n:,} blank value(s) in column {column!r} read as 0")
    progress(1.0, "done")
    return replace(result, mappings=mappings, files=files, content_hash=digest)


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


def value_by_currency(conversions: pd.DataFrame) -> dict[str, float]:
    """Conversion value per currency, most first: amounts in different currencies are never added."""
    if conversions is None or conversions.empty:
        return {}
    sums = conversions.groupby(conversions["currency"].astype("str"), sort=True)["value"].sum().sort_values(ascending=False, kind="stable")
    return {str(k): round(float(v), 6) for k, v in sums.items()}


def _reading_notes(tables) -> list[str]:
    """What parsing the tables' columns decided for the user (e.g. an ambiguous date order), once each."""
    return list(dict.fromkeys(n for t in tables for n in t.notes))


def _journeys(tables, mappings, base, rules, timezone, conversion_events, currency, sessions, notes, progress=_noop) -> ImportResult:
    parts: list[EventPart] = []
    for i, t in enumerate(tables):
        progress(0.6 + 0.25 * i / len(tables), f"checking and mapping {t.name} ({t.frame.shape[0]:,} rows)")
        parts.append(events_from_table(t, mappings[t.name], channel_rules=rules, timezone=timezone,
                                       conversion_events=conversion_events, default_currency=currency))
        release_unused_memory()  # the mapping's intermediate columns
    progress(0.85, "sorting events, dropping duplicates and grouping sessions")
    streams = sorted({PROFILES[mappings[t.name].profile].label.split(" ")[0] for t in tables
                      if mappings[t.name].profile in ("ga4", "segment", "snowplow")})
    # The frames go straight in (no reference kept here), so each whole-data step frees its input.
    return journeys_result(*_combined_events(parts), parts, base=base, sessions=sessions,
                           clickstream=" and ".join(streams) or None, notes=notes + _reading_notes(tables),
                           timezone=timezone, progress=progress)


def _combined_events(parts: list[EventPart]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The files' touch events (with the sessionizing helper columns) and conversions, one frame each."""
    extra = [SESSION_COLUMN, TRAFFIC_COLUMN]
    touch_parts = [p.touchpoints for p in parts if len(p.touchpoints)]
    for tp in touch_parts:
        for c in extra:
            if c not in tp.columns:
                tp[c] = pd.Series(pd.NA, index=tp.index, dtype="str") if c == SESSION_COLUMN else True
    touch = pd.concat(touch_parts, ignore_index=True) if touch_parts else empty_touchpoints().assign(
        **{SESSION_COLUMN: pd.Series(dtype="str"), TRAFFIC_COLUMN: pd.Series(dtype=bool)})
    conv = pd.concat([p.conversions for p in parts if len(p.conversions)] or [empty_conversions()], ignore_index=True)
    if len(parts) > 1:  # concatenating files' categoricals gives plain text: encode the union once more
        touch, conv = _shared_categories(touch, conv)
    for p in parts:  # copied into touch and conv
        p.touchpoints = p.conversions = None
    return touch, conv


def journeys_result(touch: pd.DataFrame, conv: pd.DataFrame, parts: list[EventPart], *, base: dict, sessions, clickstream,
                    notes: list[str], timezone: str, progress=_noop) -> ImportResult:
    """The steps that need every event at once, on the events of all files (touch events with the
    sessionizing helper columns): duplicates dropped, rows sorted by user and time (ties by content),
    touch events grouped into sessions, the report written. ``parts`` carry each file's counts and
    warnings (their frames are released here)."""
    extra = [SESSION_COLUMN, TRAFFIC_COLUMN]
    n_touch, n_conv = len(touch), len(conv)
    touch = _sorted_unique(touch[TOUCH_COLUMNS + extra], TOUCH_COLUMNS, _tie_order)
    conv = conv[~conv.duplicated(subset=["conversion_id"])]
    conv = _sorted_unique(conv[CONVERSION_COLUMNS], None)
    dup_touch, dup_conv = n_touch - len(touch), n_conv - len(conv)
    grouped = sessionize(touch, sessions, interactions_given=any(p.interactions_given for p in parts),
                         clickstream=clickstream)
    touch = grouped.touchpoints
    release_unused_memory()  # the unsorted and unsessionized copies
    warnings = notes + [w for p in parts for w in p.warnings]
    if dup_touch:
        warnings.append(f"{dup_touch} duplicate touchpoint(s) dropped")
    if dup_conv:
        warnings.append(f"{dup_conv} duplicate conversion id(s) dropped")
    if len(touch) == 0:
        files = ", ".join(base["files"])
        if len(conv):
            raise IngestError(
                f"{files}: {len(conv):,} conversion(s) but no touchpoints, so every conversion would be credited to "
                "'(no touch)'. Map the column that names the channel or traffic source (channel, source / medium / "
                "campaign, a landing URL or referrer), or import these conversions together with the event file "
                "that holds the touches")
        raise IngestError(f"{files}: no touchpoints and no conversions were found: map the event type, channel or "
                          "conversion columns")
    if len(conv) == 0:
        warnings.append("no conversions: every journey will be a null journey")
    times = [t for frame in (touch, conv) if len(frame) for t in (frame["ts"].min(), frame["ts"].max())]
    users = _distinct_users(touch["user_key"], conv["user_key"])
    value = value_by_currency(conv)
    if len(value) > 1:
        warnings.append(f"conversions are in {len(value)} currencies ({', '.join(value)}): their value is kept per "
                        "currency and never added up")
    report = dict(
        base,
        rows_kept=int(len(touch) + len(conv)),
        duplicate_events_dropped=int(sum(p.duplicate_events for p in parts) + dup_touch),
        duplicate_conversions_dropped=int(dup_conv),
        events_ignored=int(sum(p.ignored for p in parts)),
        orders_left_out=int(sum(p.cancelled for p in parts)),
        order_lines_merged=int(sum(p.lines_merged for p in parts)),
        users=int(users),
        **grouped.report(),
        conversions=int(len(conv)),
        value=value,
        currency=sorted(value),
        channels={str(k): int(v) for k, v in touch["channel"].value_counts().items() if v},
        date_min=min(times).isoformat() if times else None,
        date_max=max(times).isoformat() if times else None,
        timezone_assumed_for_naive=timezone,
        warnings=warnings,
    )
    systems = sorted(set(touch["source_system"].unique()))
    return ImportResult("journeys", {}, report, touchpoints=touch.reset_index(drop=True), conversions=conv,
                        source_system=systems[0] if len(systems) == 1 else "mixed" if systems else "csv")


def _distinct_users(touch_keys: pd.Series, conv_keys: pd.Series) -> int:
    """How many distinct user keys touchpoints and conversions hold together (by code when they share categories)."""
    if (isinstance(touch_keys.dtype, pd.CategoricalDtype) and isinstance(conv_keys.dtype, pd.CategoricalDtype)
            and touch_keys.cat.categories.equals(conv_keys.cat.categories)):
        used = np.zeros(len(touch_keys.cat.categories), dtype=bool)
        for codes in (touch_keys.cat.codes.to_numpy(), conv_keys.cat.codes.to_numpy()):
            used[codes[codes >= 0]] = True
        return int(used.sum())
    return int(pd.concat([touch_keys.astype("object"), conv_keys.astype("object")]).nunique())


def _tie_order(touch: pd.DataFrame) -> list[np.ndarray]:
    """Keys that order touch events sharing user and instant by their content (events naming their
    traffic first, then by channel, source, medium, campaign), so sessions and paths never depend on
    the order of rows in the files."""
    keys = [(~touch[TRAFFIC_COLUMN].fillna(False).astype(bool)).to_numpy().astype(np.int64)]
    for column in ("channel", "source", "medium", "campaign", "campaign_id", SESSION_COLUMN):
        codes, _ = pd.factorize(touch[column].astype("object"), sort=True, use_na_sentinel=True)
        keys.append(codes.astype(np.int64))
    return keys


def _user_rank(keys: pd.Series) -> np.ndarray:
    """Each row's user as its rank among the distinct user keys in code-point order (an integer sort key).
    A categorical is ranked through its categories, so no string is built per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(keys.dtype, pd.CategoricalDtype):
        codes, uniques = keys.cat.codes.to_numpy(), keys.cat.categories
    else:
        codes, uniques = pd.factorize(keys, sort=False)
        uniques = pd.Index(uniques)
    arr = getattr(getattr(uniques, "array", None), "_pa_array", None)
    if arr is None:
        arr = pa.array(np.asarray(uniques.astype("str"), dtype=object), type=pa.large_string())
    rank = np.empty(len(uniques) + 1, dtype=np.int32 if len(uniques) < 2**31 - 1 else np.int64)  # half the memory of int64
    rank[pc.sort_indices(arr).to_numpy()] = np.arange(len(uniques))
    rank[-1] = -1  # a missing key (code -1) sorts first
    return rank[codes]


def _sorted_unique(frame: pd.DataFrame, dedupe_on: list[str] | None, ties=None) -> pd.DataFrame:
    """Rows sorted by (user_key, ts), stable, with exact duplicates over ``dedupe_on`` dropped (the
    first in input order kept), in ONE row gather. ``ties(rows)`` gives sort keys that order the rows
    sharing user and instant (computed for those rows only).

    Users are factorized once and ranked by their key, so the sort is an integer lexsort rather than
    a string sort; duplicates share user and time, so after the sort only runs of equal (user, time)
    need a full-row comparison.
    """
    n = len(frame)
    if n == 0:
        return frame.reset_index(drop=True)
    users = _user_rank(frame["user_key"])
    ts = frame["ts"].array.asi8 if isinstance(frame["ts"].dtype, pd.DatetimeTZDtype) else frame["ts"].to_numpy().view(np.int64)
    order = np.lexsort((ts, users))
    keep = np.ones(n, dtype=bool)
    if n > 1:
        u, t = users[order], ts[order]
        same = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
        tied = np.zeros(n, dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        if ties is not None and tied.any():  # order each run of equal (user, instant) by content
            positions = np.flatnonzero(tied)
            run = np.cumsum(np.r_[True, ~same])[positions]
            keys = ties(frame.iloc[order[positions]])
            within = np.lexsort((*reversed(keys), run))
            order[positions] = order[positions][within]
        del u, t, same, users, ts  # the sort keys, before the rows are gathered
    if dedupe_on is not None and n > 1:
        if tied.any():
            candidates = order[tied]
            dup = frame.iloc[candidates].duplicated(subset=dedupe_on).to_numpy()
            keep[np.flatnonzero(tied)[dup]] = False
    order = order[keep] if not keep.all() else order
    return frame.take(order).reset_index(drop=True)


def _paths(tables, mappings, base, notes) -> ImportResult:
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
    warnings = list(notes)
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
    return ImportResult("paths", {}, report, paths=table, source_system="paths")


def _performance(tables, dimension, mappings, base, currency, platform, notes) -> ImportResult:
    parts = [performance_from_table(t, mappings[t.name], default_currency=currency, platform=platform) for t in tables]
    frame, dups, merged = combine_performance([p.frame for p in parts])
    warnings = list(notes) + _reading_notes(tables) + [w for p in parts for w in p.warnings]
    named = 0
    if dimension:
        entities = pd.concat([connectors.latest_entities(t, mappings[t.name]) for t in dimension], ignore_index=True)
        entities = entities.drop_duplicates("id", keep="last")
        frame, named = connectors.apply_history(frame, entities)
        warnings.append(f"{named} row(s) named and given their campaign / ad set from "
                        f"{', '.join(t.name for t in dimension)}")
        unnamed = frame["entity_type"].isin(["ad", "ad_set", "ad_group"]) & (frame["campaign_id"].fillna("") == "")
        if unnamed.any():
            warnings.append(f"{int(unnamed.sum())} row(s) found no campaign in the history table(s)")
    elif (frame["entity_type"] != "campaign").any() and (frame.loc[frame["entity_type"] != "campaign", "campaign_id"].fillna("") == "").all():
        level = frame.loc[frame["entity_type"] != "campaign", "entity_type"].iloc[0].replace("_", " ")
        warnings.append(f"the {level} rows name no campaign: import the platform's history table with them "
                        "(e.g. facebook_ads.ad_history) so spend can be rolled up to campaigns")
    if dups:
        warnings.append(f"{dups} row(s) repeated identically by another file dropped as duplicates")
    summed = sorted({s for p in parts for s in p.summed_segments})
    if merged:
        how = f"summed over their {' / '.join(summed)} rows into the daily total" if summed else "summed"
        warnings.append(f"{merged} row(s) sharing entity, day and segment were {how}")
    report = dict(
        base, rows_kept=int(len(frame)), total_rows_dropped=int(sum(p.total_rows_dropped for p in parts)),
        duplicates_dropped=int(dups + sum(p.duplicates_dropped for p in parts)), rows_merged=int(merged),
        platforms=sorted(frame["platform"].unique().tolist()),
        entities=int(frame[["platform", "account_id", "entity_type", "external_id"]].drop_duplicates().shape[0]),
        entities_text=describe_levels(frame),
        levels=sorted(frame["entity_type"].unique().tolist()),
        **_money(frame),
        date_min=frame["date"].min().date().isoformat(), date_max=frame["date"].max().date().isoformat(), warnings=warnings,
    )
    return ImportResult("performance", {}, report, performance=frame, source_system="performance")


def _money(frame: pd.DataFrame) -> dict:
    """Spend, conversions and value of each account's highest level only (lower levels split the same
    money again), per currency when the accounts use several."""
    from .performance import top_level_rows

    top = top_level_rows(frame[frame["segment_type"].fillna("") == ""] if (frame["segment_type"].fillna("") == "").any() else frame)
    by = top.groupby(top["currency"].astype("str"), sort=True)
    spend = {str(k): round(float(v), 6) for k, v in by["spend"].sum().items()}
    value = {str(k): round(float(v), 6) for k, v in by["conversion_value"].sum().items()}
    out = {"conversions": round(float(top["conversions"].sum()), 6), "currency": sorted(spend)}
    if len(spend) == 1:
        out.update(spend=next(iter(spend.values())), conversion_value=next(iter(value.values())))
    else:
        out.update(spend=spend, conversion_value=value)
    return out


__all__ = ["ImportResult", "read_tables", "read_files", "read_uploaded", "read_performance", "prepare_tables",
           "propose_mappings", "build_result", "value_by_currency"]
