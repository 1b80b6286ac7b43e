"""The collector acts on what is true now: a destination enabled or disabled a moment ago decides the
outbox rows of the next conversion; a flood of unknown keys costs a bounded number of lookups; behind a
trusted reverse proxy the client's own address is the one stored."""

from __future__ import annotations

from core.store.db import make_engine
from core.tracking import config

from .conftest import WS, deliveries, purchase


def _rows_of(engine, event_id: str) -> dict[str, str]:
    """{destination: status} of the outbox rows of one conversion."""
    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import TrackedConversion

    with transaction(engine, WS) as s:
        conversion_id = s.scalar(select(TrackedConversion.id).where(TrackedConversion.event_id == event_id))
    assert conversion_id is not None, f"conversion {event_id} was not stored"
    return {d["destination"]: d["status"] for d in deliveries(engine) if d["conversion_id"] == conversion_id}


def test_a_destination_changed_on_the_tracking_page_decides_the_very_next_conversions_outbox_rows(client, engine, db_url):
    """The Tracking page (its own engine and connection) enables, re-maps and disables destinations;
    the conversion sent right after each change gets exactly the rows the change says, though the
    collector had just cached the workspace's settings."""
    page = make_engine(db_url, upgrade=False)  # another process's connection, as the Tracking page's
    try:
        def send(n: int, **extra) -> dict[str, str]:
            r = client.post("/v1/conversions", json=purchase(n, **extra))
            assert r.status_code == 200, r.text
            return _rows_of(engine, f"evt-{n}")

        assert send(0) == {}  # nothing enabled; the collector now holds the workspace's settings
        config.save_destination(page, WS, "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567890"})
        assert send(1) == {"meta": "pending"}
        config.save_destination(page, WS, "google", enabled=True, settings={"conversion_actions": {"purchase": "555"}})
        assert send(2) == {"meta": "pending", "google": "pending"}
        config.save_destination(page, WS, "google", settings={"conversion_actions": {"lead": "556"}})
        assert send(3) == {"meta": "pending"}  # no conversion action for purchases any more
        assert send(4, type="lead") == {"meta": "pending", "google": "pending"}
        config.save_destination(page, WS, "meta", enabled=False)
        assert send(5, type="lead") == {"google": "pending"}
        assert send(6, type="lead", ad_user_data=None) == {"google": "skipped_consent"}
        config.save_destination(page, WS, "collector", settings={"assume_consent": True})
        assert send(7, type="lead", ad_user_data=None) == {"google": "pending"}  # the collector's consent rule, too
        config.save_destination(page, WS, "google", enabled=False)
        assert send(8) == {}
    finally:
        page.dispose()


def test_a_conversion_written_while_a_disable_commits_is_ordered_after_it(engine, db_url):
    """A disable in flight (updated, not yet committed, on another connection) and a conversion written
    meanwhile: the conversion's transaction waits for it (PostgreSQL: its FOR SHARE read of the row;
    SQLite: the write lock) and, committed after the disable, has no row for the disabled destination."""
    import threading

    from sqlalchemy import update

    from core.store.models import TrackingDestination

    from .conftest import add_conversions

    config.save_destination(engine, WS, "meta", enabled=True, settings={"pixel_id": "1234567890"})
    config.save_destination(engine, WS, "ga4", enabled=True, settings={"measurement_id": "G-ORDER123"})
    page = make_engine(db_url, upgrade=False)
    errors = []

    def write():
        try:
            add_conversions(engine, [purchase(1)])
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    try:
        with page.connect() as conn:
            with conn.begin():
                conn.execute(update(TrackingDestination).where(TrackingDestination.workspace_id == WS,
                                                               TrackingDestination.name == "meta").values(enabled=False))
                writer = threading.Thread(target=write)
                writer.start()
                writer.join(1.0)
                assert writer.is_alive()  # waiting for the disable to commit or roll back
        writer.join(30)
        assert not writer.is_alive() and not errors, errors
        assert _rows_of(engine, "evt-1") == {"ga4": "pending"}
    finally:
        page.dispose()


def _refused_until_limited(post_unknown) -> int:
    """Send distinct unknown keys (``post_unknown(i)`` -> status) until one answers 429: each before is a
    401, and there are the budget's worth of them (plus what it refilled meanwhile)."""
    import time

    from core.tracking.collector import FAILED_AUTH_BURST, FAILED_AUTH_RATE

    started = time.monotonic()
    for i in range(10 * FAILED_AUTH_BURST):
        status = post_unknown(i)
        if status == 429:
            assert FAILED_AUTH_BURST <= i <= FAILED_AUTH_BURST + (time.monotonic() - started) * FAILED_AUTH_RATE + 1
            return i
        assert status == 401
    raise AssertionError("never limited")


def _counting_lookups(monkeypatch, gate=None, valid: str | None = None) -> list[str]:
    """Count the collector's key lookups (each a database read); ``gate``: unknown keys' lookups wait for it."""
    from core.tracking import keys

    real, seen = keys.lookup, []

    def lookup(engine_, token):
        seen.append(token)
        if gate is not None and token != valid:
            gate.wait(20)
        return real(engine_, token)

    monkeypatch.setattr(keys, "lookup", lookup)
    return seen


def test_thousands_of_unknown_keys_from_one_address_cost_a_bounded_number_of_lookups_then_429(engine, server_key, monkeypatch):
    import time

    from starlette.testclient import TestClient

    from core.serve import create_app
    from core.tracking.collector import FAILED_AUTH_BURST, FAILED_AUTH_RATE

    lookups = _counting_lookups(monkeypatch)
    with TestClient(create_app(engine, rate_limit=None)) as c:
        def post(key: str):
            return c.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}"})

        assert post(server_key).status_code == 200  # the site's key, cached from here on
        started, codes, valid = time.monotonic(), [], []
        for i in range(2_000):
            r = post(f"ms_sk_guess{i:05d}")
            codes.append(r.status_code)
            if i == 1_000:  # the site's own request in the middle of the flood
                valid.append(post(server_key).status_code)
        elapsed = time.monotonic() - started
        bounded = 1 + FAILED_AUTH_BURST + int(elapsed * FAILED_AUTH_RATE) + 1
        assert len(lookups) <= bounded < 300, (len(lookups), elapsed)
        assert codes[:FAILED_AUTH_BURST] == [401] * FAILED_AUTH_BURST  # unknown: looked up and refused
        unknown = [t for t in lookups if t != server_key]  # (the site's key is also refreshed in the background)
        assert codes.count(401) == len(unknown) and codes.count(429) == 2_000 - len(unknown)  # then one a second
        assert valid == [200]
        limited = post("ms_sk_one-more")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["field"] == "Authorization" and "unknown write keys" in limited.json()["error"]
        assert post(server_key).status_code == 200


def test_a_cached_key_is_served_at_once_while_a_flood_of_unknown_keys_waits_on_the_database(engine, server_key, monkeypatch):
    """The unknown keys' lookups are held (a slow database); the site's cached key is answered meanwhile,
    from the flooding address and from another; the flood costs at most the lookups in flight, and
    another address keeps its own budget."""
    import asyncio
    import threading

    import httpx

    from core.serve import create_app
    from core.tracking.collector import FAILED_AUTH_BURST, KEY_LOOKUPS_PENDING

    gate = threading.Event()
    lookups = _counting_lookups(monkeypatch, gate, valid=server_key)
    app = create_app(engine, rate_limit=None)

    async def scenario():
        async with app.router.lifespan_context(app):
            flood = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 4000)), base_url="http://t")
            other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.9", 4000)), base_url="http://t")

            def post(c, key, n=0):
                return c.post("/v1/events", json={"user_id": f"u{n}"}, headers={"Authorization": f"Bearer {key}"})

            assert (await post(flood, server_key)).status_code == 200
            tasks = [asyncio.create_task(post(flood, f"ms_sk_flood{i:05d}")) for i in range(1_500)]
            for _ in range(500):  # until the lookups fill their slots
                await asyncio.sleep(0.01)
                if len(lookups) >= 3:
                    break
            ok = await asyncio.wait_for(asyncio.gather(*(post(c, server_key, n) for n, c in enumerate([flood, other] * 5))), 5)
            assert [r.status_code for r in ok] == [200] * 10  # not one waited on the held lookups
            gate.set()
            codes = [r.status_code for r in await asyncio.gather(*tasks)]
            unknown = [t for t in lookups if t != server_key]
            assert len(unknown) <= KEY_LOOKUPS_PENDING  # the rest were refused before any lookup
            assert codes.count(401) == len(unknown) and codes.count(503) == 1_500 - len(unknown)
            after = await post(flood, "ms_sk_after")
            assert after.status_code == 429 and int(after.headers["Retry-After"]) > FAILED_AUTH_BURST // 2  # its debt
            assert (await post(other, "ms_sk_elsewhere")).status_code == 401  # another address: looked up, refused
            assert (await post(flood, server_key)).status_code == 200
            await flood.aclose()
            await other.aclose()

    asyncio.run(scenario())


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_client(tmp_path):
    """One real `python -m core serve --forwarded-allow-ips 127.0.0.1`: a request from the trusted proxy
    (127.0.0.1) is the X-Forwarded-For client's (a browser conversion's stored address, the per-address
    budget of unknown keys); the same header from another peer (127.0.0.2) is ignored."""
    import http.client
    import json

    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import TrackedConversion
    from core.tracking import keys

    from .conftest import CollectorProcess

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    engine = make_engine(url)
    key, _ = keys.create_key(engine, WS, kind="browser", origins=["https://shop.example.com"])
    proc = CollectorProcess(url, tmp_path / "serve.log",
                            extra_args=["--no-dispatch", "--rate-limit", "0", "--forwarded-allow-ips", "127.0.0.1"]).wait_ready()
    try:
        def post(path: str, body: dict, forwarded_for: str, peer: str = "127.0.0.1", key: str = key):
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10, source_address=(peer, 0))
            try:
                conn.request("POST", path, json.dumps(body), {
                    "Authorization": f"Bearer {key}", "Origin": "https://shop.example.com", "Content-Type": "application/json",
                    "X-Forwarded-For": forwarded_for})
                answer = conn.getresponse()
                return answer.status, answer.read()
            finally:
                conn.close()

        def stored_ip(event_id: str) -> str:
            with transaction(engine, WS) as s:
                return s.scalar(select(TrackedConversion.client_ip).where(TrackedConversion.event_id == event_id))

        conversion = {"user_id": "u1", "type": "purchase", "value": 5, "currency": "EUR"}
        assert post("/v1/conversions", dict(conversion, event_id="via-proxy"), "203.0.113.50")[0] == 200
        assert stored_ip("via-proxy") == "203.0.113.50"
        # a client that forges the header in front of the proxy: the proxy appends the address it saw
        assert post("/v1/conversions", dict(conversion, event_id="forged"), "10.1.2.3, 198.51.100.20")[0] == 200
        assert stored_ip("forged") == "198.51.100.20"
        assert post("/v1/conversions", dict(conversion, event_id="direct"), "203.0.113.50", peer="127.0.0.2")[0] == 200
        assert stored_ip("direct") == "127.0.0.2"  # not a trusted proxy: its header is ignored

        # the unknown-key budget is the forwarded client's, not the proxy's
        _refused_until_limited(lambda i: post("/v1/events", {"user_id": "u"}, "198.51.100.66", key=f"ms_pk_guess{i}")[0])
        assert post("/v1/events", {"user_id": "u"}, "198.51.100.67", key="ms_pk_other")[0] == 401  # another client behind it
        assert post("/v1/events", {"user_id": "u"}, "198.51.100.66", peer="127.0.0.2", key="ms_pk_direct")[0] == 401
        assert post("/v1/events", {"user_id": "u", "event_id": "ok"}, "198.51.100.66")[0] == 200  # its cached key still works
    finally:
        proc.stop()
        engine.dispose()


def test_forwarded_allow_ips_is_checked_and_defaults_to_trusting_no_peer():
    import pytest

    from core.serve import trusted_proxies

    assert trusted_proxies(None) is None and trusted_proxies(" ") is None
    assert trusted_proxies("10.0.0.5, 10.0.0.0/8,::1") == "10.0.0.5,10.0.0.0/8,::1"
    with pytest.raises(ValueError, match="'proxy.local' is not an IP address"):
        trusted_proxies("10.0.0.5,proxy.local")


def test_revoked_keys_spend_no_budget_of_their_address(tmp_path, monkeypatch):
    """Only real keys can be revoked, so they are no flood: an address sending more revoked keys than the
    budget of unknown ones gets 401 'revoked' for each, and its budget stays whole."""
    from sqlalchemy import update
    from starlette.testclient import TestClient

    from core.serve import create_app
    from core.store.models import TrackingKey
    from core.tracking import keys
    from core.tracking.collector import FAILED_AUTH_BURST

    engine = make_engine(f"sqlite:///{tmp_path / 'revoked.db'}")
    revoked = [keys.create_key(engine, WS)[0] for _ in range(FAILED_AUTH_BURST + 5)]
    with engine.begin() as conn:
        conn.execute(update(TrackingKey).values(revoked_at=TrackingKey.created_at, revoked_by="tests"))
    lookups = _counting_lookups(monkeypatch)
    with TestClient(create_app(engine, rate_limit=None)) as c:
        def post(key: str):
            return c.post("/v1/events", json={"user_id": "u"}, headers={"Authorization": f"Bearer {key}"})

        answers = [post(k) for k in revoked]
        assert [r.status_code for r in answers] == [401] * len(revoked) and all("revoked" in r.json()["error"] for r in answers)
        assert len(lookups) == len(revoked)
        _refused_until_limited(lambda i: post(f"ms_sk_unknown{i}").status_code)  # its budget was whole
    engine.dispose()
