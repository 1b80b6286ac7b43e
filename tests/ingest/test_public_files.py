"""Real public files (tests/fixtures/public, see its README): each kind goes from its raw file to the
canonical frames with totals checked by hand, and none produces a plausible wrong table.

Hand checks (a spreadsheet sum over the raw columns, recorded here so a failure says what changed):
* campaign_stats: 16 rows, one campaign (id 9935249409), sum(cost_micros) = 231,330,000 -> 231.33;
  clicks 280, impressions 1,854; no conversion at all (it once became "16 journey conversions").
* ad_group_stats: 15 rows of ad group 23289504013 in campaign 344106493, cost 3,156.84,
  conversions 14.483334.
* basic_ad: 10 rows, 4 ads, spend 643.63; ad_history (12 versions) puts each ad in its own ad set
  and campaign, e.g. ad 6215762744671 -> ad set 6215762732871 -> campaign 6215762731271.
* ga4_purchase_events: 23 purchases: rows 1-10 hold their value in the ecommerce JSON
  (58.02 + 35.04 + ... + 156.04 = 723.38), rows 11-23 in the value column (2,719.07): 3,442.45 GBP,
  while event_value_in_usd sums to 723.38 (only rows 1-10 have it).
* shopify order_enhanced: 23 orders, sum(total_price) = 3,442.45 GBP (the same shop as the GA4
  file); utm_source/medium give google cpc 4, google organic 5, email 3, social 8, direct 3.
* fivetran shopify order: 3 GBP orders (2.80 + 3.79 + 5.39 = 11.98) and 5 USD orders (615.03).
* ra_attribution orders: 23 lines of 9 orders, sum(REVENUE_LOCAL_CURRENCY) = 250.92 GBP; order 7 =
  9.45 + 32.06 + 12.90 = 54.41.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.ingest import MappingNeeded, read_files
from core.journeys import build_journeys_with_report, journeys_frame

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"


def read(*names, **kwargs):
    return read_files([PUBLIC / n for n in names], **kwargs)


# ----------------------------------------------------------------------------- raw connectors
def test_raw_google_ads_campaign_stats_is_campaign_performance_not_journeys():
    r = read("fivetran_google_ads_campaign_stats.csv")
    assert r.kind == "performance" and r.mapping.profile == "connector_stats"
    p = r.performance
    assert len(p) == 16 and set(p["entity_type"]) == {"campaign"} and set(p["external_id"]) == {"9935249409"}
    assert set(p["platform"]) == {"google"} and set(p["account_id"]) == {"2121450128"}
    assert p["spend"].sum() == pytest.approx(231.33) and p["clicks"].sum() == 280 and p["impressions"].sum() == 1854
    assert p["conversions"].sum() == 0
    assert r.report["entities_text"] == "1 campaign"


def test_raw_ad_group_stats_keep_their_campaign_and_take_names_from_history():
    alone = read("fivetran_google_ads_ad_group_stats.csv")
    p = alone.performance
    assert set(p["entity_type"]) == {"ad_group"} and set(p["campaign_id"]) == {"344106493"} and set(p["ad_set_id"]) == {"23289504013"}
    assert p["spend"].sum() == pytest.approx(3156.84) and p["conversions"].sum() == pytest.approx(14.483334)
    assert alone.report["entities_text"] == "1 ad group in 1 campaign"
    named = read("fivetran_google_ads_ad_group_stats.csv", "fivetran_google_ads_ad_group_history.csv").performance
    assert set(named["entity_name"]) == {"G+b561Y/O/hceLQhm/Cd6Q=="} and set(named["campaign_name"]) == {"WLcyudjLopZCAwVCG42LtA=="}
    assert named["spend"].sum() == pytest.approx(3156.84), "a history table adds names, never rows or money"


def test_raw_ad_stats_read_the_ad_group_from_its_resource_name():
    p = read("fivetran_google_ads_ad_stats.csv").performance
    assert set(p["entity_type"]) == {"ad"} and set(p["external_id"]) == {"514818869462"}
    assert set(p["ad_set_id"]) == {"100031227574"} and set(p["campaign_id"]) == {"10059986060"}  # customers/…/adGroups/100031227574


def test_facebook_basic_ad_rolls_up_through_ad_history():
    alone = read("fivetran_facebook_ads_basic_ad.csv")
    assert alone.report["entities_text"] == "4 ads" and alone.performance["spend"].sum() == pytest.approx(643.63)
    assert any("ad_history" in w for w in alone.report["warnings"]), "without the history the ads cannot be rolled up: say so"
    r = read("fivetran_facebook_ads_basic_ad.csv", "fivetran_facebook_ads_ad_history.csv")
    p = r.performance
    assert r.report["entities_text"] == "4 ads in 4 ad sets in 4 campaigns" and set(p["platform"]) == {"meta"}
    row = p[p["external_id"] == "6215762744671"].iloc[0]
    assert (row["ad_set_id"], row["campaign_id"], row["entity_name"]) == ("6215762732871", "6215762731271", "v1")
    assert p["spend"].sum() == pytest.approx(643.63) and len(p) == 10


def test_a_history_table_alone_is_refused_with_what_to_add():
    with pytest.raises(Exception, match="history table only names the rows"):
        read("fivetran_facebook_ads_ad_history.csv")


# ------------------------------------------------------------------------------------------- GA4
def test_ga4_purchases_keep_their_own_value_and_currency():
    r = read("ga4_purchase_events.csv")
    assert r.kind == "journeys" and r.mapping.profile == "ga4"
    c = r.conversions
    assert len(c) == 23 and set(c["currency"]) == {"GBP"}
    assert r.report["value"] == {"GBP": pytest.approx(3442.45)}, "not the 723.38 'USD' of event_value_in_usd"
    assert c.set_index("conversion_id").loc["14", "value"] == pytest.approx(289.26)  # a row whose value is in the value column


def test_ga4_traffic_source_is_one_first_touch_never_each_events_touch():
    r = read("ga4_purchase_events.csv")
    t = r.touchpoints
    assert t.groupby("user_key", observed=True).size().max() == 1, "traffic_source gives ONE touch per user"
    first = t[t["user_key"] == "8392746501.234567"].iloc[0]
    assert (first["source"], first["medium"], first["campaign"]) == ("facebook", "social", "summer_sale")
    assert first["ts"] == pd.Timestamp(1657123456, unit="s", tz="UTC")  # user_first_touch_timestamp, not the purchase time


def test_ga4_event_stream_is_sessionized_by_session_source():
    r = read("ga4_purchase_events.csv", "ga4_ecommerce_funnel_events.csv")
    rep = r.report
    assert rep["touches_are"] == "one per session" and rep["touch_events"] > rep["sessions"] == rep["touchpoints"]
    t = r.touchpoints
    user = t[t["user_key"] == "3956592627.102561"]
    # first-ever touch (google organic, 2022-06-23), a visit with no source (direct), two email visits
    assert user["channel"].astype(str).tolist() == ["organic", "direct", "email", "email"]
    assert user["campaign"].tolist()[2:] == ["welcome_series", "vip_exclusive"]
    journeys, _ = build_journeys_with_report(r.touchpoints, r.conversions)
    frame = journeys_frame(journeys).set_index("conversion_id")
    assert frame.loc["1", "path"] == "organic > direct" and frame.loc["5", "path"] == "(no touch)"  # the funnel of order 5 comes after it
    assert frame.loc["8", "path"] == "email"


def test_fivetran_ga4_export_connector_columns_and_repeated_header():
    r = read("fivetran_ga4_export_event.csv")
    assert r.mapping.profile == "ga4"
    assert r.report["value"] == {"USD": pytest.approx(29.99)}
    assert any("repeats column" in w for w in r.report["warnings"]) and any("only a USD-converted" in w for w in r.report["warnings"])
    assert set(r.touchpoints["source_system"]) == {"ga4"} and len(r.conversions) == 1


# ----------------------------------------------------------------------------------------- orders
def test_shopify_orders_are_conversions_with_their_landing_touch():
    r = read("shopify_orders_enhanced.csv")
    assert r.mapping.profile == "orders" and len(r.conversions) == 23
    assert r.report["value"] == {"GBP": pytest.approx(3442.45)}
    assert r.report["channels"] == {"organic_social": 8, "organic": 5, "google": 4, "direct": 3, "email": 3}
    t, c = r.touchpoints, r.conversions
    merged = c.merge(t, on=["user_key", "ts"])
    assert len(merged) == 23, "each order's landing touch is at the order's own time"


def test_orders_in_two_currencies_are_never_added():
    r = read("fivetran_shopify_order.csv")
    assert r.report["value"] == {"USD": pytest.approx(615.03), "GBP": pytest.approx(11.98)}
    assert any("2 currencies" in w for w in r.report["warnings"])


def test_crm_order_lines_are_summed_per_order_and_join_the_event_file():
    r = read("ra_attribution_events.csv", "ra_attribution_orders.csv")
    c = r.conversions.set_index("conversion_id")
    assert len(c) == 9 and c.loc["7", "value"] == pytest.approx(54.41)
    assert r.report["value"] == {"GBP": pytest.approx(250.92)} and r.report["order_lines_merged"] == 14
    journeys, rep = build_journeys_with_report(r.touchpoints, r.conversions)
    frame = journeys_frame(journeys).set_index("conversion_id")
    # order 3 (2021-09-05) follows two snapchat.com visits of 2021-09-03; internal referrers do not count
    assert frame.loc["3", "path"] == "organic_social > organic_social"
    assert rep.no_touch_conversions == 8 and rep.conversions == 9


def test_orders_without_any_touch_are_refused_not_credited_to_no_touch():
    with pytest.raises(Exception, match=r"9 conversion\(s\) but no touchpoints") as err:
        read("ra_attribution_orders.csv")
    assert "(no touch)" in str(err.value)


# ---------------------------------------------------------------------------------- collectors
def test_snowplow_atomic_events():
    r = read("snowplow_sp_event.csv", "snowplow_sp_event_update.csv")
    assert {m.profile for m in r.mappings.values()} == {"snowplow"}
    t = r.touchpoints.set_index("user_key")
    assert t.loc["domain_userid_2", "channel"] == "organic_social"  # mkt_source facebook / social
    assert t.loc["domain_userid_3", "channel"].tolist()[0] == "organic"  # refr_source Google, refr_medium search
    assert r.report["touch_events"] == 9 and r.report["sessions"] == 5


def test_segment_pages_table_has_no_event_column():
    r = read("segment_pages.csv")
    assert r.mapping.profile == "segment"
    assert r.touchpoints["channel"].tolist() == ["organic_social"] and r.touchpoints["campaign"].tolist() == ["autumn_collection_2015"]


def test_an_unrecognized_table_asks_for_a_mapping_and_maps():
    with pytest.raises(MappingNeeded) as err:
        read("snowplow_sessions_derived.csv")
    proposal = err.value.proposals[0]
    assert set(proposal.missing) == {"user_key", "ts"} and "session_start" in proposal.reason
    r = read("snowplow_sessions_derived.csv", mapping_overrides={"user_key": "user_snowplow_domain_id", "ts": "session_start"})
    assert r.kind == "journeys" and len(r.touchpoints) == 5
    assert r.touchpoints.set_index("user_key").loc["domain_userid_2", "channel"] == "organic_social"
