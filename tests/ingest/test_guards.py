"""Never silently wrong: what used to import with a plausible wrong table is refused or warned about,
with the reason and the columns that matter."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from core import attribution_runs as ar
from core.ingest import IngestError, MappingNeeded, SessionSettings, import_files, read_files, read_sql_source

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"


@pytest.mark.parametrize("csv,match", [
    ("user_id,timestamp,event_type,order_id,value\nu1,2024-01-01T00:00:00Z,purchase,o1,10\n", r"1 conversion\(s\) but no touchpoints"),
    ("user_id,timestamp,visits\nu1,2024-01-01T00:00:00Z,3\n", "has touchpoints but no channel column"),
], ids=["conversions-only", "no-channel"])
def test_journeys_without_touches_are_an_error(write, csv, match):
    with pytest.raises(IngestError, match=match):
        read_files([write("j.csv", csv)])


def test_a_spend_table_is_never_read_as_journeys(write):
    # customer_id looks like a user and date like a time: this once imported as journeys
    csv = "customer_id,date,cost,impressions,clicks,conversions_value\n123,2024-01-01,10,100,5,0\n"
    with pytest.raises(MappingNeeded) as err:
        read_files([write("spend.csv", csv)])
    assert "campaign performance" in str(err.value) and err.value.proposals[0].mapping.profile == "performance"


def test_errors_list_the_columns_that_matter_not_the_first_twenty(write):
    noise = [f"metric_{i:03d}" for i in range(120)]
    cols = noise[:60] + ["visitor_key", "hit_time", "traffic_channel"] + noise[60:]
    frame = pd.DataFrame([[1] * len(cols)], columns=cols)
    with pytest.raises(MappingNeeded) as err:
        read_files([write("wide.csv", frame.to_csv(index=False))])
    text = str(err.value)
    assert "Of its 123 columns these look relevant" in text
    assert "'visitor_key'" in text and "'hit_time'" in text and "metric_000" not in text


def test_a_known_synonym_is_never_claimed_missing(write):
    csv = "user_pseudo_id,event_name,page_location\nabc,page_view,https://x.example/\n"  # GA4 rows without any time
    with pytest.raises(MappingNeeded) as err:
        read_files([write("ga4.csv", csv)])
    missing = err.value.proposals[0].missing
    assert "user_key" not in missing and "ts" in missing


def test_an_attribution_run_refuses_data_where_no_conversion_has_a_touch(engine, write):
    csv = ("user_id,timestamp,event_type,channel,order_id,value\n"
           "u1,2024-01-01T10:00:00Z,purchase,,o1,10\nu1,2024-01-02T10:00:00Z,visit,seo,,\n")
    dataset_id, _ = import_files(engine, "default", [write("late.csv", csv)])
    params = ar.RunParams(dataset_id=dataset_id, models=("first", "last")).validated()
    with pytest.raises(ar.RunError, match="no touch before them"):
        ar.execute_run(engine, "default", params)


def test_sql_sources_are_sessionized_like_files(tmp_path):
    url = f"sqlite:///{tmp_path / 'src.db'}"
    rows = pd.DataFrame({"visitor": ["v1"] * 4 + ["v2"] * 2,
                         "event_time": ["2024-01-01 10:00", "2024-01-01 10:05", "2024-01-01 10:09", "2024-01-02 10:00",
                                        "2024-01-01 08:00", "2024-01-01 08:03"],
                         "acquisition_channel": ["Search", "Search", "Search", "Email", "Social", "Social"]})
    eng = create_engine(url)
    rows.to_sql("clicks", eng, index=False)
    eng.dispose()
    r = read_sql_source(url, table="clicks", sessions=SessionSettings("sessions"))
    assert (r.report["touch_events"], r.report["sessions"], r.report["touchpoints"]) == (6, 3, 3)
    assert r.touchpoints["channel"].astype(str).tolist() == ["Search", "Email", "Social"]


def test_ga4_bigquery_json_export_with_event_params(write):
    """BigQuery's JSON export: nested records, event_params as key/value lists, the purchase in EUR."""
    def event(name, ts, params, ecommerce=None, usd=None):
        row = {"event_name": name, "event_timestamp": str(ts), "user_pseudo_id": "111.222", "event_value_in_usd": usd,
               "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
               "event_params": [{"key": k, "value": ({"string_value": v} if isinstance(v, str) else {"int_value": v})}
                                for k, v in params.items()]}
        if ecommerce:
            row["ecommerce"] = ecommerce
        return json.dumps(row)
    t0 = 1717200000000000  # 2024-06-01 00:00 UTC, microseconds
    lines = [
        event("session_start", t0, {"ga_session_id": 1, "source": "google", "medium": "cpc", "campaign": "summer"}),
        event("page_view", t0 + 10**6, {"ga_session_id": 1, "page_location": "https://shop.example/p"}),
        event("purchase", t0 + 60 * 10**6, {"ga_session_id": 1, "currency": "EUR", "transaction_id": "T9"},
              {"purchase_revenue": 120.0, "transaction_id": "T9"}, usd=130.72),
        event("session_start", t0 + 86400 * 10**6, {"ga_session_id": 2, "source": "newsletter", "medium": "email"}),
    ]
    r = read_files([write("bq.json", "\n".join(lines) + "\n")])
    assert r.mapping.profile == "ga4"
    assert r.report["value"] == {"EUR": 120.0}, "the purchase's own value and currency, not event_value_in_usd"
    assert r.touchpoints["channel"].astype(str).tolist() == ["google", "email"]  # traffic_source (direct) is no event's touch
    assert (r.report["touch_events"], r.report["sessions"]) == (3, 2)


def test_ga4_json_text_cells_and_nested_lines_read_the_same(write):
    """The same GA4 rows as JSON text in CSV cells (a pandas dump) and as nested JSON lines."""
    src = pd.read_csv(PUBLIC / "ga4_purchase_events.csv", dtype=str, nrows=10)
    nested = []
    for _, row in src.iterrows():
        rec = {k: row[k] for k in ("event_timestamp", "event_name", "user_pseudo_id", "user_first_touch_timestamp")}
        for k in ("traffic_source", "event_params", "ecommerce"):
            rec[k] = json.loads(row[k])
        nested.append(json.dumps(rec))
    a = read_files([PUBLIC / "ga4_purchase_events.csv"])
    b = read_files([write("nested.jsonl", "\n".join(nested) + "\n")])
    first10 = a.conversions[a.conversions["conversion_id"].astype(int) <= 10]
    assert b.report["value"] == {"GBP": pytest.approx(723.38)}  # rows 1-10 only
    assert sorted(b.conversions["value"].round(2)) == sorted(first10["value"].round(2))



def test_ga4_event_date_reads_as_a_day(write):
    csv = "user_pseudo_id,event_date,event_name,source\nabc,20240101,page_view,google\nabc,20240102,purchase,\n"
    r = read_files([write("days.csv", csv)])
    assert r.touchpoints["ts"].tolist() == [pd.Timestamp("2024-01-01", tz="UTC")]
    assert r.conversions["ts"].tolist() == [pd.Timestamp("2024-01-02", tz="UTC")]
