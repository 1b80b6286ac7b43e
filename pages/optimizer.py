"""Optimizer page: response curves, budget allocation, what-if scenarios, recommendations -> draft plan.

Thin: data loading, value source and control vectors come from `core.optimize.session`; curves from
`core.response`; allocation, confidence, bids and advice from `core.optimize.recommend`; scenarios
from `core.optimize.whatif`; the draft plan from `core.changes.create_plan`. Loading and fitting are
cached on workspace + data set + content fingerprint + settings; the what-if editor is a fragment.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.changes import ChangePlanError, create_plan
from core.optimize import session as S
from core.optimize.allocate import InfeasibleError
from core.optimize.currency import currency_spend
from core.optimize.recommend import recommend
from core.optimize.whatif import compare_scenarios, list_scenarios, load_scenario, save_scenario, what_if
from core.response import CurveFitError, fit_curves
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

N_DRAWS = 200
REVIEW_PAGE = "pages/review.py"

st.title("🎯 Optimizer")
eng, ws = engine(), workspace()


# ------------------------------------------------------------------------------------ cached work
@st.cache_resource(max_entries=16, show_spinner="Loading performance…")
def _loaded(ws: str, dataset_id: int, fp: str):
    """(performance, today's budgets, live entities) of one data set state.

    ``fp`` (database + content fingerprint) is only part of the key: a changed data set or a changed
    live budget gives a new key, so nothing is served stale.
    """
    src = next(s for s in S.list_sources(eng, ws) if s.dataset_id == dataset_id)
    perf = S.load_performance(eng, ws, dataset_id)
    return perf, S.current_budgets(eng, ws, src, perf), S.entity_state(eng, ws, src)


@st.cache_resource(max_entries=16, show_spinner=False)
def _currencies(ws: str, dataset_id: int, fp: str) -> pd.Series:
    """Spend per currency of one data set state, most spend first."""
    return currency_spend(_loaded(ws, dataset_id, fp)[0])


@st.cache_resource(max_entries=16, show_spinner=False)
def _in_currency(ws: str, dataset_id: int, fp: str, currency: str):
    """`_loaded` reduced to the campaigns in ``currency`` (unchanged when the data holds one currency)."""
    perf, campaigns, ents = _loaded(ws, dataset_id, fp)
    if len(_currencies(ws, dataset_id, fp)) <= 1:
        return perf, campaigns, ents
    return S.filter_to_currency(perf, currency, campaigns, ents)


@st.cache_resource(max_entries=16, show_spinner="Fitting response curves…")
def _prepared(ws: str, dataset_id: int, fp: str, currency: str, value_source: str, run_id: int | None, run_model: str,
              channel_map: tuple, curve_model: str):
    """(performance as valued, curves, campaigns in curve order, live entities, parameter draws) for one
    data state, currency and settings: only campaigns in ``currency`` (money is never added across currencies)."""
    perf, campaigns, ents = _in_currency(ws, dataset_id, fp, currency)
    if value_source == "attribution":
        credit = S.channel_value(S.run_credit(eng, ws, run_id), run_model, run_id)
        parents = {} if ents.empty else dict(zip(ents["external_id"], ents["parent_id"]))
        perf = S.apply_value_source(perf, "attribution", credit, dict(channel_map), {c: p for c, p in parents.items() if p})
    curves = fit_curves(perf, curve_model)
    return perf, curves, S.align_campaigns(curves, campaigns), ents, curves.sample(N_DRAWS, seed=0)


@st.cache_resource(max_entries=64, show_spinner=False)
def _recommend(prep_key: tuple, objective: str, total: float, target: float, floor: float, max_change: float,
               mins: tuple, maxs: tuple, locked: tuple, threshold: float):
    """(recommendations, before/after table, recommendation table) for one set of controls.

    Cached, so reruns with unchanged controls (e.g. what-if moves) reuse them.
    """
    perf, curves, campaigns, ents, _ = _prepared(*prep_key)
    kw = S.objective_kwargs(objective, total, target, floor)
    kw.update(S.constraint_vectors(campaigns, dict(mins), dict(maxs), list(locked)))
    live = None if ents.empty else ents
    rec = recommend(perf, curves=curves, max_change=max_change, current_budgets=live, current_bids=live, statuses=live,
                    confidence_threshold=threshold, **kw)
    return rec, S.before_after(rec.budget_table), S.recommendations_frame(rec.changes)


#: Plain column headers for the tables (the frames keep their engine names; tests and downloads use those).
LABELS = {
    "campaign": "Campaign", "entity_name": "Campaign", "external_id": "Campaign ID", "budget_before": "Budget today",
    "budget_after": "Proposed budget", "change_pct": "Change", "value_before": "Predicted value today",
    "value_after": "Predicted value, proposed", "roas_before": "ROAS today", "roas_after": "ROAS, proposed",
    "mroas_before": "Marginal ROAS today", "mroas_after": "Marginal ROAS, proposed", "confidence": "Confidence (0-100)",
    "locked": "Locked", "budget": "Daily budget", "value": "Predicted value", "value_lo": "Value, low (5%)",
    "value_hi": "Value, high (95%)", "roas": "ROAS", "marginal_roas": "Marginal ROAS", "entity_type": "Level", "field": "Change",
    "old_value": "Now", "new_value": "Proposed", "auto_approve": "Auto-approve", "reason": "Why", "kind": "Advice",
    "name": "Scenario", "created_at": "Saved at",
}
#: Columns holding money (daily amounts): their header names the currency.
MONEY = {"budget_before", "budget_after", "value_before", "value_after", "budget", "value", "value_lo", "value_hi"}


def _money_cols(frame: pd.DataFrame, pct: tuple[str, ...] = ("change_pct",), whole: tuple[str, ...] = ("confidence",),
                currency: str = "") -> dict:
    """Column formats and plain headers: 2 decimals for money and ratios, % for changes, whole numbers for confidence."""
    cfg = {}
    for c in frame.columns:
        label = LABELS.get(c, c)
        if c in MONEY and currency:
            label = f"{label} ({currency}/day)"
        if c in pct:
            cfg[c] = st.column_config.NumberColumn(label, format="%+.1f%%")
        elif c in whole:
            cfg[c] = st.column_config.NumberColumn(label, format="%.0f")
        elif pd.api.types.is_float_dtype(frame[c]):
            cfg[c] = st.column_config.NumberColumn(label, format="%.2f")
        else:
            cfg[c] = st.column_config.Column(label)
    return cfg


# ------------------------------------------------------------------------------------ data choice
sources = S.list_sources(eng, ws)
if not S.has_sandbox(sources):
    # the sandbox account is the default data and the default target of plans: open it on the first visit
    with st.spinner("Opening the sandbox ad account (simulated, no credentials needed)…"):
        S.ensure_sandbox(eng, ws)
    sources = S.list_sources(eng, ws)

labels = [s.label for s in sources]
with st.container(border=True):
    c1, c2, c3 = st.columns([2, 2, 1])
    choice = c1.selectbox("Performance data", labels, key="opt.source", help="The sandbox account is the default.")
    source = sources[labels.index(choice)]
    # the key names the database too: caches are process-wide and a process may serve several databases
    db_fp = S.cache_key(eng.url.render_as_string(hide_password=True), S.fingerprint(eng, ws, source))
    try:
        spend_by_currency = _currencies(ws, source.dataset_id, db_fp)
    except S.OptimizerInputError as exc:
        st.error(plain(exc))
        st.stop()
    currency_options = [str(c) for c in spend_by_currency.index]
    if st.session_state.get("opt.currency") not in currency_options:  # a new source: default to the most spend
        st.session_state.pop("opt.currency", None)
    if len(currency_options) > 1:
        currency = c1.selectbox(
            "Currency", currency_options, key="opt.currency",
            format_func=lambda c: f"{c} (spend {float(spend_by_currency[c]):,.2f})",
            help="The data holds campaigns in several currencies. Budgets in different currencies cannot be added up, "
                 "so the optimizer plans one currency at a time (default: the one with the most spend).")
    else:
        currency = currency_options[0] if currency_options else ""
    scope = (source.dataset_id, currency)
    if st.session_state.get("opt.scope") != scope:  # another data set or currency: its total budget starts afresh
        st.session_state.pop("opt.total_budget", None)
        st.session_state["opt.scope"] = scope
    vs_label = c2.radio("Value source", ["Platform-reported", "Attribution-adjusted"], key="opt.value_source", horizontal=True,
                        help="Attribution-adjusted re-weights each channel's value by a stored attribution run.")
    curve_model = c3.radio("Curve", ["power", "hill"], key="opt.curve_model", horizontal=True)
    value_source, run_id, run_model = "platform", None, ""
    if vs_label == "Attribution-adjusted":
        runs = S.list_attribution_runs(eng, ws)
        if runs.empty:
            st.warning("No stored attribution run in this workspace: run one on the Attribution page. Using platform-reported value.")
        else:
            r1, r2 = st.columns(2)
            run_label = r1.selectbox("Attribution run", runs["label"].tolist(), key="opt.run")
            run_id = int(runs.loc[runs["label"] == run_label, "id"].iloc[0])
            try:
                models = S.run_models(S.run_credit(eng, ws, run_id))
            except S.OptimizerInputError as exc:
                st.error(plain(exc))
                st.stop()
            # a data-driven model by default (the first listed is usually first touch)
            preferred = next((models.index(m) for m in ("markov", "shapley", "shapley_rate") if m in models), 0)
            run_model = r2.selectbox("Model", models, index=preferred, key="opt.run_model")
            value_source = "attribution"

channel_map: dict[str, str] = {}
if value_source == "attribution":
    channels = sorted(S.channel_value(S.run_credit(eng, ws, run_id), run_model, run_id))
    raw = _in_currency(ws, source.dataset_id, db_fp, currency)[0]
    guess = S.guess_campaign_channels(raw, channels, strict=False)
    camp_list = S.campaign_list(raw)
    with st.expander("Campaign → attribution channel", expanded=len(guess) < len(camp_list)):
        st.caption("Each campaign's value is re-weighted by its channel's share of the attribution credit.")
        for xid, cname in zip(camp_list["external_id"], camp_list["entity_name"]):
            ch = st.selectbox(f"{cname} ({xid})", channels, index=channels.index(guess[xid]) if xid in guess else None,
                              key=f"opt.{xid}.channel", placeholder="choose a channel")
            if ch is not None:
                channel_map[xid] = ch
    unmapped = [x for x in camp_list["external_id"] if x not in channel_map]
    if unmapped:
        st.warning(f"Choose an attribution channel for {len(unmapped)} campaign(s) ({plain(', '.join(map(str, unmapped[:5])))}) to use attribution-adjusted value.")
        st.stop()

prep_key = (ws, source.dataset_id, db_fp, currency, value_source, run_id, run_model, tuple(sorted(channel_map.items())), curve_model)
try:
    perf, curves, campaigns, ents, draws = _prepared(*prep_key)
except (CurveFitError, S.OptimizerInputError, ValueError) as exc:
    st.error(f"Cannot build response curves: {plain(exc)}")
    st.stop()

ids = campaigns["external_id"].tolist()
names = campaigns["entity_name"].tolist()
current = campaigns["budget"].map(float).to_numpy(float)
if len(currency_options) > 1:
    others = [c for c in currency_options if c != currency]
    st.caption(f"Only the {len(ids)} campaign(s) in {plain(currency)} are optimized, and a frozen plan holds only them; the campaigns "
               f"in {', '.join(others)} are planned separately: choose their currency above. All amounts are in {currency}.")
if source.kind == "dataset":
    st.caption("Imported data has no live account: today's budgets are each campaign's mean daily spend of the last 7 days.")

# ------------------------------------------------------------------------------------ controls
total_now = float(current.sum())
total_max = float(max(1.0, round(total_now * 2.0)))
slider_max = [float(max(10.0, np.ceil(3.0 * c))) for c in current]
# a kept slider value outside the range of the data now chosen would be an error: start that slider afresh
for key, top in [("opt.total_budget", total_max)] + [(f"opt.whatif.{cid}", m) for cid, m in zip(ids, slider_max)]:
    if key in st.session_state and not 0.0 <= float(st.session_state[key]) <= top:
        del st.session_state[key]
with st.sidebar:
    st.markdown("#### Optimizer settings")
    objective = st.radio("Objective", list(S.OBJECTIVES), format_func=S.OBJECTIVES.get, key="opt.objective")
    total_budget = st.slider(f"Total daily budget ({currency})", 0.0, total_max,
                             float(round(total_now)), step=1.0, key="opt.total_budget",
                             disabled=objective not in ("value", "cap"))
    max_change_pct = st.slider("Max change per campaign (%)", 0, 200, 30, step=5, key="opt.max_change")
    target_roas = st.number_input("Target ROAS", 0.1, 100.0, 3.0, step=0.1, key="opt.target_roas",
                                  help="Used by the ROAS objectives, bid suggestions and targeting advice.")
    mroas_floor = st.number_input("Marginal ROAS floor", 0.01, 100.0, 1.0, step=0.05, key="opt.mroas_floor",
                                  disabled=objective != "floor")
    threshold = st.slider("Auto-approve confidence threshold", 0, 100, 80, key="opt.confidence",
                          help="Recommendations at or above this confidence are marked for auto-approval.")

mins: dict[str, float | None] = {}
maxs: dict[str, float | None] = {}
locked: list[str] = []
with st.expander("Per-campaign limits and locks", expanded=False):
    h = st.columns([3, 1, 1, 1, 1])
    for col, text in zip(h, ["Campaign", f"Today ({currency})", "Min", "Max", "Lock"]):
        col.markdown(f"**{text}**")
    for i, (cid, name) in enumerate(zip(ids, names)):
        r = st.columns([3, 1, 1, 1, 1])
        r[0].write(name)
        r[1].write(f"{current[i]:,.2f}")
        mins[cid] = r[2].number_input("min", min_value=0.0, value=None, step=1.0, key=f"opt.{cid}.min", label_visibility="collapsed")
        maxs[cid] = r[3].number_input("max", min_value=0.0, value=None, step=1.0, key=f"opt.{cid}.max", label_visibility="collapsed")
        if r[4].checkbox("lock", value=campaigns["status"].iloc[i] != "ACTIVE", key=f"opt.{cid}.lock", label_visibility="collapsed",
                         help="Keep today's budget (paused campaigns start locked)."):
            locked.append(cid)

# ------------------------------------------------------------------------------------ allocation
rec, table, recs = None, None, None
try:
    rec, table, recs = _recommend(prep_key, objective, float(total_budget), float(target_roas), float(mroas_floor), max_change_pct / 100.0,
                     tuple(sorted((k, v) for k, v in mins.items() if v is not None)),
                     tuple(sorted((k, v) for k, v in maxs.items() if v is not None)), tuple(sorted(locked)), float(threshold))
except (InfeasibleError, S.OptimizerInputError) as exc:
    st.error(f"Infeasible constraints: {plain(exc)}")
except ValueError as exc:  # e.g. bad performance rows the advice or bid step rejects
    st.error(f"Cannot optimize: {plain(exc)}")

proposal = None
if rec is not None:
    alloc = rec.allocation
    proposal = alloc.budgets
    for note in rec.notes:
        st.info(note)
    tot = table.iloc[-1]
    m = st.columns(5)
    m[0].metric(f"Total daily budget ({plain(currency)})", f"{tot['budget_after']:,.2f}", f"{tot['budget_after'] - tot['budget_before']:+,.2f}")
    m[1].metric(f"Predicted value a day ({plain(currency)})", f"{tot['value_after']:,.2f}", f"{tot['value_after'] - tot['value_before']:+,.2f}")
    m[2].metric("ROAS", f"{tot['roas_after']:.2f}", f"{tot['roas_after'] - tot['roas_before']:+.2f}")
    m[3].metric("Marginal ROAS (λ)", f"{alloc.lam:.2f}" if np.isfinite(alloc.lam) else "—",
                help="What one more unit of money would return at the proposed budgets (the same for every campaign not held by a limit).")
    m[4].metric("Plan confidence", f"{rec.plan_confidence:.0f}" if np.isfinite(rec.plan_confidence) else "—",
                help="Probability (0-100) under the curves' uncertainty that the whole plan beats today's budgets.")
    st.subheader("Before / after")
    st.caption(alloc.objective)
    st.dataframe(table, key="opt.before_after", hide_index=True, width="stretch", column_config=_money_cols(table, currency=currency))
    download_csv(table, "Download before/after (CSV)", "allocation.csv", key="opt.download")

# ------------------------------------------------------------------------------------ curves
st.subheader("Response curves")
diag = curves.diagnostics
pick = st.selectbox("Campaign", range(len(ids)), format_func=lambda i: names[i], key="opt.chart_campaign")


@st.cache_data(max_entries=256, show_spinner=False)
def _curve_spec(prep_key: tuple, i: int, today: float, proposed: float | None) -> dict:
    """The Altair chart of campaign ``i`` as a Vega-Lite dict, built once per key (Altair's validation is slow).

    cache_data hands out a copy, so rendering can never alter the cached spec.
    """
    _, curves_, _, _, draws_ = _prepared(*prep_key)
    points, line, marks = S.curve_chart_frames(curves_, draws_, i, today, proposed)
    y_top = 1.5 * max(float(points["value"].max()) if len(points) else 0.0, float(line["value"].max()), 1.0)
    y_scale = alt.Scale(domain=[0.0, y_top], clamp=True)  # a wide band must not flatten the curve
    x = alt.X("spend:Q", title=f"Daily spend ({currency})")
    band = alt.Chart(line).mark_area(opacity=0.2).encode(x, alt.Y("low:Q", title=f"Daily value ({currency}; band: 5-95 %)", scale=y_scale), alt.Y2("high:Q"))
    fit = alt.Chart(line).mark_line().encode(x, alt.Y("value:Q", scale=y_scale))
    obs = alt.Chart(points).mark_circle(size=30, opacity=0.6).encode(x, alt.Y("value:Q", scale=y_scale), tooltip=["date:T", "spend:Q", "value:Q"])
    rules = alt.Chart(marks).mark_rule(strokeDash=[4, 3], size=2).encode(x, alt.Color("which:N", title=""), tooltip=["which:N", "spend:Q", "value:Q"])
    return (band + fit + obs + rules).properties(title=names[i]).to_dict()


st.vega_lite_chart(_curve_spec(prep_key, int(pick), float(current[pick]), None if proposal is None else float(proposal[pick])),
                   width="stretch", key="opt.curve_chart")
warn = str(diag["warnings"].iloc[pick]) if "warnings" in diag.columns else ""
st.caption(f"Fit: R² {diag['r2'].iloc[pick]:.2f}, {int(diag['points_used'].iloc[pick])} days used" + (f" — ⚠️ {plain(warn)}" if warn else ""))

# ------------------------------------------------------------------------------------ what-if


def _set_whatif(values) -> None:
    for cid, v, top in zip(ids, values, slider_max):
        st.session_state[f"opt.whatif.{cid}"] = float(min(round(float(v)), top))


@st.fragment
def whatif_section() -> None:
    """Edit budgets -> predicted value, ROAS and marginal ROAS with a band; save and compare scenarios."""
    st.subheader("What-if")
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("Start from today", key="opt.whatif.from_today", on_click=_set_whatif, args=(current,))
    b2.button("Start from the proposal", key="opt.whatif.from_proposal", on_click=_set_whatif, args=(proposal,),
              disabled=proposal is None)
    cols = st.columns(min(4, max(1, len(ids))))
    budgets = np.empty(len(ids))
    for i, cid in enumerate(ids):
        budgets[i] = cols[i % len(cols)].slider(names[i], 0.0, slider_max[i], float(min(round(current[i]), slider_max[i])),
                                                step=1.0, key=f"opt.whatif.{cid}")
    w = what_if(curves, budgets, n_draws=N_DRAWS)
    t = w.total
    m = st.columns(4)
    m[0].metric(f"What-if daily budget ({plain(currency)})", f"{t['budget']:,.2f}")
    m[1].metric(f"Predicted value a day ({plain(currency)})", f"{t['value']:,.2f}")
    m[2].metric("ROAS", f"{t['roas']:.2f}")
    m[3].metric("Marginal ROAS", f"{t['marginal_roas']:.2f}")
    st.caption(f"{t['level']:.0%} band of the predicted value: {t['value_lo']:,.2f} – {t['value_hi']:,.2f}")
    wt = w.table[["entity_name", "budget", "value", "value_lo", "value_hi", "roas", "marginal_roas"]]
    st.dataframe(wt, key="opt.whatif.table", hide_index=True, width="stretch", column_config=_money_cols(wt, currency=currency))

    s1, s2 = st.columns([3, 1], vertical_alignment="bottom")
    name = s1.text_input("Scenario name", key="opt.scenario_name", placeholder="e.g. push search")
    if s2.button("Save scenario", key="opt.save_scenario"):
        try:
            save_scenario(eng, name, curves, budgets, workspace_id=ws)
            st.success(f"Saved scenario {plain(repr(name.strip()))}.")
        except ValueError as exc:
            st.error(plain(exc))
    saved = list_scenarios(eng, workspace_id=ws)
    saved = saved[saved["currency"].isna() | (saved["currency"] == currency)]  # another currency's scenarios do not apply here
    if saved.empty:
        st.caption("No saved scenarios yet." if len(currency_options) <= 1 else f"No saved scenarios in {plain(currency)} yet.")
        return
    sv = saved[["name", "created_at", "budget", "value", "roas"]]
    st.dataframe(sv, key="opt.scenarios", hide_index=True, width="stretch", column_config=_money_cols(sv, currency=currency))
    chosen = st.multiselect("Compare scenarios side by side", saved["name"].tolist(), key="opt.compare")
    if chosen:
        try:
            scen: dict = {n: load_scenario(eng, n, workspace_id=ws) for n in chosen}
            scen["(what-if)"] = budgets
            cmp_ = compare_scenarios(curves, scen, n_draws=N_DRAWS)
            st.dataframe(cmp_, key="opt.compare_table", hide_index=True, width="stretch", column_config=_money_cols(cmp_, currency=currency))
        except (KeyError, ValueError) as exc:
            st.error(f"Cannot compare: {plain(exc)}")


whatif_section()

# ------------------------------------------------------------------------------------ recommendations
st.subheader("Recommendations")
if rec is None:
    st.caption("No recommendations while the constraints are infeasible.")
    st.stop()
if currency:
    st.caption(f"Budgets and bids in {plain(currency)}.")
if objective == "value":
    st.caption(f"Bid suggestions and targeting advice aim at the target ROAS {float(target_roas):g} set in the sidebar.")
if recs.empty:
    st.info("Nothing to change: today's budgets are already optimal under these settings.")
else:
    st.dataframe(recs, key="opt.recommendations", hide_index=True, width="stretch",
                 column_config={**_money_cols(recs),
                                "confidence": st.column_config.ProgressColumn(LABELS["confidence"], min_value=0, max_value=100, format="%.0f"),
                                "reason": st.column_config.TextColumn(LABELS["reason"], width="large")})
other = rec.advice[~rec.advice["kind"].isin(["pause"])] if not rec.advice.empty else rec.advice
if not other.empty:
    st.markdown("**Advice** (not executable changes)")
    adv = other[["entity_name", "kind", "reason", "confidence"]]
    st.dataframe(adv, key="opt.advice", hide_index=True, width="stretch", column_config=_money_cols(adv))
if not recs.empty and source.kind == "dataset":
    st.caption("These campaigns come from an imported file, not a connected account: a plan can be reviewed but only executed "
               "against a connected account with the same ids.")

if not recs.empty and st.button("Freeze into a draft change plan for review", type="primary", key="opt.freeze"):
    # built in the script body from the recommendations on screen (not in a callback), so the plan is what was shown
    plan_ids = []
    try:
        for (platform, account), drafts in S.plan_groups(rec.changes).items():
            plan_ids.append(create_plan(eng, ws, drafts, actor=actor(), name=f"Optimizer: {S.OBJECTIVES[objective]} ({account})"))
    except ChangePlanError as exc:
        st.error(f"Cannot create the plan: {plain(exc)}")
    if plan_ids:
        st.session_state["review.plan_id"] = plan_ids[0]
        st.session_state["opt.last_plans"] = plan_ids
        if (Path(__file__).parent / Path(REVIEW_PAGE).name).exists():
            st.switch_page(REVIEW_PAGE)
        st.success(f"Draft plan(s) {', '.join(f'#{p}' for p in plan_ids)} created; open the Review page to preview and approve.")
