"""Cached keys and settings are refreshed in the background: after expiry no request waits on the
database lookup, one refresh runs however many requests arrive, and a known key keeps working."""

from __future__ import annotations

import asyncio
import threading

from core.tracking import collector as collector_module
from core.tracking import keys
from core.tracking.collector import KEY_CACHE_SECONDS, SETTINGS_CACHE_SECONDS, Collector

from .conftest import WS


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_expired_key_and_settings_refresh_once_in_the_background(engine, server_key, monkeypatch):
    clock = Clock()
    lookups, loads = [], []
    gate = threading.Event()
    real_lookup, real_settings = keys.lookup, collector_module.config.load_collector_settings

    def slow_lookup(engine_, token):
        lookups.append(token)
        if len(lookups) > 1:
            gate.wait(10)  # the refresh is held until the requests below have been answered
        return real_lookup(engine_, token)

    def counted_settings(engine_, ws):
        loads.append(ws)
        return real_settings(engine_, ws)

    monkeypatch.setattr(keys, "lookup", slow_lookup)
    monkeypatch.setattr(collector_module.config, "load_collector_settings", counted_settings)

    async def scenario():
        c = Collector(engine, monotonic=clock, rate_limit=None)
        await c.start()
        auth = f"Bearer {server_key}"
        first = await c.ingest("touch", b'{"user_id": "u0"}', auth)
        assert first.status == 200 and len(lookups) == 1 and len(loads) == 1
        clock.now += max(KEY_CACHE_SECONDS, SETTINGS_CACHE_SECONDS) + 1
        replies = await asyncio.wait_for(asyncio.gather(
            *(c.ingest("touch", f'{{"user_id": "u{i}"}}'.encode(), auth) for i in range(1, 21))), timeout=5)
        assert all(r.status == 200 for r in replies)  # answered while the key refresh is still held
        for _ in range(250):  # the refresh's thread may not have reached the lookup yet on a busy machine
            if len(lookups) >= 2:
                break
            await asyncio.sleep(0.02)
        assert len(lookups) == 2  # one background refresh for twenty requests
        gate.set()
        for _ in range(100):
            if not c._refreshing:
                break
            await asyncio.sleep(0.02)
        assert not c._refreshing and len(loads) == 2
        await c.stop()

    asyncio.run(scenario())


def test_a_revoked_key_stops_within_one_refresh(engine, server_key):
    clock = Clock()

    async def scenario():
        c = Collector(engine, monotonic=clock, rate_limit=None)
        await c.start()
        auth = f"Bearer {server_key}"
        assert (await c.ingest("touch", b'{"user_id": "a"}', auth)).status == 200
        row = next(k for k in keys.list_keys(engine, WS))
        keys.revoke_key(engine, WS, row["id"], actor="tester")
        clock.now += KEY_CACHE_SECONDS + 1
        await c.ingest("touch", b'{"user_id": "b"}', auth)  # may still pass: it starts the refresh
        for _ in range(100):
            if not c._refreshing:
                break
            await asyncio.sleep(0.02)
        refused = await c.ingest("touch", b'{"user_id": "c"}', auth)
        assert refused.status == 401 and "revoked" in refused.body["error"]
        await c.stop()

    asyncio.run(scenario())


def test_a_revoked_key_is_answered_from_the_cache_without_more_lookups(engine, server_key, monkeypatch):
    """Revocation is final: once the collector has seen a key revoked, its 401s cost no database lookup,
    however long it keeps being sent (a client left running with an old key), until the long cache expires."""
    from core.tracking.collector import REVOKED_CACHE_SECONDS

    clock = Clock()
    row = next(k for k in keys.list_keys(engine, WS))
    keys.revoke_key(engine, WS, row["id"], actor="tester")
    real_lookup, lookups = keys.lookup, []

    def counted(engine_, token):
        lookups.append(token)
        return real_lookup(engine_, token)

    monkeypatch.setattr(keys, "lookup", counted)

    async def scenario():
        c = Collector(engine, monotonic=clock, rate_limit=None)
        await c.start()
        auth = f"Bearer {server_key}"
        answers = []
        for _ in range(30):  # an hour's worth of a client retrying every two minutes
            answers.append(await c.ingest("touch", b'{"user_id": "a"}', auth))
            clock.now += 119
        assert all(r.status == 401 and "revoked" in r.body["error"] for r in answers)
        assert len(lookups) == 1 and 30 * 119 < REVOKED_CACHE_SECONDS
        clock.now += REVOKED_CACHE_SECONDS
        assert (await c.ingest("touch", b'{"user_id": "a"}', auth)).status == 401 and len(lookups) == 2
        await c.stop()

    asyncio.run(scenario())
