"""In a real browser, offline: sign-in through an OpenID Connect provider on 127.0.0.1 (Authlib's server
components, `tests.browser.oidc_provider`), Streamlit's own ``st.login`` configured in ``[auth]``.

A viewer signs in and can change nothing (the import is refused by `core`, the refusal names the role and
is logged under the viewer's identity); an analyst signs in, imports, and the audit log — in the database
and in the Access page's download — carries the provider's subject and e-mail. One app server and one
provider for the module.
"""

from __future__ import annotations

import csv
import io
import secrets

import pytest

from tests.browser.oidc_provider import OIDCProvider
from tests.browser.util import open_page, upload_and_import, wait_idle
from tests.conftest import start_app, stop_app
from tests.small_events import EVENTS_CSV

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CLIENT_ID, CLIENT_SECRET = "marketing-suite", secrets.token_urlsafe(24)
ANALYST, VIEWER, ADMIN = "ann@acme.example", "vic@acme.example", "ada@acme.example"
SUBJECTS = {ANALYST: "idp|ann-5f1c", VIEWER: "idp|vic-93ad", ADMIN: "idp|ada-0b7e"}


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider(SUBJECTS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as provider:
        yield provider


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, idp):
    """The app with sign-in configured (this module's `page` fixture opens it); members added first."""
    from core.__main__ import main as cli
    from core.store.db import DEFAULT_WORKSPACE

    folder = tmp_path_factory.mktemp("signin-app")
    secrets_toml = folder / "secrets.toml"
    secrets_toml.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # Streamlit fills in the port it serves on
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{idp.metadata_url}"\n')
    proc, info, log = start_app(folder, secrets=secrets_toml)
    for email, role in ((ADMIN, "admin"), (ANALYST, "analyst"), (VIEWER, "viewer")):
        assert cli(["members", "add", "--workspace", DEFAULT_WORKSPACE, "--email", email, "--role", role,
                    "--db", info.db_url]) == 0
    info.workspace = DEFAULT_WORKSPACE
    yield info
    stop_app(proc, log)


def _sign_in(page, idp, email: str) -> None:
    page.goto(page.app_url)
    page.get_by_text("Sign in to see your workspaces").wait_for(timeout=60_000)
    assert page.get_by_test_id("stSidebarNav").count() == 0  # nothing of a workspace before sign-in
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{idp.issuer}/authorize?**", timeout=30_000)  # Streamlit sent the browser to the provider
    page.get_by_role("button", name=email).click()
    page.wait_for_url(f"{page.app_url}/**", timeout=30_000)  # ... which sent it back through /oauth2callback
    wait_idle(page)
    page.get_by_test_id("stSidebar").get_by_text(f"Signed in as {email}").wait_for(timeout=60_000)


def _import(page, tmp_path, name: str) -> None:
    file = tmp_path / name
    file.write_text(EVENTS_CSV)
    upload_and_import(page, file, "journeys")


def _log(app_server):
    from core.access import audit_frame
    from core.store.db import make_engine

    eng = make_engine(app_server.db_url)
    try:
        return audit_frame(eng, app_server.workspace)
    finally:
        eng.dispose()


def _datasets(app_server) -> list[str]:
    from core.ingest.persist import list_datasets
    from core.store.db import make_engine

    eng = make_engine(app_server.db_url)
    try:
        return sorted(map(str, list_datasets(eng, app_server.workspace)["name"]))
    finally:
        eng.dispose()


def test_a_signed_in_viewer_can_change_nothing(page, idp, app_server, tmp_path):
    before = _datasets(app_server)
    # the first request to a fresh server opens a page's own address: the sign-in screen, not the page
    page.goto(f"{page.app_url}/data")
    wait_idle(page)
    page.get_by_text("Sign in to see your workspaces").wait_for(timeout=60_000)
    assert page.get_by_test_id("stFileUploaderDropzoneInput").count() == 0
    assert page.get_by_test_id("stSidebarNav").count() == 0
    _sign_in(page, idp, VIEWER)
    assert idp.issued[-1] == SUBJECTS[VIEWER]
    _import(page, tmp_path, "viewer-events.csv")
    page.get_by_text("needs the analyst role", exact=False).first.wait_for(timeout=30_000)
    assert page.get_by_text("Imported viewer-events.csv", exact=False).count() == 0
    assert _datasets(app_server) == before  # nothing stored

    refused = _log(app_server)
    refused = refused[(refused["outcome"] == "refused") & (refused["email"] == VIEWER)]
    assert len(refused) >= 1
    row = refused.iloc[0]
    assert (row["subject"], row["entry_point"]) == (SUBJECTS[VIEWER], "page")
    assert "analyst" in row["note"] + str(row["detail"])


def test_a_signed_in_analyst_imports_and_the_audit_log_names_them(page, idp, app_server, tmp_path):
    _sign_in(page, idp, ANALYST)
    assert idp.issued[-1] == SUBJECTS[ANALYST]
    _import(page, tmp_path, "analyst-events.csv")
    page.get_by_text("Imported analyst-events.csv", exact=False).wait_for(timeout=60_000)
    assert "analyst-events.csv" in " ".join(_datasets(app_server))

    log = _log(app_server)
    mine = log[(log["email"] == ANALYST) & (log["outcome"] == "ok")]
    assert len(mine) >= 1 and set(mine["subject"]) == {SUBJECTS[ANALYST]} and set(mine["entry_point"]) == {"page"}

    # the Access page's audit log (its download: the grid itself is a canvas) shows the same identity
    open_page(page, "Access & audit")
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download the audit log (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    theirs = [r for r in rows if r["email"] == ANALYST and r["outcome"] == "ok"]
    assert theirs and all(r["subject"] == SUBJECTS[ANALYST] for r in theirs)
    assert any(r["email"] == VIEWER and r["outcome"] == "refused" and r["subject"] == SUBJECTS[VIEWER] for r in rows)
