"""History: every change plan with status, who, when and totals; its changes and platform responses.

Thin: reads `core.changes.plans_frame` / `changes_frame` / `load_plan`; the rollback button calls
`core.execute.rollback`, which builds the inverse plan as a draft, and sends the user to Review.
"""

from __future__ import annotations

import streamlit as st

import altair as alt
import pandas as pd

from core import execute as ex
from core.autopilot.outcomes import evaluate_outcomes, outcome_chart_frame, outcomes_frame, plan_outcomes
from core.changes import (PLAN_STATUSES, WRITTEN_STATUSES, ChangePlanError, changes_frame, display_values, load_plan,
                          plans_frame, rollback_state)
from core.funding import shortfall_note
from core.money import format_money, money_table
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

#: Money columns of the plans and outcomes tables, each shown in its row's currency.
PLAN_MONEY = ["budget_delta", "applied_budget_delta"]
OUTCOME_MONEY = ["predicted_value", "value_lo", "value_hi", "actual_value", "predicted_spend", "actual_spend"]



st.title("🕘 History")
eng, ws = engine(), workspace()

plans = plans_frame(eng, ws)
if plans.empty:
    st.info("No change plans yet. Plans appear here once the Optimizer creates one.")
    st.stop()

# ------------------------------------------------------------------------------ filters
f1, f2, f3 = st.columns([2, 1, 1])
statuses = f1.multiselect("Status", list(PLAN_STATUSES), key="history.status",
                          format_func=lambda s: s.replace("_", " "))
origins = f2.multiselect("Origin", sorted(plans["origin"].unique()), key="history.origin")
who = f3.text_input("Who (contains)", key="history.who")
shown = plans
if statuses:
    shown = shown[shown["status"].isin(statuses)]
if origins:
    shown = shown[shown["origin"].isin(origins)]
if who.strip():
    needle = who.strip().lower()
    people = shown[["created_by", "approved_by", "executed_by"]].fillna("").astype(str)
    shown = shown[people.apply(lambda c: c.str.lower().str.contains(needle, regex=False)).any(axis=1)]

cols = ["id", "name", "status", "origin", "rollback_of_id", "created_by", "created_at", "approved_by", "executed_by",
        "executed_at", "n_changes", "n_applied", "n_unchanged", "n_failed", "n_stale", "n_blocked", "n_reduced", "n_held", "budget_delta",
        "applied_budget_delta", "budget_currency"]
st.caption(f"{len(shown)} of {len(plans)} plans")
# each plan's budget change at its own currency's precision (KWD: fils, JPY: whole yen); the download stays exact
st.dataframe(money_table(shown[cols], PLAN_MONEY, shown["budget_currency"], signed=PLAN_MONEY), key="history.plans",
             hide_index=True, width="stretch",
             column_config={"budget_delta": st.column_config.NumberColumn("planned Δ budget/day"),
                            "applied_budget_delta": st.column_config.NumberColumn("applied Δ budget/day"),
                            "budget_currency": st.column_config.TextColumn("currency"),
                            "rollback_of_id": st.column_config.NumberColumn("rollback of", format="%d")})
all_changes = changes_frame(eng, ws, [int(i) for i in shown["id"]])
d1, d2 = st.columns(2)
download_csv(shown[cols], "Download plans (CSV)", "plans.csv", key="history.download_plans", container=d1)
download_csv(all_changes, "Download their changes (CSV)", "changes.csv", key="history.download_changes", container=d2)

if shown.empty:
    st.stop()

# ------------------------------------------------------------------------------ one plan
st.divider()
ids = [int(i) for i in shown["id"]]
labels = {int(r.id): f"#{r.id} · {r.name} · {r.status}" for r in shown.itertuples()}
if st.session_state.get("history.plan") not in ids:
    st.session_state["history.plan"] = ids[0]
pid = st.selectbox("Plan", ids, format_func=labels.get, key="history.plan")
view = load_plan(eng, ws, pid)
changes = all_changes[all_changes["plan_id"] == pid]
st.subheader(f"Plan #{pid}: {view.status.replace('_', ' ')}")
st.dataframe(display_values(changes.drop(columns=["plan_id"]), ["old_value", "new_value", "funded_value"]),
             key="history.changes", hide_index=True, width="stretch",
             column_config={"response": st.column_config.TextColumn("platform response", width="large")})

applied = int(changes["status"].isin(WRITTEN_STATUSES).sum())
shortfall = shortfall_note(view.changes)
if shortfall:
    st.warning(plain(shortfall), icon="⚖️")
if view.status in ("completed", "partially_failed", "failed"):
    rolled = rollback_state(eng, ws, pid)  # a rolled-back plan says so and offers no second rollback
    if rolled.rollbacks:
        st.info(plain(rolled.describe()), icon="↩️")
    if applied == 0:
        st.caption("Nothing was applied: there is nothing to roll back.")
    elif rolled.can_roll_back and st.button(
            f"Roll back the {rolled.remaining} applied changes…" if rolled.remaining == applied else
            f"Roll back the {rolled.remaining} changes not restored yet…", key=f"history.{pid}.rollback",
            help="Builds the inverse plan (exact previous values) as a draft for review and confirmation; its dry "
                 "run reads the live values and leaves alone what someone else changed since."):
        try:
            new_id = ex.rollback(eng, ws, pid, actor=actor())
        except ChangePlanError as exc:
            st.error(plain(exc))
        else:
            st.session_state["review.plan_id"] = new_id
            st.switch_page("pages/review.py")

# ------------------------------------------------------------------------------ measured outcomes
st.subheader("Measured outcomes")
outcomes = outcomes_frame(eng, ws, [pid])
if outcomes.empty:
    st.caption("No prediction is recorded for this plan: each change stores one when it is executed.")
else:
    if st.button("Measure again from the synced performance", key=f"history.{pid}.measure",
                 help="Compares each prediction with the daily performance synced since the change."):
        evaluate_outcomes(eng, ws, view.platform, view.account_id, actor=actor())
        st.rerun()
    summary = plan_outcomes(outcomes).iloc[0]
    m1, m2, m3 = st.columns(3)
    m1.metric("Plan verdict", str(summary["verdict"]))
    m2.metric("Measured changes", f"{int(summary['measured'])} of {int(summary['changes'])}")
    if summary["predicted_value"] is not None and pd.notna(summary["predicted_value"]):
        plan_currency = "/".join(sorted(set(outcomes["currency"].dropna().astype(str))))
        m3.metric(f"Value a day: actual vs predicted ({plan_currency})", format_money(summary["actual_value"], plan_currency),
                  format_money(summary["actual_value"] - summary["predicted_value"], plan_currency, signed=True))
    st.caption(plain(summary["reason"]))
    flagged = outcomes[outcomes["flagged"]]
    if len(flagged):
        st.warning(f"{len(flagged)} change(s) fell outside their predicted band; the next scheduled run's refit weights "
                   "recent days more.", icon="🚩")
    shown_cols = ["seq", "entity", "field", "old", "new", "first_day", "predicted_value", "value_lo", "value_hi",
                  "actual_value", "predicted_spend", "actual_spend", "days_observed", "verdict", "reason"]
    shown_cols.insert(shown_cols.index("predicted_value"), "currency")
    st.dataframe(money_table(display_values(outcomes[shown_cols], ["old", "new"]), OUTCOME_MONEY, outcomes["currency"]),
                 key="history.outcomes",
                 hide_index=True, width="stretch", column_config={"reason": st.column_config.TextColumn(width="large")})
    download_csv(outcomes, "Download outcomes (CSV)", f"outcomes-{pid}.csv", key="history.download_outcomes")
    measurable = outcomes[outcomes["predicted_value"].notna()]
    if len(measurable):
        cid = st.selectbox("Change", measurable["change_id"].tolist(), key=f"history.{pid}.outcome",
                           format_func=lambda c: " ".join(str(v) for v in measurable.set_index("change_id").loc[
                               c, ["entity", "field", "old", "new", "verdict"]]))
        chart = outcome_chart_frame(eng, ws, int(cid), view.platform, view.account_id)
        base = alt.Chart(chart).encode(alt.X("date:T", title="Day"))
        band = base.transform_filter("datum.lo != null").mark_area(opacity=0.25).encode(
            alt.Y("lo:Q", title="Value a day"), alt.Y2("hi:Q"), tooltip=["date:T", "lo:Q", "hi:Q"])
        pred = base.transform_filter("datum.predicted != null").mark_line(strokeDash=[5, 3]).encode(alt.Y("predicted:Q"))
        actual = base.transform_filter("datum.value != null").mark_line(point=True).encode(
            alt.Y("value:Q"), alt.Color("phase:N", title="", scale=alt.Scale(domain=["before", "after"])),
            tooltip=["date:T", "phase:N", "value:Q", "spend:Q"])
        st.altair_chart(band + pred + actual, width="stretch", key="history.outcome_chart")
        st.caption("Band: the predicted value a day (90 %) over the observation window; dashed: the prediction; "
                   "line: the synced daily value before and after the change.")

with st.expander("Audit log", expanded=False):
    st.dataframe([{"at": e["at"], "from": e["from"] or "", "to": e["to"], "who": e["actor"], "note": e["note"]}
                  for e in view.events], hide_index=True, width="stretch", key="history.events")
