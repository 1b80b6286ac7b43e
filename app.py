"""Marketing Suite: entry point. Page config, workspace and database in the sidebar, navigation."""

from __future__ import annotations

import streamlit as st

from core.store.db import DEFAULT_WORKSPACE, check_workspace_id, list_workspaces, redact_url
from ui.context import database_url, engine
from ui.navigation import PAGES

st.set_page_config(page_title="Marketing Suite", page_icon="📈", layout="wide")

pages = [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES]

eng = engine()
with st.sidebar:
    st.markdown("### Marketing Suite")
    known = list_workspaces(eng) or [DEFAULT_WORKSPACE]
    current = st.session_state.setdefault("workspace", DEFAULT_WORKSPACE)
    if current not in known:
        known.append(current)

    def _pick_workspace() -> None:
        st.session_state["workspace"] = st.session_state["app.workspace_select"]

    st.selectbox("Workspace", known, index=known.index(current), key="app.workspace_select", on_change=_pick_workspace)
    with st.expander("New workspace"):
        new_ws = st.text_input("Workspace id", key="app.new_workspace", help="letters, digits, '.', '_' or '-'")
        if st.button("Create", key="app.create_workspace") and new_ws:
            try:
                st.session_state["workspace"] = check_workspace_id(new_ws.strip())
                st.session_state.pop("app.workspace_select", None)
                st.rerun()
            except ValueError as exc:
                st.error(str(exc))
    st.caption(f"Database: `{redact_url(database_url())}`")

st.navigation(pages).run()
