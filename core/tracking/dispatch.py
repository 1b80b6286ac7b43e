"""The outbox dispatcher: claim due deliveries with a lease, send them in batches, settle each row.

A claim is a conditional update (``pending``/``retry`` and due, or ``sending`` with an expired lease
-> ``sending`` under a fresh lease token), preceded on PostgreSQL by ``SELECT ... FOR UPDATE SKIP
LOCKED`` so concurrent dispatchers take disjoint rows. Results are written only where the row still
carries this claim's token. A dispatcher killed between sending and settling leaves rows in
``sending``; once the lease runs out another run re-sends them with the same idempotency keys (Meta
event_id + event_name, Google order_id / transaction_id, GA4 transaction_id), so the platforms
count each conversion once: delivery is at least once, counted exactly once.

Rows past their destination's deadline become ``expired`` (not sent). Transient failures go back to
``retry`` with exponential backoff (tenacity); permanent ones are ``failed`` with the platform's
code and message. In test mode rows end as ``test`` (validate-only / test event code / debug endpoint).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.store.bulk import update_rows
from core.store.db import transaction
from core.store.models import ConversionDelivery, TrackedConversion, utcnow

from . import config
from .destinations.base import FAILED, RETRY, Item, Outcome, Transient, next_attempt

log = logging.getLogger("marketing_suite.dispatch")
LEASE_SECONDS = 120.0
CLAIM_LIMIT = 2000
#: How long a destination whose secrets are missing waits before its rows are looked at again.
UNCONFIGURED_RETRY = dt.timedelta(minutes=15)
#: Data Manager processes a request after answering it: its outcome is read back this much later.
CONFIRM_AFTER = dt.timedelta(minutes=2)
D = ConversionDelivery


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for status, n in counts.items():
        total[status] = total.get(status, 0) + n


class NotConfigured(Exception):
    """A destination is enabled but misses a secret or identifier (named in the message)."""


def _due(now: dt.datetime):
    return or_(and_(D.status.in_(("pending", "retry")), D.next_attempt_at <= now),
               and_(D.status == "sending", D.lease_until < now))


def build_sender(dest: config.Destination, secrets: Mapping | None = None, environ: Mapping | None = None):
    """The sender of a configured destination, from its settings and secrets; `NotConfigured` says what is missing."""
    import os

    environ = os.environ if environ is None else environ
    found = {k: v for k, (v, _src) in config.secret_values(dest.name, secrets, environ).items()}
    s = dest.settings

    def need(*names, where=found):
        missing = [n for n in names if not where.get(n)]
        if missing:
            raise NotConfigured(f"{config.LABELS[dest.name]}: missing {', '.join(missing)}")

    if dest.name == "meta":
        from .destinations.meta import MetaSender

        need("pixel_id", where=s)
        token = found.get("meta_capi_access_token") or found.get("meta_access_token")
        if not token:
            raise NotConfigured("Meta Conversions API: missing meta_capi_access_token (or meta_access_token)")
        return MetaSender(s["pixel_id"], token, found.get("meta_app_secret"), test_event_code=s.get("test_event_code"),
                          ldu=s.get("ldu", "off"), graph_url=environ.get(config.ENDPOINT_ENV["meta"]))
    if dest.name == "ga4":
        from .destinations.ga4 import GA4Sender

        need("measurement_id", where=s)
        need("ga4_api_secret")
        return GA4Sender(s["measurement_id"], found["ga4_api_secret"], base_url=environ.get(config.ENDPOINT_ENV["ga4"]))
    if dest.name == "google":
        from .destinations.google import DataManagerSender, GoogleAdsSender

        need("customer_id", "conversion_actions", where=s)
        need("google_client_id", "google_client_secret", "google_refresh_token")
        if s.get("api", "data_manager") == "google_ads":
            need("google_developer_token")
            return GoogleAdsSender.from_secrets(found, s, environ.get(config.ENDPOINT_ENV["google_ads"]))
        return DataManagerSender.from_secrets(found, s, environ.get(config.ENDPOINT_ENV["data_manager"]))
    raise NotConfigured(f"unknown destination {dest.name!r}")


class Dispatcher:
    """Delivers the outbox of every workspace; `run_once` for one pass, `run_forever` inside ``serve``."""

    def __init__(self, engine: Engine, *, secrets: Mapping | None = None, sender_factory: Callable | None = None,
                 lease_seconds: float = LEASE_SECONDS, claim_limit: int = CLAIM_LIMIT, clock: Callable = utcnow,
                 idle_seconds: float = 1.0):
        self.engine = engine
        if secrets is None:
            secrets = config.read_secrets_file()
        self.secrets = secrets
        self.sender_factory = sender_factory or (lambda dest: build_sender(dest, self.secrets))
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.claim_limit = claim_limit
        self.clock = clock
        self.idle_seconds = idle_seconds
        self._senders: dict[tuple, object] = {}
        self._db_writes = threading.RLock()  # claims and settlements of one dispatcher take turns

    # ---------------------------------------------------------------------------- claims
    def due_groups(self) -> list[tuple[str, str]]:
        """(workspace, destination) pairs with rows to send now (a system-wide read, one small query)."""
        from sqlalchemy.orm import Session

        with Session(self.engine) as s:
            return [tuple(r) for r in s.execute(select(D.workspace_id, D.destination).where(_due(self.clock())).distinct())]

    def claim(self, workspace_id: str, destination: str) -> tuple[str, list[int]]:
        """Take up to `claim_limit` due rows under a fresh lease; returns (token, row ids).

        One conditional ``UPDATE ... RETURNING`` per kind of due row (an expired lease, a retry, a new
        row), each reading its rows in due order straight off the claim index (workspace, destination,
        status, next attempt), so a claim costs the rows it takes, not the backlog nor the rows sent.
        """
        token = uuid.uuid4().hex
        now = self.clock()
        t = D.__table__
        base = (t.c.workspace_id == workspace_id, t.c.destination == destination)
        kinds = ((t.c.status == "sending", t.c.lease_until < now), (t.c.status == "retry", t.c.next_attempt_at <= now),
                 (t.c.status == "pending", t.c.next_attempt_at <= now))
        got: list[int] = []
        with self.engine.begin() as conn:
            for condition in kinds:
                room = self.claim_limit - len(got)
                if room <= 0:
                    break
                due = select(t.c.id).where(*base, *condition).order_by(t.c.next_attempt_at, t.c.id).limit(room)
                if self.engine.dialect.name == "postgresql":
                    due = due.with_for_update(skip_locked=True)
                # the rows are re-checked inside the one statement (SQLite: under its write lock; PostgreSQL:
                # FOR UPDATE re-reads a row another claim changed), so the outer update goes by primary key
                stmt = (update(t).where(t.c.id.in_(due.scalar_subquery()))
                        .values(status="sending", lease_owner=token, lease_until=now + self.lease, attempts=t.c.attempts + 1,
                                updated_at=now).returning(t.c.id))
                got.extend(conn.execute(stmt).scalars())
        return token, sorted(got)

    def settle(self, workspace_id: str, token: str, outcomes: dict[int, Outcome], attempts: dict[int, int],
               test: bool = False) -> None:
        """Write each row's outcome in one statement, only where this claim still holds it."""
        if not outcomes:
            return
        now = self.clock()
        rows = []
        for delivery_id, o in outcomes.items():
            done = o.status in ("sent", "test")
            rows.append({"b_id": delivery_id, "b_token": token, "status": o.status, "code": (o.code or None) and str(o.code)[:120],
                         "message": o.message, "trace_id": (o.trace_id or None) and str(o.trace_id)[:200],
                         "sent_at": now if done else None, "test": bool(test and done),
                         "next_attempt_at": next_attempt(now, attempts.get(delivery_id, 1), o.retry_after) if o.status == RETRY else None,
                         "lease_owner": None, "lease_until": None, "updated_at": now})
        with self.engine.begin() as conn:
            update_rows(conn, D.__table__, rows, match={"id": "b_id", "lease_owner": "b_token"},
                        values=("status", "code", "message", "trace_id", "sent_at", "test", "next_attempt_at", "lease_owner",
                                "lease_until", "updated_at"))

    def _renew_lease(self, token: str, stop: threading.Event) -> None:
        """While a claimed batch is being sent, extend its lease every third of the lease: a batch that takes
        longer than the lease (a slow platform: GA4's 2,000 requests timing out one after another) is not
        taken over and sent again by another dispatcher. A dispatcher that dies stops renewing, and its
        rows are taken over once the lease runs out."""
        t = D.__table__
        while not stop.wait(self.lease.total_seconds() / 3):
            try:
                with self._db_writes, self.engine.begin() as conn:
                    conn.execute(update(t).where(t.c.lease_owner == token, t.c.status == "sending")
                                 .values(lease_until=self.clock() + self.lease))
            except Exception as exc:  # the database blinked: the next renewal tries again
                log.warning("renewing a delivery lease failed: %s", type(exc).__name__)

    # ---------------------------------------------------------------------------- sending
    def _items(self, workspace_id: str, ids: list[int]) -> tuple[list[Item], dict[int, int], list[int]]:
        """The claimed rows as items (conversion loaded), their attempt counts, and the ids past their deadline."""
        now = self.clock()
        c = TrackedConversion.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(D.id.label("_delivery"), D.idempotency_key.label("_key"), D.attempts.label("_attempts"),
                                       D.deadline_at.label("_deadline"), *c.columns)
                                .join(c, c.c.id == D.conversion_id)
                                .where(D.workspace_id == workspace_id, D.id.in_(ids)).order_by(D.id)).mappings().all()
        items, attempts, expired = [], {}, []
        for r in rows:
            attempts[r["_delivery"]] = r["_attempts"]
            if r["_deadline"] <= now:
                expired.append(r["_delivery"])
                continue
            conversion = {k: r[k] for k in c.columns.keys()}
            items.append(Item(r["_delivery"], conversion, r["_key"]))
        return items, attempts, expired

    def _sender(self, dest: config.Destination):
        key = (dest.name, dest.enabled, repr(sorted(dest.settings.items())))
        if key not in self._senders:
            self._senders[key] = self.sender_factory(dest)
        return self._senders[key]

    def dispatch_group(self, workspace_id: str, destination: str) -> dict[str, int]:
        """Claim, send and settle the due rows of one workspace and destination; counts by outcome."""
        dest = config.load_destinations(self.engine, workspace_id)[destination]
        counts: dict[str, int] = {}
        if not dest.enabled:
            return counts  # rows wait: switched off, not lost
        try:
            sender = self._sender(dest)
        except (NotConfigured, KeyError, ValueError) as exc:
            token, ids = self.claim(workspace_id, destination)
            message = str(exc) if isinstance(exc, NotConfigured) else f"{config.LABELS[destination]}: {type(exc).__name__}"
            self.settle(workspace_id, token, {i: Outcome(RETRY, "not_configured", message,
                                                         retry_after=UNCONFIGURED_RETRY.total_seconds()) for i in ids}, {})
            counts["not_configured"] = len(ids)
            return counts
        # Two batches in motion: while one is sent and settled (a thread), the next is claimed and read
        # (here), so the platform's round trips and the database's work overlap. Each batch is its own
        # claim under its own lease; the database writes of both threads take turns on one lock (two
        # SQLite writers in one process would otherwise meet SQLite's sleeping busy handler).
        pending = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dispatch-{destination}") as pool:
            try:
                while True:
                    with self._db_writes:
                        token, ids = self.claim(workspace_id, destination)
                    batch = (token, ids, *self._items(workspace_id, ids)) if ids else None
                    if pending is not None:
                        _add(counts, pending.result())
                        pending = None
                    if batch is None:
                        return counts
                    pending = pool.submit(self._deliver, sender, dest, workspace_id, *batch)
                    if len(ids) < self.claim_limit:
                        return counts
            finally:
                if pending is not None:
                    _add(counts, pending.result())

    def _deliver(self, sender, dest: config.Destination, workspace_id: str, token: str, ids: list[int], items: list[Item],
                 attempts: dict[int, int], expired: list[int]) -> dict[str, int]:
        """Send one claimed batch and settle every row of it; counts by outcome."""
        destination = dest.name
        outcomes = {i: Outcome("expired", "deadline", f"past {destination}'s deadline: not sent") for i in expired}
        stop_renewing = threading.Event()
        renewer = threading.Thread(target=self._renew_lease, args=(token, stop_renewing), daemon=True,
                                   name=f"lease-{destination}")
        renewer.start()
        try:
            outcomes |= sender.send(items, dest.test_mode) if items else {}
        except Transient as exc:
            outcomes |= {i.delivery_id: Outcome(RETRY, exc.code, exc.message, exc.trace_id, exc.retry_after) for i in items}
        except Exception as exc:  # a bug or an SDK surprise: the rows retry later, the loop goes on
            log.exception("sending to %s failed", destination)
            outcomes |= {i.delivery_id: Outcome(RETRY, type(exc).__name__, f"unexpected error: {type(exc).__name__}")
                         for i in items}
        finally:
            stop_renewing.set()
            renewer.join()
        missing = [i for i in ids if i not in outcomes]
        outcomes |= {i: Outcome(FAILED, "no_outcome", "the sender gave no outcome") for i in missing}
        with self._db_writes:
            self.settle(workspace_id, token, outcomes, attempts, test=dest.test_mode)
        counts: dict[str, int] = {}
        for o in outcomes.values():
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts

    def confirm_data_manager(self, workspace_id: str, older_than: dt.timedelta = CONFIRM_AFTER, limit: int = 20) -> int:
        """Read back the outcome of Data Manager requests (processed after the call returned): SUCCESS is
        noted on the rows, FAILED makes them ``failed`` with Google's reason. Returns requests settled."""
        dest = config.load_destinations(self.engine, workspace_id)["google"]
        if not dest.enabled or dest.settings.get("api", "data_manager") != "data_manager":
            return 0
        cutoff = self.clock() - older_than
        with transaction(self.engine, workspace_id) as s:
            request_ids = list(s.scalars(select(D.trace_id).where(D.destination == "google", D.status == "sent", D.code == "accepted",
                                                                  D.trace_id.is_not(None), D.sent_at <= cutoff).distinct().limit(limit)))
        if not request_ids:
            return 0
        sender = self._sender(dest)
        settled = 0
        for request_id in request_ids:
            try:
                outcome = sender.request_status(request_id)
            except Exception as exc:  # ask again on a later pass
                log.warning("reading Data Manager request %s failed: %s", request_id, type(exc).__name__)
                continue
            if outcome == "PROCESSING":
                continue
            values = {"code": outcome[:120], "updated_at": self.clock()}
            if outcome == "FAILED":
                values |= {"status": "failed", "message": "Google processed the request and reported it FAILED"}
            elif outcome == "PARTIAL_SUCCESS":
                values["message"] = "Google accepted part of the request (see the Data Manager diagnostics)"
            with transaction(self.engine, workspace_id) as s:
                s.execute(update(D).where(D.destination == "google", D.trace_id == request_id, D.code == "accepted")
                          .values(**values).execution_options(synchronize_session=False))
            settled += 1
        return settled

    def run_once(self) -> dict[str, int]:
        """One pass over every due (workspace, destination); counts by outcome."""
        total: dict[str, int] = {}
        for workspace_id, destination in self.due_groups():
            for status, n in self.dispatch_group(workspace_id, destination).items():
                total[status] = total.get(status, 0) + n
        return total

    def confirm_all(self) -> int:
        """`confirm_data_manager` for every workspace that has accepted, unconfirmed Google rows."""
        from sqlalchemy.orm import Session

        with Session(self.engine) as s:
            workspaces = list(s.scalars(select(D.workspace_id).where(D.destination == "google", D.code == "accepted").distinct()))
        done = 0
        for ws in workspaces:
            try:
                done += self.confirm_data_manager(ws)
            except (NotConfigured, KeyError, ValueError):
                continue
        return done

    def run_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set; errors are logged and the loop goes on."""
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # the database may be away for a moment
                log.exception("dispatch pass failed")
                done = {}
            if not done:
                try:
                    self.confirm_all()
                except Exception:
                    log.exception("confirming Data Manager requests failed")
                stop.wait(self.idle_seconds)


@guarded(Role.ADMIN, "tracking.retry")
def retry_now(engine: Engine, workspace_id: str, delivery_ids: list[int], *, actor: str | None = None) -> int:
    """Put failed or retrying rows of this workspace back in the queue at once; returns how many."""
    now = utcnow()
    with transaction(engine, workspace_id) as s:
        result = s.execute(update(D).where(D.id.in_([int(i) for i in delivery_ids]), D.status.in_(("failed", "retry")),
                                           D.deadline_at > now)
                           .values(status="retry", next_attempt_at=now, updated_at=now,
                                   message=f"retry requested by {actor or 'a user'}").execution_options(synchronize_session=False))
        return int(result.rowcount or 0)


__all__ = ["Dispatcher", "NotConfigured", "build_sender", "retry_now", "LEASE_SECONDS"]
