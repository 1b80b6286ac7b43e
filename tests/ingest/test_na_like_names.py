"""Names that look like pandas' NA strings: a campaign 'NA' (North America), an ad set 'N/A', a channel
'None', a source 'null' are names, kept on every reader path (CSV read fast and forgiving, streamed
CSV, JSON lines, Parquet, a SQL source), in performance and journey files. In text only a blank cell,
the exporters' own placeholders (``--``, ``(not set)``) and a database dump's ``NULL`` are missing;
number columns still read ``--``, ``N/A``, ``null`` as blank."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from core.ingest import import_files, load_events, read_files, readers, stream
from core.store import event_store

NAMES = ["NA", "N/A", "None", "null", "nan"]

PERF_CSV = ("Day,Campaign,Campaign ID,Ad group,Ad group ID,Currency code,Cost,Impr.,Clicks,Conversions\n"
            "2026-09-01,NA,1,N/A,10,USD,10.00,100,1,N/A\n"
            "2026-09-01,None,2,null,20,USD,20.00,100,--,1\n"
            "2026-09-02,nan,3,--,30,USD,5.00,50,2,null\n")


def _check_perf(p):
    p = p.set_index("external_id").sort_index()
    assert p["campaign_name"].tolist() == ["NA", "None", "nan"]
    # '--' is Google's own blank: that ad group's name falls back to its id
    assert p["ad_set_name"].tolist() == p["entity_name"].tolist() == ["N/A", "null", "30"]
    # numbers: 'N/A' / 'null' / '--' are blanks read as 0: conversions 0 + 1 + 0 = 1, clicks 1 + 0 + 2 = 3
    assert p["conversions"].sum() == 1 and p["clicks"].sum() == 3 and p["spend"].sum() == 35.0  # 10 + 20 + 5


def test_performance_csv_keeps_na_like_names(write):
    _check_perf(read_files([write("adgroups.csv", PERF_CSV)]).performance)


def test_performance_csv_read_by_the_forgiving_reader_keeps_them(write):
    ragged = PERF_CSV + "2026-09-02,NA,1,N/A,10,USD,1.00\n"  # a short row: pyarrow refuses, pandas pads it
    p = read_files([write("ragged.csv", ragged)]).performance
    assert set(p["campaign_name"]) == {"NA", "None", "nan"} and set(p["ad_set_name"]) == {"N/A", "null", "30"}


def test_performance_parquet_keeps_them(tmp_path):
    frame = pd.read_csv(io.StringIO(PERF_CSV), dtype=str, keep_default_na=False)
    path = tmp_path / "adgroups.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    _check_perf(read_files([path]).performance)


EVENTS_CSV = ("user_id,timestamp,event_type,channel,source,medium,campaign,order_id,revenue,currency\n"
              "u1,2026-09-01T10:00:00Z,touch,,google,cpc,NA,,,\n"
              "u1,2026-09-01T12:00:00Z,touch,None,,,,,,\n"
              "u1,2026-09-01T13:00:00Z,purchase,,,,,o1,10,EUR\n"
              "u2,2026-09-01T10:00:00Z,touch,,null,email,N/A,,,\n"
              "u2,2026-09-01T11:00:00Z,touch,,NULL,NULL,NULL,,,\n"
              "u2,2026-09-01T12:00:00Z,purchase,,,,,o2,N/A,EUR\n")


def _check_events(touch, conv):
    t = touch.sort_values(["user_key", "ts"]).reset_index(drop=True)
    assert t["campaign"].fillna("-").tolist() == ["NA", "-", "N/A", "-"]
    assert t["channel"].tolist()[1] == "None"  # a channel named None is that channel
    assert t["source"].fillna("-").tolist() == ["google", "-", "null", "-"]  # the dump's NULL is missing
    assert conv.sort_values("conversion_id")["value"].fillna(-1).tolist() == [10.0, 0.0]  # 'N/A' revenue: blank, 0


def test_journey_csv_keeps_them(write):
    r = read_files([write("events.csv", EVENTS_CSV)])
    _check_events(r.touchpoints, r.conversions)


def test_journey_jsonl_keeps_them(write):
    frame = pd.read_csv(io.StringIO(EVENTS_CSV), dtype=str, keep_default_na=False)
    text = frame.replace({"": None}).to_json(orient="records", lines=True)
    r = read_files([write("events.jsonl", text)])
    _check_events(r.touchpoints, r.conversions)


def test_journey_csv_streamed_keeps_them(engine, write, monkeypatch, tmp_path):
    monkeypatch.setenv(event_store.STORAGE_URL_ENV, str(tmp_path / "store"))
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(readers, "DICTIONARY_MIN_ROWS", 2)  # the repeating columns categorical, as in a large file
    seen = []
    original = stream.read_files_streamed
    monkeypatch.setattr(stream, "read_files_streamed", lambda *a, **k: seen.append(1) or original(*a, **k))
    ds, _ = import_files(engine, "ws", [write("events.csv", EVENTS_CSV)], name="streamed")
    assert seen == [1]
    _check_events(*load_events(engine, "ws", ds))


def test_a_sql_source_keeps_them_like_the_import(tmp_path):
    from core.journeys.sql import build_pathtable_sql

    url = f"sqlite:///{tmp_path / 'e.db'}"
    frame = pd.read_csv(io.StringIO(EVENTS_CSV), dtype=str, keep_default_na=False).replace({"": None})
    frame = frame.drop(columns=["channel"]).assign(revenue=[None, None, 10.0, None, None, None])
    eng = sa.create_engine(url)
    frame.to_sql("events", eng, index=False)
    eng.dispose()
    paths = build_pathtable_sql(url, "events", level="campaign").paths.to_frame()
    # u1: google/cpc 'NA' -> (no source) -> purchase; u2: null/email 'N/A' -> (the NULL row: direct) -> purchase
    assert any(":NA" in p for p in paths["path"]) and any(":N/A" in p for p in paths["path"])


def test_the_text_blanks_are_few_and_exact():
    from core.ingest.parse import TEXT_EMPTY

    assert set(TEXT_EMPTY) == {"", "--", "(not set)", "NULL", "\\N"}
    assert not set(NAMES) & set(TEXT_EMPTY)
