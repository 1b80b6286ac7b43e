"""What a conversion model sees of each unique path: its distinct channels, touches per channel and order.

Every path is summarised once, vectorised over the PathTable's CSR arrays: its distinct channels in the
order of their first touch (``chans``, padded with -1), the touches of each (``counts``), the rank of
each channel's *last* touch among the path's channels (``last_rank``), the channel of the first and of
the last touch, and the channel set as a bitmask. Restricting a path to a subset ``S`` of its channels
keeps this order: the first touch of the restricted path belongs to the lowest local index in ``S``,
the last touch to the channel of ``S`` with the highest ``last_rank``. That is what lets the exact
Shapley value of a fitted model be computed over the subsets of each path's channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.pathtable import PathTable


#: A conversion model tells 1, 2 and "3 or more" touches of a channel apart: returns diminish, and capping
#: keeps the number of distinct paths a model must fit (and the work of its Shapley values) small.
MAX_COUNTED_TOUCHES = 3


@dataclass(frozen=True, eq=False)
class PathSummary:
    """Per unique path (rows of the PathTable): distinct channels, touches, order, weights."""

    n_channels: int
    chans: np.ndarray  # (n, K) int64 channel codes in first-touch order, -1 padded
    counts: np.ndarray  # (n, K) touches of each distinct channel (0 on padding)
    last_rank: np.ndarray  # (n, K) rank of each channel's last touch (0 = earliest), -1 on padding
    k: np.ndarray  # (n,) distinct channels per path
    first: np.ndarray  # (n,) channel of the first touch
    last: np.ndarray  # (n,) channel of the last touch
    masks: np.ndarray  # (n,) int64 channel-set bitmask (only when n_channels <= 62, else zeros)
    conversions: np.ndarray
    nulls: np.ndarray
    value: np.ndarray

    @property
    def n_paths(self) -> int:
        return int(self.k.shape[0])

    @property
    def journeys(self) -> np.ndarray:
        return self.conversions + self.nulls

    def entries(self, role_channels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat (path, channel, log touches, holds the first touch, holds the last touch) per distinct
        channel of each path; with ``role_channels``, the roles go to the first and last touch among those
        channels (`role_holders`).

        Touches count up to `MAX_COUNTED_TOUCHES` (the third touch of a channel and later ones alike).
        """
        valid = self.chans >= 0
        path = np.repeat(np.arange(self.n_paths), self.k)
        chan = self.chans[valid]
        logn = np.log(np.clip(self.counts[valid], 1, MAX_COUNTED_TOUCHES)).astype(np.float64)
        first, last = self.role_holders(role_channels)
        return path, chan, logn, chan == first[path], chan == last[path]

    def role_holders(self, role_channels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per path, the channel of the first and of the last touch among ``role_channels`` (a boolean
        mask over channels; None = every channel), -1 where the path touches none of them.

        Touches of the other channels are passed over, as if they were not in the journey.
        """
        if role_channels is None or bool(np.all(role_channels)):
            return self.first, self.last
        ok = (self.chans >= 0) & np.asarray(role_channels, dtype=bool)[np.clip(self.chans, 0, None)]
        has = ok.any(axis=1)
        rows = np.arange(self.n_paths)
        first = np.where(has, self.chans[rows, np.argmax(ok, axis=1)], -1)  # chans are in first-touch order
        last = np.where(has, self.chans[rows, np.argmax(np.where(ok, self.last_rank, -1), axis=1)], -1)
        return first, last

    def with_counts(self, conversions: np.ndarray, nulls: np.ndarray, value: np.ndarray | None = None) -> "PathSummary":
        return PathSummary(self.n_channels, self.chans, self.counts, self.last_rank, self.k, self.first, self.last,
                           self.masks, np.asarray(conversions, float), np.asarray(nulls, float),
                           self.value if value is None else np.asarray(value, float))


def summarize(table: PathTable) -> PathSummary:
    """The `PathSummary` of ``table`` (no Python loop over paths)."""
    n, n_ch = table.n_paths, table.n_channels
    path = table.path_index
    code = table.codes.astype(np.int64)
    key = path * n_ch + code
    # distinct (path, channel): touches are stored path by path in order, so a stable sort by
    # (path, channel) keeps each pair's touches in order: its first and last global touch index.
    order = np.argsort(key, kind="stable")
    k_sorted = key[order]
    start = np.ones(k_sorted.shape[0], dtype=bool)
    start[1:] = k_sorted[1:] != k_sorted[:-1]
    starts = np.flatnonzero(start)
    ends = np.r_[starts[1:], k_sorted.shape[0]] - 1
    d_key = k_sorted[starts]
    d_path, d_chan = d_key // n_ch, d_key % n_ch
    g_first, g_last = order[starts], order[ends]  # global touch index: orders pairs by (path, position)
    d_count = ends - starts + 1
    k = np.bincount(d_path, minlength=n)
    width = int(k.max()) if n else 0
    base = np.r_[0, np.cumsum(k)[:-1]]
    # local index: rank of the channel's first touch within its path; lrank: rank of its last touch
    o1 = np.argsort(g_first, kind="stable")
    local = np.empty(o1.shape[0], dtype=np.int64)
    local[o1] = np.arange(o1.shape[0]) - base[d_path[o1]]
    o2 = np.argsort(g_last, kind="stable")
    lrank = np.empty(o2.shape[0], dtype=np.int64)
    lrank[o2] = np.arange(o2.shape[0]) - base[d_path[o2]]
    chans = np.full((n, width), -1, dtype=np.int64)
    counts = np.zeros((n, width), dtype=np.int64)
    last_rank = np.full((n, width), -1, dtype=np.int64)
    chans[d_path, local] = d_chan
    counts[d_path, local] = d_count
    last_rank[d_path, local] = lrank
    first = code[table.offsets[:-1]] if n else np.zeros(0, dtype=np.int64)
    last = code[table.offsets[1:] - 1] if n else np.zeros(0, dtype=np.int64)
    masks = np.zeros(n, dtype=np.int64)
    if n_ch <= 62 and n:
        masks = np.bitwise_or.reduceat(np.left_shift(np.int64(1), code), table.offsets[:-1])
    return PathSummary(n_ch, chans, counts, last_rank, k, first, last, masks, table.conversions.astype(float),
                       table.nulls.astype(float), table.value.astype(float))
