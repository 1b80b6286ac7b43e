"""Marketing Suite: entry point. Page config, workspace and database in the sidebar, navigation."""

from __future__ import annotations

import streamlit as st

from core.store.db import DEFAULT_WORKSPACE, check_workspace_id, list_workspaces, redact_url
from ui.context import actor, database_url, engine, first_start_progress, sign_in_configured, sign_in_provider, signed_in_claims
from ui.errors import error_boundary
from ui.navigation import PAGES
from ui.text import plain

def _pick_workspace() -> None:
    st.session_state["workspace"] = st.session_state["app.workspace_select"]


def _create_workspace() -> None:
    """Switch to a new workspace (a callback: it runs before the widgets, so it may set the picker). With
    sign-in, the workspace is made at once and its creator becomes its admin (`core.access.create_workspace`)."""
    from core.access import AccessDenied, create_workspace, workspace_exists

    try:
        new_id = check_workspace_id(st.session_state.get("app.new_workspace", "").strip())
        if sign_in_configured() and not workspace_exists(engine(), new_id):
            create_workspace(engine(), new_id, actor=actor())
    except (ValueError, AccessDenied) as exc:
        st.session_state["app.workspace_error"] = str(exc)
        return
    st.session_state["workspace"] = new_id
    st.session_state["app.workspace_select"] = new_id


def main() -> None:
    """The app's frame around the page the user picked; every page runs inside the error boundary."""
    st.set_page_config(page_title="Marketing Suite", page_icon="📈", layout="wide")
    if not _signed_in_or_local():
        return
    nav = st.navigation([st.Page(path, title=title, icon=icon) for path, title, icon in PAGES])
    ready = False
    with error_boundary("opening the database"):  # e.g. an unreachable server: one message, no secret, no traceback
        eng = engine()
        with st.sidebar:
            st.markdown("### Marketing Suite")
            if sign_in_configured():
                from core.access import bind_subject, workspaces_for

                who = actor()
                bind_subject(eng, who)
                known = workspaces_for(eng, who)  # only the signed-in person's workspaces
                st.caption(f"Signed in as **{plain(who)}**")
                st.button("Sign out", key="app.logout", on_click=st.logout)
                if not known:
                    st.warning("You are not a member of any workspace yet: ask an admin to add you "
                               "(`python -m core members add`).")
                    return
                current = st.session_state.get("workspace")
                if current not in known:
                    current = st.session_state["workspace"] = known[0]
            else:
                st.caption("Local single-user mode: no sign-in, you are admin of every workspace, and the app serves "
                           "only this machine.")
                known = list_workspaces(eng) or [DEFAULT_WORKSPACE]
                current = st.session_state.setdefault("workspace", DEFAULT_WORKSPACE)
                if current not in known:
                    known.append(current)
            if st.session_state.get("app.workspace_select") not in known:
                st.session_state["app.workspace_select"] = current
            st.selectbox("Workspace", known, key="app.workspace_select", on_change=_pick_workspace)
            with st.expander("New workspace"):
                st.text_input("Workspace id", key="app.new_workspace", help="letters, digits, '.', '_' or '-'")
                st.button("Create", key="app.create_workspace", on_click=_create_workspace)
                if "app.workspace_error" in st.session_state:
                    st.error(st.session_state.pop("app.workspace_error"))
            st.caption(f"Database: {plain(redact_url(database_url()))}")
        first_start_progress()  # a fresh database: the sample is prepared in the background, shown as progress
        ready = True

    if ready:  # every page runs inside the boundary
        with error_boundary(f"showing the {getattr(nav, 'title', '') or 'current'} page"):
            nav.run()


def _signed_in_or_local() -> bool:
    """Sign-in when an identity provider is configured (everyone acts as themselves, local mode off);
    else single-user local mode, which refuses to serve beyond this machine. False: stop here."""
    from core.access import set_local_mode
    from core.access.signin import client_refusal, serving_refusal

    if sign_in_configured():
        set_local_mode(False, entry="page")
        if signed_in_claims() is None:
            _only_this_screen(_sign_in_screen)
            return False
        return True
    set_local_mode(True, entry="page")
    refusal = serving_refusal(st.get_option("server.address"), sign_in=False) or client_refusal(
        st.context.ip_address, sign_in=False)
    if refusal:
        _only_this_screen(lambda: st.error(refusal, icon="🔒"))
        return False
    return True


def _sign_in_screen() -> None:
    st.title("Marketing Suite")
    st.write("Sign in to see your workspaces.")
    provider = sign_in_provider()
    st.button("Sign in", type="primary", key="app.login", on_click=st.login, args=(provider,) if provider else ())


def _only_this_screen(screen) -> None:
    """Show one screen as the app's only page: without a `st.navigation` call in a run, Streamlit would list
    (and serve) the scripts under pages/ by itself."""
    st.navigation([st.Page(screen, title="Marketing Suite", url_path="signin", default=True)], position="hidden").run()


def _refuse_to_start_unsafe() -> None:
    """At server start, before anything is served: without sign-in (single-user local mode, whoever reaches
    the app is admin of every workspace) the server refuses any address but loopback, with the reason."""
    import sys

    from core.access.signin import serving_refusal

    refusal = serving_refusal(st.get_option("server.address"), sign_in=sign_in_configured())
    if refusal:
        print(f"Marketing Suite refuses to start: {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(2)


# `streamlit run app.py` finds the `app` below (an ASGI `st.App` serving this same file) and imports this module
# once at server start, under its own name: the address check runs then, and a refused server never serves a page.
# Not when Streamlit runs the file for a session ("__main__"), nor in a process that multiprocessing spawns from
# the app (Dask workers re-run the main script as "__mp_main__").
if __name__ not in ("__main__", "__mp_main__"):
    _refuse_to_start_unsafe()
    # Every run goes through this file's st.navigation, from the server's first request on. Streamlit ignores the
    # pages/ folder only once some run has called st.navigation (a process-wide flag); before that, a first visitor
    # opening /data on a fresh server ran pages/data.py alone, without the sign-in and address checks above.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    app = st.App(__file__)

# Only when Streamlit runs this file for a session: the page.
if __name__ == "__main__":
    main()
