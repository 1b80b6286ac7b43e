"""Journeys with a known incremental truth, to measure how close each attribution model gets.

A journey is a sequence of touches (channels drawn by popularity, with runs of the same channel); its
conversion probability is a noisy-OR over its channels on top of a baseline:
``p = 1 - (1 - baseline) * prod_i (1 - effect_i)``, where ``effect_i`` depends on the variant:

* ``order_free``: every touch of channel ``i`` is an independent chance ``q_i`` to cause the
  conversion, halved for each repeat (``q_i``, ``q_i / 2``, ``q_i / 4`` ...), whatever the order;
* ``order_dependent``: one chance per channel, ``q_i`` times a multiplier set by the channel's role in
  the journey: *introducer* channels work 2x when they hold the first touch and 0.4x otherwise,
  *closer* channels 2x when they hold the last touch and 0.4x otherwise; touches are also ordered by
  channel (introducers tend to come early, closers late), so order and channel set are correlated.

One channel has no effect at all (``q = 0``) but is popular. For every journey the game
``v(S) = p(journey restricted to the channels in S) - baseline`` over its channels has exact Shapley
values ``phi`` that add up to ``p - baseline``. Two truths follow:

* ``truth`` (the question attribution answers): of the conversions that happened, how many did each
  channel cause? Each converting journey gives channel ``i`` the share ``phi_i / p`` of its conversion;
  the rest, ``baseline / p``, would have happened anyway. This is the expected credit given who converted.
* ``expected_truth``: each channel's expected incremental conversions over all journeys, converting or
  not (``sum of phi_i``), free of the noise of which journeys happened to convert.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from core.attribution.shapley import shapley_from_values, subset_members
from core.pathtable import PathTable

VARIANTS = ("order_free", "order_dependent")


@dataclass(frozen=True, eq=False)
class SimulatedData:
    """Simulated journeys (as a PathTable) with the truth per channel."""

    paths: PathTable
    truth: np.ndarray  # conversions each channel caused, given who converted (paths.channels order)
    expected_truth: np.ndarray  # expected incremental conversions per channel over all journeys
    effects: np.ndarray  # q per channel
    roles: tuple[str, ...]  # "neutral" | "introducer" | "closer" per channel
    baseline: float
    zero_channel: str  # the channel with no effect
    expected_conversions: float
    n_journeys: int

    @property
    def truth_shares(self) -> np.ndarray:
        return self.truth / self.truth.sum()

    @property
    def expected_truth_shares(self) -> np.ndarray:
        return self.expected_truth / self.expected_truth.sum()


def _draw_paths(rng, n_journeys: int, popularity: np.ndarray, mean_extra: float, repeat: float, max_len: int):
    lengths = np.minimum(1 + rng.poisson(mean_extra, size=n_journeys), max_len).astype(np.int64)
    offsets = np.zeros(n_journeys + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    codes = rng.choice(popularity.shape[0], size=total, p=popularity).astype(np.int32)
    first = np.zeros(total, dtype=bool)
    first[offsets[:-1]] = True
    fresh = first | (rng.random(total) >= repeat)  # a touch that is not a repeat of the previous one
    src = np.maximum.accumulate(np.where(fresh, np.arange(total), 0))
    return offsets, codes[src]


def simulate(n_channels: int = 15, n_journeys: int = 300_000, *, variant: str = "order_free", seed: int = 0,
             baseline: float = 0.02) -> SimulatedData:
    """Journeys over ``n_channels`` channels (one without effect) with their expected incremental truth."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if n_channels < 2:
        raise ValueError("the simulator needs at least two channels")
    rng = np.random.default_rng(seed)
    names = tuple(f"ch{i:02d}" for i in range(n_channels))
    rank = rng.permutation(n_channels)
    popularity = 1.0 / (1.0 + rank) ** 0.8
    popularity /= popularity.sum()
    effects = rng.uniform(0.005, 0.05, size=n_channels)
    zero = int(np.argsort(rank)[1])  # the second most popular channel has no effect
    effects[zero] = 0.0
    roles = np.array(["neutral"] * n_channels, dtype=object)
    if variant == "order_dependent":
        pick = rng.permutation([i for i in range(n_channels) if i != zero])
        third = max(1, (n_channels - 1) // 3)
        roles[pick[:third]] = "introducer"
        roles[pick[third : 2 * third]] = "closer"
    offsets, codes = _draw_paths(rng, n_journeys, popularity, 1.6, 0.25, 12)
    if variant == "order_dependent":  # introducers drift to the front, closers to the back
        tilt = np.where(roles == "introducer", -1.0, np.where(roles == "closer", 1.0, 0.0))
        path = np.repeat(np.arange(n_journeys), np.diff(offsets))
        key = tilt[codes] + rng.normal(0, 0.8, size=codes.shape[0])
        codes = codes[np.lexsort((key, path))]
    table = PathTable(names, offsets, codes, np.ones(n_journeys), np.zeros(n_journeys), np.zeros(n_journeys)).aggregated()
    n_per_path = table.conversions  # journeys per unique path
    p, phi = _truth_per_path(table, effects, roles, baseline, variant)
    conv = rng.binomial(n_per_path.astype(np.int64), p).astype(np.float64)
    value = conv * 50.0
    paths = PathTable(names, table.offsets, table.codes, conv, value, n_per_path - conv)
    expected = np.bincount(phi[0], weights=phi[1] * n_per_path[phi[2]], minlength=n_channels)
    truth = np.bincount(phi[0], weights=phi[1] * (conv / p)[phi[2]], minlength=n_channels)
    return SimulatedData(paths, truth, expected, effects, tuple(roles), baseline, names[zero], float(n_per_path @ p),
                         int(n_journeys))


def _truth_per_path(table: PathTable, effects, roles, baseline, variant):
    """Conversion probability per unique path, and the exact Shapley split of its incremental part.

    Returns ``p`` and ``(channel, phi, path)`` triplets (one per distinct channel of each path).
    """
    n = table.n_paths
    padded = table.padded(-1)
    width = padded.shape[1]
    p = np.zeros(n)
    ch_out, phi_out, path_out = [], [], []
    # Distinct channels of each path in first-occurrence order, with first/last positions and counts.
    masks = np.zeros(n, dtype=np.int64)
    for col in range(width):
        c = padded[:, col]
        ok = c >= 0
        masks[ok] |= np.left_shift(np.int64(1), c[ok].astype(np.int64))
    k_of = np.zeros(n, dtype=np.int64)
    m = masks.copy()
    while np.any(m):
        k_of += (m & 1).astype(np.int64)
        m >>= 1
    log_base = np.log1p(-baseline)
    for k in np.unique(k_of):
        rows = np.flatnonzero(k_of == k)
        seqs = padded[rows]
        # local channel order: by first occurrence
        local = np.full((rows.shape[0], k), -1, dtype=np.int64)
        first_pos = np.zeros((rows.shape[0], k), dtype=np.int64)
        last_pos = np.zeros((rows.shape[0], k), dtype=np.int64)
        count = np.zeros((rows.shape[0], k), dtype=np.int64)
        filled = np.zeros(rows.shape[0], dtype=np.int64)
        r_idx = np.arange(rows.shape[0])
        for col in range(width):
            c = seqs[:, col]
            valid = c >= 0
            match = (local == c[:, None]) & valid[:, None]
            seen = match.any(axis=1)
            new = valid & ~seen
            slot = np.where(new, filled, np.argmax(match, axis=1))
            local[r_idx[new], filled[new]] = c[new]
            first_pos[r_idx[new], filled[new]] = col
            filled += new
            last_pos[r_idx[valid], slot[valid]] = col
            count[r_idx[valid], slot[valid]] += 1
        q = effects[local]
        subsets = subset_members(k)  # (2^k, k)
        if variant == "order_free":
            # prod over touches j = 1..n of (1 - q / 2^(j-1)) per channel, as a log
            logf = np.zeros_like(q)
            for j in range(int(count.max())):
                logf += np.where(count > j, np.log1p(-q / 2.0**j), 0.0)
            logv = log_base + logf @ subsets.T.astype(np.float64)  # (rows, 2^k)
        else:
            role = np.asarray(roles, dtype=object)[local]
            intro, closer = role == "introducer", role == "closer"
            big = np.iinfo(np.int64).max
            # a channel without effect is invisible to the conversion: it never takes a role
            active = subsets[None, :, :] & (q > 0)[:, None, :]
            fp = np.where(active, first_pos[:, None, :], big)  # (rows, 2^k, k)
            lp = np.where(active, last_pos[:, None, :], -1)
            is_first = (fp == fp.min(axis=2, keepdims=True)) & active
            is_last = (lp == lp.max(axis=2, keepdims=True)) & active
            mult = np.where(intro[:, None, :], np.where(is_first, 2.0, 0.4),
                            np.where(closer[:, None, :], np.where(is_last, 2.0, 0.4), 1.0))
            qe = np.minimum(q[:, None, :] * mult, 0.95)
            logv = log_base + np.where(subsets[None], np.log1p(-qe), 0.0).sum(axis=2)
        v = 1.0 - np.exp(logv) - baseline  # incremental conversion probability of each subset
        p[rows] = v[:, -1] + baseline
        phi = shapley_from_values(v, int(k))
        ch_out.append(local.ravel())
        phi_out.append(phi.ravel())
        path_out.append(np.repeat(rows, k))
    return p, (np.concatenate(ch_out), np.concatenate(phi_out), np.concatenate(path_out))
