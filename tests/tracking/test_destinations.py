"""Each destination with the real SDK (or HTTP client) building the request, answered at the transport level."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qs

import pytest
import responses

from core.tracking import config
from core.tracking.dispatch import Dispatcher

from .conftest import WS, add_conversions, deliveries, purchase

PIXEL = "1234567890"
GRAPH = "https://graph.facebook.com"
SECRETS = {"meta_capi_access_token": "EAAB-token-123456", "meta_app_secret": "app-secret-654321", "ga4_api_secret": "ga4-secret-abcdef",
           "google_client_id": "cid", "google_client_secret": "csecret-123456", "google_refresh_token": "refresh-123456",
           "google_developer_token": "dev-token-123456"}


def meta_on(engine, **settings):
    config.save_destination(engine, WS, "meta", enabled=True, test_mode=settings.pop("test_mode", False),
                            settings={"pixel_id": PIXEL, **settings})


# ------------------------------------------------------------------------------------------ Meta
@responses.activate
def test_meta_request_exact_url_and_body(engine):
    meta_on(engine)
    add_conversions(engine, [purchase(1, phone="+44 7911 123456", fbc="fb.1.1764000000000.AbCdEf", fbp="fb.1.1764000000000.42")])
    responses.post(f"{GRAPH}/v26.0/{PIXEL}/events", json={"events_received": 1, "messages": [], "fbtrace_id": "TRACE1"})
    import sys

    hook = sys.excepthook
    counts = Dispatcher(engine, secrets=SECRETS).run_once()
    assert counts == {"sent": 1}
    assert sys.excepthook is hook  # the SDK's crash reporter was never installed
    (call,) = responses.calls
    assert call.request.url.startswith(f"{GRAPH}/v26.0/{PIXEL}/events")
    form = {k: v[0] for k, v in parse_qs(call.request.body).items()}
    query = {k: v[0] for k, v in parse_qs(call.request.url.split("?", 1)[1]).items()}
    assert query["access_token"] == SECRETS["meta_capi_access_token"] and "appsecret_proof" in query
    assert "test_event_code" not in form
    (event,) = [json.loads(e) for e in json.loads(form["data"])]
    assert event["event_name"] == "Purchase" and event["event_id"] == "evt-1" and isinstance(event["event_time"], int)
    assert event["action_source"] == "website" and event["event_source_url"] == "https://shop.example.com/thanks"
    ud = event["user_data"]
    import hashlib

    assert ud["em"] == [hashlib.sha256(b"buyer.1@gmail.com").hexdigest()]  # no Gmail rule for Meta
    assert ud["ph"] == [hashlib.sha256(b"447911123456").hexdigest()]
    assert ud["client_ip_address"] == "203.0.113.7" and ud["client_user_agent"] == "Mozilla/5.0 test"
    assert ud["fbc"] == "fb.1.1764000000000.AbCdEf" and ud["fbp"] == "fb.1.1764000000000.42"  # never hashed, case kept
    assert event["custom_data"] == {"value": 11.0, "currency": "eur", "order_id": "order-1"}
    (row,) = deliveries(engine, "meta")
    assert row["status"] == "sent" and row["trace_id"] == "TRACE1" and row["idempotency_key"] == "evt-1|Purchase"


@responses.activate
def test_meta_test_mode_sends_test_event_code_and_ldu(engine):
    meta_on(engine, test_mode=True, test_event_code="TEST123", ldu="california")
    add_conversions(engine, [purchase(1)])
    responses.post(f"{GRAPH}/v26.0/{PIXEL}/events", json={"events_received": 1, "messages": [], "fbtrace_id": "T"})
    Dispatcher(engine, secrets=SECRETS).run_once()
    form = {k: v[0] for k, v in parse_qs(responses.calls[0].request.body).items()}
    event = json.loads(json.loads(form["data"])[0])
    assert form["test_event_code"] == "TEST123"
    assert event["data_processing_options"] == ["LDU"] and event["data_processing_options_country"] == 1
    assert event["data_processing_options_state"] == 1000
    assert deliveries(engine, "meta")[0]["status"] == "test"


def test_meta_rejected_batch_is_bisected_to_the_bad_event(engine, http_fakes, monkeypatch):
    monkeypatch.setenv(config.ENDPOINT_ENV["meta"], http_fakes.url)
    meta_on(engine)
    add_conversions(engine, [purchase(i) for i in range(7)] + [purchase(99, type="bad")])
    http_fakes.meta.reject_names = {"bad"}
    Dispatcher(engine, secrets=SECRETS).run_once()
    rows = {r["idempotency_key"]: r for r in deliveries(engine, "meta")}
    assert rows["evt-99|bad"]["status"] == "failed" and rows["evt-99|bad"]["code"] == "100/2804003"
    assert all(r["status"] == "sent" for k, r in rows.items() if k != "evt-99|bad")
    assert http_fakes.meta.counted() == {(f"evt-{i}", "Purchase") for i in range(7)}
    assert len(http_fakes.meta.requests) > 1  # split, not sent one by one from the start


def test_meta_transient_error_retries_later_with_the_same_event_id(engine, http_fakes, monkeypatch):
    monkeypatch.setenv(config.ENDPOINT_ENV["meta"], http_fakes.url)
    meta_on(engine)
    add_conversions(engine, [purchase(1)])
    http_fakes.meta.fail_next = 5  # more than the quick retry
    clock = [dt.datetime.now(dt.timezone.utc)]
    d = Dispatcher(engine, secrets=SECRETS, clock=lambda: clock[0])
    assert d.run_once() == {"retry": 1}
    (row,) = deliveries(engine, "meta")
    assert row["status"] == "retry" and row["attempts"] == 1 and "temporarily" in row["message"]
    http_fakes.meta.fail_next = 0
    assert d.run_once() == {}  # not due yet (backoff)
    clock[0] += dt.timedelta(hours=2)
    assert d.run_once() == {"sent": 1}
    ids = [e["event_id"] for r in http_fakes.meta.requests for e in r["events"]]
    assert set(ids) == {"evt-1"} and http_fakes.meta.counted() == {("evt-1", "Purchase")}


def test_old_conversions_expire_and_unconsented_are_skipped(engine, http_fakes, monkeypatch):
    monkeypatch.setenv(config.ENDPOINT_ENV["meta"], http_fakes.url)
    meta_on(engine)
    now = dt.datetime.now(dt.timezone.utc)
    old = (now - dt.timedelta(days=8)).isoformat()
    add_conversions(engine, [purchase(1, timestamp=old), purchase(2, ad_user_data=False), purchase(3, ad_user_data=None)])
    statuses = {r["idempotency_key"]: r["status"] for r in deliveries(engine, "meta")}
    assert statuses == {"evt-1|Purchase": "expired", "evt-2|Purchase": "skipped_consent", "evt-3|Purchase": "skipped_consent"}
    # a row that ages past its deadline while waiting is expired by the dispatcher, not sent
    add_conversions(engine, [purchase(4, timestamp=(now - dt.timedelta(days=6, hours=23)).isoformat())])
    later = now + dt.timedelta(hours=2)
    Dispatcher(engine, secrets=SECRETS, clock=lambda: later).run_once()
    assert {r["idempotency_key"]: r["status"] for r in deliveries(engine, "meta")}["evt-4|Purchase"] == "expired"
    assert http_fakes.meta.requests == []


def test_missing_secret_is_reported_not_sent(engine):
    meta_on(engine)
    add_conversions(engine, [purchase(1)])
    counts = Dispatcher(engine, secrets={"unrelated": "value"}).run_once()
    row = deliveries(engine, "meta")[0]
    assert counts == {"not_configured": 1} and row["status"] == "retry" and row["code"] == "not_configured" and "meta_capi_access_token" in row["message"]


# ------------------------------------------------------------------------------------------ GA4
def test_ga4_live_and_test_mode(engine, http_fakes, monkeypatch):
    monkeypatch.setenv(config.ENDPOINT_ENV["ga4"], http_fakes.url)
    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=True, settings={"measurement_id": "G-TEST1234"})
    add_conversions(engine, [purchase(1, ga_client_id="111.222"), purchase(2, ad_user_data=False)])
    Dispatcher(engine, secrets=SECRETS).run_once()
    assert [r["path"] for r in http_fakes.ga4.requests] == ["/debug/mp/collect"] * 2  # validation endpoint in test mode
    assert {r["status"] for r in deliveries(engine, "ga4")} == {"test"} and http_fakes.ga4.counted() == set()
    by_client = {r["body"]["client_id"]: r for r in http_fakes.ga4.requests}
    first = by_client["111.222"]
    assert first["query"] == {"measurement_id": "G-TEST1234", "api_secret": SECRETS["ga4_api_secret"]}
    body = first["body"]
    assert body["client_id"] == "111.222" and body["consent"]["ad_user_data"] == "GRANTED"
    import hashlib

    assert body["user_data"]["sha256_email_address"] == [hashlib.sha256(b"buyer1@gmail.com").hexdigest()]  # Google's rule
    (event,) = body["events"]
    assert event["name"] == "purchase" and event["params"]["transaction_id"] == "order-1" and event["params"]["currency"] == "EUR"
    second = by_client["u2"]["body"]
    assert second["consent"]["ad_user_data"] == "DENIED" and "user_data" not in second and second["client_id"] == "u2"


# ------------------------------------------------------------------------------------------ Google Ads API
@pytest.fixture
def google_ads(tls, engine):
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    from core.platforms.google import GOOGLE_API_VERSION
    from core.tracking.destinations.google import GoogleAdsSender
    from tests.platforms.conftest import default_google_account
    from tests.platforms.fake_google import FakeGoogleAds, start_server

    fake = FakeGoogleAds("1234567890", default_google_account())
    server, port = start_server(fake, *tls)
    client = GoogleAdsClient(credentials=Credentials(token="test-access-token"), developer_token="devtoken-ABCDEFGHIJ",
                             endpoint=f"127.0.0.1:{port}", version=GOOGLE_API_VERSION, use_proto_plus=True)
    config.save_destination(engine, WS, "google", enabled=True, test_mode=False,
                            settings={"api": "google_ads", "customer_id": "1234567890", "conversion_actions": {"purchase": "777"}})
    sender = GoogleAdsSender(client, "1234567890", {"purchase": "777"})
    yield fake, sender
    server.stop(grace=None)


def test_google_ads_upload_partial_failure_and_already_in_use(engine, google_ads):
    fake, sender = google_ads
    add_conversions(engine, [purchase(1), purchase(2), purchase(3)])
    fake.reject_orders["order-2"] = ("CLICK_NOT_FOUND", "The click was not found")
    fake.conversions[("customers/1234567890/conversionActions/777", "order-3")] = 1  # landed before (a crash re-send)
    counts = Dispatcher(engine, sender_factory=lambda dest: sender).run_once()
    assert counts == {"sent": 2, "failed": 1}
    (method, req, _md), = [r for r in fake.requests if r[0] == "UploadClickConversions"]
    assert req.partial_failure is True and req.validate_only is False and req.customer_id == "1234567890"
    c1 = req.conversions[0]
    assert c1.gclid == "gclid-1" and c1.order_id == "order-1" and c1.conversion_action.endswith("/conversionActions/777")
    assert c1.conversion_date_time.endswith("+00:00") and c1.currency_code == "EUR" and c1.conversion_value == 11.0
    assert c1.consent.ad_user_data.name == "GRANTED"
    import hashlib

    assert c1.user_identifiers[0].hashed_email == hashlib.sha256(b"buyer1@gmail.com").hexdigest()
    rows = {r["idempotency_key"]: r for r in deliveries(engine, "google")}
    assert rows["order-1"]["status"] == "sent"
    assert rows["order-2"]["status"] == "failed" and rows["order-2"]["code"] == "CLICK_NOT_FOUND"
    assert rows["order-3"]["status"] == "sent" and "ORDER_ID_ALREADY_IN_USE" in rows["order-3"]["code"]


def test_google_ads_validate_only_in_test_mode(engine, google_ads):
    fake, sender = google_ads
    config.save_destination(engine, WS, "google", test_mode=True)
    add_conversions(engine, [purchase(1)])
    Dispatcher(engine, sender_factory=lambda dest: sender).run_once()
    (_, req, _), = [r for r in fake.requests if r[0] == "UploadClickConversions"]
    assert req.validate_only is True and fake.conversions == {}
    assert deliveries(engine, "google")[0]["status"] == "test"


# ------------------------------------------------------------------------------------------ Data Manager
@pytest.fixture
def data_manager(tls, engine):
    from google.ads import datamanager_v1
    from google.auth.credentials import AnonymousCredentials

    from core.tracking.destinations.google import DataManagerSender

    from .fakes import FakeDataManager, start_grpc

    fake = FakeDataManager()
    server, port = start_grpc(fake, *tls)
    client = datamanager_v1.IngestionServiceClient(credentials=AnonymousCredentials(),
                                                   client_options={"api_endpoint": f"127.0.0.1:{port}"})
    config.save_destination(engine, WS, "google", enabled=True, test_mode=False,
                            settings={"customer_id": "1234567890", "login_customer_id": "9876543210",
                                      "conversion_actions": {"*": "555"}})
    yield fake, DataManagerSender(client, "1234567890", {"*": "555"}, login_customer_id="9876543210")
    server.stop(grace=None)


def test_data_manager_ingest_events_request(engine, data_manager):
    fake, sender = data_manager
    add_conversions(engine, [purchase(1, phone="+1 650 555 1212"), purchase(2, gclid=None, gbraid="gb-2")])
    assert Dispatcher(engine, sender_factory=lambda dest: sender).run_once() == {"sent": 2}
    (call,) = fake.rec.requests
    req = call["request"]
    assert req.validate_only is False and req.encoding.name == "HEX"
    (dest,) = req.destinations
    assert dest.operating_account.account_id == "1234567890" and dest.operating_account.account_type.name == "GOOGLE_ADS"
    assert dest.login_account.account_id == "9876543210" and dest.product_destination_id == "555"
    e1, e2 = req.events
    assert e1.transaction_id == "order-1" and e1.ad_identifiers.gclid == "gclid-1" and e2.ad_identifiers.gbraid == "gb-2"
    assert e1.currency == "EUR" and e1.conversion_value == 11.0 and e1.consent.ad_user_data.name == "CONSENT_GRANTED"
    import hashlib

    ids = {k: getattr(u, k) for u in e1.user_data.user_identifiers for k in ("email_address", "phone_number") if getattr(u, k)}
    assert ids == {"email_address": hashlib.sha256(b"buyer1@gmail.com").hexdigest(),
                   "phone_number": hashlib.sha256(b"+16505551212").hexdigest()}
    assert e1.event_timestamp.timestamp() > 0
    rows = deliveries(engine, "google")
    assert {r["trace_id"] for r in rows} == {"dm-request-1"}
    assert sender.request_status("dm-request-1") == "SUCCESS"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    fake.statuses["dm-request-1"] = "FAILED"
    assert Dispatcher(engine, sender_factory=lambda dest: sender, clock=lambda: later).confirm_data_manager(WS) == 1
    assert {r["status"] for r in deliveries(engine, "google")} == {"failed"}


def test_data_manager_all_or_nothing_is_bisected(engine, data_manager):
    fake, sender = data_manager
    add_conversions(engine, [purchase(i) for i in range(6)])
    fake.reject_transaction_ids = {"order-4"}
    counts = Dispatcher(engine, sender_factory=lambda dest: sender).run_once()
    assert counts == {"sent": 5, "failed": 1}
    assert fake.rec.counted() == {f"order-{i}" for i in range(6) if i != 4}
    failed = [r for r in deliveries(engine, "google") if r["status"] == "failed"]
    assert failed[0]["idempotency_key"] == "order-4" and "conversion_value" in failed[0]["message"]


def test_quick_retry_tries_a_transient_failure_once_more_and_never_a_rejection(monkeypatch):
    import asyncio

    from core.tracking.destinations import base

    monkeypatch.setattr(base, "QUICK_WAIT", 0.01)
    calls = []

    def flaky(failures, exc=base.Transient("blip", "503")):
        def call():
            calls.append(1)
            if len(calls) <= failures:
                raise exc
            return "ok"
        return call

    assert base.quick_retry(flaky(1)) == "ok" and len(calls) == 2
    calls.clear()
    with pytest.raises(base.Transient):
        base.quick_retry(flaky(5))
    assert len(calls) == 2  # two attempts, then the outbox's backoff takes over
    calls.clear()
    with pytest.raises(base.Rejected):
        base.quick_retry(flaky(5, base.Rejected("bad event", "100")))
    assert len(calls) == 1
    calls.clear()

    async def run(failures):
        sync = flaky(failures)

        async def call():
            return sync()
        return await base.quick_retry_async(call)

    assert asyncio.run(run(1)) == "ok" and len(calls) == 2
    calls.clear()
    with pytest.raises(base.Transient):
        asyncio.run(run(3))
    assert len(calls) == 2
