"""The snippet in Debian chromium: a landing page with UTM tags and click ids, then a purchase, into the store.

The shop's page is served from one local origin and the collector from another, so the browser key's
CORS allow-list and preflight are exercised as on a real site.
"""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from core.store.db import make_engine, transaction
from core.store.models import TrackedConversion, TrackedTouch
from core.tracking import config, keys

from .conftest import WS, CollectorProcess

pytestmark = pytest.mark.browser

LANDING = """<!doctype html><html><head><title>Shop</title>
<script>window.fbqCalls = []; window.fbq = function () { window.fbqCalls.push(Array.prototype.slice.call(arguments)); };</script>
<script src="{collector}/v1/snippet.js" data-key="{key}"></script></head>
<body><h1>Landing</h1><a id="buy" href="/thanks.html">Buy</a></body></html>"""
THANKS = """<!doctype html><html><head><title>Thanks</title>
<script>window.fbqCalls = []; window.fbq = function () { window.fbqCalls.push(Array.prototype.slice.call(arguments)); };</script>
<script src="{collector}/v1/snippet.js" data-key="{key}"></script></head>
<body><h1>Thanks</h1><script>
msTrack.consent({ad_user_data: true, ad_personalization: false});
var id = msTrack.conversion({type: "purchase", value: 42.5, currency: "EUR", order_id: "A-1001", email: "Buyer@Example.com"});
fbq("track", "Purchase", {value: 42.5, currency: "EUR"}, {eventID: id});
window.purchaseId = id;
msTrack.last.then(function (r) { window.sent = r; }, function (e) { window.failed = String(e); });
</script></body></html>"""


def test_visit_then_purchase_lands_in_the_store(browser, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = make_engine(db_url)
    site = tmp_path / "site"
    site.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    shop = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    shop_origin = f"http://127.0.0.1:{shop.server_address[1]}"
    key, _ = keys.create_key(engine, WS, kind="browser", origins=[shop_origin])
    config.save_destination(engine, WS, "meta", enabled=True, settings={"pixel_id": "1234567"})
    collector = CollectorProcess(db_url, tmp_path / "serve.log", extra_args=["--no-dispatch"]).wait_ready()
    for name, html in (("landing.html", LANDING), ("thanks.html", THANKS)):
        (site / name).write_text(html.replace("{collector}", collector.url).replace("{key}", key))
    context = browser.new_context()
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith("http://127.0.0.1") else None)
    try:
        page.goto(f"{shop_origin}/landing.html?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=GcLiD-1&fbclid=FbClId_AbC")
        page.wait_for_function("window.msTrack && window.msTrack.ready")
        page.evaluate("window.msTrack.ready")
        page.click("#buy")
        page.wait_for_function("window.sent || window.failed", timeout=15000)
        assert page.evaluate("window.failed") is None, page.evaluate("window.failed")
        purchase_id = page.evaluate("window.purchaseId")
        pixel_id = page.evaluate("window.fbqCalls[0][3].eventID")
        user_key = page.evaluate("msTrack.userKey()")
    finally:
        context.close()
        collector.stop()
        shop.shutdown()
    assert not outside, outside
    assert purchase_id == pixel_id  # the same id goes to the Meta pixel and to the server
    with transaction(engine, WS) as s:
        touches = s.scalars(select(TrackedTouch)).all()
        conv = s.scalars(select(TrackedConversion)).one()
        (touch,) = touches  # the thanks page continues the visit: no second touch
        assert (touch.user_key, touch.source, touch.medium, touch.campaign) == (user_key, "google", "cpc", "brand")
        assert touch.gclid == "GcLiD-1" and touch.fbclid == "FbClId_AbC" and touch.interaction == "click"
        assert conv.user_key == user_key and conv.event_id == purchase_id and conv.order_id == "A-1001"
        assert conv.value == 42.5 and conv.currency == "EUR" and conv.ad_user_data is True
        assert conv.fbc.startswith("fb.1.") and conv.fbc.endswith(".FbClId_AbC")  # case kept, creation time in ms
        assert len(conv.fbc.split(".")[2]) == 13
        assert conv.gclid == "GcLiD-1"  # borrowed from the landing touch
        assert conv.user_agent and conv.client_ip == "127.0.0.1" and conv.event_source_url.endswith("/thanks.html")
