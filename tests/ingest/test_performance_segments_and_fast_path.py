"""Performance breakdowns (canonical segment columns, Fivetran with a placement column), the
canonical frame reading back, and the fast CSV path keeping its errors and its fallbacks."""

from __future__ import annotations

import pandas as pd
import pytest

from core.ingest import IngestError, read_files
from core.ingest.readers import read_source

FIVETRAN = "date_day,platform,account_id,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value"


def test_fivetran_with_a_placement_column(write):
    csv = (f"{FIVETRAN},placement\n"
           "2024-05-01,facebook_ads,act1,c1,FB,6,1,60,1,20,feed\n"
           "2024-05-01,facebook_ads,act1,c1,FB,4,1,40,0,0,stories\n")
    r = read_files([write("fivetran_placement.csv", csv)])
    assert r.mapping.profile == "fivetran_ads"
    perf = r.performance
    assert perf["segment_type"].tolist() == ["placement", "placement"]
    assert perf["segment_value"].tolist() == ["feed", "stories"]
    assert perf["platform"].tolist() == ["meta", "meta"] and perf["spend"].sum() == 10


def test_canonical_segment_columns(write):
    csv = (f"{FIVETRAN},segment_type,segment_value\n"
           "2024-05-01,google_ads,g1,c2,G,10,2,200,2,40,,\n"
           "2024-05-01,google_ads,g1,c2,G,7,1,120,1,25,device,mobile\n"
           "2024-05-01,google_ads,g1,c2,G,3,1,80,1,15,Device,desktop\n"
           "2024-05-01,google_ads,g1,c2,G,10,2,200,2,40,hour,\n")
    perf = read_files([write("segments.csv", csv)]).performance
    got = sorted(zip(perf["segment_type"], perf["segment_value"]))
    assert got == [("", ""), ("device", "desktop"), ("device", "mobile"), ("hour", "(unknown)")]


@pytest.mark.parametrize("row, column, needle", [
    ("2024-05-01,google_ads,g1,c2,G,7,1,120,1,25,gender,f", "segment_type", "'gender' is not one of"),
    ("2024-05-01,google_ads,g1,c2,G,7,1,120,1,25,,mobile", "segment_value", "has no segment type"),
])
def test_bad_segments_name_row_and_column(write, row, column, needle):
    csv = f"{FIVETRAN},segment_type,segment_value\n2024-05-01,google_ads,g1,c2,G,10,2,200,2,40,,\n{row}\n"
    with pytest.raises(IngestError) as err:
        read_files([write("seg.csv", csv)])
    assert err.value.row == 2 and err.value.column == column and needle in str(err.value)
    assert "seg.csv" in str(err.value)


def test_segment_column_and_breakdown_column_together_refused(write):
    csv = f"{FIVETRAN},device,segment_type,segment_value\n2024-05-01,google_ads,g1,c2,G,10,2,200,2,40,mobile,,\n"
    with pytest.raises(IngestError, match="several breakdowns"):
        read_files([write("both.csv", csv)])


def test_canonical_performance_frame_reads_back(write, tmp_path):
    csv = (f"{FIVETRAN},currency,device\n"
           "2024-05-01,facebook_ads,act1,c1,FB,6,1,60,1,20,EUR,mobile\n"
           "2024-05-01,facebook_ads,act1,c1,FB,4,1,40,0,0,EUR,desktop\n"
           "2024-05-02,google_ads,g1,c2,G,5,1,40,0,0,EUR,mobile\n")
    first = read_files([write("perf.csv", csv)]).performance
    out = tmp_path / "canonical.csv"
    first.to_csv(out, index=False)
    again = read_files([out]).performance
    assert again["entity_type"].tolist() == first["entity_type"].tolist()
    pd.testing.assert_frame_equal(again, first)


def test_canonical_entity_type_is_checked(write):
    csv = ("date,platform,entity_type,external_id,entity_name,spend\n"
           "2024-05-01,meta,ad_set,s1,Set one,3\n2024-05-01,meta,adgroupish,s2,Set two,3\n")
    with pytest.raises(IngestError) as err:
        read_files([write("levels.csv", csv)])
    assert err.value.row == 2 and err.value.column == "entity_type"


# ------------------------------------------------------------------------------ fast CSV path
def test_fast_path_keeps_leading_zeros_and_text_dtype(write):
    p = write("ids.csv", "user_id,timestamp,channel\n007,1704067200,seo\n0042,1704067201,email\n")
    raw = read_source(p)
    assert raw.frame["user_id"].tolist() == ["007", "0042"] and raw.frame["user_id"].dtype == "str"
    r = read_files([p])
    assert sorted(r.touchpoints["user_key"]) == ["0042", "007"]
    assert r.touchpoints["ts"].min() == pd.Timestamp("2024-01-01", tz="UTC")  # sorted by user: 0042 first


def test_short_rows_fall_back_to_the_forgiving_reader(write):
    # pyarrow refuses a row with fewer fields; the pandas reader pads it, as before.
    p = write("short.csv", "user_id,timestamp,channel,campaign\nu1,1704067200,seo\nu2,1704067300,email,jan\n")
    r = read_files([p])
    assert r.touchpoints["campaign"].isna().sum() == 1


def test_long_row_still_names_its_line(write):
    p = write("long.csv", "user_id,timestamp,channel\nu1,1704067200,seo\nu2,1704067300,email,extra\n")
    with pytest.raises(IngestError) as err:
        read_files([p])
    assert err.value.line == 3 and "long.csv" in str(err.value)


def test_quoted_newlines_title_lines_and_bad_number_row(write):
    csv = ('Report title\n"All time"\n'
           'user_id,timestamp,channel,revenue,note\n'
           'u1,1704067200,seo,,"two\nlines"\n'
           'u2,1704067300,email,12x,ok\n')
    with pytest.raises(IngestError) as err:
        read_files([write("quoted.csv", csv)])
    assert err.value.row == 2 and err.value.column == "revenue" and "'12x' is not a number" in str(err.value)


def test_number_spellings_still_read_after_the_fast_cast_fails(write):
    csv = ("user_id,timestamp,event_type,channel,order_id,revenue\nu1,1704067100,visit,seo,,\n"
           "u1,1704067200,purchase,,o1,\"1,234.50\"\nu1,1704067300,purchase,,o2,--\n")
    conv = read_files([write("nums.csv", csv)]).conversions
    assert sorted(conv["value"]) == [0.0, 1234.5]


def test_rudderstack_tracks_jsonl_with_nested_campaign(write):
    import json

    rows = [
        {"id": "r1", "anonymous_id": "a1", "user_id": None, "original_timestamp": "2024-03-01T09:00:00.000Z",
         "event_text": "Page Viewed", "context": {"campaign": {"source": "google", "medium": "cpc", "name": "brand"}}},
        {"id": "r2", "anonymous_id": "a1", "user_id": "cust7", "original_timestamp": "2024-03-01T10:00:00.000Z",
         "event_text": "Order Completed", "context": {"campaign": {"source": None, "medium": None, "name": None}},
         "properties": {"order_id": "o9", "revenue": 55.5, "currency": "usd"}},
        {"id": "r2", "anonymous_id": "a1", "user_id": "cust7", "original_timestamp": "2024-03-01T10:00:00.000Z",
         "event_text": "Order Completed", "context": {"campaign": {"source": None, "medium": None, "name": None}},
         "properties": {"order_id": "o9", "revenue": 55.5, "currency": "usd"}},
    ]
    r = read_files([write("rudder_tracks.jsonl", "\n".join(json.dumps(x) for x in rows) + "\n")])
    assert r.mapping.profile == "segment"
    assert r.mapping.column("ts") == "original_timestamp" and r.mapping.column("event_type") == "event_text"
    t, c = r.touchpoints, r.conversions
    assert t["user_key"].tolist() == ["cust7"] and t["channel"].tolist() == ["google"]
    assert c["conversion_id"].tolist() == ["o9"] and c["value"].tolist() == [55.5] and c["currency"].tolist() == ["USD"]
    assert r.report["duplicate_events_dropped"] == 1
