"""Data-driven attribution: the exact Shapley value of a fitted conversion model on every converting path.

For a converting path with channels ``T``, the game is ``v(S) = p(path restricted to the channels in S)
- p(no touch)`` for every ``S`` within ``T`` (removing a channel removes all its touches; the order of the
rest is kept, so roles move to whichever channel now holds the first or last touch). Its Shapley values
add up to ``p(T) - p(no touch)``; the path's conversions are shared as ``conversions * phi_i / p(T)``, so a
channel is credited with the conversions it is expected to have caused, and ``conversions * p(no touch) /
p(T)`` is left to the baseline, unattributed and shown. This is the counterfactual credit of the
platforms' data-driven attribution, computed exactly rather than sampled.

Two exact engines give the same numbers:

* per path (any form): all ``2^k`` subsets of each distinct path's ``k`` channels at once, vectorised
  over the paths that share ``k`` (``sum of 2^k * k`` work over the distinct paths);
* on the coalition lattice (forms that depend only on the channel set, up to 20 channels):
  ``v`` on all ``2^n`` coalitions, Moebius dividends and superset sums (``O(n 2^n)`` whatever the
  number of paths), as in `core.attribution.shapley`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.attribution.fitted import FittedModel
from core.attribution.journey_features import MAX_COUNTED_TOUCHES, PathSummary
from core.attribution.shapley import (MAX_SHAPLEY_CHANNELS, moebius, no_negative_credit, set_game_credit, shapley_from_values,
                                      subset_members)

#: Work bound of the per-path engine (sum over distinct paths of 2^k * k); above it a form that needs
#: per-path Shapley values (counts, roles) is not offered.
MAX_PATH_WORK = 400_000_000
_CHUNK = 1 << 21  # rows x subsets per vectorised block


class ShapleyTooCostly(ValueError):
    """The per-path exact Shapley values would take too long for this data."""


@dataclass(frozen=True, eq=False)
class DataDrivenCredit:
    conversions: np.ndarray  # credit per channel
    value: np.ndarray
    baseline_conversions: float  # conversions left to the baseline (no channel earned them)
    baseline_value: float
    baseline_rate: float  # p(no touch)
    negative_conversions: float = 0.0  # what negative Shapley values would have taken away (left to the baseline)


def path_work(s: PathSummary) -> float:
    """Work of the per-path engine on ``s``."""
    return float(np.sum(np.exp2(s.k.astype(np.float64)) * s.k))


def _unique_designs(s: PathSummary, model: FittedModel) -> tuple[PathSummary, np.ndarray]:
    """Distinct paths as the model sees them (channels in first-touch order, touches, last-touch order)."""
    cols = [s.chans]
    if model.form.counts:
        cols.append(np.minimum(s.counts, MAX_COUNTED_TOUCHES))
    if model.form.roles:
        cols.append(s.last_rank)
    key = np.ascontiguousarray(np.hstack(cols).astype(np.int64))
    view = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first_idx, inverse = np.unique(view, return_index=True, return_inverse=True)
    i = first_idx
    return (PathSummary(s.n_channels, s.chans[i], s.counts[i], s.last_rank[i], s.k[i], s.first[i], s.last[i], s.masks[i],
                        s.conversions[i], s.nulls[i], s.value[i]), inverse.ravel())


def path_shapley(model: FittedModel, s: PathSummary) -> tuple[np.ndarray, np.ndarray]:
    """Per path: Shapley values over its channels (``(n, K)``, in ``s.chans`` order) and p(path)."""
    n, width = s.n_paths, s.chans.shape[1]
    phi = np.zeros((n, width))
    p_full = np.zeros(n)
    p0 = model.prob(np.array([model.intercept]))[0]
    form = model.form
    for k in np.unique(s.k):
        k = int(k)
        rows_all = np.flatnonzero(s.k == k)
        bits = subset_members(k)
        fbits = bits.astype(np.float64)
        step = max(1, _CHUNK >> k)
        for a in range(0, rows_all.shape[0], step):
            rows = rows_all[a : a + step]
            ch = s.chans[rows, :k]
            logn = np.log(np.clip(s.counts[rows, :k], 1, MAX_COUNTED_TOUCHES))
            term = model.main[ch] + model.count[ch] * logn
            eta = model.intercept + term @ fbits.T  # (r, 2^k)
            if form.roles:
                # In the path restricted to S, the first touch among the channels that can hold a role is
                # that of S's lowest such member (channels are in first-touch order), the last touch that
                # of its member with the highest last-touch rank; S may hold no such channel at all.
                holds = np.ones(ch.shape, dtype=bool) if model.measured is None else model.measured[ch]
                lr = s.last_rank[rows, :k]
                r = rows.shape[0]
                low = np.zeros((r, 1 << k), dtype=np.int64)
                for j in range(k - 1, -1, -1):
                    low = np.where(bits[None, :, j] & holds[:, j, None], j, low)
                best = np.full((r, 1 << k), -1, dtype=np.int64)
                last_loc = np.zeros((r, 1 << k), dtype=np.int64)
                for j in range(k):
                    better = bits[None, :, j] & holds[:, j, None] & (lr[:, j, None] > best)
                    best = np.where(better, lr[:, j, None], best)
                    last_loc = np.where(better, j, last_loc)
                held = best >= 0  # S holds a channel that can take the roles
                e_f = np.expm1(model.first[ch])
                e_l = np.expm1(model.last[ch])
                ef_low = np.take_along_axis(e_f, low, axis=1)
                t_f = np.take_along_axis(term, low, axis=1) * ef_low
                t_l = np.take_along_axis(term, last_loc, axis=1) * np.take_along_axis(e_l, last_loc, axis=1)
                extra = t_f + t_l + np.where(last_loc == low, ef_low * t_l, 0.0)
                eta = eta + np.where(held, extra, 0.0)
            if model.pair is not None:
                w = model.pair[ch[:, :, None], ch[:, None, :]]  # (r, k, k)
                eta = eta + 0.5 * np.einsum("sa,rab,sb->rs", fbits, w, fbits, optimize=True)
            v = model.prob(eta) - p0
            phi[rows, :k] = shapley_from_values(v, k)
            p_full[rows] = v[:, -1] + p0
    return phi, p_full


def lattice_game(model: FittedModel) -> np.ndarray:
    """p(S) on every channel coalition of a set-level model (bit i = channel i), O(n 2^n)."""
    C = model.n_channels
    eta = np.array([model.intercept])
    for i in range(C):
        add = model.main[i]
        if model.pair is not None and i:
            pair_sum = np.zeros(1)
            for j in range(i):
                pair_sum = np.concatenate([pair_sum, pair_sum + model.pair[i, j]])
            eta = np.concatenate([eta, eta + add + pair_sum])
        else:
            eta = np.concatenate([eta, eta + add])
    return model.prob(eta)


def credit(model: FittedModel, s: PathSummary) -> DataDrivenCredit:
    """Data-driven credit of the converting paths of ``s`` (see the module docstring)."""
    C = s.n_channels
    p0 = model.baseline
    conv, value = s.conversions, s.value
    if model.form.set_level and C <= MAX_SHAPLEY_CHANNELS and C <= 62:
        p = lattice_game(model)
        m = moebius(p - p0, C)
        pt = p[s.masks]
        w_c = np.bincount(s.masks, weights=np.divide(conv, pt, out=np.zeros_like(conv), where=pt > 0), minlength=1 << C)
        w_v = np.bincount(s.masks, weights=np.divide(value, pt, out=np.zeros_like(value), where=pt > 0), minlength=1 << C)
        (cc, cv), negative = set_game_credit(m, C, np.vstack([w_c, w_v]), p)
        base_c = float(np.sum(conv[pt > 0])) - float(cc.sum())  # each journey's conversion: its channels', the rest the baseline's
        base_v = float(np.sum(value[pt > 0])) - float(cv.sum())
        return DataDrivenCredit(cc, cv, base_c, base_v, p0, negative)
    keep = conv > 0
    sub = s.with_counts(conv, s.nulls, value)
    idx = np.flatnonzero(keep)
    sub = PathSummary(C, sub.chans[idx], sub.counts[idx], sub.last_rank[idx], sub.k[idx], sub.first[idx], sub.last[idx],
                      sub.masks[idx], conv[idx], sub.nulls[idx], value[idx])
    uniq, inverse = _unique_designs(sub, model)
    work = path_work(uniq)
    if work > MAX_PATH_WORK:
        raise ShapleyTooCostly(
            f"exact per-path Shapley values of the {model.form.name} model would take {work:.2g} steps on this data "
            f"(limit {MAX_PATH_WORK:.2g}): its paths hold too many distinct channels"
        )
    phi_u, p_u = path_shapley(model, uniq)
    phi_u = np.where(uniq.chans[:, :phi_u.shape[1]] >= 0, phi_u, 0.0)
    bounded_u = no_negative_credit(phi_u, p_u)
    phi, bounded, pt = phi_u[inverse], bounded_u[inverse], p_u[inverse]
    scale_c = np.divide(sub.conversions, pt, out=np.zeros_like(pt), where=pt > 0)
    scale_v = np.divide(sub.value, pt, out=np.zeros_like(pt), where=pt > 0)
    width = phi.shape[1]
    valid = uniq.chans[inverse][:, :width] >= 0
    ch = uniq.chans[inverse][:, :width][valid]
    cc = np.bincount(ch, weights=(bounded * scale_c[:, None])[valid], minlength=C)
    cv = np.bincount(ch, weights=(bounded * scale_v[:, None])[valid], minlength=C)
    base = np.where(pt > 0, 1.0 - np.divide(bounded.sum(axis=1), pt, out=np.zeros_like(pt), where=pt > 0), 0.0)
    negative = float(np.sum(np.minimum(phi, 0.0).sum(axis=1) * scale_c))
    return DataDrivenCredit(cc, cv, float(np.sum(sub.conversions * base)), float(np.sum(sub.value * base)), p0, -negative)


def journey_split(model: FittedModel, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """One journey (channel codes in touch order): its distinct channels (first-touch order), each one's
    share of the conversion (``phi / p``), p(journey) and the baseline's share ``p0 / p``."""
    from core.attribution.journey_features import summarize
    from core.pathtable import PathTable

    codes = np.asarray(codes, dtype=np.int32)
    names = tuple(str(i) for i in range(model.n_channels))
    one = PathTable(names, np.array([0, codes.shape[0]], dtype=np.int64), codes, np.ones(1), np.zeros(1), np.zeros(1))
    s = summarize(one)
    phi, p = path_shapley(model, s)
    k = int(s.k[0])
    if p[0] <= 0:
        return s.chans[0, :k], np.full(k, np.nan), float(p[0]), np.nan
    shares = no_negative_credit(phi[:, :k], p)[0] / p[0]
    return s.chans[0, :k], shares, float(p[0]), 1.0 - float(shares.sum())
