"""Storing what the collector received: touches, conversions and their outbox rows, in one transaction.

`write` takes several validated requests (the collector groups concurrent requests into one commit)
and stores them with ``INSERT ... ON CONFLICT DO NOTHING`` on ``(workspace_id, event_id)``: a
repeated event id stores nothing and reports the id as already known. Each *new* conversion gets
one delivery row per enabled destination in the same transaction (the outbox), so a conversion is
never stored without its deliveries nor a delivery without its conversion. Which destinations are
enabled (and Google's conversion actions, and the collector's consent rule) is read in that same
transaction (`config.delivery_settings`, one statement per group), not from the collector's cache: a
conversion stored after a destination was enabled on the Tracking page gets its row, one stored after
it was disabled gets none.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection, Engine

from core.access import Actor, Need, Role, register_self_checked, require
from core.store.bulk import insert_rows, pg_insert_statement
from core.store.models import ConversionDelivery, TrackedConversion, TrackedTouch, utcnow

from .config import CONSENT_REQUIRED, DEADLINES, CollectorSettings, Destination, delivery_settings, idempotency_key

#: How far back a conversion without click ids borrows them from the user's last touch that had one.
CLICK_LOOKBACK = dt.timedelta(days=90)
_CLICK_COLUMNS = ("gclid", "gbraid", "wbraid", "fbc", "fbp")


@dataclass
class WriteRequest:
    """One validated request: its workspace, kind and rows."""

    workspace_id: str
    kind: str  # touch | conversion
    rows: list[dict]
    key_id: int | None = None
    stored: set[str] = field(default_factory=set)  # event ids newly stored by this request (filled by `write`)
    actor: Actor | None = None  # the collector key that sent it (`KeyInfo.actor`); None: the local user
    trace: object = None  # its `core.tracking.trace.RequestTrace` when the collector is traced


#: Writing tracked events and conversions: a collector key of the workspace, or an analyst.
TRACK = Need(Role.ANALYST, collector="any")


def _insert_new(conn: Connection, table, rows: list[dict], returning: tuple[str, ...]) -> list:
    """Insert in one statement, skipping rows whose (workspace_id, event_id) exists; returns the rows actually inserted."""
    return insert_rows(conn, table, rows, skip_conflicts_on=("workspace_id", "event_id"), returning=returning)


#: Click id groups a conversion may borrow from the user's touches (Google's three ids go together).
_CLICK_GROUPS = (("gclid", "gbraid", "wbraid"), ("fbc",), ("fbp",))


def _borrow_click_ids(conn: Connection, workspace_id: str, rows: list[dict]) -> None:
    """A conversion missing a click id group takes it from the user's latest earlier touch that had one."""
    lacking = [r for r in rows if any(not any(r.get(c) for c in group) for group in _CLICK_GROUPS)]
    if not lacking:
        return
    t = TrackedTouch.__table__
    users = sorted({r["user_key"] for r in lacking})
    lo = min(r["ts"] for r in lacking) - CLICK_LOOKBACK
    hi = max(r["ts"] for r in lacking)
    found = conn.execute(
        select(t.c.user_key, t.c.ts, *(t.c[c] for c in _CLICK_COLUMNS))
        .where(t.c.workspace_id == workspace_id, t.c.user_key.in_(users), t.c.ts >= lo, t.c.ts <= hi,
               or_(*(t.c[c].is_not(None) for c in _CLICK_COLUMNS)))
        .order_by(t.c.user_key, t.c.ts)
    ).all()
    by_user = defaultdict(list)
    for row in found:
        by_user[row.user_key].append(row)
    for conv in lacking:
        earlier = [r for r in by_user.get(conv["user_key"], ()) if r.ts <= conv["ts"]]
        for group in _CLICK_GROUPS:
            if any(conv.get(c) for c in group):
                continue
            donor = next((r for r in reversed(earlier) if any(getattr(r, c) for c in group)), None)
            if donor is not None:
                for c in group:
                    conv[c] = getattr(donor, c)


def delivery_rows(conversion: dict, conversion_id: int, workspace_id: str, destinations: dict[str, Destination],
                  collector: CollectorSettings, now: dt.datetime) -> list[dict]:
    """The outbox rows of one new conversion: one per enabled destination that takes it."""
    out = []
    consent = conversion.get("ad_user_data")
    if consent is None and collector.assume_consent:
        consent = True
    for name, dest in destinations.items():
        if not dest.enabled:
            continue
        if name == "google" and dest.conversion_action(conversion["type"]) is None:
            continue  # no conversion action for this type: nothing to send to Google
        deadline = conversion["ts"] + DEADLINES[name]
        if name in CONSENT_REQUIRED and consent is not True:
            status, code, message = "skipped_consent", "no_consent", "the user did not grant ad_user_data consent"
        elif deadline <= now:
            status, code, message = "expired", "too_old", f"older than {name}'s window when it arrived"
        else:
            status, code, message = "pending", None, None
        out.append({"workspace_id": workspace_id, "conversion_id": conversion_id, "destination": name, "status": status,
                    "attempts": 0, "next_attempt_at": now if status == "pending" else None, "deadline_at": deadline,
                    "idempotency_key": idempotency_key(name, conversion)[:300], "test": False, "code": code,
                    "message": message, "created_at": now, "updated_at": now})
    return out


def write(engine: Engine, requests: list[WriteRequest], now: dt.datetime | None = None, *,
          connection: Connection | None = None) -> list[WriteRequest]:
    """Store every request in ONE transaction; fills each request's ``stored`` with its new event ids.
    Each request's actor must be allowed to write into its workspace (a key of that workspace).

    ``connection``: a connection of ``engine`` to write on (the collector's writers keep one each), else
    one from the pool. A group of touches only is one statement, so an autocommit connection suits it."""
    _check_access(engine, requests)
    now = now or utcnow()
    if connection is None:
        with engine.begin() as conn:
            stored = _store(conn, requests, now)
    else:
        with connection.begin():
            stored = _store(connection, requests, now)
    for q, ids in zip(requests, stored):  # only once committed
        q.stored = ids
    return requests


def _check_access(engine: Engine, requests: list[WriteRequest]) -> None:
    checked = set()
    for q in requests:  # the requests of one key share its actor: one check per (workspace, actor)
        if (q.workspace_id, id(q.actor)) not in checked:
            require(engine, q.workspace_id, q.actor, TRACK, action="tracking.write")
            checked.add((q.workspace_id, id(q.actor)))


def _touch_rows(requests: list[WriteRequest], now: dt.datetime) -> list[dict]:
    """The group's touch rows in (workspace, event id) order: groups written at once (several connections
    of one process, or several processes) that share event ids then take their unique-key locks in the
    same order, so a client re-sending a batch in another order cannot deadlock two of them."""
    rows = [dict(r, workspace_id=q.workspace_id, key_id=q.key_id, received_at=now)
            for q in requests if q.kind == "touch" for r in q.rows]
    rows.sort(key=_unique_key)
    return rows


def _unique_key(row: dict) -> tuple[str, str]:
    return row["workspace_id"], row["event_id"]


def touch_statement(engine: Engine, requests: list[WriteRequest], now: dt.datetime) -> tuple[str, tuple]:
    """PostgreSQL: the ONE statement (SQL text, parameters) that stores a group of touch requests, for a
    caller that sends it on a driver connection of its own (the collector's event loop, asynchronously);
    `settle_touches` reads its answer. The same statement `write` runs for such a group."""
    if any(q.kind != "touch" for q in requests):
        raise ValueError("touch_statement takes touch requests only")
    _check_access(engine, requests)
    return pg_insert_statement(engine, TrackedTouch.__table__, _touch_rows(requests, now),
                               skip_conflicts_on=("workspace_id", "event_id"), returning=("workspace_id", "event_id"))


def settle_touches(requests: list[WriteRequest], returned: list[tuple]) -> None:
    """After `touch_statement` committed: each request's ``stored`` from the rows it returned."""
    for q, ids in zip(requests, _stored_ids(requests, {(w, e) for w, e in returned}, {})):
        q.stored = ids


def _stored_ids(requests: list[WriteRequest], new_touches, new_conversions) -> list[set[str]]:
    """Per request, its event ids that were new (the rest were already stored). A new event repeated by
    several requests of the group (a client retrying while its first request waits) belongs to the first:
    only that one reports it stored (and gets its deliveries); the others answer as replays."""
    unclaimed = {"touch": set(new_touches), "conversion": set(new_conversions)}
    out = []
    for q in requests:
        left, ws = unclaimed[q.kind], q.workspace_id
        mine = {e for e in (r["event_id"] for r in q.rows) if (ws, e) in left}
        if mine:
            left.difference_update((ws, e) for e in mine)
        out.append(mine)
    return out


def _store(conn: Connection, requests: list[WriteRequest], now: dt.datetime) -> list[set[str]]:
    """The statements of `write` on ``conn``; returns each request's newly stored event ids."""
    touches = _touch_rows(requests, now)
    t = TrackedTouch.__table__
    new_touches = {(w, e) for w, e in _insert_new(conn, t, touches, ("workspace_id", "event_id"))}
    conv_requests = [q for q in requests if q.kind == "conversion"]
    by_ws = defaultdict(list)
    for q in conv_requests:
        by_ws[q.workspace_id].extend(q.rows)
    for ws, rows in by_ws.items():
        _borrow_click_ids(conn, ws, rows)
    conversions = sorted((dict(r, workspace_id=q.workspace_id, key_id=q.key_id, received_at=now) for q in conv_requests
                          for r in q.rows), key=_unique_key)  # as the touches: one lock order for every writer
    c = TrackedConversion.__table__
    inserted = {(w, e): i for i, w, e in _insert_new(conn, c, conversions, ("id", "workspace_id", "event_id"))}
    stored = _stored_ids(requests, new_touches, inserted)
    if not inserted:
        return stored
    settings = delivery_settings(conn, {w for w, _ in inserted})  # now, in this transaction: not a cached copy
    deliveries = [d for q, ids in zip(requests, stored) if q.kind == "conversion" for r in q.rows if r["event_id"] in ids
                  for d in delivery_rows(r, inserted[(q.workspace_id, r["event_id"])], q.workspace_id,
                                         *settings[q.workspace_id], now)]
    if deliveries:
        insert_rows(conn, ConversionDelivery.__table__, deliveries)
    return stored


register_self_checked(write, TRACK, "tracking.write", audit=False)

__all__ = ["WriteRequest", "write", "touch_statement", "settle_touches", "delivery_rows", "CLICK_LOOKBACK", "TRACK"]
