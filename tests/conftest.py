"""Suite-wide fixtures: no traffic beyond loopback, database URLs (SQLite and PostgreSQL), the app server."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from types import SimpleNamespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# --------------------------------------------------------------------------- network guard
_escapes: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(sock: socket.socket, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            _escapes.append(f"{host}:{address[1]}")
            raise ConnectionRefusedError(f"test tried to reach {host}:{address[1]}; only 127.0.0.1 is allowed")


def _guarded_connect(self, address):
    _loopback_only(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _loopback_only(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_traffic_beyond_loopback():
    """Fail any test that tried to open a connection outside 127.0.0.1, even if the error was swallowed."""
    start = len(_escapes)
    yield
    tried = _escapes[start:]
    if tried:
        pytest.fail(f"a request left 127.0.0.1: {', '.join(tried)}")


# --------------------------------------------------------------------------- credential key
@pytest.fixture(scope="session", autouse=True)
def credential_key_file(tmp_path_factory):
    """The encrypted credential store's generated key goes to a temporary file, never the user's data directory
    (the app servers started by the browser tests inherit it)."""
    from core.platforms.secret_store import KEY_FILE_ENV

    path = tmp_path_factory.mktemp("keys") / "secret.key"
    old = os.environ.get(KEY_FILE_ENV)
    os.environ[KEY_FILE_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(KEY_FILE_ENV, None)
    else:
        os.environ[KEY_FILE_ENV] = old


# --------------------------------------------------------------------------- databases
@pytest.fixture(scope="session", autouse=True)
def event_storage_location(tmp_path_factory):
    """Event files of every test go to a temporary folder, never to the user's data directory."""
    from core.store.event_store import STORAGE_URL_ENV

    if not os.environ.get(STORAGE_URL_ENV):
        os.environ[STORAGE_URL_ENV] = str(tmp_path_factory.mktemp("event-storage"))
    yield os.environ[STORAGE_URL_ENV]


def _require(what: str, why: str):
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {why}")
    pytest.skip(f"{what} not available: {why}")


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("MS_TEST_POSTGRES_URL")
    if not url:
        _require("PostgreSQL", "MS_TEST_POSTGRES_URL is not set (scripts/test starts a server)")
    return url


@pytest.fixture
def postgres_url(postgres_server_url) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    yield url
    from sqlalchemy.pool import NullPool  # noqa: F401

    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """The same test on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url):
    from core.store.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


# --------------------------------------------------------------------------- app server + browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(folder: Path, *, prepared: bool = True, secrets: Path | None = None, address: str = "127.0.0.1"):
    """`streamlit run app.py` on a free port of 127.0.0.1 with its own SQLite database in ``folder``.

    ``prepared``: the sample data, the sandbox and the first attribution run are loaded before the
    server starts (as after a first start); otherwise the app prepares them itself, in the background.
    ``secrets``: the app's secrets.toml (e.g. an ``[auth]`` section for sign-in) instead of the repository's;
    ``address``: what the server binds to (it is reached on 127.0.0.1 either way).
    Returns (process, namespace with url, db_url, log, log file handle).
    """
    port = _free_port()
    db_url = f"sqlite:///{folder / 'app.db'}"
    if prepared:
        from core.sample import load_sample_if_empty
        from core.store.db import make_engine

        eng = make_engine(db_url)
        load_sample_if_empty(eng)
        eng.dispose()
    env = dict(os.environ, MARKETING_SUITE_DB_URL=db_url, PYTHONPATH=str(ROOT))
    log = open(folder / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), f"--server.address={address}",
         f"--server.port={port}", "--server.headless=true", "--browser.gatherUsageStats=false",
         *([f"--secrets.files={secrets}"] if secrets else [])],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError(f"streamlit did not start: {(folder / 'streamlit.log').read_text()[-2000:]}")
    return proc, SimpleNamespace(url=base, db_url=db_url, log=folder / "streamlit.log"), log


def stop_app(proc, log) -> None:
    """Stop the server: a polite SIGTERM first; on a loaded machine Streamlit's shutdown can take longer
    than the grace period, and then it is killed (a test must not fail on its teardown)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """`streamlit run app.py` on 127.0.0.1 with its own SQLite database (sample data loaded)."""
    proc, info, log = start_app(tmp_path_factory.mktemp("app"))
    yield info
    stop_app(proc, log)


@pytest.fixture(scope="module")
def browser():
    path = os.environ.get("MS_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        _require("Debian chromium", f"{path} does not exist (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, app_server):
    """A fresh browser page on the app; records every request and fails if one leaves 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    outside: list[str] = []

    def _record(request):
        url = request.url
        if not (url.startswith("http://127.0.0.1") or url.startswith("ws://127.0.0.1") or url.startswith("data:") or url.startswith("blob:")):
            outside.append(url)

    pg.on("request", _record)
    pg.app_url = app_server.url  # type: ignore[attr-defined]
    pg.app_db = app_server.db_url  # type: ignore[attr-defined]
    yield pg
    context.close()
    assert not outside, f"the page requested hosts beyond 127.0.0.1: {outside[:5]}"


# --------------------------------------------------------------------------- every log record
@pytest.fixture
def every_log_record(monkeypatch):
    """Every log record of the process while the test runs, at DEBUG, whatever the loggers' handlers
    and ``propagate`` flags (the ``google`` tree may not propagate to the root, where caplog listens),
    plus what Python's last-resort handler (stderr) wrote. Call it to get all of it as text."""
    import io
    import logging

    seen: list[logging.LogRecord] = []
    real_handle = logging.Logger.handle

    def handle(self, record):
        seen.append(record)
        return real_handle(self, record)

    monkeypatch.setattr(logging.Logger, "handle", handle)
    last_resort = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(last_resort))
    levels = {name: logging.getLogger(name).level for name in ("", "google", "urllib3", "google.ads.googleads.client")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)

    def text() -> str:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return "\n".join([formatter.format(r) for r in seen] + [str(r.args) for r in seen] + [last_resort.getvalue()])

    text.records = seen  # type: ignore[attr-defined]
    yield text
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
