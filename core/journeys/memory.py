"""Events -> journeys -> PathTable (DESIGN.md §2), vectorized end to end.

Definitions (the contract the property tests in ``tests/journeys`` check):

* Touchpoints and conversions are ordered per user by time. A touch belongs to the user's **next
  conversion at or after it**: the conversion's journey holds the touches in
  ``(previous conversion, conversion]`` that also lie within ``lookback_days`` before it
  (``conversion_ts - touch_ts <= lookback``). A touch at exactly the time of a conversion belongs to
  that conversion; touches older than the window are dropped and counted in the report.
* Touches after a user's last conversion (all of them for a user who never converts) form **one null
  journey per user tail**. With ``null_lookback=True`` (default) the null journey keeps the same
  window as a converting one, measured back from its last touch, so null and converting paths are
  comparable in length; ``null_lookback=False`` keeps the whole tail.
* A conversion with no touch in its window still forms a journey, whose path is the single pseudo
  channel ``"(no touch)"`` (`NO_TOUCH`) stamped at the conversion time. ChannelAttribution cannot hold
  empty paths, and dropping them would lose conversions, so this choice **conserves totals**: the
  PathTable's conversions equal the number of input conversions and its value their summed value.
* Several conversions of one user at the same instant are ordered by input row; the later ones find
  no touch after the earlier one and get the ``(no touch)`` path.
* ``level="campaign"`` labels a touch ``"channel:campaign_id"`` and falls back to the channel when
  the campaign id is missing or empty.

Implementation: users are factorized into dense integer codes; touches and conversions are merged in
ONE stable argsort on a packed int64 key (user, time, kind) when it fits in 63 bits (times are
divided by their common gcd first, so second- or millisecond-resolution data always fits), else a
lexsort. "Next conversion" is a reversed running minimum; journeys are numbered by a cumulative sum
over anchor events, so touches come out already grouped and chronological (CSR) with no further sort.
Unique paths are found by packing each path's codes into 64-bit words and de-duplicating level by
level (exact, no hashing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.pathtable import NO_TOUCH, Journeys, PathTable
LEVELS = ("channel", "campaign")
NS_PER_DAY = 86_400 * 10**9

Progress = Callable[[float, str], None]


class JourneyError(ValueError):
    """Events that cannot be turned into journeys (missing column, missing value, bad parameter)."""


@dataclass(frozen=True)
class JourneyReport:
    """What happened to the events: counts shown next to the PathTable so nothing is lost silently."""

    touchpoints: int
    conversions: int
    users: int
    converting_journeys: int
    null_journeys: int
    touches_in_conversions: int
    touches_in_nulls: int
    touches_outside_lookback: int  # before a conversion but older than its window
    touches_outside_null_window: int  # in a user's tail but older than its window
    no_touch_conversions: int  # conversions whose path is the (no touch) pseudo channel
    total_value: float

    def as_dict(self) -> dict:
        return asdict(self)

    def no_credit_reason(self) -> str | None:
        """Why no conversion can be credited to a channel (every conversion would be ``(no touch)``),
        or None when some can. A result in that state is refused, not shown as a plausible table."""
        if self.conversions == 0 or self.no_touch_conversions < self.conversions:
            return None
        if self.touchpoints == 0:
            return (f"all {self.conversions:,} conversions have no touch: the data holds no touchpoints (is the channel "
                    "or source column mapped, or are the touches in another file?)")
        if self.touches_outside_lookback:
            return (f"all {self.conversions:,} conversions have no touch inside the lookback window: "
                    f"{self.touches_outside_lookback:,} touches come earlier than it allows; widen the lookback")
        return (f"all {self.conversions:,} conversions have no touch before them: the {self.touchpoints:,} touches all come "
                "after the conversions (are the touches and conversions the same users, with times in the same zone?)")


# ----------------------------------------------------------------------------- input checks
def _require(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise JourneyError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise JourneyError(f"{name} lacks column(s): {', '.join(missing)}")


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def _no_missing(series: pd.Series, where: str) -> None:
    bad = series.isna().to_numpy()
    if bad.any():
        raise JourneyError(f"{where} is missing on row {_first_bad_row(bad)} ({int(bad.sum())} row(s) in all)")


def _ns(series: pd.Series, where: str) -> np.ndarray:
    """int64 nanoseconds since the epoch, UTC, from a tz-aware datetime column."""
    dtype = series.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(dtype):
            raise JourneyError(f"{where} is timezone-naive; convert it to tz-aware UTC first (Series.dt.tz_localize('UTC'))")
        raise JourneyError(f"{where} must be a tz-aware datetime column, got dtype {dtype}")
    _no_missing(series, where)
    return series.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8.astype(np.int64, copy=False)


#: The longest lookback window: a century covers any journey, and its nanoseconds stay far inside int64
#: (whose ~106,751 days a longer window would overflow in the window arithmetic).
MAX_LOOKBACK_DAYS = 36_500


def _lookback_ns(lookback_days: float) -> int:
    try:
        days = float(lookback_days)
    except (TypeError, ValueError):
        raise JourneyError(f"lookback_days must be a number, got {lookback_days!r}") from None
    if not math.isfinite(days) or not 0 < days <= MAX_LOOKBACK_DAYS:
        raise JourneyError(f"lookback_days must be a positive number of days up to {MAX_LOOKBACK_DAYS:,}, got {lookback_days!r}")
    return int(round(days * NS_PER_DAY))


def _bits(x: int) -> int:
    return max(int(x), 0).bit_length()


def _category_codes(touch_keys: pd.Series, conv_keys: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index] | None:
    """Integer codes of both key columns into one category index, without hashing per row, when the
    touchpoint keys are categorical (conversion keys categorical or not); None otherwise."""
    if not isinstance(touch_keys.dtype, pd.CategoricalDtype):
        return None
    cats = touch_keys.cat.categories
    t_codes = touch_keys.cat.codes.to_numpy().astype(np.int64)
    if isinstance(conv_keys.dtype, pd.CategoricalDtype):
        c_cats = conv_keys.cat.categories
        if c_cats is cats or c_cats.equals(cats):  # one import's frames share their categories
            return t_codes, conv_keys.cat.codes.to_numpy().astype(np.int64), cats
        where = cats.get_indexer(c_cats).astype(np.int64)  # per category, not per row
        new = where < 0
        if new.any():
            where[new] = len(cats) + np.arange(int(new.sum()))
            cats = cats.append(c_cats[new])
        return t_codes, where[conv_keys.cat.codes.to_numpy()], cats
    c_codes = cats.get_indexer(conv_keys).astype(np.int64)
    new = c_codes < 0
    if new.any():
        extra_codes, extra = pd.factorize(conv_keys[new], sort=False)
        c_codes[new] = len(cats) + extra_codes
        cats = cats.append(pd.Index(extra))
    return t_codes, c_codes, cats


def _first_seen(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """The codes that occur, in order of first occurrence (what ``pd.factorize`` numbers them by)."""
    n = codes.shape[0]
    if n == 0:
        return codes
    if np.all(codes[1:] >= codes[:-1]):  # sorted by user (an import, a stored data set): the run starts
        starts = np.ones(n, dtype=bool)
        starts[1:] = codes[1:] != codes[:-1]
        return codes[starts]
    first = np.full(n_codes, n, dtype=np.int64)
    positions = np.arange(n, dtype=np.int64)
    first[codes[::-1]] = positions[::-1]  # repeated indices: the last write (the earliest row) wins
    if not np.all(first[codes] <= positions):  # not promised by numpy: check, and fall back exactly
        first.fill(n)
        np.minimum.at(first, codes, positions)
    mark = np.zeros(n, dtype=bool)
    mark[first[first < n]] = True
    return codes[mark]


def _user_codes(touch_keys: pd.Series, conv_keys: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Dense int64 user codes shared by touchpoints and conversions, and the key of each code.

    Users are numbered in order of first appearance over the touchpoints, then the conversions, for
    any input dtype. Categorical keys (what `core.ingest` produces) reuse their codes: no hashing of
    strings, only integer work per row, and categories no row uses are dropped. Other keys are
    factorized once over touchpoints and conversions together.
    """
    coded = _category_codes(touch_keys, conv_keys)
    if coded is not None:
        t_codes, c_codes, cats = coded
        seen = _first_seen(t_codes, len(cats))
        c_seen = _first_seen(c_codes, len(cats))
        in_touch = np.zeros(len(cats), dtype=bool)
        in_touch[seen] = True
        seen = np.concatenate([seen, c_seen[~in_touch[c_seen]]])
        if seen.shape[0] == len(cats) and np.all(seen == np.arange(len(cats))):
            return t_codes, c_codes, cats  # already dense and in first-seen order
        dense = np.full(len(cats), -1, dtype=np.int64)
        dense[seen] = np.arange(seen.shape[0])
        return dense[t_codes], dense[c_codes], cats.take(seen)
    both = pd.concat([touch_keys, conv_keys], ignore_index=True) if len(conv_keys) else touch_keys
    codes, uniques = pd.factorize(both, sort=False)
    codes = codes.astype(np.int64, copy=False)
    return codes[: len(touch_keys)], codes[len(touch_keys) :], pd.Index(uniques)


def _labels(touchpoints: pd.DataFrame, level: str) -> tuple[np.ndarray, list[str]]:
    """Integer label per touch and the label names (channel, or channel:campaign), codes in name order.

    At campaign level a touch is labelled by its campaign id, or by its campaign name where it has no
    id; a touch with neither keeps the bare channel. Data with no campaign column at all is an error
    rather than a silent channel-level run. Name order makes ties (two touches of one user at the same
    instant) break the same way whatever the input row order.
    """
    channel = touchpoints["channel"]
    if isinstance(channel.dtype, pd.CategoricalDtype):
        ch_codes, ch_names = channel.cat.codes.to_numpy().astype(np.int64), list(channel.cat.categories)
    else:
        ch_codes, ch_names = pd.factorize(channel, sort=False)
        ch_codes = ch_codes.astype(np.int64)
    ch_names = [str(c) for c in ch_names]
    if level == "campaign":
        camp = pd.Series(pd.NA, index=touchpoints.index, dtype="object")
        for column in ("campaign", "campaign_id"):  # the id wins over the name
            if column in touchpoints.columns:
                values = touchpoints[column].astype("object")
                present = values.notna() & values.astype("str").str.strip().ne("")
                camp = camp.mask(present, values)
        if not {"campaign", "campaign_id"} & set(touchpoints.columns):
            raise JourneyError("campaign level needs campaign ids or names on the touchpoints; this data has none")
        cp_codes, cp_names = pd.factorize(camp, sort=False, use_na_sentinel=True)
        width = len(cp_names) + 1
        pair_codes, pairs = pd.factorize(ch_codes * width + (cp_codes.astype(np.int64) + 1), sort=False)
        ch_of, cp_of = np.divmod(np.asarray(pairs, dtype=np.int64), width)
        names = [ch_names[c] if p == 0 else f"{ch_names[c]}:{cp_names[p - 1]}" for c, p in zip(ch_of.tolist(), cp_of.tolist())]
        codes = pair_codes.astype(np.int64)
    else:
        names, codes = ch_names, ch_codes
    if len(set(names)) != len(names):
        raise JourneyError("touchpoints.channel has distinct values that print the same; clean the channel names")
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(len(names))
    return rank[codes] if len(names) else codes, sorted(names)


@dataclass(frozen=True)
class _Sorted:
    """Touchpoints and conversions merged in (user, time, kind, label) order, decoded to columns."""

    user: np.ndarray  # user code
    ts: np.ndarray  # int64 ns UTC
    is_conv: np.ndarray  # bool
    label: np.ndarray  # label code for touches, 0 for conversions


def _sort_events(t_user, c_user, t_ts, c_ts, t_label, n_users: int, n_labels: int, max_bits: int = 63) -> _Sorted:
    """Merge-sort the events by (user, time, touch-before-conversion, label).

    Fast path: (user, time, kind, label) packed into ONE int64 and sorted by value (no argsort, no
    gathers). Times are first divided by their common gcd (exact: second- or millisecond-resolution
    data need few bits), or replaced by their dense rank when that still does not fit. Otherwise a
    stable lexsort. Conversions with equal (user, time) are indistinguishable in the packed key; the
    caller matches them to input rows by a separate stable sort, so the result is the same either way.
    """
    n_t, n_c = t_user.shape[0], c_user.shape[0]
    n = n_t + n_c
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return _Sorted(z, z, np.zeros(0, dtype=bool), z)
    ts = np.concatenate([t_ts, c_ts])
    t0, t1 = int(ts.min()), int(ts.max())
    ubits, lbits = _bits(n_users - 1), _bits(n_labels - 1)
    tcode = None
    if t1 - t0 < 2**62:
        off = ts - t0
        g = int(np.gcd.reduce(off)) or 1
        if ubits + _bits((t1 - t0) // g) + 1 + lbits <= max_bits:
            tcode = off // g if g > 1 else off
            tbits = _bits((t1 - t0) // g)

            def decode(code):
                if g > 1:
                    code *= g
                code += t0
                return code

        del off
    if tcode is None:
        uniq, tcode = np.unique(ts, return_inverse=True)
        tcode = tcode.reshape(-1).astype(np.int64)
        tbits = _bits(uniq.shape[0] - 1)

        def decode(code):
            return uniq[code]

    del ts
    label = np.zeros(n, dtype=np.int64)
    label[:n_t] = t_label
    if ubits + tbits + 1 + lbits <= max_bits:
        key = np.concatenate([t_user, c_user]).astype(np.int64, copy=False)
        key <<= tbits + 1 + lbits
        tcode <<= 1 + lbits
        key |= tcode
        del tcode
        key[n_t:] |= 1 << lbits
        key |= label
        del label
        key.sort()
        lmask = (1 << lbits) - 1
        s_label = key & lmask
        key >>= lbits
        is_conv = (key & 1).astype(bool)
        key >>= 1
        s_ts = key & ((1 << tbits) - 1)
        s_ts = decode(s_ts)
        key >>= tbits
        return _Sorted(key, s_ts, is_conv, s_label)
    user = np.concatenate([t_user, c_user])
    kind = np.zeros(n, dtype=np.int8)
    kind[n_t:] = 1
    order = np.lexsort((label, kind, tcode, user))
    return _Sorted(user[order], decode(tcode[order]), order >= n_t, label[order])


# ----------------------------------------------------------------------------- the kernel
@dataclass(frozen=True)
class _Assembled:
    """Journeys in CSR form without the per-journey strings (those cost time at scale)."""

    channels: tuple[str, ...]
    offsets: np.ndarray
    codes: np.ndarray
    touch_ts: np.ndarray
    end_ts: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    journey_user: np.ndarray  # user code per journey
    journey_conv: np.ndarray  # input row of the conversion per journey, -1 for null journeys
    user_names: pd.Index
    report: JourneyReport


def _assemble(
    touchpoints: pd.DataFrame,
    conversions: pd.DataFrame,
    lookback_days: float,
    level: str,
    progress: Progress | None,
    null_lookback: bool,
    max_bits: int = 63,
) -> _Assembled:
    def step(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, text)

    if level not in LEVELS:
        raise JourneyError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    window = _lookback_ns(lookback_days)
    _require(touchpoints, "touchpoints", ("user_key", "ts", "channel"))
    _require(conversions, "conversions", ("user_key", "ts"))
    for frame, name in ((touchpoints, "touchpoints"), (conversions, "conversions")):
        _no_missing(frame["user_key"], f"{name}.user_key")
    _no_missing(touchpoints["channel"], "touchpoints.channel")

    step(0.0, "reading events")
    n_t, n_c = len(touchpoints), len(conversions)
    t_ts = _ns(touchpoints["ts"], "touchpoints.ts")
    c_ts = _ns(conversions["ts"], "conversions.ts")
    if "value" in conversions.columns:
        _no_missing(conversions["value"], "conversions.value")
        value_in = pd.to_numeric(conversions["value"], errors="coerce")
        bad = value_in.isna().to_numpy()
        if bad.any():
            raise JourneyError(f"conversions.value is not a number on row {_first_bad_row(bad)}")
        c_value = value_in.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(c_value)):
            raise JourneyError(f"conversions.value is infinite on row {_first_bad_row(~np.isfinite(c_value))}")
        if np.any(c_value < 0):
            raise JourneyError(f"conversions.value is negative on row {_first_bad_row(c_value < 0)}")
    else:
        c_value = np.zeros(n_c, dtype=np.float64)

    step(0.1, "coding users and channels")
    t_user, c_user, user_names = _user_codes(touchpoints["user_key"], conversions["user_key"])
    t_label, label_names = _labels(touchpoints, level)

    step(0.35, "ordering events by user and time")
    ev = _sort_events(t_user, c_user, t_ts, c_ts, t_label, len(user_names), len(label_names), max_bits)
    # The k-th conversion in merged order is the k-th of a stable (user, time) sort of the conversions.
    c_order = np.lexsort((c_ts, c_user))
    del t_user, t_ts, t_label

    step(0.6, "assigning touches to conversions")
    n = n_t + n_c
    idx_t = np.int32 if n < 2**31 - 1 else np.int64
    nxt = np.where(ev.is_conv, np.arange(n, dtype=idx_t), idx_t(n))
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]  # index of the next conversion at or after i
    tail = nxt >= n
    np.minimum(nxt, n - 1, out=nxt)
    tail |= ev.user[nxt] != ev.user  # no later conversion of the same user: the touch is in the tail
    del nxt
    # A journey is anchored at its conversion, or (null journey) at the last touch of the user's tail;
    # every touch belongs to the next anchor at or after it, so its journey number is the count of
    # anchors strictly before it.
    anchor = tail.copy()
    if n > 1:
        anchor[:-1] &= ev.user[1:] != ev.user[:-1]
    anchor |= ev.is_conv
    jid = np.cumsum(anchor, dtype=idx_t)
    jid -= anchor
    anchor_pos = np.flatnonzero(anchor)
    del anchor
    n_journeys = anchor_pos.shape[0]
    end_ts = ev.ts[anchor_pos]
    touch = ~ev.is_conv
    in_window = end_ts[jid] - ev.ts <= window
    in_window &= touch
    keep = in_window if null_lookback else in_window | (tail & touch)
    in_conv = int(np.count_nonzero(keep & ~tail))
    n_tail = int(np.count_nonzero(tail & touch))
    keep_pos = np.flatnonzero(keep)
    del keep, in_window, tail, touch
    k_jid = jid[keep_pos]
    del jid
    lengths = np.bincount(k_jid, minlength=n_journeys)

    step(0.8, "building paths")
    j_is_conv = ev.is_conv[anchor_pos]
    no_touch = j_is_conv & (lengths == 0)
    k_label = ev.label[keep_pos]
    k_ts = ev.ts[keep_pos]
    names = list(label_names)
    offsets = np.zeros(n_journeys + 1, dtype=np.int64)
    if no_touch.any():
        if NO_TOUCH not in names:
            names.append(NO_TOUCH)
        np.cumsum(lengths + no_touch, out=offsets[1:])
        total = int(offsets[-1])
        pseudo = offsets[:-1][no_touch]
        real = np.ones(total, dtype=bool)
        real[pseudo] = False
        codes = np.empty(total, dtype=np.int64)
        codes[real] = k_label
        codes[pseudo] = names.index(NO_TOUCH)
        touch_ts = np.empty(total, dtype=np.int64)
        touch_ts[real] = k_ts
        touch_ts[pseudo] = end_ts[no_touch]
    else:
        np.cumsum(lengths, out=offsets[1:])
        codes, touch_ts = k_label, k_ts

    # Channels in name order, restricted to those that occur: models never see a channel without touches.
    used = np.bincount(codes, minlength=len(names)) > 0
    used_names = sorted(nm for nm, u in zip(names, used.tolist()) if u)
    lookup = {nm: i for i, nm in enumerate(used_names)}
    remap = np.array([lookup.get(nm, -1) for nm in names], dtype=np.int32)
    codes = remap[codes] if len(names) else codes.astype(np.int32)

    journey_conv = np.full(n_journeys, -1, dtype=np.int64)
    journey_conv[j_is_conv] = c_order
    j_value = np.zeros(n_journeys, dtype=np.float64)
    j_value[j_is_conv] = c_value[c_order]
    in_nulls = int(keep_pos.shape[0]) - in_conv
    report = JourneyReport(
        touchpoints=n_t,
        conversions=n_c,
        users=len(user_names),
        converting_journeys=n_c,
        null_journeys=int(n_journeys - n_c),
        touches_in_conversions=in_conv,
        touches_in_nulls=in_nulls,
        touches_outside_lookback=int(n_t - n_tail - in_conv),
        touches_outside_null_window=int(n_tail - in_nulls),
        no_touch_conversions=int(no_touch.sum()),
        total_value=float(c_value.sum()),
    )
    step(0.95, "counting paths")
    return _Assembled(
        channels=tuple(used_names),
        offsets=offsets,
        codes=codes,
        touch_ts=touch_ts,
        end_ts=end_ts,
        conversions=j_is_conv.astype(np.float64),
        value=j_value,
        journey_user=ev.user[anchor_pos],
        journey_conv=journey_conv,
        user_names=user_names,
        report=report,
    )


# ----------------------------------------------------------------------------- aggregation
def unique_paths(offsets: np.ndarray, codes: np.ndarray, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact unique paths of a CSR sequence set: (inverse per path, index of a representative per unique).

    Each path is packed into 64-bit words of ``63 // bits`` codes (code + 1, so 0 is padding and
    lengths are implied). Words are de-duplicated level by level, each level pairing the previous
    level's id with the next word, only for the paths that are that long (a trie over words): equal
    ids mean equal paths, with no hashing and no collisions, and memory stays linear in the touches.
    """
    n = offsets.shape[0] - 1
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lengths = np.diff(offsets)
    bits = max(int(n_symbols).bit_length(), 1)  # codes + 1 lie in 1..n_symbols
    per_word = 63 // bits
    pos = np.arange(codes.shape[0], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    slot = pos % per_word
    shifted = (np.asarray(codes, dtype=np.int64) + 1) << (slot * bits)
    seg_start = np.flatnonzero(slot == 0)  # a new word starts every per_word touches of a path
    if seg_start.size:
        # Distinct bit fields, so the segmented sum is a bitwise or of the codes of one word.
        seg_val = np.add.reduceat(shifted, seg_start)
        seg_word = pos[seg_start] // per_word
        seg_path = np.repeat(np.arange(n, dtype=np.int64), lengths)[seg_start]
    else:
        seg_val = seg_word = seg_path = np.zeros(0, dtype=np.int64)
    first_word = np.zeros(n, dtype=np.int64)
    level0 = seg_word == 0
    first_word[seg_path[level0]] = seg_val[level0]
    ids = pd.factorize(first_word, sort=False)[0].astype(np.int64, copy=False)  # hash-based, exact
    n_levels = int(seg_word.max()) + 1 if seg_word.size else 1
    for w in range(1, n_levels):
        sel = seg_word == w
        paths = seg_path[sel]
        _, inv = np.unique(np.column_stack([ids[paths], seg_val[sel]]), axis=0, return_inverse=True)
        ids[paths] = int(ids.max()) + 1 + inv.reshape(-1)
    if n_levels > 1:
        ids = pd.factorize(ids, sort=False)[0].astype(np.int64, copy=False)
    first = np.empty(int(ids.max()) + 1, dtype=np.int64)
    first[ids] = np.arange(n, dtype=np.int64)  # any journey of a path represents it (all are equal)
    return ids, first


def aggregate_paths(
    channels: tuple[str, ...],
    offsets: np.ndarray,
    codes: np.ndarray,
    conversions: np.ndarray,
    value: np.ndarray,
    nulls: np.ndarray,
) -> PathTable:
    """Sum identical paths of a CSR sequence set into a PathTable (fast, exact replacement for aggregated())."""
    inverse, first = unique_paths(offsets, codes, len(channels))
    k = first.shape[0]
    lengths = np.diff(offsets)[first]
    new_offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    take = np.repeat(offsets[:-1][first] - new_offsets[:-1], lengths) + np.arange(int(new_offsets[-1]), dtype=np.int64)
    return PathTable(
        channels=tuple(channels),
        offsets=new_offsets,
        codes=np.asarray(codes, dtype=np.int32)[take],
        conversions=np.bincount(inverse, weights=conversions, minlength=k),
        value=np.bincount(inverse, weights=value, minlength=k),
        nulls=np.bincount(inverse, weights=nulls, minlength=k),
    )


# ----------------------------------------------------------------------------- public API
def build_journeys_with_report(
    touchpoints: pd.DataFrame,
    conversions: pd.DataFrame,
    lookback_days: float = 30,
    level: str = "channel",
    progress: Progress | None = None,
    *,
    null_lookback: bool = True,
) -> tuple[Journeys, JourneyReport]:
    """`build_journeys` plus the counts of what was kept and dropped."""
    a = _assemble(touchpoints, conversions, lookback_days, level, progress, null_lookback)
    conv_ids_in = (
        conversions["conversion_id"].astype(str).to_numpy(dtype=object)
        if "conversion_id" in conversions.columns
        else np.array([f"row {i + 1}" for i in range(len(conversions))], dtype=object)
    )
    conversion_id = np.full(a.journey_conv.shape[0], None, dtype=object)
    is_conv = a.journey_conv >= 0
    conversion_id[is_conv] = conv_ids_in[a.journey_conv[is_conv]]
    journeys = Journeys(
        channels=a.channels,
        offsets=a.offsets,
        codes=a.codes.astype(np.int32),
        touch_ts=a.touch_ts,
        end_ts=a.end_ts,
        conversions=a.conversions,
        value=a.value,
        user_key=np.asarray(a.user_names.take(a.journey_user).astype(str), dtype=object),
        conversion_id=conversion_id,
    )
    return journeys, a.report


def build_journeys(
    touchpoints: pd.DataFrame,
    conversions: pd.DataFrame,
    lookback_days: float = 30,
    level: str = "channel",
    progress: Progress | None = None,
    *,
    null_lookback: bool = True,
) -> Journeys:
    """Canonical touchpoints + conversions -> one journey per conversion plus one null journey per user tail.

    ``progress(fraction, text)`` is called at each stage. Journeys are ordered by user, then in time;
    see the module docstring for the exact rules. Raises `JourneyError` on bad input.
    """
    return build_journeys_with_report(touchpoints, conversions, lookback_days, level, progress, null_lookback=null_lookback)[0]


def build_pathtable_with_report(
    touchpoints: pd.DataFrame,
    conversions: pd.DataFrame,
    lookback_days: float = 30,
    level: str = "channel",
    progress: Progress | None = None,
    *,
    null_lookback: bool = True,
) -> tuple[PathTable, JourneyReport]:
    """`build_pathtable` plus the counts of what was kept and dropped."""
    a = _assemble(touchpoints, conversions, lookback_days, level, progress, null_lookback)
    table = aggregate_paths(a.channels, a.offsets, a.codes, a.conversions, a.value, 1.0 - a.conversions)
    if progress is not None:
        progress(1.0, f"{table.n_paths:,} unique paths")
    return table, a.report


def build_pathtable(
    touchpoints: pd.DataFrame,
    conversions: pd.DataFrame,
    lookback_days: float = 30,
    level: str = "channel",
    progress: Progress | None = None,
    *,
    null_lookback: bool = True,
) -> PathTable:
    """Canonical touchpoints + conversions -> PathTable (unique paths with conversions, value, nulls).

    Equals ``build_journeys(...).to_pathtable()`` (same paths and sums) but skips the per-journey
    strings. Conversions and value are conserved: totals equal the input conversions' count and sum.
    """
    return build_pathtable_with_report(touchpoints, conversions, lookback_days, level, progress, null_lookback=null_lookback)[0]


def journeys_frame(journeys: Journeys) -> pd.DataFrame:
    """One row per journey for display and drill-down: user, conversion id, path text, length, end, value."""
    names = np.asarray(journeys.channels, dtype=object)
    paths = [" > ".join(names[journeys.codes[a:b]]) for a, b in zip(journeys.offsets[:-1].tolist(), journeys.offsets[1:].tolist())]
    return pd.DataFrame(
        {
            "user_key": pd.array(journeys.user_key, dtype="str"),
            "conversion_id": journeys.conversion_id,
            "path": paths,
            "length": journeys.lengths,
            "end_ts": pd.to_datetime(journeys.end_ts, unit="ns", utc=True),
            "converted": journeys.conversions > 0,
            "value": journeys.value,
        }
    )
