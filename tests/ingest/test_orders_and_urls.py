"""Orders with their landing touch (utm_* of landing_site, click ids, referring_site), URL parsing, and
Snowplow transactions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.ingest import read_files
from core.ingest.urls import traffic_from_urls, url_host, url_param

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"

SHOPIFY = (
    "id,customer_id,created_at,currency,total_price,landing_site,referring_site,cancelled_at,test\n"
    "1,c1,2024-04-01 10:00:00,EUR,50.00,/products/x?utm_source=facebook&utm_medium=paid_social&utm_campaign=spring%20sale,https://l.facebook.com/,,false\n"
    "2,c2,2024-04-01 11:00:00,EUR,20.00,/?gclid=Cj0KCQ,https://www.google.com/,,false\n"
    "3,c3,2024-04-01 12:00:00,USD,30.00,/,https://www.google.com/search?q=x,,false\n"
    "4,c4,2024-04-01 13:00:00,EUR,99.00,/,,,false\n"
    "5,c5,2024-04-01 14:00:00,EUR,10.00,/,,2024-04-02 09:00:00,false\n"
    "6,c6,2024-04-01 15:00:00,EUR,10.00,/,,,true\n"
)


def test_shopify_orders_take_their_landing_touch(write):
    r = read_files([write("orders_export.csv", SHOPIFY)])
    assert r.mapping.profile == "orders"
    t = r.touchpoints.set_index("user_key")
    assert t.loc["c1", "channel"] == "meta" and t.loc["c1", "campaign"] == "spring sale"  # utm_* of landing_site, decoded
    assert t.loc["c2", "channel"] == "google"  # gclid: a Google Ads click
    assert t.loc["c3", "channel"] == "organic"  # referred by google.com without a click id
    assert t.loc["c4", "channel"] == "direct"
    assert r.report["value"] == {"EUR": 169.0, "USD": 30.0} and r.report["orders_left_out"] == 2
    assert any("cancelled" in w for w in r.report["warnings"]) and any("test order" in w for w in r.report["warnings"])


@pytest.mark.parametrize("url,param,expected", [
    ("https://x.io/p?utm_source=News%20Letter&utm_medium=email", "utm_source", "News Letter"),
    ("utm_medium=social&utm_source=facebook", "utm_source", "facebook"),
    ("/x?UTM_SOURCE=Bing", "utm_source", "Bing"),
    ("https://x.io/p#utm_campaign=frag", "utm_campaign", "frag"),
    ("https://x.io/p?utm_source=", "utm_source", None),
    ("not a url", "utm_source", None),
], ids=["full-url", "bare-query", "upper-case", "fragment", "empty", "text"])
def test_url_parameters(url, param, expected):
    got = url_param(pd.Series([url], dtype="str"), param).iloc[0]
    assert (None if pd.isna(got) else got) == expected


def test_hosts_and_internal_referrers():
    hosts = url_host(pd.Series(["https://www.google.com/search", "m.facebook.com", "http://user@shop.example:8080/x", None], dtype="str"))
    assert hosts.tolist()[:3] == ["google.com", "facebook.com", "shop.example"] and pd.isna(hosts.iloc[3])
    landing = pd.Series(["https://shop.example/a", "https://shop.example/b"], dtype="str")
    referrer = pd.Series(["https://shop.example/home", "https://news.example/post"], dtype="str")
    out = traffic_from_urls(landing, referrer, landing.index)
    assert pd.isna(out.loc[0, "source"]) and (out.loc[1, "source"], out.loc[1, "medium"]) == ("news.example", "referral")


def test_snowplow_transactions_are_conversions(tmp_path):
    """The public Snowplow events with a transaction event added in Snowplow's own tr_* columns."""
    events = pd.read_csv(PUBLIC / "snowplow_sp_event.csv", dtype=str, keep_default_na=False)
    sale = events[events["domain_userid"] == "domain_userid_2"].iloc[[0]].copy()
    sale["event"] = sale["event_name"] = "transaction"
    sale["derived_tstamp"] = sale["collector_tstamp"] = "2018-01-01 12:10:00.000"
    sale["event_id"] = "tr-1"
    for k, v in {"tr_orderid": "order-9", "tr_total": "49.90", "tr_currency": "EUR"}.items():
        events[k] = ""
        sale[k] = v
    path = tmp_path / "atomic_events.csv"
    pd.concat([events, sale]).to_csv(path, index=False)
    r = read_files([path])
    assert r.mapping.profile == "snowplow"
    assert r.conversions["conversion_id"].tolist() == ["order-9"] and r.report["value"] == {"EUR": 49.9}
    assert r.touchpoints.set_index("user_key").loc["domain_userid_2", "channel"] == "organic_social"
