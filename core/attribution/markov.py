"""Exact Markov-chain attribution of order 1..4 with removal effects (ChannelAttribution's conventions).

States: ``(start)``, the sliding windows of the last ``k`` touches (the first state of a path is its
first ``k`` touches; a path shorter than ``k`` is one state), ``(conversion)`` and ``(null)``.
Consecutive identical states are collapsed (``a > a > b`` is ``a > b`` at order 1). Each path adds
``conversions + nulls`` to every transition it makes, ``conversions`` to last-state -> conversion and
``nulls`` to last-state -> null. P(conversion) is the absorption probability from ``(start)``, solved
exactly by sparse linear algebra (LU for
small chains, a residual-checked fixed-point solve to 1e-14 for large ones; never simulation). Removing channel ``c`` sends every transition into a state that
contains ``c`` to null; RE(c) = 1 - P_without_c / P and credit(c) = RE(c) / sum RE x total conversions.
Value works the same way with the expected conversion value, each state paying out the mean value of
the conversions that leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import gmres, splu

from core.pathtable import DISPLAY_SEPARATOR, PathTable, PathTableError

MAX_ORDER = 4
#: Window keys below this bound are mapped to states with a lookup table instead of a sort.
_LUT_LIMIT = 1 << 22


@dataclass(frozen=True, eq=False)
class MarkovStructure:
    """The state graph of a PathTable at one order; counts are applied later (fit and bootstrap share it)."""

    channels: tuple[str, ...]
    order: int
    state_windows: list[tuple[int, ...]]  # channel codes of each transient state
    contains: np.ndarray  # bool (n_states, n_channels): state's window contains the channel
    first_state: np.ndarray  # int64 per path: the state (start) moves to
    last_state: np.ndarray  # int64 per path: the state that moves to (conversion)/(null)
    edge_from: np.ndarray  # int64 per distinct state -> state edge, sorted
    edge_to: np.ndarray  # int64 per distinct edge
    trans_edge: np.ndarray  # int64 per state -> state move of a path: its edge
    trans_path: np.ndarray  # int64 per move: the path whose weight it carries

    @property
    def n_states(self) -> int:
        return len(self.state_windows)

    def state_labels(self) -> list[str]:
        return [DISPLAY_SEPARATOR.join(self.channels[c] for c in w) for w in self.state_windows]


def _unique_inverse(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)``, by lookup table when the key space is small."""
    if bound <= _LUT_LIMIT:
        present = np.zeros(bound, dtype=bool)
        present[keys] = True
        uniq = np.flatnonzero(present)
        lut = np.zeros(bound, dtype=np.int64)
        lut[uniq] = np.arange(uniq.size)
        return uniq, lut[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.astype(np.int64)


def build_structure(table: PathTable, order: int = 1) -> MarkovStructure:
    """States and transitions of the order-``order`` chain of ``table`` (vectorised over the CSR arrays)."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= int(order) <= MAX_ORDER:
        raise ValueError(f"Markov order must be an integer from 1 to {MAX_ORDER}; got {order!r}")
    k = int(order)
    table.validate()
    n_ch = table.n_channels
    lengths, offsets, codes = table.lengths, table.offsets, table.codes
    total = codes.shape[0]
    path_first = np.zeros(total + k, dtype=bool)
    path_first[offsets[:-1]] = True
    base = n_ch + 1
    # Window keys in base ``n_ch + 1`` (digit 0 pads a path shorter than k). Built from contiguous
    # shifted slices of the codes (no gathers): the window starting at touch i holds the touches
    # i .. i + min(remaining, k) - 1, where ``remaining`` counts the touches left in i's path.
    kdtype = np.int32 if base**k < 2**31 else np.int64
    padded = np.zeros(total + k, dtype=kdtype)
    padded[:total] = codes
    padded[:total] += 1
    if k == 1:  # every touch is a window
        key = padded[:total]
        newpath = path_first[:total]
    else:
        path_end = np.repeat(offsets[1:], lengths)
        remaining = path_end - np.arange(total, dtype=np.int64)
        del path_end
        # Windows start where k touches remain, plus the first touch of a path shorter than k.
        wmask = (remaining >= k) | path_first[:total]
        key = padded[:total].copy()
        for t in range(1, k):
            key *= base
            key += np.where(remaining > t, padded[t : t + total], 0).astype(kdtype, copy=False)
        del remaining
        wstart = np.flatnonzero(wmask)
        key = key[wstart]
        newpath = path_first[wstart]
        del wstart, wmask
    # The newest channel of a window of k touches (only those windows ever follow another one).
    last_code = (key % base).astype(np.int64) - 1
    wpath = np.cumsum(newpath, dtype=np.int64) - 1  # every path has at least one window
    key = key.astype(np.int64, copy=False)
    # Collapse consecutive identical states within a path.
    keep = np.ones(key.shape[0], dtype=bool)
    keep[1:] = (key[1:] != key[:-1]) | newpath[1:]
    if not keep.all():
        key, wpath, newpath, last_code = key[keep], wpath[keep], newpath[keep], last_code[keep]
    uniq, sid = _unique_inverse(key, base**k)
    # Decode state windows (digits, most significant first; 0 = padding of a short path).
    digits = np.zeros((uniq.shape[0], k), dtype=np.int64)
    rest = uniq.copy()
    for t in range(k - 1, -1, -1):
        digits[:, t] = rest % base
        rest //= base
    windows = [tuple(int(d) - 1 for d in row if d > 0) for row in digits]
    contains = np.zeros((uniq.shape[0], n_ch), dtype=bool)
    for t in range(k):
        has = digits[:, t] > 0
        contains[np.flatnonzero(has), digits[has, t] - 1] = True
    # Moves between states inside a path. The next state is the previous window shifted by one touch,
    # so (from state, newest channel) identifies an edge: no sort of (from, to) pairs is needed.
    ends = np.ones(key.shape[0], dtype=bool)
    ends[:-1] = newpath[1:]
    inner = np.flatnonzero(~ends)
    s_from = sid[inner]
    s_to = sid[inner + 1]
    edge_key = s_from * n_ch + last_code[inner + 1].astype(np.int64)
    uniq_edge, trans_edge = _unique_inverse(edge_key, uniq.shape[0] * n_ch)
    edge_to = np.zeros(uniq_edge.shape[0], dtype=np.int64)
    edge_to[trans_edge] = s_to
    return MarkovStructure(
        table.channels, k, windows, contains, sid[newpath], sid[ends],
        uniq_edge // n_ch, edge_to, trans_edge, wpath[inner],
    )


@dataclass(frozen=True, eq=False)
class MarkovResult:
    """A fitted chain: conversion probability, removal effects and credit per channel."""

    structure: MarkovStructure
    p_conversion: float  # absorption probability in (conversion) from (start)
    expected_value: float  # expected conversion value per journey from (start)
    removal_effects: np.ndarray  # per channel
    value_removal_effects: np.ndarray  # per channel
    conversions: np.ndarray  # credit per channel
    value: np.ndarray  # value credit per channel
    transition_counts: sparse.csr_matrix  # (n_states + 3) square: states, (start), (conversion), (null)
    solution: np.ndarray | None = field(default=None, repr=False)  # batched solve (warm start of refits)

    def transition_matrix(self) -> dict:
        """JSON-ready transition probabilities: state labels and (from, to, probability) triplets."""
        labels = self.structure.state_labels() + ["(start)", "(conversion)", "(null)"]
        counts = self.transition_counts.tocoo()
        out = np.asarray(self.transition_counts.sum(axis=1)).ravel()
        keep = counts.data > 0
        rows, cols = counts.row[keep], counts.col[keep]
        prob = counts.data[keep] / out[rows]
        order = np.lexsort((cols, rows))
        return {
            "states": labels,
            "state_channels": [[self.structure.channels[c] for c in w] for w in self.structure.state_windows]
            + [[], [], []],
            "from": rows[order].astype(int).tolist(),
            "to": cols[order].astype(int).tolist(),
            "probability": prob[order].astype(float).tolist(),
        }


#: Chains up to this many states are solved by sparse LU. Larger ones (order 3-4 over many channels,
#: whose LU fills in almost completely) by the fixed-point iteration x <- r + Q x (absorbing chains
#: converge geometrically), run until the residual ||(I - Q) x - r|| is below 1e-14 of ||r||; the full
#: model and every channel's removal go through one batched iteration (`_solve_batched`). If that does
#: not converge, each system is solved alone: iteration, then GMRES, then LU. Agreement with LU ~1e-15.
DIRECT_MAX_STATES = 300
_RTOL = 1e-14
#: Stopping residual of bootstrap refits: far below any resampling spread, and still deterministic.
BOOTSTRAP_RTOL = 1e-10
_MAX_SWEEPS = 5000


def _solve_columns(a: sparse.csr_matrix, rhs: np.ndarray) -> np.ndarray:
    """Solve ``a x = rhs`` with ``a = I - Q`` for all columns (deterministic, residual-checked)."""
    if a.shape[0] <= DIRECT_MAX_STATES:
        return splu(a.tocsc()).solve(rhs)
    scale = float(np.abs(rhs).max())
    if scale == 0.0:
        return np.zeros_like(rhs)
    q = (sparse.identity(a.shape[0], format="csr") - a).tocsr()
    x = rhs.copy()
    for _ in range(_MAX_SWEEPS):
        nxt = rhs + q @ x
        step = float(np.abs(nxt - x).max())  # = residual of x
        x = nxt
        if step <= _RTOL * scale:
            return x
    out = np.zeros_like(rhs)
    for j in range(rhs.shape[1]):
        col, info = gmres(a, rhs[:, j], x0=x[:, j], rtol=1e-13, atol=0.0, restart=min(a.shape[0], 100), maxiter=200)
        if info != 0 or float(np.abs(a @ col - rhs[:, j]).max()) > 1e-11 * scale:
            return splu(a.tocsc()).solve(rhs)
        out[:, j] = col
    return out


def _absorb(a: sparse.csr_matrix, rhs: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Start distribution times the solution of ``a x = rhs`` (several right-hand sides)."""
    if a.shape[0] == 0:
        return np.zeros(rhs.shape[1])
    return p0 @ _solve_columns(a, rhs)


def _solve_batched(q: sparse.csr_matrix, rhs: np.ndarray, keep: np.ndarray, x0: np.ndarray | None, rtol: float
                   ) -> np.ndarray | None:
    """All removal systems at once: column block j solves the chain restricted to the rows ``keep[:, j]``.

    ``rhs`` is (s, 2); the result is (s, 2 * keep.shape[1]) with zeros on removed rows. Removed states
    are absorbing (they pay nothing), which is exactly the chain restricted to the kept states, so one
    sparse product per sweep serves every channel's removal and the full model together. Iterates
    x <- M (r + Q x) until a sweep changes no entry by more than ``rtol`` of ``max |r|`` (that change is
    the residual of the system). Returns None when it does not converge (the caller falls back to LU).
    """
    mask = np.repeat(keep, rhs.shape[1], axis=1).astype(np.float64)
    r = mask * np.tile(rhs, keep.shape[1])
    scale = float(np.abs(r).max())
    if scale == 0.0:
        return np.zeros_like(r)
    x = r.copy() if x0 is None or x0.shape != r.shape else mask * x0
    for _ in range(_MAX_SWEEPS):
        nxt = q @ x
        nxt += r
        nxt *= mask
        step = float(np.abs(nxt - x).max())
        x = nxt
        if step <= rtol * scale:
            return x
    return None


def solve(structure: MarkovStructure, conversions: np.ndarray, value: np.ndarray, nulls: np.ndarray, *,
          x0: np.ndarray | None = None, rtol: float = _RTOL) -> MarkovResult:
    """Removal effects and credit of ``structure`` under per-path counts (exact, deterministic).

    Chains above `DIRECT_MAX_STATES` solve the full model and every removal in one batched iteration;
    ``x0`` (the ``solution`` of an earlier fit of the same structure) warm-starts it and ``rtol`` sets
    its stopping residual. The bootstrap uses both: only the counts change between its replicates.
    """
    s, n_ch = structure.n_states, len(structure.channels)
    conversions = np.asarray(conversions, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    nulls = np.asarray(nulls, dtype=np.float64)
    weight = conversions + nulls
    edge_w = np.bincount(structure.trans_edge, weights=weight[structure.trans_path], minlength=structure.edge_from.shape[0])
    indptr = np.zeros(s + 1, dtype=np.int64)
    np.cumsum(np.bincount(structure.edge_from, minlength=s), out=indptr[1:])
    n_int = sparse.csr_matrix((edge_w, structure.edge_to, indptr), shape=(s, s))
    start = np.bincount(structure.first_state, weights=weight, minlength=s)
    last = structure.last_state
    conv_out = np.bincount(last, weights=conversions, minlength=s)
    null_out = np.bincount(last, weights=nulls, minlength=s)
    value_out = np.bincount(last, weights=value, minlength=s)
    out = np.asarray(n_int.sum(axis=1)).ravel() + conv_out + null_out
    safe = np.where(out > 0, out, 1.0)
    q = sparse.diags(1.0 / safe) @ n_int
    a = (sparse.identity(s, format="csr") - q).tocsr()
    rhs = np.column_stack([conv_out / safe, value_out / safe])  # P(convert from s), E[value paid at s]
    total_start = start.sum()
    if total_start <= 0:
        raise PathTableError("no path has conversions or nulls; the Markov chain is empty")
    p0 = start / total_start
    re = np.zeros(n_ch)
    re_v = np.zeros(n_ch)
    present = np.flatnonzero(structure.contains.any(axis=0))
    solution = None
    if s > DIRECT_MAX_STATES:
        keep = np.ones((s, present.size + 1), dtype=bool)
        keep[:, 1:] = ~structure.contains[:, present]
        solution = _solve_batched(q.tocsr(), rhs, keep, x0, rtol)
    if solution is not None:
        absorbed = (p0 @ solution).reshape(-1, 2)
        base, without_all = absorbed[0], absorbed[1:]
    else:
        base = _absorb(a, rhs, p0)
        without_all = np.zeros((present.size, 2))
        for i, c in enumerate(present):
            kept = np.flatnonzero(~structure.contains[:, c])
            without_all[i] = _absorb(a[kept][:, kept], rhs[kept], p0[kept])
    p_conv, p_val = float(base[0]), float(base[1])
    for i, c in enumerate(present):
        re[c] = 1.0 - without_all[i, 0] / p_conv if p_conv > 0 else 0.0
        re_v[c] = 1.0 - without_all[i, 1] / p_val if p_val > 0 else 0.0
    re = np.clip(re, 0.0, None)  # removal only redirects mass to null; clip round-off below zero
    re_v = np.clip(re_v, 0.0, None)
    total_conv, total_val = float(conversions.sum()), float(value.sum())
    credit = re / re.sum() * total_conv if re.sum() > 0 else np.zeros(n_ch)
    credit_v = re_v / re_v.sum() * total_val if re_v.sum() > 0 else np.zeros(n_ch)
    # Full count matrix for display: states, then (start), (conversion), (null).
    full = sparse.bmat(
        [
            [n_int, sparse.csr_matrix(np.zeros((s, 1))), sparse.csr_matrix(conv_out[:, None]), sparse.csr_matrix(null_out[:, None])],
            [sparse.csr_matrix(start[None, :]), None, None, None],
            [sparse.csr_matrix((2, s)), None, sparse.csr_matrix((2, 1)), sparse.csr_matrix((2, 1))],
        ],
        format="csr",
    )
    full.eliminate_zeros()
    return MarkovResult(structure, p_conv, p_val, re, re_v, credit, credit_v, full, solution)


def markov_attribution(table: PathTable, order: int = 1) -> MarkovResult:
    """Fit the order-``order`` chain of ``table`` and compute removal effects and credit."""
    structure = build_structure(table, order)
    return solve(structure, table.conversions, table.value, table.nulls)
