"""`core.store.bulk`: one-statement inserts and updates store exactly what SQLAlchemy's own insert stores."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import insert, select, text

from core.store import bulk
from core.store.models import ConversionDelivery, TrackedConversion

C = TrackedConversion.__table__
D = ConversionDelivery.__table__
NOW = dt.datetime(2026, 3, 29, 1, 30, 0, tzinfo=dt.timezone.utc)


def _conversion(i: int, **extra) -> dict:
    row = {"workspace_id": "ws", "event_id": f"e{i}", "user_key": f"ü-{i} \"quoted\" 🙂", "ts": NOW - dt.timedelta(microseconds=i),
           "received_at": NOW.astimezone(dt.timezone(dt.timedelta(hours=2))), "type": "purchase",
           "value": Decimal("19.990001") + i, "currency": "EUR", "order_id": None if i % 2 else f"o{i}", "action_source": "website",
           "event_source_url": "https://x.example/?a=1&b='2'", "client_ip": None, "user_agent": "UA", "fbc": None, "fbp": None,
           "gclid": f"g{i}", "gbraid": None, "wbraid": None, "ga_client_id": None, "ad_user_data": i % 3 == 0 or None,
           "ad_personalization": False, "user_data": {"meta": {"em": "ab" * 32}, "google": {}, "n": [1, 2.5, None]},
           "has_email": True, "has_phone": False, "key_id": None if i % 2 else 7}
    row.update(extra)
    return row


def _raw(conn, table, order="event_id"):
    """Rows as the driver returns them (no type processing), with SQLite's storage classes."""
    cols = [c.name for c in table.columns if c.name != "id"]
    if conn.dialect.name == "sqlite":
        typed = ", ".join(f"{c}, typeof({c})" for c in cols)
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {typed} FROM {table.name} ORDER BY {order}")]
    return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(cols)} FROM {table.name} ORDER BY {order}")]


def test_insert_rows_stores_what_sqlalchemy_stores(engine):
    rows = [_conversion(i) for i in range(5)]
    with engine.begin() as conn:
        conn.execute(insert(C), rows)
        expected = _raw(conn, C)
        conn.execute(C.delete())
        back = bulk.insert_rows(conn, C, rows, skip_conflicts_on=("workspace_id", "event_id"), returning=("id", "event_id"))
        assert sorted(e for _i, e in back) == [f"e{i}" for i in range(5)]
        assert _raw(conn, C) == expected
        stored = conn.execute(select(C.c.ts, C.c.value, C.c.user_data, C.c.ad_user_data).order_by(C.c.event_id)).all()
    assert stored[0].ts == NOW and stored[1].value == Decimal("20.990001") and stored[2].user_data["n"] == [1, 2.5, None]
    assert [r.ad_user_data for r in stored] == [True, None, None, True, None]


def test_insert_rows_skips_conflicts_and_returns_only_new_rows(engine):
    with engine.begin() as conn:
        first = bulk.insert_rows(conn, C, [_conversion(1), _conversion(2)], skip_conflicts_on=("workspace_id", "event_id"),
                                 returning=("event_id",))
        again = bulk.insert_rows(conn, C, [_conversion(2, value=Decimal(99)), _conversion(3)],
                                 skip_conflicts_on=("workspace_id", "event_id"), returning=("event_id",))
        assert sorted(r.event_id for r in first) == ["e1", "e2"] and [r.event_id for r in again] == ["e3"]
        assert conn.execute(select(C.c.value).where(C.c.event_id == "e2")).scalar_one() == Decimal("21.990001")
        assert bulk.insert_rows(conn, C, []) == []


def test_update_rows_sets_each_row_its_own_values_where_every_match_holds(engine):
    with engine.begin() as conn:
        ids = dict((e, i) for i, e in bulk.insert_rows(conn, C, [_conversion(i) for i in range(3)], returning=("id", "event_id")))
        deliveries = [{"workspace_id": "ws", "conversion_id": ids[f"e{i}"], "destination": "meta", "status": "sending", "attempts": 1,
                       "next_attempt_at": None, "deadline_at": NOW, "lease_owner": "tok" if i < 2 else "other", "lease_until": NOW,
                       "idempotency_key": f"k{i}", "test": False, "code": None, "message": None, "trace_id": None,
                       "created_at": NOW, "updated_at": NOW, "sent_at": None} for i in range(3)]
        bulk.insert_rows(conn, D, deliveries)
        did = {r.idempotency_key: r.id for r in conn.execute(select(D.c.id, D.c.idempotency_key))}
        later = NOW + dt.timedelta(seconds=5)
        changed = bulk.update_rows(conn, D, [
            {"b_id": did["k0"], "b_token": "tok", "status": "sent", "code": "ok", "sent_at": later, "lease_owner": None},
            {"b_id": did["k1"], "b_token": "tok", "status": "retry", "code": "503", "sent_at": None, "lease_owner": None},
            {"b_id": did["k2"], "b_token": "tok", "status": "sent", "code": "ok", "sent_at": later, "lease_owner": None},  # lease lost
        ], match={"id": "b_id", "lease_owner": "b_token"}, values=("status", "code", "sent_at", "lease_owner"))
        assert changed == 2
        got = {r.idempotency_key: r for r in conn.execute(select(D).order_by(D.c.id))}
    assert (got["k0"].status, got["k0"].code, got["k0"].sent_at, got["k0"].lease_owner) == ("sent", "ok", later, None)
    assert (got["k1"].status, got["k1"].sent_at) == ("retry", None)
    assert (got["k2"].status, got["k2"].lease_owner) == ("sending", "other")


def test_sqlite_update_looks_rows_up_by_key(tmp_path):
    """The one-statement update must look each row up by its key, not scan the table per row (quadratic)."""
    from sqlalchemy import event

    from core.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    seen = []
    event.listen(engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: seen.append((stmt, params)))
    with engine.begin() as conn:
        bulk.update_rows(conn, D, [{"b_id": 1, "status": "sent"}], match={"id": "b_id"}, values=("status",))
        stmt, params = seen[-1]
        plan = " ".join(r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}", params))
    assert "SCAN conversion_deliveries" not in plan, plan


def test_insert_rows_beyond_one_statement_returns_every_new_row(engine):
    """More rows than one statement binds on SQLite (999 values): every chunk is inserted and returned."""
    with engine.begin() as conn:
        bulk.insert_rows(conn, C, [_conversion(i) for i in range(0, 150, 3)])
        back = bulk.insert_rows(conn, C, [_conversion(i) for i in range(150)], skip_conflicts_on=("workspace_id", "event_id"),
                                returning=("event_id",))
        assert sorted(r.event_id for r in back) == sorted(f"e{i}" for i in range(150) if i % 3)
        assert conn.execute(text("SELECT count(*) FROM tracked_conversions")).scalar_one() == 150
