"""The Data page with the downloads marketers grab by hand (written here in the platforms' shapes): an
Ads Manager .xlsx, a European Google Ads download, a report of the wrong kind, Meta Results of two
objectives, a GA4 BigQuery JSON array. Each either imports with the totals summed by hand, or is
refused with a message that says what the file is and what to do, and nothing is stored."""

from __future__ import annotations

import io
import json

import openpyxl
import pytest
from sqlalchemy import func, select

from core.store.db import make_engine, transaction
from core.store.models import Dataset


@pytest.fixture
def at(data_page):
    return data_page


def _datasets(app_env) -> int:
    with transaction(make_engine(f"sqlite:///{app_env / 'app.db'}"), "default") as s:
        return s.scalar(select(func.count()).select_from(Dataset))


def _upload_and_import(at, name: str, data: bytes, mime: str = "text/csv") -> dict:
    at.file_uploader(key="data.upload").upload(name, data, mime)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    return {m.label: m.value for m in at.metric}


def _refused(at, app_env, name: str, data: bytes) -> str:
    at.file_uploader(key="data.upload").upload(name, data, "text/csv")
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert errors and not [b for b in at.button if b.label == "Import"]
    assert _datasets(app_env) == 0
    return errors[0]


def test_an_ads_manager_xlsx_imports(at, app_env):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Campaign name", "Ad set name", "Day", "Amount spent (CAD)", "Impressions", "Purchases",
                  "Purchases conversion value", "Campaign ID", "Ad set ID"])
    sheet.append(["NA", "N/A", "2026-09-01", 1250.5, 10000, 3, 300, 1, 11])
    sheet.append(["NA", "N/A", "2026-09-02", 49.5, 1000, 1, 99.99, 1, 11])
    buffer = io.BytesIO()
    book.save(buffer)
    metrics = _upload_and_import(at, "Acme-Ad-sets.xlsx", buffer.getvalue(),
                                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert metrics["spend (CAD)"] == "1,300.00"  # 1,250.50 + 49.50
    assert metrics["conversion value (CAD)"] == "399.99"  # 300 + 99.99
    assert metrics.get("ad sets") == "1" and metrics.get("campaigns") == "1"


def test_a_european_google_ads_download_imports_exactly(at, app_env):
    csv = ('Campaign report\n"1 September 2026 - 30 September 2026"\n'
           "Day,Campaign,Campaign ID,Currency code,Cost,Impr.,Clicks,Conversions,Conv. value\n"
           '13/09/2026,Marca,1,EUR,"1.234,56",1.000,94,"2,00","300,00"\n'
           '14/09/2026,Marca,1,EUR,"0,19",100,0,"0,00","0,00"\n'
           'Total: Campaigns,--,--,EUR,"1.234,75",1.100,94,"2,00","300,00"\n')
    metrics = _upload_and_import(at, "campaigns_eu.csv", csv.encode())
    assert metrics["spend (EUR)"] == "1,234.75"  # 1.234,56 + 0,19, the Total row left out


def test_a_keyword_report_is_named_and_refused(at, app_env):
    csv = ('Search keyword report\n"1 September 2026 - 30 September 2026"\n'
           "Day,Keyword,Match type,Campaign,Ad group,Currency code,Cost,Impr.,Clicks\n"
           "2026-09-01,running shoes,Phrase match,Brand,AG1,USD,10.00,100,1\n"
           "2026-09-01,[shoes],Exact match,Brand,AG1,USD,5.00,50,1\n")
    message = _refused(at, app_env, "keywords.csv", csv.encode())
    assert "keywords.csv" in message and "keyword report" in message and "Segment → Time → Day" in message


def test_meta_results_of_two_objectives_are_refused(at, app_env):
    csv = ("Campaign name,Day,Amount spent (USD),Results,Result indicator,Campaign ID\n"
           "A,2026-09-01,10,4,actions:lead,1\nB,2026-09-01,20,2,actions:offsite_conversion.fb_pixel_purchase,2\n")
    message = _refused(at, app_env, "results.csv", csv.encode())
    assert "results.csv" in message and "row 2" in message and "Result indicator" in message


def test_a_ga4_json_array_imports(at, app_env):
    def event(ts, name, session, source, medium, campaign, revenue=None):
        return {"event_timestamp": str(ts), "event_name": name, "user_pseudo_id": "u1",
                "event_params": [{"key": "ga_session_id", "value": {"string_value": None, "int_value": str(session)}}],
                "traffic_source": {"source": "google", "medium": "organic", "name": "(organic)"},
                "collected_traffic_source": {"manual_source": source, "manual_medium": medium, "manual_campaign_name": campaign},
                "ecommerce": None if revenue is None else {"purchase_revenue": revenue, "transaction_id": "T1", "currency": "PEN"},
                "event_value_in_usd": None if revenue is None else 32.1}

    events = [event(1757584800000000, "session_start", 1, "facebook", "paid_social", "NA"),
              event(1757584860000000, "purchase", 1, "facebook", "paid_social", "NA", 120.5)]
    metrics = _upload_and_import(at, "bq-results.json", json.dumps(events).encode(), "application/json")
    assert metrics["conversions"] == "1" and metrics["value (PEN)"] == "120.50"  # the purchase's own value, not 32.10 USD
