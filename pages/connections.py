"""Connections page: which ad platforms are configured, a connection test on request, secrets masked.

Thin: discovery, masking and the test live in `core.platforms.credentials`; the adapters come from
`core.platforms.registry`. Nothing here ever displays, logs or stores a secret in full.
"""

from __future__ import annotations

import streamlit as st

from core.platforms.credentials import describe, discover, test_connection
from core.platforms.registry import get_platform
from ui.context import engine, workspace
from ui.text import plain

LABELS = {"meta": "Meta (Facebook / Instagram) Ads", "google": "Google Ads"}

st.title("🔌 Connections")
st.caption(
    "Credentials come from `.streamlit/secrets.toml` or the environment (see `.streamlit/secrets.toml.example`). "
    "They are never shown in full, never logged and never stored in the database. "
    "The sandbox account needs no credentials and is always available."
)
eng, ws = engine(), workspace()
found = discover(st.secrets)

for name in ("meta", "google"):
    creds = getattr(found, name)
    with st.container(border=True):
        st.subheader(LABELS[name])
        if creds is None and name not in found.problems:
            st.info(f"Not configured. Add the `{name}_…` keys to secrets.toml or the environment to connect.")
            continue
        if creds is None:
            st.error("Incomplete configuration: " + plain("; ".join(found.problems[name])))
            continue
        rows = [{"setting": key, "value": value, "from": found.sources.get(key, "default")}
                for key, value in describe(creds).items()]
        st.dataframe(rows, hide_index=True, width="stretch", key=f"conn.{name}.settings")
        if st.button("Test connection", key=f"conn.{name}.test"):
            with st.spinner(f"Asking {LABELS[name]}…"):
                try:
                    status = test_connection(get_platform(name, eng, ws, credentials=creds))
                except Exception as exc:  # a configuration the SDK refuses before any request
                    status = None
                    st.error(f"Could not build the {name} client: {type(exc).__name__}")
            if status is not None:
                st.session_state[f"conn.{name}.result"] = {
                    "ok": status.ok, "message": status.message, "account": status.account_name,
                    "currency": status.currency, "reconnect": status.reconnect}
        result = st.session_state.get(f"conn.{name}.result")
        if result:
            if result["ok"]:
                st.success(f"Connected to {plain(result['account'] or 'the account')} ({plain(result['currency'])}).")
            elif result["reconnect"]:
                st.warning(f"Reconnect needed: {plain(result['message'])}. Put a new token in secrets.toml and reload.")
            else:
                st.error(f"Connection failed: {plain(result['message'])}")
