"""One entry point for every attribution model: a tidy credit table, JSON details and journey drill-down."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.attribution import heuristics, incremental as incremental_model, markov, shapley, shrinkage
from core.attribution.bootstrap import percentile_interval, run_bootstrap
from core.attribution.drilldown import explain_journey, map_codes
from core.pathtable import NO_TOUCH, Journeys, PathTable, PathTableError

MODEL_NAMES: tuple[str, ...] = ("first", "last", "linear", "position", "time_decay", "markov", "shapley", "shapley_rate",
                                 "data_driven")
#: Models that need the fitted conversion model (and so the cross-validated choice of its form).
FITTED_MODELS = frozenset({"shapley_rate", "data_driven"})
JOURNEY_MODELS = frozenset({"time_decay"})

MODEL_EXPLANATIONS: dict[str, str] = {
    "first": "First touch: the whole conversion goes to the first channel of the journey.",
    "last": "Last touch: the whole conversion goes to the last channel before the conversion.",
    "linear": "Linear: every touch of the journey gets an equal part; a channel seen twice gets two parts.",
    "position": (
        "Position based: the first and last touches get fixed shares (40% each by default) and the touches "
        "in between share the rest equally. With two touches, first and last split it in that proportion."
    ),
    "time_decay": (
        "Time decay: touches closer to the conversion get more credit; a touch loses half its weight for "
        "every half-life (7 days by default) between it and the conversion. Needs touch times."
    ),
    "markov": (
        "Markov chain (removal effect): journeys are modelled as moves between channels (the last 1 to 4 "
        "channels at higher orders). A channel's credit is how much the overall conversion probability "
        "drops when that channel is removed, scaled so that all credit adds up to the real conversions."
    ),
    "shapley": (
        "Shapley, coalition conversions: a group of channels is worth the conversions of journeys that "
        "used only channels from that group; the fair (Shapley) split of that game gives every channel of "
        "a converting journey an equal part of it, counting each channel once."
    ),
    "shapley_rate": (
        "Shapley, incremental conversion rate: a group of channels is worth the conversion rate of the "
        "journeys that used exactly that group (non-converting journeys count). Each conversion is split "
        "by how much each of its channels adds to that rate, averaged over every order of adding them. "
        "A group's own rate is shrunk toward the fitted conversion model (empirical Bayes), so a group seen in "
        "a few journeys leans on the model and a group seen in thousands keeps its own rate; a group never seen "
        "takes the model's prediction. A channel that lowers the rate can get negative credit."
    ),
    "data_driven": (
        "Data-driven (fitted model): a regularized model of each journey's conversion probability from its "
        "channels (presence, touches per channel, first/last-touch roles or pairwise interactions; the form "
        "and penalty chosen by cross-validation) is fitted to every journey, converting or not. Each "
        "converting journey is split by the exact Shapley value of that model over its channels, as the ad "
        "platforms' data-driven attribution does: a channel gets the conversions it is expected to have "
        "caused. The conversions that would have happened with no touch at all (the baseline) go to no "
        "channel and are shown apart, so the credit adds up to the incremental conversions."
    ),
}

TABLE_COLUMNS = ["channel", "model", "conversions", "value", "share", "conversions_low", "conversions_high", "value_low", "value_high"]
_MAX_TRANSITIONS = 200_000


@dataclass(eq=False)
class AttributionResult:
    """``table``: tidy credit per (channel, model); ``details``: JSON-ready model internals and parameters.

    ``fitted`` keeps the in-memory fitted models (not serialised) for `explain_journey`.
    """

    table: pd.DataFrame
    details: dict
    fitted: dict = field(default_factory=dict, repr=False)

    def explain_journey(self, path: Sequence[str], touch_ts=None, end_ts=None) -> pd.DataFrame:
        return explain_journey(self, path, touch_ts, end_ts)


def unavailable_models(*, timestamps: bool, n_channels: int | None = None) -> dict[str, str]:
    """Models this data cannot run, each with the reason: the one rule the page and the command line share.

    ``timestamps``: the data has touch times (event-level journeys, not a path-level table);
    ``n_channels``: the number of channels, when known.
    """
    out: dict[str, str] = {}
    if not timestamps:
        for m in JOURNEY_MODELS:
            out[m] = ("needs event timestamps, and this input carries none (a path-level table, or events built into "
                      "paths by the sql or dask engine)")
    if n_channels is not None and n_channels > shapley.MAX_SHAPLEY_CHANNELS:
        for m in ("shapley", "shapley_rate"):
            out[m] = (f"is exact over every coalition of channels and supports at most {shapley.MAX_SHAPLEY_CHANNELS} "
                      f"channels; this data has {n_channels}")
    return out


def default_models(*, timestamps: bool, n_channels: int | None = None) -> tuple[list[str], list[str]]:
    """Every model this data can run (the default selection), and a note for each one left out."""
    left = unavailable_models(timestamps=timestamps, n_channels=n_channels)
    return [m for m in MODEL_NAMES if m not in left], [f"{m} is left out: it {why}" for m, why in left.items()]


def _normalise_models(models) -> list[str]:
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = list(models)
    if models == ["all"]:
        return list(MODEL_NAMES)
    if not models:
        raise ValueError(f"choose at least one model from: {', '.join(MODEL_NAMES)}")
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(map(repr, unknown))}; expected some of: {', '.join(MODEL_NAMES)}")
    return list(dict.fromkeys(models))


def _to_json_float(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def run_attribution(
    paths: PathTable | None,
    journeys: Journeys | None = None,
    models: Sequence[str] | str = MODEL_NAMES,
    *,
    order: int = 1,
    position_shares: tuple[float, float] = (0.4, 0.4),
    half_life_days: float = 7.0,
    bootstrap: int = 0,
    ci: float = 0.95,
    seed: int = 0,
    evaluate: bool | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> AttributionResult:
    """Run the chosen models on one PathTable (and Journeys for time decay) and compare them.

    ``paths`` may be None when ``journeys`` is given (it is then ``journeys.to_pathtable()``).
    ``bootstrap`` replicates (0 = none) give percentile intervals at level ``ci``. ``evaluate`` scores
    every model that predicts conversion on held-out journeys (`core.attribution.evaluate`; stored in
    ``details["evaluation"]``); it always runs when a model needs the fitted conversion model (the
    evaluation chooses that model's form), so ``evaluate=False`` only skips it for the other models.
    """
    # Every matrix here is small: BLAS threads only fight each other (and whatever else runs) for cores.
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_attribution(paths, journeys, models, order=order, position_shares=position_shares,
                                half_life_days=half_life_days, bootstrap=bootstrap, ci=ci, seed=seed,
                                evaluate=evaluate, progress=progress)


def model_paths(paths: PathTable) -> PathTable:
    """The paths the models are fitted on: all but the ``(no touch)`` pseudo paths. Conversions that had no
    touch are credited to ``(no touch)`` as they are, under every model; inside a model they would be a
    "channel" that always converts, which Markov's normalized removal effects, the rate game and the
    conversion model would then trade against the real channels (on a public journey table, Markov gave
    175 of 278 untouched conversions to channels)."""
    untouched = paths.no_touch_paths()
    return paths.subset(~untouched) if untouched.any() and not untouched.all() else paths


def _run_attribution(paths, journeys, models, *, order, position_shares, half_life_days, bootstrap, ci, seed, evaluate,
                     progress) -> AttributionResult:
    models = _normalise_models(models)
    if paths is None:
        if journeys is None:
            raise PathTableError("no data: give a PathTable or Journeys")
        paths = journeys.to_pathtable()
    paths.validate()
    all_paths, paths = paths, model_paths(paths)
    untouched = all_paths.no_touch_paths() if paths is not all_paths else np.zeros(all_paths.n_paths, dtype=bool)
    needs_journeys = [m for m in models if m in JOURNEY_MODELS]
    if needs_journeys and journeys is None:
        raise ValueError(
            f"model(s) {', '.join(needs_journeys)} need touch timestamps (Journeys); only a path table was given"
        )
    if journeys is not None and needs_journeys:
        heuristics.validate_journeys(journeys)
    position_shares = heuristics.check_position_shares(*position_shares)
    report = progress or (lambda fraction, message: None)
    channels = list(all_paths.channels)
    if journeys is not None and needs_journeys:
        channels += [c for c in journeys.channels if c not in set(all_paths.channels)]
    n_out = len(channels)
    path_map = map_codes(paths.channels, channels)
    journey_map = map_codes(journeys.channels, channels) if journeys is not None and needs_journeys else None

    def widen(arr: np.ndarray, mapping: np.ndarray) -> np.ndarray:
        out = np.zeros(n_out)
        out[mapping] = arr
        return out

    credit: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    details: dict = {
        "params": {
            "models": models,
            "order": int(order),
            "position_shares": list(position_shares),
            "half_life_days": float(half_life_days),
            "bootstrap": int(bootstrap),
            "ci": float(ci),
            "seed": int(seed),
        },
        "totals": {
            "conversions": all_paths.total_conversions,
            "value": all_paths.total_value,
            "nulls": all_paths.total_nulls,
            "paths": all_paths.n_paths,
            "channels": channels,
        },
    }
    if untouched.any():
        details["no_touch"] = {"conversions": float(all_paths.conversions[untouched].sum()),
                               "value": float(all_paths.value[untouched].sum()),
                               "rule": "conversions with no touch in their window are credited to (no touch) under every "
                                       "model; the models are fitted on the other journeys"}
    fitted: dict = {}
    path_refits: dict[str, Callable] = {}
    journey_refits: dict[str, Callable] = {}
    incremental = None
    # The models that use the conversion model need it fitted (its form chosen by cross-validation)
    # whatever ``evaluate`` says; ``evaluate=False`` only keeps the others from paying for it.
    fit_model = bool(evaluate or FITTED_MODELS & set(models))
    first_step = 1 if fit_model else 0  # the conversion model's fit counts as one step
    steps = first_step + len(models) + (1 if bootstrap else 0)
    if fit_model:
        report(0.0, "choosing the conversion model by cross-validation")
        sub = (lambda f, m: report(f / steps, m)) if progress else None
        incremental = incremental_model.fit_data_driven(paths, seed=seed, progress=sub)
        details["evaluation"] = incremental.evaluation.to_dict()
    heuristic_names = [m for m in models if m in heuristics.HEURISTIC_MODELS]
    if heuristic_names:
        report(first_step / steps, "fitting " + ", ".join(heuristic_names))
        for name, (c, v) in heuristics.heuristic_credits(paths, heuristic_names, position_shares).items():
            credit[name] = (widen(c, path_map), widen(v, path_map))
        if bootstrap:  # the bootstrap refits these as (resampled counts) @ (path x channel share matrix)
            positions = heuristics._touch_positions(paths)
            for name in heuristic_names:
                mat = heuristics.share_matrix(paths, name, position_shares, positions)
                path_refits[name] = lambda c, v, n, mat=mat: (widen(c @ mat, path_map), widen(v @ mat, path_map))
    masks = None
    for step, name in enumerate(models):
        if name in heuristics.HEURISTIC_MODELS:
            continue
        report((first_step + step) / steps, f"fitting {name}")
        if name == "time_decay":
            c, v = heuristics.time_decay_credit(journeys, half_life_days)
            credit[name] = (widen(c, journey_map), widen(v, journey_map))
            if bootstrap:
                mat = heuristics.time_decay_matrix(journeys, half_life_days)
                jc, jv = journeys.conversions, journeys.value
                journey_refits[name] = lambda w, mat=mat, jc=jc, jv=jv: (widen((w * jc) @ mat, journey_map), widen((w * jv) @ mat, journey_map))
        elif name == "markov":
            structure = markov.build_structure(paths, order)
            res = markov.solve(structure, paths.conversions, paths.value, paths.nulls)
            fitted["markov"] = res
            credit[name] = (widen(res.conversions, path_map), widen(res.value, path_map))
            # Replicates share the state graph (only the counts change) and warm-start from this fit.
            path_refits[name] = lambda c, v, n, s=structure, x0=res.solution: (lambda r: (widen(r.conversions, path_map), widen(r.value, path_map)))(
                markov.solve(s, c, v, n, x0=x0, rtol=markov.BOOTSTRAP_RTOL))
            tm = res.transition_matrix()
            truncated = len(tm["probability"]) > _MAX_TRANSITIONS
            if truncated:  # keep the most likely transitions; the page cannot show more anyway
                top = np.sort(np.argsort(tm["probability"])[::-1][:_MAX_TRANSITIONS])
                for key in ("from", "to", "probability"):
                    tm[key] = [tm[key][i] for i in top]
            tm["truncated"] = truncated
            details["markov"] = {
                "order": structure.order,
                "states": structure.n_states,
                "p_conversion": res.p_conversion,
                "expected_value": res.expected_value,
                "removal_effects": {c: float(x) for c, x in zip(paths.channels, res.removal_effects)},
                "value_removal_effects": {c: float(x) for c, x in zip(paths.channels, res.value_removal_effects)},
                "transition_matrix": tm,
            }
        elif name in ("shapley", "shapley_rate"):
            masks = shapley.coalition_masks(paths) if masks is None else masks
            n_ch = paths.n_channels
            if name == "shapley":
                res = shapley.shapley_zhao_from_masks(masks, n_ch, paths.conversions, paths.value)
                path_refits[name] = lambda c, v, n, masks=masks: (lambda r: (widen(r.conversions, path_map), widen(r.value, path_map)))(shapley.shapley_zhao_from_masks(masks, n_ch, c, v))
                extra = {"characteristic_function": "conversions of journeys whose channels are all in the coalition"}
            else:
                prior = incremental.rate_prior() if incremental is not None else None
                res = shapley.shapley_rate_from_masks(masks, n_ch, paths.conversions, paths.value, paths.nulls, prior)
                if prior is None:
                    path_refits[name] = lambda c, v, n, masks=masks: (lambda r: (widen(r.conversions, path_map), widen(r.value, path_map)))(
                        shapley.shapley_rate_from_masks(masks, n_ch, c, v, n))
                else:  # replicates keep the prior's means and re-estimate its strength
                    path_refits[name] = lambda c, v, n, masks=masks, mean=prior.mean: (lambda r: (widen(r.conversions, path_map), widen(r.value, path_map)))(
                        shapley.shapley_rate_from_masks(masks, n_ch, c, v, n, shrinkage.prior_from_counts(mean, masks, n_ch, c, n)))
                extra = {
                    "characteristic_function": "conversion rate of journeys whose channel set is exactly the coalition",
                    "unobserved_rule": "pooled conversion rate of the journeys whose channel set is a subset of the coalition (0 if none)"
                    if prior is None else "the fitted conversion model's prediction for that channel set",
                    "observed_coalitions": int(res.observed.sum()),
                    "coalitions": int(res.observed.shape[0]),
                }
                if prior is not None:
                    extra["shrinkage"] = {"strength": prior.strength, "prior": incremental.model.form.name,
                                          "model": incremental.model.to_dict()}
                    extra["support"] = shrinkage.channel_support(prior, masks, n_ch, paths.conversions, paths.nulls, paths.channels)
            fitted[name] = res
            credit[name] = (widen(res.conversions, path_map), widen(res.value, path_map))
            details[name] = {"shapley_values": {c: float(x) for c, x in zip(paths.channels, res.shapley_values)},
                             "negative_conversions": float(getattr(res, "negative_conversions", 0.0)), **extra}
        elif name == "data_driven":
            res = incremental.credit()
            fitted[name] = incremental.model
            credit[name] = (widen(res.conversions, path_map), widen(res.value, path_map))
            path_refits[name] = lambda c, v, n, inc=incremental: (lambda r: (widen(r.conversions, path_map), widen(r.value, path_map)))(
                inc.refit(c, v, n))
            details[name] = incremental.details(res, paths.channels)
    if untouched.any():
        nt = channels.index(NO_TOUCH)
        for name in credit:
            if name not in JOURNEY_MODELS:  # time decay reads the journeys, (no touch) ones included
                credit[name][0][nt] += details["no_touch"]["conversions"]
                credit[name][1][nt] += details["no_touch"]["value"]
        path_refits = {name: _with_untouched(refit, untouched, nt, n_out) for name, refit in path_refits.items()}
    intervals: dict[str, tuple[np.ndarray, ...]] = {}
    if bootstrap:
        report((first_step + len(models)) / steps, f"bootstrap ({bootstrap} replicates)")
        sub = (lambda f, m: report((first_step + len(models) + f) / steps, m)) if progress else None
        boot_c, boot_v, dropped = run_bootstrap(all_paths, path_refits, journeys if journey_refits else None, journey_refits, int(bootstrap), seed, sub)
        for name in models:
            intervals[name] = (*percentile_interval(boot_c[name], ci), *percentile_interval(boot_v[name], ci))
        details["bootstrap"] = {"replicates": int(bootstrap), "dropped": int(dropped), "ci": float(ci), "method": "Poisson resampling of journeys, percentile interval"}
    frames = []
    for name in models:
        conv, val = credit[name]
        total = conv.sum()
        nan = np.full(n_out, np.nan)
        lo, hi, vlo, vhi = intervals.get(name, (nan, nan, nan, nan))
        frames.append(
            pd.DataFrame(
                {
                    "channel": channels,
                    "model": name,
                    "conversions": conv,
                    "value": val,
                    "share": conv / total if total else np.zeros(n_out),
                    "conversions_low": lo,
                    "conversions_high": hi,
                    "value_low": vlo,
                    "value_high": vhi,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]
    report(1.0, "done")
    return AttributionResult(table, details, fitted)



def _with_untouched(refit: Callable, untouched: np.ndarray, nt: int, n_out: int) -> Callable:
    """A bootstrap refit over every path: the model refitted on the touched paths' resampled counts, plus the
    resampled untouched conversions credited to ``(no touch)``."""
    touched = ~untouched

    def run(c, v, n):
        if c[touched].sum() > 0:
            rc, rv = (np.array(x, dtype=np.float64) for x in refit(c[touched], v[touched], n[touched]))
        else:
            rc, rv = np.zeros(n_out), np.zeros(n_out)
        rc[nt] += c[untouched].sum()
        rv[nt] += v[untouched].sum()
        return rc, rv

    return run


def rebuild_fitted(paths: PathTable, details: dict) -> dict:
    """The in-memory fitted models a stored run's drill-down needs, rebuilt from its details (no refit of
    the conversion model and no cross-validation: its coefficients and the shrinkage strength are stored)."""
    from core.attribution.fitted import FittedModel
    from core.attribution.journey_features import summarize

    paths = model_paths(paths)
    out: dict = {}
    if "data_driven" in details:
        out["data_driven"] = FittedModel.from_dict(details["data_driven"]["model"])
    rate = details.get("shapley_rate")
    if rate is not None:
        masks = shapley.coalition_masks(paths)
        prior = None
        if rate.get("shrinkage"):
            model = FittedModel.from_dict(rate["shrinkage"]["model"])
            prior = shrinkage.RatePrior(shrinkage.set_level_prior(model, summarize(paths)), float(rate["shrinkage"]["strength"]))
        out["shapley_rate"] = shapley.shapley_rate_from_masks(masks, paths.n_channels, paths.conversions, paths.value,
                                                              paths.nulls, prior)
    return out
