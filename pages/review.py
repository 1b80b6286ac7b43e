"""Review & execute: dry run, the frozen plan as a diff, confirmation, execution progress and results.

Thin: the plan, its safety checks, validation, approval and execution all live in `core.changes` /
`core.execute`. The confirmation dialog is driven by a stored flag holding the plan id + the frozen
content hash (never by a button callback), and confirming executes exactly that stored plan.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import streamlit as st

from core import execute as ex
from core.changes import FINAL_STATUSES, ChangePlanError, SafetySettings, load_plan, plans_frame
from core.platforms.base import PlatformError
from core.autopilot.glide import paths_frame
from core.autopilot.outcomes import record_predictions
from core.funding import shortfall_note
from core.guardrails import load_guardrails
from core.money import format_money, money_places
from core.optimize.session import SANDBOX_ACCOUNT, sandbox_accounts
from core.platforms.registry import get_platform
from core.store.db import DatabaseBusy
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

PENDING = "review.pending"  # {"plan_id", "hash", "resume"}: the dialog to show
RESULT = "review.result"  # the last execution's outcome, shown after the dialog closes

st.title("✅ Review & execute")
eng, ws = engine(), workspace()


def platform_for(name: str, account_id: str):
    """The platform a plan targets; credentials (for real accounts) come from secrets / environment."""
    if name == "sandbox":
        return get_platform("sandbox", eng, ws, account_id=account_id)
    from ui.context import platform_credentials

    creds = getattr(platform_credentials(), name, None)  # secrets.toml, environment, then the encrypted store
    if creds is None:
        raise ChangePlanError(f"{name} is not connected: add its credentials on the Connections page")
    return get_platform(name, eng, ws, credentials=creds)


# ------------------------------------------------------------------------------ sidebar: sandbox clock
with st.sidebar:
    with st.expander("Sandbox ad account", expanded=False):
        st.caption("Simulate the next days of the sandbox account, so applied changes show up in its performance.")
        sandbox_ids = sandbox_accounts(eng, ws)["account_id"].tolist() or [SANDBOX_ACCOUNT]
        sandbox_id = st.selectbox("Account", sandbox_ids, key="review.sandbox_account") if len(sandbox_ids) > 1 \
            else sandbox_ids[0]
        days = st.number_input("Days to simulate", 1, 90, 7, key="review.sandbox_days")
        if st.button("Advance the sandbox", key="review.sandbox_advance"):
            from core.platforms.sync import sync_platform

            with st.spinner("Simulating and syncing…"):
                sb = get_platform("sandbox", eng, ws, account_id=sandbox_id)
                first, last = sb.advance_days(int(days))
                rep = sync_platform(eng, ws, sb, actor=actor())
            st.success(f"Simulated {first} to {last}; synced {rep.rows_new} new rows.")

# ------------------------------------------------------------------------------ choose a plan
plans = plans_frame(eng, ws)
if plans.empty:
    st.info("No change plans yet. Create one on the Optimizer page (recommendations -> draft plan).")
    st.stop()

ids = [int(i) for i in plans["id"]]
labels = {int(r.id): f"#{r.id} · {r.name} · {r.status}" for r in plans.itertuples()}
# The labels carry each plan's status; the browser keeps a selectbox's shown text while its key and value stay
# the same, so the key follows the labels (a dry run or an execution then shows the new status at once).
SELECT = "review.select." + hashlib.sha256("\n".join(labels.values()).encode()).hexdigest()[:10]
wanted = st.session_state.get("review.plan_id")
if wanted in ids and st.session_state.get("review.shown") != wanted:
    st.session_state[SELECT] = wanted  # a plan sent here from the Optimizer or History page
elif st.session_state.get(SELECT) not in ids:
    open_ = plans[~plans["status"].isin(list(FINAL_STATUSES))]
    st.session_state[SELECT] = wanted if wanted in ids else int(open_["id"].iloc[0]) if len(open_) else ids[0]
pid = st.selectbox("Change plan", ids, format_func=labels.get, key=SELECT)
st.session_state["review.plan_id"] = st.session_state["review.shown"] = pid
view = load_plan(eng, ws, pid)
if load_guardrails(eng, ws).kill_switch:
    st.error("The workspace's kill switch is on: nothing is executed (release it on the Schedules page).", icon="🛑")

c = st.columns(3)
c[0].metric("Status", view.status.replace("_", " "))
c[1].metric("Changes", len(view.changes))
row = plans.set_index("id").loc[pid]
c[2].metric("Daily budget change", format_money(row["budget_delta"], row["budget_currency"], signed=True, code=True))
# target and author as text: an account id is too long for a metric tile and was cut off
people = " · ".join(f"{what} by **{plain(row[col])}**" for what, col in
                   (("drafted", "created_by"), ("approved", "approved_by"), ("executed", "executed_by"))
                   if str(row.get(col) or "").strip() and str(row.get(col)) != "nan")
st.caption(f"Target **{plain(view.platform)} / {plain(view.account_id)}** · {people}")
if view.origin == "rollback":
    st.caption(f"Rollback of plan #{view.rollback_of_id}: restores the exact values it replaced.")
if view.content_hash:
    st.caption(f"Frozen plan hash `{view.content_hash[:16]}…` — confirming executes exactly this plan.")

# ------------------------------------------------------------------------------ dry run
if view.status in ("draft", "previewed"):
    with st.expander("Safety limits and dry run", expanded=view.status == "draft"):
        s = view.settings
        a, b, c2, d = st.columns(4)
        max_pct = a.number_input("Max change per change (%)", 1.0, 1000.0, float(s.max_change_pct or 1000.0), 5.0,
                                 key=f"review.{pid}.max_pct")
        # amounts typed at the plan's currency's precision (a KWD limit keeps its fils; JPY has none)
        money_format = f"%.{money_places(row['budget_currency'] or [ch.currency for ch in view.changes])}f"
        min_budget = b.number_input("Min daily budget", 0.0, None, float(s.min_budget), 1.0, key=f"review.{pid}.min_budget",
                                    format=money_format)
        max_budget = c2.number_input("Max daily budget (0 = none)", 0.0, None, float(s.max_budget or 0), 10.0,
                                     key=f"review.{pid}.max_budget", format=money_format)
        cap = d.number_input("Cap on total daily increase (0 = none)", 0.0, None, float(s.max_total_increase or 0), 10.0,
                             key=f"review.{pid}.cap", format=money_format)
        n_status = sum(1 for ch in view.changes if ch.field == "status")
        allow_status = st.checkbox("Allow pausing / activating", s.allow_status_changes, key=f"review.{pid}.status",
                                   help="Off by default: a plan may not pause or activate campaigns / ad sets unless "
                                        "you allow it here.")
        if n_status and not allow_status:
            st.warning(f"This plan pauses or activates {n_status} entit{'y' if n_status == 1 else 'ies'}. The default "
                       "safety settings block status changes: tick **Allow pausing / activating** and run the dry run "
                       "again to let them through.", icon="⏸️")
        auto = st.toggle("Auto-approve when every change is above my confidence threshold", False, key="review.auto_approve",
                         help="Off by default. When on, a plan whose changes are all marked auto-approve is approved "
                              "without a click; the audit log records that auto-approval did it.")
        if st.button("Run the dry run (safety checks + platform validation)", type="primary", key=f"review.{pid}.preview"):
            try:
                settings = SafetySettings(max_change_pct=None if max_pct >= 1000 else max_pct,
                                          min_budget=Decimal(str(min_budget)),
                                          max_budget=Decimal(str(max_budget)) if max_budget > 0 else None,
                                          max_total_increase=Decimal(str(cap)) if cap > 0 else None,
                                          allow_status_changes=allow_status)
                with st.spinner("Checking the plan and asking the platform to validate it…"):
                    ex.preview(eng, ws, pid, platform_for(view.platform, view.account_id), actor=actor(),
                                    settings=settings, auto_approve=auto)
                st.session_state[RESULT] = None
                st.rerun()
            except (ChangePlanError, ex.PlanStateError, PlatformError, ValueError) as exc:
                st.error(f"Dry run failed: {plain(exc)}")

# ------------------------------------------------------------------------------ the frozen plan
diff = view.diff()
n_ok = int(((diff["safety"] == "ok") & (diff["validation"] == "ok")).sum()) if view.preview else 0
if view.preview:
    st.subheader("The plan as previewed")
    st.caption(f"{n_ok} of {len(diff)} changes pass the safety checks and the platform's validation; "
               "the others will not be applied.")
    blocked_status = diff[diff["safety"].str.contains("status changes are not allowed", regex=False, na=False)]
    if len(blocked_status) and view.status == "previewed":
        st.warning(f"{len(blocked_status)} status change(s) (pause / activate) are **blocked** because the safety "
                   "settings do not allow status changes. To apply them, open *Safety limits and dry run*, tick "
                   "**Allow pausing / activating** and run the dry run again.", icon="⏸️")
    other = diff[(diff["safety"] != "ok") & ~diff.index.isin(blocked_status.index)]
    if len(other) and view.status == "previewed":
        st.info(f"{len(other)} other change(s) are blocked; the reason of each is in the *safety* or *validation* "
                "column. Loosen the limits in *Safety limits and dry run* and run the dry run again, or leave them out.")
else:
    st.subheader("Draft changes")
    st.caption("Run the dry run to check and freeze this plan before approving it.")
if view.preview.get("funding"):
    st.info(plain(view.preview["funding"]), icon="⚖️")
shortfall = shortfall_note(view.changes)
if shortfall:
    st.warning(plain(shortfall), icon="⚖️")
cols = ["seq", "entity", "field", "old", "new", "change_pct", "reason", "confidence", "safety", "warning", "validation",
        "status", "funded_value", "error_message", "request_id"]
st.dataframe(diff[[c_ for c_ in cols if c_ in diff.columns]], key="review.diff", hide_index=True, width="stretch",
             column_config={"change_pct": st.column_config.NumberColumn("change %", format="%+.1f"),
                            "confidence": st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.0f"),
                            "funded_value": st.column_config.TextColumn("sent (reduced)"),
                            "reason": st.column_config.TextColumn(width="large")})
download_csv(diff, "Download the plan (CSV)", f"plan-{pid}.csv", key="review.download")
if "warning" in diff.columns and diff["warning"].astype(bool).any():
    st.warning(f"{int(diff['warning'].astype(bool).sum())} change(s) carry a warning (see the *warning* column): a step "
               "above the step limit may reset the platform's learning phase.", icon="⚠️")
glide = paths_frame(eng, ws, [ch.id for ch in view.changes if ch.id] or [-1])
if not glide.empty:
    st.subheader("Staged changes: the whole path")
    st.caption("A change larger than the step limit goes in steps; the next step is proposed by a later run once the "
               "cooldown has passed and the measured outcome so far does not contradict the plan.")
    st.dataframe(glide[["entity", "field", "start", "steps", "target", "next_due", "status", "note"]], hide_index=True,
                 width="stretch", key="review.glide")

# ------------------------------------------------------------------------------ confirm -> execute
actions = st.columns(3)
if view.status == "previewed" and n_ok:
    if actions[0].button("Approve & execute…", type="primary", key=f"review.{pid}.approve"):
        st.session_state[PENDING] = {"plan_id": pid, "hash": view.content_hash, "resume": False}
elif view.status == "approved":
    if actions[0].button("Execute…", type="primary", key=f"review.{pid}.execute"):
        st.session_state[PENDING] = {"plan_id": pid, "hash": view.content_hash, "resume": False}
elif view.status == "executing":
    pending_n = sum(1 for ch in view.changes if ch.status == "pending")
    in_flight = sum(1 for ch in view.changes if ch.status == "applying")
    beat = ex.executor_heartbeat(eng, ws, pid)
    from core.store.models import utcnow

    silent = None if beat is None else (utcnow() - beat).total_seconds()
    lease = ex.LEASE.total_seconds()
    flight = (f" {in_flight} change(s) were being sent when it stopped: resuming reads their live value first and "
              "never sends one twice." if in_flight else "")
    if silent is not None and silent < lease:
        st.info(f"This plan is being executed (its executor was alive {silent:.0f} s ago): {pending_n} changes "
                f"still pending.{flight} If that execution was interrupted, it can be resumed once it has been "
                f"silent for {lease:.0f} s (about {lease - silent:.0f} s from now); reload this page then.")
    else:
        st.warning(f"This plan's execution was interrupted: {pending_n} changes still pending.{flight} "
                   "Resuming applies only what is left.")
        if actions[0].button("Resume execution…", key=f"review.{pid}.resume"):
            st.session_state[PENDING] = {"plan_id": pid, "hash": view.content_hash, "resume": True}
if view.status in ("draft", "previewed", "approved") and actions[1].button("Cancel this plan", key=f"review.{pid}.cancel"):
    ex.cancel(eng, ws, pid, actor=actor())
    st.rerun()


@st.dialog("Confirm execution")
def confirm(pending: dict) -> None:
    """Approve (when needed) and execute the stored plan id + hash; shows progress per change."""
    p = load_plan(eng, ws, pending["plan_id"])
    d = p.diff()
    ok = d[(d["safety"] == "ok") & (d["validation"] == "ok")] if p.preview else d
    st.markdown(f"Execute plan **#{p.id} {plain(p.name)}** on **{plain(p.platform)} / {plain(p.account_id)}**: "
                f"**{len(ok)}** changes (hash `{pending['hash'][:12]}`).")
    st.dataframe(ok[["entity", "field", "old", "new"]], hide_index=True, key="review.confirm_table")
    if p.preview.get("funding"):
        st.caption(plain(p.preview["funding"]))
    go, stop = st.columns(2)
    if stop.button("Cancel", key="review.confirm_no"):
        del st.session_state[PENDING]
        st.rerun()
    if go.button("Confirm and execute", type="primary", key="review.confirm_yes"):
        bar = st.progress(0.0, text="Starting…")
        try:
            platform = platform_for(p.platform, p.account_id)
            if p.status == "previewed":
                ex.approve(eng, ws, p.id, pending["hash"], actor=actor())
            res = ex.execute(eng, ws, p.id, pending["hash"], platform, actor=actor(), resume=pending["resume"],
                             progress=lambda done, total, info: bar.progress(done / max(total, 1), text=plain(
                                 info.get("note") or f"{done}/{total}: {info['external_id']} {info['field']} -> {info['status']}")))
            st.session_state[RESULT] = {"plan_id": p.id, "status": res.status, "counts": res.counts,
                                        "note": res.interrupted or ""}
            try:  # what each applied change predicted, for its measured outcome on the History page
                record_predictions(eng, ws, p.id, platform, actor=actor())
            except (ValueError, ArithmeticError) as exc:
                st.session_state[RESULT]["note"] += f" (predictions not recorded: {exc})"
        except (ex.PlanStateError, ChangePlanError, PlatformError, DatabaseBusy, ValueError) as exc:
            st.session_state[RESULT] = {"plan_id": p.id, "status": "refused", "counts": {}, "note": str(exc)}
        del st.session_state[PENDING]
        st.rerun()


if st.session_state.get(PENDING, {}).get("plan_id") == pid:
    confirm(st.session_state[PENDING])

# ------------------------------------------------------------------------------ outcome + audit log
result = st.session_state.get(RESULT)
if result and result.get("plan_id") == pid:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result["counts"].items()))
    msg = f"Plan #{pid}: {result['status'].replace('_', ' ')}" + (f" ({counts})" if counts else "") + \
        (f" — {plain(result['note'])}" if result["note"] else "")
    {"completed": st.success, "partially_failed": st.warning}.get(result["status"], st.error)(msg)
if view.status in FINAL_STATUSES - {"cancelled"}:
    st.caption("See the History page for the platform responses and to roll this plan back.")

with st.expander("Audit log"):
    st.dataframe([{"at": e["at"], "from": e["from"] or "", "to": e["to"], "who": e["actor"], "note": e["note"]}
                  for e in view.events], hide_index=True, width="stretch", key="review.events")
