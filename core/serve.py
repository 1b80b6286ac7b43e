"""The collector's ASGI app (Starlette on uvicorn): ``python -m core serve [--host] [--port] [--forwarded-allow-ips IPS]``.

Thin, like a page: each route reads the request, calls `core.tracking`, and writes the JSON answer.
The dispatcher (`core.tracking.dispatch`) runs beside it in a thread and delivers the outbox.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.resources import files

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from core.tracking.collector import Collector, Reply, error, limited
from core.tracking.payloads import MAX_BODY_BYTES, InputError, parse_json
from core.tracking.trace import RequestTrace

log = logging.getLogger("marketing_suite.serve")
SNIPPET = files("core.tracking").joinpath("snippet.js").read_bytes()
_JSON = "application/json"


#: The collector's garbage-collector thresholds: a request's objects die by reference counting, but the
#: default young-generation threshold (700) ran a collection every few dozen requests, scanning the
#: requests in flight and promoting them to older generations, whose collections followed (about 20 us
#: per request in all); at 5,000 the young collections are rare and each still scans well under a millisecond's worth.
GC_THRESHOLDS = (5_000, 10, 10)


#: The largest run id (``tracking_run_jobs.id`` is a 32-bit integer on PostgreSQL).
MAX_RUN_ID = 2**31 - 1


def _response(reply: Reply) -> Response:
    return Response(reply.content(), status_code=reply.status, media_type=_JSON, headers=reply.headers)


#: Seconds a body that did not come in one piece may take to arrive in full (a client trickling a body, or
#: never finishing it, holds a connection and its buffers; uvicorn itself waits for ever). Then 408.
BODY_SECONDS = 30.0


async def _read_body(receive, declared: str | None) -> bytes:
    """An ASGI request's body, refusing one over the limit before reading it all (Content-Length or streamed),
    and one still incomplete `BODY_SECONDS` after its first piece (408)."""
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InputError("body", f"the body is larger than {MAX_BODY_BYTES:,} bytes", 413)
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        return await _rest_of_body(receive, message)  # a body in one piece (every single event): no timer
    try:
        async with asyncio.timeout(BODY_SECONDS):
            return await _rest_of_body(receive, message)
    except TimeoutError:
        raise InputError("body", f"the body did not arrive in full within {BODY_SECONDS:.0f} s", 408) from None


async def _rest_of_body(receive, message: dict) -> bytes:
    chunks, size = [], 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InputError("body", f"the body is larger than {MAX_BODY_BYTES:,} bytes", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


async def _body(request: Request) -> bytes:
    return await _read_body(request.receive, request.headers.get("content-length"))


class IngestFastPath:
    """``POST /v1/events`` and ``POST /v1/conversions`` as a bare ASGI handler in front of the Starlette app.

    These two routes carry the collector's traffic (thousands of single-event requests a second), and
    Starlette's request and response objects, middleware and router cost about as much CPU as the
    ingest itself; every other request (CORS preflights included) goes on to the Starlette app.
    """

    KINDS = {"/v1/events": "touch", "/v1/conversions": "conversion"}
    _HEADERS = frozenset({b"authorization", b"origin", b"user-agent", b"content-length"})

    def __init__(self, app: Starlette, collector: Collector):
        self.app, self.collector = app, collector
        self.state, self.router = app.state, app.router  # as the Starlette app exposes them

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = self.KINDS.get(scope["path"])
            if kind is not None:
                return await self.ingest(kind, scope, receive, send)
        await self.app(scope, receive, send)

    async def ingest(self, kind: str, scope, receive, send) -> None:
        trace = None if self.collector.tracer is None else RequestTrace(time.perf_counter())
        headers = {name: value.decode("latin-1") for name, value in scope["headers"] if name in self._HEADERS}
        origin = headers.get(b"origin")
        try:
            body = await _read_body(receive, headers.get(b"content-length"))
        except ClientDisconnect:
            return
        except InputError as exc:
            return await self.answer(send, error(exc, {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}))
        if trace is not None:
            trace.read = time.perf_counter()
        client = scope.get("client")
        reply = await self.collector.ingest(kind, body, headers.get(b"authorization"), origin,
                                            {"ip": client[0] if client else None, "user_agent": headers.get(b"user-agent")},
                                            trace)
        await self.answer(send, reply)
        if trace is not None:
            trace.answered = time.perf_counter()

    @staticmethod
    async def answer(send, reply: Reply) -> None:
        content = reply.content()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        raw_headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})


def create_app(engine, *, rate_limit: float | None = 200.0, dispatcher=None, workers: int = 1,
               recover_jobs: bool = True, freeze_gc: bool = False) -> "IngestFastPath":
    """The collector app on ``engine``; ``dispatcher`` (optional) runs in a thread while the app lives.

    ``workers``: how many processes serve the same port (each enforces its share of every rate limit);
    ``recover_jobs``: mark attribution runs a previous process left unfinished as failed (once per server);
    ``freeze_gc``: once started, move every object made so far (the imported libraries: pandas,
    SQLAlchemy, the SDKs) out of the garbage collector's reach, so a full collection scans only what
    requests made (a server process; it took 100-500 ms per full collection, the collector's worst latency),
    and collect the young generation less often (`GC_THRESHOLDS`).
    """
    collector = Collector(engine, rate_limit=rate_limit, rate_share=1.0 / max(1, workers))
    runs_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribution-run")

    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        if not await collector.preflight_allowed(origin):
            return Response(status_code=403, content=json.dumps({"error": "origin not allowed", "field": "Origin"}), media_type=_JSON)
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600"})

    async def health(_request: Request) -> Response:
        from sqlalchemy import text

        def ping():
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await asyncio.to_thread(ping)
        except Exception as exc:
            return _response(Reply(503, {"ok": False, "database": type(exc).__name__}))
        return _response(Reply(200, {"ok": True, "database": "ok", "api": "v1",
                                     "dispatcher": "running" if dispatcher is not None else "off"}))

    async def snippet(_request: Request) -> Response:
        return Response(SNIPPET, media_type="application/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})

    async def server_key(request: Request):
        return await collector.authorize(request.headers.get("authorization"), request.headers.get("origin"), write=False,
                                         address=request.client.host if request.client else None)

    async def guarded(request: Request, work) -> Response:
        from core.tracking.collector import RateLimited

        try:
            info = await server_key(request)
            return _response(await work(info))
        except RateLimited as exc:
            return _response(limited(exc))
        except InputError as exc:
            return _response(error(exc, {"Retry-After": "5"} if exc.status == 429 else None))

    async def journeys(request: Request) -> Response:
        from core.tracking.runs import user_journeys

        async def work(info):
            return Reply(200, await asyncio.to_thread(user_journeys, engine, info.workspace_id, request.path_params["user_key"],
                                                      actor=info.actor))

        return await guarded(request, work)

    async def start_run(request: Request) -> Response:
        from core.tracking import runs

        async def work(info):
            body = await _body(request)
            payload = parse_json(body) if body.strip() else {}
            params = await asyncio.to_thread(runs.run_params, engine, info.workspace_id, payload, actor=info.actor)
            job_id, new = await asyncio.to_thread(runs.create_job, engine, info.workspace_id, params, actor=info.actor)
            if new:
                runs_pool.submit(runs.run_job, engine, info.workspace_id, job_id, actor=info.actor)
            return Reply(202, {"id": job_id, "status": "queued", "url": f"/v1/attribution/runs/{job_id}"})

        return await guarded(request, work)

    async def get_run(request: Request) -> Response:
        from core.tracking.runs import job_status

        async def work(info):
            raw = request.path_params["run_id"]
            if not (raw.isascii() and raw.isdigit()):
                raise InputError("run_id", "must be a whole number", 404)
            if len(raw) > 10 or int(raw) > MAX_RUN_ID:  # beyond the id column's integers: no such run (the database would refuse it)
                raise InputError("run_id", f"no run {raw[:30]} in this workspace", 404)
            found = await asyncio.to_thread(job_status, engine, info.workspace_id, int(raw))
            if found is None:
                raise InputError("run_id", f"no run {raw} in this workspace", 404)
            return Reply(200, found)

        return await guarded(request, work)

    @asynccontextmanager
    async def lifespan(_app):
        from core.tracking.runs import fail_interrupted_jobs

        if recover_jobs:
            await asyncio.to_thread(fail_interrupted_jobs, engine)
        await collector.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        stop_dispatcher = _start_dispatcher(dispatcher)
        try:
            yield
        finally:
            await collector.stop()
            await asyncio.to_thread(stop_dispatcher)
            runs_pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/v1/events", preflight, methods=["OPTIONS"]),
        Route("/v1/conversions", preflight, methods=["OPTIONS"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/snippet.js", snippet, methods=["GET"]),
        Route("/v1/journeys/{user_key:path}", journeys, methods=["GET"]),
        Route("/v1/attribution/runs", start_run, methods=["POST"]),
        Route("/v1/attribution/runs/{run_id}", get_run, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)  # POST /v1/events and /v1/conversions: `IngestFastPath`
    app.state.collector = collector
    return IngestFastPath(app, collector)


#: A worker that dies sooner than this after its start failed to start: the server stops instead of restarting it.
WORKER_MIN_LIFE = 10.0
#: Settings a worker process reads (``--workers`` > 1 starts workers as fresh interpreters).
_WORKER_ENV = "MARKETING_SUITE_SERVE_WORKER"


def _worker_app() -> "IngestFastPath":
    """The app of one worker process (uvicorn's factory): the parent passed its settings in the environment."""
    from core.store.db import make_engine

    settings = json.loads(os.environ[_WORKER_ENV])
    engine = make_engine(upgrade=False)  # the URL comes from MARKETING_SUITE_DB_URL; the parent upgraded the schema
    return create_app(engine, rate_limit=settings["rate_limit"], workers=settings["workers"], recover_jobs=False,
                      freeze_gc=True)


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to (host, port); with ``reuse_port`` each worker has its own and the kernel
    spreads new connections evenly over them (one shared socket goes to whichever worker wakes first,
    which left one worker with most of the connections and the other half idle)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _run_worker(options: dict) -> None:
    """One worker process: its own SO_REUSEPORT socket on the shared port, the collector app, until SIGTERM."""
    import uvicorn

    sock = _listening_socket(options["host"], options["port"], reuse_port=True)
    config = uvicorn.Config("core.serve:_worker_app", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(workers: int, options: dict) -> None:
    """Run ``workers`` worker processes on one port until SIGINT/SIGTERM, starting a new one when one dies."""
    import multiprocessing
    import signal

    _listening_socket(options["host"], options["port"], reuse_port=True).close()  # the port is free (or fail here)
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start():
        proc = spawn.Process(target=_run_worker, args=(options,), name="collector-worker", daemon=False)
        proc.start()
        proc.started_at = time.monotonic()
        return proc

    procs = [start() for _ in range(workers)]
    log.warning("collector on http://%s:%s: %d worker processes (SO_REUSEPORT)", options["host"], options["port"], workers)
    try:
        while not stop.wait(0.5):
            for n, proc in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                if time.monotonic() - proc.started_at < WORKER_MIN_LIFE:  # it cannot start: stop, don't loop
                    raise SystemExit(f"a collector worker exited (code {proc.exitcode}) right after starting: see its log above")
                log.error("collector worker %s exited (code %s): starting another", proc.pid, proc.exitcode)
                procs[n] = start()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn answers the requests in flight, then exits
        for proc in procs:
            proc.join(25)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def trusted_proxies(text: str | None) -> str | None:
    """``--forwarded-allow-ips``: the peers whose X-Forwarded-For names the client, as uvicorn takes them
    (comma-separated addresses or networks, ``*`` for every peer), checked here: uvicorn silently treats a
    malformed entry as a literal no peer matches. None or empty: trust no peer."""
    import ipaddress

    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    for item in items:
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8, ::1 or *)") from None
    return ",".join(items) or None


def serve(db_url: str | None = None, host: str = "127.0.0.1", port: int = 8502, *, rate_limit: float | None = 200.0,
          dispatch: bool = True, access_log: bool = False, workers: int = 1, forwarded_allow_ips: str | None = None) -> None:
    """Run the collector (and the dispatcher) until interrupted.

    ``forwarded_allow_ips``: the reverse proxies in front of the collector (`trusted_proxies`). A request
    whose immediate peer is one of them is taken to come from the client its X-Forwarded-For names
    (uvicorn's `ProxyHeadersMiddleware`: the last address in the header that is not itself a trusted
    proxy), for a browser conversion's ``client_ip`` and the per-address budgets; any other peer's header
    is ignored. None (the default): every request comes from its TCP peer.

    With ``workers`` > 1, that many processes share the port (the GIL caps one process at about one
    core), each on its own ``SO_REUSEPORT`` socket so the kernel balances connections between them;
    the dispatcher then runs once, in this supervising process, not in every worker.
    """
    import uvicorn

    from core.access import set_local_mode
    from core.store.db import DB_URL_ENV, make_engine, redact_url, resolve_url, scrub_url

    set_local_mode(False, entry="collector")  # this process acts only for its keys, never as the local user
    url = resolve_url(db_url)
    try:
        engine = make_engine(url)
    except Exception as exc:  # say which database, never its password
        raise OSError(f"cannot open the database {redact_url(url)}: {type(exc).__name__}: "
                      f"{scrub_url(str(exc).splitlines()[0] if str(exc) else '', url)}") from None
    dispatcher = None
    if dispatch:
        from core.tracking.dispatch import Dispatcher

        dispatcher = Dispatcher(engine)
    proxies = trusted_proxies(forwarded_allow_ips)
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info", "server_header": False,
               "proxy_headers": proxies is not None, "forwarded_allow_ips": proxies or "", "backlog": 4096}
    if workers <= 1:
        uvicorn.run(create_app(engine, rate_limit=rate_limit, dispatcher=dispatcher, freeze_gc=True), **options)
        return
    from core.tracking.runs import fail_interrupted_jobs

    fail_interrupted_jobs(engine)
    os.environ[DB_URL_ENV] = url  # the workers (fresh interpreters) inherit their settings from here
    os.environ[_WORKER_ENV] = json.dumps({"rate_limit": rate_limit, "workers": workers})
    stop_dispatcher = _start_dispatcher(dispatcher)
    try:
        if hasattr(socket, "SO_REUSEPORT"):
            _supervise(workers, options)
        else:  # no SO_REUSEPORT (Windows): uvicorn's supervisor, one shared socket
            uvicorn.run("core.serve:_worker_app", factory=True, workers=workers, **options)
    finally:
        stop_dispatcher()


def _start_dispatcher(dispatcher):
    """Run ``dispatcher`` (or nothing, when None) in a daemon thread; returns the function that stops it
    and waits up to 30 s for the batch in flight."""
    if dispatcher is None:
        return lambda: None
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), name="dispatcher", daemon=True)
    thread.start()

    def stop_dispatcher() -> None:
        stop.set()
        thread.join(30)

    return stop_dispatcher


__all__ = ["create_app", "serve", "trusted_proxies"]
