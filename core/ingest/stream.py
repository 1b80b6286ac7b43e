"""Streamed import of large event CSVs: memory bounded by one block of the file plus compact columns.

Read whole, a journeys CSV was held several times over (its text, the mapped columns, the sorted
and the sessionized copies): about 8x the file at its peak. Here a file is read block by block
(pyarrow's CSV reader, with the whole-file reader's limits); each block is mapped, validated and
converted by the very code that converts a whole file (`events_from_table`), and its canonical rows
are kept only as compact columns: integer codes into one dictionary per text column (grown as blocks
arrive, ranked once at the end), int64 times, float values. The steps that need every event at once
(duplicates, order and ties, sessions, the report) then run on those codes (`journeys_result`), and
the store writes the day files from them, all inside the import's one commit (`save_import`).

A streamed result must equal the whole file's. Row-by-row steps give it by construction; the few
choices the parsers make from a whole column (epoch unit, yyyymmdd days, date format, decimal comma)
are recorded per block (`RawTable.decisions`) and must agree, in a form that holds for any part of
the column. Mappings with steps that need the whole file at once (event ids, referrers, the GA4,
Segment, Snowplow and orders formats, connector tables) are not streamed. When streaming does not
apply, `StreamRefused` is raised before anything is stored and the whole-file path is taken.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .api import ImportResult, Progress, _combined_hash, _noop, journeys_result, prepare_tables, propose_mappings
from .errors import IngestError
from .events import CONVERSION_COLUMNS, TOUCH_COLUMNS, EventPart, events_from_table
from .mapping import PROFILES, MappingNeeded
from .readers import DEFAULT_SIZE_LIMIT, RawTable, StreamRefused, open_csv_batches, release_unused_memory
from .sessionize import SESSION_COLUMN, TRAFFIC_COLUMN

#: Files (together) at least this large are streamed; smaller ones are read whole (their memory is small anyway).
STREAM_MIN_BYTES = 64 * 2**20
#: Bytes per block the CSV parser reads. pyarrow reads up to 32 blocks ahead, so blocks are small; a
#: row longer than a block (rare: 2 MiB) sends the file to the whole-file reader, whose limit is 16 MiB.
BLOCK_BYTES = 2 * 2**20
#: Bytes of text converted at a time (blocks grouped): large enough that per-group work is small.
GROUP_BYTES = 16 * 2**20
#: Fields of the generic event format whose steps look at every row at once: not streamed.
_WHOLE_FILE_FIELDS = ("event_id", "referrer")
_TRAFFIC_FIELDS = ("channel", "source", "medium", "campaign", "campaign_id", "landing_url")
_TOUCH_TEXT = [c for c in TOUCH_COLUMNS if c not in ("user_key", "ts")] + [SESSION_COLUMN]
_CONV_TEXT = ["conversion_id", "type", "currency"]


def _source_name(source) -> str:
    return source[0] if isinstance(source, tuple) else Path(source).name


def _source_size(source) -> int:
    """Bytes of a path on disk or of an ``(name, bytes)`` upload."""
    return len(source[1]) if isinstance(source, tuple) else Path(source).stat().st_size


def wanted(sources) -> bool:
    """Whether ``sources`` (paths, or ``(name, bytes)`` uploads) are large enough to stream."""
    try:
        return sum(_source_size(s) for s in sources) >= STREAM_MIN_BYTES
    except (OSError, TypeError):
        return False


def preview_tables(sources) -> list[RawTable]:
    """The first block of each CSV in ``sources``: enough to propose and edit a mapping for files too
    large to read whole (the Data page's uploads). `StreamRefused` when a file is not a CSV or needs
    preparing as a whole (GA4 records, connector tables): such files take the whole-file path."""
    tables = []
    for source in sources:
        reader = open_csv_batches(source, block_size=BLOCK_BYTES)
        first = next(reader.frames(BLOCK_BYTES))
        tables.append(RawTable(reader.name, first, "csv", None, dict(reader.currencies)))
    prepared, _notes = prepare_tables(tables)
    if any(p is not t for p, t in zip(prepared, tables)):
        raise StreamRefused("the files need preparing as a whole (GA4 records or connector tables)")
    return tables


class _Coder:
    """Text values of many blocks as integer codes into ONE dictionary, grown as new values arrive, with
    no Python object per row. A block's codes first point into its own distinct values; these are
    looked up in the dictionary in batches (when they are as many as the dictionary holds, or the
    pending rows many), so each lookup's cost is paid back. At the end the dictionary is ranked by
    code point, and the codes become those of sorted categories."""

    #: Rows whose codes may wait (as int32) for a lookup.
    PENDING_ROWS = 2_000_000

    def __init__(self):
        import pyarrow as pa

        self.values = pa.array([], type=pa.large_string())
        self.parts: list[np.ndarray] = []
        self._pending: list[tuple[int, object]] = []  # (part, its distinct values)
        self._pending_values = self._pending_rows = 0
        self._ranked = None  # (rank of each code, the sorted categories), made once the blocks are all in

    def encode(self, values: pd.Series) -> int:
        """Code ``values``; returns the handle of their codes (see `codes`)."""
        indices, dictionary = _dictionary_of(values)
        self.parts.append(indices.astype(np.int32))
        self._pending.append((len(self.parts) - 1, dictionary))
        self._pending_values += len(dictionary)
        self._pending_rows += len(indices)
        if self._pending_values >= len(self.values) or self._pending_rows >= self.PENDING_ROWS:
            self._flush()
        return len(self.parts) - 1

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self._pending:
            return
        encoded = pc.dictionary_encode(pa.concat_arrays([d for _, d in self._pending]))
        distinct = encoded.dictionary
        found = (pc.index_in(distinct, value_set=self.values).fill_null(-1).to_numpy().astype(np.int64)
                 if len(self.values) else np.full(len(distinct), -1, dtype=np.int64))
        new = np.flatnonzero(found < 0)
        if len(new):
            found[new] = len(self.values) + np.arange(len(new))
            self.values = pa.concat_arrays([self.values, distinct.take(pa.array(new))])
        global_of = found[encoded.indices.to_numpy()]
        code_type, offset = _code_type(len(self.values)), 0
        for part, dictionary in self._pending:
            mapping = np.append(global_of[offset:offset + len(dictionary)], -1)  # local -1 (missing) reads the last entry
            offset += len(dictionary)
            self.parts[part] = mapping[self.parts[part]].astype(code_type)
        self._pending, self._pending_values, self._pending_rows = [], 0, 0

    def categorical(self, handles: list[int]) -> pd.Categorical:
        """The codes of ``handles`` (in order) as one categorical over the sorted dictionary; their parts are released."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .persist import _sorted_categories_dtype

        self._flush()
        if self._ranked is None or len(self._ranked[0]) != len(self.values) + 1:  # ranked once for all handles
            order = pc.array_sort_indices(self.values).to_numpy()
            rank = np.empty(len(order) + 1, dtype=_code_type(len(order)))
            rank[order] = np.arange(len(order))
            rank[-1] = -1
            self._ranked = (rank, _sorted_categories_dtype(self.values.take(pa.array(order)).cast(pa.string())))
        rank, dtype = self._ranked
        codes = np.empty(sum(len(self.parts[h]) for h in handles), dtype=rank.dtype)
        at = 0
        for h in handles:
            part, self.parts[h] = self.parts[h], None
            codes[at:at + len(part)] = rank[part]
            at += len(part)
        return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _code_type(n: int):
    return np.int8 if n < 127 else np.int16 if n < 32_767 else np.int32


def _dictionary_of(values: pd.Series):
    """(int64 indices with -1 for missing, Arrow large_string array of the distinct values used)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy().astype(np.int64)
        categories = values.cat.categories
        used = np.bincount(codes[codes >= 0], minlength=len(categories)) > 0
        remap = np.full(len(categories) + 1, -1, dtype=np.int64)
        remap[np.flatnonzero(used)] = np.arange(int(used.sum()))
        return remap[codes], _arrow_text(pd.Series(categories[used])).cast(pa.large_string())
    arr = _arrow_text(values)
    encoded = pc.dictionary_encode(arr)
    return (encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64),
            encoded.dictionary.cast(pa.large_string()))


def _arrow_text(values: pd.Series):
    """Text as one Arrow array: the column's own buffers when it is Arrow-backed, else built once."""
    import pyarrow as pa

    arr = getattr(values.array, "_pa_array", None)
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pa.array(values.astype("str").to_numpy(dtype=object, na_value=None), type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


class _Events:
    """The canonical events of every block so far, as compact columns."""

    def __init__(self):
        self.coders = {c: _Coder() for c in ["user_key", *_TOUCH_TEXT, *_CONV_TEXT]}
        self.touch: dict[str, list] = {c: [] for c in ["user_key", "ts", *_TOUCH_TEXT, TRAFFIC_COLUMN]}
        self.conv: dict[str, list] = {c: [] for c in CONVERSION_COLUMNS}

    def add(self, part: EventPart) -> None:
        for frame, into in ((part.touchpoints, self.touch), (part.conversions, self.conv)):
            if not len(frame):
                continue
            for column, parts in into.items():
                if column == "ts":
                    parts.append(np.asarray(frame["ts"].array.asi8))
                elif column == "value":
                    parts.append(frame["value"].to_numpy(dtype="float64"))
                elif column == TRAFFIC_COLUMN:
                    parts.append(frame[column].to_numpy(dtype=bool) if column in frame.columns else np.ones(len(frame), dtype=bool))
                else:
                    parts.append(self.coders[column].encode(frame[column]))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(touch events with the sessionizing helper columns, conversions), text as categoricals over
        sorted categories, user keys shared by both; the blocks' parts are released as they are read."""
        out = []
        for columns in (self.touch, self.conv):
            data = {}
            for column in list(columns):
                parts = columns.pop(column)
                if column == "ts":
                    ns = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
                    data[column] = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
                elif column in ("value", TRAFFIC_COLUMN):
                    data[column] = np.concatenate(parts) if parts else np.empty(0, dtype="float64" if column == "value" else bool)
                else:
                    data[column] = self.coders[column].categorical(parts)
                del parts
            out.append(pd.DataFrame(data))
        touch, conv = out
        return touch[TOUCH_COLUMNS + [SESSION_COLUMN, TRAFFIC_COLUMN]], conv[CONVERSION_COLUMNS]


_COUNTED = re.compile(r"^(\d[\d,]*)(\D.*)$", re.S)


class _FileSummary:
    """One file's counts and warnings summed over its blocks, as one `EventPart` of the whole file would have them."""

    def __init__(self, name: str):
        self.name = name
        self.part = EventPart(None, None, rows_read=0)
        self.warnings: dict[tuple, list] = {}  # (kind, text) -> [count or None, thousands separator]
        self.event_types: Counter = Counter()
        self.conversions = 0
        self.touches = 0
        self.notes: list[str] = []
        self.decisions: dict = {}

    def add(self, table: RawTable, part: EventPart) -> None:
        self.part.rows_read += part.rows_read
        self.part.ignored += part.ignored
        self.part.duplicate_events += part.duplicate_events
        self.part.interactions_given = part.interactions_given
        self.conversions += len(part.conversions)
        self.touches += len(part.touchpoints)
        self.event_types.update(part.event_types)
        self.notes.extend(table.notes)
        for w in part.warnings:
            head, sep, rest = w.partition(": ")
            if rest.startswith("no conversion events among "):
                continue  # said once for the whole file, from all its event types (`finish`)
            counted = _COUNTED.match(rest) if sep else None
            if counted:
                entry = self.warnings.setdefault(("count", head, counted.group(2)), [0, False])
                entry[0] += int(counted.group(1).replace(",", ""))
                entry[1] |= "," in counted.group(1) or "have no value" in rest
            else:
                self.warnings.setdefault(("text", w), [None, False])
        for key, choice in table.decisions.items():
            if self.decisions.setdefault(key, choice) != choice:
                raise StreamRefused(f"{self.name}: blocks read column {key[1]!r} differently ({self.decisions[key]} / {choice})")
            if key[0] == "date reading" and choice != "ISO 8601":
                raise StreamRefused(f"{self.name}: column {key[1]!r} needs the whole column to choose its date format")
            if key[0] == "epoch unit" and choice not in ("s", "ms", "us", "ns"):
                raise StreamRefused(f"{self.name}: column {key[1]!r} mixes epoch ranges")

    def finish(self, mapping) -> EventPart:
        out = []
        for key, (count, thousands) in self.warnings.items():
            if key[0] == "count":
                out.append(f"{key[1]}: {count:,}{key[2]}" if thousands else f"{key[1]}: {count}{key[2]}")
            else:
                out.append(key[1])
        if mapping.column("event_type") and self.touches and not self.conversions:
            top = [k for k, _ in sorted(self.event_types.items(), key=lambda kv: -kv[1])][:30]
            out.append(f"{self.name}: no conversion events among {', '.join(top[:8])}")
        self.part.warnings = sorted(out, key=_warning_rank)  # the order one pass over the whole file gives
        self.part.event_types = {k: self.event_types[k] for k in sorted(self.event_types, key=lambda k: -self.event_types[k])[:30]}
        self.part.touchpoints = self.part.conversions = None
        return self.part


#: The warnings `events_from_table` gives a generic event file, in the order it gives them.
_WARNING_ORDER = ("no event type or conversion flag column", "event(s) are neither touchpoints nor conversions",
                  "conversion(s) have no conversion id", "no currency column", "conversion(s) have no value",
                  "no conversion events among")


def _warning_rank(warning: str) -> int:
    return next((i for i, text in enumerate(_WARNING_ORDER) if text in warning), len(_WARNING_ORDER))


def _check_streamable(mapping) -> None:
    col = mapping.column
    if mapping.kind != "journeys" or mapping.profile != "events":
        raise StreamRefused(f"{mapping.file}: {PROFILES[mapping.profile].label} files are read whole")
    for name in _WHOLE_FILE_FIELDS:
        if col(name):
            raise StreamRefused(f"{mapping.file}: a mapped {name} column is read whole")
    if not any(col(name) for name in _TRAFFIC_FIELDS):
        raise StreamRefused(f"{mapping.file}: no channel or traffic column")


def read_files_streamed(paths, mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
                        size_limit: int = DEFAULT_SIZE_LIMIT, progress: Progress | None = None,
                        conversion_events=None, default_currency: str = "USD", platform: str | None = None,
                        sessions=None, remembered: dict | None = None) -> ImportResult:
    """`read_files` for event CSVs, block by block: the same `ImportResult` (text columns held as
    categoricals), with memory bounded by a block plus the compact columns. ``paths``: files on disk or
    ``(name, bytes)`` uploads. `StreamRefused` when the files need the whole-file path (raised before
    anything is stored); `IngestError` names file, row, column (and line) as the whole-file path does."""
    progress = progress or _noop
    sources = [s if isinstance(s, tuple) else Path(s) for s in paths]
    if not sources:
        raise StreamRefused("no files")
    names = [_source_name(s) for s in sources]
    if len(set(names)) != len(names):
        raise StreamRefused("two files share a name")
    readers, firsts = [], []
    for source in sources:
        reader = open_csv_batches(source, size_limit=size_limit, block_size=BLOCK_BYTES)
        frames = reader.frames(GROUP_BYTES)
        first = next(frames)  # a file without data rows raises its IngestError here
        readers.append((reader, frames))
        firsts.append(RawTable(reader.name, first, "csv", None, dict(reader.currencies)))
    prepared, notes = prepare_tables(firsts)
    if any(p is not t for p, t in zip(prepared, firsts)):
        raise StreamRefused("the files need preparing as a whole (GA4 records or connector tables)")
    proposals = propose_mappings(firsts, mapping_overrides, remembered)
    if not all(p.complete for p in proposals):
        raise StreamRefused("a mapping is incomplete")
    mappings = {t.name: p.mapping for t, p in zip(firsts, proposals)}
    for m in mappings.values():
        _check_streamable(m)
    events, summaries = _Events(), []
    total = sum(_source_size(s) for s in sources) or 1
    done = 0
    for (reader, frames), first, source in zip(readers, firsts, sources):
        mapping, summary = mappings[reader.name], _FileSummary(reader.name)
        table = first
        while table is not None:
            progress(0.6 * min(1.0, (done + reader.consumed) / total),
                     f"checking and mapping {reader.name} ({reader.rows:,} rows read)")
            try:
                part = events_from_table(table, mapping, channel_rules=channel_rules, timezone=timezone,
                                         conversion_events=conversion_events, default_currency=default_currency)
            except IngestError as exc:
                raise _with_line(exc, reader) from None
            summary.add(table, part)
            events.add(part)
            del part, table
            release_unused_memory()  # the block's text and intermediate columns, before the next block
            frame = next(frames, None)
            table = None if frame is None else RawTable(reader.name, frame, "csv", None, dict(reader.currencies))
        done += _source_size(source)
        summaries.append(summary)
    release_unused_memory()  # the blocks' text and intermediate columns
    files = [r.name for r, _ in readers]
    base = {"kind": "journeys", "format": sorted({PROFILES[m.profile].label for m in mappings.values()}), "files": files,
            "rows_read": int(sum(s.part.rows_read for s in summaries))}
    progress(0.65, "sorting events, dropping duplicates and grouping sessions")
    parts = [s.finish(mappings[s.name]) for s in summaries]
    reading_notes = list(dict.fromkeys(n for s in summaries for n in s.notes))
    # The frames go straight in (no reference kept here), so each whole-data step frees its input.
    result = journeys_result(*events.frames(), parts, base=base, sessions=sessions, clickstream=None,
                             notes=notes + reading_notes, timezone=timezone, progress=progress)
    digests = [r.digest() for r, _ in readers]
    progress(1.0, "done")
    result.mappings, result.files = mappings, files
    result.content_hash = digests[0] if len(digests) == 1 else _combined_hash(digests)
    return result


def read_previewed(sources, preview: list[RawTable], mapping_overrides=None, channel_rules=None, timezone: str = "UTC", *,
                   sessions=None, remembered: dict | None = None, progress: Progress | None = None) -> ImportResult:
    """Files too large to read whole, after `preview_tables` read their first blocks: the mapping is
    proposed on the preview (`MappingNeeded` with its proposals when a role is missing, as the whole-file
    path says it), then the files are read block by block (`read_files_streamed`; `StreamRefused` when
    they need the whole-file path after all)."""
    proposals = propose_mappings(preview, mapping_overrides, remembered)
    if not all(p.complete for p in proposals):
        exc = MappingNeeded(proposals)
        exc.tables = preview
        raise exc
    return read_files_streamed(sources, mapping_overrides, channel_rules, timezone, sessions=sessions,
                               remembered=remembered, progress=progress)


def _with_line(exc: IngestError, reader) -> IngestError:
    """The error with its physical line, as the whole-file reader names it (when every row is one line)."""
    if exc.row is None or exc.line is not None or exc.file != reader.name:
        return exc
    first_line = reader.first_line()
    if first_line is None:
        return exc
    return IngestError(exc.reason, file=exc.file, row=exc.row, column=exc.column, line=first_line + exc.row - 1)


__all__ = ["STREAM_MIN_BYTES", "BLOCK_BYTES", "StreamRefused", "wanted", "preview_tables", "read_previewed", "read_files_streamed"]
