"""The collector's request handling, independent of the web framework (`core.serve` is a thin shell).

* **Keys**: ``Authorization: Bearer <key>``; looked up by SHA-256 and cached for `KEY_CACHE_SECONDS`
  (a revoked key stops working within that time plus one lookup; at once in this process when revoked
  through it); once seen revoked, its 401 comes from the cache for `REVOKED_CACHE_SECONDS` (revocation is
  final). A known key whose entry expired is refreshed in the background, once, while requests
  go on with the entry they have: no request waits on the periodic lookups (they were the collector's
  p99 at 2,000 requests a second). Keys and settings are refreshed this way.
  A browser key must come from an origin on its allow-list and may only write.
* **Rate limit**: a token bucket per key (the key's own rate, else the server's); an empty bucket
  answers 429 with ``Retry-After``.
* **Unknown keys** cost a database lookup each (their negative answer is cached per key, but a flood of
  distinct random keys is a lookup per request), so they are bounded: a key not in the cache is looked up
  once however many requests carry it, at most `KEY_LOOKUPS` at once, with at most `KEY_LOOKUPS_PENDING`
  distinct keys in flight (beyond: 503 with ``Retry-After``); and each client address has a budget of
  failed authentications (a lookup that found no such key): `FAILED_AUTH_BURST` at once, refilled at
  `FAILED_AUTH_RATE` a second, in each worker process (an IPv6 client's budget is its /64's). Once it is
  spent, a key from that address that is not already cached answers 429 with ``Retry-After`` without a
  lookup. A real site never comes near it: a valid key spends nothing, nor does a revoked one (only real
  keys can be revoked, so they are no flood; each answers 401 and is looked up again once per
  `KEY_CACHE_SECONDS`), and a mistyped key costs one lookup per `KEY_CACHE_SECONDS`, half the refill.
  A flood thus costs at most `FAILED_AUTH_BURST` + `KEY_LOOKUPS_PENDING` lookups per address, then one a
  second. Keys already cached are served as before: no request with a known key waits on these lookups.
  The address is the TCP peer's, or the X-Forwarded-For client when the peer is a trusted proxy
  (``python -m core serve --forwarded-allow-ips``).
* **Group commit**: validated requests queue; everything that queued up while the previous write ran
  is stored in ONE transaction (`store.write`), then each request is answered. One commit per burst
  instead of one per event is what lets SQLite take thousands of events a second; a request is
  answered only after its rows are committed. If a group fails, its requests are retried one by one
  so one bad request cannot fail the others.
* **SQLite: the event loop writes** (`_flush`, scheduled once per loop iteration, so the requests read
  in one iteration form one group). A writer thread re-takes the GIL from the busy loop thread after
  every SQLite step (CPython makes it wait up to the 5 ms switch interval each time), which made a
  group of 30 rows take 8 ms in the bursts that were the collector's p99; on the loop the same group
  takes under a millisecond. The worker processes take turns on an OS lock (`WriterTurn`) rather than
  on SQLite's busy handler, which sleeps up to 100 ms between tries; the loop never waits for either:
  the turn is tried without waiting (`TURN_RETRY` later when another process has it), a statement
  waits at most `INLINE_BUSY_WAIT` for a writer outside the turn (the app's import), and a group
  that met one stays queued and is tried again with backoff, for up to the engine's busy timeout.
* **PostgreSQL: touches on the loop, asynchronously** (`_flush_touches`): a group of touches only is ONE
  statement (`store.touch_statement`), sent on the loop's own asynchronous psycopg connection in
  autocommit (the statement is its own transaction, without BEGIN and COMMIT round trips); the touches
  that arrive during a round trip form the next group. No thread hand-off, so no GIL wait, and the
  loop serves on during the round trip. A group that fails there goes to the writer threads below.
  A statement the server is slow to answer (its backend waiting for a core, a lock, a checkpoint) no
  longer holds up every request behind it: once the touches queued behind it have waited `SPARE_AFTER`,
  they go out on a spare connection (up to `ASYNC_CONNECTIONS` in flight). A spare only on delay keeps
  the groups as large, and the statements per request as few, as one connection makes them.
* **PostgreSQL: conversions on writer threads** (several statements in one transaction), each holding
  its own connection (no pool checkout or liveness ping per group; a connection that failed is dropped,
  and the one-by-one retry takes fresh ones).
* On a SQLite file the WAL is checkpointed by a background thread (`core.store.checkpoint`), not by
  the commit of whichever group crosses 1,000 pages (its two fsyncs, ~10 ms, fell on 1 to 1.5 % of the requests: the p99).
* Every answer to bad input is a 4xx naming the field; nothing is stored for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import math
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii

from sqlalchemy.engine import Engine

from core.store.checkpoint import WalCheckpointer, file_checkpointable
from core.store.db import SQLITE_BUSY_TIMEOUT, WriterTurn, is_busy_error, sqlite_busy_wait, sqlite_writer_turn
from core.store.models import utcnow

from . import config, keys, store
from .payloads import InputError, parse_items, parse_json
from .trace import RequestTrace, Tracer

log = logging.getLogger("marketing_suite.collector")
KEY_CACHE_SECONDS = 2.0
#: A revoked key stays revoked (there is no un-revoke): its 401 is answered from the cache this long.
REVOKED_CACHE_SECONDS = 3600.0
SETTINGS_CACHE_SECONDS = 5.0
DEFAULT_RATE_LIMIT = 200.0  # requests per second per key
BURST_SECONDS = 2.0  # a key may send this many seconds' worth of requests at once
MAX_GROUP_ROWS = 2_000
#: Database lookups of keys not in the cache running at once (a lookup is about a millisecond: 2,000 new keys a second).
KEY_LOOKUPS = 2
#: Distinct keys whose lookup may be in flight (running or waiting) at once; a new key beyond answers 503 with Retry-After.
KEY_LOOKUPS_PENDING = 200
#: Failed authentications (a key looked up and not found) a client address may make at once, and per second
#: after that, in each process; then a key from it that is not already cached answers 429 (see the module docstring).
FAILED_AUTH_BURST = 100
FAILED_AUTH_RATE = 1.0
#: How long a writer that took a lone request waits for more before writing it, when requests arrive
#: fast enough that at least one more is due in that time (`Collector._linger`). A group's fixed cost
#: (its statement, commit and thread hand-offs) was about half of the collector's CPU per request with
#: groups of one; waiting a millisecond or two makes groups of two or three at 1,000 requests a second.
GROUP_LINGER = 0.002
#: Seconds over which the writers measure the arrival rate that decides whether to linger.
_RATE_WINDOW = 0.1
#: SQLite (the loop writes): seconds until the loop tries the writers' turn again when another process
#: holds it (a group's write takes about a millisecond; libuv's timers tick in milliseconds).
TURN_RETRY = 0.001
#: SQLite: seconds a statement of the loop's write waits for a writer outside the turn (the app's import)
#: before the group goes back to the queue, and the longest wait between the tries that follow.
INLINE_BUSY_WAIT = 0.005
BUSY_RETRY_MAX = 0.05
#: PostgreSQL: seconds the loop's asynchronous connection may take to open (its group goes to the writer threads after).
CONNECT_TIMEOUT = 5
#: PostgreSQL: touches queued behind a statement in flight for this many seconds go out on a spare
#: connection (a statement takes about 1.5 ms at the median; a stalled one took 25 ms, with the
#: requests queued behind it waiting for it and then for their own group).
SPARE_AFTER = 0.004
#: PostgreSQL: the most touch statements one collector process has in flight (one connection each).
ASYNC_CONNECTIONS = 3


@dataclass
class Reply:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)
    encoded: bytes | None = None  # the body already as JSON (`accepted`), else encoded by `content`

    def content(self) -> bytes:
        return self.encoded if self.encoded is not None else _ENCODER.encode(self.body).encode()


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # one for every answer


def accepted(ids: list[str], headers: dict) -> Reply:
    """The answer to stored events: ``{"ok":true,"received":N,"event_ids":[...]}``, encoded as `_ENCODER`
    would (same bytes) at a third of its cost: every accepted request gets one."""
    encoded = b'{"ok":true,"received":%d,"event_ids":[%s]}' % (len(ids), ",".join(map(encode_basestring_ascii, ids)).encode())
    return Reply(200, {"ok": True, "received": len(ids), "event_ids": ids}, headers, encoded)


def limited(exc: RateLimited, headers: dict | None = None) -> Reply:
    """The answer to a request refused for now: 429 (or 503), naming the Authorization header, with Retry-After."""
    return Reply(exc.status, {"error": exc.message, "field": "Authorization"}, {"Retry-After": str(exc.seconds), **(headers or {})})


def error(exc: InputError, headers: dict | None = None) -> Reply:
    return Reply(exc.status, exc.to_dict(), headers or {})


def _client_block(address: str | None) -> str | None:
    """The unit a budget per client address counts: the address, or for IPv6 its /64 (one host's share)."""
    if address and ":" in address:
        try:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp = tokens, stamp


class Collector:
    """Keys, rate limits, validation and group-committed storage of touches and conversions."""

    def __init__(self, engine: Engine, *, rate_limit: float | None = DEFAULT_RATE_LIMIT, clock: Callable = utcnow,
                 monotonic: Callable[[], float] = time.monotonic, writers: int | None = None, rate_share: float = 1.0,
                 linger: float = GROUP_LINGER):
        self.engine = engine
        self.rate_limit = rate_limit  # None or 0: no limit
        self.rate_share = rate_share  # this process's share of every key's rate limit (1/N with N worker processes)
        self.clock, self.monotonic = clock, monotonic
        self.inline = engine.dialect.name == "sqlite"  # the event loop writes (`_flush`); else writer threads
        self.async_touches = engine.dialect.name == "postgresql"  # touches: on the loop, asynchronously
        self.writers = 0 if self.inline else writers or 2
        self._keys: dict[str, tuple[keys.KeyInfo | None, float]] = {}
        self._settings: dict[str, tuple[tuple, float]] = {}
        self._settings_locks: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[tuple[str, str], asyncio.Task] = {}  # ("key" | "settings", id) -> its one refresh
        self._origins: tuple[set[str], float] = (set(), -1.0)
        self._buckets: dict[int, _Bucket] = {}
        self._failures: dict[str | None, _Bucket] = {}  # per client address: its budget of failed authentications
        self._lookups: dict[str, asyncio.Task] = {}  # key digest -> its one lookup in flight
        self._lookup_slots = asyncio.Semaphore(KEY_LOOKUPS)
        self._pending: queue.SimpleQueue | None = None  # (request, future) pairs for the writer threads
        self._loop: asyncio.AbstractEventLoop | None = None  # where the writers answer the requests' futures
        self._writer_threads: list[threading.Thread] = []
        self._collecting = threading.Lock()  # one writer at a time gathers a group (the others write theirs)
        self._started = False
        self._batch: collections.deque = collections.deque()  # SQLite: (request, future) pairs the loop writes next
        self._flush_due = False  # a `_flush` is scheduled
        self._turn: WriterTurn | None = None  # SQLite: the writers' turn, held open
        self._busy_since: float | None = None  # SQLite: when the queued group first met another writer's lock
        self._touch_flushes: set[asyncio.Task] = set()  # PostgreSQL: the tasks writing queued touches
        self._idle_aconns: list = []  # PostgreSQL: the loop's asynchronous psycopg connections not in use
        self._sending: set = set()  # PostgreSQL: the connections with a statement in flight
        self._queued_since = 0.0  # PostgreSQL: when the oldest touch not yet taken by a flush was queued
        self._spare: asyncio.TimerHandle | None = None  # PostgreSQL: the check that may start a spare flush
        self.linger = linger
        self._arrivals = [time.monotonic(), 0, 0.0]  # the writers' rate window: start, requests taken, last rate
        self._thread_connections = threading.local()  # each writer thread's own connections
        self._connections: list = []  # every connection the writers opened (closed on stop)
        self._connections_lock = threading.Lock()
        self._checkpointer: WalCheckpointer | None = None  # SQLite: checkpoints off the writers' commits
        self.tracer = Tracer.from_environment(engine)  # None unless the benchmark asks (`core.tracking.trace`)

    # ---------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop, self._started = asyncio.get_running_loop(), True
        self._lookup_slots = asyncio.Semaphore(KEY_LOOKUPS)  # of this loop
        if self.inline:
            self._turn = WriterTurn(self.engine)
        else:
            self._pending = queue.SimpleQueue()
            self._writer_threads = [threading.Thread(target=self._writer, name=f"collector-writer-{n}", daemon=True)
                                    for n in range(self.writers)]
            for thread in self._writer_threads:
                thread.start()
        if file_checkpointable(self.engine):
            self._checkpointer = WalCheckpointer(self.engine, on_checkpoint=self.tracer.checkpointed if self.tracer else None)
            self._checkpointer.start()
        if self.tracer is not None:
            self.tracer.start()

    async def stop(self) -> None:
        for task in self._refreshing.values():
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
        self._refreshing = {}
        lookups, self._lookups = list(self._lookups.values()), {}
        for task in lookups:
            task.cancel()
        await asyncio.gather(*lookups, return_exceptions=True)
        if self._spare is not None:
            self._spare.cancel()
            self._spare = None
        while self._touch_flushes:  # PostgreSQL: the queued touches are committed and answered
            await asyncio.gather(*self._touch_flushes, return_exceptions=True)
        idle, self._idle_aconns = self._idle_aconns, []
        for conn in idle:
            await conn.close()
        while self._batch:  # SQLite: what is queued is committed and answered (waiting for the turn now)
            self._flush(wait=True)
        if self._turn is not None:
            self._turn.close()
            self._turn = None
        if self._writer_threads:  # what is queued is committed and answered, then the connections close
            threads, self._writer_threads = self._writer_threads, []
            for _ in threads:
                self._pending.put(None)
            await asyncio.to_thread(lambda: [thread.join() for thread in threads])
            self._pending = None
        self._close_connections()
        self._started = False
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None
        if self.tracer is not None:
            self.tracer.stop()

    def _close_connections(self) -> None:
        """Close every writer connection; a later `start` opens new ones (on SQLite the loop's thread lives
        on, so its slots are emptied too: a closed connection is never picked up again)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
            self._thread_connections = threading.local()
        for conn in connections:
            try:
                conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass

    # ---------------------------------------------------------------------------- keys
    async def key_for(self, authorization: str | None, address: str | None = None) -> keys.KeyInfo:
        """The request's key, or `InputError` 401 naming the Authorization header; `RateLimited` when a key
        not in the cache comes from an ``address`` (the client's) whose failed authentications are spent."""
        if not authorization:
            raise InputError("Authorization", "missing: send Authorization: Bearer <write key>", 401)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InputError("Authorization", "must be 'Bearer <write key>'", 401)
        digest = keys.digest(token)
        now = self.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[1] < now and cached[0] is not None and not cached[0].revoked:
            self._refresh_later(("key", digest), self._lookup_key, digest, token)  # serve the known key meanwhile
        elif cached is None or cached[1] < now:
            cached = await self._lookup_new_key(digest, token, address)
        info = cached[0]
        if info is None:
            raise InputError("Authorization", "unknown write key", 401)
        if info.revoked:
            raise InputError("Authorization", "this write key was revoked", 401)
        return info

    async def _lookup_key(self, digest: str, token: str) -> tuple[keys.KeyInfo | None, float]:
        info = await asyncio.to_thread(keys.lookup, self.engine, token)
        now = self.monotonic()
        ttl = REVOKED_CACHE_SECONDS if info is not None and info.revoked else KEY_CACHE_SECONDS
        self._keys[digest] = entry = (info, now + ttl)
        if len(self._keys) > 10_000:  # unknown keys are cached too: keep the map small
            self._keys = {k: v for k, v in self._keys.items() if v[1] >= now}
        return entry

    async def _lookup_new_key(self, digest: str, token: str, address: str | None) -> tuple[keys.KeyInfo | None, float]:
        """A key the cache does not know (or knows as unknown, expired): ONE lookup however many requests
        carry it, within the limits of the module docstring (`KEY_LOOKUPS`, `KEY_LOOKUPS_PENDING`, the
        address's failed authentications)."""
        running = self._lookups.get(digest)
        if running is None:
            wait = self._failure_wait(address)
            if wait is not None:
                raise RateLimited(math.ceil(wait), "too many unknown write keys from this address")
            if len(self._lookups) >= KEY_LOOKUPS_PENDING:
                raise RateLimited(1, "too many new write keys are being checked at once; retry shortly", 503)
            running = self._lookups[digest] = asyncio.get_running_loop().create_task(self._bounded_lookup(digest, token, address))
            running.add_done_callback(lambda task: self._lookup_done(digest, task))
        return await asyncio.shield(running)  # a request that goes away leaves the lookup to the others

    def _lookup_done(self, digest: str, task: asyncio.Task) -> None:
        if self._lookups.get(digest) is task:
            del self._lookups[digest]
        if not task.cancelled():
            task.exception()  # retrieved: a failure is the waiting requests' to answer (503), not a log line of its own

    async def _bounded_lookup(self, digest: str, token: str, address: str | None) -> tuple[keys.KeyInfo | None, float]:
        async with self._lookup_slots:
            entry = await self._lookup_key(digest, token)
        if entry[0] is None:  # a revoked key is a real one: no flood of them is possible
            self._spend_failure(address)
        return entry

    def _failure_wait(self, address: str | None) -> float | None:
        """Seconds until ``address`` may have a key looked up again; None: now."""
        bucket = self._failure_bucket(_client_block(address))
        return None if bucket is None or bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / FAILED_AUTH_RATE

    def _failure_bucket(self, block: str | None) -> _Bucket | None:
        """The failed-authentication budget of a `_client_block`, refilled to now (None: it has spent none lately).
        Each process keeps its own (not shared out like the key rates: a mistyped key is looked up in every worker)."""
        bucket = self._failures.get(block)
        if bucket is not None:
            now = self.monotonic()
            bucket.tokens = min(FAILED_AUTH_BURST, bucket.tokens + (now - bucket.stamp) * FAILED_AUTH_RATE)
            bucket.stamp = now
        return bucket

    def _spend_failure(self, address: str | None) -> None:
        """One failed authentication of ``address`` (lookups already in flight when the budget ran out may
        take it below zero: the address then waits for each of them)."""
        block = _client_block(address)
        bucket = self._failure_bucket(block)
        if bucket is None:
            now = self.monotonic()
            if len(self._failures) >= 10_000:  # keep the map small: a budget that is full again needs no entry
                self._failures = {a: b for a, b in self._failures.items()
                                  if b.tokens + (now - b.stamp) * FAILED_AUTH_RATE < FAILED_AUTH_BURST}
            bucket = self._failures[block] = _Bucket(float(FAILED_AUTH_BURST), now)
        bucket.tokens -= 1.0

    def _refresh_later(self, slot: tuple[str, str], refresh, *args) -> None:
        """Run ``refresh(*args)`` in the background unless it already runs for ``slot``; a failure keeps
        the old entry (it is retried by the next request) and is logged without its arguments."""
        if slot in self._refreshing:
            return

        async def run():
            started = time.perf_counter()
            try:
                await refresh(*args)
            except Exception as exc:
                log.error("refreshing the collector's cached %s failed: %s", slot[0], type(exc).__name__)
            finally:
                self._refreshing.pop(slot, None)
                if self.tracer is not None:
                    self.tracer.refreshes.append((slot[0], started, time.perf_counter() - started))

        self._refreshing[slot] = asyncio.get_running_loop().create_task(run())

    def forget_key(self, key_hash: str | None = None) -> None:
        """Drop cached keys (all, or one), e.g. right after a revocation through this process."""
        if key_hash is None:
            self._keys.clear()
        else:
            self._keys.pop(key_hash, None)

    def check_origin(self, info: keys.KeyInfo, origin: str | None) -> None:
        if info.browser and (origin or "").rstrip("/").lower() not in info.origins:
            raise InputError("Origin", f"origin {origin or '(none)'} is not allowed for this browser key", 403)

    async def preflight_allowed(self, origin: str | None) -> bool:
        """A CORS preflight carries no key: allow origins that some active browser key allows."""
        if not origin:
            return False
        origins, until = self._origins
        now = self.monotonic()
        if until < now:
            origins = await asyncio.to_thread(keys.browser_origins, self.engine)
            self._origins = (origins, now + KEY_CACHE_SECONDS)
        return origin.rstrip("/").lower() in origins

    def take_token(self, info: keys.KeyInfo) -> float | None:
        """Spend one request of the key's budget; None if allowed, else seconds to wait."""
        rate = info.rate_limit if info.rate_limit is not None else self.rate_limit
        if not rate:
            return None
        rate *= self.rate_share
        now = self.monotonic()
        capacity = max(1.0, rate * BURST_SECONDS)
        bucket = self._buckets.get(info.id)
        if bucket is None:
            bucket = self._buckets[info.id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    async def authorize(self, authorization: str | None, origin: str | None, *, write: bool,
                        address: str | None = None) -> keys.KeyInfo:
        """Key, origin and rights of a request from ``address`` (the client's); the rate limit is spent
        here (429 with Retry-After)."""
        info = await self.key_for(authorization, address)
        self.check_origin(info, origin)
        if info.browser and not write:
            raise InputError("Authorization", "a browser key may only write events and conversions", 403)
        wait = self.take_token(info)
        if wait is not None:
            raise RateLimited(math.ceil(wait))
        return info

    # ---------------------------------------------------------------------------- settings
    async def settings_for(self, workspace_id: str, actor=None) -> config.CollectorSettings:
        """The workspace's collector rules for validation (the phone region), cached for `SETTINGS_CACHE_SECONDS`:
        a change reaches validation within that time. What decides a conversion's outbox rows (the enabled
        destinations, the consent rule) is not read here but in the conversion's own transaction (`store.write`)."""
        now = self.monotonic()
        cached = self._settings.get(workspace_id)
        if cached is not None:
            if cached[1] < now:  # serve the last settings while one refresh reads the new ones
                self._refresh_later(("settings", workspace_id), self._load_settings, workspace_id, actor)
            return cached[0]
        return await self._load_settings(workspace_id, actor)

    async def _load_settings(self, workspace_id: str, actor=None) -> config.CollectorSettings:
        lock = self._settings_locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:  # one load per workspace, however many requests arrive at once
            cached = self._settings.get(workspace_id)
            if cached is not None and cached[1] >= self.monotonic():
                return cached[0]
            def load():
                from .live import ensure_live_dataset

                ensure_live_dataset(self.engine, workspace_id, actor=actor)  # again after a user deleted it
                return config.load_collector_settings(self.engine, workspace_id)

            value = await asyncio.to_thread(load)
            self._settings[workspace_id] = (value, self.monotonic() + SETTINGS_CACHE_SECONDS)
            return value

    # ---------------------------------------------------------------------------- ingest
    async def ingest(self, kind: str, body: bytes, authorization: str | None, origin: str | None = None,
                     client: dict | None = None, trace: RequestTrace | None = None) -> Reply:
        """Handle ``POST /v1/events`` (``kind="touch"``) or ``/v1/conversions``; never raises for bad input.
        ``trace``: this request's stamps, when the collector is traced (`core.tracking.trace`)."""
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        try:
            info = await self.authorize(authorization, origin, write=True, address=client.get("ip") if client else None)
            if trace is not None:
                trace.authorized = time.perf_counter()
            if not info.browser:
                cors = {}
            payload = parse_json(body)
            collector = await self.settings_for(info.workspace_id, info.actor)
            if trace is not None:
                trace.settled = time.perf_counter()
            rows = parse_items(payload, kind, self.clock(), collector.phone_region)
        except RateLimited as exc:
            return limited(exc, cors)
        except InputError as exc:
            return error(exc, cors)
        except Exception as exc:  # the database behind the key or settings: not the input's fault
            log.error("reading keys or settings failed: %s", type(exc).__name__)
            return Reply(503, {"error": "the collector cannot read its settings right now; retry later", "field": "body"},
                         {"Retry-After": "5", **cors})
        if kind == "conversion" and client and info.browser:
            for row in rows:  # the browser's own address and agent, unless the page sent them
                row["client_ip"] = row["client_ip"] or client.get("ip")
                row["user_agent"] = row["user_agent"] or client.get("user_agent")
        request = store.WriteRequest(info.workspace_id, kind, rows, info.id, actor=info.actor)
        if trace is not None:
            trace.parsed, trace.event_id, request.trace = time.perf_counter(), rows[0]["event_id"] if rows else None, trace
            self.tracer.requests.append(trace)
        try:
            await self.submit(request)
        except Exception as exc:  # the database, not the input
            log.error("storing %s %s failed: %s", len(rows), kind, type(exc).__name__)
            return Reply(503, {"error": "the collector could not store the request; retry later", "field": "body"},
                         {"Retry-After": "5", **cors})
        ids = [r["event_id"] for r in rows]
        headers = dict(cors)
        if len(request.stored) < len(ids):
            headers["Idempotent-Replayed"] = "true" if not request.stored else "partial"
        return accepted(ids, headers)

    async def submit(self, request: store.WriteRequest) -> None:
        if not self._started:  # a one-off caller: store directly
            await asyncio.to_thread(store.write, self.engine, [request], self.clock())
            return
        future = self._loop.create_future()
        if request.trace is not None:
            request.trace.queued = time.perf_counter()
        if self.inline:
            self._batch.append((request, future))
            self._flush_soon()
        elif self.async_touches and request.kind == "touch":
            self._batch.append((request, future))
            self._flush_touches_soon()
        else:
            self._pending.put((request, future))  # unbounded: never waits
        await future

    def _flush(self, wait: bool = False) -> None:
        """On the event loop (SQLite): store what queued since the last write in ONE transaction, in the
        writers' turn, and answer its requests. Never waits for another writer unless ``wait`` (stopping):
        a turn held elsewhere or a busy database leave the group queued and try again shortly."""
        self._flush_due = False
        if not self._batch:
            return
        if not self._turn.take(wait=wait):
            return self._flush_later(TURN_RETRY)
        group, requests = self._next_group()
        try:
            with contextlib.nullcontext() if wait else sqlite_busy_wait(INLINE_BUSY_WAIT):
                outcomes = self._write_group(requests, in_turn=True, keep_busy=not wait)
        except _Busy as busy:
            now = time.monotonic()
            self._busy_since = self._busy_since or now
            if now - self._busy_since < SQLITE_BUSY_TIMEOUT:
                self._batch.extendleft(reversed(group))  # first in line again, in order
                return self._flush_later(min(BUSY_RETRY_MAX, max(TURN_RETRY, 2 * (now - self._busy_since))))
            outcomes = [busy.error] * len(group)
        finally:
            self._turn.release()
        self._busy_since = None
        self._answer(group, outcomes)
        if self._batch:
            self._flush_soon()

    def _flush_soon(self) -> None:
        """Schedule `_flush` after the requests this loop iteration reads (they join the group), once."""
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _next_group(self) -> tuple[list, list[store.WriteRequest]]:
        """The queued (request, future) pairs written next (up to `MAX_GROUP_ROWS` rows, at least one), and their requests."""
        group = [self._batch.popleft()]
        rows = len(group[0][0].rows)
        while self._batch and rows + len(self._batch[0][0].rows) <= MAX_GROUP_ROWS:
            group.append(self._batch.popleft())
            rows += len(group[-1][0].rows)
        requests = [r for r, _ in group]
        self._stamp_taken(requests, rows)
        return group, requests

    def _flush_touches_soon(self) -> None:
        """PostgreSQL, after a touch was queued: a flush takes it in the next loop iteration when none is in
        flight; else a spare flush starts if it is still queued `SPARE_AFTER` from now."""
        if len(self._batch) == 1:
            self._queued_since = time.monotonic()
        if not self._touch_flushes:
            self._start_touch_flush()
        elif self._spare is None and len(self._touch_flushes) < ASYNC_CONNECTIONS:
            self._spare = self._loop.call_later(SPARE_AFTER, self._spare_flush)

    def _spare_flush(self) -> None:
        self._spare = None
        if not self._batch or len(self._touch_flushes) >= ASYNC_CONNECTIONS:
            return  # taken by a flush in flight, or every connection is busy (the first free one takes it)
        if _answered(self._sending):
            return  # a loop busy elsewhere, not a slow server: that flush takes the queue in this iteration
        waited = time.monotonic() - self._queued_since
        if waited >= SPARE_AFTER * 0.9:  # libuv's timers tick in whole milliseconds
            self._start_touch_flush()
        else:  # a flush took the old touches; these came after
            self._spare = self._loop.call_later(SPARE_AFTER - waited, self._spare_flush)

    def _start_touch_flush(self) -> None:
        task = self._loop.create_task(self._flush_touches())
        self._touch_flushes.add(task)
        task.add_done_callback(self._touch_flushes.discard)

    async def _flush_touches(self) -> None:
        """On the event loop (PostgreSQL): store the queued touch requests, one statement per group, on one
        of the loop's asynchronous connections; what arrives during a round trip is the next group. A group
        that fails there is written by the writer threads (one transaction, else one request at a time)."""
        conn = self._idle_aconns.pop() if self._idle_aconns else None
        try:
            while self._batch:
                group, requests = self._next_group()
                try:
                    sql, params = store.touch_statement(self.engine, requests, self.clock())
                    conn = conn or await self._async_connection()
                    sent = time.perf_counter()
                    self._sending.add(conn)
                    try:
                        cursor = await conn.execute(sql, params)
                    finally:
                        self._sending.discard(conn)
                    store.settle_touches(requests, await cursor.fetchall())
                    self._stamp_written(requests, sent)
                    outcomes = [None] * len(group)
                except Exception:
                    if conn is not None and (conn.closed or conn.broken):
                        conn = None  # a new one for the next group
                    outcomes = await asyncio.to_thread(self._write_group, requests)
                self._answer(group, outcomes)
        finally:
            if conn is not None:
                self._idle_aconns.append(conn)

    async def _async_connection(self):
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)

    def _flush_later(self, delay: float) -> None:
        self._flush_due = True
        self._loop.call_later(delay, self._flush)

    def _stamp_taken(self, requests: list[store.WriteRequest], rows: int) -> None:
        if self.tracer is not None:
            taken = time.perf_counter()
            for q in requests:
                if q.trace is not None:
                    q.trace.taken, q.trace.group, q.trace.group_rows = taken, len(requests), rows

    def _write_group(self, requests: list[store.WriteRequest], *, in_turn: bool = False, keep_busy: bool = False) -> list:
        """Store a group in one transaction: each request's outcome (None: stored, else its error); when
        the group fails, its requests one by one. ``keep_busy``: a busy database raises `_Busy` instead."""
        try:
            self._write(requests, in_turn=in_turn)
            return [None] * len(requests)
        except Exception as exc:  # isolate: one request per transaction
            if keep_busy and is_busy_error(exc):
                raise _Busy(exc) from None
            return [exc] if len(requests) == 1 else [self._write_alone(request, in_turn) for request in requests]

    def _write(self, requests: list[store.WriteRequest], in_turn: bool = False) -> None:
        """One transaction on this thread's own connection (the loop's on SQLite); on SQLite the collector's
        processes take turns on an OS lock (`WriterTurn`; ``in_turn``: the caller holds it). A connection
        that failed is dropped, not reused."""
        single = self.engine.dialect.name == "postgresql" and all(q.kind == "touch" for q in requests)
        slot = "autocommit" if single else "transaction"
        conn = getattr(self._thread_connections, slot, None)
        if conn is None:
            conn = self.engine.connect()
            if single:  # one INSERT: atomic on its own (`store.write` runs one statement for touches)
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if self._checkpointer is not None:  # it checkpoints, in its own thread: not this commit
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()
            setattr(self._thread_connections, slot, conn)
            with self._connections_lock:
                self._connections.append(conn)
        try:
            with contextlib.nullcontext() if in_turn else sqlite_writer_turn(self.engine):
                if self.tracer is not None:
                    return self._traced_write(requests, conn)
                store.write(self.engine, requests, self.clock(), connection=conn)
        except BaseException:
            setattr(self._thread_connections, slot, None)
            with self._connections_lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.invalidate()  # a broken or half-used connection never goes back to the pool
            except Exception:  # pragma: no cover
                pass
            raise

    def _traced_write(self, requests: list[store.WriteRequest], conn) -> None:
        """`store.write` with the stamps of `core.tracking.trace`: write lock held, committed, WAL state."""
        wal = self.tracer.wal
        locked = time.perf_counter()
        before = wal.read() if wal is not None else (0, 0)
        store.write(self.engine, requests, self.clock(), connection=conn)
        after = wal.read() if wal is not None else (0, 0)
        self._stamp_written(requests, locked, wal_frames=after[0], checkpointed=max(0, after[1] - before[1]))

    def _stamp_written(self, requests: list[store.WriteRequest], locked: float, **wal) -> None:
        """When traced: each request's write began at ``locked`` (its lock held, or its statement sent) and
        is committed now; on SQLite also the WAL's state (``wal_frames``, ``checkpointed``)."""
        if self.tracer is None:
            return
        committed = time.perf_counter()
        for q in requests:
            if q.trace is not None:
                q.trace.locked, q.trace.committed = locked, committed
                for name, value in wal.items():
                    setattr(q.trace, name, value)

    def _write_one_off(self, requests: list[store.WriteRequest], in_turn: bool = False) -> None:
        """A single request retried after its group failed: its own pooled connection, checked on checkout."""
        with contextlib.nullcontext() if in_turn else sqlite_writer_turn(self.engine):
            store.write(self.engine, requests, self.clock())

    def _writer(self) -> None:
        """A writer thread: takes everything queued (up to `MAX_GROUP_ROWS` rows), stores it in one
        transaction, and answers the group's requests with ONE wake-up of the event loop; until stopped
        (a None in the queue, after what was queued before it)."""
        pending, stopping = self._pending, False
        while not stopping:
            with self._collecting:
                item = pending.get()
                if item is None:
                    return
                if pending.empty() and self._linger():
                    time.sleep(self.linger)
                group, rows = [item], len(item[0].rows)
                while rows < MAX_GROUP_ROWS:
                    try:
                        item = pending.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    group.append(item)
                    rows += len(item[0].rows)
                self._arrivals[1] += len(group)
            requests = [r for r, _ in group]
            self._stamp_taken(requests, rows)
            outcomes = self._write_group(requests)
            try:
                self._loop.call_soon_threadsafe(self._answer, group, outcomes)
            except RuntimeError:  # pragma: no cover - the loop closed without `stop`: nobody waits
                return

    def _linger(self) -> bool:
        """Whether a writer holding a lone request should wait `linger` for more: yes when the requests
        taken over the last `_RATE_WINDOW` seconds say at least one more arrives in that time (a single
        client waiting for each answer before its next request gains nothing from a wait)."""
        if self.linger <= 0:
            return False
        window = self._arrivals
        now = time.monotonic()
        if now - window[0] >= _RATE_WINDOW:
            window[:] = [now, 0, window[1] / (now - window[0])]
        return window[2] * self.linger >= 1.0

    def _write_alone(self, request: store.WriteRequest, in_turn: bool = False) -> Exception | None:
        """A request of a failed group, in a transaction of its own: None once stored, else the error."""
        try:
            self._write_one_off([request], in_turn)
        except Exception as exc:
            return exc
        return None

    def _answer(self, group: list, outcomes: list) -> None:
        """On the event loop: resolve each request's future with its group's outcome."""
        if self.tracer is not None:
            woken = time.perf_counter()
            for request, _ in group:
                if request.trace is not None:
                    request.trace.woken = woken
        for (_, future), outcome in zip(group, outcomes):
            if future.done():  # the request was cancelled (its client went away)
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)


def _answered(connections) -> bool:
    """Whether the server's answer already waits on one of these psycopg connections (readable socket)."""
    sockets = [conn.pgconn.socket for conn in connections if not conn.closed]
    return bool(sockets) and bool(select.select(sockets, [], [], 0)[0])


class _Busy(Exception):
    """SQLite's write lock was held by a writer outside the turn: the group is tried again later."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class RateLimited(Exception):
    """A request refused for now (429, or 503 when the server is the one busy): retry after ``seconds``."""

    def __init__(self, seconds: int, message: str = "rate limit exceeded for this key", status: int = 429):
        super().__init__(f"{message}: retry after {seconds} s")
        self.seconds, self.message, self.status = max(1, int(seconds)), message, status


__all__ = ["Collector", "Reply", "RateLimited", "KEY_CACHE_SECONDS", "DEFAULT_RATE_LIMIT", "KEY_LOOKUPS", "KEY_LOOKUPS_PENDING",
           "FAILED_AUTH_BURST", "FAILED_AUTH_RATE"]
