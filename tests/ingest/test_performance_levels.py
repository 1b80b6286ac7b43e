"""Performance exports at every level: Google Ads UI downloads without a day, ad groups identified
by campaign and name, only identical rows as duplicates, levels named, parents stored and read back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.ingest import MappingNeeded, import_files, load_performance, read_files
from core.ingest.performance import describe_levels

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"

NO_DAY = (
    "Campaign report\n"
    '"January 1, 2024 - January 31, 2024"\n'
    "Campaign,Campaign state,Currency code,Cost,Impr.,Clicks,Conversions\n"
    'Brand,Enabled,USD,"1,234.56","12,345",300,10\n'
    "Generic,Enabled,USD,10.00,100,3,0\n"
    'Total: Account,--,USD,"1,244.56","12,445",303,10\n'
)


def test_a_google_ads_download_without_a_day_says_how_to_add_it(write):
    with pytest.raises(MappingNeeded) as err:
        read_files([write("campaigns.csv", NO_DAY)])
    text = str(err.value)
    assert "no day column" in text and "Segment → Time → Day" in text and "date" in err.value.proposals[0].missing


def test_a_meta_export_over_a_range_says_how_to_break_it_down(write):
    csv = "Campaign name,Amount spent (EUR),Impressions,Results\nProspecting,100.50,10000,5\n"
    with pytest.raises(MappingNeeded, match="Breakdown → By time → Day"):
        read_files([write("meta.csv", csv)])


AD_GROUPS = (
    "Ad group report\n"
    '"March 1, 2024 - March 2, 2024"\n'
    "Day,Campaign,Ad group,Currency code,Cost,Impr.,Clicks\n"
    "2024-03-01,Brand UK,Exact,GBP,10.00,100,5\n"
    "2024-03-01,Brand DE,Exact,GBP,20.00,200,6\n"
    "2024-03-01,Brand UK,Broad,GBP,5.00,50,2\n"
    "2024-03-02,Brand UK,Exact,GBP,11.00,110,5\n"
    "2024-03-02,Brand DE,Exact,GBP,21.00,210,7\n"
)


def test_same_named_ad_groups_in_two_campaigns_are_two_ad_groups(write):
    r = read_files([write("adgroups.csv", AD_GROUPS)])
    p = r.performance
    assert set(p["entity_type"]) == {"ad_group"}
    assert sorted(p["external_id"].unique()) == ["Brand DE / Exact", "Brand UK / Broad", "Brand UK / Exact"]
    assert r.report["entities"] == 3 and r.report["entities_text"] == "3 ad groups in 2 campaigns"
    assert p.groupby("campaign_name")["spend"].sum().to_dict() == {"Brand DE": 41.0, "Brand UK": 26.0}
    assert any("its campaign and name identify it" in w for w in r.report["warnings"])


def test_only_rows_identical_in_every_column_are_duplicates(write):
    # (a keyword report is refused as such, tests/ingest/test_export_shapes.py: a Top vs. Other segment here)
    csv = ("Day,Campaign,Campaign ID,Top vs. Other,Cost,Impr.,Clicks\n"
           "2024-03-01,Brand,1,Google search: Top,5.00,50,2\n"
           "2024-03-01,Brand,1,Google search: Other,5.00,50,2\n"  # same figures, another position: spend of its own
           "2024-03-01,Brand,1,Google search: Other,5.00,50,2\n")  # a true duplicate row
    r = read_files([write("positions.csv", csv)])
    assert r.performance["spend"].sum() == pytest.approx(10.0) and r.performance["clicks"].sum() == 4
    assert r.report["duplicates_dropped"] == 1 and r.report["rows_merged"] == 1


def test_device_rows_of_a_raw_connector_table_are_summed_into_the_day(write, tmp_path):
    raw = pd.read_csv(PUBLIC / "fivetran_google_ads_ad_group_stats.csv", dtype=str)
    desktop = raw.assign(device=raw["device"].map({"MOBILE": "DESKTOP", "DESKTOP": "MOBILE"}), _fivetran_id=raw["_fivetran_id"] + "x")
    both = tmp_path / "ad_group_stats.csv"
    pd.concat([raw, desktop]).to_csv(both, index=False)
    r = read_files([both])
    assert len(r.performance) == 15 and r.performance["spend"].sum() == pytest.approx(2 * 3156.84)
    assert any("summed over their" in w and "device" in w and "ad_network_type" in w for w in r.report["warnings"])


def test_fivetran_ad_group_report_names_its_level(write):
    csv = ("date_day,platform,account_id,campaign_id,campaign_name,ad_group_id,ad_group_name,spend,clicks,impressions\n"
           + "".join(f"2024-05-0{d},google_ads,g1,c{1 + (i % 2)},Camp {1 + (i % 2)},ag{i},Group {i},{5 + i},1,10\n"
                     for i in range(5) for d in (1, 2)))
    r = read_files([write("ad_reporting__ad_group_report.csv", csv)])
    assert r.report["entities_text"] == "5 ad groups in 2 campaigns"
    assert set(r.performance["campaign_id"]) == {"c1", "c2"}
    assert describe_levels(r.performance) == "5 ad groups in 2 campaigns"


def test_parent_columns_are_stored_and_read_back(engine):
    dataset_id, report = import_files(engine, "default", [PUBLIC / "fivetran_facebook_ads_basic_ad.csv",
                                                           PUBLIC / "fivetran_facebook_ads_ad_history.csv"])
    back = load_performance(engine, "default", [dataset_id])
    row = back[back["external_id"] == "6215762744671"].iloc[0]
    assert (row["entity_type"], row["ad_set_id"], row["campaign_id"]) == ("ad", "6215762732871", "6215762731271")
    assert back["spend"].sum() == pytest.approx(643.63)


# Meta's daily breakdown: a Day column, with the report's window in "Reporting starts/ends" on every row
# (header as public integrations of Ads Manager exports show it).
META_DAILY = (
    "Account name,Campaign name,Day,Impressions,Frequency,Currency,Amount spent (EUR),Purchases,"
    "Purchases conversion value,Link clicks,Reporting starts,Reporting ends\n"
    'Shop DE,Prospecting,2026-10-01,12000,1.2,EUR,"1,234.56",12,"2,400.00",300,2026-10-01,2026-10-31\n'
    'Shop DE,Prospecting,2026-10-02,11000,1.3,EUR,"1,100.10",10,"2,050.00",280,2026-10-01,2026-10-31\n'
    'Shop DE,Retargeting,2026-10-01,5000,2.2,EUR,300.00,8,"1,600.00",120,2026-10-01,2026-10-31\n'
)


def test_a_meta_daily_breakdown_reads_its_day_column_not_the_report_window(write):
    r = read_files([write("meta_daily.csv", META_DAILY)])
    p = r.performance
    assert sorted(p["date"].astype(str).str[:10].unique()) == ["2026-10-01", "2026-10-02"]
    assert p.groupby("campaign_name")["spend"].sum().round(2).to_dict() == {"Prospecting": 2334.66, "Retargeting": 300.0}
    assert round(float(p["conversion_value"].sum()), 2) == 6050.0


def test_a_meta_range_without_a_day_column_is_still_refused(write):
    wide = ("Reporting starts,Reporting ends,Campaign name,Amount spent (USD),Impressions\n"
            "2026-09-28,2026-10-04,Sales,818.40,26400\n")
    with pytest.raises(Exception, match="not one day"):
        read_files([write("weekly.csv", wide)])
