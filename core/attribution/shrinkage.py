"""Empirical-Bayes shrinkage of exact-channel-set conversion rates toward a fitted model.

With 15 channels there are 32,768 channel sets, most seen in a handful of journeys, and their raw
conversion rates are noise. Each set ``T`` gets a Beta prior centred on the fitted model's prediction
``m_T`` with strength ``kappa`` (in journeys): the shrunk rate is ``(conversions_T + kappa m_T) /
(journeys_T + kappa)``, so a set seen in 30 journeys moves only part of the way from the model toward
its own rate, and a set seen in 30,000 keeps its own. ``kappa`` is estimated from the data by
maximizing the beta-binomial marginal likelihood of every observed set (empirical Bayes): when the sets
scatter around the model no more than sampling noise explains, ``kappa`` is large (trust the model);
when they really differ from it, ``kappa`` is small (trust each set). A set never observed takes the
model's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from core.attribution.datadriven import lattice_game
from core.attribution.fitted import FittedModel, ModelForm
from core.attribution.journey_features import PathSummary
from core.attribution.shapley import MAX_SHAPLEY_CHANNELS

KAPPA_BOUNDS = (1e-2, 1e7)


@dataclass(frozen=True, eq=False)
class RatePrior:
    """Prior mean of every coalition's conversion rate and the prior strength (journeys)."""

    mean: np.ndarray  # per coalition: the model's mean prediction over the set's journeys (or set-level)
    strength: float  # kappa

    def shrink(self, conv_t: np.ndarray, jour_t: np.ndarray) -> np.ndarray:
        """Shrunk rate of every coalition (the prior mean where no journey was seen)."""
        return (conv_t + self.strength * self.mean) / (jour_t + self.strength)

    def data_weight(self, jour_t: np.ndarray) -> np.ndarray:
        """How much of each coalition's shrunk rate comes from its own journeys (0..1)."""
        return jour_t / (jour_t + self.strength)


def set_level_prior(model: FittedModel, s: PathSummary) -> np.ndarray:
    """The model's conversion probability for every channel coalition (bit i = channel i).

    A coalition seen in the data gets the mean prediction over its journeys (counts and order as they
    were); one never seen gets the model on a typical journey of those channels (each channel's term
    averaged over the journeys where it appears).
    """
    n = s.n_channels
    if n > MAX_SHAPLEY_CHANNELS:
        raise ValueError(f"a prior over every coalition supports at most {MAX_SHAPLEY_CHANNELS} channels")
    if model.form.set_level:
        lattice = lattice_game(model)
    else:
        path, chan, logn, f, l = model.entries(s)
        w = s.journeys[path]
        terms = model.channel_terms(chan, logn, f, l)
        tot = np.bincount(chan, weights=w, minlength=n)
        typical = np.divide(np.bincount(chan, weights=w * terms, minlength=n), tot, out=model.main.copy(), where=tot > 0)
        flat = ModelForm(model.form.link, pairs=model.form.pairs, penalty=model.form.penalty)
        lattice = lattice_game(FittedModel(flat, n, model.intercept, typical, np.zeros(n), np.zeros(n), np.zeros(n), model.pair))
    size = 1 << n
    pred = model.predict(s)
    jour = np.bincount(s.masks, weights=s.journeys, minlength=size)
    mean_obs = np.bincount(s.masks, weights=s.journeys * pred, minlength=size)
    out = lattice.copy()
    np.divide(mean_obs, jour, out=out, where=jour > 0)
    return out


def estimate_strength(conv_t: np.ndarray, jour_t: np.ndarray, mean: np.ndarray) -> float:
    """Empirical-Bayes kappa: the beta-binomial marginal likelihood of the observed coalitions, maximized."""
    seen = jour_t > 0
    c, n = conv_t[seen], jour_t[seen]
    m = np.clip(mean[seen], 1e-9, 1 - 1e-9)
    if c.size == 0:
        return KAPPA_BOUNDS[1]

    def nll(log_kappa: float) -> float:
        k = np.exp(log_kappa)
        a, b = k * m, k * (1 - m)
        return -float(np.sum(special.betaln(c + a, n - c + b) - special.betaln(a, b)))

    lo, hi = np.log(KAPPA_BOUNDS[0]), np.log(KAPPA_BOUNDS[1])
    res = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def rate_prior(model: FittedModel, s: PathSummary) -> RatePrior:
    """Prior means from ``model`` and the strength estimated from the exact-set counts of ``s``."""
    mean = set_level_prior(model, s)
    size = 1 << s.n_channels
    conv_t = np.bincount(s.masks, weights=s.conversions, minlength=size)
    jour_t = np.bincount(s.masks, weights=s.journeys, minlength=size)
    return RatePrior(mean, estimate_strength(conv_t, jour_t, mean))


def prior_from_counts(mean: np.ndarray, masks: np.ndarray, n: int, conversions: np.ndarray, nulls: np.ndarray) -> RatePrior:
    """A prior with the given means and its strength re-estimated from these counts (bootstrap replicates)."""
    size = 1 << n
    conv_t = np.bincount(masks, weights=conversions, minlength=size)
    jour_t = conv_t + np.bincount(masks, weights=nulls, minlength=size)
    return RatePrior(mean, estimate_strength(conv_t, jour_t, mean))


def channel_support(prior: RatePrior, masks: np.ndarray, n: int, conversions: np.ndarray, nulls: np.ndarray,
                    channels) -> dict:
    """How many journeys stand behind each channel's rate-game credit.

    Per channel: the journeys and the converting journeys whose channel set contains it, and the share
    of its credit's rates that comes from the data rather than the prior (each converting channel set
    weighted by its conversions: ``journeys / (journeys + kappa)``).
    """
    size = 1 << n
    conv_t = np.bincount(masks, weights=conversions, minlength=size)
    jour_t = conv_t + np.bincount(masks, weights=nulls, minlength=size)
    weight = prior.data_weight(jour_t)
    out = {"channel": list(channels), "journeys": [], "converting_journeys": [], "data_weight": [], "smallest_set_journeys": []}
    coal = np.arange(size, dtype=np.int64)
    for i in range(n):
        has = ((coal >> i) & 1).astype(bool) & (jour_t > 0)
        c = conv_t[has]
        out["journeys"].append(float(jour_t[has].sum()))
        out["converting_journeys"].append(float(c.sum()))
        out["data_weight"].append(float((c @ weight[has]) / c.sum()) if c.sum() > 0 else float("nan"))
        conv_sets = has & (conv_t > 0)
        out["smallest_set_journeys"].append(float(jour_t[conv_sets].min()) if conv_sets.any() else float("nan"))
    out["strength"] = prior.strength
    return out
