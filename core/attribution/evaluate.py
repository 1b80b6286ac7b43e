"""Which model fits this data? Held-out scores of every model that predicts conversion.

The journeys are split into ``folds`` parts *within* each unique path (binomial thinning of its
conversions and nulls, so no journey is in two parts and the path table is never expanded to journeys).
Each model is fitted on all parts but one and predicts P(conversion) of the journeys of the part left
out; every journey is predicted once, by a model that never saw it:

* ``data_driven``: every candidate form of `core.attribution.fitted`; the form is chosen here by the
  one-standard-error rule: the simplest form whose held-out log loss is within one standard error of
  the best form's (a more complex form must earn its extra coefficients on journeys it never saw). Each
  fold's forms have only the channels whose effect its training journeys tell from zero
  (`fitted.measured_channels`); the chosen form is then scored with every channel too, and keeps
  only the measured ones unless every channel predicts held-out journeys better by more than
  `fitted.MEASURED_EFFECT_Z` standard errors (the evidence the gate asks of a single channel);
* ``shapley_rate``: the rate game (exact-set conversion rates shrunk toward the chosen model), and the
  same game without shrinkage for comparison;
* ``markov`` of order 1-4: a chain predicts a journey's conversion from its last state, that is its last
  ``k`` touches (the share of journeys ending there that converted; an unseen state backs off to the
  order below, then to the overall rate);
* the overall conversion rate, as the reference every model should beat.

Scores: log loss (the measure the choice is made on: it rewards calibrated probabilities), AUC (ranking
only) and a calibration table (predicted vs observed rate by decile of prediction). The recommended
model is the attribution model with the lowest held-out log loss; the Markov order offered is the order
with the lowest. Heuristics and the coalition-conversions Shapley do not predict conversion, so they
cannot be scored this way. The chosen form's score is the minimum over the forms tried, so slightly
optimistic; the forms are few and the held-out journeys many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.attribution import fitted
from core.attribution.datadriven import MAX_PATH_WORK, path_work
from core.attribution.journey_features import PathSummary, summarize
from core.attribution.shapley import MAX_SHAPLEY_CHANNELS
from core.attribution.shrinkage import RatePrior, estimate_strength, set_level_prior
from core.pathtable import PathTable

DEFAULT_FOLDS = 3
#: Cross-validation scores at most this many journeys (a random thinning of larger data): plenty to rank
#: a handful of models, and it keeps the evaluation within seconds at millions of journeys.
CV_MAX_JOURNEYS = 250_000
#: A form that tells more distinct paths apart than this (on the scored journeys) is not tried: its fit
#: would take minutes (e.g. touches and roles on long random paths), and the simpler forms cover it.
MAX_DESIGN_ROWS = 120_000
MARKOV_ORDERS = (1, 2, 3, 4)
CALIBRATION_BINS = 10
#: Scores closer than this (log loss per journey) are a tie; the simpler model is then preferred.
TIE = 1e-4
SCORE_COLUMNS = ["model", "variant", "log_loss", "auc", "brier", "journeys", "conversions", "seconds"]
_ATTRIBUTION_CANDIDATES = ("data_driven", "shapley_rate", "markov")
#: The set-level noisy-OR: the simplest form, and the one that measures which channels have an effect.
PLAIN_FORM = fitted.ModelForm("noisy_or")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Held-out scores, the calibration table, the chosen model form and the recommendation."""

    scores: pd.DataFrame  # SCORE_COLUMNS, one row per model (variant); best log loss first
    calibration: pd.DataFrame  # model, variant, bin, predicted, observed, journeys
    form: fitted.ModelForm | None  # the data-driven form chosen (None without a data-driven model)
    recommended: str  # "data_driven" | "shapley_rate" | "markov"
    recommended_order: int  # the Markov order, when markov is recommended (else the best order)
    reason: str
    markov_order: int
    markov_reason: str
    folds: int
    seed: int
    notes: list[str] = field(default_factory=list)
    fold_models: dict = field(default_factory=dict, repr=False, compare=False)  # form -> last fold's fit (not stored)
    measured_only: bool = True  # the chosen form has only the channels with a measured effect (`fitted.measured_channels`)

    def to_dict(self) -> dict:
        return {
            "scores": self.scores.to_dict(orient="list"),
            "calibration": self.calibration.to_dict(orient="list"),
            "form": None if self.form is None else self.form.to_dict(),
            "recommended": self.recommended, "recommended_order": self.recommended_order, "reason": self.reason,
            "markov_order": self.markov_order, "markov_reason": self.markov_reason, "folds": self.folds,
            "seed": self.seed, "notes": list(self.notes), "measured_only": self.measured_only,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Evaluation":
        scores = pd.DataFrame(d["scores"], columns=SCORE_COLUMNS)
        for c in SCORE_COLUMNS[2:]:
            scores[c] = pd.to_numeric(scores[c], errors="coerce")
        return cls(scores, pd.DataFrame(d["calibration"]),
                   None if d.get("form") is None else fitted.ModelForm.from_dict(d["form"]),
                   d["recommended"], int(d["recommended_order"]), d["reason"], int(d["markov_order"]),
                   d["markov_reason"], int(d["folds"]), int(d["seed"]), list(d.get("notes", [])),
                   measured_only=bool(d.get("measured_only", True)))

    @property
    def recommended_label(self) -> str:
        return f"markov (order {self.recommended_order})" if self.recommended == "markov" else self.recommended


# --------------------------------------------------------------------------------------- folds
def make_folds(conversions: np.ndarray, nulls: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(folds, n_paths) conversions and nulls: each path's journeys dealt into ``folds`` parts at random.

    Whole journeys are dealt by successive binomial draws; a fractional remainder (weighted path
    tables) goes whole to one random part.
    """
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    rng = np.random.default_rng(seed)
    out = []
    for counts in (conversions, nulls):
        whole = np.floor(counts).astype(np.int64)
        frac = counts - whole
        left = whole.copy()
        parts = np.zeros((folds, counts.shape[0]))
        for f in range(folds - 1):
            take = rng.binomial(left, 1.0 / (folds - f))
            parts[f] = take
            left -= take
        parts[folds - 1] = left
        parts[rng.integers(0, folds, size=counts.shape[0]), np.arange(counts.shape[0])] += frac
        out.append(parts)
    return out[0], out[1]


# --------------------------------------------------------------------------------------- metrics
def _metrics(p: np.ndarray, conv: np.ndarray, nulls: np.ndarray) -> tuple[float, float, float]:
    """Weighted log loss, AUC and Brier score of predictions ``p`` for rows with conv/null weights."""
    q = np.clip(p, 1e-12, 1 - 1e-12)
    total = conv.sum() + nulls.sum()
    ll = -(conv @ np.log(q) + nulls @ np.log1p(-q)) / total
    brier = (conv @ (1 - p) ** 2 + nulls @ p**2) / total
    # AUC: P(score of a converting journey > score of a non-converting one), ties count half
    uniq, inv = np.unique(p, return_inverse=True)
    c = np.bincount(inv, weights=conv, minlength=uniq.shape[0])
    n = np.bincount(inv, weights=nulls, minlength=uniq.shape[0])
    below = np.cumsum(n) - n
    denom = c.sum() * n.sum()
    auc = float((c @ (below + 0.5 * n)) / denom) if denom > 0 else float("nan")
    return float(ll), auc, float(brier)


def _paired_difference(p_a: np.ndarray, p_b: np.ndarray, fc: np.ndarray, fn: np.ndarray) -> tuple[float, float]:
    """Mean per-journey log-loss difference of predictions a minus b on the held-out journeys, and its
    standard error (both given per fold: arrays of shape (folds, paths))."""
    a = np.clip(p_a, 1e-12, 1 - 1e-12)
    b = np.clip(p_b, 1e-12, 1 - 1e-12)
    d_conv = np.log(b) - np.log(a)  # loss of a minus loss of b, for a converting journey
    d_null = np.log1p(-b) - np.log1p(-a)
    w = fc.sum() + fn.sum()
    mean = float(((fc * d_conv).sum() + (fn * d_null).sum()) / w)
    var = float(((fc * (d_conv - mean) ** 2).sum() + (fn * (d_null - mean) ** 2).sum()) / w)
    return mean, float(np.sqrt(var / w))


def _calibration(p: np.ndarray, conv: np.ndarray, nulls: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Predicted vs observed conversion rate in ``bins`` groups of equal journeys, by prediction."""
    w = conv + nulls
    order = np.argsort(p, kind="stable")
    cum = np.cumsum(w[order])
    edges = cum[-1] * np.arange(1, bins) / bins
    group = np.empty(p.shape[0], dtype=np.int64)
    group[order] = np.searchsorted(edges, cum - w[order] / 2)
    jw = np.bincount(group, weights=w, minlength=bins)
    pred = np.bincount(group, weights=w * p, minlength=bins)
    obs = np.bincount(group, weights=conv, minlength=bins)
    keep = jw > 0
    return pd.DataFrame({"bin": np.arange(bins)[keep] + 1, "predicted": pred[keep] / jw[keep],
                         "observed": obs[keep] / jw[keep], "journeys": jw[keep]})


# --------------------------------------------------------------------------------------- predictors
def _last_k_ids(table: PathTable, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """An integer id per path (of ``rows``, default all) for its last ``k`` touches (fewer when shorter)."""
    width = k
    starts, ends = (table.offsets[:-1], table.offsets[1:]) if rows is None else (table.offsets[:-1][rows], table.offsets[1:][rows])
    idx = ends[:, None] - width + np.arange(width)[None, :]
    ok = idx >= starts[:, None]
    codes = np.where(ok, table.codes[np.clip(idx, 0, None)], -1).astype(np.int64)
    key = np.ascontiguousarray(codes)
    view = key.view(np.dtype((np.void, key.dtype.itemsize * width))).ravel()
    return np.unique(view, return_inverse=True)[1].ravel()


def _markov_predict(state_ids: list[np.ndarray], train_c: np.ndarray, train_n: np.ndarray) -> np.ndarray:
    """Conversion share at each path's last state, backing off to lower orders, then the overall rate."""
    total = train_c.sum() + train_n.sum()
    p = np.full(train_c.shape[0], train_c.sum() / total if total > 0 else 0.0)
    for ids in state_ids:  # lowest order first; higher orders overwrite where they have data
        m = int(ids.max()) + 1
        c = np.bincount(ids, weights=train_c, minlength=m)
        j = c + np.bincount(ids, weights=train_n, minlength=m)
        have = j[ids] > 0
        p[have] = c[ids][have] / j[ids][have]
    return p


def _rate_predict(s: PathSummary, train_c: np.ndarray, train_n: np.ndarray, prior_mean: np.ndarray | None,
                  ) -> tuple[np.ndarray, float]:
    """The rate game's v(channel set) for every path: shrunk toward ``prior_mean`` (or the raw rule)."""
    from core.attribution.shapley import rate_game

    size = 1 << s.n_channels
    if prior_mean is None:
        v, _, _ = rate_game(s.masks, s.n_channels, train_c, train_n)
        return v[s.masks], float("nan")
    conv_t = np.bincount(s.masks, weights=train_c, minlength=size)
    jour_t = conv_t + np.bincount(s.masks, weights=train_n, minlength=size)
    kappa = estimate_strength(conv_t, jour_t, prior_mean)
    return RatePrior(prior_mean, kappa).shrink(conv_t, jour_t)[s.masks], kappa


# --------------------------------------------------------------------------------------- the run
def cross_validate(
    paths: PathTable,
    summary: PathSummary | None = None,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    forms: list[fitted.ModelForm] | None = None,
    orders=MARKOV_ORDERS,
    progress: Callable[[float, str], None] | None = None,
) -> Evaluation:
    """Score every predicting model on held-out journeys and choose the data-driven form (module docstring)."""
    report = progress or (lambda f, m: None)
    s = summary if summary is not None else summarize(paths)
    n_ch = s.n_channels
    notes: list[str] = []
    forms = list(forms) if forms is not None else fitted.candidate_forms(n_ch)
    per_path = [f for f in forms if not f.set_level or n_ch > MAX_SHAPLEY_CHANNELS]
    if per_path and path_work(s) > MAX_PATH_WORK:
        dropped = [f.name for f in per_path]
        forms = [f for f in forms if f not in per_path]
        notes.append(f"forms left out because exact per-path Shapley values would take too long here "
                     f"(paths with many distinct channels): {', '.join(dropped)}")
    rate_ok = n_ch <= MAX_SHAPLEY_CHANNELS
    if not rate_ok:
        notes.append(f"the rate game is not scored: it is exact over 2^channels coalitions, at most {MAX_SHAPLEY_CHANNELS} channels")
    total_journeys = float(s.journeys.sum())
    keep = None
    if total_journeys > CV_MAX_JOURNEYS:
        s, keep = _thin(s, CV_MAX_JOURNEYS / total_journeys, seed)
        notes.append(f"scored on a random {s.journeys.sum():,.0f} of the {total_journeys:,.0f} journeys")
    state_ids = [_last_k_ids(paths, k, keep) for k in range(1, max(orders) + 1)] if orders else []
    fc, fn = make_folds(s.conversions, s.nulls, folds, seed)
    # Every form has only the channels with a measured effect (`fitted.measured_channels`): measured on
    # the scored journeys to size the designs, then again on each fold's training journeys for its fits.
    plain_design = fitted.design(s, PLAIN_FORM)
    measured = fitted.measured_channels(s, fitted.fit(s, PLAIN_FORM, prepared=plain_design, precise=False),
                                        prepared=plain_design)
    designs = {form: fitted.design(s, form, measured) for form in forms}
    designs_by_channels = {measured.tobytes(): designs}
    too_big = [f for f in forms if designs[f].rows.n_paths > MAX_DESIGN_ROWS and f is not forms[0]]
    if too_big:
        notes.append("forms left out because they tell too many distinct paths apart to fit quickly here: "
                     + ", ".join(f"{f.name} ({designs[f].rows.n_paths:,} distinct paths)" for f in too_big))
        forms = [f for f in forms if f not in too_big]
    preds: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[tuple[str, str], float] = {}
    warm: dict[fitted.ModelForm, fitted.FittedModel] = {}
    fold_models: list[dict[fitted.ModelForm, fitted.FittedModel]] = []
    some_unmeasured = False

    def put(key, f, rows_pred, t0):
        preds.setdefault(key, np.zeros((folds, s.n_paths)))[f] = rows_pred
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0

    steps = folds * (len(forms) + 3)
    done = 0
    for f in range(folds):
        train_c, train_n = s.conversions - fc[f], s.nulls - fn[f]
        train = s.with_counts(train_c, train_n)
        models: dict[fitted.ModelForm, fitted.FittedModel] = {}
        try:
            fold_measured = fitted.measured_channels(
                train, fitted.fit(train, PLAIN_FORM, prepared=plain_design, precise=False), prepared=plain_design)
        except ValueError:  # e.g. a fold without a conversion: every form fails on it below and says so
            fold_measured = measured
        some_unmeasured |= not bool(fold_measured.all())
        fold_designs = designs_by_channels.setdefault(fold_measured.tobytes(), {})
        for form in forms:
            report(done / steps, f"fold {f + 1} of {folds}: fitting {form.name}")
            t0 = time.perf_counter()
            start = warm.get(form) or next((m for g, m in reversed(models.items()) if g.link == form.link == "noisy_or"), None)
            try:
                if form not in fold_designs:
                    fold_designs[form] = fitted.design(s, form, fold_measured)
                m = fitted.fit(train, form, start, prepared=fold_designs[form], precise=False)
            except ValueError as exc:  # e.g. a fold without a conversion
                notes.append(f"{form.name} could not be fitted on fold {f + 1}: {exc}")
                continue
            models[form] = warm[form] = m
            put(("data_driven", form.name), f, m.predict(s), t0)
            done += 1
        fold_models.append(models)
        for k in orders:
            t0 = time.perf_counter()
            put(("markov", f"order {k}"), f, _markov_predict(state_ids[:k], train_c, train_n), t0)
        t0 = time.perf_counter()
        total = train_c.sum() + train_n.sum()
        put(("constant", "overall conversion rate"), f, np.full(s.n_paths, train_c.sum() / total), t0)
        if rate_ok:
            t0 = time.perf_counter()
            put(("shapley_rate", "exact-set rates, no shrinkage"), f, _rate_predict(s, train_c, train_n, None)[0], t0)
        done += 3
    # complete models only (a form that failed on one fold is not scored)
    complete = {k: v for k, v in preds.items() if k[0] != "data_driven" or all(
        any(g.name == k[1] for g in fm) for fm in fold_models)}

    def score(key) -> tuple[float, float, float]:
        p = complete[key]
        rows = [(p[f], fc[f], fn[f]) for f in range(folds)]
        return _metrics(np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]),
                        np.concatenate([r[2] for r in rows]))

    form_scores = {form: score(("data_driven", form.name))[0] for form in forms if ("data_driven", form.name) in complete}
    chosen = None
    if form_scores:
        best = min(form_scores, key=lambda g: (form_scores[g], forms.index(g)))
        # one-standard-error rule: the simplest form whose held-out log loss is within one standard error
        # (of its per-journey difference from the best) of the best form's
        for form in sorted(form_scores, key=lambda g: (fitted.n_parameters(g, n_ch), forms.index(g))):
            diff, se = _paired_difference(complete[("data_driven", form.name)], complete[("data_driven", best.name)], fc, fn)
            if diff <= se:
                chosen = form
                break
    measured_only = True
    if chosen is not None and some_unmeasured:
        measured_only = _keep_measured_only(s, chosen, fc, fn, fold_models, warm, preds, complete, put, notes)
    if chosen is not None and rate_ok:
        report(done / steps, "scoring the shrunk rate game")
        for f in range(folds):
            t0 = time.perf_counter()
            train = s.with_counts(s.conversions - fc[f], s.nulls - fn[f])
            prior = set_level_prior(fold_models[f][chosen], train)
            put(("shapley_rate", "exact-set rates shrunk toward the fitted model"), f,
                _rate_predict(s, train.conversions, train.nulls, prior)[0], t0)
        complete[("shapley_rate", "exact-set rates shrunk toward the fitted model")] = preds[
            ("shapley_rate", "exact-set rates shrunk toward the fitted model")]
    rows, cal = [], []
    for key in complete:
        ll, auc, brier = score(key)
        variant = key[1] + (" — chosen" if chosen is not None and key == ("data_driven", chosen.name) else "")
        rows.append({"model": key[0], "variant": variant, "log_loss": ll, "auc": auc, "brier": brier,
                     "journeys": float(s.journeys.sum()), "conversions": float(s.conversions.sum()),
                     "seconds": seconds.get(key, 0.0)})
        if key[0] != "data_driven" or key[1] == getattr(chosen, "name", None):
            p = complete[key]
            c = _calibration(np.concatenate(list(p)), np.concatenate(list(fc)), np.concatenate(list(fn)))
            c.insert(0, "variant", variant)
            c.insert(0, "model", key[0])
            cal.append(c)
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS).sort_values(["log_loss", "model"], ignore_index=True)
    calibration = pd.concat(cal, ignore_index=True) if cal else pd.DataFrame(
        columns=["model", "variant", "bin", "predicted", "observed", "journeys"])
    rec, order, reason, m_order, m_reason = _recommend(scores, chosen, orders)
    report(1.0, "evaluation done")
    return Evaluation(scores, calibration, chosen, rec, order, reason, m_order, m_reason, folds, seed, notes, dict(warm),
                      measured_only)


def _keep_measured_only(s, chosen, fc, fn, fold_models, warm, preds, complete, put, notes) -> bool:
    """Score the chosen form with every channel beside the form with only the measured ones; keep the
    measured ones (the simpler model) unless the held-out journeys prefer every channel by more than
    `fitted.MEASURED_EFFECT_Z` standard errors: a weaker preference is within the noise of the comparison
    (one standard error would hand the credit back to a channel without effect about one time in six
    when both predict equally well). When they do, the chosen form's predictions and fold models become the ones with
    every channel. Returns whether the chosen form keeps only the measured channels."""
    name = chosen.name
    twin = ("data_driven", f"every channel: {name}")
    every = fitted.design(s, chosen, None)
    twins = []
    for f in range(fc.shape[0]):
        t0 = time.perf_counter()
        train = s.with_counts(s.conversions - fc[f], s.nulls - fn[f])
        try:
            m = fitted.fit(train, chosen, fold_models[f][chosen], prepared=every, precise=False)
        except ValueError:
            preds.pop(twin, None)
            return True
        twins.append(m)
        put(twin, f, m.predict(s), t0)
    diff, se = _paired_difference(preds[("data_driven", name)], preds[twin], fc, fn)
    if diff <= fitted.MEASURED_EFFECT_Z * se:
        complete[twin] = preds[twin]
        notes.append(f"channels whose effect the data cannot tell from zero get none; with every channel instead the "
                     f"chosen form scores {-diff:+.5f} log loss per held-out journey (standard error {se:.5f})")
        return True
    # the held-out journeys want every channel: the chosen form is the one with every channel
    gated = preds[("data_driven", name)]
    complete[("data_driven", name)] = preds[("data_driven", name)] = preds[twin]
    del preds[twin]
    complete[("data_driven", f"measured channels only: {name}")] = gated
    for f, m in enumerate(twins):
        fold_models[f][chosen] = m
    warm[chosen] = twins[-1]
    notes.append(f"every channel keeps an effect: with only the channels whose effect the data can tell from zero the "
                 f"chosen form scores {diff:+.5f} log loss per held-out journey, more than {fitted.MEASURED_EFFECT_Z:g} "
                 f"standard errors ({se:.5f}) worse")
    return False


def _thin(s: PathSummary, fraction: float, seed: int) -> tuple[PathSummary, np.ndarray]:
    """A random ``fraction`` of the journeys (binomial thinning per path); paths left empty are dropped."""
    rng = np.random.default_rng([seed, 7])

    def draw(x):
        whole = np.floor(x).astype(np.int64)
        return rng.binomial(whole, fraction) + (x - whole) * fraction

    conv, nulls = draw(s.conversions), draw(s.nulls)
    keep = np.flatnonzero(conv + nulls > 0)
    value = np.divide(s.value * conv, s.conversions, out=np.zeros_like(conv), where=s.conversions > 0)
    sub = PathSummary(s.n_channels, s.chans[keep], s.counts[keep], s.last_rank[keep], s.k[keep], s.first[keep],
                      s.last[keep], s.masks[keep], conv[keep], nulls[keep], value[keep])
    return sub, keep


def _recommend(scores: pd.DataFrame, chosen, orders) -> tuple[str, int, str, int, str]:
    """The attribution model with the lowest held-out log loss, and the best Markov order, with reasons."""
    def row(model, variant_prefix):
        r = scores[(scores["model"] == model) & scores["variant"].str.startswith(variant_prefix)]
        return None if r.empty else r.iloc[0]

    markov_rows = scores[scores["model"] == "markov"]
    m_order, m_reason = 1, "no Markov order was scored"
    if not markov_rows.empty:
        best = markov_rows.iloc[0]  # scores are sorted by log loss
        m_order = int(str(best["variant"]).split()[-1])
        others = ", ".join(f"order {int(str(r.variant).split()[-1])}: {r.log_loss:.4f}" for r in markov_rows.itertuples()
                           if r.variant != best["variant"])
        m_reason = (f"order {m_order} has the lowest held-out log loss of the Markov chains ({best['log_loss']:.4f}; "
                    f"{others}); a higher order only pays when its extra memory predicts better on journeys it never saw")
    cands = []
    if chosen is not None:
        cands.append(("data_driven", row("data_driven", chosen.name), 0))
    r = row("shapley_rate", "exact-set rates shrunk")
    if r is not None:
        cands.append(("shapley_rate", r, 1))
    r = row("markov", f"order {m_order}")
    if r is not None:
        cands.append(("markov", r, 2))
    if not cands:
        return "markov", m_order, "no model could be scored", m_order, m_reason
    # lowest log loss; within TIE of it, the first listed (data-driven, then the rate game, then Markov)
    best_ll = min(float(c[1]["log_loss"]) for c in cands)
    winner = next(c for c in cands if float(c[1]["log_loss"]) <= best_ll + TIE)
    const = row("constant", "overall")
    runner = sorted((c for c in cands if c is not winner), key=lambda c: float(c[1]["log_loss"]))
    label = f"markov (order {m_order})" if winner[0] == "markov" else winner[0]
    parts = [f"{label} predicts held-out journeys best: log loss {float(winner[1]['log_loss']):.4f}, AUC {float(winner[1]['auc']):.3f}"]
    if runner:
        r0 = runner[0]
        r_label = f"markov (order {m_order})" if r0[0] == "markov" else r0[0]
        parts.append(f"next {r_label} at {float(r0[1]['log_loss']):.4f}")
    if const is not None:
        c_ll = float(const["log_loss"])
        parts.append(f"the overall rate alone scores {c_ll:.4f}")
        if c_ll < float(winner[1]["log_loss"]):
            parts.append("better than every model: on journeys they never saw, the channels predict who converts worse "
                         "than no channel at all, so no model's split is supported by this data")
        elif c_ll - float(winner[1]["log_loss"]) < 0.002 * c_ll:
            parts.append("that is barely better: the channels say little about who converts, so expect most of the "
                         "data-driven credit to go to the baseline and every model's split to be uncertain")
    if winner[0] == "data_driven" and chosen is not None:
        parts.append(f"form: {chosen.describe()}")
    return winner[0], m_order, "; ".join(parts), m_order, m_reason
