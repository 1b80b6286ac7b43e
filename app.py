"""Marketing Suite: entry point. Page config, workspace and database in the sidebar, navigation."""

from __future__ import annotations

import streamlit as st

from core.store.db import DEFAULT_WORKSPACE, check_workspace_id, list_workspaces, redact_url
from ui.context import database_url, engine, first_start_progress
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

    def _create_workspace() -> None:
        """Switch to a new workspace (a callback: it runs before the widgets, so it may set the picker)."""
        try:
            new_id = check_workspace_id(st.session_state.get("app.new_workspace", "").strip())
        except ValueError as exc:
            st.session_state["app.workspace_error"] = str(exc)
            return
        st.session_state["workspace"] = new_id
        st.session_state["app.workspace_select"] = new_id

    if st.session_state.get("app.workspace_select") not in known:
        st.session_state["app.workspace_select"] = current
    st.selectbox("Workspace", known, key="app.workspace_select", on_change=_pick_workspace)
    with st.expander("New workspace"):
        st.text_input("Workspace id", key="app.new_workspace", help="letters, digits, '.', '_' or '-'")
        st.button("Create", key="app.create_workspace", on_click=_create_workspace)
        if "app.workspace_error" in st.session_state:
            st.error(st.session_state.pop("app.workspace_error"))
    st.caption(f"Database: `{redact_url(database_url())}`")

first_start_progress()
st.navigation(pages).run()
