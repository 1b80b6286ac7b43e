"""The dispatcher's claim reads only the rows it takes: by the claim index, in due order, without sorting the backlog."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event

from core.tracking import config
from core.tracking.dispatch import Dispatcher

from .conftest import WS, add_conversions, deliveries, purchase


def test_claim_takes_due_rows_in_order_through_the_claim_index(engine):
    config.save_destination(engine, WS, "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567890"})
    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-CLAIM123"})
    add_conversions(engine, [purchase(i) for i in range(5)])
    seen = []
    event.listen(engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: seen.append((stmt, params)))
    dispatcher = Dispatcher(engine, secrets={}, claim_limit=3)
    token, first = dispatcher.claim(WS, "meta")
    _token, second = dispatcher.claim(WS, "meta")
    meta = [r["id"] for r in deliveries(engine, "meta")]
    assert first == meta[:3] and second == meta[3:]  # in due order, no row twice, ga4's rows untouched
    assert {r["status"] for r in deliveries(engine, "ga4")} == {"pending"}
    assert {r["status"] for r in deliveries(engine, "meta")} == {"sending"}
    if engine.dialect.name == "sqlite":
        updates = [(s, p) for s, p in seen if s.lstrip().upper().startswith("UPDATE")]
        with engine.connect() as conn:
            for stmt, params in updates:
                plan = " ".join(r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}", params))
                assert "ix_delivery_claim" in plan and "TEMP B-TREE" not in plan, plan


def test_a_claim_lost_to_an_expired_lease_is_not_settled_by_its_old_owner(engine):
    config.save_destination(engine, WS, "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567890"})
    add_conversions(engine, [purchase(1)])
    clock = [dt.datetime.now(dt.timezone.utc)]
    first = Dispatcher(engine, secrets={}, lease_seconds=10, clock=lambda: clock[0])
    old_token, ids = first.claim(WS, "meta")
    clock[0] += dt.timedelta(seconds=11)  # the lease ran out: another dispatcher takes the row over
    new_token, again = first.claim(WS, "meta")
    assert again == ids and new_token != old_token
    from core.tracking.destinations.base import Outcome

    first.settle(WS, old_token, {ids[0]: Outcome("sent", "ok")}, {ids[0]: 1})
    (row,) = deliveries(engine, "meta")
    assert row["status"] == "sending" and row["attempts"] == 2
    first.settle(WS, new_token, {ids[0]: Outcome("sent", "ok")}, {ids[0]: 2})
    assert deliveries(engine, "meta")[0]["status"] == "sent"


def test_pipelined_batches_each_delivered_once_while_the_next_is_claimed(engine):
    """The next batch is claimed while the previous one is being sent: disjoint claims, every row sent once,
    and a batch whose sender fails goes to retry without stopping the batches after it."""
    import threading

    from core.tracking.destinations.base import Outcome, Transient

    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-PIPE123"})
    add_conversions(engine, [purchase(i) for i in range(10)])
    sent: list[list[int]] = []
    in_flight = threading.Event()
    claimed_during_send = []

    class Sender:
        def send(self, items, test):
            sent.append([i.delivery_id for i in items])
            if len(sent) == 1:  # hold the first batch until the next one is claimed beside it
                in_flight.set()
                claimed_during_send.append(wait_for_second_claim.wait(10))
            if len(sent) == 2:
                raise Transient("the platform blinked", "503")
            return {i.delivery_id: Outcome("sent", "204") for i in items}

    wait_for_second_claim = threading.Event()
    dispatcher = Dispatcher(engine, secrets={}, claim_limit=3, sender_factory=lambda dest: Sender())
    claim = dispatcher.claim

    claims = []

    def claim_and_note(*args):
        claims.append(args)
        if len(claims) == 2:  # the next batch's claim: once the first batch is with the platform (its sender
            in_flight.wait(10)  # thread may start a moment after this thread goes on to claim)
        got = claim(*args)
        if in_flight.is_set():
            wait_for_second_claim.set()
        return got

    dispatcher.claim = claim_and_note
    counts = dispatcher.dispatch_group(WS, "ga4")
    assert claimed_during_send == [True]  # the second claim ran while the first batch was out
    assert counts == {"sent": 7, "retry": 3}
    flat = [i for batch in sent for i in batch]
    assert len(flat) == len(set(flat)) == 10  # no row in two batches
    rows = {r["id"]: r for r in deliveries(engine, "ga4")}
    assert {rows[i]["status"] for i in sent[1]} == {"retry"} and {r["attempts"] for r in rows.values()} == {1}
    assert sum(r["status"] == "sent" for r in rows.values()) == 7


def test_a_batch_sent_for_longer_than_its_lease_keeps_it_and_is_sent_once(engine):
    """A slow platform holds a batch for three leases: its dispatcher renews the lease while it sends, so a
    second dispatcher (cron beside ``serve``) takes none of those rows, and each is sent once."""
    import threading
    import time

    from core.tracking.destinations.base import Outcome

    config.save_destination(engine, WS, "ga4", enabled=True, test_mode=False, settings={"measurement_id": "G-LEASE123"})
    add_conversions(engine, [purchase(i) for i in range(3)])
    received: list[int] = []
    sending, release = threading.Event(), threading.Event()

    class SlowPlatform:
        def send(self, items, test):
            received.extend(i.delivery_id for i in items)
            sending.set()
            release.wait(10)
            return {i.delivery_id: Outcome("sent", "204") for i in items}

    first = Dispatcher(engine, secrets={}, sender_factory=lambda dest: SlowPlatform(), lease_seconds=0.3)
    second = Dispatcher(engine, secrets={}, sender_factory=lambda dest: SlowPlatform(), lease_seconds=0.3)
    worker = threading.Thread(target=first.dispatch_group, args=(WS, "ga4"))
    worker.start()
    try:
        assert sending.wait(10)
        time.sleep(1.0)  # past three leases of the first claim
        _token, taken = second.claim(WS, "ga4")
    finally:
        release.set()
        worker.join(10)
    assert taken == []
    rows = deliveries(engine, "ga4")
    assert sorted(received) == sorted(r["id"] for r in rows)  # each row sent once
    assert {r["status"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {1}
