"""Every supported input shape, from files the tests write."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.ingest import read_files, read_performance, read_uploaded

UTC = "UTC"


def ts(text):
    return pd.Timestamp(text, tz=UTC)


def test_event_file_with_event_type_column(events_csv):
    r = read_files([events_csv])
    assert r.kind == "journeys"
    t, c = r.touchpoints, r.conversions
    assert list(t.columns) == ["user_key", "ts", "channel", "campaign_id", "campaign", "source", "medium", "interaction", "source_system"]
    assert list(c.columns) == ["user_key", "ts", "conversion_id", "type", "value", "currency"]
    assert str(t["ts"].dtype) == "datetime64[ns, UTC]"
    assert t["channel"].tolist() == ["google", "meta", "email", "direct"]
    assert (t["source_system"] == "csv").all()
    # naive text is UTC by default, offsets are converted, epoch seconds are read.
    assert t["ts"].tolist()[:3] == [ts("2024-01-01 10:00"), ts("2024-01-02 11:00"), ts("2024-01-01 10:00")]
    assert c["conversion_id"].tolist() == ["o1", "o2"]
    assert c["ts"].tolist() == [ts("2024-01-03 10:00"), ts("2024-01-02 10:00")]
    assert c["value"].tolist() == [1234.5, 10.0]
    assert c["currency"].tolist() == ["EUR", "USD"]
    rep = r.report
    assert rep["rows_read"] == 8 and rep["touchpoints"] == 4 and rep["conversions"] == 2
    assert rep["duplicate_events_dropped"] == 1 and rep["duplicate_conversions_dropped"] == 1
    assert rep["users"] == 3 and rep["value"] == {"EUR": 1234.5, "USD": 10.0}  # never added across currencies
    assert rep["channels"] == {"google": 1, "meta": 1, "email": 1, "direct": 1}
    assert rep["date_min"].startswith("2024-01-01T10:00") and rep["date_max"].startswith("2024-01-05T09:00")
    assert any("duplicate conversion" in w for w in rep["warnings"])
    json.dumps(rep)  # storable as JSON


def test_two_files_touchpoints_and_conversions(write):
    a = write("touches.csv", "customer_id,time,channel,campaign_id\nA,2024-03-01 08:00,Search,c1\nB,2024-03-02 08:00,Social,c2\n")
    b = write("orders.csv", "customer_id,time,conversion_id,value\nA,2024-03-03 08:00,x1,50\nA,2024-03-03 08:00,x1,50\n")
    r = read_files([a, b], timezone="Europe/Berlin")
    assert r.touchpoints["channel"].tolist() == ["Search", "Social"]
    assert r.touchpoints["campaign_id"].tolist() == ["c1", "c2"]
    assert r.touchpoints["ts"].iloc[0] == ts("2024-03-01 07:00")  # Berlin is UTC+1 in March
    assert r.conversions["conversion_id"].tolist() == ["x1"] and r.report["duplicate_conversions_dropped"] == 1
    assert set(r.mappings) == {"touches.csv", "orders.csv"}
    assert r.report["timezone_assumed_for_naive"] == "Europe/Berlin"


def test_csv_gz_and_upload_bytes_match(write, events_csv, events_text):
    EVENTS_CSV = events_text
    gz = write("events.csv.gz", EVENTS_CSV)
    a = read_files([events_csv])
    b = read_files([gz])
    pd.testing.assert_frame_equal(a.touchpoints, b.touchpoints)
    u = read_uploaded([("events.csv", EVENTS_CSV.encode())])
    pd.testing.assert_frame_equal(a.conversions, u.conversions)
    assert a.content_hash == u.content_hash and a.content_hash != b.content_hash


def test_parquet_and_jsonl_sniffed_by_content(write, tmp_path):
    frame = pd.DataFrame({"user_id": ["a", "a", "b"], "ts": [1704067200000, 1704070800000, 1704074400000],
                          "channel": ["seo", None, "email"], "event": ["visit", "purchase", "visit"],
                          "conversion_id": [None, "p1", None], "value": [None, 20.0, None]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    p = write("data.bin", buf.getvalue())  # no telling extension: magic bytes decide
    r = read_files([p])
    assert r.touchpoints["channel"].tolist() == ["seo", "email"]
    assert r.touchpoints["ts"].tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 02:00")]  # milliseconds
    assert r.conversions["value"].tolist() == [20.0] and r.touchpoints["source_system"].iloc[0] == "parquet"
    lines = "\n".join(json.dumps({k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()})
                      for row in frame.to_dict("records"))
    j = write("data.jsonl", lines + "\n")
    rj = read_files([j])
    pd.testing.assert_frame_equal(r.conversions, rj.conversions)
    assert rj.touchpoints["source_system"].iloc[0] == "jsonl"


GA4_ROWS = [
    # user, event_timestamp (us), event_name, source, medium, campaign, revenue, transaction_id
    ("g1", 1704100000000000, "session_start", "google", "cpc", "brand", None, None),
    ("g1", 1704100001000000, "page_view", "google", "cpc", "brand", None, None),
    ("g1", 1704200000000000, "session_start", None, None, None, None, None),
    ("g1", 1704200100000000, "purchase", None, None, None, 99.5, "T1"),
    ("g1", 1704200100000000, "purchase", None, None, None, 99.5, "T1"),
    ("g2", 1704300000000000, "session_start", "newsletter", "email", "jan", None, None),
]


def _ga4_frame(sep: str) -> pd.DataFrame:
    pre = f"session_traffic_source_last_click{sep}manual_campaign{sep}"
    cols = ["user_pseudo_id", "event_timestamp", "event_name", pre + "source", pre + "medium", pre + "campaign_name",
            f"ecommerce{sep}purchase_revenue", f"ecommerce{sep}transaction_id"]
    return pd.DataFrame(GA4_ROWS, columns=cols)


@pytest.mark.parametrize("sep", [".", "_"])
def test_ga4_flattened_csv(write, sep):
    p = write("ga4.csv", _ga4_frame(sep).to_csv(index=False))
    r = read_files([p])
    assert r.mapping.profile == "ga4" and r.source_system == "ga4"
    t, c = r.touchpoints, r.conversions
    # one touch per session: the page_view continues the session its session_start opened
    assert t["channel"].tolist() == ["google", "direct", "email"]
    assert t["ts"].iloc[0] == pd.Timestamp(1704100000000000, unit="us", tz=UTC)
    assert c["conversion_id"].tolist() == ["T1"] and c["value"].tolist() == [99.5]
    rep = r.report
    assert rep["duplicate_conversions_dropped"] == 1 and rep["events_ignored"] == 0
    assert (rep["touch_events"], rep["sessions"], rep["touchpoints"]) == (4, 3, 3)


def test_ga4_nested_parquet_and_jsonl(write):
    records = []
    for u, t, e, s, m, camp, rev, tid in GA4_ROWS:
        records.append({"user_pseudo_id": u, "event_timestamp": t, "event_name": e,
                        "collected_traffic_source": {"manual_source": s, "manual_medium": m, "manual_campaign_name": camp},
                        "ecommerce": {"purchase_revenue": rev, "transaction_id": tid},
                        "event_params": [{"key": "ga_session_id", "value": {"int_value": 1}}]})
    table = pa.Table.from_pylist(records)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    rp = read_files([write("ga4.parquet", buf.getvalue())])
    rj = read_files([write("ga4.json", "\n".join(json.dumps(r) for r in records))])
    for r in (rp, rj):
        assert r.mapping.column("source") == "ga4__source"  # the session's source, read from collected_traffic_source
        assert r.touchpoints["channel"].tolist() == ["google", "direct", "email"]
        assert r.conversions["value"].sum() == 99.5


def test_segment_tracks_with_identity_stitching(write):
    csv = (
        "message_id,anonymous_id,user_id,timestamp,event,context_campaign_source,context_campaign_medium,context_campaign_name,properties_order_id,properties_revenue,properties_currency\n"
        "m1,anon1,,2024-02-01T10:00:00.000Z,Page Viewed,facebook,cpc,spring,,,\n"
        "m1,anon1,,2024-02-01T10:00:00.000Z,Page Viewed,facebook,cpc,spring,,,\n"
        "m2,anon1,,2024-02-01T10:05:00.000Z,Product Viewed,,,,,,\n"
        "m3,anon1,user9,2024-02-02T10:00:00.000Z,Order Completed,,,,ord1,42.0,eur\n"
        "m4,anon2,,2024-02-03T10:00:00.000Z,Page Viewed,,organic,,,,\n"
    )
    r = read_files([write("tracks.csv", csv)])
    assert r.mapping.profile == "segment"
    t, c = r.touchpoints, r.conversions
    assert t["user_key"].tolist() == ["anon2", "user9"]  # anon1 stitched to user9
    assert t.set_index("user_key")["channel"].to_dict() == {"user9": "meta", "anon2": "organic"}
    assert c["user_key"].tolist() == ["user9"] and c["currency"].tolist() == ["EUR"] and c["type"].tolist() == ["order completed"]
    # Product Viewed (no campaign) continues the facebook session; it is not a touch of its own
    assert r.report["duplicate_events_dropped"] == 1 and r.report["events_ignored"] == 0
    assert (r.report["touch_events"], r.report["sessions"]) == (3, 2)


@pytest.mark.parametrize("sep", [" > ", ">", "|"])
def test_path_table_separators_and_duplicates_summed(write, sep):
    csv = (f"path,total_conversions,total_conversion_value,total_null\n"
           f"a{sep}b{sep}c,3,30,10\n"
           f"b,1,5,2\n"
           f"a{sep}b{sep}c,2,20,0\n")
    r = read_files([write("paths.csv", csv)])
    assert r.kind == "paths"
    p = r.paths
    assert p.n_paths == 2 and p.total_conversions == 6 and p.total_value == 55 and p.total_nulls == 12
    frame = p.to_frame().set_index("path")
    assert frame.loc["a > b > c", "total_conversions"] == 5 and frame.loc["a > b > c", "total_null"] == 10
    assert r.report["duplicate_paths_merged"] == 1 and r.report["channels"] == ["a", "b", "c"]


META_CSV = (
    "Reporting starts,Reporting ends,Campaign name,Campaign ID,Amount spent (EUR),Impressions,Link clicks,Results,Purchases conversion value\n"
    "2024-01-01,2024-01-01,Prospecting,120001,100.50,10000,250,5,500.25\n"
    "2024-01-02,2024-01-02,Prospecting,120001,90.00,9000,,4,400\n"
    "2024-01-01,2024-01-01,Retargeting,120002,50,5000,100,3,300\n"
)


def test_meta_ads_manager_export(write):
    perf = read_performance(write("meta.csv", META_CSV))
    assert perf["platform"].unique().tolist() == ["meta"] and perf["currency"].unique().tolist() == ["EUR"]
    row = perf[(perf["external_id"] == "120001") & (perf["date"] == pd.Timestamp("2024-01-01"))].iloc[0]
    assert row["entity_name"] == "Prospecting" and row["spend"] == 100.5 and row["impressions"] == 10000
    assert row["clicks"] == 250 and row["conversions"] == 5 and row["conversion_value"] == 500.25
    assert perf["clicks"].dtype == np.int64 and str(perf["date"].dtype) == "datetime64[ns]"
    assert perf.loc[perf["date"] == pd.Timestamp("2024-01-02"), "clicks"].item() == 0  # blank -> 0
    assert (perf["entity_type"] == "campaign").all() and (perf["segment_type"] == "").all()


GOOGLE_CSV = (
    "Campaign performance report\n"
    '"January 1, 2024 - January 2, 2024"\n'
    "Day,Campaign,Campaign ID,Currency code,Cost,Impr.,Clicks,Conversions,Conv. value\n"
    '2024-01-01,Brand Search,987,USD,"1,234.56","12,345",300,10.50,"2,000.00"\n'
    "2024-01-02,Brand Search,987,USD,1000.00,10000,250,--,--\n"
    "2024-01-01,Generic,988,USD,10.00,100,3,0.00,0.00\n"
    'Total: Account,--,--,USD,"2,244.56","22,445",553,10.50,"2,000.00"\n'
    'Total: Search,--,--,USD,"2,244.56","22,445",553,10.50,"2,000.00"\n'
)


def test_google_ads_report(write):
    r = read_files([write("google.csv", GOOGLE_CSV)])
    perf = r.performance
    assert r.mapping.profile == "google_ads" and len(perf) == 3
    assert perf["platform"].unique().tolist() == ["google"]
    first = perf[(perf["external_id"] == "987") & (perf["date"] == pd.Timestamp("2024-01-01"))].iloc[0]
    assert first["spend"] == pytest.approx(1234.56) and first["impressions"] == 12345 and first["conversion_value"] == 2000
    second = perf[(perf["external_id"] == "987") & (perf["date"] == pd.Timestamp("2024-01-02"))].iloc[0]
    assert second["conversions"] == 0 and second["conversion_value"] == 0
    assert r.report["total_rows_dropped"] == 2 and r.report["spend"] == pytest.approx(2244.56)


def test_google_ads_utf16_tab_export(write):
    tsv = GOOGLE_CSV.replace(",", "\t").replace('"1\t234.56"', "1234.56").replace('"12\t345"', "12345").replace('"2\t000.00"', "2000.00")
    tsv = tsv.replace('"January 1\t 2024 - January 2\t 2024"', "January 1 - January 2 2024")
    perf = read_performance(write("google.csv", tsv, encoding="utf-16"))
    assert len(perf) == 3 and perf["spend"].sum() == pytest.approx(2244.56)


def test_fivetran_ad_reporting(write):
    csv = ("date_day,platform,account_id,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value\n"
           "2024-05-01,facebook_ads,act1,c1,FB one,10,1,100,1,20\n"
           "2024-05-01,google_ads,cust1,c2,G one,20,2,200,2,40\n"
           "2024-05-01,linkedin_ads,li1,c3,LI one,30,3,300,0,0\n"
           "2024-05-01,linkedin_ads,li1,c3,LI one,30,3,300,0,0\n")
    r = read_files([write("fivetran.csv", csv)], default_currency="GBP")
    perf = r.performance
    assert sorted(perf["platform"]) == ["google", "linkedin", "meta"]
    assert perf.set_index("platform").loc["meta", "account_id"] == "act1"
    assert (perf["currency"] == "GBP").all() and r.report["duplicates_dropped"] == 1


def test_performance_ad_set_level_and_breakdown_summed(write):
    csv = ("Day,Campaign name,Ad set name,Ad set ID,Amount spent (USD),Impressions,Age\n"
           "2024-01-01,C,S1,11,5,50,18-24\n2024-01-01,C,S1,11,7,70,25-34\n")
    r = read_files([write("meta_adsets.csv", csv)])
    perf = r.performance
    assert perf["entity_type"].tolist() == ["ad_set"] and perf["external_id"].tolist() == ["11"]
    assert perf["spend"].tolist() == [12.0] and r.report["rows_merged"] == 1


def test_utf8_bom_and_semicolons(write):
    p = write("bom.csv", "\ufeffuser_id;timestamp;channel\nu;2024-01-01T00:00:00Z;seo\n")
    r = read_files([p])
    assert r.touchpoints["channel"].tolist() == ["seo"]


def test_progress_is_reported(events_csv):
    seen = []
    read_files([events_csv], progress=lambda f, m: seen.append((f, m)))
    assert seen[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in seen) and len(seen) >= 3
