"""Bad input: a clear IngestError naming file, row (1-based data row below the header) and column."""

from __future__ import annotations

import pytest

from core.ingest import IngestError, read_files, read_uploaded


def err(paths, **kw) -> IngestError:
    with pytest.raises(IngestError) as info:
        read_files(paths, **kw)
    return info.value


def test_missing_required_column_names_it(write):
    e = err([write("ev.csv", "user_id,channel\nu,seo\n")])
    assert e.file == "ev.csv" and e.column == "ts" and "lacks required column" in str(e) and "timestamp" in str(e)


def test_unrecognised_file(write):
    e = err([write("x.csv", "foo,bar\n1,2\n")])
    assert "cannot tell what this file holds" in str(e) and "'foo'" in str(e)


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"\n\n  \n", "empty"), (b"user_id,ts,channel\n", "no data rows")])
def test_empty_files(write, content, needle):
    e = err([write("e.csv", content)])
    assert e.file == "e.csv" and needle in str(e)


def test_unparseable_timestamp_row_and_line(write):
    e = err([write("ev.csv", "user_id,ts,channel\nu,2024-01-01,seo\nu,2024-01-02,seo\nu,yesterday,seo\n")])
    assert (e.file, e.row, e.line, e.column) == ("ev.csv", 3, 4, "ts")
    assert str(e).startswith("ev.csv, row 3 (line 4), column 'ts':") and "'yesterday'" in str(e)


def test_missing_timestamp_and_user(write):
    e = err([write("ev.csv", "user_id,ts,channel\nu,2024-01-01,seo\nu,,seo\n")])
    assert (e.row, e.column) == (2, "ts") and "missing" in str(e)
    e = err([write("ev2.csv", "user_id,ts,channel\n,2024-01-01,seo\n")])
    assert (e.row, e.column) == (1, "user_id")


def test_unparseable_number_and_negative_value(write):
    head = "user_id,ts,event_type,channel,revenue\n"
    e = err([write("a.csv", head + "u,2024-01-01,touch,seo,\nu,2024-01-02,purchase,,12x\n")])
    assert (e.file, e.row, e.column) == ("a.csv", 2, "revenue") and "'12x' is not a number" in str(e)
    e = err([write("b.csv", head + "u,2024-01-02,purchase,,-5\n")])
    assert (e.row, e.column) == (1, "revenue") and "negative" in str(e)


def test_negative_path_counts_and_empty_path(write):
    e = err([write("p.csv", "path,total_conversions\na > b,1\nb,-2\n")])
    assert (e.row, e.column) == (2, "total_conversions")
    e = err([write("p2.csv", "path,total_conversions\na > b,1\n > ,2\n")])
    assert (e.row, e.column) == (2, "path") and "no channels" in str(e)


def test_size_limit(write):
    p = write("big.csv", "user_id,ts,channel\n" + "u,2024-01-01,seo\n" * 100)
    e = err([p], size_limit=500)
    assert e.file == "big.csv" and "over the size limit" in str(e)
    with pytest.raises(IngestError, match="over the size limit"):
        read_uploaded([("big.csv", p.read_bytes())], size_limit=500)


def test_gzip_bomb_limited_by_decompressed_size(write):
    p = write("big.csv.gz", "user_id,ts,channel\n" + "u,2024-01-01,seo\n" * 10_000)
    assert p.stat().st_size < 5_000
    assert "decompresses to more than" in str(err([p], size_limit=50_000))


def test_wrong_encoding_names_the_line(write):
    p = write("latin.csv", "user_id,ts,channel\nu,2024-01-01,seo\nJosé,2024-01-01,seo\n", encoding="latin-1")
    e = err([p])
    assert e.file == "latin.csv" and e.line == 3 and "not valid UTF-8" in str(e)


@pytest.mark.parametrize("content,needle", [
    (b"user_id,ts\x00\x01\x02binary", "binary"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image"),
    (b"PK\x03\x04\x14\x00\x06\x00", "Excel"),
])
def test_binary_files(write, content, needle):
    e = err([write("thing.csv", content)])
    assert e.file == "thing.csv" and needle in str(e)


def test_misnamed_files(write):
    (bad := write("a.csv", b"user_id,ts\n")).rename(bad.with_name("a.csv.gz"))
    assert "not gzip" in str(err([bad.with_name("a.csv.gz")]))
    (p := write("b.parquet", "user_id,ts,channel\nu,2024-01-01,seo\n"))
    assert "not a Parquet file" in str(err([p]))


def test_ragged_csv_names_line(write):
    e = err([write("r.csv", "user_id,ts,channel\nu,2024-01-01,seo\nu,2024-01-02,seo,extra\n")])
    assert e.line == 3 and "fields" in str(e)


def test_bad_json_lines_row(write):
    e = err([write("e.jsonl", '{"user_id":"u","ts":1,"channel":"a"}\n{"user_id":"u","ts":2,\n')])
    assert e.file == "e.jsonl" and e.row == 2


def test_mixed_kinds_refused(write, events_csv):
    p = write("p.csv", "path,total_conversions\na,1\n")
    assert "different kinds" in str(err([events_csv, p]))


def test_meta_export_not_daily(write):
    csv = "Reporting starts,Reporting ends,Campaign name,Amount spent (EUR)\n2024-01-01,2024-01-31,C,10\n"
    e = err([write("m.csv", csv)])
    assert (e.row, e.column) == (1, "Reporting ends") and "not one day" in str(e)


def test_timestamp_out_of_range_and_bad_currency(write):
    e = err([write("t.csv", "user_id,ts,channel\nu,12,seo\n")])
    assert e.column == "ts" and "outside" in str(e)
    e = err([write("c.csv", "user_id,ts,event_type,channel,value,currency\nu,2024-01-01,purchase,,3,EURO\n")])
    assert (e.row, e.column) == (1, "currency")


def test_fractional_impressions(write):
    csv = "date,campaign,spend,impressions\n2024-01-01,c,1,10.5\n"
    e = err([write("perf.csv", csv)])
    assert (e.row, e.column) == (1, "impressions") and "whole number" in str(e)
