"""Attribution page: pick a data set and model parameters, run every model, compare them side by side.

Thin: computing, storing and reopening runs, and every table the charts draw, live in
`core.attribution_runs`. The run on screen is a stored run: its id is kept in the URL (``?run=``)
and, as the run opened last, in the database; a refresh or a new session reopens it without recomputing.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import attribution_runs as ar
from core.attribution import calibration as cal
from core.attribution import lift_store
from core.attribution.compare import MODEL_EXPLANATIONS, default_models
from core.money import money_table
from ui import attribution_charts as charts
from ui.context import actor, database_url, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

MODEL_LABELS = {
    "first": "First touch",
    "last": "Last touch",
    "linear": "Linear",
    "position": "Position based",
    "time_decay": "Time decay",
    "markov": "Markov chain",
    "shapley": "Shapley (coalition conversions)",
    "shapley_rate": "Shapley (incremental conversion rate)",
    "data_driven": "Data-driven (fitted model)",
}
LEVEL_LABELS = {"channel": "channel", "campaign": "channel:campaign"}

st.title("🧭 Attribution")
eng, ws, url = engine(), workspace(), database_url()


@st.cache_data(max_entries=32, show_spinner=False)
def _run(url: str, ws: str, run_id: int) -> ar.StoredRun:
    """A stored run (immutable once stored, so its id is a complete cache key with database + workspace)."""
    return ar.load_run(eng, ws, run_id)


@st.cache_data(max_entries=32, show_spinner=False)
def _currency(url: str, ws: str, run_id: int) -> str:
    """The currency of a stored run's values (stored with it; older runs read their data set's once)."""
    return ar.run_currency(eng, ws, _run(url, ws, run_id))


@st.cache_resource(max_entries=4, show_spinner="Rebuilding the run's journeys…")
def _drill_inputs(url: str, ws: str, run_id: int):
    """Journeys and the refitted rate game of a run, for looking up one user's journeys."""
    run = ar.load_run(eng, ws, run_id)
    paths, journeys = ar.load_inputs(eng, ws, run.params)
    return ar.drilldown_result(run, paths), journeys


def _set_run(run_id: int) -> None:
    """Show this run: in the session, in the URL (shareable) and in the database (reopens after a refresh)."""
    st.session_state["attr.run_id"] = int(run_id)
    st.query_params["run"] = str(run_id)
    ar.mark_opened(eng, ws, int(run_id), actor=actor())


# ------------------------------------------------------------------------------------ data set
datasets = ar.list_attributable_datasets(eng, ws)
if datasets.empty:
    st.info("This workspace has no journey or path data yet: import events or a path table on the Data page.")
    st.stop()
names = dict(zip(datasets["id"].astype(int), datasets["name"]))
kinds = dict(zip(datasets["id"].astype(int), datasets["kind"]))


def _url_run() -> int | None:
    try:
        return int(st.query_params.get("run", ""))
    except ValueError:
        return None


if st.session_state.get("attr.dataset") not in names:
    # First load of the session: the run in the URL, else the run opened last (stored in the database),
    # else the workspace's latest run; its data set is selected.
    runs_all = ar.list_runs(eng, ws)
    ds_of = dict(zip(runs_all["id"].astype(int), runs_all["dataset_id"].astype(int)))
    start = _url_run() if _url_run() in ds_of else ar.last_opened_run(eng, ws)
    if start is None and len(runs_all):
        start = int(runs_all["id"].iloc[0])
    st.session_state["attr.dataset"] = int(datasets["id"].iloc[0])
    if start is not None and ds_of[start] in names:
        st.session_state["attr.dataset"] = ds_of[start]
        st.session_state["attr.run_id"] = start

dataset_id = st.selectbox("Data set", list(names), format_func=lambda i: f"{names[i]} ({kinds[i]})", key="attr.dataset")
path_level = kinds[dataset_id] == "paths"


def _current_run(runs: pd.DataFrame) -> int | None:
    """The run to show: the one picked in this session, else the URL's, else the data set's run opened
    last (from the database), else its latest."""
    ids = runs["id"].astype(int).tolist()
    opened = runs[runs["opened_at"] != ""].sort_values(["opened_at", "id"], ascending=False)["id"].astype(int).tolist()
    for candidate in (st.session_state.get("attr.run_id"), _url_run(), *opened[:1]):
        if candidate in ids:
            return int(candidate)
    return ids[0] if ids else None


runs = ar.list_runs(eng, ws, dataset_id)
current = _current_run(runs)

# ------------------------------------------------------------------------------------ parameters
models_all = list(ar.model_names())
# One rule with the command line: what this data cannot run is left out of the default selection, said so.
models_offered, left_out = default_models(timestamps=not path_level)
# Widgets start from the shown run's parameters (so a reopened run can be re-run with a tweak).
shown_params = _run(url, ws, current).params if current is not None else None
def _load_params(params) -> None:
    """Put a run's parameters into the parameter widgets."""
    st.session_state.update({
        "attr.lookback": params.lookback_days, "attr.level": params.level, "attr.models": list(params.models),
        "attr.order": params.order, "attr.pos_first": params.position_shares[0], "attr.pos_last": params.position_shares[1],
        "attr.half_life": params.half_life_days, "attr.bootstrap": params.bootstrap})


defaults = {"attr.lookback": 30.0, "attr.level": "channel", "attr.models": models_offered, "attr.order": 1,
            "attr.pos_first": 0.4, "attr.pos_last": 0.4, "attr.half_life": 7.0, "attr.bootstrap": 100}
if shown_params is not None:
    defaults.update({"attr.lookback": shown_params.lookback_days, "attr.level": shown_params.level,
                     "attr.models": list(shown_params.models), "attr.order": shown_params.order,
                     "attr.pos_first": shown_params.position_shares[0], "attr.pos_last": shown_params.position_shares[1],
                     "attr.half_life": shown_params.half_life_days, "attr.bootstrap": shown_params.bootstrap})
if st.session_state.get("attr.models_for") != dataset_id:  # another data set: its own default selection
    st.session_state["attr.models"] = [m for m in defaults["attr.models"] if m in models_offered] or models_offered
    st.session_state["attr.models_for"] = dataset_id
for key, value in defaults.items():
    st.session_state.setdefault(key, value)

with st.container(border=True):
    c1, c2, c3 = st.columns([1, 1, 2])
    lookback = c1.number_input("Lookback (days)", min_value=1.0, max_value=365.0, step=1.0, key="attr.lookback", format="%g",
                               disabled=path_level, help="Touches older than this before a conversion are not part of its journey.")
    level = c2.radio("Level", list(LEVEL_LABELS), format_func=LEVEL_LABELS.get, key="attr.level", horizontal=True,
                     disabled=path_level, help="channel:campaign credits each campaign of a channel separately.")
    models = c3.multiselect("Models", models_all, format_func=lambda m: MODEL_LABELS.get(m, m), key="attr.models")
    for note in left_out:
        c3.caption(f"ℹ️ {note}.")
    c4, c5, c6, c7, c8 = st.columns(5)
    order = c4.selectbox("Markov order", [1, 2, 3, 4], key="attr.order", help="How many previous channels a state remembers.")
    pos_first = c5.number_input("Position: first share", min_value=0.0, max_value=1.0, step=0.05, key="attr.pos_first")
    pos_last = c6.number_input("Position: last share", min_value=0.0, max_value=1.0, step=0.05, key="attr.pos_last")
    half_life = c7.number_input("Time-decay half-life (days)", min_value=0.1, max_value=365.0, step=0.5,
                                key="attr.half_life", format="%g", disabled=path_level)
    boot = c8.number_input("Bootstrap replicates", min_value=0, max_value=ar.MAX_BOOTSTRAP, step=50, key="attr.bootstrap",
                           help="Resamples the journeys to give every credit an interval (0 = no intervals).")
    run_clicked = st.button("Run attribution", type="primary", key="attr.run")

if run_clicked:
    try:
        params = ar.RunParams(dataset_id, tuple(models), lookback_days=lookback, level="channel" if path_level else level,
                              order=order, position_shares=(pos_first, pos_last), half_life_days=half_life,
                              bootstrap=int(boot)).validated()
    except ar.RunError as exc:
        st.error(f"Cannot run: {plain(exc)}")
    else:
        with st.status("Running attribution…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")

            def _progress(fraction: float, text: str) -> None:
                bar.progress(min(max(float(fraction), 0.0), 1.0), text=plain(text))

            try:
                new = ar.execute_run(eng, ws, params, _progress, actor=actor())
            except ValueError as exc:  # RunError, PathTableError, JourneyError, IngestError
                status.update(label="Attribution failed", state="error", expanded=True)
                st.error(f"Cannot run: {plain(exc)}")
                shapley_models = [m for m in models if m.startswith("shapley")]
                if shapley_models and "Shapley" in str(exc):
                    def _drop_shapley() -> None:
                        st.session_state["attr.models"] = [m for m in st.session_state["attr.models"] if not m.startswith("shapley")]

                    st.button("Remove the Shapley models from the selection", key="attr.drop_shapley", on_click=_drop_shapley,
                              help="Shapley is exact over every channel coalition, so it is limited in the number of channels; "
                                   "the other models have no such limit.")
            else:
                _set_run(new.id)
                runs, current = ar.list_runs(eng, ws, dataset_id), new.id
                label = f"Reused stored run #{new.id} (same data and parameters)" if new.reused else f"Run #{new.id} done in {new.seconds:.1f} s"
                status.update(label=label, state="complete", expanded=False)

# ------------------------------------------------------------------------------------ which run
if current is None:
    st.info("No run of this data set yet: choose the models and press **Run attribution**.")
    st.stop()
st.session_state["attr.run_id"] = current
if st.query_params.get("run") != str(current):  # the run on screen changed (first load, another data set)
    _set_run(current)
st.session_state["attr.run_pick"] = current


def _pick() -> None:
    """Open the picked run, and start the parameter widgets from its parameters (to re-run it with a tweak)."""
    picked = int(st.session_state["attr.run_pick"])
    _set_run(picked)
    _load_params(_run(url, ws, picked).params)


run_ids = runs["id"].astype(int).tolist()
labels = dict(zip(run_ids, runs["label"]))
st.selectbox("Stored run", run_ids, format_func=labels.get, key="attr.run_pick", on_change=_pick)
run = _run(url, ws, current)
p = run.params
st.caption(
    f"Data set **{run.dataset_name}** · models: {', '.join(p.models)} · lookback {p.lookback_days:g} days · level "
    f"{LEVEL_LABELS[p.level]} · Markov order {p.order} · position {p.position_shares[0]:g}/{p.position_shares[1]:g} · "
    f"half-life {p.half_life_days:g} d · bootstrap {p.bootstrap} · computed in {run.seconds:.2f} s"
)

# ------------------------------------------------------------------------------------ table
table = ar.display_table(run)
if not p.bootstrap:  # no intervals: leave out the empty interval columns
    table = table.drop(columns=[c for c in ("conversions_low", "conversions_high", "value_low", "value_high", "interval")
                                if c in table.columns and table[c].replace("", None).isna().all()])
st.subheader("Credit by channel and model")
currency = _currency(url, ws, run.id)
in_currency = f" ({currency})" if currency else ""
st.dataframe(
    money_table(table, ar.VALUE_COLUMNS, currency),  # value at its currency's precision (KWD: fils, JPY: whole yen)
    key="attr.table",
    hide_index=True,
    width="stretch",
    column_config={
        "conversions": st.column_config.NumberColumn(format="%.2f"),
        "value": st.column_config.NumberColumn(f"value{in_currency}"),
        "share": st.column_config.NumberColumn(format="percent"),
        "conversions_low": st.column_config.NumberColumn("low (95%)", format="%.2f"),
        "conversions_high": st.column_config.NumberColumn("high (95%)", format="%.2f"),
        "value_low": st.column_config.NumberColumn(f"value low (95%){in_currency}"),
        "value_high": st.column_config.NumberColumn(f"value high (95%){in_currency}"),
    },
)
if "/" in currency:
    st.caption(f"ℹ️ The conversions of this data set are in {len(currency.split('/'))} currencies ({currency}): "
               "their values are credited as they are, not converted.")
download_csv(table, "Download CSV", f"attribution_run_{run.id}.csv", key="attr.download")
baseline = ar.baseline_info(run)
if baseline is not None:
    st.info(f"**Data-driven baseline:** {baseline['conversions']:,.1f} of the conversions ({baseline['share']:.1%}) would "
            f"have happened with no touch at all (a no-touch conversion rate of {baseline['rate']:.2%}); no channel is "
            f"credited with them. The channels share the other {baseline['incremental']:,.1f}. Model: {baseline['form']}.")
negative = ar.negative_note(run.details)
if negative:
    st.caption(f"ℹ️ {plain(negative)}.")
calibrated = run.extra.get("calibration")
if calibrated:
    st.info(f"This run adds **{calibrated['model']}{lift_store.CALIBRATED_SUFFIX}**: {calibrated['model']}'s credit "
            f"calibrated to lift tests {', '.join('#' + str(t) for t in calibrated['tests'])} (from run #{calibrated['from_run']}). "
            "The Optimizer can use it as attribution-adjusted value.")

# ------------------------------------------------------------------------------------ sections
# Only the section on screen is drawn, so a stored run re-renders in well under a second.
SECTIONS = {"credit": "Charts and journeys", "fit": "Model fit", "experiments": "Experiments", "paths": "Path explorer"}
evaluation = ar.run_evaluation(run)
if evaluation is not None:
    st.success(f"**Recommended: {MODEL_LABELS.get(evaluation.recommended, evaluation.recommended)}"
               + (f" (order {evaluation.recommended_order})" if evaluation.recommended == "markov" else "")
               + f"** — {evaluation.reason}. See *Model fit*.")
section = st.segmented_control("Show", list(SECTIONS), format_func=SECTIONS.get, default="credit", key="attr.section")


def _credit_section() -> None:
    """Charts of the credit, the single-journey drill-down and how each model works."""
    # ------------------------------------------------------------------------------------ charts
    st.subheader("Charts")
    t = run.table
    bars = alt.Chart(t).mark_bar().encode(
        x=alt.X("channel:N", title="Channel"),
        xOffset=alt.XOffset("model:N", sort=list(p.models)),
        y=alt.Y("conversions:Q", title="Credited conversions"),
        color=alt.Color("model:N", sort=list(p.models), title="Model"),
        tooltip=["channel", "model", alt.Tooltip("conversions:Q", format=".2f"), alt.Tooltip("share:Q", format=".1%"),
                 alt.Tooltip("conversions_low:Q", format=".2f"), alt.Tooltip("conversions_high:Q", format=".2f")],
    )
    credit_chart = bars
    if t["conversions_low"].notna().any():
        errors = alt.Chart(t).mark_errorbar(ticks=True).encode(
            x="channel:N", xOffset=alt.XOffset("model:N", sort=list(p.models)),
            y=alt.Y("conversions_low:Q", title="Credited conversions"), y2="conversions_high:Q",
        )
        credit_chart = alt.layer(bars, errors)
    st.markdown("**Credit by model**" + (" with 95% bootstrap intervals" if p.bootstrap else ""))
    st.altair_chart(credit_chart, width="stretch", key="attr.chart.credit")

    diff = ar.shapley_vs_markov(t)
    if not diff.empty:
        st.markdown("**Shapley minus Markov credit per channel**")
        st.altair_chart(
            alt.Chart(diff).mark_bar().encode(
                x=alt.X("channel:N", title="Channel"), xOffset="variant:N",
                y=alt.Y("difference:Q", title="Shapley − Markov (conversions)"), color=alt.Color("variant:N", title="Shapley variant"),
                tooltip=["channel", "variant", alt.Tooltip("difference:Q", format=".2f")],
            ),
            width="stretch", key="attr.chart.diff",
        )
    elif "markov" in p.models or any(m.startswith("shapley") for m in p.models):
        st.caption("The Shapley-vs-Markov chart needs both a Markov and a Shapley model in the run.")

    trans = ar.transition_frame(run)
    if not trans.empty:
        mk = run.details["markov"]
        st.markdown(f"**Markov transition probabilities** (order {mk['order']}, {mk['states']} states, "
                    f"P(conversion) = {mk['p_conversion']:.4f})")
        if mk["states"] > ar.MAX_HEATMAP_STATES:
            st.caption(f"Showing the {ar.MAX_HEATMAP_STATES} busiest states.")
        st.altair_chart(
            alt.Chart(trans).mark_rect().encode(
                x=alt.X("to:N", title="To"), y=alt.Y("from:N", title="From"),
                color=alt.Color("probability:Q", title="P", scale=alt.Scale(scheme="blues")),
                tooltip=["from", "to", alt.Tooltip("probability:Q", format=".3f")],
            ),
            width="stretch", key="attr.chart.transitions",
        )
        re = ar.removal_effects(run)
        st.markdown("**Removal effects**: the share of conversions lost if the channel disappeared")
        st.altair_chart(
            alt.Chart(re).mark_bar().encode(
                x=alt.X("removal_effect:Q", title="Removal effect", axis=alt.Axis(format="%")),
                y=alt.Y("channel:N", sort="-x", title="Channel"),
                tooltip=["channel", alt.Tooltip("removal_effect:Q", format=".2%"), alt.Tooltip("value_removal_effect:Q", format=".2%")],
            ),
            width="stretch", key="attr.chart.removal",
        )


    # ------------------------------------------------------------------------------------ drill-down
    st.subheader("One journey under every model")


    def _show_entry(entry: dict, key: str) -> None:
        split = ar.split_frame(entry)
        meta = [f"path **{plain(entry['path'])}**"]
        if entry.get("user_key"):
            meta.append(f"user {plain(entry['user_key'])}")
        if entry.get("end_ts"):
            meta.append(("converted " if entry.get("converted") else "ended ") + entry["end_ts"][:19].replace("T", " "))
        st.markdown(" · ".join(meta))
        if "data_driven" in p.models:
            st.caption("Data-driven shares add up to less than 100%: the rest of the conversion is the baseline's "
                       "(it would have happened with no touch).")
        wide = split.pivot(index="channel", columns="model", values="share").reindex(columns=list(p.models))
        st.dataframe(wide, key=f"{key}.table", width="stretch", column_config={m: st.column_config.NumberColumn(format="percent") for m in p.models})
        st.altair_chart(
            alt.Chart(split.dropna()).mark_bar().encode(
                x=alt.X("share:Q", stack="normalize", title="Share of the conversion", axis=alt.Axis(format="%")),
                y=alt.Y("model:N", sort=list(p.models), title="Model"), color=alt.Color("channel:N", title="Channel"),
                tooltip=["model", "channel", alt.Tooltip("share:Q", format=".1%")],
            ),
            width="stretch", key=f"{key}.chart",
        )


    drill = run.extra.get("drilldown", [])
    by_path, by_user = st.tabs(["Frequent converting paths", "By user key"])
    with by_path:
        if drill:
            # Start on the most frequent path with two or more channels: a one-channel path splits trivially.
            multi = next((i for i, d in enumerate(drill) if len(set(d["path"].split(" > "))) > 1), 0)
            # keyed by run: another run has other paths, and a kept index would show a stale label
            pick = st.selectbox("Path", range(len(drill)), index=multi, key=f"attr.drill_path.{run.id}",
                                format_func=lambda i: f"{drill[i]['path']}  ({drill[i]['conversions']:g} conversions)")
            _show_entry(drill[pick], "attr.drill")
        else:
            st.caption("This run stored no converting path.")
    with by_user:
        if kinds[dataset_id] == "paths":
            st.caption("A path-level data set has no user keys.")
        else:
            user_key = st.text_input("User key", key="attr.user_key", placeholder="e.g. a user id from the data set")
            if user_key:
                try:
                    result, journeys = _drill_inputs(url, ws, run.id)
                    entries = ar.user_drilldown(result, journeys, user_key)
                except ar.RunError as exc:
                    st.warning(plain(exc))
                else:
                    idx = st.selectbox("Journey", range(len(entries)), key=f"attr.user_journey.{run.id}.{user_key}",
                                       format_func=lambda i: f"{entries[i]['end_ts'][:16].replace('T', ' ')} · "
                                       + ("converted" if entries[i]["converted"] else "no conversion") + f" · {entries[i]['path']}")
                    _show_entry(entries[idx], "attr.user_drill")

    # ------------------------------------------------------------------------------------ explanations
    st.subheader("How each model assigns credit")
    for m in models_all:
        with st.expander(MODEL_LABELS.get(m, m), expanded=False):
            st.markdown(MODEL_EXPLANATIONS.get(m, ""))
            if m in run.details and isinstance(run.details[m], dict) and "characteristic_function" in run.details[m]:
                st.markdown(f"*Characteristic function:* v(S) = {run.details[m]['characteristic_function']}.")
                if "unobserved_rule" in run.details[m]:
                    st.markdown(f"*Coalitions never observed:* {run.details[m]['unobserved_rule']}.")



def _fit_section() -> None:
    """Held-out scores, the recommendation, calibration, Markov order; the data behind the credit."""
    # ------------------------------------------------------------------------------------ which model fits
    st.subheader("Which model fits this data?")
    if evaluation is None:
        st.caption("This run has no held-out evaluation: include the data-driven or the incremental-rate Shapley model "
                   "(or run `python -m core attribute FILE --evaluate`).")
    else:
        st.caption(f"Every model that predicts conversion was fitted on part of the journeys and scored on the rest "
                   f"({evaluation.folds}-fold cross-validation over journeys). Log loss rewards calibrated probabilities "
                   "(lower is better); AUC only ranking. Heuristics and coalition-conversions Shapley do not predict "
                   "conversion, so they cannot be scored this way.")
        st.dataframe(evaluation.scores.drop(columns=["journeys", "conversions"]), hide_index=True, width="stretch",
                     key="attr.eval.scores",
                     column_config={"log_loss": st.column_config.NumberColumn("log loss", format="%.4f"),
                                    "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
                                    "brier": st.column_config.NumberColumn("Brier", format="%.4f"),
                                    "seconds": st.column_config.NumberColumn("fit time (s)", format="%.2f")})
        download_csv(evaluation.scores, "Download scores (CSV)", f"attribution_run_{run.id}_scores.csv", key="attr.eval.download")
        if not evaluation.calibration.empty:
            st.markdown("**Calibration**: predicted against observed conversion rate on held-out journeys (on the diagonal = calibrated)")
            st.altair_chart(charts.calibration_chart(evaluation.calibration), width="stretch", key="attr.chart.calibration")
        mo1, mo2 = st.columns([3, 1])
        mo1.markdown(f"**Markov order:** {evaluation.markov_reason}.")
        if evaluation.markov_order != p.order:
            mo2.button(f"Use order {evaluation.markov_order} for the next run", key="attr.use_order",
                       on_click=lambda k=evaluation.markov_order: st.session_state.update({"attr.order": k}))
        for note in evaluation.notes:
            st.caption(f"ℹ️ {plain(note)}")  # notes name channels: text, never Markdown

    support = ar.support_frame(run)
    coefs = ar.coefficient_frame(run)
    if not support.empty or len(coefs):
        st.subheader("The data behind the credit")
    if not support.empty:
        strength = run.details["shapley_rate"]["shrinkage"]["strength"]
        st.markdown(f"**Incremental-rate Shapley**: each channel set's own conversion rate is shrunk toward the fitted "
                    f"model with the weight of {strength:,.0f} journeys (estimated from the data), so a set seen in few "
                    "journeys leans on the model. *Data weight* is how much of the rates behind a channel's credit "
                    "comes from its sets' own journeys.")
        st.dataframe(support, hide_index=True, width="stretch", key="attr.support",
                     column_config={"journeys": st.column_config.NumberColumn("journeys with the channel", format="%,.0f"),
                                    "converting_journeys": st.column_config.NumberColumn("converting", format="%,.0f"),
                                    "data_weight": st.column_config.NumberColumn("data weight", format="percent"),
                                    "smallest_set_journeys": st.column_config.NumberColumn(
                                        "journeys in its thinnest converting set", format="%,.0f")})
    if len(coefs):
        st.markdown("**Data-driven model coefficients** (effect: the channel's contribution to the conversion hazard "
                    "on a first touch; multipliers: how the effect changes when the channel opens or closes the journey)")
        st.dataframe(coefs, hide_index=True, width="stretch", key="attr.coefs")
        note = ar.unmeasured_note(run.details)
        if note:
            st.caption(f"ℹ️ {plain(note)}.")



def _experiments_section() -> None:
    """Lift tests: entry, each model against them, calibrated credit for the Optimizer."""
    # ------------------------------------------------------------------------------------ lift tests
    st.subheader("Calibrate to experiments")
    st.caption("Enter lift-test results (geo tests, conversion-lift studies): the channel, the period and the measured "
               "incremental conversions with their interval. Each model's credit in that period is compared with them, "
               "and the chosen model's credit can be calibrated to agree and saved as a run the Optimizer can use.")
    tests = lift_store.list_lift_tests(eng, ws)
    run_channels = sorted(run.table["channel"].astype(str).unique())
    with st.expander("Add a lift test", expanded=tests.empty):
        with st.form("attr.lift_form", clear_on_submit=True):
            f1, f2, f3 = st.columns(3)
            lt_channel = f1.selectbox("Channel", sorted({c.split(":")[0] for c in run_channels} | set(run_channels)), key="attr.lift.channel")
            lt_start = f2.date_input("Start", key="attr.lift.start", value=None)
            lt_end = f3.date_input("End (inclusive)", key="attr.lift.end", value=None)
            g1, g2, g3, g4 = st.columns(4)
            lt_point = g1.number_input("Incremental conversions", min_value=0.0, step=1.0, key="attr.lift.point")
            lt_low = g2.number_input("Interval low", min_value=0.0, step=1.0, key="attr.lift.low")
            lt_high = g3.number_input("Interval high", min_value=0.0, step=1.0, key="attr.lift.high")
            lt_source = g4.text_input("Source", placeholder="e.g. Meta conversion lift", key="attr.lift.source")
            if st.form_submit_button("Add lift test"):
                try:
                    lift_store.add_lift_test(eng, ws, cal.LiftResult(lt_channel, lt_start, lt_end, lt_point, lt_low, lt_high, lt_source),
                                           actor=actor())
                except cal.CalibrationError as exc:
                    st.error(f"Cannot add the test: {plain(exc)}")
                else:
                    st.rerun()
    if tests.empty:
        st.caption("No lift test in this workspace yet.")
    else:
        st.dataframe(tests, hide_index=True, width="stretch", key="attr.lift.tests")
        d1, d2 = st.columns([3, 1])
        gone = d1.selectbox("Delete a test", tests["id"].tolist(), index=None, key="attr.lift.delete_pick",
                            format_func=lambda i: f"#{i} " + tests.set_index("id").loc[i, "channel"], placeholder="choose a test")
        if d2.button("Delete", key="attr.lift.delete", disabled=gone is None):
            lift_store.delete_lift_test(eng, ws, int(gone), actor=actor())
            st.rerun()
        days, total_conv = lift_store.calibration_inputs(run)
        if days is None:
            st.caption("This data set is a path-level table without dates: each test is compared with the run's whole credit.")
        comparison = cal.compare(run.table, tests, days)
        if not comparison["in_run"].any():
            st.warning("None of the tested channels is in this run.")
        else:
            st.markdown("**Each model's credit in the test's period against the test**")
            st.altair_chart(charts.lift_chart(comparison[comparison["in_run"]]), width="stretch", key="attr.chart.lift")
            agree = comparison[comparison["in_run"]].groupby("model")["within_interval"].mean().sort_values(ascending=False)
            st.caption("Share of tests each model agrees with: " + ", ".join(f"{m} {v:.0%}" for m, v in agree.items()))
            base_models = [m for m in p.models if m in set(run.table["model"])]
            default_model = evaluation.recommended if evaluation is not None and evaluation.recommended in base_models else base_models[0]
            cal_model = st.selectbox("Calibrate the credit of", base_models, index=base_models.index(default_model),
                                     format_func=lambda m: MODEL_LABELS.get(m, m), key=f"attr.cal_model.{run.id}")
            try:
                frame, summary = cal.calibrate(run.table, cal_model, tests, days, total_conv)
            except cal.CalibrationError as exc:
                st.warning(plain(exc))
            else:
                st.altair_chart(charts.calibrated_chart(frame, cal_model), width="stretch", key="attr.chart.calibrated")
                st.caption(f"Tested channels moved into their tests' intervals; the others scaled by the pooled factor "
                           f"{summary['pooled_factor']:.2f}" + (" and then capped so no more conversions are credited than "
                                                               "happened" if summary["capped_at_total"] else "") + ".")
                st.dataframe(money_table(frame, ["model_value", "calibrated_value"], currency), hide_index=True,
                             width="stretch", key="attr.calibrated")
                if run.extra.get("calibration"):
                    st.caption("This run is already calibrated: open the run it came from to calibrate again.")
                elif st.button("Save calibrated credit as a run for the Optimizer", key="attr.cal_save"):
                    try:
                        new = lift_store.store_calibrated_run(eng, ws, run.id, cal_model)
                    except cal.CalibrationError as exc:
                        st.error(plain(exc))
                    else:
                        st.success(f"Stored as run #{new.id} (model **{cal_model}{lift_store.CALIBRATED_SUFFIX}**): choose it "
                                   "on the Optimizer as attribution-adjusted value." + (" (It existed already.)" if new.reused else ""))



def _paths_section() -> None:
    """The path explorer: common paths, Sankey of the first steps, distributions, roles."""
    # ------------------------------------------------------------------------------------ path explorer
    st.subheader("Path explorer")
    explore = run.extra.get("explorer")
    if not explore:
        st.caption("This run was stored before the path explorer existed: run it again to see its journeys.")
    else:
        frames = ar.explorer_frames(run)
        t_conv, t_null, t_sankey, t_dist, t_roles = st.tabs(
            ["Top converting paths", "Top non-converting paths", "First steps (Sankey)", "Time and touches to convert", "Roles"])
        with t_conv:
            st.dataframe(money_table(frames["top_converting"], ["value"], currency), hide_index=True, width="stretch",
                         key="attr.ex.conv", column_config={
                             "conversion_rate": st.column_config.NumberColumn("conversion rate", format="percent"),
                             "value": st.column_config.NumberColumn(f"value{in_currency}")})
        with t_null:
            st.dataframe(money_table(frames["top_non_converting"], ["value"], currency), hide_index=True, width="stretch",
                         key="attr.ex.null", column_config={
                             "conversion_rate": st.column_config.NumberColumn("conversion rate", format="percent"),
                             "value": st.column_config.NumberColumn(f"value{in_currency}")})
        with t_sankey:
            st.caption("Journeys by their first touches (the busiest channels at each step; the rest as (other)), then "
                       "how they ended. Longer journeys go to their outcome after the last step shown.")
            st.altair_chart(charts.sankey_chart(explore["sankey"]), width="stretch", key="attr.chart.sankey")
        with t_dist:
            if "time_to_convert" in frames:
                summ = explore.get("time_to_convert_summary") or {}
                if summ.get("median_days") is not None:
                    st.markdown(f"**Time to convert** (first touch to conversion): median {summ['median_days']:.1f} days, "
                                f"90% within {summ['p90_days']:.1f} days")
                st.altair_chart(charts.bar_chart(frames["time_to_convert"], "time_to_convert", "conversions", "Time to convert",
                                                 "Conversions", sort=None), width="stretch", key="attr.chart.ttc")
            else:
                st.caption("A path-level data set has no touch times: no time-to-convert.")
            st.markdown("**Touches to convert**")
            st.altair_chart(charts.bar_chart(frames["touches_to_convert"], "touches", "conversions", "Touches in the journey",
                                             "Conversions", sort=None), width="stretch", key="attr.chart.touches")
        with t_roles:
            st.caption("Converting journeys by the role each channel played: introducer (first touch), closer (last "
                       "touch), assister (in between) or solo (the only touch).")
            st.altair_chart(charts.roles_chart(frames["roles"]), width="stretch", key="attr.chart.roles")
            st.dataframe(frames["roles"], hide_index=True, width="stretch", key="attr.ex.roles")



{"credit": _credit_section, "fit": _fit_section, "experiments": _experiments_section, "paths": _paths_section}[
    section or "credit"]()
