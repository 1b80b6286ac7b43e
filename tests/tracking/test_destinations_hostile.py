"""Destinations answering like a broken network or a proxy would: nothing is failed for good that the
platform may not have refused, a re-send keeps its idempotency key, and a throttle's Retry-After is obeyed."""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
from sqlalchemy import select

from core.store.db import transaction
from core.store.models import ConversionDelivery
from core.tracking import config
from core.tracking.dispatch import Dispatcher

from .conftest import WS, add_conversions, deliveries, purchase
from .test_destinations import GRAPH, PIXEL, SECRETS, meta_on

EVENTS_URL = f"{GRAPH}/v26.0/{PIXEL}/events"
OK = {"events_received": 3, "messages": [], "fbtrace_id": "T-OK"}


@pytest.mark.parametrize("answer", [
    {"body": "", "status": 200},  # an empty 2xx: the SDK reads it as success with no events_received
    {"json": {"message": "upstream connect error"}, "status": 502},  # a gateway's JSON: the SDK reads it as success
    {"body": "<html>Service temporarily down</html>", "status": 200},  # a proxy's page
    {"body": requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")},  # dropped mid-answer
], ids=["empty-200", "gateway-json-502", "html-200", "dropped-mid-answer"])
@responses.activate
def test_meta_answers_that_are_not_the_api_retry_and_then_count_once(engine, answer):
    """Meta's API is all or nothing and always answers events_received: any other answer says nothing about
    whether the events landed, so they are sent again (same event ids), never failed for good."""
    meta_on(engine)
    add_conversions(engine, [purchase(i) for i in range(3)])
    clock = [dt.datetime.now(dt.timezone.utc)]
    d = Dispatcher(engine, secrets=SECRETS, clock=lambda: clock[0])
    responses.post(EVENTS_URL, **answer)
    assert d.run_once() == {"retry": 3}
    rows = deliveries(engine, "meta")
    assert {(r["status"], r["code"]) for r in rows} == {("retry", "bad_response" if "status" in answer else "timeout")}
    responses.replace(responses.POST, EVENTS_URL, json=OK)
    clock[0] += dt.timedelta(hours=2)
    assert d.run_once() == {"sent": 3}
    sent = [e for call in responses.calls for e in _events(call)]
    assert {e["event_id"] for e in sent} == {"evt-0", "evt-1", "evt-2"}  # every attempt with the same ids


def _events(call) -> list[dict]:
    import json
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(call.request.body).items()}
    return [json.loads(e) for e in json.loads(form["data"])]


def _next_attempts(engine, destination: str) -> list[dt.datetime]:
    with transaction(engine, WS) as s:
        return list(s.scalars(select(ConversionDelivery.next_attempt_at).where(ConversionDelivery.destination == destination)))


@responses.activate
def test_meta_throttle_waits_at_least_its_retry_after(engine):
    meta_on(engine)
    add_conversions(engine, [purchase(1)])
    now = dt.datetime.now(dt.timezone.utc)
    responses.post(EVENTS_URL, status=429, headers={"Retry-After": "900"},
                   json={"error": {"message": "User request limit reached", "code": 17, "fbtrace_id": "T429"}})
    assert Dispatcher(engine, secrets=SECRETS, clock=lambda: now).run_once() == {"retry": 1}
    (when,) = _next_attempts(engine, "meta")
    assert when >= now + dt.timedelta(seconds=900)  # the backoff alone would have tried again after ~30-70 s


class _Throttling(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(429)
        self.send_header("Retry-After", "900")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_ga4_throttle_waits_at_least_its_retry_after(engine, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(config.ENDPOINT_ENV["ga4"], f"http://127.0.0.1:{server.server_address[1]}")
        config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-THROTTLE1"})
        add_conversions(engine, [purchase(1)])
        now = dt.datetime.now(dt.timezone.utc)
        assert Dispatcher(engine, secrets=SECRETS, clock=lambda: now).run_once() == {"retry": 1}
    finally:
        server.shutdown()
        server.server_close()
    (when,) = _next_attempts(engine, "ga4")
    assert when >= now + dt.timedelta(seconds=900)


@pytest.mark.parametrize("headers,seconds", [({"Retry-After": "120"}, 120.0), ({"retry-after": " 5 "}, 5.0),
                                             ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
                                             ({"Retry-After": "-3"}, None), ({"Retry-After": "9" * 40}, 86_400.0), ({}, None),
                                             (None, None)])
def test_retry_after_reads_seconds_only_and_caps_them(headers, seconds):
    from core.tracking.destinations.base import retry_after

    assert retry_after(headers) == seconds
