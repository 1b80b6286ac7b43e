"""What every page needs: the database engine, the current workspace and the acting user."""

from __future__ import annotations

import os

import streamlit as st

from core.store.db import DEFAULT_WORKSPACE, DatabaseUnavailable, make_engine, resolve_url  # noqa: F401


def _secret(name: str) -> str | None:
    try:
        return st.secrets.get(name)  # type: ignore[no-any-return]
    except Exception:  # no secrets.toml at all
        return None


def database_url() -> str:
    """The database URL: secrets.toml `database_url`, else the environment, else local SQLite."""
    return resolve_url(_secret("database_url"))


@st.cache_resource(show_spinner="Opening the database…")
def _engine_for(url: str):
    engine = make_engine(url)  # DatabaseUnavailable names the database without its secrets
    if os.environ.get("MARKETING_SUITE_NO_SAMPLE") != "1":
        from core.sample import prepare_in_background

        prepare_in_background(engine, DEFAULT_WORKSPACE)  # a fresh database: the sample loads while the page shows
    return engine


def engine():
    """The process-wide engine (schema upgraded; a fresh database gets the sample data in the background)."""
    return _engine_for(database_url())


def first_start_progress() -> None:
    """While the sample data, the sandbox account and a first attribution run are prepared on a fresh
    database, a progress bar at the top of the page; when they are ready, the page reruns with them.

    Called once by ``app.py`` before the page. Nothing shows on a database that already had data.
    """
    from core.sample import preparation

    prep = preparation(engine(), DEFAULT_WORKSPACE)
    if prep is None:
        return
    snap = prep.snapshot()
    if snap["error"]:
        st.error(f"Preparing the sample data failed: {snap['error']}. The app works without it; import your own data "
                 "on the Data page.")
        return
    if snap["done"]:
        return

    @st.fragment(run_every=1.0)
    def _progress() -> None:
        now = prep.snapshot()
        if now["done"]:
            st.rerun()  # the whole page, now with the sample data (or the error)
        else:
            st.progress(now["fraction"], text=f"First start: preparing the sample data, the sandbox ad account and a first "
                                              f"attribution run — {now['message']}")

    _progress()


def credential_store():
    """The encrypted credential store of the app's database; its key from ``secrets.toml`` (``credential_key``),
    the environment, or the key file generated once (`core.platforms.secret_store.resolve_key`)."""
    from core.platforms.secret_store import SECRETS_KEY_NAME, CredentialStore, resolve_key

    return CredentialStore(engine(), resolve_key(_secret(SECRETS_KEY_NAME)))


def platform_credentials():
    """Every platform's credentials for the current workspace: ``secrets.toml``, then the environment,
    then the encrypted store (`core.platforms.credentials.discover`)."""
    from core.platforms.credentials import discover

    try:
        secrets = st.secrets
        secrets.get("_probe")  # raises when there is no secrets file at all
    except Exception:
        secrets = None
    try:
        stored = credential_store().flat(workspace())
    except Exception:  # no usable key: stored credentials are reported on the Connections page
        stored = {}
    return discover(secrets, os.environ, stored)


def workspace() -> str:
    """The workspace chosen in the sidebar. With sign-in, a page goes no further (``st.stop``) unless a
    signed-in member of that workspace is looking (also when a page is reached without the app's frame)."""
    ws = st.session_state.get("workspace", DEFAULT_WORKSPACE)
    if sign_in_configured():
        from core.access import workspaces_for

        who = actor()
        if who.kind != "user":
            st.warning("Sign in to see this workspace.")
            st.stop()
        if ws not in workspaces_for(engine(), who):
            st.warning(f"{who} is not a member of workspace {ws!r}: ask one of its admins to add you.")
            st.stop()
    return ws


def sign_in_configured() -> bool:
    """Whether ``secrets.toml`` configures an identity provider (``[auth]``): then everyone signs in."""
    from core.access.signin import auth_configured

    try:
        auth = st.secrets.get("auth")
        return auth_configured(dict(auth) if auth is not None else None)
    except Exception:  # no secrets.toml at all
        return False


def sign_in_provider() -> str | None:
    """The provider ``st.login`` should use: None for ``[auth]`` itself, else the first ``[auth.<name>]``."""
    from core.access.signin import AUTH_KEYS

    try:
        auth = dict(st.secrets.get("auth") or {})
    except Exception:
        return None
    if all(auth.get(k) for k in AUTH_KEYS):
        return None
    return next((name for name, v in auth.items() if hasattr(v, "get") and all(v.get(k) for k in AUTH_KEYS)), None)


def actor():
    """Who is acting (`core.access.Actor`, a str: the label the audit log and the plans show): the signed-in
    person when sign-in is configured, else the local user of single-user mode."""
    from core.access import Actor
    from core.access.signin import signed_in_actor

    if sign_in_configured():
        from core.access import set_local_mode

        set_local_mode(False, entry="page")  # nobody acts as the local user once a provider is configured
        claims = signed_in_claims()
        if claims is not None:
            return signed_in_actor(claims, entry="page")
    return Actor.local(entry="page")


def signed_in_claims() -> dict | None:
    """The identity provider's claims of the signed-in person (``st.user``), or None when nobody is."""
    try:
        claims = st.user.to_dict()
    except Exception:  # no sign-in machinery in this run (e.g. a headless test)
        return None
    return claims if claims.get("is_logged_in") else None
