"""Local fakes of the conversion destinations, each counting what it received by idempotency key.

* `FakeGraph` + `FakeGA4`: one threaded HTTP server on 127.0.0.1 answering the Graph API's
  ``POST /{version}/{pixel}/events`` (form body, ``data`` a JSON list of JSON events) like Meta (all or
  nothing, de-duplication on event_id + event_name) and GA4's ``/mp/collect`` / ``/debug/mp/collect``.
* `FakeDataManager`: a gRPC server under the Data Manager API's method paths, built from the SDK's
  own proto-plus classes (TLS with the suite's throwaway certificate), de-duplicating on transaction id.

Used by the tests, the crash test (a dispatcher in another process) and bench/bench_tracking.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request as received
        self.keys: Counter = Counter()  # idempotency key -> times received
        self.delay = 0.0  # seconds before answering (a slow platform)
        self.fail_next = 0  # answer 503 to the next n requests
        self.reject_names: set[str] = set()  # Meta: events with these names are invalid (code 100)

    def counted(self) -> set:
        """Keys the platform counts (each once, however often it was received)."""
        return set(self.keys)


class Platforms:
    """What the Graph API and the Measurement Protocol answer, whatever serves it: ``answer`` takes a
    request and returns ``(status, JSON body or None for no content)``."""

    def __init__(self):
        self.meta, self.ga4 = Recorder(), Recorder()

    def answer(self, method: str, target: str, raw: bytes) -> tuple[int, dict | None]:
        parts = urlsplit(target)
        if method == "GET" and parts.path == "/__counts":  # for a fake in another process (bench/bench_tracking.py)
            return 200, {name: {"counted": len(rec.counted()), "requests": len(rec.requests)}
                         for name, rec in (("meta", self.meta), ("ga4", self.ga4))}
        if method == "POST" and parts.path.endswith("/events"):
            return self._meta(parts, raw)
        if method == "POST" and parts.path in ("/mp/collect", "/debug/mp/collect"):
            return self._ga4(parts, raw)
        return 404, {"error": "not found"}

    def _meta(self, parts, raw):
        rec = self.meta
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        events = [json.loads(e) for e in json.loads(form.get("data", "[]"))]
        with rec.lock:
            rec.requests.append({"path": parts.path, "form": form, "events": events})
            fail = rec.fail_next > 0
            rec.fail_next -= 1 if fail else 0
        if rec.delay:
            time.sleep(rec.delay)
        if fail:
            return 503, {"error": {"message": "Service temporarily unavailable", "code": 2, "is_transient": True,
                                   "fbtrace_id": "trace-503"}}
        bad = [e for e in events if e.get("event_name") in rec.reject_names or not isinstance(e.get("event_time"), int)]
        if bad:  # one invalid event rejects the whole request
            return 400, {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100,
                                   "error_subcode": 2804003, "fbtrace_id": "trace-400"}}
        with rec.lock:
            for e in events:
                rec.keys[(e["event_id"], e["event_name"])] += 1
        return 200, {"events_received": len(events), "messages": [], "fbtrace_id": f"trace-{len(rec.requests)}"}

    def _ga4(self, parts, raw):
        rec = self.ga4
        body = json.loads(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with rec.lock:
            rec.requests.append({"path": parts.path, "query": query, "body": body})
            fail = rec.fail_next > 0
            rec.fail_next -= 1 if fail else 0
        if rec.delay:
            time.sleep(rec.delay)
        if fail:
            return 503, {}
        if parts.path.startswith("/debug"):
            messages = [] if body.get("client_id") else [{"fieldPath": "client_id", "description": "client_id is required",
                                                          "validationCode": "VALUE_REQUIRED"}]
            return 200, {"validationMessages": messages}
        with rec.lock:
            for e in body.get("events", []):
                rec.keys[(body["client_id"], e["params"]["transaction_id"])] += 1
        return 204, None


class _Handler(BaseHTTPRequestHandler):
    server: "FakeHttpPlatforms"
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoints: every answer carries a length or is a 204

    def log_message(self, *args):  # quiet
        pass

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.platforms.answer(method, self.path, raw)
        try:
            self.send_response(status)
            if body is not None:
                data = json.dumps(body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body is not None:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout, a killed dispatcher)
            pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")


class FakeHttpPlatforms(ThreadingHTTPServer):
    """Meta's Graph API and GA4's Measurement Protocol on one local port."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.platforms = Platforms()
        self.meta, self.ga4 = self.platforms.meta, self.platforms.ga4
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class RemoteHttpPlatforms:
    """The same fakes in their own process (``python -m tests.tracking.fakes``), as a remote platform is: its
    CPU is not the dispatcher's. They are served by uvicorn (one event loop, like a real front end, not a
    thread per connection), and `counts` reads what they counted over HTTP."""

    def __init__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "tests.tracking.fakes"], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def counts(self, name: str) -> tuple[int, int]:
        import urllib.request

        got = json.loads(urllib.request.urlopen(f"{self.url}/__counts", timeout=10).read())[name]
        return got["counted"], got["requests"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ------------------------------------------------------------------------------------ Data Manager (gRPC)
class FakeDataManager:
    """IngestEvents / RetrieveRequestStatus under the SDK's method paths; counts transaction ids."""

    def __init__(self):
        self.rec = Recorder()
        self.reject_transaction_ids: set[str] = set()
        self.statuses: dict[str, str] = {}

    def ingest_events(self, request, context):
        import grpc
        from google.ads.datamanager_v1.types import ingestion_service

        with self.rec.lock:
            self.rec.requests.append({"request": request, "metadata": dict(context.invocation_metadata())})
            n = len(self.rec.requests)
        if self.rec.delay:
            time.sleep(self.rec.delay)
        if any(e.transaction_id in self.reject_transaction_ids for e in request.events):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Invalid value for events.conversion_value")
        if not request.validate_only:
            with self.rec.lock:
                for e in request.events:
                    self.rec.keys[e.transaction_id] += 1
        rid = f"dm-request-{n}"
        self.statuses[rid] = "SUCCESS"
        return ingestion_service.IngestEventsResponse(request_id=rid)

    def retrieve_request_status(self, request, context):
        from google.ads.datamanager_v1.types import ingestion_service, request_status_per_destination as rs

        status = rs.RequestStatusPerDestination.RequestStatus[self.statuses.get(request.request_id, "REQUEST_STATUS_UNKNOWN")]
        return ingestion_service.RetrieveRequestStatusResponse(
            request_status_per_destination=[rs.RequestStatusPerDestination(request_status=status)])

    def handlers(self):
        import grpc
        from google.ads.datamanager_v1.types import ingestion_service as s

        return [grpc.method_handlers_generic_handler("google.ads.datamanager.v1.IngestionService", {
            "IngestEvents": grpc.unary_unary_rpc_method_handler(
                self.ingest_events, request_deserializer=s.IngestEventsRequest.deserialize,
                response_serializer=s.IngestEventsResponse.serialize),
            "RetrieveRequestStatus": grpc.unary_unary_rpc_method_handler(
                self.retrieve_request_status, request_deserializer=s.RetrieveRequestStatusRequest.deserialize,
                response_serializer=s.RetrieveRequestStatusResponse.serialize)})]


def start_grpc(servicer, key_pem: bytes, cert_pem: bytes):
    """A TLS gRPC server on 127.0.0.1 for ``servicer``; returns (server, port)."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(servicer.handlers())
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    return server, port


def asgi_app(platforms: Platforms):
    """`Platforms` as an ASGI app (for uvicorn)."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        status, body = platforms.answer(scope["method"], target, b"".join(chunks))
        data = b"" if body is None else json.dumps(body).encode()
        headers = [] if body is None else [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


if __name__ == "__main__":  # the fakes in their own process: print the URL, serve until terminated
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections wait in the backlog until the server runs
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(asgi_app(Platforms()), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
