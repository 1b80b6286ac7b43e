"""The collector's tail-latency machinery: SQLite WAL checkpoints in a background thread (nothing
acknowledged is lost when the processes are killed mid-traffic), and the opt-in request trace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from sqlalchemy import select, text

from core.store.checkpoint import WalCheckpointer
from core.store.db import make_engine, transaction
from core.store.models import TrackedTouch
from core.tracking import keys
from core.tracking.trace import TRACE_ENV

from .conftest import WS, CollectorProcess


def _fill_wal(engine, rows: int) -> None:
    """Commit ``rows`` small transactions on a connection that never checkpoints by itself."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS scratch (id INTEGER PRIMARY KEY, v TEXT)")
        conn.commit()
        for i in range(rows):
            conn.exec_driver_sql("INSERT INTO scratch (v) VALUES (?)", (f"row {i} " * 40,))
            conn.commit()


def _wal_frames(engine) -> int:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1]


def test_checkpoint_past_the_restart_length_catches_up_in_the_writers_turn_and_the_wal_restarts(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    _fill_wal(engine, 200)
    checkpointer = WalCheckpointer(engine, restart_frames=50)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        done = checkpointer.checkpoint(conn)
    assert [c.in_writers_turn for c in done] == [False, True]
    long_wal = done[-1].wal_frames
    assert long_wal >= 200 and done[-1].checkpointed == long_wal  # every frame is in the database file
    _fill_wal(engine, 1)  # the next writer starts the WAL from its beginning
    assert _wal_frames(engine) < long_wal / 10
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar() == 201


def test_short_wal_gets_a_passive_checkpoint_only(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    _fill_wal(engine, 5)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        done = WalCheckpointer(engine, restart_frames=10_000).checkpoint(conn)
    assert len(done) == 1 and not done[0].in_writers_turn and done[0].checkpointed == done[0].wal_frames > 0


def test_started_collector_checkpoints_in_the_background_and_its_writers_never_do(tmp_path):
    from core.tracking.collector import Collector

    engine = make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
    key, _ = keys.create_key(engine, WS)

    async def scenario():
        collector = Collector(engine, rate_limit=None)
        await collector.start()
        try:
            replies = await asyncio.gather(*(collector.ingest("touch", json.dumps({"user_id": f"u{i}", "event_id": f"e{i}"}).encode(),
                                                              f"Bearer {key}") for i in range(50)))
            writer_settings = [c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() for c in collector._connections]
            checkpointer = collector._checkpointer
            for _ in range(200):  # the thread's first round comes after its interval
                if checkpointer.count:
                    break
                await asyncio.sleep(0.05)
            return [r.status for r in replies], writer_settings, checkpointer.count
        finally:
            await collector.stop()

    statuses, writer_settings, count = asyncio.run(scenario())
    assert statuses == [200] * 50
    assert writer_settings and set(writer_settings) == {0}  # the writers' commits never checkpoint
    assert count > 0
    with transaction(engine, WS) as s:
        assert len(s.scalars(select(TrackedTouch.event_id)).all()) == 50


def test_every_acknowledged_event_survives_kill_9_of_the_collector_mid_traffic(tmp_path):
    """`python -m core serve --workers 2` on SQLite (background checkpoints, WAL + synchronous=NORMAL)
    killed with SIGKILL while four clients send: every event answered 200 is in the database after."""
    import psutil

    url = f"sqlite:///{tmp_path / 'kill.db'}"
    engine = make_engine(url)
    key, _ = keys.create_key(engine, WS)
    proc = CollectorProcess(url, tmp_path / "serve.log", extra_args=["--no-dispatch", "--rate-limit", "0", "--workers", "2"]).wait_ready()
    acknowledged: list[str] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            event_id = uuid.uuid4().hex
            body = json.dumps({"user_id": "u1", "event_id": event_id, "source": "google", "medium": "cpc"}).encode()
            req = urllib.request.Request(f"{proc.url}/v1/events", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        acknowledged.append(event_id)
            except (OSError, urllib.error.URLError):
                if stop.is_set():
                    return
                time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(600):  # enough traffic for several background checkpoints
            if len(acknowledged) >= 1_500:
                break
            time.sleep(0.05)
        root = psutil.Process(proc.proc.pid)
        for p in [*root.children(recursive=True), root]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        acked = list(acknowledged)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.proc.wait(10)
        proc._log.close()
    assert len(acked) >= 100, open(proc.log_path).read()[-2000:]
    reopened = make_engine(url)  # SQLite replays the WAL the killed processes left
    with transaction(reopened, WS) as s:
        stored = set(s.scalars(select(TrackedTouch.event_id)))
    assert not set(acked) - stored
    with reopened.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_traced_collector_writes_each_requests_stamps_in_order(tmp_path, db_url):
    engine = make_engine(db_url)
    key, _ = keys.create_key(engine, WS)
    trace_dir = tmp_path / "trace"
    proc = CollectorProcess(db_url, tmp_path / "serve.log", env={TRACE_ENV: str(trace_dir)},
                            extra_args=["--no-dispatch"]).wait_ready()
    try:
        for i in range(20):
            req = urllib.request.Request(f"{proc.url}/v1/events", data=json.dumps({"user_id": "u", "event_id": f"t{i}"}).encode(),
                                         method="POST", headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200
    finally:
        proc.stop()
    (trace_file,) = trace_dir.glob("trace-*.json")
    trace = json.loads(trace_file.read_text())
    rows = [dict(zip(trace["fields"], r)) for r in trace["requests"]]
    assert sorted(r["event_id"] for r in rows) == sorted(f"t{i}" for i in range(20))
    stages = ["arrived", "read", "authorized", "settled", "parsed", "queued", "taken", "locked", "committed", "woken", "answered"]
    for r in rows:
        assert all(r[a] <= r[b] for a, b in zip(stages, stages[1:])), r
        assert r["group"] >= 1
    lag = trace["loop_lag"]  # (time, lateness, run-queue seconds so far, on-core seconds so far)
    assert lag and all(len(x) == 4 and x[2] >= 0 and x[3] > 0 for x in lag)
    assert all(a[3] <= b[3] for a, b in zip(lag, lag[1:]))  # cumulative


def test_untraced_collector_has_no_tracer(tmp_path, monkeypatch):
    from core.tracking.collector import Collector

    monkeypatch.delenv(TRACE_ENV, raising=False)
    assert Collector(make_engine(f"sqlite:///{tmp_path / 'x.db'}")).tracer is None
