"""Hostile uploads (issue 11 §4, §5): limits enforced while reading, linear wide headers, numbers and dates at
their limits. Each is a clear error naming file, row and column (or a counted warning), never a traceback,
and nothing is stored."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from core.ingest import IngestError, import_files, read_files, read_uploaded
from core.ingest.readers import MAX_COLUMNS, read_source
from core.store.models import Dataset

ROOT = Path(__file__).resolve().parents[2]


def err(paths, **kw) -> IngestError:
    with pytest.raises(IngestError) as info:
        read_files(paths, **kw)
    return info.value


# ------------------------------------------------------------------------------------ §4 while reading
_HUGE_FIELD = """
import gzip, resource, sys, zlib
sys.path.insert(0, {root!r})
from core.ingest import IngestError, read_uploaded
# one 600 MB field, gzip-compressed to well under a megabyte, built without holding it in memory
comp = zlib.compressobj(9, zlib.DEFLATED, 31)
parts = [comp.compress(b"user_id,timestamp,channel,campaign\\nu1,1704067200,seo,")]
block = b"x" * (1 << 20)
for _ in range(600):
    parts.append(comp.compress(block))
parts.append(comp.compress(b"\\nu2,1704067300,email,jan\\n"))
parts.append(comp.flush())
data = b"".join(parts)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_uploaded([("bomb.csv.gz", data)])
    print("ACCEPTED")
except IngestError as exc:
    print("REFUSED", len(data), exc)
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_a_huge_field_in_a_small_gzip_is_refused_while_reading_with_little_memory():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_HUGE_FIELD.format(root=str(ROOT)))],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert "REFUSED" in out, out + proc.stderr[-2000:]
    assert "bomb.csv.gz" in out and "longer than 16 MiB" in out
    growth = float(out.rsplit("GROWTH_MB", 1)[1])
    assert growth < 300, f"reading grew memory by {growth:.0f} MB for a 600 MB field (it must stop at the row limit)"


def test_a_long_row_is_refused_at_the_row_limit(write):
    body = "user_id,timestamp,channel\n" + "u1,1704067200,seo\n" * 10 + "u2,1704067200," + "y" * 3_000_000 + "\n"
    with pytest.raises(IngestError, match=r"longer than 1 MiB after data row 10") as info:
        read_source(write("long.csv", body), row_limit=1 << 20)
    assert info.value.file == "long.csv"


def test_a_long_line_is_refused_by_the_forgiving_reader_too(write):
    # a ragged file goes to the pandas reader; its input is line-limited as it streams
    body = "user_id,timestamp,channel\nu1,1704067200\n" + "u2,1704067200," + "y" * 3_000_000 + "\n"
    with pytest.raises(IngestError, match="longer than 1 MiB"):
        read_source(write("ragged.csv", body), row_limit=1 << 20)


def test_gzip_decompression_stops_at_the_size_limit(write):
    start = time.perf_counter()
    data = gzip.compress(b"user_id,timestamp,channel\n" + b"u1,1704067200,seo\n" * 3_000_000)  # 54 MB inside
    with pytest.raises(IngestError, match="decompresses to more than the size limit of 1.0 MB"):
        read_uploaded([("many.csv.gz", data)], size_limit=1_000_000)
    assert time.perf_counter() - start < 10


def test_concatenated_gzip_members_are_read_whole(write):
    data = gzip.compress(b"user_id,timestamp,channel\nu1,1704067200,seo\n") + gzip.compress(b"u2,1704067300,email\n")
    r = read_uploaded([("two.csv.gz", data)])
    assert r.report["touchpoints"] == 2


def test_a_damaged_gzip_is_a_clear_error(write):
    data = gzip.compress(b"user_id,timestamp,channel\n" + b"u1,1704067200,seo\n" * 1000)
    with pytest.raises(IngestError, match="damaged gzip"):
        read_uploaded([("cut.csv.gz", data[: len(data) // 2])])


def test_a_100000_column_header_is_refused_at_once(write):
    header = ",".join(["user_id", "timestamp", "channel"] + [f"c{i}" for i in range(100_000)])
    p = write("wide.csv", header + "\n" + ",".join(["u", "1704067200", "seo"] + ["x"] * 100_000) + "\n")
    start = time.perf_counter()
    e = err([p])
    assert time.perf_counter() - start < 5
    assert e.file == "wide.csv" and f"more than {MAX_COLUMNS:,} columns" in str(e)


def test_many_columns_below_the_cap_map_in_linear_time(write):
    n = MAX_COLUMNS - 3
    header = ",".join(["user_id", "timestamp", "channel"] + [f"extra_{i}" for i in range(n)])
    p = write("wide.csv", header + "\n" + ",".join(["u", "1704067200", "seo"] + ["x"] * n) + "\n")
    start = time.perf_counter()
    r = read_files([p])
    assert time.perf_counter() - start < 10
    assert r.report["touchpoints"] == 1 and r.mapping.column("user_key") == "user_id"


def test_wide_parquet_and_json_lines_are_capped(write, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f"c{i}": [1] for i in range(MAX_COLUMNS + 1)})
    pq.write_table(table, tmp_path / "wide.parquet")
    assert f"more than {MAX_COLUMNS:,}" in str(err([tmp_path / "wide.parquet"]))
    row = "{" + ",".join(f'"c{i}":1' for i in range(MAX_COLUMNS + 1)) + "}\n"
    assert f"more than {MAX_COLUMNS:,}" in str(err([write("wide.jsonl", row)]))


def test_a_huge_parquet_value_is_refused_naming_row_and_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"user_id": ["u1", "u2"], "timestamp": [1704067200, 1704067300], "channel": ["seo", "x" * 2_000_000]}),
                   tmp_path / "big.parquet")
    with pytest.raises(IngestError) as info:
        read_source(tmp_path / "big.parquet", row_limit=1 << 20)
    assert (info.value.file, info.value.row, info.value.column) == ("big.parquet", 2, "channel")


def test_a_long_json_line_is_refused(write):
    body = '{"user_id":"u","timestamp":1704067200,"channel":"' + "z" * 3_000_000 + '"}\n'
    with pytest.raises(IngestError, match="longer than 1 MiB"):
        read_source(write("long.jsonl", body), row_limit=1 << 20)


# ------------------------------------------------------------------------------------ §5 numbers and dates
HEAD = "user_id,timestamp,event_type,channel,order_id,revenue\n"


@pytest.mark.parametrize("body, row, column, says", [
    (HEAD + "u,2024-01-01T00:00:00Z,touch,seo,,\nu,2024-01-02T00:00:00Z,purchase,,o1,1e308\n", 2, "revenue", "beyond the largest amount"),
    (HEAD + "u,2024-01-02T00:00:00Z,purchase,,o1,-1e308\n", 1, "revenue", "beyond the largest amount"),
    (HEAD + "u,2024-01-02T00:00:00Z,purchase,,o1,inf\n", 1, "revenue", "infinite"),
    (HEAD + "u,2024-01-02T00:00:00Z,purchase,,o1,123456789012345678.5\n", 1, "revenue", "beyond the largest amount"),
    (HEAD + "u,2024-01-01T00:00:00Z,touch,seo,,\nu,2300-01-02T00:00:00Z,touch,seo,,\n", 2, "timestamp", "outside 1990-2100"),
    (HEAD + "u,9999-12-31,touch,seo,,\n", 1, "timestamp", "outside 1990-2100"),
    (HEAD + "u,0001-01-01T00:00:00,touch,seo,,\n", 1, "timestamp", "outside 1990-2100"),
    (HEAD + "u,99999999999999999999,touch,seo,,\n", 1, "timestamp", "out of range"),
], ids=["1e308", "minus-1e308", "inf", "beyond-money-precision", "year-2300", "year-9999", "year-1", "epoch-overflow"])
def test_event_values_at_their_limits(write, body, row, column, says):
    e = err([write("edge.csv", body)])
    assert (e.file, e.row, e.column) == ("edge.csv", row, column) and says in str(e)


@pytest.mark.parametrize("body, row, column, says", [
    ("date,platform,campaign_id,spend\n2024-01-01,meta,c1,10\n9999-12-31,meta,c1,10\n", 2, "date", "outside 1990-2100"),
    ("date,platform,campaign_id,spend\n0001-01-01,meta,c1,10\n", 1, "date", "outside 1990-2100"),
    ("date,platform,campaign_id,spend\n2024-01-01,meta,c1,1e20\n", 1, "spend", "beyond the largest amount"),
    ("date,platform,campaign_id,spend,clicks\n2024-01-01,meta,c1,1,1e300\n", 1, "clicks", "beyond the largest amount"),
], ids=["date-9999", "date-year-1", "spend-1e20", "clicks-1e300"])
def test_performance_values_at_their_limits(write, body, row, column, says):
    e = err([write("perf.csv", body)])
    assert (e.file, e.row, e.column) == ("perf.csv", row, column) and says in str(e)


def test_dates_beyond_nanoseconds_in_parquet_are_errors_too(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    ts = pa.array([dt.datetime(2024, 1, 1), dt.datetime(2300, 1, 1)], type=pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"user_id": ["a", "b"], "timestamp": ts, "channel": ["x", "y"]}), tmp_path / "far.parquet")
    e = err([tmp_path / "far.parquet"])
    assert (e.row, e.column) == (2, "timestamp") and "outside 1990-2100" in str(e)


def test_channel_and_Channel_in_one_header_is_refused(write):
    e = err([write("case.csv", "user_id,timestamp,channel,Channel\nu,2024-01-01,seo,x\n")])
    assert e.file == "case.csv" and e.column == "Channel" and "'channel' and 'Channel'" in str(e)


def test_blank_and_nan_values_are_counted_warnings(write):
    r = read_files([write("nan.csv", HEAD + "u,2024-01-01T00:00:00Z,visit,email,,\nu,2024-01-02T00:00:00Z,purchase,,o1,NaN\nu,2024-01-03T00:00:00Z,purchase,,o2,\n"
                                          "u,2024-01-04T00:00:00Z,purchase,,o3,5\n")])
    assert r.report["value"] == {"USD": 5.0}
    assert any("2 conversion(s) have no value (blank or NaN)" in w for w in r.report["warnings"])
    perf = read_files([write("p.csv", "date,platform,campaign_id,spend,clicks\n2024-01-01,meta,c1,,NaN\n2024-01-02,meta,c1,3,4\n")])
    assert "p.csv: 1 blank value(s) in column 'spend' read as 0" in perf.report["warnings"]
    assert "p.csv: 1 blank value(s) in column 'clicks' read as 0" in perf.report["warnings"]


def test_report_is_valid_json_and_nothing_is_stored_on_error(engine, write):
    import json

    with pytest.raises(IngestError):
        import_files(engine, "ws", [write("edge.csv", HEAD + "u,2024-01-01T00:00:00Z,visit,email,,\nu,2024-01-02T00:00:00Z,purchase,,o1,1e308\n")])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Dataset)).scalar_one() == 0
    _, report = import_files(engine, "ws", [write("ok.csv", HEAD + "u,2024-01-01T00:00:00Z,visit,email,,\nu,2024-01-02T00:00:00Z,purchase,,o1,99999999999999.5\n")])
    json.loads(json.dumps(report, allow_nan=False))


def test_categorical_columns_parse_like_text(write, monkeypatch):
    """Large files hold repeating columns as categoricals; errors still name the first file row."""
    from core.ingest import readers

    monkeypatch.setattr(readers, "DICTIONARY_MIN_ROWS", 0)
    body = HEAD + "u,2024-01-01T00:00:00Z,touch,seo,,\n" * 3 + "u,2024-01-02T00:00:00Z,purchase,,o1,12x\n" * 2
    e = err([write("cat.csv", body)])
    assert (e.row, e.column) == (4, "revenue") and "'12x' is not a number" in str(e)
    raw = read_source(write("cat2.csv", HEAD + "u,2024-01-01T00:00:00Z,touch,seo,,\n" * 4))
    assert isinstance(raw.frame["event_type"].dtype, pd.CategoricalDtype)
    body = HEAD + "".join(f"u,2024-01-0{d}T00:00:00Z,touch, seo ,,\n" for d in range(1, 5))
    assert read_files([write("cat3.csv", body)]).touchpoints["channel"].astype(str).tolist() == ["seo"] * 4
