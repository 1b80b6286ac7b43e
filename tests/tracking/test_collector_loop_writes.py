"""The collector's event loop writes groups of touches itself: on SQLite synchronously, never waiting for
another writer (another worker process's turn, or the app holding SQLite's write lock); on PostgreSQL
on an asynchronous connection of its own, falling back to the writer threads when that connection is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, select

from core.store.db import WriterTurn, make_engine
from core.store.models import TrackedTouch
from core.tracking import keys, store
from core.tracking.collector import Collector

WS = "shop"


@pytest.fixture
def sqlite_file(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'loop.db'}")
    key, _ = keys.create_key(engine, WS, name="tests")
    yield engine, f"Bearer {key}"
    engine.dispose()


def _stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(TrackedTouch)).scalar()


def _body(event_id: str) -> bytes:
    return f'{{"user_id": "u-{event_id}", "event_id": "{event_id}", "channel": "Search"}}'.encode()


async def _longest_stall_while(awaitable) -> tuple[object, float]:
    """Await ``awaitable`` while a 1 ms timer runs: its result and the longest gap between two ticks
    (a loop held by a write shows the whole hold as one gap)."""
    task = asyncio.ensure_future(awaitable)
    last, longest = time.monotonic(), 0.0
    while not task.done():
        await asyncio.sleep(0.001)
        now = time.monotonic()
        last, longest = now, max(longest, now - last)
    return task.result(), longest


def test_requests_read_in_one_loop_iteration_are_one_transaction_written_without_threads(sqlite_file, monkeypatch):
    engine, auth = sqlite_file
    groups = []
    real_write = store.write

    def counting_write(engine_, requests, now=None, *, connection=None):
        groups.append((len(requests), threading.current_thread().name))
        return real_write(engine_, requests, now, connection=connection)

    monkeypatch.setattr(store, "write", counting_write)

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        await c.ingest("touch", _body("warm"), auth)  # keys and settings cached
        groups.clear()
        replies = await asyncio.gather(*(c.ingest("touch", _body(f"e{i}"), auth) for i in range(50)))
        threads = [t.name for t in threading.enumerate() if t.name.startswith("collector-writer")]
        await c.stop()
        return replies, threads

    replies, threads = asyncio.run(run())
    assert [r.status for r in replies] == [200] * 50
    assert _stored(engine) == 51
    assert threads == []  # no writer threads on SQLite
    assert groups == [(50, "MainThread")]  # one transaction, on the loop's thread


def test_the_loop_serves_on_while_another_process_has_the_writers_turn(sqlite_file):
    engine, auth = sqlite_file
    other_process = WriterTurn(engine)  # its own open file: flock makes it a separate holder

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        await c.ingest("touch", _body("warm"), auth)
        assert other_process.take(wait=False)
        pending = asyncio.ensure_future(c.ingest("touch", _body("held"), auth))
        await asyncio.sleep(0.05)
        waiting = not pending.done() and _stored(engine) == 1
        other_process.release()
        reply, _ = await _longest_stall_while(pending)
        await c.stop()
        return waiting, reply

    try:
        waiting, reply = asyncio.run(run())
    finally:
        other_process.close()
    assert waiting  # not written, not answered, while the turn was elsewhere
    assert reply.status == 200 and _stored(engine) == 2


def test_a_busy_database_leaves_the_group_queued_without_blocking_the_loop(sqlite_file):
    """The app holds SQLite's write lock (an import) for a second: the loop keeps running its timers (it
    would freeze for the whole hold if it waited in SQLite), then the group lands once."""
    engine, auth = sqlite_file
    importer = sqlite3.connect(engine.url.database, isolation_level=None, check_same_thread=False)
    release = threading.Event()

    def hold_write_lock():
        importer.execute("BEGIN IMMEDIATE")
        release.wait(5)
        importer.execute("ROLLBACK")

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        await c.ingest("touch", _body("warm"), auth)
        holder = threading.Thread(target=hold_write_lock)
        holder.start()
        await asyncio.sleep(0.02)
        threading.Timer(1.0, release.set).start()  # not on the loop: a loop held in SQLite could not run it
        started = time.monotonic()
        replies, stall = await _longest_stall_while(asyncio.gather(*(c.ingest("touch", _body(f"b{i}"), auth) for i in range(5))))
        waited = time.monotonic() - started
        holder.join()
        await c.stop()
        return replies, stall, waited

    try:
        replies, stall, waited = asyncio.run(run())
    finally:
        importer.close()
    assert [r.status for r in replies] == [200] * 5
    assert _stored(engine) == 6
    assert waited >= 0.9  # the group waited for the lock...
    assert stall < 0.5  # ...while the loop ran on


def test_stop_writes_what_is_queued(sqlite_file):
    engine, auth = sqlite_file

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        await c.ingest("touch", _body("warm"), auth)
        tasks = [asyncio.ensure_future(c.ingest("touch", _body(f"s{i}"), auth)) for i in range(10)]
        await asyncio.sleep(0)  # the requests are queued; their flush has not run yet
        await c.stop()
        return await asyncio.gather(*tasks)

    replies = asyncio.run(run())
    assert [r.status for r in replies] == [200] * 10 and _stored(engine) == 11


def test_touch_groups_are_written_by_the_loop_and_a_lost_loop_connection_loses_nothing(engine, server_key, monkeypatch):
    """Both databases: every group of touches is stored from the loop's thread. PostgreSQL: the server ends
    the loop's connection; the group in flight is written by a writer thread, nothing is lost or stored
    twice, and the next group goes out on a new asynchronous connection."""
    from sqlalchemy import text

    writers = []
    for name in ("write", "touch_statement"):
        real = getattr(store, name)

        def recording(*args, _real=real, **kwargs):
            writers.append(threading.current_thread().name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(store, name, recording)
    auth = f"Bearer {server_key}"

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        first = await asyncio.gather(*(c.ingest("touch", _body(f"a{i}"), auth) for i in range(30)))
        on_loop = set(writers)
        lost, now, later = set(), set(), []
        if engine.dialect.name == "postgresql":
            lost = {conn.info.backend_pid for conn in c._idle_aconns}
            with engine.connect() as admin:
                for pid in lost:
                    admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for batch in range(4):  # each idle connection the server ended fails one group, then a new one opens
            later += await asyncio.gather(*(c.ingest("touch", _body(f"b{batch}-{i}"), auth) for i in range(30)))
            now = {conn.info.backend_pid for conn in c._idle_aconns}
            if engine.dialect.name != "postgresql" or now - lost:
                break
        await c.stop()
        return first + later, on_loop, lost, now

    replies, on_loop, lost, now = asyncio.run(run())
    assert [r.status for r in replies] == [200] * len(replies) and len(replies) >= 60
    assert not any(r.headers.get("Idempotent-Replayed") for r in replies)  # each stored once, by its own request
    assert _stored(engine) == len(replies)
    assert on_loop == {"MainThread"}
    if engine.dialect.name == "postgresql":
        assert lost and now - lost  # a new connection for the groups after the loss


@pytest.mark.postgres
def test_touches_queued_behind_a_stalled_statement_go_out_on_a_spare_connection(postgres_url):
    """PostgreSQL: a statement the server holds up (here: its event waits on another transaction's
    uncommitted row with the same id) does not hold up the touches queued behind it: they are stored
    and answered on a spare connection while it waits; the stalled one is stored once it is let go."""
    from sqlalchemy import text

    engine = make_engine(postgres_url)
    key, _ = keys.create_key(engine, WS, name="tests")
    auth = f"Bearer {key}"
    blocker = engine.connect()
    held = blocker.begin()
    blocker.execute(text("INSERT INTO tracked_touches (workspace_id, event_id, user_key, ts, received_at, interaction) "
                         "VALUES (:ws, 'stalled', 'u-stalled', now(), now(), 'visit')"), {"ws": WS})

    async def run():
        c = Collector(engine, rate_limit=None)
        await c.start()
        stalled = asyncio.ensure_future(c.ingest("touch", _body("stalled"), auth))
        await asyncio.sleep(0.3)  # its statement is in flight, waiting on the blocker's row
        assert not stalled.done()
        started = time.monotonic()
        others = await asyncio.wait_for(asyncio.gather(*(c.ingest("touch", _body(f"o{i}"), auth) for i in range(10))), 5)
        others_took = time.monotonic() - started
        assert not stalled.done()
        in_flight = len(c._touch_flushes)
        held.rollback()  # let the stalled statement go: its event is new after all
        first = await asyncio.wait_for(stalled, 5)
        await c.stop()
        return first, others, others_took, in_flight

    try:
        first, others, others_took, in_flight = asyncio.run(run())
    finally:
        blocker.close()
    assert [r.status for r in others] == [200] * 10 and others_took < 2
    assert in_flight >= 1
    assert first.status == 200 and not first.headers.get("Idempotent-Replayed")
    assert _stored(engine) == 11
    engine.dispose()


def test_groups_sharing_event_ids_in_any_order_lock_them_in_one_order(engine, monkeypatch):
    """Two groups in flight at once (spare connections, or two worker processes) that share event ids must
    take their unique-key locks in the same order, or a client re-sending a batch in another order could
    deadlock them (PostgreSQL then aborts one after a second). Every writer inserts in (workspace, event id)
    order: the touch statement's rows, and the rows `write` inserts for touches and for conversions."""
    import datetime as dt

    from core.store import bulk
    from core.tracking import payloads

    now = dt.datetime.now(dt.timezone.utc)

    def group(kind, ids):
        return [store.WriteRequest(WS, kind, payloads.parse_items({"batch": [{"user_id": "u", "event_id": e, "value": 1,
                                                                              "currency": "EUR"} if kind == "conversion" else
                                                                             {"user_id": "u", "event_id": e} for e in ids]},
                                                                   kind, now), None)]

    inserted = []
    real = bulk.insert_rows

    def recording(conn, table, rows, **kwargs):
        if rows:
            inserted.append((table.name, [r["event_id"] for r in rows]))
        return real(conn, table, rows, **kwargs)

    monkeypatch.setattr(store, "insert_rows", recording)
    forward, backward = ["e-3", "e-1", "e-2"], ["e-2", "e-1", "e-3"]
    for kind in ("touch", "conversion"):
        store.write(engine, group(kind, forward), now)
        store.write(engine, group(kind, backward), now)
    table_of = {"touch": "tracked_touches", "conversion": "tracked_conversions"}
    for kind, table in table_of.items():
        orders = [ids for name, ids in inserted if name == table]
        assert orders == [["e-1", "e-2", "e-3"]] * 2, (kind, orders)
    if engine.dialect.name == "postgresql":
        documents = [store.touch_statement(engine, group("touch", ids), now)[1][0] for ids in (forward, backward)]
        assert documents[0].index('"e-1"') < documents[0].index('"e-2"') < documents[0].index('"e-3"')
        assert documents[0] == documents[1]
