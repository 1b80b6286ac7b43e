"""Exact Shapley attribution over channel coalitions (bitmasks), two characteristic functions.

Coalitions are integers ``0 .. 2^n - 1`` (bit ``i`` = channel ``i``); games are float arrays indexed by
coalition. Subset sums (zeta), their inverse (Moebius) and superset sums are ``n`` vectorised passes
over a ``(-1, 2, 2^i)`` view, so every model is O(n 2^n) whatever the number of paths.

1. ``shapley`` (Zhao et al. 2018, "simplified Shapley"): v(S) = conversions of journeys whose channel
   set is contained in S. Its Harsanyi dividends are the conversions of each exact channel set, so
   every channel of a journey gets 1/|set| of its conversions (and value).
2. ``shapley_rate`` (incremental conversion rate): v(S) = conversion rate of journeys whose channel set
   is exactly S. **Rule for a coalition never observed**: v(S) is the pooled conversion rate of the
   journeys whose channel set is a subset of S (0 when there are none, so v(empty) = 0). Each converting
   channel set T is split by the Shapley values of the game restricted to T's subsets, normalised by
   v(T) (they sum to v(T)), so its conversions and value are shared out exactly; a channel can receive
   negative credit when adding it lowers the conversion rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from core.pathtable import PathTable, PathTableError

MAX_SHAPLEY_CHANNELS = 20


def _check_channels(n: int) -> None:
    if n > MAX_SHAPLEY_CHANNELS:
        raise PathTableError(
            f"Shapley attribution is exact over all 2^n channel coalitions and supports at most "
            f"{MAX_SHAPLEY_CHANNELS} channels; this table has {n}. Group channels or use the Markov model."
        )


def coalition_masks(table: PathTable) -> np.ndarray:
    """The channel set of every path as an int64 bitmask (one OR-reduction per path)."""
    table.validate()
    _check_channels(table.n_channels)
    bits = np.left_shift(np.int64(1), table.codes.astype(np.int64))
    return np.bitwise_or.reduceat(bits, table.offsets[:-1])


def popcounts(n: int) -> np.ndarray:
    """Number of set bits of every coalition 0 .. 2^n - 1."""
    pc = np.zeros(1 << n, dtype=np.int64)
    for i in range(n):
        pc.reshape(-1, 2, 1 << i)[:, 1, :] += 1
    return pc


def subset_sum(f: np.ndarray, n: int) -> np.ndarray:
    """Zeta transform: g(S) = sum of f(T) over T subset of S."""
    g = np.array(f, dtype=np.float64, copy=True)
    for i in range(n):
        v = g.reshape(-1, 2, 1 << i)
        v[:, 1, :] += v[:, 0, :]
    return g


def moebius(f: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `subset_sum`: the Harsanyi dividends of the game ``f``."""
    g = np.array(f, dtype=np.float64, copy=True)
    for i in range(n):
        v = g.reshape(-1, 2, 1 << i)
        v[:, 1, :] -= v[:, 0, :]
    return g


def superset_sum(f: np.ndarray, n: int) -> np.ndarray:
    """g(S) = sum of f(T) over T superset of S."""
    g = np.array(f, dtype=np.float64, copy=True)
    for i in range(n):
        v = g.reshape(-1, 2, 1 << i)
        v[:, 0, :] += v[:, 1, :]
    return g


def sum_by_member(g: np.ndarray, n: int) -> np.ndarray:
    """For every player i: the sum of g(S) over coalitions S containing i."""
    return np.array([g.reshape(-1, 2, 1 << i)[:, 1, :].sum() for i in range(n)], dtype=np.float64)


def shapley_from_dividends(m: np.ndarray, n: int, pc: np.ndarray | None = None) -> np.ndarray:
    """Shapley values of the game on all n players: phi_i = sum over S containing i of m(S)/|S|."""
    pc = popcounts(n) if pc is None else pc
    share = np.zeros_like(m)
    share[1:] = m[1:] / pc[1:]
    return sum_by_member(share, n)


# --------------------------------------------------------------------------- many small games at once
def subset_members(k: int) -> np.ndarray:
    """(2^k, k) bool: bit j of subset s."""
    s = np.arange(1 << k, dtype=np.int64)
    return ((s[:, None] >> np.arange(k)) & 1).astype(bool)


def shapley_weights(k: int) -> np.ndarray:
    """w[s] = s! (k - s - 1)! / k!: the Shapley weight of a coalition of size s without the player."""
    return np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)], dtype=np.float64)


def shapley_from_values(values: np.ndarray, k: int) -> np.ndarray:
    """Exact Shapley values of many k-player games at once.

    ``values`` is (rows, 2^k): v(S) per row with bit j of S = local player j. Returns (rows, k).
    """
    subsets = np.arange(1 << k, dtype=np.int64)
    size = np.zeros(1 << k, dtype=np.int64)
    for j in range(k):
        size += (subsets >> j) & 1
    w = shapley_weights(k) if k else np.zeros(0)
    out = np.zeros((values.shape[0], k))
    for j in range(k):
        with_j = subsets[(subsets >> j) & 1 == 1]
        coef = w[size[with_j] - 1]
        out[:, j] = (values[:, with_j] - values[:, with_j ^ (1 << j)]) @ coef
    return out


# --------------------------------------------------------------------------- coalition conversions
@dataclass(frozen=True, eq=False)
class ShapleyResult:
    conversions: np.ndarray  # credit per channel
    value: np.ndarray
    shapley_values: np.ndarray  # Shapley values of the characteristic function on all channels


def shapley_zhao_from_masks(masks: np.ndarray, n: int, conversions: np.ndarray, value: np.ndarray) -> ShapleyResult:
    """Coalition-conversions Shapley: each journey's channels get 1/|set| of its conversions and value."""
    conv_t = np.bincount(masks, weights=conversions, minlength=1 << n)
    val_t = np.bincount(masks, weights=value, minlength=1 << n)
    pc = popcounts(n)
    conv_share = np.zeros(1 << n)
    val_share = np.zeros(1 << n)
    conv_share[1:] = conv_t[1:] / pc[1:]
    val_share[1:] = val_t[1:] / pc[1:]
    credit = sum_by_member(conv_share, n)
    return ShapleyResult(credit, sum_by_member(val_share, n), credit.copy())


def shapley_zhao(table: PathTable) -> ShapleyResult:
    """Exact Shapley credit with v(S) = conversions of journeys whose channels are all in S."""
    masks = coalition_masks(table)
    return shapley_zhao_from_masks(masks, table.n_channels, table.conversions, table.value)


# --------------------------------------------------------------------------- incremental conversion rate
@dataclass(frozen=True, eq=False)
class ShapleyRateResult:
    conversions: np.ndarray  # credit per channel
    value: np.ndarray
    shapley_values: np.ndarray  # Shapley values of the rate game on all channels (sum = v(all))
    game: np.ndarray  # v(S) for every coalition
    dividends: np.ndarray  # Moebius transform of the game
    observed: np.ndarray  # bool per coalition: some journey has exactly this channel set
    negative_conversions: float = 0.0  # what negative values would have taken from channels (`no_negative_credit`)

    def split(self, mask: int) -> np.ndarray:
        """Shapley values of the game restricted to the subsets of ``mask``, per channel (sum = v(mask))."""
        n = int(np.log2(self.game.shape[0]))
        bits = [i for i in range(n) if (mask >> i) & 1]
        if not bits:
            return np.zeros(n)
        idx = np.arange(1 << len(bits), dtype=np.int64)
        subs = np.zeros(idx.shape[0], dtype=np.int64)
        for j, b in enumerate(bits):
            subs |= ((idx >> j) & 1) << b
        size = np.zeros(idx.shape[0], dtype=np.int64)
        for j in range(len(bits)):
            size += (idx >> j) & 1
        m = self.dividends[subs]
        out = np.zeros(n)
        nz = size > 0
        for j, b in enumerate(bits):
            member = nz & (((idx >> j) & 1) == 1)
            out[b] = float(np.sum(m[member] / size[member]))
        return out


def no_negative_credit(phi: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Shapley values (rows: journeys or coalitions) as credit: a channel whose presence lowers the game's
    value (a negative value; e.g. converting journeys end at the conversion while the others run on, so
    more touches look like less converting) earns nothing rather than minus conversions, and the positive
    values are scaled down, if need be, to add up to at most ``cap`` (the row's value: whatever is left is
    the baseline's, never negative). Rows already within those bounds (every channel helps; the usual
    case) are returned as they are."""
    pos = np.maximum(phi, 0.0)
    total = pos.sum(axis=1)
    scale = np.divide(cap, total, out=np.ones_like(total, dtype=np.float64), where=total > cap)
    return pos * scale[:, None]


#: Work bound (coalitions x subsets x members) for bounding each converting coalition's values one by one.
MAX_BOUNDED_WORK = 200_000_000
_BLOCK = 1 << 20  # coalition x subset entries per vectorised block


def set_game_credit(dividends: np.ndarray, n: int, weights: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, float]:
    """Credit per channel of a set-level game: each coalition ``T``'s weights (rows of ``weights``, e.g.
    conversions and value divided by ``cap(T)``) shared by its Shapley values bounded by `no_negative_credit`
    (``cap``: per coalition, what the values may add up to), and the conversions that negative values would
    have taken away (first weight row). With every dividend non-negative no value is negative and the
    lattice sums give the answer at once; otherwise the converting coalitions are bounded one by one
    (vectorised by size), or, beyond `MAX_BOUNDED_WORK`, the channels' totals are cut at zero."""
    weights = np.atleast_2d(weights)
    pc = popcounts(n)
    share = np.zeros(1 << n)
    share[1:] = dividends[1:] / pc[1:]
    if np.all(dividends[1:] >= -1e-12):
        return np.array([sum_by_member(share * superset_sum(w, n), n) for w in weights]), 0.0
    coalitions = np.flatnonzero((weights != 0).any(axis=0))
    coalitions = coalitions[coalitions > 0]
    sizes = pc[coalitions]
    if float(np.sum(np.exp2(sizes) * sizes)) > MAX_BOUNDED_WORK:
        raw = np.array([sum_by_member(share * superset_sum(w, n), n) for w in weights])
        return np.maximum(raw, 0.0), float(-np.minimum(raw[0], 0.0).sum())
    credit, negative = np.zeros((weights.shape[0], n)), 0.0
    bit = np.int64(1) << np.arange(n, dtype=np.int64)
    for k in np.unique(sizes):
        k = int(k)
        members_of = subset_members(k)  # (2^k, k)
        size = members_of.sum(axis=1)
        group = coalitions[sizes == k]
        for lo in range(0, group.size, max(1, _BLOCK >> k)):
            t = group[lo:lo + max(1, _BLOCK >> k)]
            members = np.nonzero((t[:, None] & bit) != 0)[1].reshape(t.size, k)  # each coalition's channels, ascending
            subsets = (bit[members] @ members_of.T.astype(np.int64))  # (coalitions, 2^k) masks of their subsets
            per_size = np.divide(dividends[subsets], size, out=np.zeros(subsets.shape), where=size > 0)
            phi = per_size @ members_of.astype(np.float64)  # (coalitions, k): sum over subsets holding the channel
            bounded = no_negative_credit(phi, cap[t])
            for r in range(weights.shape[0]):
                credit[r] += np.bincount(members.ravel(), weights=(bounded * weights[r, t][:, None]).ravel(), minlength=n)
            negative -= float(np.sum(np.minimum(phi, 0.0).sum(axis=1) * weights[0, t]))
    return credit, negative


def rate_game(masks: np.ndarray, n: int, conversions: np.ndarray, nulls: np.ndarray, prior=None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """v(S) per coalition, plus per-coalition conversions and whether the coalition was observed.

    Without ``prior``: the exact-set rate, the pooled subset rate where unobserved. With a
    `core.attribution.shrinkage.RatePrior`: the exact-set rate shrunk toward the prior mean (the prior
    mean where unobserved). v(empty) = 0 either way.
    """
    size = 1 << n
    conv_t = np.bincount(masks, weights=conversions, minlength=size)
    jour_t = conv_t + np.bincount(masks, weights=nulls, minlength=size)
    observed = jour_t > 0
    if prior is not None:
        v = prior.shrink(conv_t, jour_t)
    else:
        conv_sub = subset_sum(conv_t, n)
        jour_sub = subset_sum(jour_t, n)
        v = np.zeros(size)
        np.divide(conv_sub, jour_sub, out=v, where=jour_sub > 0)
        np.divide(conv_t, jour_t, out=v, where=observed)
    v[0] = 0.0
    return v, conv_t, observed


def shapley_rate_from_masks(
    masks: np.ndarray, n: int, conversions: np.ndarray, value: np.ndarray, nulls: np.ndarray, prior=None
) -> ShapleyRateResult:
    """Incremental-conversion-rate Shapley credit (see the module docstring for the definition)."""
    v, conv_t, observed = rate_game(masks, n, conversions, nulls, prior)
    val_t = np.bincount(masks, weights=value, minlength=1 << n)
    m = moebius(v, n)
    pc = popcounts(n)
    converting = (conv_t > 0) & (v > 0)
    # credit_i = sum_T w(T) phi_i^T / v(T) = sum over S containing i of m(S)/|S| * sum_{T >= S} w(T)/v(T)
    # (each coalition's values bounded at zero: `set_game_credit`)
    scale = np.zeros((2, 1 << n))
    scale[0, converting] = conv_t[converting] / v[converting]
    scale[1, converting] = val_t[converting] / v[converting]
    (credit, credit_v), negative = set_game_credit(m, n, scale, v)
    share = np.zeros(1 << n)
    share[1:] = m[1:] / pc[1:]
    return ShapleyRateResult(credit, credit_v, sum_by_member(share, n), v, m, observed, negative)


def shapley_rate(table: PathTable) -> ShapleyRateResult:
    """Exact incremental-conversion-rate Shapley credit of ``table``."""
    masks = coalition_masks(table)
    return shapley_rate_from_masks(masks, table.n_channels, table.conversions, table.value, table.nulls)
