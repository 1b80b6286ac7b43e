"""Rule-based attribution: first, last, linear, position based (on a PathTable) and time decay (on Journeys).

Every rule is a fixed split of one conversion over the touches of its path, so each model is a
per-path share matrix ``M`` (paths x channels, rows sum to 1) and its credit is ``conversions @ M``
(and ``value @ M``). Building ``M`` once makes the bootstrap a matrix product. Repeated touches of a
channel count as separate touches (``a > a > b`` gives ``a`` 2/3 under linear), as in ChannelAttribution.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from core.pathtable import Journeys, PathTable, PathTableError

HEURISTIC_MODELS = ("first", "last", "linear", "position")


def _touch_positions(table: PathTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every touch: its path index, its position in the path, and its path's length."""
    lengths = table.lengths
    path = table.path_index
    pos = np.arange(table.codes.shape[0], dtype=np.int64) - table.offsets[:-1][path]
    return path, pos, lengths[path]


def check_position_shares(first: float, last: float) -> tuple[float, float]:
    """Validate position-based shares: both in [0, 1] with first + last <= 1."""
    first, last = float(first), float(last)
    if not (np.isfinite(first) and np.isfinite(last)) or first < 0 or last < 0 or first + last > 1 + 1e-12:
        raise ValueError(f"position shares must be >= 0 with first + last <= 1; got first={first}, last={last}")
    return first, last


def touch_weights(
    table: PathTable, model: str, position_shares: tuple[float, float] = (0.4, 0.4), positions=None
) -> np.ndarray:
    """The share of its path's conversion each touch receives under a heuristic model (sums to 1 per path).

    ``positions`` is `_touch_positions(table)` when the caller already has it.
    """
    path, pos, length = positions if positions is not None else _touch_positions(table)
    if model == "first":
        return (pos == 0).astype(np.float64)
    if model == "last":
        return (pos == length - 1).astype(np.float64)
    if model == "linear":
        return 1.0 / length
    if model == "position":
        f, l = check_position_shares(*position_shares)
        w = np.empty(pos.shape[0], dtype=np.float64)
        middle = np.maximum(length - 2, 1)
        w[:] = (1.0 - f - l) / middle  # middle touches of paths with 3+ touches
        w[pos == 0] = f
        w[pos == length - 1] = l
        # Two touches: first and last split everything in proportion f : l (equally if both are 0).
        two = length == 2
        if np.any(two):
            tot = f + l
            w[two & (pos == 0)] = f / tot if tot > 0 else 0.5
            w[two & (pos == 1)] = l / tot if tot > 0 else 0.5
        w[length == 1] = 1.0
        return w
    raise ValueError(f"unknown heuristic model {model!r}; expected one of {', '.join(HEURISTIC_MODELS)}")


def share_matrix(
    table: PathTable, model: str, position_shares: tuple[float, float] = (0.4, 0.4), positions=None
) -> sparse.csr_matrix:
    """Paths x channels matrix of each path's split of one conversion (the bootstrap refits with it).

    Built straight in CSR layout (one row per path, one entry per touch; duplicates add up in products).
    """
    w = touch_weights(table, model, position_shares, positions)
    return sparse.csr_matrix((w, table.codes, table.offsets), shape=(table.n_paths, table.n_channels))


def heuristic_credits(
    table: PathTable, models, position_shares: tuple[float, float] = (0.4, 0.4)
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Conversion and value credit of several heuristic models.

    Works at path level: first/last are bincounts over each path's first/last channel; linear and the
    middle of position-based are one product with the paths x channels touch-count matrix. The result
    equals the per-touch definition in `touch_weights` (the tests check both).
    """
    table.validate()
    f, l = check_position_shares(*position_shares)
    n_ch = table.n_channels
    length = table.lengths.astype(np.float64)
    first = table.codes[table.offsets[:-1]]
    last = table.codes[table.offsets[1:] - 1]
    cv = np.column_stack([table.conversions, table.value])
    counts = None

    def touch_sum(per_path: np.ndarray) -> np.ndarray:  # sum over touches of per_path[path of touch]
        nonlocal counts
        if counts is None:
            ones = np.ones(table.codes.shape[0])
            counts = sparse.csr_matrix((ones, table.codes, table.offsets), shape=(table.n_paths, n_ch)).T.tocsr()
        return np.asarray(counts @ per_path)

    def by(codes: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return np.column_stack([np.bincount(codes, weights=weight * cv[:, j], minlength=n_ch) for j in range(2)])

    out = {}
    for model in models:
        if model == "first":
            res = by(first, np.ones(table.n_paths))
        elif model == "last":
            res = by(last, np.ones(table.n_paths))
        elif model == "linear":
            res = touch_sum(cv / length[:, None])
        elif model == "position":
            mid = np.where(length >= 3, (1.0 - f - l) / np.maximum(length - 2, 1), 0.0)
            tot = f + l
            two_first, two_last = (f / tot, l / tot) if tot > 0 else (0.5, 0.5)
            w_first = np.select([length == 1, length == 2], [1.0, two_first], f) - mid
            w_last = np.select([length == 1, length == 2], [0.0, two_last], l) - mid
            res = touch_sum(cv * mid[:, None]) + by(first, w_first) + by(last, w_last)
        else:
            raise ValueError(f"unknown heuristic model {model!r}; expected one of {', '.join(HEURISTIC_MODELS)}")
        out[model] = (res[:, 0].copy(), res[:, 1].copy())
    return out


def heuristic_credit(
    table: PathTable, model: str, position_shares: tuple[float, float] = (0.4, 0.4)
) -> tuple[np.ndarray, np.ndarray]:
    """Conversion and value credit per channel (length ``n_channels``) of one heuristic model."""
    return heuristic_credits(table, [model], position_shares)[model]


# --------------------------------------------------------------------------- time decay
_NS_PER_DAY = 86_400 * 10**9


def validate_journeys(journeys: Journeys) -> Journeys:
    """Raise PathTableError for journeys no model can use (empty, touchless, negative, touches after the end)."""
    n = journeys.n_journeys
    if n == 0:
        raise PathTableError("there are no journeys")
    lengths = journeys.lengths
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise PathTableError(f"journey {int(empty[0]) + 1} has no touches")
    for name, arr in (("conversions", journeys.conversions), ("value", journeys.value)):
        arr = np.asarray(arr, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            raise PathTableError(f"journey {int(bad[0]) + 1}: {name} is negative or missing")
    if journeys.touch_ts.shape[0] != journeys.codes.shape[0] or journeys.end_ts.shape[0] != n:
        raise PathTableError("journeys: touch_ts must have one entry per touch and end_ts one per journey")
    latest = np.maximum.reduceat(journeys.touch_ts, journeys.offsets[:-1])
    late = np.flatnonzero((latest > journeys.end_ts) & (journeys.conversions > 0))
    if late.size:
        raise PathTableError(f"journey {int(late[0]) + 1} has a touch after its conversion time")
    if float(np.sum(journeys.conversions)) <= 0:
        raise PathTableError("the journeys have no conversions")
    return journeys


def time_decay_touch_weights(journeys: Journeys, half_life_days: float) -> np.ndarray:
    """Share of its journey's conversion per touch: 2^(-(end - touch)/half_life), normalised per journey.

    Computed relative to each journey's latest touch (the normalisation cancels it), so journeys far in
    the past do not underflow to 0/0.
    """
    half_life_days = float(half_life_days)
    if not np.isfinite(half_life_days) or half_life_days <= 0:
        raise ValueError(f"half_life_days must be a positive number; got {half_life_days}")
    starts, lengths = journeys.offsets[:-1], journeys.lengths
    latest = np.maximum.reduceat(journeys.touch_ts, starts)
    w = np.exp2((journeys.touch_ts - np.repeat(latest, lengths)).astype(np.float64) / (half_life_days * _NS_PER_DAY))
    return w / np.repeat(np.add.reduceat(w, starts), lengths)


def time_decay_matrix(journeys: Journeys, half_life_days: float) -> sparse.csr_matrix:
    """Journeys x channels matrix of each journey's split of one conversion under time decay."""
    w = time_decay_touch_weights(journeys, half_life_days)
    return sparse.csr_matrix((w, journeys.codes, journeys.offsets), shape=(journeys.n_journeys, len(journeys.channels)))


def time_decay_credit(journeys: Journeys, half_life_days: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """Conversion and value credit per channel of ``journeys.channels`` under time decay."""
    validate_journeys(journeys)
    res = time_decay_matrix(journeys, half_life_days).T @ np.column_stack([journeys.conversions, journeys.value])
    res = np.asarray(res)
    return res[:, 0].copy(), res[:, 1].copy()


def single_path_heuristic(
    codes: np.ndarray, model: str, position_shares: tuple[float, float] = (0.4, 0.4)
) -> np.ndarray:
    """Per-touch shares of one path (used by the journey drill-down)."""
    codes = np.asarray(codes, dtype=np.int32)
    table = PathTable((), np.array([0, codes.size], dtype=np.int64), codes, np.ones(1), np.zeros(1), np.zeros(1))
    return touch_weights(table, model, position_shares)
