"""Bytes -> a raw table: size limit, gzip, format sniffing (magic bytes, then extension), encoding,
binary detection, CSV dialect and title lines, JSON lines (or a JSON array of objects), Parquet with
nested columns flattened, and Excel workbooks (their first sheet, read as its CSV would be).

Every failure is an `IngestError` naming the file (and the line when one is known).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import IngestError

#: Default largest file (after decompression) that is read, in bytes.
DEFAULT_SIZE_LIMIT = 2 * 1024**3
#: Longest row (so also longest field) of a CSV or JSON lines file, in bytes; enforced while reading.
MAX_ROW_BYTES = 16 * 1024**2
#: Most columns a file may have (checked on the header, before the rows are read).
MAX_COLUMNS = 2_000
#: Text columns of at least this many rows whose values repeat (distinct < half the rows in the first
#: block) are held as categoricals: the parsers then work once per distinct value.
DICTIONARY_MIN_ROWS = 10_000
_CHUNK = 1 << 20
_HEAD = 256 * 1024
_SNIFF_LINES = 60
_DELIMITERS = (",", "\t", ";", "|")
_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (unzip it first; an Excel workbook is read when named .xlsx)",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"\xff\xd8\xff": "a JPEG image",
    b"SQLite format 3": "a SQLite database (use the SQL source instead)",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) or Office document (save it as .xlsx or CSV)",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"\x7fELF": "a program",
}
_HEADER_CURRENCY = re.compile(r"\s*\(([A-Z]{3})\)\s*$")


@dataclass
class RawTable:
    """One input file parsed into columns, before mapping.

    ``frame`` keeps the file's row order; its index is the 0-based data row (header not counted),
    so errors can name the row a person sees. ``first_line`` is the physical line of data row 1 for
    text files whose rows are one line each (None otherwise). ``header_currency`` holds currencies
    written in headers such as ``Amount spent (EUR)`` (the suffix is removed from the column name).
    ``filled_blanks`` counts, per column, blank numbers read as a default (0): the import report says so.
    ``row_codes``, when set, says this table holds the distinct values of a categorical column and
    maps each of its rows back to the file's rows (errors then name the first file row holding it).
    """

    name: str
    frame: pd.DataFrame
    fmt: str  # csv | xlsx | jsonl | parquet | sql | frame
    first_line: int | None = None
    header_currency: dict[str, str] = field(default_factory=dict)
    content_hash: str = ""
    row_codes: "np.ndarray | None" = None
    #: with ``row_codes``: the file's data row (0-based) of the first entry of ``row_codes`` (a block of a streamed file)
    row_offset: int = 0
    #: blanks (and NaN) of number columns read as a default value, by column: reported as warnings
    filled_blanks: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what reading changed, for the import report
    #: choices the parsers made for a whole column from its values (epoch unit, date format, decimal
    #: comma...), by (choice, column): a streamed import checks every block chose alike
    decisions: dict = field(default_factory=dict)

    def where(self, index_label) -> dict:
        """`IngestError` keyword arguments (file, row, line) for a row of ``frame``."""
        i = int(index_label)
        if self.row_codes is not None:
            i = self.row_offset + int(np.flatnonzero(self.row_codes == i)[0])
        return {"file": self.name, "row": i + 1, "line": None if self.first_line is None else self.first_line + i}


def release_unused_memory() -> None:
    """Hand memory freed by a large step back to the system (Arrow's pool, then the C heap), so the
    next step does not stack its peak on top of the last one's garbage. Never fails."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    try:
        pa.default_memory_pool().release_unused()
        global _LIBC
        if _LIBC is None:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(_LIBC, "malloc_trim"):  # glibc only
            _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


_LIBC = None


def read_source(source, name: str | None = None, *, size_limit: int = DEFAULT_SIZE_LIMIT,
                row_limit: int = MAX_ROW_BYTES, column_limit: int = MAX_COLUMNS) -> RawTable:
    """Read a path or ``(name, bytes)`` into a `RawTable`; the format comes from magic bytes, then the extension.

    The input is streamed: gzip is decompressed chunk by chunk and refused as soon as it passes
    ``size_limit``; a CSV or JSON lines row longer than ``row_limit`` bytes is refused when the reader
    reaches it; more than ``column_limit`` columns are refused on the header. Memory therefore stays
    bounded whatever the file holds.
    """
    opened = _Input(source, name, size_limit)
    name = opened.name
    chunks = _decompressed(opened, size_limit)
    head, rest = _head(chunks)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: transcoded to UTF-8 as it streams
        head, rest = _head(_utf16_to_utf8(name, itertools.chain([head], rest)))
    elif head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.strip():
        raise IngestError("is empty", file=name)
    fmt = _sniff(name, head)
    if fmt == "parquet":
        table = _read_parquet(name, head + b"".join(rest), column_limit, row_limit)
    elif fmt == "jsonl":
        table = _read_jsonl(name, _Stream(itertools.chain([head], rest)), column_limit, row_limit)
    elif fmt == "xlsx":
        text = _xlsx_as_csv(name, head + b"".join(rest), size_limit)
        table = _read_csv(name, text, iter(()), column_limit, row_limit, reopen=lambda: iter([text]))
        table.first_line = None  # a sheet's rows are not text lines (errors name the row)
        table.fmt = "xlsx"  # its numbers are the cells' values, not text written in a language
    elif fmt == "jsonarray":
        table = _read_jsonl(name, _Stream(_array_as_lines(name, head + b"".join(rest))), column_limit, row_limit)
        table.first_line = None  # an array's rows are not its lines
    else:
        table = _read_csv(name, head, rest, column_limit, row_limit, reopen=lambda: _reopen(source, name, size_limit))
    table.content_hash = opened.digest()
    if table.frame.shape[0] == 0:
        raise IngestError("has a header but no data rows", file=name)
    release_unused_memory()
    return table


class _Input:
    """The raw bytes of a path or an upload, read in chunks and hashed as they go."""

    def __init__(self, source, name: str | None, size_limit: int):
        self._hash = hashlib.sha256()
        if isinstance(source, (str, Path)):
            path = Path(source)
            self.name = name or path.name
            if not path.exists():
                raise IngestError("file not found", file=str(path))
            if path.is_dir():
                raise IngestError("is a folder, not a file", file=str(path))
            _check_size(self.name, path.stat().st_size, size_limit)
            self._path, self._data = path, None
        else:
            self.name = name or "upload"
            self._path, self._data = None, memoryview(bytes(source) if not isinstance(source, (bytes, bytearray)) else source)
            _check_size(self.name, len(self._data), size_limit)

    def chunks(self):
        if self._path is not None:
            with open(self._path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    self._hash.update(chunk)
                    yield chunk
        else:
            for lo in range(0, len(self._data), _CHUNK):
                chunk = bytes(self._data[lo:lo + _CHUNK])
                self._hash.update(chunk)
                yield chunk

    def digest(self) -> str:
        return self._hash.hexdigest()


def _reopen(source, name, size_limit):
    """The decompressed chunks of the input once more (the forgiving CSV reader's second pass)."""
    opened = _Input(source, name, size_limit)
    head, rest = _head(_decompressed(opened, size_limit))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head, rest = _head(_utf16_to_utf8(opened.name, itertools.chain([head], rest)))
    elif head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return itertools.chain([head], rest)


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise IngestError(f"is {size / 1e6:,.1f} MB, over the size limit of {limit / 1e6:,.1f} MB", file=name)
    if size == 0:
        raise IngestError("is empty (0 bytes)", file=name)


def _decompressed(opened: _Input, limit: int):
    """The input's bytes, gunzipped on the fly when they are gzip (whatever the extension); the running
    decompressed size is checked against ``limit`` after every step, so a bomb stops at the limit."""
    raw = opened.chunks()
    first = next(raw, b"")
    name = opened.name
    if first[:2] != b"\x1f\x8b":
        if name.lower().endswith(".gz"):
            raise IngestError("is named .gz but is not gzip-compressed", file=name)
        yield first
        yield from raw
        return
    total = 0
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in itertools.chain([first], raw):
            while chunk:
                out = decomp.decompress(chunk, _CHUNK)
                chunk = decomp.unconsumed_tail
                if decomp.eof and decomp.unused_data:  # several gzip members one after the other
                    chunk = decomp.unused_data + chunk
                    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                total += len(out)
                if total > limit:
                    raise IngestError(f"decompresses to more than the size limit of {limit / 1e6:,.1f} MB", file=name)
                if out:
                    yield out
        if not decomp.eof and total:
            raise IngestError("is a damaged gzip file (it ends early)", file=name)
    except zlib.error as exc:
        raise IngestError(f"is a damaged gzip file ({exc})", file=name) from None


def _head(chunks) -> tuple[bytes, object]:
    """The first ~256 KB (for sniffing) and the iterator of the rest."""
    parts, size = [], 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= _HEAD:
            break
    return b"".join(parts), chunks


def _utf16_to_utf8(name: str, chunks):
    decoder = codecs.getincrementaldecoder("utf-16")("strict")
    offset = 0
    try:
        for chunk in chunks:
            yield decoder.decode(chunk).encode("utf-8")
            offset += len(chunk)
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"is not valid UTF-16 text (at byte {offset + exc.start}); save it as UTF-8", file=name) from None


class _Stream(io.RawIOBase):
    """A read-once file over an iterator of byte chunks. It counts the physical lines it hands out and,
    with ``max_line``, refuses a line longer than that (for readers that have no row limit of their own)."""

    def __init__(self, chunks, *, max_line: int | None = None, name: str = "", first_line: int = 1):
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.lines = 0
        self.consumed = 0
        self.last = b""
        self._max_line, self._name, self._first_line, self._since_newline = max_line, name, first_line, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            for chunk in self._chunks:
                self._buffer += chunk
            out = bytes(self._buffer)
            self._buffer = bytearray()
        else:
            while len(self._buffer) < size:
                nxt = next(self._chunks, None)
                if nxt is None:
                    break
                self._buffer += nxt
            with memoryview(self._buffer) as view:  # one copy of the block, not two
                out = bytes(view[:size])
            del self._buffer[:size]
        if out:
            if self._max_line is not None:
                self._check_lines(out)
            self.lines += out.count(b"\n")
            self.consumed += len(out)
            self.last = out[-1:]
        return out

    def _check_lines(self, out: bytes) -> None:
        ends = np.flatnonzero(np.frombuffer(out, dtype=np.uint8) == 10)
        if len(ends):
            longest = max(self._since_newline + int(ends[0]), int(np.diff(ends).max()) if len(ends) > 1 else 0)
            self._since_newline = len(out) - int(ends[-1]) - 1
        else:
            self._since_newline += len(out)
            longest = self._since_newline
        if longest > self._max_line:
            raise IngestError(f"has a line longer than {self._max_line / 2**20:g} MiB (near line {self._first_line + self.lines:,}); "
                              "a field that long is not marketing data, and nothing more was read", file=self._name)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _sniff(name: str, data: bytes) -> str:
    """parquet | jsonl | csv from magic bytes and content; the extension only breaks ties."""
    lower = name.lower().removesuffix(".gz")
    if data[:4] == b"PAR1":
        return "parquet"
    if data.startswith(b"PK\x03\x04") and (lower.endswith((".xlsx", ".xlsm")) or b"xl/" in data[:_HEAD]):
        return "xlsx"
    if lower.endswith((".parquet", ".pq")):
        raise IngestError("is named .parquet but is not a Parquet file", file=name)
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise IngestError(f"is {what}, not a CSV, JSON, Parquet or Excel (.xlsx) file", file=name)
    head = data[:8192]
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        if b"\x00" in head:
            raise IngestError("is a binary file (it contains NUL bytes), not a CSV, JSON lines or Parquet file", file=name)
        controls = sum(head.count(bytes([c])) for c in range(0, 32) if c not in (9, 10, 12, 13))
        if len(head) and controls / len(head) > 0.05:
            raise IngestError("is a binary file (control bytes), not a CSV, JSON lines or Parquet file", file=name)
    text_head = _decode(name, head, partial=True).lstrip()
    if not text_head:
        raise IngestError("is empty", file=name)
    if text_head.startswith("{"):
        return "jsonl"
    if text_head.startswith("["):
        return "jsonarray"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        raise IngestError("is named as JSON but its first character is not '{'", file=name)
    return "csv"


def _decode(name: str, data: bytes, *, partial: bool = False) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else is a clear error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    try:
        if partial:
            return data.decode(encoding, errors="strict") if len(data) < 8192 else _decode_prefix(data, encoding)
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1 if encoding != "utf-16" else None
        bad = data[exc.start : exc.start + 1].hex()
        raise IngestError(
            f"is not valid {encoding.upper()} text (byte 0x{bad} at offset {exc.start}); "
            "save it as UTF-8 (or UTF-16 with a byte-order mark)",
            file=name, line=line,
        ) from None


def _decode_prefix(data: bytes, encoding: str) -> str:
    """Decode a prefix that may end mid-character (the rest is checked when the whole file is read)."""
    import codecs

    return codecs.getincrementaldecoder(encoding)("strict").decode(data, final=False)


def _rows_of(lines: list[str], delimiter: str) -> list[list[str]]:
    try:
        return list(csv.reader(lines, delimiter=delimiter))
    except csv.Error:
        return [line.split(delimiter) for line in lines]


def _dialect(lines: list[str]) -> tuple[str, int]:
    """(delimiter, index of the header line): the delimiter whose field count is most consistent,
    the header being the first line with the modal field count (title lines above it are skipped)."""
    lines = [ln for ln in lines if ln.strip()]
    best = None
    for rank, delim in enumerate(_DELIMITERS):
        counts = [len(r) for r in _rows_of(lines, delim)]
        split = [c for c in counts if c >= 2]  # title lines (one field) never make the mode: a title, a date
        if not split:                          # range, a header and one row would tie 2 to 2
            continue
        mode, freq = Counter(split).most_common(1)[0]
        key = (freq / len(counts), mode, -rank)
        if best is None or key > best[0]:
            best = (key, delim, counts.index(mode))
    if best is None:
        return ",", 0
    return best[1], best[2]


@dataclass
class _CsvLayout:
    """Where a CSV's data starts and how it is split: read from its first ~256 KB."""

    names: list[str]  # the header as written (blank names as "Unnamed: i")
    delimiter: str
    header_line: int  # 0-based physical line of the header
    stream: "_Stream"  # the data rows, from the line after the header


def _csv_layout(name: str, head: bytes, rest, column_limit: int) -> _CsvLayout:
    text_head = _decode(name, head, partial=True)
    if not text_head.strip():
        raise IngestError("is empty", file=name)
    # Lines of the head as the byte stream has them (\r\n, \n or \r), with their byte ends.
    window = text_head[:200_000]
    breaks = [m.end() for m in itertools.islice(re.finditer(r"\r\n|\n|\r", window), _SNIFF_LINES)]
    starts = [0, *breaks]
    head_lines = [window[a:b].rstrip("\r\n") for a, b in zip(starts, [*breaks, len(window)])][:_SNIFF_LINES]
    delimiter, header_at = _dialect(head_lines)
    nonblank = [i for i, ln in enumerate(head_lines) if ln.strip()]
    header_line = nonblank[header_at] if nonblank else 0  # physical line index of the header
    header = _rows_of([head_lines[header_line]], delimiter)[0] if header_line < len(head_lines) else []
    if len(header) > column_limit:
        raise IngestError(f"has more than {column_limit:,} columns; export only the columns you need",
                          file=name, line=header_line + 1)
    names = [h if h.strip() else f"Unnamed: {i}" for i, h in enumerate(header)]
    data_start = len(window[: breaks[header_line]].encode("utf-8")) if header_line < len(breaks) else len(head)
    return _CsvLayout(names, delimiter, header_line, _Stream(itertools.chain([head[data_start:]], rest)))


def _read_csv(name: str, head: bytes, rest, column_limit: int, row_limit: int, reopen) -> RawTable:
    layout = _csv_layout(name, head, rest, column_limit)
    stream, header_line, delimiter = layout.stream, layout.header_line, layout.delimiter
    frame = _read_csv_arrow(name, stream, layout.names, delimiter, row_limit, header_line)
    if frame is None:  # pyarrow refused the layout (ragged rows): the forgiving reader, from the start
        return _read_csv_pandas(name, reopen(), header_line, delimiter, row_limit)
    n_lines = stream.lines + (1 if stream.consumed and stream.last != b"\n" else 0)
    first_line = header_line + 2 if n_lines == frame.shape[0] else None
    frame, currencies = _clean_columns(name, frame)
    return RawTable(name, frame, "csv", first_line, currencies)


def _arrow_csv_reader(stream: "_Stream", names: list[str], delimiter: str, block_size: int):
    """pyarrow's streaming CSV parser over ``stream``: every column as text (so ids keep their leading
    zeros), blank cells missing, one record batch per block of ``block_size`` bytes."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    generated = [f"c{i}" for i in range(len(names))]
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=generated, block_size=block_size),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True,
                                          newlines_in_values=True, ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(column_types={g: pa.string() for g in generated},
                                             strings_can_be_null=True, quoted_strings_can_be_null=True,
                                             null_values=[""]),
    )


def _straddle_error(name: str, exc: Exception, row_limit: int, rows: int) -> IngestError | None:
    """The error for a row longer than the reader's block (None for other reader errors)."""
    message = str(exc)
    if "straddl" in message or "block size" in message:
        return IngestError(f"has a row longer than {row_limit / 2**20:g} MiB after data row {rows:,}; a field that "
                           "long is not marketing data, and nothing more was read", file=name)
    return None


class StreamRefused(Exception):
    """The streamed reader cannot read this input the way the whole-file reader would (not a CSV,
    ragged rows, bytes that are not UTF-8): read it whole instead, which says what is wrong."""


class CsvBatches:
    """A CSV read block by block (`open_csv_batches`): the cleaned header, then `frames`, each a
    frame of one block whose index continues the file's data-row numbers (0-based), so errors
    raised on a block name the file's row."""

    def __init__(self, source, name, size_limit: int, row_limit: int, column_limit: int, block_size: int | None):
        self._source, self._size_limit, self.row_limit = source, size_limit, row_limit
        self._opened = _Input(source, name, size_limit)
        self.name = self._opened.name
        chunks = _decompressed(self._opened, size_limit)
        head, rest = _head(chunks)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            head, rest = _head(_utf16_to_utf8(self.name, itertools.chain([head], rest)))
        elif head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        if not head.strip():
            raise IngestError("is empty", file=self.name)
        if _sniff(self.name, head) != "csv":
            raise StreamRefused("not a CSV file")
        self._layout = _csv_layout(self.name, head, rest, column_limit)
        if not self._layout.names:
            raise StreamRefused("no header")
        self.header_line = self._layout.header_line
        empty, self.currencies = _clean_columns(self.name, pd.DataFrame(columns=self._layout.names))
        self.columns = list(empty.columns)
        self.block_size = block_size or row_limit
        self.rows = 0

    def frames(self, group_bytes: int | None = None):
        """Frames of about ``group_bytes`` of text each (default: one per block): text columns
        Arrow-backed ``str``, repeating ones categorical. Blocks are small, as pyarrow reads many
        ahead; they are grouped so each frame is worth its per-frame work."""
        import pyarrow as pa

        layout = self._layout
        pending, size = [], 0
        try:
            reader = _arrow_csv_reader(layout.stream, layout.names, layout.delimiter, self.block_size)
            encode = None
            for batch in reader:
                if encode is None:
                    encode = _repeating_columns(batch)
                pending.append(_encode_batch(batch, encode))
                size += batch.nbytes
                if group_bytes is None or size >= group_bytes:
                    yield self._frame(pending)
                    pending, size = [], 0
        except pa.ArrowException as exc:
            straddle = _straddle_error(self.name, exc, self.row_limit, self.rows + sum(b.num_rows for b in pending))
            if straddle is not None and self.block_size >= self.row_limit:
                raise straddle from None
            raise StreamRefused(str(exc)) from None  # a row longer than a small block is read whole, as are ragged rows
        if pending:
            yield self._frame(pending)
        if self.rows == 0:
            raise IngestError("has a header but no data rows", file=self.name)

    def _frame(self, batches) -> pd.DataFrame:
        import pyarrow as pa

        n = sum(b.num_rows for b in batches)
        frame = pa.Table.from_batches(batches).to_pandas()
        frame.columns = self.columns
        frame.index = pd.RangeIndex(self.rows, self.rows + n)
        self.rows += n
        return frame

    @property
    def consumed(self) -> int:
        """Bytes of data handed to the parser so far."""
        return self._layout.stream.consumed

    def one_line_rows(self) -> bool:
        """After every frame was read: each data row is one physical line (so lines can be named)."""
        stream = self._layout.stream
        return stream.lines + (1 if stream.consumed and stream.last != b"\n" else 0) == self.rows

    def digest(self) -> str:
        return self._opened.digest()

    def first_line(self) -> int | None:
        """The physical line of data row 1 when every row is one line (read once more to know), else None."""
        import pyarrow as pa

        again = CsvBatches(self._source, self.name, self._size_limit, self.row_limit, MAX_COLUMNS, self.block_size)
        layout = again._layout
        try:
            for batch in _arrow_csv_reader(layout.stream, layout.names, layout.delimiter, again.block_size):
                again.rows += batch.num_rows
        except (IngestError, pa.ArrowException):
            return None
        return again.header_line + 2 if again.one_line_rows() else None


def open_csv_batches(source, name: str | None = None, *, size_limit: int = DEFAULT_SIZE_LIMIT, row_limit: int = MAX_ROW_BYTES,
                     column_limit: int = MAX_COLUMNS, block_size: int | None = None) -> CsvBatches:
    """A CSV path or ``(name, bytes)`` to read block by block, with the limits of `read_source`
    (``block_size`` defaults to the row limit, as there). `StreamRefused` when it is not a CSV."""
    if isinstance(source, tuple):
        name, source = source
    return CsvBatches(source, name, size_limit, row_limit, column_limit, block_size)


def _read_csv_arrow(name: str, stream: "_Stream", names: list[str], delimiter: str, row_limit: int,
                    header_line: int) -> pd.DataFrame | None:
    """The fast path: pyarrow's streaming CSV parser, every column as text (so ids keep their leading
    zeros), a row at most ``row_limit`` bytes (one block). None when pyarrow refuses the layout
    (ragged rows, odd quoting...): the slower pandas reader then reads it, or names the wrong line."""
    import pyarrow as pa

    if not names:
        return None
    batches, rows = [], 0
    try:
        reader = _arrow_csv_reader(stream, names, delimiter, row_limit)
        encode = None
        for batch in reader:
            if encode is None:  # decided on the first block: which columns repeat enough to encode
                encode = _repeating_columns(batch)
            batches.append(_encode_batch(batch, encode))
            rows += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        straddle = _straddle_error(name, exc, row_limit, rows)
        if straddle is not None:
            raise straddle from None
        return None  # ragged rows or bytes that are not UTF-8: the forgiving reader names the line
    if not batches:
        return pd.DataFrame({n: pd.Series(dtype="str") for n in names})
    table = pa.Table.from_batches(batches)
    del batches
    frame = table.to_pandas()
    frame.columns = names
    return frame


def _repeating_columns(batch) -> list[bool]:
    """Which text columns to hold dictionary-encoded (categoricals): those whose values repeat (fewer
    distinct values than half the rows of the first block), in files of `DICTIONARY_MIN_ROWS` rows or
    more. They are smaller in memory, and the parsers work once per distinct value."""
    import pyarrow.compute as pc

    if batch.num_rows < DICTIONARY_MIN_ROWS:
        return [False] * batch.num_columns
    sample = batch.slice(0, 200_000)
    return [pc.count_distinct(col).as_py() < sample.num_rows / 2 for col in sample.columns]


def _encode_batch(batch, encode: list[bool]):
    """One block with the repeating columns dictionary-encoded at once, so the file's text is never
    held twice; the blocks' dictionaries are unified when the frame is built."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(encode):
        return batch
    arrays = [pc.dictionary_encode(col) if enc else col for col, enc in zip(batch.columns, encode)]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _read_csv_pandas(name: str, chunks, header_line: int, delimiter: str, row_limit: int) -> RawTable:
    """The slow, forgiving reader (short rows padded), in chunks and with a line-length limit; its
    parser errors carry the line number."""
    stream = _Stream(chunks, max_line=row_limit, name=name)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        parts = []
        reader = pd.read_csv(
            _Utf8Check(stream, decoder, name), sep=delimiter, skiprows=header_line, dtype=str, keep_default_na=False,
            na_values=[""], skip_blank_lines=True, engine="c", quotechar='"', skipinitialspace=False, chunksize=500_000,
        )
        for part in reader:
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    except pd.errors.EmptyDataError:
        raise IngestError("is empty", file=name) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+), saw (\d+)", str(exc))
        if m:
            expected = re.search(r"Expected (\d+) fields", str(exc))
            raise IngestError(
                f"has {m.group(2)} fields where the header has {expected.group(1) if expected else 'fewer'}",
                file=name, line=header_line + int(m.group(1)),
            ) from None
        raise IngestError(f"cannot be read as CSV ({exc})", file=name) from None
    n_lines = stream.lines + (1 if stream.consumed and stream.last != b"\n" else 0)
    first_line = header_line + 2 if n_lines - header_line - 1 == frame.shape[0] else None
    frame, currencies = _clean_columns(name, frame)
    return RawTable(name, frame, "csv", first_line, currencies)


class _Utf8Check(io.RawIOBase):
    """Passes bytes through, checking they are UTF-8; a bad byte is an error naming its line."""

    def __init__(self, stream: "_Stream", decoder, name: str):
        self._stream, self._decoder, self._name, self._offset, self._lines = stream, decoder, name, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            line = self._lines + data.count(b"\n", 0, max(exc.start, 0)) + 1
            bad = data[exc.start: exc.start + 1].hex() if exc.start >= 0 else "??"
            raise IngestError(f"is not valid UTF-8 text (byte 0x{bad} at offset {self._offset + max(exc.start, 0)}); "
                              "save it as UTF-8 (or UTF-16 with a byte-order mark)", file=self._name, line=line) from None
        self._offset += len(data)
        self._lines += data.count(b"\n")
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _clean_columns(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Strip header whitespace, pull currencies out of headers, reject unnamed and duplicate headers,
    also names that differ only in case (``channel`` and ``Channel``): which one is meant is a guess.
    Linear in the number of columns."""
    columns, currencies = [], {}
    for col in frame.columns:
        text = str(col).strip()
        m = _HEADER_CURRENCY.search(text)
        if m:
            text = text[: m.start()].strip()
            currencies[text] = m.group(1)
        columns.append(text)
    if any(not c for c in columns) and columns.count("") > 1:
        raise IngestError("the header repeats an unnamed column", file=name)
    counts: dict[str, int] = {}
    for i, c in enumerate(columns):  # a connector export can repeat a column: keep both, the repeat renamed "name (2)"
        counts[c] = counts.get(c, 0) + 1
        if counts[c] > 1:
            renamed = f"{c} ({counts[c]})"
            while renamed in counts:
                renamed += "'"
            counts[renamed] = 1
            columns[i] = renamed
    seen: dict[str, str] = {}
    for c in columns:
        key = c.casefold()
        if key in seen:
            raise IngestError(f"the header has both {seen[key]!r} and {c!r}: column names that differ only in case are ambiguous; "
                              "rename or remove one", file=name, column=c)
        seen[key] = c
    frame.columns = columns
    return frame, currencies


def _flatten(table):
    """Struct columns become ``parent.child`` columns (BigQuery / Segment nested exports)."""
    import pyarrow as pa

    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def _check_text_lengths(name: str, table, row_limit: int, row_offset: int = 0) -> None:
    """No text value longer than ``row_limit`` bytes (a Parquet or JSON field the row limit did not see)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, column in enumerate(table.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_binary(column.type):
            lengths = pc.binary_length(column)
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > row_limit:
                at = int(pc.index(lengths, longest).as_py())
                raise IngestError(f"holds a value of {longest / 2**20:,.1f} MiB; a field is at most {row_limit / 2**20:g} MiB",
                                  file=name, row=row_offset + at + 1, column=table.schema.field(i).name)


def _xlsx_as_csv(name: str, data: bytes, size_limit: int = DEFAULT_SIZE_LIMIT) -> bytes:
    """The first worksheet of an Excel workbook (Meta Ads Manager's and Google Ads' .xlsx downloads) as
    CSV text, so it is read exactly as their CSV download is (title lines, headers with currencies,
    totals). Cells keep what Excel holds: numbers in their shortest exact form (never a display
    format's rounding), dates as ISO dates, formulas as their cached values."""
    import datetime as dt
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, dt.datetime):
            return v.date().isoformat() if v.time() == dt.time(0) and v.tzinfo is None else v.isoformat()
        if isinstance(v, (dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, float):
            return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
        return str(v)

    try:  # a workbook is a ZIP archive: what it expands to is held to the file limit (no ZIP bomb)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IngestError(f"is a ZIP archive but not a readable Excel workbook ({exc})", file=name) from None
    if expanded > size_limit:
        raise IngestError(f"is an Excel workbook that expands to {expanded:,} bytes, over the {size_limit:,}-byte "
                          "limit; export the table as CSV", file=name)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, zlib.error) as exc:
        raise IngestError(f"is a ZIP archive but not a readable Excel workbook ({exc})", file=name) from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise IngestError("is an Excel workbook without a worksheet", file=name)
        rows = []
        for row in sheet.iter_rows(values_only=True):
            cells = [cell(v) for v in row]
            while cells and cells[-1] == "":
                cells.pop()
            rows.append(cells)
    finally:
        book.close()
    # A sheet's rows all span its used width: title lines keep their one cell (so the header is found
    # below them), table rows are padded back to the table's width.
    width = max((len(r) for r in rows if len(r) >= 2), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for cells in rows:
        writer.writerow(cells + [""] * (width - len(cells)) if len(cells) >= 2 else cells)
    return out.getvalue().encode("utf-8")


#: A JSON array is parsed whole (its rows as Python objects, several times its size): above this, JSON lines.
JSON_ARRAY_LIMIT = 256 * 2**20


def _array_as_lines(name: str, data: bytes):
    """A JSON array of objects (BigQuery's "Save results → JSON", a script's ``json.dump``) as JSON lines,
    so it is read exactly as the newline-delimited export is."""
    import json

    if len(data) > JSON_ARRAY_LIMIT:
        raise IngestError(f"is a JSON array of {len(data):,} bytes; one over {JSON_ARRAY_LIMIT:,} is not read whole: export it "
                          "as newline-delimited JSON (one object per line; BigQuery: NEWLINE_DELIMITED_JSON)", file=name)
    try:
        rows = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise IngestError(f"is not valid JSON{where}: {getattr(exc, 'msg', exc)}", file=name) from None
    del data
    if not rows:
        raise IngestError("is an empty JSON array", file=name)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise IngestError(f"is a JSON array whose element is {type(row).__name__}, not an object (one per row)",
                              file=name, row=i + 1)
    return ((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8") for row in rows)


def _read_jsonl(name: str, stream: "_Stream", column_limit: int, row_limit: int) -> RawTable:
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(stream, read_options=pj.ReadOptions(block_size=row_limit))
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "straddl" in msg or "block size" in msg:
            raise IngestError(f"has a line longer than {row_limit / 2**20:g} MiB; a field that long is not marketing data, "
                              "and nothing more was read", file=name) from None
        m = re.search(r"in row (\d+)", msg)
        reason = re.sub(r"\s*in row \d+", "", msg)
        if m:
            raise IngestError(f"is not valid JSON lines ({reason})", file=name, row=int(m.group(1)) + 1) from None
        raise IngestError(f"is not valid JSON lines ({reason})", file=name) from None
    table = _flatten(table)
    if table.num_columns > column_limit:
        raise IngestError(f"has {table.num_columns:,} fields, more than {column_limit:,}; export only the fields you need", file=name)
    _check_text_lengths(name, table, row_limit)
    frame = table.to_pandas()
    frame, currencies = _clean_columns(name, frame)
    return RawTable(name, frame, "jsonl", 1, currencies)


def _read_parquet(name: str, data: bytes, column_limit: int, row_limit: int) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        if meta.num_columns > column_limit:
            raise IngestError(f"has {meta.num_columns:,} columns, more than {column_limit:,}; export only the columns you need", file=name)
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if expanded > DEFAULT_SIZE_LIMIT:
            raise IngestError(f"expands to {expanded / 1e6:,.1f} MB, over the size limit of {DEFAULT_SIZE_LIMIT / 1e6:,.1f} MB", file=name)
        parts, offset = [], 0
        for i in range(meta.num_row_groups):  # one row group at a time, each checked before the next
            part = pf.read_row_group(i)
            _check_text_lengths(name, _flatten(part), row_limit, offset)
            offset += part.num_rows
            parts.append(part)
        table = pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table()
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"is a damaged Parquet file ({exc})", file=name) from None
    frame = _flatten(table).to_pandas()
    frame, currencies = _clean_columns(name, frame)
    return RawTable(name, frame, "parquet", None, currencies)


def frame_table(name: str, frame: pd.DataFrame, fmt: str = "frame") -> RawTable:
    """Wrap an in-memory frame (a SQL result) so it goes through the same mapping and checks."""
    if frame.shape[0] == 0:
        raise IngestError("returned no rows", file=name)
    frame = frame.reset_index(drop=True)
    frame, currencies = _clean_columns(name, frame.copy())
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes()).hexdigest()
    return RawTable(name, frame, fmt, None, currencies, digest)


__all__ = ["DEFAULT_SIZE_LIMIT", "MAX_ROW_BYTES", "MAX_COLUMNS", "RawTable", "read_source", "frame_table", "release_unused_memory",
           "open_csv_batches", "CsvBatches", "StreamRefused"]
