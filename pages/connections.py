"""Connections page: connect Meta and Google Ads from the page, test, store encrypted, remove.

Thin: discovery, masking and the connection test live in `core.platforms.credentials`; encryption in
`core.platforms.secret_store`; Google's installed-app sign-in and Meta's long-lived token exchange in
`core.platforms.oauth`. Nothing here displays, logs or stores a secret in full: secret fields are
password inputs that start empty (blank keeps the stored value) and are shown back masked.
Settings in ``secrets.toml`` or the environment win over stored ones, key by key.
"""

from __future__ import annotations

import datetime as dt
import os

import streamlit as st

from core.optimize import session as S
from core.platforms.credentials import (
    GOOGLE_KEYS,
    META_KEYS,
    SECRET_KEYS,
    CredentialsError,
    describe,
    discover,
    test_connection,
)
from core.platforms.oauth import GooglePending, google_finish, google_sign_in, meta_long_lived_token
from core.platforms.registry import get_platform
from ui.context import actor, credential_store, engine, workspace
from ui.sandbox import new_sandbox_fields, open_sandbox
from ui.text import plain

LABELS = {"meta": "Meta (Facebook / Instagram) Ads", "google": "Google Ads"}
KEYS = {"meta": META_KEYS, "google": GOOGLE_KEYS}
#: Form fields per platform: (key, label, help). Secret keys are password inputs.
FIELDS = {
    "meta": [
        ("meta_ad_account_id", "Ad account id", "act_123... or the digits alone"),
        ("meta_access_token", "Access token", "a system-user token, or a user token (exchange it below for a long-lived one)"),
        ("meta_app_secret", "App secret", "from the app's Basic settings; signs every request (appsecret_proof)"),
        ("meta_app_id", "App id", "needed only to exchange a short-lived token"),
        ("meta_conversion_action_type", "Conversion action type", "the action counted as a conversion (default omni_purchase)"),
    ],
    "google": [
        ("google_customer_id", "Customer id", "123-456-7890"),
        ("google_login_customer_id", "Manager (login) customer id", "only when access goes through a manager account"),
        ("google_developer_token", "Developer token", "from the API Center of your manager account"),
        ("google_client_id", "OAuth client id", "of a Desktop app OAuth client"),
        ("google_client_secret", "OAuth client secret", ""),
        ("google_refresh_token", "Refresh token", "or leave blank and use 'Sign in with Google' below"),
    ],
}
PENDING = "google-oauth:"  # stored pending sign-ins: PENDING + state

st.title("🔌 Connections")
eng, ws = engine(), workspace()
st.caption(
    "Enter credentials here: they are tested on request, stored encrypted in the app's database and never shown back in "
    "full. Settings in `.streamlit/secrets.toml` or the environment still work and win over stored ones. The sandbox "
    "account needs no credentials and is always available."
)

try:
    store = credential_store()
except CredentialsError as exc:
    st.error(f"The encrypted credential store cannot be used: {plain(exc)}")
    store = None

try:
    secrets = st.secrets
    secrets.get("_probe")
except Exception:
    secrets = None


def _stored(platform: str) -> dict[str, str]:
    if store is None:
        return {}
    try:
        return store.load(ws, platform) or {}
    except CredentialsError as exc:
        st.error(f"{LABELS[platform]}: {plain(exc)}")
        return {}


# ------------------------------------------------------------------------------ Google sign-in coming back
params = st.query_params
if "state" in params and store is not None:
    state = params.get("state", "")
    try:
        pending_values = store.load(ws, PENDING + state)
        if pending_values is None:
            raise CredentialsError("no sign-in was started with this answer (or it was finished already): start again")
        if params.get("error"):
            raise CredentialsError(f"Google did not grant access: {params.get('error')}")
        refresh = google_finish(GooglePending.from_store(pending_values), params.get("code", ""), state)
        merged = {**_stored("google"), "google_client_id": pending_values["client_id"],
                  "google_client_secret": pending_values["client_secret"], "google_refresh_token": refresh}
        store.save(ws, "google", merged, actor=actor())
        st.success("Signed in with Google: the refresh token is stored, encrypted.")
    except CredentialsError as exc:
        st.error(f"Google sign-in: {plain(exc)}")
    finally:
        store.delete(ws, PENDING + state, actor=actor())
        st.query_params.clear()

stored_all = {} if store is None else {k: v for p in ("meta", "google") for k, v in _stored(p).items()}
found = discover(secrets, os.environ, stored_all)
if store is not None:
    st.caption(f"Encryption key from: {store.key_source}.")


def _merged(platform: str, entered: dict[str, str]) -> dict[str, str]:
    """The stored settings with what was typed on top (a blank field keeps the stored value)."""
    out = dict(_stored(platform))
    out.update({k: v.strip() for k, v in entered.items() if v and v.strip()})
    return out


def _test(platform: str, values: dict[str, str]) -> None:
    """Build the platform from ``values`` (not saved) and ask it who we are."""
    trial = discover(None, {}, values)
    creds = getattr(trial, platform)
    if creds is None:
        st.session_state[f"conn.{platform}.result"] = {"ok": False, "reconnect": False, "message": "; ".join(
            trial.problems.get(platform, ["nothing entered"]))}
        return
    _test_creds(platform, creds)


def _test_creds(platform: str, creds) -> None:
    with st.spinner(f"Asking {LABELS[platform]}…"):
        try:
            status = test_connection(get_platform(platform, eng, ws, credentials=creds))
        except Exception as exc:  # a configuration the SDK refuses before any request
            st.session_state[f"conn.{platform}.result"] = {"ok": False, "reconnect": False,
                                                           "message": f"could not build the {platform} client: {type(exc).__name__}"}
            return
    st.session_state[f"conn.{platform}.result"] = {"ok": status.ok, "message": status.message, "account": status.account_name,
                                                   "currency": status.currency, "reconnect": status.reconnect}


def _result(platform: str) -> None:
    result = st.session_state.get(f"conn.{platform}.result")
    if not result:
        return
    if result["ok"]:
        st.success(f"Connected to {plain(result['account'] or 'the account')} ({plain(result['currency'])}).")
    elif result["reconnect"]:
        st.warning(f"Reconnect needed: {plain(result['message'])}. Enter a new token below (or in secrets.toml) and test again.")
    else:
        st.error(f"Connection failed: {plain(result['message'])}")


for name in ("meta", "google"):
    creds = getattr(found, name)
    with st.container(border=True):
        st.subheader(LABELS[name])
        if creds is None and name not in found.problems:
            st.info("Not configured. Enter the credentials below, or add the `" + name + "_…` keys to secrets.toml or the environment.")
        elif creds is None:
            st.error("Incomplete configuration: " + plain("; ".join(found.problems[name])))
        else:
            rows = [{"setting": key, "value": value, "from": found.sources.get(key, "default")}
                    for key, value in describe(creds).items()]
            st.dataframe(rows, hide_index=True, width="stretch", key=f"conn.{name}.settings")
            if st.button("Test connection", key=f"conn.{name}.test"):
                _test_creds(name, creds)
        _result(name)
        overridden = [k for k in KEYS[name] if found.sources.get(k) in ("secrets", "environment")]
        meta = store.describe(ws, name) if store is not None else None
        with st.expander("Enter or change credentials" if meta is None else "Change the stored credentials",
                         expanded=creds is None and not overridden):
            if overridden:
                st.caption(f"Set in secrets.toml / the environment (they win over what is stored here): {', '.join(overridden)}.")
            hints = (meta or {}).get("hints", {})
            with st.form(f"conn.{name}.form", clear_on_submit=False):
                entered: dict[str, str] = {}
                for key, label, help_ in FIELDS[name]:
                    secret = key in SECRET_KEYS
                    shown = hints.get(key)
                    entered[key] = st.text_input(
                        label, key=f"conn.{name}.{key}", type="password" if secret else "default", help=help_ or None,
                        placeholder=(f"stored: {shown} (leave blank to keep)" if shown else ""), autocomplete="off")
                if name == "google":
                    shared = st.checkbox("Allow changes to shared budgets", value=hints.get("google_allow_shared_budgets") == "true",
                                         key="conn.google.google_allow_shared_budgets",
                                         help="A shared budget changes every campaign that uses it.")
                    entered["google_allow_shared_budgets"] = "true" if shared else "false"
                c1, c2 = st.columns(2)
                test_clicked = c1.form_submit_button("Test these credentials")
                save_clicked = c2.form_submit_button("Save (encrypted)", type="primary", disabled=store is None)
            if test_clicked:
                _test(name, _merged(name, entered))
                st.rerun()
            if save_clicked and store is not None:
                merged = _merged(name, entered)
                problems = discover(None, {}, merged).problems.get(name)
                if problems:
                    st.error("Not saved: " + plain("; ".join(problems)))
                else:
                    store.save(ws, name, {k: v for k, v in merged.items() if k in KEYS[name]}, actor=actor())
                    st.session_state.pop(f"conn.{name}.result", None)
                    for key, _, _ in FIELDS[name]:  # typed secrets do not linger in the session
                        st.session_state.pop(f"conn.{name}.{key}", None)
                    st.rerun()
            if meta is not None:
                when = meta["updated_at"]
                st.caption(f"Stored {when:%Y-%m-%d %H:%M} UTC" + (f" by {plain(meta['updated_by'])}" if meta["updated_by"] else "") +
                           ": " + ", ".join(f"{k} {v}" for k, v in hints.items() if k != "expires"))
                if st.button("Remove the stored credentials", key=f"conn.{name}.remove"):
                    store.delete(ws, name, actor=actor())
                    st.session_state.pop(f"conn.{name}.result", None)
                    st.rerun()

        if name == "meta" and store is not None:
            with st.expander("Exchange a short-lived token for a long-lived one (about 60 days)"):
                with st.form("conn.meta.exchange"):
                    short = st.text_input("Short-lived user token", type="password", key="conn.meta.short_token", autocomplete="off")
                    st.caption("Uses the stored (or entered above) app id and app secret; the long-lived token is stored encrypted.")
                    go = st.form_submit_button("Exchange and store")
                if go:
                    values = _merged("meta", {k: st.session_state.get(f"conn.meta.{k}", "") for k, _, _ in FIELDS["meta"]})
                    try:
                        token = meta_long_lived_token(values.get("meta_app_id", ""), values.get("meta_app_secret", ""), short)
                    except CredentialsError as exc:
                        st.error(plain(exc))
                    else:
                        values["meta_access_token"] = token.access_token
                        store.save(ws, "meta", {k: v for k, v in values.items() if k in META_KEYS}, actor=actor())
                        days = f" for {token.expires_in // 86400} days" if token.expires_in else ""
                        st.success(f"Long-lived token stored, encrypted; it is valid{days or ' until Meta revokes it'}.")

        if name == "google" and store is not None:
            with st.expander("Sign in with Google (installed-app OAuth) to get a refresh token"):
                st.caption("Needs an OAuth client of type *Desktop app* (client id and secret above). Google sends you back to "
                           "this page on 127.0.0.1, where the refresh token is stored, encrypted.")
                if st.button("Start the Google sign-in", key="conn.google.sign_in"):
                    values = _merged("google", {k: st.session_state.get(f"conn.google.{k}", "") for k, _, _ in FIELDS["google"]})
                    base = str(st.context.url or "").split("?", 1)[0].rstrip("/")
                    redirect = base if base.endswith("/connections") else base.rsplit("/", 1)[0] + "/connections"
                    try:
                        pending = google_sign_in(values.get("google_client_id", ""), values.get("google_client_secret", ""), redirect)
                    except CredentialsError as exc:
                        st.error(plain(exc))
                    else:
                        store.delete_prefix(ws, PENDING, actor=actor())  # one sign-in at a time: an older link stops working
                        store.save(ws, PENDING + pending.state, pending.to_store(), actor=actor())
                        st.session_state["conn.google.pending_url"] = pending.url
                url = st.session_state.get("conn.google.pending_url")
                if url:
                    st.link_button("Open Google to grant access", url)
                    st.caption(f"Started {dt.datetime.now():%H:%M}; the link works once.")

# ------------------------------------------------------------------------------ sandbox accounts
st.divider()
st.subheader("Sandbox ad accounts")
st.caption("Simulated accounts that need no credentials: plans go to them like to a real account. Each keeps its "
           "money in its own currency, at that currency's precision (KWD in fils, JPY in whole yen).")
with st.form("conn.sandbox.new", border=True):
    s1, s2 = st.columns(2)
    sandbox_id, sandbox_currency = new_sandbox_fields(s1, s2, eng, ws, id_key="conn.sandbox.account_id",
                                                      currency_key="conn.sandbox.currency")
    if st.form_submit_button("Create the sandbox account"):
        made = open_sandbox(eng, ws, sandbox_id, sandbox_currency, spinner="Creating and syncing the sandbox account…")
        if made is not None:
            st.success(f"Sandbox account **{plain(sandbox_id.strip())}** in {sandbox_currency} is ready: choose "
                       f"*{plain(made.label)}* on the Optimizer.")
sandboxes = S.sandbox_accounts(eng, ws)
if len(sandboxes):
    st.dataframe(sandboxes, hide_index=True, width="stretch", key="conn.sandbox.accounts")
