"""kill -9 of the dispatcher mid-batch loses nothing; the re-send carries the same idempotency keys, so
every conversion is counted exactly once per destination key. A real collector process too."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.tracking import config
from core.tracking.dispatch import Dispatcher

from .conftest import WS, add_conversions, deliveries, purchase

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_mid_batch_then_resend_counts_once(engine, db_url, http_fakes):
    config.save_destination(engine, WS, "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567890"})
    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-CRASH123"})
    n = 40
    add_conversions(engine, [purchase(i) for i in range(n)])
    http_fakes.meta.delay = 30.0  # the platform takes the batch, then answers slowly: the dispatcher dies waiting
    env = dict(os.environ, PYTHONPATH=str(ROOT), META_CAPI_ACCESS_TOKEN="EAAB-crash-token", GA4_API_SECRET="ga4-crash-secret",
               **{config.ENDPOINT_ENV["meta"]: http_fakes.url, config.ENDPOINT_ENV["ga4"]: http_fakes.url})
    proc = subprocess.Popen([sys.executable, "-m", "core", "dispatch", "--db", db_url, "--lease-seconds", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not http_fakes.meta.requests:
        time.sleep(0.05)
    assert http_fakes.meta.requests, "the dispatcher never reached the Meta fake"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.5)
    sending = [r for r in deliveries(engine, "meta") if r["status"] == "sending"]
    assert sending, "the killed dispatcher left its claimed rows in 'sending'"
    first_ids = sorted(e["event_id"] for e in http_fakes.meta.requests[0]["events"])

    http_fakes.meta.delay = 0.0
    time.sleep(2.2)  # the dead dispatcher's lease runs out
    secrets = {"meta_capi_access_token": "EAAB-crash-token", "ga4_api_secret": "ga4-crash-secret"}
    os.environ[config.ENDPOINT_ENV["meta"]] = http_fakes.url
    os.environ[config.ENDPOINT_ENV["ga4"]] = http_fakes.url
    try:
        Dispatcher(engine, secrets=secrets, lease_seconds=2).run_once()
        Dispatcher(engine, secrets=secrets, lease_seconds=2).run_once()  # nothing left: nothing sent twice more
    finally:
        os.environ.pop(config.ENDPOINT_ENV["meta"])
        os.environ.pop(config.ENDPOINT_ENV["ga4"])
    rows = deliveries(engine)
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == 2 * n
    expected = {(f"evt-{i}", "Purchase") for i in range(n)}
    assert http_fakes.meta.counted() == expected  # Meta counts each event once
    resent = [e["event_id"] for r in http_fakes.meta.requests[1:] for e in r["events"]]
    assert sorted(set(resent) & set(first_ids)) == first_ids  # the re-send reused the very same event ids
    assert all(http_fakes.meta.keys[k] <= 2 for k in expected)
    ga4 = {t for _c, t in http_fakes.ga4.counted()}
    assert ga4 == {f"order-{i}" for i in range(n)}


@pytest.mark.parametrize("workers", [1, 2])
def test_real_collector_process_end_to_end(tmp_path, http_fakes, workers):
    """`python -m core serve` as a real uvicorn process: a touch and a purchase, delivered by its dispatcher
    (with two worker processes, the dispatcher runs once, in the supervising process)."""
    import json
    import socket
    import urllib.request

    from core.store.db import make_engine
    from core.tracking import keys

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(url)
    key, _ = keys.create_key(engine, WS)
    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-SERVE123"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT), GA4_API_SECRET="ga4-serve-secret", **{config.ENDPOINT_ENV["ga4"]: http_fakes.url})
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--db", url, "--port", str(port),
                             "--workers", str(workers)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if json.loads(urllib.request.urlopen(f"{base}/v1/health", timeout=1).read())["ok"]:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text()[-2000:])

        def post(path, body):
            req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert post("/v1/events", {"user_id": "v1", "source": "google", "medium": "cpc", "gclid": "Gx"})[0] == 200
        assert post("/v1/conversions", purchase(1, user_id="v1"))[0] == 200
        status, body = post("/v1/conversions", {"user_id": "v1", "value": 5, "currency": "EURO"})
        assert status == 422 and body["field"] == "currency"
        for _ in range(100):
            if http_fakes.ga4.counted():
                break
            time.sleep(0.1)
        assert {t for _c, t in http_fakes.ga4.counted()} == {"order-1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert [r["status"] for r in deliveries(engine)] == ["sent"]
