"""The collector through an ASGI test client: every bad input is a 4xx naming the field, nothing stored."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from core.store.db import transaction
from core.store.models import ConversionDelivery, TrackedConversion, TrackedTouch
from core.tracking import config, keys

from .conftest import WS


def counts(engine) -> tuple[int, int, int]:
    with transaction(engine, WS) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (TrackedTouch, TrackedConversion, ConversionDelivery))


def future(minutes: int) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)).isoformat()


BAD = [
    ("/v1/events", b"{not json", 400, "body"),
    ("/v1/events", b"", 400, "body"),
    ("/v1/events", b"[1, 2]", 400, "body"),
    ("/v1/events", b'{"channel": "email"}', 422, "user_id"),
    ("/v1/events", b'{"user_id": 42}', 422, "user_id"),
    ("/v1/events", b'{"user_id": "u", "timestamp": "2026-11-01 10:00"}', 422, "timestamp"),
    ("/v1/events", b'{"user_id": "u", "timestamp": 1700000000}', 422, "timestamp"),
    ("/v1/events", b'{"user_id": "u", "timestamp": true}', 422, "timestamp"),
    ("/v1/events", b'{"user_id": "u", "interaction": "scroll"}', 422, "interaction"),
    ("/v1/events", b'{"user_id": "u", "fbc": "fbclid-only"}', 422, "fbc"),
    ("/v1/events", b'{"user_id": "u", "utm_source": "x"}', 422, "utm_source"),
    ("/v1/events", b'{"batch": {"user_id": "u"}}', 422, "batch"),
    ("/v1/events", b'{"batch": []}', 422, "batch"),
    ("/v1/events", b'{"batch": [{"user_id": "a"}, {"user_id": "b", "channel": 7}]}', 422, "batch[1].channel"),
    ("/v1/events", json.dumps({"batch": [{"user_id": "u"}] * 501}).encode(), 413, "batch"),
    ("/v1/events", json.dumps({"user_id": "u" * 201}).encode(), 422, "user_id"),
    ("/v1/conversions", b'{"user_id": "u", "value": 10}', 422, "currency"),
    ("/v1/conversions", b'{"user_id": "u", "value": 10, "currency": "EURO"}', 422, "currency"),
    ("/v1/conversions", b'{"user_id": "u", "value": 10, "currency": "XYZ"}', 422, "currency"),
    ("/v1/conversions", b'{"user_id": "u", "value": "ten", "currency": "EUR"}', 422, "value"),
    ("/v1/conversions", b'{"user_id": "u", "value": -1, "currency": "EUR"}', 422, "value"),
    ("/v1/conversions", b'{"user_id": "u", "value": NaN, "currency": "EUR"}', 400, "body"),
    ("/v1/conversions", b'{"user_id": "u", "client_ip": "999.1.1.1"}', 422, "client_ip"),
    ("/v1/conversions", b'{"user_id": "u", "ad_user_data": "yes"}', 422, "ad_user_data"),
    ("/v1/conversions", b'{"user_id": "u", "country": "Narnia"}', 422, "country"),
    ("/v1/conversions", b'{"user_id": "u", "phone": "12"}', 422, "phone"),
    ("/v1/conversions", b'{"user_id": "u", "action_source": "telepathy"}', 422, "action_source"),
    ("/v1/events", b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    ("/v1/events", b'{"user_id": "\xff\xfe"}', 400, "body"),
    ("/v1/events", b'{"user_id": "u", "campaign": "spring \\ud800 sale"}', 422, "campaign"),
]


@pytest.mark.parametrize("path,body,status,field", BAD, ids=[
    "malformed-json", "empty-body", "not-an-object", "missing-user", "user-wrong-type", "naive-timestamp", "epoch-seconds",
    "timestamp-bool", "unknown-interaction", "bad-fbc", "unknown-field", "batch-not-list", "batch-empty", "bad-item-in-batch",
    "oversized-batch", "too-long", "value-without-currency", "currency-not-3-letters", "currency-not-iso", "value-text",
    "value-negative", "nan", "bad-ip", "consent-not-bool", "bad-country", "impossible-phone", "bad-action-source",
    "deeply-nested", "not-utf8", "unpaired-surrogate"])
def test_bad_input_names_the_field_and_stores_nothing(client, engine, path, body, status, field):
    r = client.post(path, content=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["error"]
    assert counts(engine) == (0, 0, 0)


def test_future_timestamp_refused_small_skew_allowed(client, engine):
    r = client.post("/v1/events", json={"user_id": "u", "timestamp": future(30)})
    assert r.status_code == 422 and r.json()["field"] == "timestamp"
    assert client.post("/v1/events", json={"user_id": "u", "timestamp": future(2)}).status_code == 200
    assert counts(engine)[0] == 1


def test_body_over_the_limit_is_refused_before_reading(client, engine):
    r = client.post("/v1/events", content=b'{"user_id": "' + b"x" * 600_000 + b'"}')
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert counts(engine) == (0, 0, 0)


def test_a_body_trickled_without_end_is_answered_408_and_nothing_is_stored(engine, server_key, monkeypatch):
    """A client that sends the first piece of a body and never the rest: 408 naming the body once
    `BODY_SECONDS` have passed (uvicorn alone would hold the connection for ever); a body sent in pieces
    in time is read whole."""
    import asyncio

    from core import serve

    monkeypatch.setattr(serve, "BODY_SECONDS", 0.2)
    app = serve.create_app(engine, rate_limit=None)
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "client": ("127.0.0.1", 5000),
             "headers": [(b"authorization", f"Bearer {server_key}".encode()), (b"content-type", b"application/json")]}

    async def post(pieces: list[bytes], then_hang: bool) -> tuple[int, dict]:
        queue = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1 or then_hang} for i, p in enumerate(pieces)]
        sent = []

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)  # the rest never comes

        async def send(message):
            sent.append(message)

        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app(scope, receive, send), 5)
        return sent[0]["status"], json.loads(sent[1]["body"])

    status, body = asyncio.run(post([b'{"user_id": "u1", '], then_hang=True))
    assert status == 408 and body["field"] == "body" and "0 s" in body["error"]
    assert counts(engine) == (0, 0, 0)
    status, body = asyncio.run(post([b'{"user_id": "u1", ', b'"event_id": "in-pieces"}'], then_hang=False))
    assert status == 200 and body["event_ids"] == ["in-pieces"]
    real_timeout, armed = serve.asyncio.timeout, []
    monkeypatch.setattr(serve.asyncio, "timeout", lambda delay: armed.append(delay) or real_timeout(delay))
    status, body = asyncio.run(post([b'{"user_id": "u0", "event_id": "one-piece"}'], then_hang=False))
    assert status == 200 and armed == []  # a body in one piece (every single event) arms no timer


def test_repeated_event_id_stores_nothing_and_answers_as_the_first(client, engine):
    body = {"user_id": "u1", "event_id": "e-1", "source": "google", "medium": "cpc", "timestamp": "2026-11-20T10:00:00Z"}
    first = client.post("/v1/events", json=body)
    again = client.post("/v1/events", json=dict(body, source="changed"))
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert counts(engine)[0] == 1
    batch = client.post("/v1/events", json={"batch": [body, dict(body, event_id="e-2"), dict(body, event_id="e-2")]})
    assert batch.json()["received"] == 2 and counts(engine)[0] == 2


def test_repeated_conversion_makes_no_second_delivery(client, engine):
    config.save_destination(engine, WS, "meta", enabled=True, settings={"pixel_id": "1234567"})
    body = {"user_id": "u1", "event_id": "c-1", "value": "12.30", "currency": "EUR", "ad_user_data": True}
    body["value"] = 12.30
    assert client.post("/v1/conversions", json=body).status_code == 200
    assert client.post("/v1/conversions", json=body).status_code == 200
    assert counts(engine)[1:] == (1, 1)


def test_exact_decimal_values(client, engine):
    client.post("/v1/conversions", content=b'{"user_id": "u", "value": 0.1, "currency": "USD", "event_id": "a"}')
    client.post("/v1/conversions", content=b'{"user_id": "u", "value": 0.2, "currency": "USD", "event_id": "b"}')
    with transaction(engine, WS) as s:
        assert sum(s.scalars(select(TrackedConversion.value))) == __import__("decimal").Decimal("0.3")


@pytest.mark.parametrize("header,field,status", [
    (None, "Authorization", 401), ("Basic abc", "Authorization", 401), ("Bearer ms_sk_unknown", "Authorization", 401)],
    ids=["missing", "wrong-scheme", "unknown-key"])
def test_keys_are_required(client, engine, header, field, status):
    headers = {"Authorization": header} if header else {"Authorization": ""}
    r = client.post("/v1/events", json={"user_id": "u"}, headers=headers)
    assert r.status_code == status and r.json()["field"] == field
    assert counts(engine) == (0, 0, 0)


def test_revoked_key_is_refused(engine, client):
    key, row = keys.create_key(engine, WS)
    ok = client.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    keys.revoke_key(engine, WS, row["id"], actor="tester")
    client.app.state.collector.forget_key()
    r = client.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_key_maps_to_its_workspace(engine, client):
    other, _ = keys.create_key(engine, "other-shop")
    client.post("/v1/events", json={"user_id": "u", "event_id": "x"}, headers={"Authorization": f"Bearer {other}"})
    assert counts(engine)[0] == 0
    with transaction(engine, "other-shop") as s:
        assert s.scalar(select(func.count()).select_from(TrackedTouch)) == 1


def test_browser_key_origin_allow_list_and_write_only(engine, client):
    key, _ = keys.create_key(engine, WS, kind="browser", origins=["https://shop.example.com"])
    auth = {"Authorization": f"Bearer {key}"}
    bad = client.post("/v1/events", json={"user_id": "u"}, headers={**auth, "Origin": "https://evil.example"})
    assert bad.status_code == 403 and bad.json()["field"] == "Origin"
    good = client.post("/v1/events", json={"user_id": "u"}, headers={**auth, "Origin": "https://shop.example.com"})
    assert good.status_code == 200 and good.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    pre = client.options("/v1/conversions", headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert client.options("/v1/events", headers={"Origin": "https://evil.example"}).status_code == 403
    read = client.get("/v1/journeys/u", headers={**auth, "Origin": "https://shop.example.com"})
    assert read.status_code == 403 and read.json()["field"] == "Authorization"
    conv = client.post("/v1/conversions", json={"user_id": "u", "event_id": "b1"},
                       headers={**auth, "Origin": "https://shop.example.com", "User-Agent": "UA/1"})
    assert conv.status_code == 200
    with transaction(engine, WS) as s:  # the browser's own agent and address fill in
        row = s.scalar(select(TrackedConversion).where(TrackedConversion.event_id == "b1"))
        assert row.user_agent == "UA/1" and row.client_ip


def test_rate_limit_answers_429_with_retry_after(engine):
    from starlette.testclient import TestClient

    from core.serve import create_app

    key, _ = keys.create_key(engine, WS, rate_limit=2)
    with TestClient(create_app(engine)) as c:
        codes = [c.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}"}) for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert counts(engine)[0] == len(codes) - len(limited)


def test_concurrent_requests_group_commit_and_keep_every_event(engine, server_key):
    import asyncio

    import httpx

    from core.serve import create_app

    app = create_app(engine, rate_limit=None)

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(*[c.post("/v1/events", json={"user_id": f"u{i % 7}", "event_id": f"e{i}"},
                                                   headers={"Authorization": f"Bearer {server_key}"}) for i in range(200)])
        return [r.status_code for r in rs]

    assert asyncio.run(run()) == [200] * 200
    assert counts(engine)[0] == 200


def test_health_and_snippet(client):
    assert client.get("/v1/health").json()["ok"] is True
    js = client.get("/v1/snippet.js")
    assert js.status_code == 200 and "fb.1." in js.text and "googletagmanager" not in js.text


def test_tracked_events_feed_attribution_as_a_live_data_set(client, engine):
    from core import attribution_runs as ar

    events = [{"user_id": "a", "source": "google", "medium": "cpc", "timestamp": "2026-11-20T10:00:00Z"},
              {"user_id": "a", "source": "newsletter", "medium": "email", "timestamp": "2026-11-21T10:00:00Z"},
              {"user_id": "b", "source": "facebook", "medium": "paid_social", "timestamp": "2026-11-20T10:00:00Z"}]
    assert client.post("/v1/events", json={"batch": events}).status_code == 200
    client.post("/v1/conversions", json={"user_id": "a", "event_id": "o1", "value": 30, "currency": "EUR",
                                         "timestamp": "2026-11-22T10:00:00Z"})
    listed = ar.list_attributable_datasets(engine, WS)
    live = listed[listed["name"].str.startswith("Tracked events")]
    assert len(live) == 1
    started = client.post("/v1/attribution/runs", json={"models": ["first", "last", "linear"]})
    assert started.status_code == 202
    import time

    for _ in range(100):
        status = client.get(f"/v1/attribution/runs/{started.json()['id']}").json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert status["status"] == "done", status
    first = {r["channel"]: r["conversions"] for r in status["results"] if r["model"] == "first"}
    last = {r["channel"]: r["conversions"] for r in status["results"] if r["model"] == "last"}
    assert first["google"] == 1 and last["email"] == 1  # channel rules applied to tracked source/medium
    journey = client.get("/v1/journeys/a").json()
    assert journey["run"]["id"] == status["run_id"]
    converted = [j for j in journey["journeys"] if j["converted"]]
    assert converted[0]["path"] == "google > email" and converted[0]["conversion_id"] == "o1"
    again = client.post("/v1/attribution/runs", json={"models": ["first", "last", "linear"]}).json()
    client.post("/v1/events", json={"user_id": "c", "source": "google", "medium": "cpc"})
    assert client.get("/v1/journeys/nobody").status_code == 404
    assert client.get("/v1/attribution/runs/99999").status_code == 404
    assert again["id"] != started.json()["id"]


def test_a_writer_connection_that_fails_is_dropped_and_nothing_accepted_is_lost(engine, server_key, monkeypatch):
    """A group whose write fails on the writer's own connection: that connection is never used again, the
    requests are retried one by one (and stored), and later groups run on a new connection."""
    import asyncio

    from core.tracking import store
    from core.tracking.collector import Collector

    real_write, used, failed = store.write, [], []

    def flaky_write(engine_, requests, now=None, *, connection=None):
        if connection is not None:
            used.append(connection)
            if not failed and len(requests) > 1:  # a group, so that its requests are retried one by one
                failed.append((connection, len(used)))
                raise OSError("connection reset by peer")
        return real_write(engine_, requests, now, connection=connection)

    monkeypatch.setattr(store, "write", flaky_write)

    async def run():
        c = Collector(engine, rate_limit=None)
        c.async_touches = False  # PostgreSQL: touches through the writer threads, as conversions go
        await c.start()
        auth = f"Bearer {server_key}"
        warm = await c.ingest("touch", b'{"user_id": "u", "event_id": "w"}', auth)  # keys and settings cached
        first = [warm, *await asyncio.gather(*(c.ingest("touch", f'{{"user_id": "u{i}", "event_id": "a{i}"}}'.encode(), auth)
                                               for i in range(20)))]
        later = await asyncio.gather(*(c.ingest("touch", f'{{"user_id": "u{i}", "event_id": "b{i}"}}'.encode(), auth)
                                       for i in range(20)))
        await c.stop()
        return first + later

    replies = asyncio.run(run())
    assert [r.status for r in replies] == [200] * 41
    assert counts(engine)[0] == 41
    broken, at = failed[0]
    assert used[at:] and all(conn is not broken for conn in used[at:])  # later groups: a new connection


def test_invisible_characters_cannot_make_a_look_alike_channel():
    """'Google\\u202e' (a right-to-left override) looks exactly like 'Google': the collector stores 'Google'."""
    import datetime as dt

    from core.tracking import payloads

    now = dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)
    rows = payloads.parse_items({"batch": [{"user_id": "u1", "channel": "Google\u202e"},
                                           {"user_id": "u2", "channel": "\u200bGoogle", "campaign": "\u2066Brand\u2069"},
                                           {"user_id": "u3", "channel": "\u0645\u06cc\u200c\u0631"}]}, "touch", now)
    assert [r["channel"] for r in rows] == ["Google", "Google", "\u0645\u06cc\u200c\u0631"]
    assert rows[1]["campaign"] == "Brand"
    with pytest.raises(payloads.InputError, match="user_id.*invisible"):
        payloads.parse_items({"user_id": "\u200b\ufeff", "channel": "Google"}, "touch", now)


def test_accepted_answer_is_the_bytes_the_generic_encoder_writes():
    """The accepted answer is encoded by hand (every request gets one): same bytes as `Reply.content`'s
    encoder, for ids that need escaping too (quotes, backslashes, non-ASCII, an emoji)."""
    from core.tracking.collector import Reply, accepted

    for ids in (["e1"], [], ['quo"te', "back\\slash", "caf\u00e9", "\U0001f600", "tab\tin"], [f"id{i}" for i in range(500)]):
        reply = accepted(ids, {})
        assert reply.content() == Reply(200, reply.body).content()
        assert json.loads(reply.content()) == {"ok": True, "received": len(ids), "event_ids": ids}


def test_a_writer_lingers_for_more_requests_only_when_the_arrival_rate_says_one_is_due(tmp_path):
    """A lone request waits `linger` for company only when the last window's arrival rate puts another
    request inside that time; a slow trickle (or a client waiting for each answer) is written at once."""
    import time

    from core.store.db import make_engine
    from core.tracking.collector import Collector

    c = Collector(make_engine(f"sqlite:///{tmp_path / 'linger.db'}"), rate_limit=None, linger=0.002)
    c._arrivals = [time.monotonic() - 0.2, 300, 0.0]  # 1,500 requests/s: three due within 2 ms
    assert c._linger() is True
    c._arrivals = [time.monotonic() - 0.2, 40, 0.0]  # 200 requests/s: 0.4 due within 2 ms
    assert c._linger() is False
    c.linger = 0.0
    c._arrivals = [time.monotonic() - 0.2, 300, 0.0]
    assert c._linger() is False
