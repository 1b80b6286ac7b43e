"""Learning-phase fields read by the real adapters, offline at the transport level (the SDKs build the requests)."""

from __future__ import annotations

import datetime as dt

import pytest
import responses

from core.platforms.base import in_learning

from .test_meta import ACT, G, account, make, path, query


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as r:
        yield r


def test_meta_reads_learning_stage_info_of_each_ad_set(rsps):
    account(rsps)
    rsps.add(responses.GET, f"{G}/{ACT}/campaigns", json={"data": [
        {"id": "11", "name": "C1", "status": "ACTIVE", "daily_budget": "6000", "bid_strategy": "LOWEST_COST_WITHOUT_CAP"}]})
    rsps.add(responses.GET, f"{G}/{ACT}/adsets", json={"data": [
        {"id": "21", "name": "Learning", "status": "ACTIVE", "campaign_id": "11",
         "learning_stage_info": {"status": "LEARNING", "last_sig_edit_ts": 1764547200, "conversions": 12,
                                 "attribution_windows": ["7d_click"]}},
        {"id": "22", "name": "Done", "status": "ACTIVE", "campaign_id": "11",
         "learning_stage_info": {"status": "SUCCESS", "last_sig_edit_ts": "1764000000"}},
        {"id": "23", "name": "Limited", "status": "ACTIVE", "campaign_id": "11",
         "learning_stage_info": {"status": "FAIL"}},
        {"id": "24", "name": "No info", "status": "PAUSED", "campaign_id": "11"}]})
    by_id = {e.external_id: e for e in make().list_entities()}
    assert by_id["21"].learning_status == "LEARNING" and in_learning(by_id["21"].learning_status)
    assert by_id["21"].last_significant_edit == dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
    assert by_id["22"].learning_status == "SUCCESS" and not in_learning("SUCCESS")
    assert by_id["22"].last_significant_edit == dt.datetime.fromtimestamp(1764000000, dt.timezone.utc)
    assert (by_id["23"].learning_status, by_id["23"].last_significant_edit) == ("FAIL", None)
    assert by_id["24"].learning_status is None and by_id["11"].learning_status is None
    adset_call = next(c for c in rsps.calls if path(c).endswith("/adsets"))
    assert "learning_stage_info" in query(adset_call)["fields"].split(",")


def test_google_reads_bidding_strategy_system_status(google_fake):
    fake, g = google_fake
    fake.account.campaigns[222]["system_status"] = "LEARNING_BUDGET_CHANGE"
    fake.account.campaigns[111]["system_status"] = "ENABLED"
    ents = {(e.entity_type, e.external_id): e for e in g.list_entities()}
    assert ents[("campaign", "222")].learning_status == "LEARNING_BUDGET_CHANGE"
    assert in_learning(ents[("campaign", "222")].learning_status)
    assert ents[("campaign", "111")].learning_status == "ENABLED" and not in_learning("ENABLED")
    assert ents[("campaign", "333")].learning_status is None  # not set by the server
    query_ = next(req.query for m, req, _ in fake.requests if m == "SearchStream" and "campaign_budget.reference_count" in req.query)
    assert "campaign.bidding_strategy_system_status" in query_


@pytest.mark.parametrize("status, learning", [
    ("LEARNING", True), ("SUCCESS", False), ("FAIL", False), ("LEARNING_NEW", True), ("LEARNING_SETTING_CHANGE", True),
    ("MULTIPLE_LEARNING", True), ("LIMITED_BY_BUDGET", False), ("ENABLED", False), (None, False), ("", False)],
    ids=lambda v: str(v))
def test_which_states_count_as_learning(status, learning):
    assert in_learning(status) is learning
