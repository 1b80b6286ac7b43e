"""Both adapters map every answer that is not an API answer, every 5xx and every transport failure to
the platform error types, transient where it is (issue 11 §2): no TypeError from an HTML 502, no raw
``requests`` or ``grpc`` exception, and through `core.execute` a failed change, never a stuck plan."""

from __future__ import annotations

import re
import socket
import threading
import time
from decimal import Decimal

import pytest
import requests
import responses

from core import execute as ex
from core.changes import DraftChange, content_hash, create_plan, load_plan
from core.platforms.base import ChangeRequest, PermanentPlatformError, RateLimitError, TransientPlatformError
from core.platforms.credentials import MetaCredentials
from core.platforms.meta import MetaAdsPlatform
from core.store.db import transaction
from core.store.models import ChangePlan

from .test_meta import G, SECRET, TOKEN

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
NODE = re.compile(re.escape(G) + r"/11/.*")


def meta(**kw) -> MetaAdsPlatform:
    return MetaAdsPlatform(MetaCredentials(access_token=TOKEN, app_secret=SECRET, ad_account_id="1234"), currency="USD",
                           **kw)


ANSWERS = {
    "HTML 502": (502, HTML_502, TransientPlatformError),
    "HTML 200 from a proxy": (200, HTML_502, TransientPlatformError),
    "empty 200": (200, "", TransientPlatformError),
    "5xx JSON without error": (500, '{"foo": 1}', TransientPlatformError),
    "JSON list for a node": (200, "[1, 2]", TransientPlatformError),
    "plain-text 503": (503, "upstream connect error", TransientPlatformError),
    "HTML 429": (429, "<html>Too Many Requests</html>", RateLimitError),
    "HTML 404 from a proxy": (404, "<html>Not Found</html>", PermanentPlatformError),
}


@pytest.mark.parametrize("status, body, kind", list(ANSWERS.values()), ids=list(ANSWERS))
def test_a_meta_answer_that_is_not_graph_json_is_a_platform_error(status, body, kind):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, NODE, status=status, body=body, content_type="text/html")
        with pytest.raises(kind) as info:
            meta().read_live("campaign", "11", "budget")
    assert f"HTTP {status}" in info.value.message and TOKEN not in info.value.message
    assert "<html>" not in info.value.message  # the page itself is never quoted (it may echo the request)


@pytest.mark.parametrize("inner", [{"code": 502, "body": HTML_502}, {"code": 200, "body": "[1]"}, None, 7],
                         ids=["HTML inside a batch", "list inside a batch", "unanswered", "not an object"])
def test_a_bad_answer_inside_a_meta_batch_is_a_verdict_not_a_crash(inner):
    change = ChangeRequest("1", "campaign", "11", "budget", Decimal("50"), Decimal("60"), "USD")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{G}/", json=[inner])
        try:
            verdicts = meta().validate([change])
        except TransientPlatformError as exc:  # the batch answer itself was not a Graph answer
            assert "HTTP 200" in exc.message
        else:
            assert len(verdicts) == 1 and not verdicts[0].ok and verdicts[0].message


@pytest.mark.parametrize("failure", [requests.exceptions.ChunkedEncodingError("cut"), requests.ConnectionError("reset"),
                                     requests.exceptions.ContentDecodingError("gzip")],
                         ids=["cut mid-answer", "connection reset", "bad encoding"])
def test_a_meta_transport_failure_is_transient(failure):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, NODE, body=failure)
        with pytest.raises(TransientPlatformError, match="could not reach Meta"):
            meta().read_live("campaign", "11", "budget")


def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)], daemon=True).start()
    return srv, held


def test_a_meta_call_that_hangs_times_out_as_transient():
    srv, held = silent_server()
    m = meta(timeout=0.5)
    m.api._session.GRAPH = f"http://127.0.0.1:{srv.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(TransientPlatformError, match="could not reach Meta"):
        m.read_live("campaign", "11", "budget")
    assert time.monotonic() - start < 5
    srv.close()


def _approved_budget_plan(engine) -> tuple[int, str]:
    """A plan raising campaign 11's budget from 50 to 60, approved with a passing frozen preview (the dry
    run is not the point); its id and content hash."""
    draft = DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("50"), Decimal("60"), "USD", "x", 80)
    pid = create_plan(engine, "ws", [draft], actor="alice")
    v = load_plan(engine, "ws", pid)
    h = content_hash(v.platform, v.account_id, v.settings, v.changes)
    with transaction(engine, "ws") as s:
        plan = s.get(ChangePlan, pid)
        plan.status, plan.content_hash = "approved", h
        plan.preview = {"checks": {"1": {"ok": True, "messages": []}}, "validations": {"1": {"ok": True}}}
    return pid, h


def test_an_html_502_during_execution_fails_the_change_and_finishes_the_plan(engine):
    """The issue's case: before, a TypeError escaped, the plan stayed "executing" and the page showed a traceback."""
    m = meta()
    pid, h = _approved_budget_plan(engine)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, NODE, status=502, body=HTML_502, content_type="text/html")
        res = ex.execute(engine, "ws", pid, h, m, actor="alice",
                         retry=ex.RetryPolicy(max_attempts=3, initial_wait=0.001, sleep=lambda s: None))
    assert res.status == "failed" and res.counts == {"failed": 1}
    row = load_plan(engine, "ws", pid).rows[0]
    assert row["error_code"] == "http_502" and "HTTP 502" in row["error_message"] and row["attempts"] >= 1


# ------------------------------------------------------------------------------------------ Google
def google_on(port: int, **kw):
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    from core.platforms.google import GOOGLE_API_VERSION, GoogleAdsPlatform

    client = GoogleAdsClient(credentials=Credentials(token="test-access-token"), developer_token="devtoken-TRANSPORT",
                             endpoint=f"127.0.0.1:{port}", version=GOOGLE_API_VERSION, use_proto_plus=True)
    return GoogleAdsPlatform(client, "1234567890", read_retry=None, **kw)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_google_unreachable_is_transient(google_tls):
    with pytest.raises(TransientPlatformError, match="Google Ads unavailable"):
        google_on(closed_port(), timeout=3.0).list_entities()


def test_google_silent_server_times_out_as_transient(google_tls):
    srv, held = silent_server()
    start = time.monotonic()
    with pytest.raises(TransientPlatformError):
        google_on(srv.getsockname()[1], timeout=1.0).list_entities()
    assert time.monotonic() - start < 10
    srv.close()


def test_google_mutate_to_an_http_proxy_is_transient(google_tls):
    """An HTTP/1.1 502 page where a gRPC server should be (a proxy in the way)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def answer():
        for _ in range(8):
            try:
                conn, _ = srv.accept()
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n" + HTML_502.encode())
                conn.close()
            except OSError:
                return

    threading.Thread(target=answer, daemon=True).start()
    g = google_on(srv.getsockname()[1], timeout=3.0, currency="USD")
    with pytest.raises(TransientPlatformError):
        g._mutate("CampaignBudgetService", [], validate_only=True)
    srv.close()


def test_google_oauth_server_unreachable_is_transient(google_fake, monkeypatch):
    """The token refresh cannot reach Google's OAuth server (here: a closed port on 127.0.0.1)."""
    from core.platforms import google as gmod
    from core.platforms.credentials import GoogleCredentials

    _, live = google_fake
    monkeypatch.setattr(gmod, "TOKEN_URI", f"http://127.0.0.1:{closed_port()}/token")
    creds = GoogleCredentials(developer_token="devtoken-TRANSPORT", client_id="cid", client_secret="csecret-123456",
                              refresh_token="1//refresh-abcdefghijk", customer_id="123-456-7890")
    g = gmod.GoogleAdsPlatform.from_credentials(creds, timeout=5.0, read_retry=None)
    g.client.endpoint = live.client.endpoint  # the fake Ads API is up; only the OAuth server is not
    with pytest.raises(TransientPlatformError) as info:
        g.list_entities()
    assert "csecret-123456" not in str(info.value) and "refresh-abcdefghijk" not in str(info.value)


def test_a_meta_write_whose_answer_times_out_is_found_not_sent_twice(engine):
    """The POST reached Meta (the budget changed there) but the answer was lost to a read timeout: the
    executor finds the new value on its next read and records the change applied, with one POST sent."""
    from urllib.parse import parse_qs

    state = {"daily_budget": "5000"}
    posts: list[dict] = []

    def node(request):
        return 200, {}, '{"id": "11", "status": "ACTIVE", "daily_budget": "%s"}' % state["daily_budget"]

    def write(request):
        body = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        posts.append(body)
        state["daily_budget"] = body["daily_budget"][0]  # Meta wrote it ...
        raise requests.exceptions.ReadTimeout("read timed out")  # ... and the answer never arrived

    m = meta()
    pid, h = _approved_budget_plan(engine)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, NODE, callback=node)
        rsps.add_callback(responses.POST, NODE, callback=write)
        res = ex.execute(engine, "ws", pid, h, m, actor="alice",
                         retry=ex.RetryPolicy(max_attempts=3, initial_wait=0.001, sleep=lambda s: None))
    assert [p["daily_budget"][0] for p in posts] == ["6000"]  # minor units, sent once
    assert res.status == "completed" and res.counts == {"applied": 1}
    row = load_plan(engine, "ws", pid).rows[0]
    assert "was lost" in row["response"]["note"] and row["response"]["live"] == "60.00"
    assert TOKEN not in str(row) and SECRET not in str(row)
