"""Schedules (autopilot): create, pause and inspect schedules and their runs; guardrails and the kill switch.

Thin: schedules, runs and summaries come from `core.autopilot`; the guardrails and kill switch from
`core.guardrails`. A run started here is the same run `python -m core autopilot run` does.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from core.autopilot import schedules as sch
from core.autopilot.glide import paths_frame
from core.autopilot.notify import notify_config
from core.autopilot import RunClaimed
from core.autopilot.runner import default_platform, run_schedule
from core.changes import display_values
from core.errors import user_message
from core.money import format_money, is_whole_units, money_places, money_step, to_decimal
from core.guardrails import GuardrailError, Guardrails, load_guardrails, save_guardrails, set_kill_switch
from core.optimize import session as S
from core.store.models import utcnow
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.sandbox import new_sandbox_fields, open_sandbox
from ui.text import plain

LAST = "schedules.last_result"  # the last run started on this page: {"schedule_id", "summary", "status"}

st.title("⏱️ Schedules (autopilot)")
eng, ws = engine(), workspace()


def _secrets():
    try:
        return st.secrets
    except Exception:
        return None


state = load_guardrails(eng, ws)

# ------------------------------------------------------------------------------ kill switch
with st.container(border=True):
    if state.kill_switch:
        st.error(f"**Kill switch is ON** — no schedule runs and no change is executed in workspace `{ws}`. "
                 f"Thrown by {state.updated_by} ({state.kill_note or 'no note'}).", icon="🛑")
        if st.button("Release the kill switch", key="schedules.kill_release"):
            set_kill_switch(eng, ws, False, actor=actor(), note="released on the Schedules page")
            st.rerun()
    else:
        k1, k2 = st.columns([3, 1], vertical_alignment="bottom")
        note = k1.text_input("Kill switch: stops every schedule and every execution in this workspace at once",
                             key="schedules.kill_note", placeholder="why (kept in the audit trail)")
        if k2.button("Stop everything", type="primary", key="schedules.kill_throw"):
            set_kill_switch(eng, ws, True, actor=actor(), note=note or "thrown on the Schedules page")
            st.rerun()

# ------------------------------------------------------------------------------ schedules
schedules = sch.list_schedules(eng, ws)
now = utcnow()
if schedules:
    table = pd.DataFrame([{"id": s.id, "name": s.name, "account": f"{s.platform}/{s.account_id}", "when": s.describe(),
                           "enabled": s.enabled, "auto_execute": s.auto_execute,
                           "threshold": s.settings.confidence_threshold,
                           "next run (UTC)": sch.next_slot(s, now) if s.enabled else None,
                           "notify": ", ".join(list(s.notify_emails) + (["webhook"] if s.notify_webhook else []))}
                          for s in schedules])
    st.subheader("Schedules")
    st.dataframe(table, hide_index=True, width="stretch", key="schedules.table")
    ids = [s.id for s in schedules]
    by_id = {s.id: s for s in schedules}
    if st.session_state.get("schedules.pick") not in ids:
        st.session_state["schedules.pick"] = ids[0]
    pick = st.selectbox("Schedule", ids, format_func=lambda i: f"#{i} {by_id[i].name}", key="schedules.pick")
    chosen = by_id[pick]
    a, b, c, d = st.columns(4)
    if a.button("Pause" if chosen.enabled else "Resume", key=f"schedules.{pick}.toggle"):
        sch.set_enabled(eng, ws, pick, not chosen.enabled)
        st.rerun()
    auto = b.toggle("Auto-execute", chosen.auto_execute, key=f"schedules.{pick}.auto",
                    help="Off by default. When on, the changes that pass every guardrail and reach the confidence "
                         "threshold are executed by the schedule; the rest wait for review.")
    if auto != chosen.auto_execute:
        sch.update_schedule(eng, ws, pick, auto_execute=auto, actor=actor())
        st.rerun()
    run_kind = None
    if c.button("Dry run now", key=f"schedules.{pick}.dry"):
        run_kind = "dry"
    if d.button("Run now", type="primary", key=f"schedules.{pick}.run", disabled=state.kill_switch):
        run_kind = "run"
    if run_kind:
        with st.status("Syncing, measuring, refitting and optimizing…", expanded=False) as status:
            try:
                res = run_schedule(eng, ws, pick, trigger="manual", actor=actor(), dry_run=run_kind == "dry",
                                   platform_factory=default_platform(eng, ws, _secrets()),
                                   notify=notify_config(_secrets(), os.environ))
                st.session_state[LAST] = {"schedule_id": pick, "summary": res.summary, "status": res.status}
                status.update(label=res.summary.get("headline", res.status), state="complete")
            except RunClaimed as exc:
                status.update(label=plain(exc), state="error")
            except Exception as exc:  # recorded on the run; shown here as text, redacted
                st.session_state[LAST] = {"schedule_id": pick, "summary": {"headline": f"{type(exc).__name__}: {user_message(exc)}"},
                                          "status": "failed"}
                status.update(label=plain(f"The run failed: {user_message(exc)}"), state="error")

    last = st.session_state.get(LAST)
    if last and last["schedule_id"] == pick:
        sm = last["summary"]
        {"completed": st.success, "dry run": st.info, "skipped": st.warning}.get(last["status"], st.error)(plain(sm.get("headline")))
        for title, key in (("Executed", "executed"), ("Waiting for review", "waiting"), ("Blocked", "blocked"),
                           ("Held", "held"), ("Outcomes outside their band", "flagged")):
            items = sm.get(key) or []
            if items:
                with st.expander(f"{title} ({len(items)})", expanded=key in ("blocked", "flagged")):
                    frame = pd.DataFrame(items)
                    if {"field", "currency", "old", "new"} <= set(frame.columns):  # amounts in their currency
                        frame = display_values(frame, ["old", "new"])
                    st.dataframe(frame, hide_index=True, width="stretch", key=f"schedules.last.{key}")
        if sm.get("plans"):
            st.caption("Plans written by this run: " + ", ".join(f"#{p}" for p in sm["plans"]) +
                       " (open them on the Review page).")

    st.subheader("Runs")
    runs = sch.runs_frame(eng, ws, pick)
    if runs.empty:
        st.caption(f"No run yet. Next: {sch.next_slot(chosen, now):%Y-%m-%d %H:%M} UTC ({chosen.describe()}).")
    else:
        shown = runs[["id", "due_at", "trigger", "status", "runner", "started_at", "finished_at", "plans", "headline", "error"]]
        st.dataframe(shown, hide_index=True, width="stretch", key="schedules.runs")
        download_csv(shown, "Download runs (CSV)", f"runs-{pick}.csv", key="schedules.runs_download")
        run_id = st.selectbox("Run", runs["id"].tolist(), key="schedules.run_pick",
                              format_func=lambda i: f"#{i} " + str(runs.set_index("id").at[i, "headline"])[:90])
        with st.expander("Run summary", expanded=False):
            st.json(runs.set_index("id").at[run_id, "summary"] or {}, expanded=False)
else:
    st.info("No schedule yet: create one below. It syncs the account, refits the curves, optimizes with its saved "
            "settings and writes a plan on time — without the browser (`python -m core autopilot serve`, or "
            "`python -m core autopilot run` from cron).")

# ------------------------------------------------------------------------------ new schedule
K_ACCOUNT = "schedules.new.account"  # "platform/account_id" of the account a new schedule targets
K_ACCOUNT_NEXT = "schedules.new.account_next"  # set by the sandbox opener, applied before the picker is drawn
NEW_SANDBOX = "__new__"


def _account_key(source) -> str:
    return f"{source.platform}/{source.account_id}"


def _money_input(column, label: str, currency: str | None, platform: str | None, *, key: str, value: float = 0.0,
                 help: str | None = None) -> float:
    """A number input for an amount in ``currency``: its decimals, moving by the currency's step on ``platform``
    (0.001 KWD, 1 JPY). The page keys it by account, so a value typed for one currency never lands in another's."""
    step = money_step(currency or "USD", platform)
    return column.number_input(f"{label} ({currency})" if currency else label, min_value=0.0, value=value,
                               step=float(step), format=f"%.{money_places(currency)}f", key=key, help=help)


def _sandbox_opener(has_accounts: bool) -> None:
    """Open one of the workspace's sandbox accounts, or make one in a chosen currency (`ensure_sandbox`)."""
    have = S.sandbox_accounts(eng, ws)
    currency_of = dict(zip(have["account_id"], have["currency"]))
    st.caption("Sandbox ad accounts need no credentials: open one of this workspace's, or make one in the currency "
               "its money is kept in (KWD in fils, JPY in whole yen)." if not has_accounts else
               "Or open a sandbox ad account (simulated, no credentials), or make one in another currency.")
    o1, o2, o3 = st.columns(3)
    pick = o1.selectbox("Sandbox account", [*currency_of, NEW_SANDBOX], key="schedules.sandbox.account",
                        format_func=lambda a: "New account…" if a == NEW_SANDBOX else f"{a} ({currency_of[a]})")
    if pick == NEW_SANDBOX:
        account_id, currency = new_sandbox_fields(o2, o3, eng, ws, id_key="schedules.sandbox.new_id",
                                                  currency_key="schedules.sandbox.currency", id_label="New account id")
    else:
        account_id, currency = pick, currency_of[pick]
    if st.button("Open the sandbox ad account", key="schedules.sandbox"):
        made = open_sandbox(eng, ws, account_id, currency, spinner="Opening and syncing the sandbox account…")
        if made is not None:
            st.session_state[K_ACCOUNT_NEXT] = _account_key(made)
            st.rerun()


with st.expander("New schedule", expanded=not schedules):
    sources = [s for s in S.list_sources(eng, ws) if s.kind in ("sync", "sandbox")]
    if not sources:
        st.caption("Schedules run on a connected account or the sandbox.")
        _sandbox_opener(False)
    else:
        by_key = {_account_key(s): s for s in sources}
        wanted = st.session_state.pop(K_ACCOUNT_NEXT, None)
        if wanted in by_key:
            st.session_state[K_ACCOUNT] = wanted
        elif st.session_state.get(K_ACCOUNT) not in by_key:
            st.session_state[K_ACCOUNT] = next(iter(by_key))
        # chosen outside the form, so the amounts below follow the account's currency as soon as it is picked
        acct = st.selectbox("Account", list(by_key), format_func=lambda k: by_key[k].label, key=K_ACCOUNT)
        src = by_key[acct]
        currency = S.account_currency(eng, ws, src.platform, src.account_id)
        if currency:
            st.caption(f"Amounts in {currency}, the account's currency, to "
                       f"{format_money(money_step(currency, src.platform), currency)} {currency}.")
        with st.form(f"schedules.new.{acct}", border=False):
            f1, f3, f4, f5, f6 = st.columns([2, 1, 1, 1, 1])
            name = f1.text_input("Name", value="Daily optimization", key="schedules.new.name")
            freq = f3.selectbox("Frequency", sch.FREQUENCIES, key="schedules.new.freq")
            weekday = f4.selectbox("Weekday (weekly)", range(7), format_func=lambda i: sch.WEEKDAYS[i],
                                   key="schedules.new.weekday")
            tod = f5.text_input("Time of day (HH:MM)", value="06:00", key="schedules.new.time")
            tz = f6.text_input("Account time zone", value="UTC", key="schedules.new.tz",
                               help="IANA name, e.g. Europe/Berlin: the schedule fires at this time in the account's zone.")
            g1, g2, g3, g4 = st.columns(4)
            objective = g1.selectbox("Objective", list(S.OBJECTIVES), format_func=S.OBJECTIVES.get, key="schedules.new.obj")
            total = _money_input(g2, "Total daily budget", currency, src.platform, key=f"schedules.new.{acct}.total",
                                 help="0 = today's total (or, for a capped objective, today's campaign budgets).")
            roas = g3.number_input("Target ROAS", 0.1, 100.0, 3.0, 0.1, key="schedules.new.roas")
            threshold = g4.slider("Confidence threshold", 0, 100, 80, key="schedules.new.threshold")
            h1, h2, h3 = st.columns(3)
            auto_new = h1.toggle("Auto-execute", False, key="schedules.new.auto")
            emails = h2.text_input("E-mail the summary to (comma separated)", key="schedules.new.emails")
            hook = h3.checkbox("Post the summary to the webhook (URL from secrets)", key="schedules.new.webhook")
            if st.form_submit_button("Create schedule", type="primary"):
                try:
                    settings = sch.AutopilotSettings(objective=objective, total_budget=to_decimal(total) if total else None,
                                                     target_roas=roas, confidence_threshold=float(threshold))
                    new_id = sch.create_schedule(
                        eng, ws, name=name, platform=src.platform, account_id=src.account_id, frequency=freq,
                        weekday=weekday if freq == "weekly" else None, time_of_day=tod, timezone=tz.strip() or "UTC",
                        settings=settings, auto_execute=auto_new,
                        notify_emails=[e for e in emails.replace(";", ",").split(",") if e.strip()],
                        notify_webhook=hook, actor=actor())
                    st.session_state["schedules.pick"] = new_id
                    st.rerun()
                except sch.ScheduleError as exc:
                    st.error(plain(exc))
        _sandbox_opener(True)

# ------------------------------------------------------------------------------ guardrails
with st.expander("Guardrails (every plan of this workspace, manual or scheduled)", expanded=False):
    g = state.limits
    # a ceiling applies to every account of the workspace, each in its own currency: it takes the finest of their units
    account_currencies = sorted({c for src in S.list_sources(eng, ws) if src.kind in ("sync", "sandbox")
                                 for c in [S.account_currency(eng, ws, src.platform, src.account_id)] if c})
    finest = max(account_currencies, key=money_places, default=None)
    in_currency = "/".join(account_currencies) or None
    with st.form(f"schedules.guardrails.{in_currency}", border=False):
        r1 = st.columns(4)
        ceiling_help = ("Compared with each account's budgets in that account's own currency "
                        f"({', '.join(account_currencies)})." if len(account_currencies) > 1 else None)
        ent_ceiling = _money_input(r1[0], "Max daily budget per entity (0 = none)", finest, None,
                                   key=f"guard.{in_currency}.entity", value=float(g.entity_budget_ceiling or 0),
                                   help=ceiling_help)
        acct_ceiling = _money_input(r1[1], "Max total daily budget of an account (0 = none)", finest, None,
                                    key=f"guard.{in_currency}.account", value=float(g.account_budget_ceiling or 0),
                                    help=ceiling_help)
        max_inc = r1[2].number_input("Max increase per change (%)", 1.0, 1000.0, float(g.max_increase_pct or 1000), 5.0,
                                     key="guard.increase")
        per_day = r1[3].number_input("Max changes per entity per day", 1, 100, int(g.max_changes_per_entity_per_day or 100),
                                     key="guard.per_day")
        r2 = st.columns(4)
        quiet = r2[0].checkbox("Quiet hours", g.quiet_hours is not None, key="guard.quiet")
        q_start = r2[1].number_input("from hour", 0, 23, (g.quiet_hours or (22, 6))[0], key="guard.q_start")
        q_end = r2[2].number_input("to hour", 0, 23, (g.quiet_hours or (22, 6))[1], key="guard.q_end")
        g_tz = r2[3].text_input("in zone", g.timezone, key="guard.tz")
        r3 = st.columns(4)
        step = r3[0].number_input("Step limit (%)", 1.0, 1000.0, float(g.step_limit_pct), 1.0, key="guard.step",
                                  help="Automatic plans take larger changes in steps; a manual plan may exceed it with a warning.")
        cool_b = r3[1].number_input("Cooldown after a budget change (days)", 0.0, 60.0, float(g.cooldown_days_budget), 1.0,
                                    key="guard.cool_budget")
        cool_bid = r3[2].number_input("Cooldown after a bid change (days)", 0.0, 60.0, float(g.cooldown_days_bid), 1.0,
                                      key="guard.cool_bid")
        policy = r3[3].selectbox("Entity in its learning phase", ["hold", "cap"], index=["hold", "cap"].index(g.learning_policy),
                                 format_func={"hold": "hold (no change)", "cap": "small steps only"}.get, key="guard.policy")
        if st.form_submit_button("Save guardrails"):
            try:
                ceilings = {"max daily budget per entity": to_decimal(ent_ceiling),
                            "max total daily budget of an account": to_decimal(acct_ceiling)}
                for label, amount in ceilings.items():
                    if not is_whole_units(amount, finest or "USD"):
                        raise GuardrailError(f"{label}: {amount:f} is finer than the smallest amount of "
                                             f"{finest or 'USD'} ({format_money(money_step(finest or 'USD'), finest or 'USD')})")
                ent_amount, acct_amount = ceilings.values()
                new = Guardrails(entity_budget_ceiling=ent_amount if ent_amount > 0 else None,
                                 account_budget_ceiling=acct_amount if acct_amount > 0 else None,
                                 max_increase_pct=None if max_inc >= 1000 else max_inc,
                                 max_changes_per_entity_per_day=int(per_day),
                                 quiet_hours=(int(q_start), int(q_end)) if quiet else None, timezone=g_tz.strip() or "UTC",
                                 step_limit_pct=step, cooldown_days_budget=cool_b, cooldown_days_bid=cool_bid,
                                 learning_policy=policy, learning_cap_pct=min(g.learning_cap_pct, step))
                save_guardrails(eng, ws, new, actor=actor())
                st.success("Guardrails saved.")
            except GuardrailError as exc:
                st.error(plain(exc))
    cfg = notify_config(_secrets(), os.environ).describe()
    st.caption(f"Summaries: e-mail via {plain(cfg['smtp'])}; webhook {plain(cfg['webhook_url'])} "
               "(SMTP and webhook settings come from secrets or the environment).")

# ------------------------------------------------------------------------------ glide paths
paths = paths_frame(eng, ws)
if not paths.empty:
    st.subheader("Staged changes (glide paths)")
    active = paths[paths["status"] == "active"]
    st.caption(f"{len(active)} active; each step waits for the cooldown and for the last step's measured outcome.")
    st.dataframe(paths.drop(columns=["change_ids"]), hide_index=True, width="stretch", key="schedules.paths")
