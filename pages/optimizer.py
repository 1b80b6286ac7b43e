"""Optimizer page: response curves, budget allocation, what-if scenarios, recommendations -> draft plan.

Thin: data loading, value source, level options and page controls come from `core.optimize.session`;
the problem, the solution and every confidence from `core.optimize.recommend`; scenarios from
`core.optimize.whatif`; the draft plan from `core.changes.create_plan`.

Live: the data choice at the top reruns the page; everything below it is a fragment, so a move of a
setting (total budget, max change, ...) reruns only the plan, from cached pieces keyed on their
inputs: loading (data set fingerprint), curves (+ level, metric, curve model), the problem (+ max
change, limits, extrapolation), advice and bids (+ target), and the solution (+ objective). The
what-if section is a fragment of its own beside the plan (a plan move does not redraw it), and the
per-campaign limit widgets are drawn only while their expander is open: the browser's cost of a move
grows with every element the fragment redraws. An infeasible setting keeps the last feasible plan on
screen with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.changes import ChangePlanError, create_plan
from core.money import format_money, money_places
from core.optimize import session as S
from core.optimize.allocate import InfeasibleError
from core.optimize.confidence import CONFIDENCE_MEANING
from core.optimize.currency import currency_spend
from core.optimize.levels import LevelError, resolve_level
from core.optimize.metrics import METRICS, MetricError, available_metrics, choose_metric, metric_frame
from core.optimize.recommend import build_problem, extras, solve
from core.optimize.settings import AccountState, RecommendSettings, SettingsError
from core.optimize.whatif import compare_scenarios, list_scenarios, load_scenario, save_scenario, what_if
from core.response import CurveFitError, fit_curves
from core.sample import preparation
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

N_DRAWS = 200
REVIEW_PAGE = "pages/review.py"

# session-state keys of this page (one place)
K_SOURCE, K_CURRENCY, K_VALUE_SOURCE, K_CURVE = "opt.source", "opt.currency", "opt.value_source", "opt.curve_model"
K_RUN, K_RUN_MODEL, K_LEVEL, K_METRIC = "opt.run", "opt.run_model", "opt.level", "opt.metric"
K_OBJECTIVE, K_TOTAL, K_MAX_CHANGE, K_TARGET = "opt.objective", "opt.total_budget", "opt.max_change", "opt.target_roas"
K_FLOOR, K_THRESHOLD, K_WITHIN, K_MARGIN = "opt.mroas_floor", "opt.confidence", "opt.within_evidence", "opt.margin"
K_SCOPE, K_LAST, K_PICK = "opt.scope", "opt.last_feasible", "opt.chart_campaign"
K_REVIEW_PLAN, K_LAST_PLANS = "review.plan_id", "opt.last_plans"
K_LIMITS, K_LIMITS_OPEN = "opt.limits", "opt.limits_open"


def whatif_key(cid: str) -> str:
    return f"opt.whatif.{cid}"


st.title("🎯 Optimizer")
eng, ws = engine(), workspace()


# ------------------------------------------------------------------------------------ cached work
@st.cache_resource(max_entries=16, show_spinner="Loading performance…")
def _loaded(ws: str, dataset_id: int, fp: str):
    """(performance, live entities) of one data set state; ``fp`` (database + content fingerprint) makes
    a changed data set or live budget a new key, so nothing is served stale."""
    src = next(s for s in S.list_sources(eng, ws) if s.dataset_id == dataset_id)
    return S.load_performance(eng, ws, dataset_id), S.entity_state(eng, ws, src)


@st.cache_resource(max_entries=16, show_spinner=False)
def _currencies(ws: str, dataset_id: int, fp: str) -> pd.Series:
    """Spend per currency of one data set state, most spend first."""
    return currency_spend(_loaded(ws, dataset_id, fp)[0])


@st.cache_resource(max_entries=16, show_spinner=False)
def _in_currency(ws: str, dataset_id: int, fp: str, currency: str):
    """`_loaded` reduced to the campaigns in ``currency`` (unchanged when the data holds one currency)."""
    perf, ents = _loaded(ws, dataset_id, fp)
    if len(_currencies(ws, dataset_id, fp)) <= 1:
        return perf, ents
    return S.filter_to_currency(perf, currency, ents)


@st.cache_resource(max_entries=16, show_spinner=False)
def _valued(data_key: tuple):
    """(performance whose value the optimizer trusts, live entities) for one data state, currency and value source."""
    ws_, dataset_id, fp, currency, value_source, run_id, run_model, channel_map = data_key
    perf, ents = _in_currency(ws_, dataset_id, fp, currency)
    if value_source == "attribution":
        credit = S.channel_value(S.run_credit(eng, ws_, run_id), run_model, run_id)
        parents = {} if ents.empty else {c: p for c, p in zip(ents["external_id"], ents["parent_id"]) if p}
        perf = S.apply_value_source(perf, "attribution", credit, dict(channel_map), parents)
    return perf, ents


@st.cache_resource(max_entries=16, show_spinner="Fitting response curves…")
def _curves(data_key: tuple, level: str, metric: str, curve_model: str):
    """The response curves of one data state at one level and metric (fitting is the slow part)."""
    perf, ents = _valued(data_key)
    rows, info = resolve_level(metric_frame(perf, choose_metric(perf, metric)), level, None if ents.empty else ents)
    return fit_curves(rows, curve_model, entity_type=info.level)


@st.cache_resource(max_entries=32, show_spinner=False)
def _problem(data_key: tuple, level: str, metric: str, curve_model: str, max_change: float, within: bool, margin: float,
             limits: tuple, threshold: float):
    """The optimization problem (curves, today's budgets, bounds) for one set of constraints."""
    perf, ents = _valued(data_key)
    settings = RecommendSettings(max_change=max_change, extrapolation="cap" if within else "mark", extrapolation_margin=margin,
                                 curve_model=curve_model, metric=metric, level=level, confidence_threshold=threshold,
                                 n_draws=N_DRAWS * 2)
    mins, maxs, locked = limits
    curves = _curves(data_key, level, metric, curve_model)
    lim = S.page_limits(curves.keys["external_id"].tolist(), dict(mins), dict(maxs), list(locked))
    live = None if ents.empty else ents
    return build_problem(perf, settings=settings, limits=lim, account=AccountState(budgets=live, bids=live, statuses=live,
                                                                                   entities=live), curves=curves)


@st.cache_resource(max_entries=32, show_spinner=False)
def _extras(problem_key: tuple, guide: float):
    """Advice and bid suggestions for one problem and target (they do not move with the total budget)."""
    problem = _problem(*problem_key)
    ents = _valued(problem_key[0])[1]
    return extras(problem, guide, None if ents.empty else ents)


@st.cache_resource(max_entries=64, show_spinner=False)
def _solved(problem_key: tuple, objective_key: tuple):
    """(recommendations, before/after table, recommendation table) for one problem and objective."""
    kind, total, target, floor = objective_key
    problem = _problem(*problem_key)
    objective, guide = S.page_objective(kind, total, problem.metric.to_ratio(target), floor)
    rec = solve(problem, objective, extra=_extras(problem_key, guide))
    return rec, S.before_after(rec.budget_table), S.recommendations_frame(rec.changes)


#: Plain column headers for the tables (the frames keep their engine names; tests and downloads use those).
LABELS = {
    "external_id": "ID", "budget_before": "Budget today", "budget_after": "Proposed budget", "change_pct": "Change",
    "confidence": "Confidence (0-100)", "extrapolated": "Extrapolated", "why": "Why this confidence", "r2": "R² of the fit",
    "held": "Held (code)", "held_because": "Kept at today's budget because",
    "locked": "Locked", "budget": "Daily budget", "value_lo": "Low (5%)", "value_hi": "High (95%)",
    "entity_type": "Level", "field": "Change", "old_value": "Now", "new_value": "Proposed", "auto_approve": "Auto-approve",
    "reason": "Why", "kind": "Advice", "name": "Scenario", "created_at": "Saved at",
}
#: Columns holding money (daily amounts): their header names the currency.
MONEY = {"budget_before", "budget_after", "budget", "value_before", "value_after", "value", "value_lo", "value_hi"}
#: Ratio columns: ROAS for a money metric, cost per conversion / click (money) for a count metric (see `_shown`).
RATIOS = ("roas_before", "roas_after", "mroas_before", "mroas_after", "roas", "marginal_roas")


def _labels(metric, noun: str) -> dict:
    """Headers that name the level ('Ad group') and the metric ('Predicted conversions', 'Cost per conversion')."""
    eff, marg = metric.efficiency_label, metric.marginal_label
    return {**LABELS, "campaign": noun.capitalize(), "entity_name": noun.capitalize(),
            "value_before": f"{metric.value_label} today", "value_after": f"{metric.value_label}, proposed",
            "value": metric.value_label, "roas_before": f"{eff} today", "roas_after": f"{eff}, proposed", "roas": eff,
            "mroas_before": f"{marg} today", "mroas_after": f"{marg}, proposed", "marginal_roas": marg}


def _shown(frame: pd.DataFrame, metric) -> pd.DataFrame:
    """Ratios as the user reads them: ROAS, or cost per conversion / click (1 / ratio) for count metrics."""
    if metric.money:
        return frame
    out = frame.copy()
    for c in RATIOS:
        if c in out.columns:
            out[c] = metric.efficiency(out[c].to_numpy(float))
    return out


def _columns(frame: pd.DataFrame, labels: dict, currency: str = "", money: bool = True) -> dict:
    """Column formats and plain headers: money at its currency's decimals, % for changes, whole numbers for
    confidence, 2 decimals for other numbers."""
    cfg = {}
    for c in frame.columns:
        label = labels.get(c, c)
        if currency and (c in MONEY and (money or c.startswith("budget"))):
            label = f"{label} ({currency}/day)"
        if c == "change_pct":
            cfg[c] = st.column_config.NumberColumn(label, format="%+.1f%%")
        elif currency and (c in MONEY and (money or c.startswith("budget")) or c in RATIOS and not money):
            # money at the currency's precision (KWD: fils); a count metric's ratios are costs per conversion (money)
            cfg[c] = st.column_config.NumberColumn(label, format=f"%.{money_places(currency)}f")
        elif c == "confidence":
            cfg[c] = st.column_config.NumberColumn(label, format="%.0f")
        elif c == "r2":
            cfg[c] = st.column_config.NumberColumn(label, format="%.2f", help="Share of the day-to-day scatter that spend "
                                                   "explains: a measure of noise, not of confidence")
        elif c in ("why", "reason", "held_because"):
            cfg[c] = st.column_config.TextColumn(label, width="large")
        elif pd.api.types.is_float_dtype(frame[c]):
            cfg[c] = st.column_config.NumberColumn(label, format="%.2f")
        else:
            cfg[c] = st.column_config.Column(label)
    return cfg


def _places(money: bool = True) -> int:
    """Decimals of a figure: a money amount's at the currency's precision (KWD 3, JPY 0), any other 2."""
    return money_places(currency) if money else 2


def _figure(x: float, money: bool = True) -> str:
    """A figure as shown: money at the currency's precision (never "-0"), a count or a ratio at 2 decimals."""
    v = S.display(x, _places(money))
    return format_money(v, currency) if money else f"{v:,.2f}"


# ------------------------------------------------------------------------------------ data choice
sources = S.list_sources(eng, ws)
if not S.has_sandbox(sources):
    # the sandbox account is the default data and the default target of plans: open it on the first visit
    # (on a first start the background preparation opens it: wait for that rather than race it)
    prep = preparation(eng, ws)
    with st.spinner("Opening the sandbox ad account (simulated, no credentials needed)…"):
        deadline = time.monotonic() + 120
        while prep is not None and not prep.done and time.monotonic() < deadline and \
                not any(x.platform == "sandbox" and x.kind == "sync" for x in sources):
            prep.wait(0.3)
            sources = S.list_sources(eng, ws)
        if not S.has_sandbox(sources):
            S.ensure_sandbox(eng, ws, actor=actor())
    sources = S.list_sources(eng, ws)

labels = [s.label for s in sources]
with st.container(border=True):
    c1, c2, c3 = st.columns([2, 2, 1])
    choice = c1.selectbox("Performance data", labels, key=K_SOURCE, help="The sandbox account is the default.")
    source = sources[labels.index(choice)]
    # the key names the database too: caches are process-wide and a process may serve several databases
    db_fp = S.cache_key(eng.url.render_as_string(hide_password=True), S.fingerprint(eng, ws, source))
    try:
        spend_by_currency = _currencies(ws, source.dataset_id, db_fp)
    except S.OptimizerInputError as exc:
        st.error(plain(exc))
        st.stop()
    currency_options = [str(c) for c in spend_by_currency.index]
    if st.session_state.get(K_CURRENCY) not in currency_options:  # a new source: default to the most spend
        st.session_state.pop(K_CURRENCY, None)
    if len(currency_options) > 1:
        currency = c1.selectbox(
            "Currency", currency_options, key=K_CURRENCY,
            format_func=lambda c: f"{c} (spend {format_money(spend_by_currency[c], c)})",
            help="The data holds campaigns in several currencies. Budgets in different currencies cannot be added up, "
                 "so the optimizer plans one currency at a time (default: the one with the most spend).")
    else:
        currency = currency_options[0] if currency_options else ""
    vs_label = c2.radio("Value source", ["Platform-reported", "Attribution-adjusted"], key=K_VALUE_SOURCE, horizontal=True,
                        help="Attribution-adjusted re-weights each channel's value by a stored attribution run.")
    curve_model = c3.radio("Curve", ["power", "hill"], key=K_CURVE, horizontal=True)
    value_source, run_id, run_model = "platform", None, ""
    if vs_label == "Attribution-adjusted":
        runs = S.list_attribution_runs(eng, ws)
        if runs.empty:
            st.warning("No stored attribution run in this workspace: run one on the Attribution page. Using platform-reported value.")
        else:
            r1, r2 = st.columns(2)
            run_label = r1.selectbox("Attribution run", runs["label"].tolist(), key=K_RUN)
            run_id = int(runs.loc[runs["label"] == run_label, "id"].iloc[0])
            try:
                models = S.run_models(S.run_credit(eng, ws, run_id))
            except S.OptimizerInputError as exc:
                st.error(plain(exc))
                st.stop()
            # a data-driven model by default (the first listed is usually first touch)
            preferred = next((models.index(m) for m in ("markov", "shapley", "shapley_rate") if m in models), 0)
            run_model = r2.selectbox("Model", models, index=preferred, key=K_RUN_MODEL)
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

data_key = (ws, source.dataset_id, db_fp, currency, value_source, run_id, run_model, tuple(sorted(channel_map.items())))
try:
    valued, entities = _valued(data_key)
except (S.OptimizerInputError, CurveFitError, ValueError) as exc:
    st.error(f"Cannot use this data: {plain(exc)}")
    st.stop()



@st.cache_resource(max_entries=16, show_spinner=False)
def _choices(data_key_: tuple) -> tuple[dict, list]:
    """(levels offered -> label, metrics the data has) of one data state."""
    perf, ents = _valued(data_key_)
    return S.level_options(perf, None if ents.empty else ents), available_metrics(perf)


# level and metric: offered when the data allows a choice
levels, metrics = _choices(data_key)
if not levels:
    try:
        resolve_level(valued, "campaign", None if entities.empty else entities)
    except LevelError as exc:
        st.error(f"Cannot optimize this data: {plain(exc)}")
        st.stop()
if not metrics:
    try:
        choose_metric(valued, "auto")
    except MetricError as exc:
        st.error(f"Cannot optimize this data: {plain(exc)}")
        st.stop()
l1, l2 = st.columns(2)
if st.session_state.get(K_LEVEL) not in levels:
    st.session_state.pop(K_LEVEL, None)
level = l1.radio("Optimize at", list(levels), format_func=levels.get, key=K_LEVEL, horizontal=True,
                 help="Campaign level sums ad sets / ad groups into their campaigns; a child level optimizes each one. "
                      "Budgets can only be sent at the level where the account keeps them.") if len(levels) > 1 else next(iter(levels))
if st.session_state.get(K_METRIC) not in metrics:
    st.session_state.pop(K_METRIC, None)
metric_key = l2.radio("Maximize", metrics, format_func=lambda m: METRICS[m].label, key=K_METRIC, horizontal=True,
                      help="Conversion value when the data has it; otherwise conversions or clicks, and figures are labelled so."
                      ) if len(metrics) > 1 else metrics[0]
metric = METRICS[metric_key]
if "value" not in metrics:
    st.info(f"This data has no conversion value: the optimizer maximizes **{metric.label}**, and shows cost per "
            f"{metric.unit} where it would show ROAS.")

try:
    curves = _curves(data_key, level, metric_key, curve_model)
except (CurveFitError, LevelError, MetricError, S.OptimizerInputError, ValueError) as exc:
    st.error(f"Cannot build response curves: {plain(exc)}")
    st.stop()

ids = curves.keys["external_id"].tolist()
names = curves.keys["entity_name"].tolist()
if len(currency_options) > 1:
    others = [c for c in currency_options if c != currency]
    st.caption(f"Only the campaigns in {plain(currency)} are optimized, and a frozen plan holds only them; the campaigns "
               f"in {', '.join(others)} are planned separately: choose their currency above. All amounts are in {currency}.")
if source.kind == "dataset":
    st.caption("Imported data has no live account: today's budgets are each campaign's mean daily spend of the last 7 days.")
scope = (source.dataset_id, currency, level, metric_key)
if st.session_state.get(K_SCOPE) != scope:  # another data set, currency, level or metric: totals and what-ifs start afresh
    for k in [K_TOTAL, K_LAST] + [k for k in st.session_state if str(k).startswith("opt.whatif.")]:
        st.session_state.pop(k, None)
    st.session_state[K_SCOPE] = scope


# ------------------------------------------------------------------------------------ the plan (a fragment)
def _settings_controls():
    """The plan's settings, in the main area so that a move reruns only this fragment."""
    with st.container(border=True):
        a, b, c = st.columns([2, 2, 2])
        objective = a.radio("Objective", list(S.OBJECTIVES), format_func=S.OBJECTIVES.get, key=K_OBJECTIVE)
        max_change_pct = b.slider("Max change per campaign (%)", 0, 200, 30, step=5, key=K_MAX_CHANGE)
        threshold = c.slider("Auto-approve confidence threshold", 0, 100, 80, key=K_THRESHOLD,
                             help="Changes at or above this confidence are marked for auto-approval.")
        d, e, f = st.columns([2, 2, 2])
        within = d.toggle("Stay within the observed spend", value=True, key=K_WITHIN,
                          help="On: no budget goes beyond the lowest/highest daily spend seen (plus the margin). Off: "
                               "such budgets are allowed, marked extrapolated, and their confidence is capped.")
        margin_pct = e.slider("Evidence margin (%)", 0, 100, 20, step=5, key=K_MARGIN,
                              help="How far beyond the observed daily spend still counts as evidence.")
        target_shown = f.number_input(metric.target_label, 0.01, 1_000_000.0, 3.0 if metric.money else 20.0, step=0.1,
                                      key=K_TARGET, help="Used by the target objectives, bid suggestions and targeting advice.")
        floor = 1.0
        if objective == "floor":
            floor = f.number_input("Marginal ROAS floor" if metric.money else f"Highest marginal cost per {metric.unit}",
                                   0.01, 1_000_000.0, 1.0, step=0.05, key=K_FLOOR)
            floor = metric.to_ratio(floor) if not metric.money else floor
    return objective, max_change_pct / 100.0, threshold, within, margin_pct / 100.0, target_shown, floor


def _limit_controls(current: np.ndarray, noun: str):
    """Per-entity min / max / lock. The widgets are drawn only while their expander is open (a move of any
    setting then redraws none of them); the values live on in ``K_LIMITS`` when it is closed."""
    statuses = entities.set_index("external_id")["status"].to_dict() if not entities.empty else {}
    kept: dict = st.session_state.setdefault(K_LIMITS, {})

    def value(cid: str, field: str):
        if field == "lock":
            return kept.get((cid, field), statuses.get(cid, "ACTIVE") not in ("ACTIVE", None))  # paused entities start locked
        return kept.get((cid, field))

    box = st.expander(f"Per-{noun} limits and locks", expanded=False, key=K_LIMITS_OPEN, on_change="rerun")
    if box.open:
        with box:
            h = st.columns([3, 1, 1, 1, 1])
            for col, text in zip(h, [noun.capitalize(), f"Today ({currency})", "Min", "Max", "Lock"]):
                col.markdown(f"**{text}**")
            for i, (cid, name) in enumerate(zip(ids, names)):
                r = st.columns([3, 1, 1, 1, 1])
                r[0].write(name)
                r[1].write(format_money(current[i], currency))
                for field in ("min", "max", "lock"):  # kept while closed; value=None only (no Streamlit warning)
                    key = f"opt.{cid}.{field}"
                    st.session_state[key] = st.session_state.get(key, value(cid, field))
                kept[(cid, "min")] = r[2].number_input("min", min_value=0.0, value=None, step=1.0, key=f"opt.{cid}.min",
                                                       label_visibility="collapsed")
                kept[(cid, "max")] = r[3].number_input("max", min_value=0.0, value=None, step=1.0, key=f"opt.{cid}.max",
                                                       label_visibility="collapsed")
                kept[(cid, "lock")] = r[4].checkbox("lock", key=f"opt.{cid}.lock", label_visibility="collapsed",
                                                    help="Keep today's budget (paused entities start locked).")
    mins = {cid: value(cid, "min") for cid in ids}
    maxs = {cid: value(cid, "max") for cid in ids}
    locked = [cid for cid in ids if value(cid, "lock")]
    return (tuple(sorted((k, v) for k, v in mins.items() if v is not None)),
            tuple(sorted((k, v) for k, v in maxs.items() if v is not None)), tuple(sorted(locked)))


def _total_slider(problem, disabled: bool) -> float:
    """The total-budget slider over exactly the totals the limits make feasible (whole units of money)."""
    lo, hi = problem.feasible_total
    today = float(problem.current.sum())
    lo_s = float(np.ceil(lo - 1e-9))
    hi_s = float(np.floor(min(hi, max(3.0 * today, lo_s + 1.0)) + 1e-9)) if np.isfinite(hi) else float(max(np.ceil(3.0 * today), lo_s + 1.0))
    if hi_s <= lo_s:  # the limits leave (almost) one total: nothing to slide
        st.caption(f"Total daily budget fixed by the limits at {format_money(lo, currency, code=True)}.")
        return float(lo)
    # the chosen total, kept across range changes (a slider whose range changes would otherwise restart at its
    # minimum); a total outside the new range moves to its nearest end
    kept = st.session_state.get(K_TOTAL)
    wanted = float(round(today)) if kept is None else float(kept)
    st.session_state[K_TOTAL] = float(min(max(wanted, lo_s), hi_s))
    return float(st.slider(f"Total daily budget ({currency})", lo_s, hi_s, step=1.0, key=K_TOTAL, disabled=disabled,
                           help=f"From {format_money(lo, currency)} to {format_money(hi, currency)}: the totals the max change, the per-{problem.level.noun} limits "
                                "and the observed spend allow."))


#: What can make a setting unusable; the page then keeps the last feasible plan on screen with the reason.
PLAN_ERRORS = (InfeasibleError, S.OptimizerInputError, SettingsError, LevelError, MetricError, CurveFitError, ValueError)


@st.fragment
def plan_section() -> None:
    """Settings and limits -> the problem; the total budget and everything it moves are a fragment inside
    (`plan_result`), so a move of the total slider does not redraw the settings."""
    objective, max_change, threshold, within, margin, target_shown, floor = _settings_controls()
    try:
        base = _problem(data_key, level, metric_key, curve_model, max_change, within, margin, ((), (), ()), float(threshold))
        limits = _limit_controls(base.current, base.level.noun)
        problem_key = (data_key, level, metric_key, curve_model, max_change, within, margin, limits, float(threshold))
        _problem(*problem_key)
    except PLAN_ERRORS as exc:
        _show_last_feasible(exc)
        return
    plan_result(problem_key, objective, float(target_shown), float(floor))


@st.fragment
def plan_result(problem_key: tuple, objective: str, target_shown: float, floor: float) -> None:
    """Total budget -> solution -> KPIs, tables, curves, recommendations (from the cached problem)."""
    try:
        problem = _problem(*problem_key)
        total = _total_slider(problem, disabled=objective not in ("value", "cap"))
        rec, table, recs = _solved(problem_key, (objective, total, target_shown, floor))
    except PLAN_ERRORS as exc:
        _show_last_feasible(exc)
        return
    st.session_state[K_LAST] = (scope, rec, table, recs, problem.current)
    _show_plan(rec, table, recs, False)


def _show_last_feasible(exc: Exception) -> None:
    """The reason the settings cannot be met, and the last feasible plan of this scope (if any) marked stale."""
    last = st.session_state.get(K_LAST)
    st.error(f"These settings cannot be met: {plain(exc)}")
    if not last or last[0] != scope:
        st.caption("No feasible plan yet under these settings: loosen the limits above.")
        return
    _, rec, table, recs, _current = last
    st.info("Showing the last feasible plan; change the settings above to update it.")
    _show_plan(rec, table, recs, True)


def _show_plan(rec, table, recs, stale: bool) -> None:
    lvl = rec.level
    noun = lvl.noun
    alloc = rec.allocation
    labels = _labels(metric, noun)
    st.caption(f"Optimizing **{lvl.describe()}** — maximizing {metric.label}. {rec.objective.describe(currency).capitalize()}.")
    for note in rec.notes:
        st.info(note)
    tot = table.iloc[-1]
    m = st.columns(5)
    m[0].metric(f"Total daily budget ({currency})", format_money(rec.stated_total, currency),
                S.signed(tot["budget_after"] - tot["budget_before"], money_places(currency)))
    m[1].metric(f"{metric.value_label} a day" + (f" ({currency})" if metric.money else ""), _figure(tot["value_after"], metric.money),
                S.signed(tot["value_after"] - tot["value_before"], _places(metric.money)))
    eff_now, eff_new = metric.efficiency(tot["roas_before"]), metric.efficiency(tot["roas_after"])
    m[2].metric(metric.efficiency_label, _figure(eff_new, not metric.money), S.signed(eff_new - eff_now, _places(not metric.money)),
                delta_color="normal" if metric.money else "inverse")
    lam = metric.efficiency(rec.hurdle) if np.isfinite(rec.hurdle) else float("nan")
    m[3].metric(metric.marginal_label + " (λ)", _figure(lam, not metric.money) if np.isfinite(lam) else "—",
                help="What the last unit of money earns at the proposed budgets (the same for every entity not held by a limit).")
    m[4].metric("Plan confidence", f"{rec.plan_confidence:.0f}" if np.isfinite(rec.plan_confidence) else "—",
                help="Probability (0-100) under the curves' uncertainty that the whole plan beats today's budgets, "
                     "never more than its weakest material change.")
    st.caption(plain(CONFIDENCE_MEANING))
    a = rec.assessment
    if a is not None and not a.limiting.empty:
        lines = "\n".join(f"- **{plain(r.label)}** — confidence {r.confidence:.0f}: {plain(r.why)}"
                          for r in a.limiting.head(5).itertuples())
        st.markdown(f"**What limits the plan's confidence** (model probability {a.plan_model:.0f}; the plan states no more "
                    f"than its weakest material change):\n{lines}")
    st.subheader("Before / after")
    shown = _shown(table, metric).drop(columns=["held"], errors="ignore")  # the code is for programs: the download keeps it
    st.dataframe(shown, key="opt.before_after", hide_index=True, width="stretch",
                 column_config=_columns(shown, labels, currency, metric.money))
    download_csv(table, "Download before/after (CSV)", "allocation.csv", key="opt.download")

    current = rec.budget_table["current_budget"].to_numpy(float)
    proposal = alloc.budgets
    _curve_section(current, None if stale else proposal, noun)
    _recommendations(rec, recs, stale)


def _curve_spec(i: int, today: float, proposed: float | None) -> dict:
    """The curve chart of entity ``i`` as a Vega-Lite dict: the observed spend (shaded), the curve with its
    5-95 % band, the days, and today's / the proposed budget. The heavy part is cached per entity and x range;
    only the two markers change with the proposal (no Altair: its validation costs more than the answer)."""
    seen_max = float(curves.diagnostics["observed_max"].iloc[i]) if "observed_max" in curves.diagnostics.columns else 0.0
    top = 1.3 * max(seen_max, today, proposed or 0.0, 1.0)
    top = float(1.1 ** np.ceil(np.log(top) / np.log(1.1)))  # x ranges in 10 % steps: few cached variants
    points, line, seen = _curve_frames(data_key, level, metric_key, curve_model, i, top)
    marks = pd.DataFrame({"which": ["today"] + (["proposed"] if proposed is not None else []),
                          "spend": [today] + ([proposed] if proposed is not None else [])})
    marks["value"] = curves.subset(np.array([i])).predict(marks["spend"].to_numpy(float)[:, None])[:, 0]
    y_top = 1.5 * max(float(points["value"].max()) if len(points) else 0.0, float(line["value"].max()), 1.0)
    x = {"field": "spend", "type": "quantitative", "title": f"Daily spend ({currency})"}
    y_scale = {"domain": [0.0, y_top], "clamp": True}  # a wide band must not flatten the curve
    unit = currency if metric.money else metric.label
    tip = [{"field": "spend", "type": "quantitative"}, {"field": "value", "type": "quantitative"}]
    return {
        "title": names[i],
        "datasets": {"seen": seen, "line": line, "points": points, "marks": marks},
        "layer": [
            {"data": {"name": "seen"}, "mark": {"type": "rect", "opacity": 0.07},
             "encoding": {"x": {"field": "lo", "type": "quantitative"}, "x2": {"field": "hi"}}},
            {"data": {"name": "line"}, "mark": {"type": "area", "opacity": 0.2},
             "encoding": {"x": x, "y": {"field": "low", "type": "quantitative", "scale": y_scale,
                                        "title": f"Daily {metric.label} ({unit}; band: 5-95 %)"}, "y2": {"field": "high"}}},
            {"data": {"name": "line"}, "mark": {"type": "line"},
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "scale": y_scale}}},
            {"data": {"name": "points"}, "mark": {"type": "circle", "size": 30, "opacity": 0.6},
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "scale": y_scale},
                          "tooltip": [{"field": "date", "type": "temporal"}] + tip}},
            {"data": {"name": "marks"}, "mark": {"type": "rule", "strokeDash": [4, 3], "size": 2},
             "encoding": {"x": x, "color": {"field": "which", "type": "nominal", "title": ""},
                          "tooltip": [{"field": "which", "type": "nominal"}] + tip}},
        ],
    }


@st.cache_data(max_entries=256, show_spinner=False)
def _curve_frames(data_key_: tuple, level_: str, metric_: str, curve_: str, i: int, top: float):
    """(observed days, curve with band, observed spend range) of entity ``i`` on [0, top] (cache_data: copies)."""
    curves_ = _curves(data_key_, level_, metric_, curve_)
    points, line, _ = S.curve_chart_frames(curves_, _draws(data_key_, level_, metric_, curve_), i, top / 1.3, None)
    spent = points["spend"][points["spend"] > 0]
    seen = pd.DataFrame({"lo": [float(spent.min()) if len(spent) else 0.0], "hi": [float(spent.max()) if len(spent) else 0.0]})
    return points, line, seen


@st.cache_resource(max_entries=16, show_spinner=False)
def _draws(data_key_: tuple, level_: str, metric_: str, curve_: str) -> np.ndarray:
    return _curves(data_key_, level_, metric_, curve_).sample(N_DRAWS, seed=0)


def _curve_section(current: np.ndarray, proposal: np.ndarray | None, noun: str) -> None:
    st.subheader("Response curves")
    diag = curves.diagnostics
    pick = st.selectbox(noun.capitalize(), range(len(ids)), format_func=lambda i: names[i], key=K_PICK)
    st.vega_lite_chart(_curve_spec(int(pick), float(current[pick]), None if proposal is None else float(proposal[pick])),
                       width="stretch", key="opt.curve_chart")
    warn = str(diag["warnings"].iloc[pick]) if "warnings" in diag.columns else ""
    seen = f"observed daily spend {_figure(diag['observed_min'].iloc[pick])}–{_figure(diag['observed_max'].iloc[pick])} (shaded)" \
        if "observed_min" in diag.columns else ""
    st.caption(f"Fit: R² {diag['r2'].iloc[pick]:.2f}, {int(diag['points_used'].iloc[pick])} days used; {seen}. The band widens "
               "beyond the observed spend, where the curve's slope is no longer known." + (f" ⚠️ {warn}" if warn else ""))


def _plan_on_screen():
    """(today's budgets, proposed budgets, noun) of the plan the plan section shows now (the last feasible
    one), or None before there is one. Read at the time of use: the plan moves without the what-if."""
    last = st.session_state.get(K_LAST)
    if not last or last[0] != scope:
        return None
    rec = last[1]
    return rec.budget_table["current_budget"].to_numpy(float), np.asarray(rec.allocation.budgets, float), rec.level.noun


def _whatif_tops(current: np.ndarray, proposal: np.ndarray) -> list[float]:
    """Each what-if slider's top: room above today, the observed spend and the proposal."""
    seen = curves.diagnostics["observed_max"].to_numpy(float) if "observed_max" in curves.diagnostics.columns else np.zeros(len(ids))
    return np.ceil(np.maximum.reduce([np.full(len(ids), 10.0), 3.0 * current, 1.5 * np.nan_to_num(seen), proposal])).tolist()


def _set_whatif(which: str) -> None:
    """Start the what-if from today's budgets or from the proposal on screen at the moment of the click."""
    plan = _plan_on_screen()
    if plan is None:
        return
    current, proposal, _ = plan
    values = current if which == "today" else proposal
    for cid, v, top in zip(ids, values, _whatif_tops(current, proposal)):
        st.session_state[whatif_key(cid)] = float(min(round(float(v), money_places(currency)), top))


@st.fragment
def whatif_section() -> None:
    """Edit budgets -> predicted value, ROAS and marginal ROAS with a band; save and compare scenarios.

    A fragment of its own beside the plan (not inside it): a move of a plan setting does not redraw it,
    and its buttons read the plan on screen when clicked."""
    plan = _plan_on_screen()
    if plan is None:  # no feasible plan yet: the plan section says why
        return
    current, proposal, noun = plan
    st.subheader("What-if")
    tops = _whatif_tops(current, proposal)
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("Start from today", key="opt.whatif.from_today", on_click=_set_whatif, args=("today",))
    b2.button("Start from the proposal", key="opt.whatif.from_proposal", on_click=_set_whatif, args=("proposal",))
    cols = st.columns(min(4, max(1, len(ids))))
    budgets = np.empty(len(ids))
    for i, cid in enumerate(ids):
        key = whatif_key(cid)
        kept = st.session_state.get(key)
        # a default without value= (no Streamlit warning), kept across range changes, inside the range
        st.session_state[key] = float(min(max(round(float(current[i] if kept is None else kept), money_places(currency)), 0.0), tops[i]))
        budgets[i] = cols[i % len(cols)].slider(names[i], 0.0, tops[i], step=10.0 ** -money_places(currency), key=key)
    w = what_if(curves, budgets, n_draws=N_DRAWS)
    t = w.total
    m = st.columns(4)
    m[0].metric(f"What-if daily budget ({currency})", format_money(S.display(t['budget'], money_places(currency)), currency))
    m[1].metric(f"{metric.value_label} a day" + (f" ({currency})" if metric.money else ""), _figure(t["value"], metric.money))
    m[2].metric(metric.efficiency_label, _figure(metric.efficiency(t["roas"]), not metric.money))
    m[3].metric(metric.marginal_label, _figure(metric.efficiency(t["marginal_roas"]), not metric.money))
    st.caption(f"{t['level']:.0%} band of the predicted {metric.label}: {_figure(t['value_lo'], metric.money)} – "
               f"{_figure(t['value_hi'], metric.money)}")
    wt = _shown(w.table[["entity_name", "budget", "value", "value_lo", "value_hi", "roas", "marginal_roas"]], metric)
    labels = _labels(metric, noun)
    st.dataframe(wt, key="opt.whatif.table", hide_index=True, width="stretch", column_config=_columns(wt, labels, currency, metric.money))

    s1, s2 = st.columns([3, 1], vertical_alignment="bottom")
    name = s1.text_input("Scenario name", key="opt.scenario_name", placeholder="e.g. push search")
    if s2.button("Save scenario", key="opt.save_scenario"):
        try:
            save_scenario(eng, name, curves, budgets, workspace_id=ws, actor=actor())
            st.success(f"Saved scenario {plain(repr(name.strip()))}.")
        except ValueError as exc:
            st.error(plain(exc))
    saved = list_scenarios(eng, workspace_id=ws)
    saved = saved[saved["currency"].isna() | (saved["currency"] == currency)]  # another currency's scenarios do not apply here
    if saved.empty:
        st.caption("No saved scenarios yet." if len(currency_options) <= 1 else f"No saved scenarios in {plain(currency)} yet.")
        return
    sv = saved[["name", "created_at", "budget", "value", "roas"]]
    st.dataframe(sv, key="opt.scenarios", hide_index=True, width="stretch", column_config=_columns(sv, labels, currency, metric.money))
    chosen = st.multiselect("Compare scenarios side by side", saved["name"].tolist(), key="opt.compare")
    if chosen:
        try:
            scen: dict = {n: load_scenario(eng, n, workspace_id=ws) for n in chosen}
            scen["(what-if)"] = budgets
            cmp_ = compare_scenarios(curves, scen, n_draws=N_DRAWS)
            st.dataframe(cmp_, key="opt.compare_table", hide_index=True, width="stretch", column_config=_columns(cmp_, labels, currency))
        except (KeyError, ValueError) as exc:
            st.error(f"Cannot compare: {plain(exc)}")


def _recommendations(rec, recs: pd.DataFrame, stale: bool) -> None:
    st.subheader("Recommendations")
    if currency:
        st.caption(f"Budgets and bids in {plain(currency)}.")
    if recs.empty:
        st.info("Nothing to change: today's budgets are already the best the evidence supports under these settings.")
    else:
        labels = _labels(metric, rec.level.noun)
        st.dataframe(recs, key="opt.recommendations", hide_index=True, width="stretch",
                     column_config={**_columns(recs, labels),
                                    "confidence": st.column_config.ProgressColumn(labels["confidence"], min_value=0, max_value=100, format="%.0f")})
    other = rec.advice[~rec.advice["kind"].isin(["pause"])] if not rec.advice.empty else rec.advice
    if not other.empty:
        st.markdown("**Advice** (not executable changes)")
        adv = other[["entity_name", "kind", "reason", "confidence"]]
        st.dataframe(adv, key="opt.advice", hide_index=True, width="stretch", column_config=_columns(adv, _labels(metric, rec.level.noun)))
    if not recs.empty and source.kind == "dataset":
        st.caption("These come from an imported file, not a connected account: a plan can be reviewed but only executed "
                   "against a connected account with the same ids.")
    if not rec.level.executable:
        st.caption(f"This account's budgets live at {rec.level.budget_level.replace('_', ' ')} level: a plan of {rec.level.noun} "
                   "budgets can be reviewed but its budget changes will be refused by the platform.")
    if stale or recs.empty:
        return
    if st.button("Freeze into a draft change plan for review", type="primary", key="opt.freeze"):
        # built in the script body from the recommendations on screen (not in a callback), so the plan is what was shown
        plan_ids = []
        try:
            for (platform, account), drafts in S.plan_groups(rec.changes).items():
                plan_ids.append(create_plan(eng, ws, drafts, actor=actor(),
                                            name=f"Optimizer: {rec.objective.describe(currency)} ({account}, {rec.level.describe()})"))
        except ChangePlanError as exc:
            st.error(f"Cannot create the plan: {plain(exc)}")
        if plan_ids:
            st.session_state[K_REVIEW_PLAN] = plan_ids[0]
            st.session_state[K_LAST_PLANS] = plan_ids
            if (Path(__file__).parent / Path(REVIEW_PAGE).name).exists():
                st.switch_page(REVIEW_PAGE)
            st.success(f"Draft plan(s) {', '.join(f'#{p}' for p in plan_ids)} created; open the Review page to preview and approve.")


plan_section()
whatif_section()
