"""The encrypted credential store, its key, the precedence of secrets, Google's installed-app sign-in and
Meta's long-lived token exchange: all offline, the real libraries building every request."""

from __future__ import annotations

import os
import stat
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from sqlalchemy import select

from core.platforms.credentials import CredentialsError, discover
from core.platforms.oauth import GOOGLE_ADS_SCOPE, GOOGLE_TOKEN_URI, google_finish, google_sign_in, meta_long_lived_token
from core.platforms.secret_store import KEY_ENV, CredentialKey, CredentialStore, decrypt, encrypt, hints, resolve_key
from core.store.db import make_engine, transaction
from core.store.models import StoredCredential

from .test_meta import G, SECRET, TOKEN

WS = "creds"
META = {"meta_access_token": TOKEN, "meta_app_secret": SECRET, "meta_ad_account_id": "1234", "meta_app_id": "987654321"}


@pytest.fixture
def store(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    yield CredentialStore(eng, resolve_key(environ={}, key_file=tmp_path / "k" / "secret.key"))
    eng.dispose()


# ----------------------------------------------------------------------------- the key
def test_a_key_file_is_generated_once_with_owner_only_permissions(tmp_path):
    path = tmp_path / "data" / "secret.key"
    first = resolve_key(environ={}, key_file=path)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_key(environ={}, key_file=path).key == first.key  # the same key on the next start
    assert first.source == str(path) and "key=" not in repr(first) and first.key.decode() not in repr(first)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "secret.key"
    resolve_key(environ={}, key_file=path)
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError, match="readable by others"):
        resolve_key(environ={}, key_file=path)


@pytest.mark.parametrize("secret, env, source", [
    ("from-secrets-passphrase", {KEY_ENV: "from-env"}, "secrets"),
    (None, {KEY_ENV: "a passphrase of the environment"}, "environment"),
], ids=["secrets.toml first", "then the environment"])
def test_the_key_from_secrets_or_the_environment_wins_over_the_file(tmp_path, secret, env, source):
    key = resolve_key(secret, environ=env, key_file=tmp_path / "never.key")
    assert key.source == source and not (tmp_path / "never.key").exists()
    again = resolve_key(secret, environ=env, key_file=tmp_path / "never.key")
    assert again.key == key.key  # a passphrase stretches to the same key every time


def test_a_fernet_key_is_used_as_given():
    from cryptography.fernet import Fernet

    raw = Fernet.generate_key()
    assert resolve_key(raw.decode(), environ={}).key == raw


# ----------------------------------------------------------------------------- encryption and the store
def test_what_is_stored_holds_no_secret_in_clear(store):
    store.save(WS, "meta", META, actor="ann")
    with transaction(store.engine, WS) as s:
        row = s.scalars(select(StoredCredential)).one()
        text = repr((row.ciphertext, row.hints, row.platform, row.updated_by))
    assert TOKEN not in text and SECRET not in text
    assert row.hints["meta_access_token"].endswith(TOKEN[-4:]) and row.hints["meta_ad_account_id"] == "1234"
    assert store.load(WS, "meta") == META
    assert store.describe(WS, "meta")["updated_by"] == "ann"


def test_saving_again_replaces_and_removing_forgets(store):
    store.save(WS, "meta", META)
    store.save(WS, "meta", {**META, "meta_ad_account_id": "5678"})
    assert store.load(WS, "meta")["meta_ad_account_id"] == "5678"
    assert store.delete(WS, "meta") and store.load(WS, "meta") is None and not store.delete(WS, "meta")


def test_another_workspace_sees_nothing(store):
    store.save(WS, "meta", META)
    assert store.load("other", "meta") is None and store.flat("other") == {}


def test_another_key_cannot_open_it(store, tmp_path):
    store.save(WS, "meta", META)
    other = CredentialStore(store.engine, resolve_key("a different passphrase", environ={}))
    with pytest.raises(CredentialsError, match="cannot be decrypted with this key"):
        other.load(WS, "meta")
    assert other.flat(WS) == {}  # unusable rows are not used


def test_empty_settings_are_refused(store):
    with pytest.raises(CredentialsError, match="every field is empty"):
        store.save(WS, "meta", {"meta_access_token": "  "})


def test_hints_mask_secrets_and_keep_identifiers():
    h = hints({**META, "google_refresh_token": "1//0g" + "r" * 40, "google_customer_id": "1234567890"})
    assert TOKEN not in str(h) and SECRET not in str(h) and "r" * 40 not in str(h)
    assert h["google_customer_id"] == "1234567890" and h["meta_app_id"] == "987654321"


def test_encrypt_is_not_deterministic_and_round_trips():
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    a, b = encrypt(META, key), encrypt(META, key)
    assert a != b and decrypt(a, key) == decrypt(b, key) == META


# ----------------------------------------------------------------------------- precedence
def test_secrets_and_environment_win_over_stored_key_by_key(store):
    store.save(WS, "meta", META)
    stored = store.flat(WS)
    only_store = discover({}, {}, stored)
    assert only_store.meta.access_token == TOKEN and only_store.sources["meta_access_token"] == "encrypted store"
    mixed = discover({"meta_access_token": "EAAfromSecretsToml0123456789"}, {"META_AD_ACCOUNT_ID": "999"}, stored)
    assert mixed.meta.access_token == "EAAfromSecretsToml0123456789" and mixed.sources["meta_access_token"] == "secrets"
    assert mixed.meta.ad_account_id == "act_999" and mixed.sources["meta_ad_account_id"] == "environment"
    assert mixed.meta.app_secret == SECRET and mixed.sources["meta_app_secret"] == "encrypted store"


# ----------------------------------------------------------------------------- Google's installed-app sign-in
REDIRECT = "http://127.0.0.1:8501/connections"


def test_google_sign_in_asks_for_offline_ads_access_with_pkce():
    pending = google_sign_in("cid.apps.googleusercontent.com", "client-secret-xyz", REDIRECT)
    q = {k: v[0] for k, v in parse_qs(urlparse(pending.url).query).items()}
    assert urlparse(pending.url).netloc == "accounts.google.com"
    assert q["client_id"] == "cid.apps.googleusercontent.com" and q["redirect_uri"] == REDIRECT and q["scope"] == GOOGLE_ADS_SCOPE
    assert q["response_type"] == "code" and q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43 and q["state"] == pending.state
    assert "client-secret-xyz" not in pending.url and pending.code_verifier not in pending.url
    assert "client-secret-xyz" not in repr(pending) and pending.code_verifier not in repr(pending)


def test_google_finish_exchanges_the_code_with_the_verifier():
    pending = google_sign_in("cid.apps.googleusercontent.com", "client-secret-xyz", REDIRECT)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, GOOGLE_TOKEN_URI, json={"access_token": "ya29.a", "expires_in": 3599, "refresh_token": "1//0gREFRESH",
                                                        "scope": GOOGLE_ADS_SCOPE, "token_type": "Bearer"})
        assert google_finish(pending, "4/0AcodeXYZ", pending.state) == "1//0gREFRESH"
        body = {k: v[0] for k, v in parse_qs(rsps.calls[0].request.body).items()}
        auth = rsps.calls[0].request.headers["Authorization"]
    assert body["grant_type"] == "authorization_code" and body["code"] == "4/0AcodeXYZ"
    assert body["code_verifier"] == pending.code_verifier and body["redirect_uri"] == REDIRECT
    # the client authenticates with HTTP Basic (RFC 6749 2.3.1), which Google's token endpoint accepts
    import base64

    assert auth.startswith("Basic ") and base64.b64decode(auth[6:]).decode() == "cid.apps.googleusercontent.com:client-secret-xyz"


@pytest.mark.parametrize("answer, state, message", [
    ({"json": {"access_token": "x"}}, None, "no refresh token"),
    ({"status": 400, "json": {"error": "invalid_grant", "error_description": "Bad Request"}}, None, "Google refused the sign-in: invalid_grant"),
    (None, "forged-state", "state mismatch"),
], ids=["no refresh token", "code refused", "another sign-in's answer"])
def test_google_finish_says_what_went_wrong(answer, state, message):
    pending = google_sign_in("cid", "csecret", REDIRECT)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if answer:
            rsps.add(responses.POST, GOOGLE_TOKEN_URI, **answer)
        with pytest.raises(CredentialsError, match=message):
            google_finish(pending, "4/0Acode", state or pending.state)


@pytest.mark.parametrize("redirect", ["https://app.example.com/connections", "http://10.0.0.5:8501/connections"],
                         ids=["public https", "another host"])
def test_google_sign_in_needs_a_loopback_redirect(redirect):
    with pytest.raises(CredentialsError, match="loopback"):
        google_sign_in("cid", "csecret", redirect)


# ----------------------------------------------------------------------------- Meta's long-lived token
def test_meta_exchange_sends_the_graph_request_and_returns_the_long_lived_token():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{G}/oauth/access_token", json={"access_token": "EAALONGLIVED" + "z" * 30, "token_type": "bearer",
                                                               "expires_in": 5183944})
        token = meta_long_lived_token("987654321", SECRET, TOKEN)
        q = {k: v[0] for k, v in parse_qs(urlparse(rsps.calls[0].request.url).query).items()}
    assert q == {"grant_type": "fb_exchange_token", "client_id": "987654321", "client_secret": SECRET, "fb_exchange_token": TOKEN}
    assert token.access_token.startswith("EAALONGLIVED") and token.expires_in == 5183944
    assert "EAALONGLIVED" not in repr(token)


def test_meta_exchange_refused_says_why_without_secrets():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{G}/oauth/access_token", status=400, json={"error": {
            "message": f"Error validating client secret {SECRET} for token {TOKEN}", "type": "OAuthException", "code": 1}})
        with pytest.raises(CredentialsError) as err:
            meta_long_lived_token("987654321", SECRET, TOKEN)
    text = str(err.value)
    assert "Meta refused the token exchange" in text and "(code 1)" in text and SECRET not in text and TOKEN not in text


def test_meta_exchange_needs_the_app_id():
    with pytest.raises(CredentialsError, match="meta_app_id"):
        meta_long_lived_token("", SECRET, TOKEN)
    with pytest.raises(CredentialsError, match="numeric"):
        meta_long_lived_token("my-app", SECRET, TOKEN)


def test_credential_key_never_prints():
    k = CredentialKey(b"x" * 44, "environment")
    assert "xxxx" not in repr(k) and "xxxx" not in str(k)
