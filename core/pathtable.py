"""PathTable: unique channel sequences with conversions, value and nulls.

The input of every attribution model. Paths are integer-coded in CSR form (``offsets`` into a flat
``codes`` array) so that models work on numpy arrays; strings exist only for display and for
ChannelAttribution-style ``"a > b > c"`` import and export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Pseudo channel of a conversion that has no touch inside its window (its path is this one "channel").
NO_TOUCH = "(no touch)"
#: The separator ChannelAttribution writes; ``>``, `` > `` and ``|`` are all read.
DISPLAY_SEPARATOR = " > "
_SPLIT = re.compile(r"\s*[>|]\s*")


class PathTableError(ValueError):
    """A path table that no model can use (empty, negative counts, a path without channels)."""


@dataclass(frozen=True, eq=False)
class PathTable:
    """Unique paths (CSR-coded channel sequences) with their conversions, value and nulls.

    ``channels[code]`` names a channel; path ``i`` is ``codes[offsets[i]:offsets[i+1]]``.
    """

    channels: tuple[str, ...]
    offsets: np.ndarray  # int64, length n_paths + 1, offsets[0] == 0
    codes: np.ndarray  # int32, flat channel codes
    conversions: np.ndarray  # float64 per path
    value: np.ndarray  # float64 per path
    nulls: np.ndarray  # float64 per path

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_sequences(
        cls,
        sequences: list[list[str]] | list[tuple[str, ...]],
        conversions,
        value=None,
        nulls=None,
        *,
        aggregate: bool = True,
    ) -> "PathTable":
        """Build from channel-name sequences; identical paths are summed when ``aggregate``."""
        n = len(sequences)
        conversions = np.asarray(conversions, dtype=np.float64).reshape(n)
        value = np.zeros(n) if value is None else np.asarray(value, dtype=np.float64).reshape(n)
        nulls = np.zeros(n) if nulls is None else np.asarray(nulls, dtype=np.float64).reshape(n)
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
        flat = [c for s in sequences for c in s]
        channels, inverse = np.unique(np.asarray(flat, dtype=object).astype(str), return_inverse=True) if flat else (np.array([], dtype=str), np.array([], dtype=np.int64))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        table = cls(
            channels=tuple(str(c) for c in channels),
            offsets=offsets,
            codes=inverse.astype(np.int32),
            conversions=conversions,
            value=value,
            nulls=nulls,
        )
        return table.aggregated() if aggregate else table

    @classmethod
    def from_strings(cls, paths, conversions, value=None, nulls=None) -> "PathTable":
        """Build from ``"a > b > c"`` strings (separators ``>``, `` > ``, ``|``); duplicates summed."""
        sequences = []
        for row, text in enumerate(paths):
            parts = [p for p in _SPLIT.split(str(text).strip()) if p != ""] if text is not None else []
            if not parts:
                raise PathTableError(f"row {row + 1}: path {text!r} has no channels")
            sequences.append(parts)
        return cls.from_sequences(sequences, conversions, value, nulls)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "PathTable":
        """Read ChannelAttribution's columns: path, total_conversions, total_conversion_value, total_null."""
        missing = {"path", "total_conversions"} - set(frame.columns)
        if missing:
            raise PathTableError(f"path table lacks column(s): {', '.join(sorted(missing))}")
        value = frame["total_conversion_value"] if "total_conversion_value" in frame else None
        nulls = frame["total_null"] if "total_null" in frame else None
        return cls.from_strings(frame["path"].tolist(), frame["total_conversions"], value, nulls)

    # ------------------------------------------------------------------ properties
    @property
    def n_paths(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def path_index(self) -> np.ndarray:
        """For every element of ``codes``, the index of the path it belongs to."""
        return np.repeat(np.arange(self.n_paths, dtype=np.int64), self.lengths)

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        return float(self.value.sum())

    @property
    def total_nulls(self) -> float:
        return float(self.nulls.sum())

    def path(self, i: int) -> tuple[str, ...]:
        """The channel names of path ``i``."""
        return tuple(self.channels[c] for c in self.codes[self.offsets[i] : self.offsets[i + 1]])

    def padded(self, fill: int = -1) -> np.ndarray:
        """Paths as a dense ``(n_paths, max_len)`` int32 matrix padded with ``fill``."""
        n, lengths = self.n_paths, self.lengths
        width = int(lengths.max()) if n else 0
        out = np.full((n, width), fill, dtype=np.int32)
        if n:
            cols = np.arange(self.codes.shape[0]) - np.repeat(self.offsets[:-1], lengths)
            out[self.path_index, cols] = self.codes
        return out

    def channel_masks(self) -> np.ndarray:
        """Bitmask (uint64) of the set of channels on each path; needs at most 64 channels."""
        if self.n_channels > 64:
            raise PathTableError(f"{self.n_channels} channels: bitmasks hold at most 64")
        bits = np.left_shift(np.uint64(1), self.codes.astype(np.uint64))
        masks = np.zeros(self.n_paths, dtype=np.uint64)
        np.bitwise_or.at(masks, self.path_index, bits)
        return masks

    def path_strings(self, separator: str = DISPLAY_SEPARATOR) -> list[str]:
        names = np.asarray(self.channels, dtype=object)
        return [separator.join(names[self.codes[a:b]]) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def to_frame(self) -> pd.DataFrame:
        """ChannelAttribution's format: path, total_conversions, total_conversion_value, total_null."""
        return pd.DataFrame(
            {
                "path": self.path_strings(),
                "total_conversions": self.conversions,
                "total_conversion_value": self.value,
                "total_null": self.nulls,
            }
        )

    # ------------------------------------------------------------------ transforms
    def validate(self) -> "PathTable":
        """Raise PathTableError for input no model can use; return self otherwise."""
        if self.n_paths == 0:
            raise PathTableError("the path table is empty")
        empty = np.flatnonzero(self.lengths == 0)
        if empty.size:
            raise PathTableError(f"path {int(empty[0]) + 1} has no channels")
        for name, arr in (("conversions", self.conversions), ("value", self.value), ("nulls", self.nulls)):
            if not np.all(np.isfinite(arr)):
                raise PathTableError(f"{name} has a missing or infinite number (path {int(np.flatnonzero(~np.isfinite(arr))[0]) + 1})")
            if np.any(arr < 0):
                raise PathTableError(f"{name} is negative on path {int(np.flatnonzero(arr < 0)[0]) + 1}")
        if self.total_conversions <= 0:
            raise PathTableError("the path table has no conversions")
        return self

    def aggregated(self) -> "PathTable":
        """Identical paths summed into one row (order of first appearance is not kept; sorted by code)."""
        n = self.n_paths
        if n == 0:
            return self
        padded = self.padded(fill=-1)
        # Unique rows of the padded matrix (length is implied by the padding).
        view = np.ascontiguousarray(padded).view(np.dtype((np.void, padded.dtype.itemsize * padded.shape[1]))).ravel() if padded.shape[1] else np.zeros(n, dtype=np.int8)
        _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
        k = first.shape[0]
        if k == n:
            return self
        conv = np.bincount(inverse, weights=self.conversions, minlength=k)
        val = np.bincount(inverse, weights=self.value, minlength=k)
        nul = np.bincount(inverse, weights=self.nulls, minlength=k)
        rows = padded[first]
        lengths = (rows >= 0).sum(axis=1)
        offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return PathTable(self.channels, offsets, rows[rows >= 0].astype(np.int32), conv, val, nul)

    def collapse_repeats(self) -> "PathTable":
        """Consecutive identical channels merged (``a > a > b`` becomes ``a > b``), then re-aggregated."""
        keep = np.ones(self.codes.shape[0], dtype=bool)
        if self.codes.size:
            same = self.codes[1:] == self.codes[:-1]
            starts = np.zeros(self.codes.shape[0], dtype=bool)
            starts[self.offsets[:-1][self.lengths > 0]] = True
            keep[1:] = ~same | starts[1:]
        lengths = np.bincount(self.path_index[keep], minlength=self.n_paths)
        offsets = np.zeros(self.n_paths + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return PathTable(self.channels, offsets, self.codes[keep], self.conversions, self.value, self.nulls).aggregated()

    def no_touch_paths(self) -> np.ndarray:
        """Per path: whether it is the ``(no touch)`` pseudo path of conversions that had no touch."""
        if NO_TOUCH not in self.channels:
            return np.zeros(self.n_paths, dtype=bool)
        single = self.lengths == 1
        out = np.zeros(self.n_paths, dtype=bool)
        out[single] = self.codes[self.offsets[:-1][single]] == self.channels.index(NO_TOUCH)
        return out

    def subset(self, keep: np.ndarray) -> "PathTable":
        """The paths where ``keep`` is true, over the channels they use (codes renumbered, names sorted as before)."""
        keep = np.asarray(keep, dtype=bool)
        lengths = self.lengths[keep]
        codes = self.codes[np.repeat(keep, self.lengths)]
        used = np.unique(codes)
        remap = np.full(max(self.n_channels, 1), -1, dtype=np.int32)
        remap[used] = np.arange(used.size, dtype=np.int32)
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return PathTable(tuple(self.channels[i] for i in used), offsets, remap[codes], self.conversions[keep],
                         self.value[keep], self.nulls[keep])

    def with_counts(self, conversions, value, nulls) -> "PathTable":
        """The same paths with other counts (used by the bootstrap)."""
        return PathTable(self.channels, self.offsets, self.codes, np.asarray(conversions, float), np.asarray(value, float), np.asarray(nulls, float))


@dataclass(frozen=True, eq=False)
class Journeys:
    """Individual journeys (one per conversion, plus null journeys) with touch timestamps.

    Same CSR layout as `PathTable`, one row per journey instead of per unique path. Time decay and
    the single-journey drill-down need this level; every other model runs on `to_pathtable()`.
    Times are int64 nanoseconds since the Unix epoch, UTC.
    """

    channels: tuple[str, ...]
    offsets: np.ndarray  # int64, n_journeys + 1
    codes: np.ndarray  # int32 channel code per touch
    touch_ts: np.ndarray  # int64 ns per touch
    end_ts: np.ndarray  # int64 ns per journey: the conversion time, or the last touch for a null journey
    conversions: np.ndarray  # float64 per journey: 1.0 converting, 0.0 null
    value: np.ndarray  # float64 per journey
    user_key: np.ndarray  # object (str) per journey
    conversion_id: np.ndarray  # object (str, or None for a null journey)

    @property
    def n_journeys(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def journey_index(self) -> np.ndarray:
        """For every touch, the index of its journey."""
        return np.repeat(np.arange(self.n_journeys, dtype=np.int64), self.lengths)

    def path(self, i: int) -> tuple[str, ...]:
        return tuple(self.channels[c] for c in self.codes[self.offsets[i] : self.offsets[i + 1]])

    def to_pathtable(self) -> PathTable:
        """Unique paths with summed conversions, value and nulls (null journeys count as nulls)."""
        nulls = (self.conversions <= 0).astype(np.float64)
        table = PathTable(self.channels, self.offsets, self.codes, self.conversions, self.value, nulls)
        return table.aggregated()
