"""Access & audit: the workspace's members and roles, the four-eyes rule, and the audit log (who did what,
when, from which entry point) with filters and a download.

Thin: reads and writes through `core.access`, which checks the acting identity itself (admin for members
and the four-eyes rule; anyone who can see the workspace reads its log).
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from core.access import (
    ENTRY_POINTS,
    ROLES,
    AccessDenied,
    AccessError,
    FourEyes,
    Role,
    add_member,
    audit_actions,
    audit_export,
    audit_frame,
    list_members,
    load_four_eyes,
    may,
    remove_member,
    set_four_eyes,
)
from core.access.four_eyes import applies_to as four_eyes_applies_to
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

st.title("🔐 Access & audit")
eng, ws, who = engine(), workspace(), actor()
is_admin = may(eng, ws, who, Role.ADMIN)

# ------------------------------------------------------------------------------ members
st.subheader("Members")
members = list_members(eng, ws)
if members.empty:
    st.caption("No members yet. In local single-user mode you act as admin of every workspace; with sign-in, only "
               "members see this workspace.")
else:
    st.dataframe(members, key="access.members", hide_index=True, width="stretch")
    download_csv(members, "Download members (CSV)", f"members-{ws}.csv", key="access.members.download")
if is_admin:
    with st.form("access.add", clear_on_submit=True):
        c1, c2 = st.columns([3, 1])
        email = c1.text_input("E-mail", key="access.add.email")
        role = c2.selectbox("Role", ROLES, index=1, key="access.add.role")
        if st.form_submit_button("Add or change role"):
            try:
                st.success(plain(add_member(eng, ws, email, role, actor=who)))
                st.rerun()
            except (AccessError, AccessDenied) as exc:
                st.error(plain(exc))
    if not members.empty:
        c1, c2 = st.columns([3, 1])
        gone = c1.selectbox("Remove a member", list(members["email"]), key="access.remove.email")
        if c2.button("Remove", key="access.remove"):
            try:
                remove_member(eng, ws, gone, actor=who)
                st.rerun()
            except (AccessError, AccessDenied) as exc:
                st.error(plain(exc))

# ------------------------------------------------------------------------------ four-eyes
st.subheader("Four-eyes approval")
policy = load_four_eyes(eng, ws)
st.caption(plain(policy.describe()) + ("" if policy.off or four_eyes_applies_to(who) else
                                      " — with sign-in only: in local single-user mode there is no second person, so "
                                      "you approve your own plans"))
if is_admin:
    with st.form("access.four_eyes"):
        c1, c2 = st.columns(2)
        total = c1.number_input("Total daily budget change above (0 = any; empty = off)", min_value=0.0, step=10.0,
                                value=None if policy.total is None else float(policy.total), key="access.fe.total")
        single = c2.number_input("Single budget or bid change above (0 = any; empty = off)", min_value=0.0, step=10.0,
                                 value=None if policy.single is None else float(policy.single), key="access.fe.single")
        if st.form_submit_button("Save the four-eyes rule"):
            try:
                set_four_eyes(eng, ws, FourEyes(None if total is None else str(total),
                                                 None if single is None else str(single)), actor=who)
                st.rerun()
            except (AccessError, AccessDenied) as exc:
                st.error(plain(exc))

# ------------------------------------------------------------------------------ audit log
st.subheader("Audit log")
f1, f2, f3, f4, f5 = st.columns([2, 2, 2, 1, 1])
today = dt.datetime.now(dt.timezone.utc).date()
period = f1.date_input("Dates (UTC)", (today - dt.timedelta(days=30), today), key="access.audit.dates")
actions = f2.multiselect("Actions", audit_actions(eng, ws), key="access.audit.actions")
person = f3.text_input("Who (contains)", key="access.audit.who")
entries = f4.multiselect("Entry point", list(ENTRY_POINTS), key="access.audit.entry")
outcome = f5.selectbox("Outcome", ["all", "ok", "refused"], key="access.audit.outcome")
since = until = None
if isinstance(period, (tuple, list)) and len(period) == 2:
    since = dt.datetime.combine(period[0], dt.time(), dt.timezone.utc)
    until = dt.datetime.combine(period[1] + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
log = audit_frame(eng, ws, since=since, until=until, actor=person or None, actions=actions or None,
                  entry_points=entries or None, outcome=None if outcome == "all" else outcome)
st.caption(f"{len(log):,} entries, newest first")
table = audit_export(log)
st.dataframe(table, key="access.audit.table", hide_index=True, width="stretch")
download_csv(table, "Download the audit log (CSV)", f"audit-{ws}.csv", key="access.audit.download")
