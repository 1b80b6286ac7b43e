"""Connections page through the app entry point (AppTest): configured platforms, masked secrets, test."""

from __future__ import annotations

from pathlib import Path

import pytest
import responses
from streamlit.testing.v1 import AppTest

from core.platforms.credentials import GOOGLE_KEYS, META_KEYS

from .test_meta import ACT, G, SECRET, TOKEN

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", "sqlite:///" + str(tmp_path / "app.db"))
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    for key in META_KEYS + GOOGLE_KEYS:
        monkeypatch.delenv(key.upper(), raising=False)


def page(secrets: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in secrets.items():
        at.secrets[k] = v
    at.switch_page("pages/connections.py")
    at.run()
    assert not at.exception, at.exception
    return at


def all_text(at: AppTest) -> str:
    parts = [str(e.value) for kind in ("markdown", "caption", "info", "error", "warning", "success", "subheader")
             for e in at.get(kind)]
    for df in at.dataframe:
        parts.append(df.value.to_string())
    return "\n".join(parts)


def test_nothing_configured(app_env):
    at = page({})
    assert [i.value for i in at.info][:2] and len(at.info) == 2
    assert not at.button


def test_meta_configured_masked_and_connection_tested(app_env):
    at = page({"meta_access_token": TOKEN, "meta_app_secret": SECRET, "meta_ad_account_id": "1234"})
    text = all_text(at)
    assert TOKEN not in text and SECRET not in text
    assert TOKEN[-4:] in text and ACT in text
    assert "Not configured" in text  # Google
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{G}/{ACT}/", json={"id": ACT, "name": "Shop", "currency": "EUR"})
        at.button(key="conn.meta.test").click().run()
    assert not at.exception
    assert "Connected to Shop (EUR)" in [s.value for s in at.success][0]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{G}/{ACT}/", status=400, json={"error": {
            "message": f"Error validating access token: {TOKEN}", "code": 190, "fbtrace_id": "X"}})
        at.button(key="conn.meta.test").click().run()
    warning = at.warning[0].value
    assert "Reconnect" in warning and TOKEN not in warning and TOKEN not in all_text(at)


def test_incomplete_google_reports_missing_keys(app_env):
    at = page({"google_developer_token": "dev-token-0000001", "google_customer_id": "123-456-7890"})
    errors = " ".join(e.value for e in at.error)
    assert "missing google_client_id" in errors and "dev-token-0000001" not in errors
