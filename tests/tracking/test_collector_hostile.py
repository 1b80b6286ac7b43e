"""The collector against hostile and careless input (found by an adversarial pass): a 4xx naming the
field, nothing stored, never a 500 or 503 for bad input, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.store.db import transaction
from core.store.models import TrackedConversion, TrackingRunJob

from .conftest import WS
from .test_collector import counts

HOSTILE = [
    # int() of a huge-exponent number: a MemoryError (503) or minutes of CPU on the event loop
    ("/v1/events", b'{"user_id": "u", "timestamp": 1e999999999999999999}', "timestamp"),
    ("/v1/events", b'{"user_id": "u", "timestamp": -1e999999999999999999}', "timestamp"),
    # valid ISO 8601 whose UTC falls outside the datetime range: OverflowError (503)
    ("/v1/events", b'{"user_id": "u", "timestamp": "9999-12-31T23:59:59-14:00"}', "timestamp"),
    ("/v1/events", b'{"user_id": "u", "timestamp": "0001-01-01T00:00:00+14:00"}', "timestamp"),
    # not e-mail addresses, yet hashed and sent to Meta, and counted as carrying an e-mail
    ("/v1/conversions", b'{"user_id": "u", "email": "@"}', "email"),
    ("/v1/conversions", b'{"user_id": "u", "email": "jane@"}', "email"),
    ("/v1/conversions", b'{"user_id": "u", "email": "jane@localhost"}', "email"),
    ("/v1/conversions", b'{"user_id": "u", "email": "jane doe@example.com"}', "email"),
    # an IPv6 zone id names the sender's interface, not a client's address (Meta would refuse the batch)
    ("/v1/conversions", b'{"user_id": "u", "client_ip": "fe80::1%eth0"}', "client_ip"),
]


@pytest.mark.parametrize("path,body,field", HOSTILE, ids=[
    "epoch-ms-huge-exponent", "epoch-ms-huge-negative-exponent", "iso-year-10000-in-utc", "iso-year-0-in-utc",
    "email-only-at", "email-no-domain", "email-domain-without-dot", "email-with-space", "ip-zone-id"])
def test_hostile_values_answer_422_naming_the_field(client, engine, path, body, field):
    r = client.post(path, content=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert counts(engine) == (0, 0, 0)


def test_an_order_id_at_its_limit_without_event_id_is_stored_and_deduplicated(client, engine):
    """The event id made from a 200-character order id must fit the event_id column (PostgreSQL refused
    'order:' + 200 characters with a 503; SQLite stored an over-long id); a re-send still counts once."""
    body = {"user_id": "u", "order_id": "o" * 200, "value": 5, "currency": "EUR"}
    first = client.post("/v1/conversions", json=body)
    again = client.post("/v1/conversions", json=body)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    (event_id,) = first.json()["event_ids"]
    assert len(event_id) <= 200
    short = client.post("/v1/conversions", json={"user_id": "u", "order_id": "A-1", "value": 5, "currency": "EUR"})
    assert short.json()["event_ids"] == ["order:A-1"]  # a short order id is its event id, as before
    with transaction(engine, WS) as s:
        assert sorted(s.scalars(select(TrackedConversion.order_id))) == ["A-1", "o" * 200]


@pytest.mark.parametrize("user_key,status", [("u%00x", 422), ("%E2%80%8B", 422), ("x" * 201, 422)],
                         ids=["nul-byte", "invisible-only", "too-long"])
def test_journeys_refuse_a_user_key_the_collector_would_refuse(client, user_key, status):
    r = client.get(f"/v1/journeys/{user_key}")  # a NUL reached PostgreSQL: 500
    assert r.status_code == status and r.json()["field"] == "user_key", r.text


def test_journeys_find_a_user_key_as_the_collector_stored_it(client):
    """Invisible characters are removed from stored user keys, so the lookup removes them too."""
    assert client.post("/v1/events", json={"user_id": "u\u200b1", "source": "google", "medium": "cpc"}).status_code == 200
    r = client.get("/v1/journeys/u%E2%80%8B1")
    assert r.status_code == 200 and r.json()["user_key"] == "u1" and len(r.json()["touches"]) == 1


@pytest.mark.parametrize("run_id", ["9" * 30, str(2**63), str(2**31), "9" * 5000, "\u0663"],
                         ids=["30-digits", "2**63", "2**31", "5000-digits", "arabic-indic-digit"])
def test_run_ids_outside_the_column_are_404_not_500(client, run_id):
    r = client.get(f"/v1/attribution/runs/{run_id}")
    assert r.status_code == 404 and r.json()["field"] == "run_id", r.text


RUN_PARAMS = [
    (b'{"position_shares": ["a", "b"]}', "position_shares[0]"),
    (b'{"position_shares": [0.4, null]}', "position_shares[1]"),
    (b'{"lookback_days": 1e308}', "lookback_days"),  # accepted, then the run failed with OverflowError
    (b'{"lookback_days": 1' + b"0" * 400 + b"}", "lookback_days"),  # OverflowError: 500
    (b'{"order": 1e999999999999999999}', "order"),  # int() of it: MemoryError, 500
    (b'{"seed": 1.5}', "seed"),  # silently truncated to 1
    (b'{"bootstrap": 2.5}', "bootstrap"),
    (b'{"models": ["nope"]}', "models"),
    (b'{"order": 9}', "order"),
    (b'{"level": "week"}', "level"),
]


@pytest.mark.parametrize("body,field", RUN_PARAMS, ids=[
    "shares-text", "shares-null", "lookback-1e308", "lookback-huge-int", "order-huge-exponent", "seed-fraction",
    "bootstrap-fraction", "unknown-model", "order-out-of-range", "unknown-level"])
def test_hostile_run_parameters_name_the_parameter_and_start_nothing(client, engine, body, field):
    r = client.post("/v1/attribution/runs", content=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    with transaction(engine, WS) as s:
        assert s.scalars(select(TrackingRunJob)).all() == []


def test_lookback_is_bounded_where_journeys_are_built():
    """The journey engines refuse a lookback whose nanoseconds would overflow int64 (CLI --lookback-days too)."""
    from core.journeys.memory import MAX_LOOKBACK_DAYS, JourneyError, _lookback_ns

    assert _lookback_ns(MAX_LOOKBACK_DAYS) < 2**63
    with pytest.raises(JourneyError, match="up to"):
        _lookback_ns(200_000)


def test_concurrent_requests_repeating_an_event_id_in_one_group_store_it_once(engine):
    """Requests the collector groups into one commit may repeat an event id (a client retrying while its
    first request waits): the first stores it and gets its one delivery, the others are answered as
    replays; the group never fails on the outbox's unique key (it used to, then retried one by one)."""
    import datetime as dt

    from core.store.models import ConversionDelivery
    from core.tracking import config, payloads, store

    config.save_destination(engine, WS, "meta", enabled=True, settings={"pixel_id": "1234567"})
    now = dt.datetime.now(dt.timezone.utc)

    def request(kind, body):
        rows = payloads.parse_items(body, kind, now)
        return store.WriteRequest(WS, kind, rows, None)

    conversion = {"user_id": "u", "event_id": "dup-1", "value": 5, "currency": "EUR", "ad_user_data": True}
    group = [request("conversion", conversion), request("conversion", dict(conversion, value=6)),
             request("touch", {"user_id": "u", "event_id": "dup-1"}), request("touch", {"user_id": "u", "event_id": "dup-1"})]
    store.write(engine, group, now)
    assert [q.stored for q in group] == [{"dup-1"}, set(), {"dup-1"}, set()]
    assert counts(engine) == (1, 1, 1)
    with transaction(engine, WS) as s:
        (delivery,) = s.scalars(select(ConversionDelivery)).all()
        assert delivery.idempotency_key == "dup-1|Purchase"


def test_an_unknown_field_with_a_huge_name_is_named_shortly(client, engine):
    r = client.post("/v1/events", json={"user_id": "u", "k" * 400_000: 1})
    assert r.status_code == 422 and r.json()["field"] == "k" * 120 + "…" and len(r.content) < 1_000
    assert counts(engine) == (0, 0, 0)


def test_runs_started_in_a_loop_queue_at_most_a_few_and_a_repeat_joins_its_twin(client, engine):
    """One worker computes the runs in turn: a client starting them in a loop got a job per request, a
    backlog without end computed on the collector's CPU. A repeat of a waiting run answers with that run;
    past `MAX_QUEUED_RUNS` waiting, 429 with Retry-After."""
    from core.tracking import runs

    waiting = []
    for seed in range(runs.MAX_QUEUED_RUNS):  # queued, never picked up (not handed to the app's worker)
        params = runs.run_params(engine, WS, {"models": ["first"], "seed": seed})
        job_id, new = runs.create_job(engine, WS, params)
        assert new
        waiting.append(job_id)
    twin = client.post("/v1/attribution/runs", json={"models": ["first"], "seed": 2})
    assert twin.status_code == 202 and twin.json()["id"] == waiting[2]
    busy = client.post("/v1/attribution/runs", json={"models": ["first"], "seed": 99})
    assert busy.status_code == 429 and busy.json()["field"] == "body" and int(busy.headers["Retry-After"]) > 0
    with transaction(engine, WS) as s:
        assert sorted(s.scalars(select(TrackingRunJob.id))) == sorted(waiting)


def test_a_number_of_thousands_of_digits_is_malformed_json_without_python_advice(client, engine):
    r = client.post("/v1/events", content=b'{"user_id": "u", "timestamp": ' + b"9" * 5000 + b"}")
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert "digits" in r.json()["error"] and "sys." not in r.json()["error"]
    assert counts(engine) == (0, 0, 0)


def test_a_browser_key_for_an_internationalized_domain_takes_the_origin_browsers_send(client, engine):
    """Browsers send an IDN host as punycode (UTS 46) in Origin; the key stored the Unicode name and refused
    every event of such a shop with 403."""
    from core.tracking import keys

    key, listing = keys.create_key(engine, WS, kind="browser", origins=["https://Bücher.example", "https://faß.de"])
    assert listing["origins"] == ["https://xn--bcher-kva.example", "https://xn--fa-hia.de"]
    for origin in listing["origins"]:
        r = client.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}", "Origin": origin})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == origin, r.text
        assert client.options("/v1/events", headers={"Origin": origin}).status_code == 204
    with pytest.raises(keys.TrackingKeyError, match="valid host and port"):  # was a bare ValueError from urllib
        keys.create_key(engine, WS, kind="browser", origins=["https://shop.example:99999"])
