"""Google Ads adapter: the real GoogleAdsClient builds every request; a local fake gRPC server answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import grpc
import pytest

from core.platforms.base import (
    AdPlatform,
    AuthError,
    ChangeRequest,
    PermanentPlatformError,
    RateLimitError,
    TransientPlatformError,
)

from .conftest import GOOGLE_CUSTOMER, GOOGLE_DEV_TOKEN, GOOGLE_LOGIN
from .fake_google import Abort, GoogleAdsFailure, ads_error

BUDGETS = "MutateCampaignBudgets"


def mutates(fake, method):
    return [req for m, req, _ in fake.requests if m == method]


def test_is_an_adplatform_and_sends_auth_metadata(google_fake):
    fake, g = google_fake
    assert isinstance(g, AdPlatform) and fake.requests == []  # isinstance made no request
    assert g.account_info()["currency"] == "USD" and g.currency == "USD"
    method, req, md = fake.requests[0]
    assert method == "SearchStream" and req.customer_id == GOOGLE_CUSTOMER
    assert "FROM customer" in req.query
    assert md["developer-token"] == GOOGLE_DEV_TOKEN
    assert md["login-customer-id"] == GOOGLE_LOGIN
    assert md["authorization"] == "Bearer test-access-token"


def test_list_entities_parses_stream_batches(google_fake):
    fake, g = google_fake
    ents = {(e.entity_type, e.external_id): e for e in g.list_entities()}
    assert len(ents) == 6  # 4 campaigns arrive in 2 stream messages
    brand = ents[("campaign", "111")]
    assert (brand.status, brand.daily_budget, brand.bid_strategy, brand.shared_budget) == ("ACTIVE", Decimal(50), "MANUAL_CPC", False)
    assert ents[("campaign", "333")].shared_budget and ents[("campaign", "333")].status == "PAUSED"
    group = ents[("ad_group", "5001")]
    assert (group.parent_id, group.bid) == ("111", Decimal("1.25"))
    queries = [req.query for m, req, _ in fake.requests if m == "SearchStream"]
    assert any("campaign_budget.reference_count" in q and "FROM campaign" in q for q in queries)


def test_fetch_performance_micros_and_plain_value(google_fake):
    fake, g = google_fake
    rows = g.fetch_performance(dt.date(2026, 11, 1), dt.date(2026, 11, 1))
    by = {(r.entity_type, r.external_id, r.date): r for r in rows}
    assert len(rows) == 3
    r = by[("campaign", "111", dt.date(2026, 11, 1))]
    assert r.spend == Decimal("12.345678")  # cost_micros / 1e6, exact
    assert (r.impressions, r.clicks, r.conversions) == (1000, 50, 3.5)
    assert r.conversion_value == Decimal("210.75")  # conversions_value is not micros
    assert ("ad_group", "5001", dt.date(2026, 11, 1)) in by
    q = [req.query for m, req, _ in fake.requests if "segments.date" in req.query]
    assert q and all("BETWEEN '2026-11-01' AND '2026-11-01'" in x for x in q)


def test_apply_budget_explicit_mask_micros_and_read_back(google_fake):
    fake, g = google_fake
    res = g.apply(ChangeRequest("k1", "campaign", "111", "budget", Decimal("50"), Decimal("60.50"), "USD"))
    assert res.ok and res.read_back == Decimal("60.5")
    (req,) = mutates(fake, BUDGETS)
    assert req.customer_id == GOOGLE_CUSTOMER and req.partial_failure and not req.validate_only
    (op,) = req.operations
    assert op.update.resource_name == f"customers/{GOOGLE_CUSTOMER}/campaignBudgets/901"
    assert op.update.amount_micros == 60_500_000
    assert list(op.update_mask.paths) == ["amount_micros"]
    assert fake.account.budgets[901]["amount_micros"] == 60_500_000
    assert res.response["resource_names"] == [op.update.resource_name]
    # the mutate's request id (trailing metadata), not the read-back's
    mutate_n = [m for m, _, _ in fake.requests].index("MutateCampaignBudgets") + 1
    assert res.request_id == f"req-{mutate_n}" and res.response["request_id"] == res.request_id


def test_apply_bid_and_status_with_explicit_masks(google_fake):
    fake, g = google_fake
    assert g.apply(ChangeRequest("b", "ad_group", "5001", "bid", Decimal("1.25"), Decimal("1.40"))).read_back == Decimal("1.4")
    (req,) = mutates(fake, "MutateAdGroups")
    assert req.operations[0].update.cpc_bid_micros == 1_400_000
    assert list(req.operations[0].update_mask.paths) == ["cpc_bid_micros"]
    res = g.apply(ChangeRequest("s", "campaign", "111", "status", "ACTIVE", "PAUSED"))
    assert res.ok and res.read_back == "PAUSED"
    (creq,) = mutates(fake, "MutateCampaigns")
    assert creq.operations[0].update.status.name == "PAUSED" and list(creq.operations[0].update_mask.paths) == ["status"]
    assert fake.account.campaigns[111]["status"] == "PAUSED"


def test_shared_budget_refused_unless_opted_in(google_fake):
    fake, g = google_fake
    change = ChangeRequest("k", "campaign", "333", "budget", Decimal("30"), Decimal("35"))
    with pytest.raises(PermanentPlatformError, match="shared") as info:
        g.apply(change)
    assert info.value.code == "refused" and mutates(fake, BUDGETS) == []
    g.allow_shared_budgets = True
    assert g.apply(change).read_back == Decimal("35")
    assert fake.account.budgets[903]["amount_micros"] == 35_000_000


def test_cpc_bid_refused_on_smart_bidding(google_fake):
    fake, g = google_fake
    with pytest.raises(PermanentPlatformError, match="MAXIMIZE_CONVERSION_VALUE bidding, which ignores cpc_bid_micros"):
        g.apply(ChangeRequest("b", "ad_group", "5002", "bid", None, Decimal("2")))
    assert mutates(fake, "MutateAdGroups") == []


def test_validate_only_partial_failure_mapped_by_operation_index(google_fake):
    fake, g = google_fake
    fake.reject[f"customers/{GOOGLE_CUSTOMER}/campaignBudgets/902"] = (
        "campaign_budget_error", "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT", "Budget is not a multiple of the minimum unit.")
    out = g.validate([
        ChangeRequest("ok-budget", "campaign", "111", "budget", Decimal("50"), Decimal("55")),
        ChangeRequest("bad-budget", "campaign", "222", "budget", Decimal("120"), Decimal("130")),
        ChangeRequest("status", "ad_group", "5001", "status", "ACTIVE", "PAUSED"),
        ChangeRequest("smart-bid", "ad_group", "5002", "bid", None, Decimal("1")),
    ])
    assert [(v.key, v.ok) for v in out] == [("ok-budget", True), ("bad-budget", False), ("status", True), ("smart-bid", False)]
    assert out[1].code == "campaign_budget_error:NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"
    assert "multiple of the minimum unit" in out[1].message and out[3].code == "refused"
    (req,) = mutates(fake, BUDGETS)  # both budgets in one request, in order
    assert req.validate_only and req.partial_failure
    assert [op.update.amount_micros for op in req.operations] == [55_000_000, 130_000_000]
    assert mutates(fake, "MutateAdGroups")[0].validate_only
    assert fake.account.budgets[901]["amount_micros"] == 50_000_000  # nothing written
    assert fake.account.ad_groups[5001]["status"] == "ENABLED"


def test_apply_partial_failure_is_permanent_with_request_id(google_fake):
    fake, g = google_fake
    fake.reject[f"customers/{GOOGLE_CUSTOMER}/campaignBudgets/901"] = (
        "campaign_budget_error", "MONEY_AMOUNT_TOO_LARGE", "Too large.")
    with pytest.raises(PermanentPlatformError) as info:
        g.apply(ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("999999")))
    assert info.value.code == "campaign_budget_error:MONEY_AMOUNT_TOO_LARGE" and info.value.message == "Too large."
    assert info.value.request_id and info.value.request_id.startswith("req-")


def test_google_ads_exception_maps_code_message_request_id(google_fake):
    fake, g = google_fake
    failure = GoogleAdsFailure(errors=[ads_error("range_error", "TOO_LOW", "Too low.", index=0)])
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.INVALID_ARGUMENT, "bad", failure, request_id="req-xyz")]
    with pytest.raises(PermanentPlatformError) as info:
        g.apply(ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("0.01")))
    assert (info.value.code, info.value.message, info.value.request_id) == ("range_error:TOO_LOW", "Too low.", "req-xyz")
    assert not isinstance(info.value, TransientPlatformError)


def test_authentication_error_is_auth_error(google_fake):
    fake, g = google_fake
    failure = GoogleAdsFailure(errors=[ads_error("authentication_error", "OAUTH_TOKEN_EXPIRED", "expired")])
    fake.aborts["SearchStream"] = [Abort(grpc.StatusCode.UNAUTHENTICATED, "expired", failure)]
    with pytest.raises(AuthError, match="reconnect") as info:
        g.account_info()
    assert info.value.code == "authentication_error:OAUTH_TOKEN_EXPIRED"
    assert GOOGLE_DEV_TOKEN not in str(info.value)


def test_resource_exhausted_is_rate_limit_with_retry_hint(google_fake):
    fake, g = google_fake
    temp = GoogleAdsFailure(errors=[ads_error("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED", "slow down", retry_seconds=42)])
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", temp)]
    change = ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("55"))
    with pytest.raises(RateLimitError) as info:
        g.apply(change)
    assert info.value.retry_after == 42.0 and info.value.code == "quota_error:RESOURCE_TEMPORARILY_EXHAUSTED"
    # a bare RESOURCE_EXHAUSTED status with a RetryInfo detail
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", retry_seconds=30)]
    with pytest.raises(RateLimitError) as info:
        g.apply(change)
    assert info.value.retry_after == 30.0
    # daily exhaustion is not retried
    daily = GoogleAdsFailure(errors=[ads_error("quota_error", "RESOURCE_EXHAUSTED", "daily quota")])
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", daily)]
    with pytest.raises(PermanentPlatformError, match="daily quota"):
        g.apply(change)
    assert len(mutates(fake, BUDGETS)) == 3  # the adapter itself never retried a write


def test_unavailable_read_retried_briefly_write_not(google_fake):
    fake, g = google_fake
    fake.aborts["SearchStream"] = [Abort(grpc.StatusCode.UNAVAILABLE, "try again")]
    assert g.account_info()["name"] == "Fake Shop"
    assert [m for m, _, _ in fake.requests] == ["SearchStream", "SearchStream"]
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.UNAVAILABLE, "try again")]
    with pytest.raises(TransientPlatformError):
        g.apply(ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("55")))
    assert len(mutates(fake, BUDGETS)) == 1


def test_from_credentials_needs_no_network_and_digits_only_login():
    from core.platforms.credentials import GoogleCredentials
    from core.platforms.google import GOOGLE_API_VERSION, GoogleAdsPlatform

    creds = GoogleCredentials(developer_token="dev-token-123456", client_id="cid.apps.googleusercontent.com",
                              client_secret="client-secret-123456", refresh_token="1//refresh-token-abcdef",
                              customer_id="123-456-7890", login_customer_id="987-654-3210", allow_shared_budgets=True)
    g = GoogleAdsPlatform.from_credentials(creds)
    assert g.account_id == "1234567890" and g.client.login_customer_id == "9876543210"
    assert g.client.version == GOOGLE_API_VERSION and g.allow_shared_budgets
    assert g.client.credentials.refresh_token == "1//refresh-token-abcdef" and not g.client.credentials.token
    assert "refresh-token" not in repr(creds) and "client-secret" not in repr(creds)


def test_no_secret_in_sdk_logs_even_at_debug(google_fake):
    import io
    import logging

    fake, g = google_fake
    failure = GoogleAdsFailure(errors=[ads_error("range_error", "TOO_LOW", "Too low.", index=0)])
    fake.aborts[BUDGETS] = [Abort(grpc.StatusCode.INVALID_ARGUMENT, "bad", failure)]
    sdk_logger = logging.getLogger("google.ads.googleads.client")
    buf, level = io.StringIO(), sdk_logger.level
    handler = logging.StreamHandler(buf)
    sdk_logger.addHandler(handler)
    sdk_logger.setLevel(logging.DEBUG)
    try:
        g.list_entities()
        with pytest.raises(PermanentPlatformError):
            g.apply(ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("0.01")))
    finally:
        sdk_logger.removeHandler(handler)
        sdk_logger.setLevel(level)
    text = buf.getvalue()
    assert "MutateCampaignBudgets" in text and "login-customer-id" in text  # the SDK logged the calls in detail
    assert GOOGLE_DEV_TOKEN not in text and "test-access-token" not in text
