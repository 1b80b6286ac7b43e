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
        from core.sample import load_sample_if_empty

        load_sample_if_empty(engine, DEFAULT_WORKSPACE)
    return engine


def engine():
    """The process-wide engine (schema upgraded, sample data loaded into a fresh database)."""
    return _engine_for(database_url())


def workspace() -> str:
    """The workspace chosen in the sidebar."""
    return st.session_state.get("workspace", DEFAULT_WORKSPACE)


def actor() -> str:
    """Who is acting, for the audit log: the logged-in user when there is one, else the OS user."""
    try:
        if st.user.is_logged_in:  # type: ignore[attr-defined]
            return str(st.user.email or st.user.name)
    except Exception:
        pass
    return os.environ.get("USER") or "local user"
