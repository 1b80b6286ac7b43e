"""The export shapes marketers download by hand, written here in the shapes the platforms produce
(no third-party file is copied): Meta Ads Manager exports, Google Ads UI downloads (English and
European locale, UTF-16 tab "Excel .csv", reports of the wrong kind) and GA4 BigQuery exports as
newline-delimited JSON, a JSON array, gzip and nested Parquet. Every total is summed by hand in a
comment beside its assertion."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.ingest import IngestError, MappingNeeded, read_files

# ---------------------------------------------------------------------------------- Meta Ads Manager
META_HEADER = ("Reporting starts,Reporting ends,Campaign name,Ad set name,Ad name,Day,Amount spent (EUR),Impressions,"
               "Link clicks,Results,Result indicator,Purchases,Purchases conversion value,"
               "Website purchases conversion value,Cost per result,Currency,Account name,Campaign ID,Ad set ID,Ad ID,"
               "Delivery,Attribution setting")


def _meta_rows(days=("2026-09-01", "2026-09-02", "2026-09-03")) -> list[str]:
    rows = []
    for d in days:
        rows.append(f'2026-09-01,2026-09-30,Prospecting,NA,Ad 1,{d},"1,250.50",10000,120,3,'
                    'actions:offsite_conversion.fb_pixel_purchase,3,"300.00","300.00",416.83,EUR,Acme,111,211,311,active,'
                    '7-day click or 1-day view')
        rows.append(f"2026-09-01,2026-09-30,Leads,Leads EU,Ad 2,{d},50.25,2000,30,7,actions:lead,,,,7.18,EUR,Acme,"
                    "112,212,312,active,7-day click or 1-day view")
    return rows


def test_an_ad_level_meta_export_with_bom_separators_blanks_and_a_summary_row(write):
    summary = '2026-09-01,2026-09-30,,,,,"3,902.25",36000,450,30,,9,900,900,,EUR,,,,,,'
    path = write("meta.csv", "\ufeff" + META_HEADER + "\n" + "\n".join(_meta_rows() + [summary]) + "\n")
    r = read_files([path])
    p = r.performance
    assert r.report["format"] == ["Meta Ads Manager export"] and r.report["total_rows_dropped"] == 1
    assert set(p["entity_type"]) == {"ad"} and set(p["currency"]) == {"EUR"}
    # spend: 3 days x 1,250.50 + 3 x 50.25 = 3,751.50 + 150.75 = 3,902.25 (the summary row left out)
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("3902.25")
    # conversions are Purchases (3 a day on Ad 1, blank = 0 on the lead ad): 9, never Results' 3x3 + 3x7 = 30
    assert p["conversions"].sum() == 9 and p["conversion_value"].sum() == 900.0
    # the ad set named "NA" (North America) is a name, not a missing value
    assert sorted(p["ad_set_name"].unique()) == ["Leads EU", "NA"]


@pytest.mark.parametrize("starts, ends", [("2026-09-01", "2026-09-30"), ("2026-09-01", "2026-09-07")], ids=["month", "week"])
def test_a_meta_export_without_a_day_breakdown_says_how_to_add_it(write, starts, ends):
    header = META_HEADER.replace(",Day", "")
    row = (f'{starts},{ends},Prospecting,NA,Ad 1,"3,751.50",30000,360,9,actions:offsite_conversion.fb_pixel_purchase,9,900,900,'
           "416.83,EUR,Acme,111,211,311,active,7-day click")
    with pytest.raises(IngestError) as err:
        read_files([write("meta_range.csv", f"{header}\n{row}\n")])
    assert "Breakdown > By time > Day" in str(err.value) and f"covers {starts} to {ends}" in str(err.value)
    assert (err.value.row, err.value.column) == (1, "Reporting ends")


RESULTS_HEADER = "Reporting starts,Reporting ends,Campaign name,Day,Amount spent (USD),Impressions,Results,Result indicator,Campaign ID"


def test_results_of_leads_and_purchases_are_never_summed_as_one_objective(write):
    rows = ["2026-09-01,2026-09-01,A,2026-09-01,10,100,4,actions:lead,1",
            "2026-09-01,2026-09-01,B,2026-09-01,20,100,2,actions:offsite_conversion.fb_pixel_purchase,2"]
    with pytest.raises(IngestError) as err:
        read_files([write("results.csv", RESULTS_HEADER + "\n" + "\n".join(rows) + "\n")])
    assert "lead on 1 row(s)" in str(err.value) and "--map conversions=" in str(err.value)
    assert (err.value.file, err.value.row, err.value.column) == ("results.csv", 2, "Result indicator")


def test_results_that_are_link_clicks_are_not_conversions(write):
    rows = ["2026-09-01,2026-09-01,B,2026-09-01,20,100,2,actions:offsite_conversion.fb_pixel_purchase,2",
            "2026-09-01,2026-09-01,B,2026-09-02,20,100,3,actions:offsite_conversion.fb_pixel_purchase,2",
            "2026-09-01,2026-09-01,C,2026-09-01,30,100,50,actions:link_click,3"]
    r = read_files([write("results.csv", RESULTS_HEADER + "\n" + "\n".join(rows) + "\n")])
    p = r.performance
    # purchases 2 + 3 = 5; the 50 link clicks count 0 (were 55)
    assert p["conversions"].sum() == 5 and p.set_index("external_id")["conversions"].get("3") == 0
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("70")  # 20 + 20 + 30
    assert any("link_click on 1" in w for w in r.report["warnings"])
    assert any("Results of offsite_conversion.fb_pixel_purchase" in w for w in r.report["warnings"])


def test_meta_spend_currency_from_the_header_or_the_column(write):
    for currency in ("USD", "CAD", "AUD", "PEN"):
        csv = f"Campaign name,Day,Amount spent ({currency}),Impressions,Campaign ID\nNA,2026-09-01,10.10,100,1\nNA,2026-09-02,0.01,5,1\n"
        p = read_files([write(f"m_{currency}.csv", csv)]).performance
        assert set(p["currency"]) == {currency} and set(p["campaign_name"]) == {"NA"}
        assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("10.11")  # 10.10 + 0.01
    csv = "Campaign name,Day,Amount spent,Currency,Impressions,Campaign ID\nA,2026-09-01,10,CAD,100,1\n"
    assert set(read_files([write("m_col.csv", csv)]).performance["currency"]) == {"CAD"}


# ---------------------------------------------------------------------------------- Google Ads UI
EU_CAMPAIGNS = [
    "Campaign report",
    "1 September 2026 - 30 September 2026",
    "Day\tCampaign\tCampaign ID\tCurrency code\tCost\tImpr.\tCTR\tClicks\tConversions\tConv. value",
    "13/09/2026\tMarca\t1\tEUR\t1.234,56\t1.000\t9,38%\t94\t2,00\t300,00",
    "14/09/2026\tMarca\t1\tEUR\t0,19\t100\t0,00%\t0\t0,00\t0,00",
    "Total: Campaigns\t--\t--\tEUR\t1.234,75\t1.100\t8,55%\t94\t2,00\t300,00",
]


def _check_eu(p):
    p = p.sort_values("date")
    assert [d.strftime("%Y-%m-%d") for d in p["date"]] == ["2026-09-13", "2026-09-14"]  # day first
    # cost 1.234,56 + 0,19 = 1,234.75 exactly (never 100x or 1/100 off)
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1234.75")
    assert p["spend"].tolist() == [1234.56, 0.19]
    # impressions 1.000 + 100 = 1,100 (the dot groups thousands: it was read as 1 + 100 = 101)
    assert p["impressions"].tolist() == [1000, 100] and p["impressions"].sum() == 1100
    assert p["conversions"].sum() == 2.0 and p["conversion_value"].sum() == 300.0


def test_a_european_google_ads_download_reads_decimal_commas_and_dotted_thousands(write):
    lines = [ln.replace("\t", ",") if i < 2 else ",".join(f'"{c}"' if "," in c else c for c in ln.split("\t"))
             for i, ln in enumerate(EU_CAMPAIGNS)]
    lines[1] = f'"{EU_CAMPAIGNS[1]}"'
    r = read_files([write("campaigns_eu.csv", "\n".join(lines) + "\n")])
    _check_eu(r.performance)
    assert r.report["total_rows_dropped"] == 1


def test_the_utf16_tab_separated_excel_csv_variant(write):
    r = read_files([write("campaigns_eu_excel.csv", "\r\n".join(EU_CAMPAIGNS) + "\r\n", encoding="utf-16")])
    _check_eu(r.performance)


def test_an_english_download_with_total_rows_and_dashes(write):
    csv = ('\ufeffCampaign report\n"January 1, 2025 - January 23, 2025"\n'
           "Day,Campaign,Campaign ID,Currency code,Cost,Impr.,Clicks,Conversions,Conv. value\n"
           '2025-01-01,NA Search,1,USD,"1,234.56","10,000",100,5.00,"2,000.00"\n'
           "2025-01-02,NA Search,1,USD,0.19,100,--,0.00,0.00\n"
           'Total: Account,--,--,USD,"1,234.75","10,100",100,5.00,"2,000.00"\n'
           'Total: Search,--,--,USD,"1,234.75","10,100",100,5.00,"2,000.00"\n')
    r = read_files([write("campaigns.csv", csv)])
    p = r.performance
    assert r.report["total_rows_dropped"] == 2
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1234.75")  # 1,234.56 + 0.19
    assert p["impressions"].sum() == 10_100 and p["clicks"].sum() == 100  # '--' clicks read as 0


WRONG_REPORTS = {
    "locations": ("Matched locations report", "Matched location,Location type,Campaign,Currency code,Cost,Impr.,Clicks,Conversions",
                  '"Lima, Peru",City,Brand,PEN,10.00,100,1,1', "locations report"),
    "keywords": ("Search keyword report", "Keyword status,Keyword,Match type,Campaign,Ad group,Currency code,Cost,Impr.,Clicks",
                 "Enabled,running shoes,Phrase match,Brand,AG1,USD,10.00,100,1", "keyword report"),
    "search-terms": ("Search terms report", "Search term,Match type,Campaign,Ad group,Keyword,Currency code,Cost,Impr.,Clicks",
                     "red shoes,Phrase match,Brand,AG1,shoes,USD,10.00,100,1", "search terms report"),
}


@pytest.mark.parametrize("kind", list(WRONG_REPORTS))
@pytest.mark.parametrize("with_day", [False, True], ids=["no-day", "by-day"])
def test_a_report_of_the_wrong_kind_is_named_and_the_right_one_said(write, kind, with_day):
    title, header, row, what = WRONG_REPORTS[kind]
    if with_day:  # segmented by day it used to import with exit 0 (keywords summed into their ad group)
        header, row = "Day," + header, "2026-09-01," + row
    csv = f'{title}\n"1 September 2026 - 30 September 2026"\n{header}\n{row}\n'
    with pytest.raises(IngestError) as err:
        read_files([write(f"{kind}.csv", csv)])
    assert not isinstance(err.value, MappingNeeded)  # no column mapping can make it performance
    assert f"Google Ads {what}" in str(err.value) and "Segment → Time → Day" in str(err.value)
    assert err.value.file == f"{kind}.csv"


# ------------------------------------------------------------------------------- GA4 BigQuery export
T0 = 1757584800000000  # 2025-09-11 10:00:00 UTC, in microseconds


def _ga4_event(user, ts, name, session, source, medium, campaign, revenue=None, currency=None, transaction=None, usd=None):
    """One event as `bq extract --destination_format NEWLINE_DELIMITED_JSON` writes it: INT64 as strings,
    nulls kept, event_params as key/value records."""
    def param(key, string=None, integer=None):
        return {"key": key, "value": {"string_value": string, "int_value": integer, "float_value": None, "double_value": None}}

    return {
        "event_date": "20250911", "event_timestamp": str(ts), "event_name": name,
        "event_params": [param("ga_session_id", integer=str(session)), param("page_location", "https://shop.test/")],
        "event_previous_timestamp": None, "event_value_in_usd": usd, "event_bundle_sequence_id": "1", "user_id": None,
        "user_pseudo_id": user, "user_first_touch_timestamp": None,
        "traffic_source": {"name": "(organic)", "medium": "organic", "source": "google"},  # the user's FIRST source
        "collected_traffic_source": {"manual_campaign_id": None, "manual_campaign_name": campaign, "manual_source": source,
                                     "manual_medium": medium, "gclid": None},
        "session_traffic_source_last_click": {"manual_campaign": {"campaign_id": None, "campaign_name": campaign,
                                                                  "source": source, "medium": medium}},
        "ecommerce": None if revenue is None else {"total_item_quantity": "1", "purchase_revenue_in_usd": usd,
                                                   "purchase_revenue": revenue, "transaction_id": transaction, "currency": currency},
        "items": [] if revenue is None else [{"item_id": "SKU1", "price": revenue, "quantity": "1"}],
        "device": {"category": "mobile"}, "geo": {"country": "Peru"},
    }


GA4_EVENTS = [
    _ga4_event("u1", T0, "session_start", 1757584800, "facebook", "paid_social", "NA"),
    _ga4_event("u1", T0 + 60_000_000, "page_view", 1757584800, "facebook", "paid_social", "NA"),
    _ga4_event("u1", T0 + 5 * 3_600_000_000, "session_start", 1757602800, "google", "cpc", "brand"),
    _ga4_event("u1", T0 + 5 * 3_600_000_000 + 120_000_000, "purchase", 1757602800, "google", "cpc", "brand",
               revenue=120.5, currency="PEN", transaction="T1", usd=32.1),
    _ga4_event("u2", T0 + 1_000_000, "session_start", 1757584801, None, None, None),
    _ga4_event("u2", T0 + 2_000_000, "purchase", 1757584801, None, None, None, revenue=1000.0, currency="EUR",
               transaction="T2", usd=1080.0),
]


def _as_parquet(events, path):
    def typed(e):  # BigQuery's Parquet keeps INT64 as integers
        e = json.loads(json.dumps(e))
        for key in ("event_timestamp", "event_bundle_sequence_id"):
            e[key] = int(e[key])
        for p in e["event_params"]:
            if p["value"]["int_value"] is not None:
                p["value"]["int_value"] = int(p["value"]["int_value"])
        return e

    pq.write_table(pa.Table.from_pylist([typed(e) for e in events]), path)
    return path


@pytest.mark.parametrize("shape", ["ndjson", "array", "ndjson.gz", "parquet"])
def test_a_ga4_bigquery_export_in_every_shape(write, tmp_path, shape):
    ndjson = "".join(json.dumps(e) + "\n" for e in GA4_EVENTS)
    path = {
        "ndjson": lambda: write("events.json", ndjson),
        "array": lambda: write("events_array.json", json.dumps(GA4_EVENTS, indent=1)),  # was refused: "give JSON lines"
        "ndjson.gz": lambda: write("events.json.gz", ndjson),
        "parquet": lambda: _as_parquet(GA4_EVENTS, tmp_path / "events.parquet"),
    }[shape]()
    r = read_files([path])
    assert r.mapping.profile == "ga4"
    touch, conv = r.touchpoints, r.conversions
    # sessions from ga_session_id: u1 has two (facebook/paid_social/NA, then google/cpc/brand), u2 one (direct)
    assert sorted(zip(touch["user_key"], touch["source"].fillna("-"), touch["campaign"].fillna("-"))) == [
        ("u1", "facebook", "NA"), ("u1", "google", "brand"), ("u2", "-", "-")]
    assert set(touch["source"].dropna()) & {"(organic)", "organic"} == set()  # traffic_source (first-ever) is no touch
    # each purchase's own value and currency: 120.50 PEN and 1,000.00 EUR (not event_value_in_usd 32.10 / 1,080.00)
    assert sorted(zip(conv["conversion_id"], conv["value"], conv["currency"])) == [("T1", 120.5, "PEN"), ("T2", 1000.0, "EUR")]
    assert r.report["value"] == {"EUR": 1000.0, "PEN": 120.5}


def test_a_json_array_that_is_not_rows_is_refused_with_where(write):
    with pytest.raises(IngestError, match="element is int, not an object") as err:
        read_files([write("a.json", "[1, 2]")])
    assert err.value.row == 1
    with pytest.raises(IngestError, match=r"is not valid JSON \(line 1"):
        read_files([write("b.json", '[{"a": 1},')])
    with pytest.raises(IngestError, match="empty JSON array"):
        read_files([write("c.json", "[]")])


def test_a_json_array_too_large_to_parse_whole_asks_for_json_lines(write, monkeypatch):
    from core.ingest import readers

    monkeypatch.setattr(readers, "JSON_ARRAY_LIMIT", 1_000)
    rows = "[" + ",".join(json.dumps({"user_id": f"u{i}", "ts": "2026-09-01T10:00:00Z"}) for i in range(40)) + "]"
    with pytest.raises(IngestError, match="not read whole: export it as newline-delimited JSON") as err:
        read_files([write("big.json", rows)])
    assert err.value.file == "big.json"


def test_gzip_ga4_export_is_read_whatever_its_name(write):
    data = gzip.compress("".join(json.dumps(e) + "\n" for e in GA4_EVENTS).encode())
    r = read_files([write("000000000000", data)])  # bq extract's shard names carry no extension
    assert len(r.conversions) == 2


def test_a_one_row_download_under_a_title_and_a_date_range_is_read(write):
    """Title, date range, header and a single row: the one-field lines tied the header's field count
    (2 lines each), so the title was taken for the header ("has 8 fields where the header has 1")."""
    csv = ('Campaign report\n"1 September 2026 - 1 September 2026"\n'
           "Day,Campaign,Campaign ID,Currency code,Cost,Impr.,Clicks,Conversions\n"
           '2026-09-01,"Brand, Peru",1,PEN,"1,000.50",100,1,1\n')
    p = read_files([write("one.csv", csv)]).performance
    assert p["campaign_name"].tolist() == ["Brand, Peru"] and p["spend"].tolist() == [1000.5]


# ------------------------------------------------------------------------------------- Excel (.xlsx)
def _workbook(path, rows, title="Sheet1"):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_a_meta_ads_manager_xlsx_export_reads_like_its_csv(tmp_path):
    """Ads Manager's default download: numbers as numbers, blanks as empty cells, a sheet named as Meta names it."""
    header = ["Reporting starts", "Reporting ends", "Campaign name", "Ad set name", "Day", "Amount spent (EUR)", "Impressions",
              "Results", "Result indicator", "Purchases", "Purchases conversion value", "Campaign ID", "Ad set ID"]
    rows = [header]
    for day in ("2026-09-01", "2026-09-02"):
        rows.append(["2026-09-01", "2026-09-30", "NA", "N/A", day, 1250.5, 10000, 3, "actions:offsite_conversion.fb_pixel_purchase",
                     3, 300, 111, 211])
        rows.append(["2026-09-01", "2026-09-30", "Leads", "None", day, 50.25, 2000, 7, "actions:lead", None, None, 112, 212])
    r = read_files([_workbook(tmp_path / "Acme-Ad-sets-Sep-1-2026-Sep-30-2026.xlsx", rows, "Raw Data Report")])
    p = r.performance
    assert r.report["format"] == ["Meta Ads Manager export"] and set(p["currency"]) == {"EUR"}
    # spend 2 x 1,250.50 + 2 x 50.25 = 2,601.50; purchases 3 + 3 = 6 (the lead ad set's blank Purchases: 0)
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("2601.50")
    assert p["conversions"].sum() == 6 and p["conversion_value"].sum() == 600.0
    assert sorted(p["campaign_name"].unique()) == ["Leads", "NA"] and sorted(p["ad_set_name"].unique()) == ["N/A", "None"]


def test_a_google_ads_xlsx_download_with_title_lines_and_date_cells(tmp_path):
    import datetime as dt

    rows = [["Campaign report"], ["1 September 2026 - 30 September 2026"],
            ["Day", "Campaign", "Campaign ID", "Currency code", "Cost", "Impr.", "Clicks", "Conversions", "Conv. value"],
            [dt.datetime(2026, 9, 13), "Marca", 1, "EUR", 1234.56, 1000, 94, 2, 300],
            [dt.datetime(2026, 9, 14), "Marca", 1, "EUR", 0.19, 100, None, 0, 0],
            ["Total: Campaigns", "--", "--", "EUR", 1234.75, 1100, 94, 2, 300]]
    r = read_files([_workbook(tmp_path / "Campaign report.xlsx", rows)])
    p = r.performance.sort_values("date")
    assert [d.strftime("%Y-%m-%d") for d in p["date"]] == ["2026-09-13", "2026-09-14"]
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1234.75")  # 1,234.56 + 0.19, the Total row dropped
    assert p["impressions"].sum() == 1100 and r.report["total_rows_dropped"] == 1


def test_a_zip_that_is_no_workbook_is_refused(write):
    with pytest.raises(IngestError, match="not a readable Excel workbook"):
        read_files([write("broken.xlsx", b"PK\x03\x04\x14\x00\x06\x00xl/ not really")])


def test_a_workbook_that_expands_past_the_limit_is_refused_before_it_is_read(tmp_path):
    """A .xlsx is a ZIP archive: a small upload can expand to gigabytes of sheet XML (a ZIP bomb). What it
    expands to is held to the file limit before openpyxl reads a cell."""
    from core.ingest.readers import read_source

    rows = [["Day", "Campaign", "Cost"]] + [["2026-09-01", "x" * 200, 1.0]] * 2_000
    data = _workbook(tmp_path / "big.xlsx", rows).read_bytes()
    assert len(data) < 100_000  # repeated cells compress well
    with pytest.raises(IngestError, match="expands to .* over the 200,000-byte limit"):
        read_source(data, name="big.xlsx", size_limit=200_000)
    assert read_source(data, name="big.xlsx", size_limit=2_000_000).frame.shape[0] == 2_000


def test_consent_mode_events_without_a_user_are_left_out_and_said(write):
    """Consent mode: cookieless events carry no user_pseudo_id (the whole import failed: "user id is missing")."""
    events = [dict(e) for e in GA4_EVENTS]
    events.insert(2, {**_ga4_event(None, T0 + 90_000_000, "page_view", 99, "google", "cpc", "brand")})
    events.insert(3, {**_ga4_event(None, T0 + 95_000_000, "purchase", 99, "google", "cpc", "brand", revenue=10.0,
                                   currency="PEN", transaction="T0")})
    r = read_files([write("consent.json", "".join(json.dumps(e) + "\n" for e in events))])
    assert any("2 event(s) have no user_pseudo_id" in w and "1 of them purchase(s)" in w for w in r.report["warnings"])
    assert r.report["value"] == {"EUR": 1000.0, "PEN": 120.5}  # the anonymous 10.00 PEN purchase is not in a journey


@pytest.mark.parametrize("first, second", [
    ("Mon, Sep 1, 2026", "Tue, Sep 2, 2026"),                     # a weekday before the day (was: not a readable date)
    ("Monday, September 1, 2026", "Tuesday, September 2, 2026"),
    ("Sep 1, 2026", "Sep 2, 2026"), ("01.09.2026", "02.09.2026"), ("2026/09/01", "2026/09/02"),
])
def test_google_ads_day_writings_and_currency_signs(write, first, second):
    csv = ('Campaign report\n"September 1, 2026 - September 2, 2026"\nDay,Campaign,Currency code,Cost,Impr.,Clicks\n'
           f'"{first}",A,USD,US$1.00,10,1\n"{second}",A,USD,"S/ 2.50",10,1\n')  # 'US$', Peru's 'S/' (were: not a number)
    p = read_files([write("days.csv", csv)]).performance.sort_values("date")
    assert [d.strftime("%Y-%m-%d") for d in p["date"]] == ["2026-09-01", "2026-09-02"]
    assert p["spend"].tolist() == [1.0, 2.5]


def test_a_range_start_without_its_end_is_warned(write):
    """'Reporting starts' kept, 'Reporting ends' deleted: nothing says the row is one day (it was read silently)."""
    csv = "Reporting starts,Campaign name,Campaign ID,Amount spent (EUR),Impressions\n2026-09-01,A,1,300,1000\n"
    r = read_files([write("starts.csv", csv)])
    assert any("no end of the range" in w and "Breakdown > By time > Day" in w for w in r.report["warnings"])
