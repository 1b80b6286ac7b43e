"""The collector's ASGI app (Starlette on uvicorn): ``python -m core serve [--host] [--port]``.

Thin, like a page: each route reads the request, calls `core.tracking`, and writes the JSON answer.
The dispatcher (`core.tracking.dispatch`) runs beside it in a thread and delivers the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.resources import files

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.tracking.collector import Collector, Reply, error
from core.tracking.payloads import MAX_BODY_BYTES, InputError, parse_json

log = logging.getLogger("marketing_suite.serve")
SNIPPET = files("core.tracking").joinpath("snippet.js").read_bytes()
_JSON = "application/json"


def _response(reply: Reply) -> Response:
    return Response(reply.content(), status_code=reply.status, media_type=_JSON, headers=reply.headers)


async def _body(request: Request) -> bytes:
    """The body, refusing one over the limit before reading it all (Content-Length or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InputError("body", f"the body is larger than {MAX_BODY_BYTES:,} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InputError("body", f"the body is larger than {MAX_BODY_BYTES:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(engine, *, rate_limit: float | None = 200.0, dispatcher=None) -> Starlette:
    """The collector app on ``engine``; ``dispatcher`` (optional) runs in a thread while the app lives."""
    collector = Collector(engine, rate_limit=rate_limit)
    runs_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribution-run")

    async def ingest(request: Request, kind: str) -> Response:
        origin = request.headers.get("origin")
        try:
            body = await _body(request)
        except InputError as exc:
            return _response(error(exc, {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}))
        client = {"ip": request.client.host if request.client else None, "user_agent": request.headers.get("user-agent")}
        reply = await collector.ingest(kind, body, request.headers.get("authorization"), origin, client)
        return _response(reply)

    async def events(request: Request) -> Response:
        return await ingest(request, "touch")

    async def conversions(request: Request) -> Response:
        return await ingest(request, "conversion")

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
        return await collector.authorize(request.headers.get("authorization"), request.headers.get("origin"), write=False)

    async def guarded(request: Request, work) -> Response:
        from core.tracking.collector import RateLimited

        try:
            info = await server_key(request)
            return _response(await work(info))
        except RateLimited as exc:
            return _response(Reply(429, {"error": "rate limit exceeded for this key", "field": "Authorization"},
                                   {"Retry-After": str(exc.seconds)}))
        except InputError as exc:
            return _response(error(exc))

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
            job_id = await asyncio.to_thread(runs.create_job, engine, info.workspace_id, params, actor=info.actor)
            runs_pool.submit(runs.run_job, engine, info.workspace_id, job_id, actor=info.actor)
            return Reply(202, {"id": job_id, "status": "queued", "url": f"/v1/attribution/runs/{job_id}"})

        return await guarded(request, work)

    async def get_run(request: Request) -> Response:
        from core.tracking.runs import job_status

        async def work(info):
            raw = request.path_params["run_id"]
            if not raw.isdigit():
                raise InputError("run_id", "must be a whole number", 404)
            found = await asyncio.to_thread(job_status, engine, info.workspace_id, int(raw))
            if found is None:
                raise InputError("run_id", f"no run {raw} in this workspace", 404)
            return Reply(200, found)

        return await guarded(request, work)

    @asynccontextmanager
    async def lifespan(_app):
        from core.tracking.runs import fail_interrupted_jobs

        await asyncio.to_thread(fail_interrupted_jobs, engine)
        await collector.start()
        stop = threading.Event()
        thread = None
        if dispatcher is not None:
            thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), name="dispatcher", daemon=True)
            thread.start()
        try:
            yield
        finally:
            stop.set()
            await collector.stop()
            if thread is not None:
                await asyncio.to_thread(thread.join, 30)
            runs_pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/v1/events", events, methods=["POST"]),
        Route("/v1/conversions", conversions, methods=["POST"]),
        Route("/v1/events", preflight, methods=["OPTIONS"]),
        Route("/v1/conversions", preflight, methods=["OPTIONS"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/snippet.js", snippet, methods=["GET"]),
        Route("/v1/journeys/{user_key:path}", journeys, methods=["GET"]),
        Route("/v1/attribution/runs", start_run, methods=["POST"]),
        Route("/v1/attribution/runs/{run_id}", get_run, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.collector = collector
    return app


def serve(db_url: str | None = None, host: str = "127.0.0.1", port: int = 8502, *, rate_limit: float | None = 200.0,
          dispatch: bool = True, access_log: bool = False) -> None:
    """Run the collector (and the dispatcher) until interrupted."""
    import uvicorn

    from core.store.db import make_engine

    from core.access import set_local_mode
    from core.store.db import redact_url, resolve_url, scrub_url

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
    app = create_app(engine, rate_limit=rate_limit, dispatcher=dispatcher)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", server_header=False,
                proxy_headers=False)


__all__ = ["create_app", "serve"]
