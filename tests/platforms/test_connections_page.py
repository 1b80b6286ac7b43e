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
    assert not [b for b in at.button if b.key in ("conn.meta.test", "conn.google.test")]  # nothing to test yet
    # a form to enter each platform's credentials, secrets as password fields that start empty
    token = at.text_input(key="conn.meta.meta_access_token")
    assert token.value == "" and token.proto.type == token.proto.PASSWORD
    assert at.text_input(key="conn.meta.meta_ad_account_id").proto.type == token.proto.DEFAULT


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


def _stored_rows(url: str):
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as c:
        rows = c.execute(text("select platform, ciphertext, hints from stored_credentials")).all()
    eng.dispose()
    return rows


def _submit(at: AppTest, platform: str, label: str) -> None:
    next(b for b in at.button if b.key.startswith(f"FormSubmitter:conn.{platform}.form") and b.label == label).click().run()
    assert not at.exception, at.exception


def test_enter_test_save_encrypted_show_masked_and_remove(app_env, tmp_path):
    url = "sqlite:///" + str(tmp_path / "app.db")
    at = page({})
    at.text_input(key="conn.meta.meta_ad_account_id").input("1234")
    at.text_input(key="conn.meta.meta_access_token").input(TOKEN)
    at.text_input(key="conn.meta.meta_app_secret").input(SECRET)
    with responses.RequestsMock() as rsps:  # tested before anything is stored
        rsps.add(responses.GET, f"{G}/{ACT}/", json={"id": ACT, "name": "Shop", "currency": "EUR"})
        _submit(at, "meta", "Test these credentials")
    assert "Connected to Shop (EUR)" in [x.value for x in at.success][0]
    assert _stored_rows(url) == []
    _submit(at, "meta", "Save (encrypted)")
    rows = _stored_rows(url)
    assert len(rows) == 1 and rows[0][0] == "meta"
    assert TOKEN not in repr(rows) and SECRET not in repr(rows)
    text = all_text(at)
    assert TOKEN not in text and SECRET not in text and TOKEN[-4:] in text and "encrypted store" in text
    assert at.text_input(key="conn.meta.meta_access_token").value == ""  # nothing typed lingers in the form
    # a blank secret field keeps the stored value: changing the account id alone works
    at.text_input(key="conn.meta.meta_ad_account_id").input("5678")
    _submit(at, "meta", "Save (encrypted)")
    assert "act_5678" in all_text(at)
    at.button(key="conn.meta.remove").click().run()
    assert _stored_rows(url) == [] and "Not configured" in all_text(at)


def test_secrets_toml_wins_over_what_is_stored(app_env):
    at = page({})
    at.text_input(key="conn.meta.meta_ad_account_id").input("1234")
    at.text_input(key="conn.meta.meta_access_token").input(TOKEN)
    at.text_input(key="conn.meta.meta_app_secret").input(SECRET)
    _submit(at, "meta", "Save (encrypted)")
    other = "EAAfromSecretsTOML9876543210"
    at2 = page({"meta_access_token": other})
    settings = next(d.value for d in at2.dataframe if "setting" in d.value.columns).set_index("setting")
    assert settings.loc["meta_access_token", "from"] == "secrets" and settings.loc["meta_access_token", "value"].endswith(other[-4:])
    assert settings.loc["meta_app_secret", "from"] == "encrypted store"
    assert any("win over what is stored here" in c.value and "meta_access_token" in c.value for c in at2.caption)


def test_an_incomplete_form_is_not_saved(app_env, tmp_path):
    at = page({})
    at.text_input(key="conn.google.google_developer_token").input("dev-token-0000001")
    _submit(at, "google", "Save (encrypted)")
    errors = " ".join(e.value for e in at.error)
    assert "Not saved" in errors and "missing google_client_id" in errors and "dev-token-0000001" not in errors
    assert _stored_rows("sqlite:///" + str(tmp_path / "app.db")) == []


def test_meta_short_lived_token_is_exchanged_and_stored(app_env):
    at = page({})
    for key, value in (("meta_ad_account_id", "1234"), ("meta_access_token", TOKEN), ("meta_app_secret", SECRET),
                       ("meta_app_id", "987654321")):
        at.text_input(key=f"conn.meta.{key}").input(value)
    _submit(at, "meta", "Save (encrypted)")
    at.text_input(key="conn.meta.short_token").input("EAAshortLIVED0123456789")
    long_lived = "EAAlongLIVED" + "q" * 30
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{G}/oauth/access_token", json={"access_token": long_lived, "token_type": "bearer", "expires_in": 5183944})
        next(b for b in at.button if b.key.startswith("FormSubmitter:conn.meta.exchange")).click().run()
        assert "fb_exchange_token=EAAshortLIVED0123456789" in rsps.calls[0].request.url
    assert not at.exception
    assert "stored, encrypted" in at.success[0].value and "59 days" in at.success[0].value
    text = all_text(page({}))
    assert long_lived[-4:] in text and long_lived not in text


def test_google_sign_in_coming_back_stores_the_refresh_token(app_env, tmp_path):
    """The page receives Google's redirect (?state=&code=), finishes the sign-in and stores the token."""
    from core.platforms.oauth import GOOGLE_TOKEN_URI, google_sign_in
    from core.platforms.secret_store import CredentialStore, resolve_key
    from core.store.db import make_engine

    url = "sqlite:///" + str(tmp_path / "app.db")
    page({})  # the app creates its database
    eng = make_engine(url)
    store = CredentialStore(eng, resolve_key())
    pending = google_sign_in("cid.apps.googleusercontent.com", "client-secret-xyz", "http://127.0.0.1:8501/connections")
    store.save("default", "google-oauth:" + pending.state, pending.to_store())
    store.save("default", "google", {"google_developer_token": "dev-token-0000001", "google_customer_id": "1234567890"})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/connections.py")
    at.query_params["state"] = pending.state
    at.query_params["code"] = "4/0AcodeXYZ"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, GOOGLE_TOKEN_URI, json={"access_token": "ya29.a", "refresh_token": "1//0gREFRESHtoken12345",
                                                        "expires_in": 3599, "token_type": "Bearer"})
        at.run()
    assert not at.exception, at.exception
    assert "Signed in with Google" in at.success[0].value
    saved = store.load("default", "google")
    assert saved["google_refresh_token"] == "1//0gREFRESHtoken12345" and saved["google_developer_token"] == "dev-token-0000001"
    assert store.load("default", "google-oauth:" + pending.state) is None  # the pending sign-in is used up
    assert "1//0gREFRESHtoken12345" not in all_text(at)
    # the same answer again (a reload) is refused: the sign-in is used up
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    again.switch_page("pages/connections.py")
    again.query_params["state"] = pending.state
    again.query_params["code"] = "4/0AcodeXYZ"
    again.run()
    assert any("no sign-in was started" in e.value for e in again.error)
    eng.dispose()
