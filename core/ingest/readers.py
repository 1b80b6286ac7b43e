"""Bytes -> a raw table: size limit, gzip, format sniffing (magic bytes, then extension), encoding,
binary detection, CSV dialect and title lines, JSON lines and Parquet with nested columns flattened.

Every failure is an `IngestError` naming the file (and the line when one is known).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import IngestError

#: Default largest file (after decompression) that is read, in bytes.
DEFAULT_SIZE_LIMIT = 2 * 1024**3
_SNIFF_LINES = 60
_DELIMITERS = (",", "\t", ";", "|")
_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or Excel workbook (export it as CSV)",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"\xff\xd8\xff": "a JPEG image",
    b"SQLite format 3": "a SQLite database (use the SQL source instead)",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document (export it as CSV)",
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
    """

    name: str
    frame: pd.DataFrame
    fmt: str  # csv | jsonl | parquet | sql | frame
    first_line: int | None = None
    header_currency: dict[str, str] = field(default_factory=dict)
    content_hash: str = ""
    notes: list[str] = field(default_factory=list)  # what reading changed, for the import report

    def where(self, index_label) -> dict:
        """`IngestError` keyword arguments (file, row, line) for a row of ``frame``."""
        i = int(index_label)
        return {"file": self.name, "row": i + 1, "line": None if self.first_line is None else self.first_line + i}


def read_source(source, name: str | None = None, *, size_limit: int = DEFAULT_SIZE_LIMIT) -> RawTable:
    """Read a path or ``(name, bytes)`` into a `RawTable`; the format comes from magic bytes, then the extension."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        if not path.exists():
            raise IngestError("file not found", file=str(path))
        if path.is_dir():
            raise IngestError("is a folder, not a file", file=str(path))
        size = path.stat().st_size
        _check_size(name, size, size_limit)
        data = path.read_bytes()
    else:
        data = bytes(source)
        name = name or "upload"
        _check_size(name, len(data), size_limit)
    digest = hashlib.sha256(data).hexdigest()
    data = _decompress(name, data, size_limit)
    fmt = _sniff(name, data)
    if fmt == "parquet":
        table = _read_parquet(name, data)
    elif fmt == "jsonl":
        table = _read_jsonl(name, data)
    else:
        table = _read_csv(name, data)
    table.content_hash = digest
    if table.frame.shape[0] == 0:
        raise IngestError("has a header but no data rows", file=name)
    return table


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise IngestError(f"is {size / 1e6:,.1f} MB, over the size limit of {limit / 1e6:,.1f} MB", file=name)
    if size == 0:
        raise IngestError("is empty (0 bytes)", file=name)


def _decompress(name: str, data: bytes, limit: int) -> bytes:
    """Gunzip if the bytes are gzip (whatever the extension); the decompressed size is limited too."""
    if data[:2] != b"\x1f\x8b":
        if name.lower().endswith(".gz"):
            raise IngestError("is named .gz but is not gzip-compressed", file=name)
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"is a damaged gzip file ({exc})", file=name) from None
    if len(out) > limit:
        raise IngestError(f"decompresses to more than the size limit of {limit / 1e6:,.1f} MB", file=name)
    if not out.strip():
        raise IngestError("is empty", file=name)
    return out


def _sniff(name: str, data: bytes) -> str:
    """parquet | jsonl | csv from magic bytes and content; the extension only breaks ties."""
    lower = name.lower().removesuffix(".gz")
    if data[:4] == b"PAR1":
        return "parquet"
    if lower.endswith((".parquet", ".pq")):
        raise IngestError("is named .parquet but is not a Parquet file", file=name)
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise IngestError(f"is {what}, not a CSV, JSON lines or Parquet file", file=name)
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
        raise IngestError("is a JSON array; give JSON lines (one object per line)", file=name)
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
        if not counts:
            continue
        mode, freq = Counter(counts).most_common(1)[0]
        if mode < 2:
            continue
        key = (freq / len(counts), mode, -rank)
        if best is None or key > best[0]:
            best = (key, delim, counts.index(mode))
    if best is None:
        return ",", 0
    return best[1], best[2]


def _read_csv(name: str, data: bytes) -> RawTable:
    text = _decode(name, data)
    if not text.strip():
        raise IngestError("is empty", file=name)
    head_lines = text[:200_000].splitlines()[:_SNIFF_LINES]
    delimiter, header_at = _dialect(head_lines)
    # Physical line index of the header (blank lines above it count as lines).
    nonblank = [i for i, ln in enumerate(head_lines) if ln.strip()]
    header_line = nonblank[header_at] if nonblank else 0
    frame = _read_csv_arrow(data, text, head_lines, header_line, delimiter)
    if frame is not None:
        return _finish_csv(name, frame, text, header_line)
    return _read_csv_pandas(name, text, header_line, delimiter)


def _read_csv_arrow(data: bytes, text: str, head_lines: list[str], header_line: int, delimiter: str) -> pd.DataFrame | None:
    """The fast path: pyarrow's multi-threaded CSV parser, every column as text (``str`` dtype, so ids
    keep their leading zeros). None when pyarrow refuses the file (ragged rows, odd quoting...): the
    slower pandas reader then reads it, or names the line that is wrong."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if header_line >= len(head_lines):
        return None
    header = _rows_of([head_lines[header_line]], delimiter)
    if len(header) != 1 or not header[0]:
        return None
    names = [h if h.strip() else f"Unnamed: {i}" for i, h in enumerate(header[0])]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = text.encode("utf-8")
    if header_line:
        offset = sum(len(ln) for ln in text.splitlines(keepends=True)[:header_line])
        data = text[offset:].encode("utf-8")
    generated = [f"c{i}" for i in range(len(names))]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=generated, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True,
                                              newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types={g: pa.large_string() for g in generated},
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True,
                                                 null_values=[""]),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    frame = table.to_pandas()
    frame.columns = names
    return frame


def _finish_csv(name: str, frame: pd.DataFrame, text: str, header_line: int) -> RawTable:
    frame, currencies = _clean_columns(name, frame)
    # Rows are one line each unless there are blank lines or quoted line breaks: then give rows only.
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    first_line = header_line + 2 if n_lines - header_line - 1 == frame.shape[0] else None
    return RawTable(name, frame, "csv", first_line, currencies)


def _read_csv_pandas(name: str, text: str, header_line: int, delimiter: str) -> RawTable:
    """The slow, forgiving reader (short rows padded); its parser errors carry the line number."""
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, skiprows=header_line, dtype=str, keep_default_na=False,
            na_values=[""], skip_blank_lines=True, engine="c", quotechar='"', skipinitialspace=False,
        )
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
    return _finish_csv(name, frame, text, header_line)


def _clean_columns(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Strip header whitespace, pull currencies out of headers, reject unnamed/duplicate headers."""
    columns, currencies = [], {}
    for col in frame.columns:
        text = str(col).strip()
        m = _HEADER_CURRENCY.search(text)
        if m:
            text = text[: m.start()].strip()
            currencies[text] = m.group(1)
        columns.append(text)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes and any(not c for c in dupes):
        raise IngestError(f"the header repeats column(s) {', '.join(map(repr, dupes))}", file=name)
    if dupes:  # a connector export can repeat a column: keep both, the repeat renamed "name (2)"
        seen: dict[str, int] = {}
        for i, c in enumerate(columns):
            seen[c] = seen.get(c, 0) + 1
            if seen[c] > 1:
                columns[i] = f"{c} ({seen[c]})"
                while columns[i] in columns[:i] + columns[i + 1:]:
                    columns[i] += "'"
    frame.columns = columns
    return frame, currencies


def _flatten(table):
    """Struct columns become ``parent.child`` columns (BigQuery / Segment nested exports)."""
    import pyarrow as pa

    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def _read_jsonl(name: str, data: bytes) -> RawTable:
    import pyarrow as pa
    import pyarrow.json as pj

    if not data.startswith(b"{"):
        data = _decode(name, data).lstrip().encode("utf-8")
    else:
        _decode(name, data)  # validates the encoding and names the line on failure
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=1 << 24))
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        m = re.search(r"in row (\d+)", msg)
        reason = re.sub(r"\s*in row \d+", "", msg)
        if m:
            raise IngestError(f"is not valid JSON lines ({reason})", file=name, row=int(m.group(1)) + 1) from None
        raise IngestError(f"is not valid JSON lines ({reason})", file=name) from None
    frame = _flatten(table).to_pandas()
    frame, currencies = _clean_columns(name, frame)
    return RawTable(name, frame, "jsonl", 1, currencies)


def _read_parquet(name: str, data: bytes) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
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


__all__ = ["DEFAULT_SIZE_LIMIT", "RawTable", "read_source", "frame_table"]
