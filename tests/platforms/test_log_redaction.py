"""One redaction for every log record of the process (issue 11 §7): urllib3's request lines with the
Meta token and appsecret_proof, the Google Ads SDK's logging interceptor echoing a token, and
credential-like parts of any URL. Order-independent: it holds whether or not the ``google`` loggers
propagate to the root logger (google-auth switches that off the first time it logs)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from core.platforms.base import PlatformError
from core.platforms.credentials import MetaCredentials
from core.platforms.meta import MetaAdsPlatform
from core.redact import redact_text, redact_url

from .conftest import GOOGLE_DEV_TOKEN
from .fake_google import Abort, GoogleAdsFailure, ads_error

TOKEN = "EAAlogTOKEN0123456789abcdefXYZ"
APP_SECRET = "app-secret-log-0042"
PROOF = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def graph_server():
    """A local stand-in for graph.facebook.com over real HTTP (so urllib3 really connects and logs)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"id": "11", "status": "ACTIVE", "daily_budget": "5000",
                               "bid_strategy": "LOWEST_COST_WITHOUT_CAP"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urllib3_debug_lines_never_carry_the_meta_token(graph_server, every_log_record):
    meta = MetaAdsPlatform(MetaCredentials(access_token=TOKEN, app_secret=APP_SECRET, ad_account_id="1"), currency="USD")
    meta.api._session.GRAPH = graph_server
    assert str(meta.read_live("campaign", "11", "budget")) == "50.00"
    text = every_log_record()
    assert "access_token=***" in text and "appsecret_proof=***" in text  # urllib3 logged the request line
    for secret in (TOKEN, APP_SECRET, PROOF):
        assert secret not in text


@pytest.mark.parametrize("google_propagates", [True, False], ids=["google logs propagate", "google-auth turned it off"])
def test_the_google_sdk_interceptor_never_logs_a_token(google_fake, every_log_record, google_propagates, monkeypatch):
    monkeypatch.setattr(logging.getLogger("google"), "propagate", google_propagates)
    fake, g = google_fake
    access = g.client.credentials.token
    echo = f"developer token {GOOGLE_DEV_TOKEN} / access token {access} refused"
    fake.aborts["SearchStream"] = [Abort(grpc.StatusCode.UNAUTHENTICATED, echo,
                                         GoogleAdsFailure(errors=[ads_error("authentication_error", "OAUTH_TOKEN_EXPIRED", echo)]))]
    with pytest.raises(PlatformError) as info:
        g.list_entities()
    text = every_log_record()
    assert "FaultMessage: developer token *** / access token *** refused" in text  # the interceptor did log it
    assert GOOGLE_DEV_TOKEN not in text + str(info.value) and access not in text + str(info.value)


def test_a_record_logged_with_a_traceback_is_redacted_too(every_log_record):
    try:
        raise RuntimeError(f"connect to postgresql://ann:pw-{TOKEN[:8]}x@db/x failed, Authorization: Bearer abc.def.ghi")
    except RuntimeError:
        logging.getLogger("anything.at.all").exception("while syncing ?api_key=%s", "k-123456789")
    text = every_log_record()
    assert "api_key=***" in text and "k-123456789" not in text
    assert f"pw-{TOKEN[:8]}x" not in text and "abc.def.ghi" not in text and "Traceback" in text


@pytest.mark.parametrize("url, secret", [
    ("postgresql+psycopg://ann:pw-0042@db:5432/shop", "pw-0042"),
    ("postgresql+psycopg://ann@db/shop?password=pw-0042&sslmode=require", "pw-0042"),
    ("postgresql://ann@db/shop?sslpassword=pw-0042", "pw-0042"),
    ("snowflake://ann@acct/db?private_key=pk-0042&warehouse=wh", "pk-0042"),
    ("https://api.example.com/v1/rows?api_key=ak-0042&limit=5", "ak-0042"),
    ("https://graph.facebook.com/v26.0/act_1?access_token=EAA0042&appsecret_proof=ff0042", "EAA0042"),
    ("https://ann:pw-0042@example.com/export.csv", "pw-0042"),
    ("not a url at all pw-0042", "pw-0042"),
], ids=["password", "password param", "sslpassword", "private key", "api_key", "access token", "userinfo", "unreadable"])
def test_every_credential_like_part_of_a_url_is_redacted(url, secret):
    shown = redact_url(url)
    assert secret not in shown and ("***" in shown or shown == "(an unreadable URL)")
    if "://" in url:
        assert secret not in redact_text(f"failed: {url}")


def test_what_is_not_a_credential_stays_readable():
    assert redact_url("postgresql://ann@db:5432/shop?sslmode=require&application_name=ms") == \
        "postgresql://ann@db:5432/shop?application_name=ms&sslmode=require"


@pytest.mark.parametrize("text", [
    "--touches sessions: build these paths", "events -> sessions: 7", "author: ann", "design: good",
    "passenger: 3", "one touch per session: the default",
])
def test_ordinary_words_that_contain_a_credential_word_are_left_alone(text):
    """A report's "sessions: 7" or a plan's "author: ann" is not a secret; only names that are credentials."""
    assert redact_text(text) == text


@pytest.mark.parametrize("text, secret", [
    ("session_id=abc123", "abc123"), ("x_auth=abc123", "abc123"), ("db_pwd=abc123", "abc123"),
    ("appsecret_proof=abc123", "abc123"), ('accessToken: "abc123"', "abc123"), ("sslpassword=abc123", "abc123"),
])
def test_credential_names_are_still_masked(text, secret):
    assert secret not in redact_text(text)
