"""A fitted conversion model: P(conversion | a journey's channels), regularized, in a few forms.

Two links over one linear predictor ``eta = b + sum over the journey's channels i of t_i``:

* ``noisy_or``: ``p = 1 - exp(-eta)`` with ``b >= 0`` and ``t_i >= 0``: every channel is an independent
  chance to cause the conversion, on top of a baseline ``1 - exp(-b)`` (the conversions that would
  happen with no touch at all). Fitted by maximum penalized binomial likelihood with scipy's L-BFGS-B,
  the solver scikit-learn's own ``LogisticRegression`` uses, here with the bounds this link needs
  (scikit-learn has no noisy-OR estimator).
* ``logit``: ``p = 1 / (1 + exp(-eta))``, scikit-learn's ``LogisticRegression`` (L2), optionally with
  pairwise channel interactions.

The channel term is ``t_i = (lambda_i + kappa_i * log(touches of i)) * exp(alpha_i [i holds the first
touch] + gamma_i [i holds the last touch])``: *counts* switch on ``kappa`` (more touches, more effect,
with diminishing returns), *roles* switch on ``alpha``/``gamma`` (a channel working differently as the
introducer or the closer of a journey; noisy-OR only, where it stays identifiable).

A form can be fitted over only the channels whose effect the data can tell from zero (``measured``: the
set-level noisy-OR's effect at least `MEASURED_EFFECT_Z` standard errors above zero, `measured_channels`);
the cross-validation keeps that unless every channel predicts held-out journeys clearly better. The
others get no effect and hold no role: their touches are passed over, as if not in the journey. A touch
that causes nothing cannot change what the other touches do, so a popular channel without effect that
happens to come first must not take the introducer's role from the channel after it, nor lend the
noise of its estimate (never below the bound zero, so biased upward) to the credit. The penalty is an L2
prior on the coefficients in units of journeys (``penalty / 2 * ||coef||^2`` beside a log likelihood
summed over journeys), so it means the same at any data size. Which form and penalty fit the data is
chosen by cross-validation (`core.attribution.evaluate`).

Fitting works on the unique paths with their conversions and nulls as weights, never per journey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse

from core.attribution.journey_features import MAX_COUNTED_TOUCHES, PathSummary

LINKS = ("noisy_or", "logit")
#: L2 prior on the log role multipliers: sd 1/sqrt(10) ~ 0.3, so a role mostly moves a channel's effect
#: within about 0.5x-2x unless the data insist. Without it the baseline and a common first-touch bonus
#: trade off almost freely (every journey has a first touch).
ROLE_PENALTY = 10.0
#: A channel's effect counts as measured when the set-level noisy-OR fit puts it this many standard errors
#: above zero (one-sided 2.5 %); the others get no effect and hold no role in every form.
MEASURED_EFFECT_Z = 1.96
#: Pairwise interactions (n (n - 1) / 2 coefficients) are offered up to this many channels.
MAX_PAIR_CHANNELS = 20
_EPS = 1e-12


@dataclass(frozen=True)
class ModelForm:
    """One candidate form of the conversion model (see the module docstring)."""

    link: str = "noisy_or"
    counts: bool = False
    roles: bool = False
    pairs: bool = False
    penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.link not in LINKS:
            raise ValueError(f"link must be one of {', '.join(LINKS)}; got {self.link!r}")
        if self.roles and self.link != "noisy_or":
            raise ValueError("first/last-touch roles are offered with the noisy-OR link only")
        if self.pairs and self.link != "logit":
            raise ValueError("pairwise interactions are offered with the logit link only")
        if not (math.isfinite(self.penalty) and self.penalty > 0):
            raise ValueError(f"penalty must be a positive number; got {self.penalty!r}")

    @property
    def set_level(self) -> bool:
        """True when the prediction depends only on the channel set (no counts, no order)."""
        return not (self.counts or self.roles)

    @property
    def name(self) -> str:
        parts = [self.link] + [p for p, on in (("counts", self.counts), ("roles", self.roles), ("pairs", self.pairs)) if on]
        return "+".join(parts) + f" (penalty {self.penalty:g})"

    def describe(self) -> str:
        what = ["channel presence"]
        if self.counts:
            what.append("log touches per channel")
        if self.roles:
            what.append("first/last-touch roles")
        if self.pairs:
            what.append("pairwise channel interactions")
        link = "noisy-OR (independent chances on a baseline)" if self.link == "noisy_or" else "logistic regression"
        return f"{link} on {', '.join(what)}, L2 penalty {self.penalty:g}"

    def to_dict(self) -> dict:
        return {"link": self.link, "counts": self.counts, "roles": self.roles, "pairs": self.pairs, "penalty": self.penalty}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelForm":
        return cls(str(d["link"]), bool(d["counts"]), bool(d["roles"]), bool(d["pairs"]), float(d["penalty"]))


def candidate_forms(n_channels: int) -> list[ModelForm]:
    """The forms cross-validation chooses from (pairwise interactions only up to 20 channels)."""
    return [
        ModelForm("noisy_or"),
        ModelForm("noisy_or", counts=True),
        ModelForm("noisy_or", roles=True, penalty=ROLE_PENALTY),
        ModelForm("noisy_or", counts=True, roles=True, penalty=ROLE_PENALTY),
        ModelForm("logit", counts=True, pairs=n_channels <= MAX_PAIR_CHANNELS, penalty=1.0),
    ]


def n_parameters(form: ModelForm, n_channels: int) -> int:
    """Coefficients of ``form`` over ``n_channels`` channels (intercept included): its complexity."""
    n = 1 + n_channels * (1 + form.counts + 2 * form.roles)
    return n + (n_channels * (n_channels - 1) // 2 if form.pairs else 0)


@dataclass(frozen=True, eq=False)
class FittedModel:
    """Coefficients of one fitted form; predicts any path or channel subset."""

    form: ModelForm
    n_channels: int
    intercept: float
    main: np.ndarray  # lambda per channel
    count: np.ndarray  # kappa per channel
    first: np.ndarray  # alpha per channel
    last: np.ndarray  # gamma per channel
    pair: np.ndarray | None = field(default=None, repr=False)  # (C, C) symmetric, zero diagonal
    converged: bool = True
    measured: np.ndarray | None = None  # channels with a measured effect (None = all); the others have none

    # ------------------------------------------------------------------ prediction
    def prob(self, eta: np.ndarray) -> np.ndarray:
        if self.form.link == "noisy_or":
            return -np.expm1(-np.maximum(eta, 0.0))
        return 1.0 / (1.0 + np.exp(-eta))

    @property
    def baseline(self) -> float:
        """P(conversion) with no touch at all (the part no channel earns)."""
        return float(self.prob(np.array([self.intercept]))[0])

    def channel_terms(self, chan: np.ndarray, logn: np.ndarray, is_first: np.ndarray, is_last: np.ndarray) -> np.ndarray:
        base = self.main[chan] + self.count[chan] * logn
        if self.form.roles:
            base = base * np.exp(self.first[chan] * is_first + self.last[chan] * is_last)
        return base

    def entries(self, s: PathSummary) -> tuple[np.ndarray, ...]:
        """`PathSummary.entries` with the roles held as this model holds them (by measured channels)."""
        return s.entries(self.measured if self.form.roles else None)

    def eta_paths(self, s: PathSummary) -> np.ndarray:
        path, chan, logn, f, l = self.entries(s)
        eta = self.intercept + np.bincount(path, weights=self.channel_terms(chan, logn, f, l), minlength=s.n_paths)
        if self.pair is not None:
            eta += _pair_sums(s, self.pair)
        return eta

    def predict(self, s: PathSummary) -> np.ndarray:
        """P(conversion) of every path of ``s``."""
        return self.prob(self.eta_paths(s))

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        d = {"form": self.form.to_dict(), "n_channels": self.n_channels, "intercept": self.intercept,
             "main": self.main.tolist(), "count": self.count.tolist(), "first": self.first.tolist(),
             "last": self.last.tolist(), "converged": self.converged}
        if self.measured is not None:
            d["measured"] = [bool(x) for x in self.measured]
        if self.pair is not None:
            iu = np.triu_indices(self.n_channels, 1)
            d["pair"] = self.pair[iu].tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FittedModel":
        n = int(d["n_channels"])
        pair = None
        if d.get("pair") is not None:
            pair = np.zeros((n, n))
            iu = np.triu_indices(n, 1)
            pair[iu] = d["pair"]
            pair = pair + pair.T
        arr = lambda k: np.asarray(d[k], dtype=np.float64)  # noqa: E731
        measured = None if d.get("measured") is None else np.asarray(d["measured"], dtype=bool)
        return cls(ModelForm.from_dict(d["form"]), n, float(d["intercept"]), arr("main"), arr("count"), arr("first"),
                   arr("last"), pair, bool(d.get("converged", True)), measured)


def _pair_sums(s: PathSummary, pair: np.ndarray) -> np.ndarray:
    """Sum of pairwise interaction terms over the channel pairs of each path."""
    out = np.zeros(s.n_paths)
    width = s.chans.shape[1]
    for a in range(width):
        ca = s.chans[:, a]
        for b in range(a + 1, width):
            cb = s.chans[:, b]
            ok = (ca >= 0) & (cb >= 0)
            out[ok] += pair[ca[ok], cb[ok]]
    return out


# ---------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True, eq=False)
class Design:
    """The distinct rows ``form`` can tell apart, built once: every fold and bootstrap replicate reuses
    it and only sums its own counts onto the rows (`counts`)."""

    form: ModelForm
    rows: PathSummary  # distinct rows (their own counts are the full data's)
    inverse: np.ndarray  # path -> row
    entries: tuple[np.ndarray, ...]  # (row, channel, log touches, is first, is last) per distinct channel
    x: sparse.csr_matrix | None  # logit forms: the sparse design of the rows
    measured: np.ndarray | None = None  # the channels the rows keep (None = all)

    def counts(self, conversions: np.ndarray, nulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.rows.n_paths
        return (np.bincount(self.inverse, weights=conversions, minlength=m),
                np.bincount(self.inverse, weights=nulls, minlength=m))


def design(s: PathSummary, form: ModelForm, measured: np.ndarray | None = None) -> Design:
    """Paths that look the same to ``form`` merged into one row (the model is fitted on rows, not journeys).

    ``measured``: the channels the model has (`measured_channels`; None = all): the touches of the
    others are dropped from the rows, roles included.
    """
    measured = None if measured is None or bool(np.all(measured)) else np.asarray(measured, dtype=bool)
    first_role, last_role = s.role_holders(measured)
    src_chans, src_counts, masks = s.chans, s.counts, s.masks
    if measured is not None:
        keep = (s.chans >= 0) & measured[np.clip(s.chans, 0, None)]
        src_chans, src_counts = np.where(keep, s.chans, -1), np.where(keep, s.counts, 0)
        if s.n_channels <= 62:
            masks = s.masks & int(np.sum(np.left_shift(np.int64(1), np.flatnonzero(measured).astype(np.int64))))
    big = np.iinfo(np.int64).max

    def by_channel(rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = src_chans[rows]
        order = np.argsort(np.where(c >= 0, c, big), axis=1, kind="stable")
        return (np.take_along_axis(c, order, axis=1),
                np.minimum(np.take_along_axis(src_counts[rows], order, axis=1), MAX_COUNTED_TOUCHES))

    if form.set_level and s.n_channels <= 62:  # the channel set is the whole key: its bitmask
        _, first_idx, inverse = np.unique(masks, return_index=True, return_inverse=True)
        chans, counts = by_channel(first_idx)
    else:
        chans, counts = by_channel(slice(None))
        cols = [chans]
        if form.counts:
            cols.append(counts)
        if form.roles:
            cols += [first_role[:, None], last_role[:, None]]
        key = np.ascontiguousarray(np.hstack(cols).astype(np.int64))
        view = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
        _, first_idx, inverse = np.unique(view, return_index=True, return_inverse=True)
        chans, counts = chans[first_idx], counts[first_idx]
    inverse = inverse.ravel()
    m = first_idx.shape[0]
    conv = np.bincount(inverse, weights=s.conversions, minlength=m)
    nulls = np.bincount(inverse, weights=s.nulls, minlength=m)
    value = np.bincount(inverse, weights=s.value, minlength=m)
    rows = PathSummary(s.n_channels, chans, counts, np.zeros_like(counts) - 1, (chans >= 0).sum(axis=1),
                       first_role[first_idx], last_role[first_idx], masks[first_idx], conv, nulls, value)
    path, chan, logn, is_f, is_l = rows.entries()  # the rows hold the roles as the measured channels give them
    entries = (path, chan, logn, is_f.astype(np.float64), is_l.astype(np.float64))
    return Design(form, rows, inverse, entries, logit_design(rows, form) if form.link == "logit" else None, measured)


def effect_z(s: PathSummary, model: FittedModel) -> np.ndarray:
    """Each channel's effect in a set-level noisy-OR fit divided by its standard error.

    The standard errors come from the Fisher information of the binomial likelihood at the fit (for
    ``p = 1 - exp(-eta)`` a journey informs ``eta`` by ``1 / expm1(eta)``); a channel never seen, or
    with its effect on the bound zero, scores 0.
    """
    if model.form.link != "noisy_or" or not model.form.set_level:
        raise ValueError("effect z-scores are taken from the set-level noisy-OR form")
    C = s.n_channels
    path, chan, _, _, _ = s.entries()
    x = sparse.csr_matrix((np.ones(chan.shape[0] + s.n_paths),
                           (np.r_[path, np.arange(s.n_paths)], np.r_[chan + 1, np.zeros(s.n_paths, dtype=np.int64)])),
                          shape=(s.n_paths, C + 1))
    eta = np.maximum(model.eta_paths(s), 1e-9)
    w = s.journeys / np.expm1(eta)
    info = (x.T @ x.multiply(w[:, None])).toarray()
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info, hermitian=True))[1:], 0.0, None))
    return np.divide(model.main, se, out=np.zeros(C), where=(se > 0) & (model.main > 0))


def measured_channels(s: PathSummary, plain: FittedModel | None = None, *, prepared: Design | None = None,
                      z: float = MEASURED_EFFECT_Z) -> np.ndarray:
    """The channels whose effect the data can tell from zero: effect in the set-level noisy-OR fit
    (``plain``, fitted on ``s`` when not given) at least ``z`` standard errors above zero.

    ``prepared``: `design(s, ModelForm("noisy_or"))` to reuse (the z-scores are taken on its rows, one
    per channel set). When no channel passes, every channel is kept: a model of the baseline alone would
    credit nothing, and the evaluation already says that the channels tell little about who converts.
    """
    d = prepared if prepared is not None else design(s, ModelForm("noisy_or"))
    if plain is None:
        plain = fit(s, ModelForm("noisy_or"), prepared=d)
    out = effect_z(d.rows.with_counts(*d.counts(s.conversions, s.nulls)), plain) >= z
    return out if out.any() else np.ones(s.n_channels, dtype=bool)


def fit(s: PathSummary, form: ModelForm, warm: FittedModel | None = None, *, prepared: Design | None = None,
        precise: bool = True, measured: np.ndarray | None = None) -> FittedModel:
    """Fit ``form`` to the paths of ``s`` (weights: their conversions and nulls).

    ``prepared``: `design(s, form)` (or of any summary with the same paths) to reuse; ``warm``: an earlier
    fit to start from; ``precise=False`` stops earlier (cross-validation and bootstrap replicates, where
    the spread between folds or replicates is far larger than the tolerance). ``measured`` (without
    ``prepared``): the channels the model has (`measured_channels`); None = every channel.
    """
    if s.conversions.sum() <= 0:
        raise ValueError("the conversion model needs at least one conversion")
    d = prepared if prepared is not None else design(s, form, measured)
    conv, nulls = d.counts(s.conversions, s.nulls)
    if form.link == "noisy_or":
        return _fit_noisy_or(d, conv, nulls, form, warm, precise)
    return _fit_logit(d, conv, nulls, form, warm, precise)


def _fit_noisy_or(d: Design, conv: np.ndarray, nulls: np.ndarray, form: ModelForm, warm: FittedModel | None,
                  precise: bool) -> FittedModel:
    C = d.rows.n_channels
    path, chan, logn, f_f, f_l = d.entries
    n_paths = d.rows.n_paths
    nk = C if form.counts else 0
    nr = C if form.roles else 0
    pen = float(form.penalty)
    total = float(conv.sum() + nulls.sum())

    def unpack(theta):
        b = theta[0]
        lam = theta[1 : 1 + C]
        kap = theta[1 + C : 1 + C + nk] if nk else None
        alp = theta[1 + C + nk : 1 + C + nk + nr] if nr else None
        gam = theta[1 + C + nk + nr :] if nr else None
        return b, lam, kap, alp, gam

    def objective(theta):
        b, lam, kap, alp, gam = unpack(theta)
        base = lam[chan] + (kap[chan] * logn if nk else 0.0)
        mult = np.exp(alp[chan] * f_f + gam[chan] * f_l) if nr else 1.0
        t = base * mult
        eta = b + np.bincount(path, weights=t, minlength=n_paths)
        eta = np.maximum(eta, _EPS)
        # log likelihood: conv * log(1 - e^-eta) - nulls * eta
        ll = conv @ np.log(-np.expm1(-eta)) - nulls @ eta
        dl = conv / np.expm1(eta) - nulls  # d ll / d eta
        g = -dl[path]
        grad = np.empty_like(theta)
        grad[0] = -dl.sum()
        grad[1 : 1 + C] = np.bincount(chan, weights=g * mult, minlength=C)
        if nk:
            grad[1 + C : 1 + C + nk] = np.bincount(chan, weights=g * mult * logn, minlength=C)
        if nr:
            grad[1 + C + nk : 1 + C + nk + nr] = np.bincount(chan, weights=g * t * f_f, minlength=C)
            grad[1 + C + nk + nr :] = np.bincount(chan, weights=g * t * f_l, minlength=C)
        coef = theta[1:]
        value = -ll + 0.5 * pen * (coef @ coef)
        grad[1:] += pen * coef
        return value / total, grad / total  # per journey: tolerances mean the same at any size

    n_theta = 1 + C + nk + 2 * nr
    if warm is not None and warm.form.link == "noisy_or" and warm.n_channels == C:
        # a warm start from any noisy-OR fit: coefficients the other form lacks start at zero
        x0 = np.concatenate([[warm.intercept], warm.main] + ([warm.count] if nk else []) + ([warm.first, warm.last] if nr else []))
    else:
        rate = conv.sum() / max(total, _EPS)
        x0 = np.zeros(n_theta)
        x0[0] = -math.log1p(-min(rate, 0.999)) * 0.5
        x0[1 : 1 + C] = x0[0] / 2
    scale = _preconditioner(x0, unpack, path, chan, logn, f_f, f_l, conv, n_paths, C, nk, nr, pen)
    lo = np.r_[_EPS, np.zeros(C + nk), np.full(2 * nr, -5.0)] * scale
    hi = np.r_[np.full(1 + C + nk, np.inf), np.full(2 * nr, 5.0)]
    if d.measured is not None:  # channels without a measured effect have none
        off = ~d.measured
        hi[1 : 1 + C][off] = 0.0
        if nk:
            hi[1 + C : 1 + C + nk][off] = 0.0
        if nr:
            hi[1 + C + nk :][np.r_[off, off]] = 0.0
    hi = hi * scale

    def scaled(x):
        value, grad = objective(x / scale)
        return value, grad / scale

    tol = {"ftol": 1e-12, "gtol": 1e-8} if precise else {"ftol": 1e-9, "gtol": 1e-6}
    res = optimize.minimize(scaled, np.clip(x0 * scale, lo, hi), jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                            options={"maxiter": 5000, **tol})
    res.x = res.x / scale
    b, lam, kap, alp, gam = unpack(res.x)
    z = np.zeros(C)
    return FittedModel(form, C, float(b), lam.copy(), z.copy() if kap is None else kap.copy(),
                       z.copy() if alp is None else alp.copy(), z.copy() if gam is None else gam.copy(),
                       None, bool(res.success), d.measured)


def _preconditioner(theta, unpack, path, chan, logn, f_f, f_l, conv, n_paths, C, nk, nr, pen) -> np.ndarray:
    """sqrt of the diagonal of the penalized negative log likelihood's Hessian (Gauss-Newton) at ``theta``.

    The coefficients live on very different scales (hazards ~0.01, role multipliers ~1); dividing each by
    its curvature makes L-BFGS-B converge in tens of iterations instead of thousands.
    """
    b, lam, kap, alp, gam = unpack(theta)
    base = lam[chan] + (kap[chan] * logn if nk else 0.0)
    mult = np.exp(alp[chan] * f_f + gam[chan] * f_l) if nr else np.ones(chan.shape[0])
    t = base * mult
    eta = np.maximum(b + np.bincount(path, weights=t, minlength=n_paths), 1e-6)
    h = conv * np.exp(eta) / np.expm1(eta) ** 2  # d2 (-ll) / d eta2 where conversions happen
    he = h[path]
    diag = [np.array([h.sum()]), np.bincount(chan, weights=he * mult**2, minlength=C)]
    if nk:
        diag.append(np.bincount(chan, weights=he * (mult * logn) ** 2, minlength=C))
    if nr:
        diag += [np.bincount(chan, weights=he * (t * f_f) ** 2, minlength=C),
                 np.bincount(chan, weights=he * (t * f_l) ** 2, minlength=C)]
    d = np.concatenate(diag)
    d[1:] += pen
    total = float(conv.sum())
    return np.sqrt(np.maximum(d / max(total, 1.0), 1e-12))


def logit_design(s: PathSummary, form: ModelForm) -> sparse.csr_matrix:
    """Sparse design of the logit forms: presence, log touches, pair indicators (one row per path)."""
    C = s.n_channels
    path, chan, logn, _, _ = s.entries()
    blocks = [sparse.csr_matrix((np.ones(chan.shape[0]), (path, chan)), shape=(s.n_paths, C))]
    if form.counts:
        blocks.append(sparse.csr_matrix((logn, (path, chan)), shape=(s.n_paths, C)))
    if form.pairs:
        iu = np.triu_indices(C, 1)
        pair_id = np.full((C, C), -1, dtype=np.int64)
        pair_id[iu] = np.arange(iu[0].shape[0])
        rows, cols = [], []
        width = s.chans.shape[1]
        for a in range(width):
            for b in range(a + 1, width):
                ca, cb = s.chans[:, a], s.chans[:, b]
                ok = np.flatnonzero((ca >= 0) & (cb >= 0))
                lo, hi = np.minimum(ca[ok], cb[ok]), np.maximum(ca[ok], cb[ok])
                rows.append(ok)
                cols.append(pair_id[lo, hi])
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        blocks.append(sparse.csr_matrix((np.ones(r.shape[0]), (r, c)), shape=(s.n_paths, iu[0].shape[0])))
    return sparse.hstack(blocks, format="csr")


def _fit_logit(d: Design, conv: np.ndarray, nulls: np.ndarray, form: ModelForm, warm: FittedModel | None,
               precise: bool) -> FittedModel:
    from sklearn.linear_model import LogisticRegression

    C = d.rows.n_channels
    X = d.x
    has_c, has_n = conv > 0, nulls > 0
    Xy = sparse.vstack([X[has_c], X[has_n]], format="csr")
    y = np.r_[np.ones(int(has_c.sum())), np.zeros(int(has_n.sum()))]
    w = np.r_[conv[has_c], nulls[has_n]]
    if y.size == 0 or y.min() == y.max():
        raise ValueError("the logistic model needs both converting and non-converting journeys")
    model = LogisticRegression(C=1.0 / form.penalty, max_iter=2000, tol=1e-8 if precise else 1e-5,
                               warm_start=warm is not None)
    if warm is not None and warm.form == form:
        model.coef_ = _logit_coef(warm)[None, :]
        model.intercept_ = np.array([warm.intercept])
    model.fit(Xy, y, sample_weight=w)
    coef = model.coef_.ravel()
    pair = None
    main = coef[:C].copy()
    count = coef[C : 2 * C].copy() if form.counts else np.zeros(C)
    if form.pairs:
        off = 2 * C if form.counts else C
        pair = np.zeros((C, C))
        iu = np.triu_indices(C, 1)
        pair[iu] = coef[off:]
        pair = pair + pair.T
    if d.measured is not None:  # their columns are empty, so the penalty left them at ~0: make it exact
        off = ~d.measured
        main[off] = 0.0
        count[off] = 0.0
        if pair is not None:
            pair[off, :] = 0.0
            pair[:, off] = 0.0
    z = np.zeros(C)
    return FittedModel(form, C, float(model.intercept_[0]), main, count, z.copy(), z.copy(), pair,
                       bool(np.all(model.n_iter_ < model.max_iter)), d.measured)


def _logit_coef(m: FittedModel) -> np.ndarray:
    parts = [m.main] + ([m.count] if m.form.counts else [])
    if m.form.pairs and m.pair is not None:
        parts.append(m.pair[np.triu_indices(m.n_channels, 1)])
    return np.concatenate(parts)
