"""Data set summaries count each account's money once: campaign rows, not also their ad sets."""

from __future__ import annotations

import pandas as pd
import pytest

from core.summary import money_by_currency, performance_summary


def _row(day, platform, account, level, entity, spend, value, currency="USD", segment_type="", segment_value=""):
    return dict(date=day, platform=platform, account_id=account, entity_type=level, external_id=entity, spend=spend,
                conversion_value=value, conversions=1.0, currency=currency, segment_type=segment_type,
                segment_value=segment_value)


@pytest.fixture
def synced():
    rows = []
    for day in pd.date_range("2026-01-01", periods=3):
        rows.append(_row(day, "meta", "a", "campaign", "c1", 100.0, 300.0))
        rows += [_row(day, "meta", "a", "ad_set", s, 50.0, 150.0) for s in ("s1", "s2")]
        rows += [_row(day, "meta", "a", "campaign", "c1", 60.0, 200.0, segment_type="device", segment_value="mobile"),
                 _row(day, "meta", "a", "campaign", "c1", 40.0, 100.0, segment_type="device", segment_value="desktop")]
        rows.append(_row(day, "google", "g", "ad_group", "ag1", 20.0, 40.0))  # an account exported at ad-group level only
    return pd.DataFrame(rows)


def test_levels_and_breakdowns_are_not_added_on_top_of_totals(synced):
    summary = performance_summary(synced)
    assert summary["spend"] == pytest.approx(3 * (100 + 20))
    assert summary["conversion value"] == pytest.approx(3 * (300 + 40))
    # entities are counted per level, never an ad group called a campaign (the google account names no campaign)
    assert (summary["campaigns"], summary["ad sets"], summary["ad groups"], summary["days"]) == (1, 2, 1, 3)


def test_per_currency_money_uses_the_same_rule(synced):
    eur = synced.assign(currency=synced["platform"].map({"meta": "EUR", "google": "USD"}))
    money = money_by_currency(eur).set_index("currency")
    assert money.loc["EUR", "spend"] == pytest.approx(300.0) and money.loc["USD", "spend"] == pytest.approx(60.0)


def test_roas_is_unknown_when_the_data_records_no_value(synced):
    """A file without a value column reads as zeros: its ROAS is a dash, never a confident 0."""
    summary = performance_summary(synced.assign(conversion_value=0.0))
    assert summary["spend"] > 0 and summary["ROAS"] is None
    assert money_by_currency(synced.assign(conversion_value=0.0))["ROAS"].isna().all()
    assert performance_summary(synced)["ROAS"] > 0
