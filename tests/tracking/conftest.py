"""Fixtures of the tracking tests: an engine (SQLite and PostgreSQL), keys, stored conversions, fakes."""

from __future__ import annotations

import datetime as dt

import pytest

from core.tracking import keys, payloads, store

WS = "shop"


@pytest.fixture
def server_key(engine):
    key, _ = keys.create_key(engine, WS, name="tests")
    return key


@pytest.fixture
def client(engine, server_key):
    """A TestClient on the collector app (rate limit high enough not to interfere)."""
    from starlette.testclient import TestClient

    from core.serve import create_app

    with TestClient(create_app(engine, rate_limit=10_000)) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def add_conversions(engine, bodies: list[dict], workspace: str = WS, now: dt.datetime | None = None) -> list[str]:
    """Validate and store conversions as the collector does (the outbox rows from the workspace's destinations)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = payloads.parse_items({"batch": bodies}, "conversion", now)
    request = store.WriteRequest(workspace, "conversion", rows, None)
    store.write(engine, [request], now)
    return [r["event_id"] for r in rows]


def deliveries(engine, destination: str | None = None, workspace: str = WS) -> list[dict]:
    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import ConversionDelivery as D

    with transaction(engine, workspace) as s:
        q = select(D).order_by(D.id)
        if destination:
            q = q.where(D.destination == destination)
        return [{c: getattr(r, c) for c in ("id", "destination", "status", "attempts", "code", "message", "trace_id",
                                             "idempotency_key", "test", "conversion_id")} for r in s.scalars(q)]


def purchase(i: int, **extra) -> dict:
    body = {"user_id": f"u{i}", "event_id": f"evt-{i}", "order_id": f"order-{i}", "type": "purchase", "value": 10 + i,
            "currency": "EUR", "email": f"Buyer.{i}@Gmail.com", "ad_user_data": True, "gclid": f"gclid-{i}",
            "event_source_url": "https://shop.example.com/thanks", "user_agent": "Mozilla/5.0 test",
            "client_ip": "203.0.113.7"}
    body.update(extra)
    return body


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    from tests.platforms.fake_google import shared_tls

    return shared_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def http_fakes():
    from .fakes import FakeHttpPlatforms

    fakes = FakeHttpPlatforms()
    yield fakes
    fakes.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectorProcess:
    """`python -m core serve` in its own process on a free port (stopped on exit)."""

    def __init__(self, db_url: str, log_path, env: dict | None = None, extra_args=()):
        import os
        import subprocess
        import sys
        from pathlib import Path

        root = Path(__file__).resolve().parents[2]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--db", db_url, "--port", str(self.port), *extra_args],
                                     cwd=root, env=dict(os.environ, PYTHONPATH=str(root), **(env or {})),
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, seconds: float = 30) -> "CollectorProcess":
        import json
        import time
        import urllib.request

        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                if json.loads(urllib.request.urlopen(f"{self.url}/v1/health", timeout=1).read())["ok"]:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(open(self.log_path).read()[-2000:])

    def stop(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
        self._log.close()
