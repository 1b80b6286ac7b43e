"""Event streams -> sessions -> one touch per session.

Clickstreams and analytics exports carry many events per visit (page views, scrolls, add-to-carts).
Credit belongs to the visit's acquisition channel, not to each page view, so before journeys are
built the touch events are grouped into sessions:

* events are taken per user in time order;
* a new session starts at a user's first event, after ``timeout_minutes`` of inactivity (30 by
  default, as GA4 and Snowplow do), when the collector's own session id changes, or when an event
  carries traffic information (source / medium / campaign, or a channel column) that differs from
  the last traffic information seen in the session; an event without traffic information continues
  the session (a page view inside a visit from an ad). A visit that started without traffic
  information (a direct visit) ends when an event with traffic information arrives;
* each session gives ONE touch: its first event, stamped at the session start, whose channel is the
  session's acquisition channel. Conversions are untouched: a conversion inside a session still
  ends the journey as before, and the session's touch (at its start) precedes it.

Everything is vectorized over numpy arrays (no per-event Python): session starts are a boolean
mask from comparisons of neighbours, the "last traffic key seen" a running maximum of indices.

`choose_mode` picks the default from the data: a table of ad impressions / clicks, or one whose
events are mostly one per visit, keeps every event as a touch; a clickstream (several events per
session, or the collector's session ids) gets one touch per session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import IngestError

DEFAULT_TIMEOUT_MINUTES = 30.0
MODES = ("auto", "sessions", "events")
#: Events per session from which a stream is a clickstream (several events per visit).
CLICKSTREAM_RATIO = 1.5
#: Extra touch columns used here and dropped afterwards.
SESSION_COLUMN = "session_id"
TRAFFIC_COLUMN = "has_traffic"
KEY_COLUMNS = ("channel", "source", "medium", "campaign", "campaign_id")


@dataclass(frozen=True)
class SessionSettings:
    """How touch events become touches: ``mode`` auto | sessions | events; the inactivity timeout."""

    mode: str = "auto"
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES

    def validated(self) -> "SessionSettings":
        if self.mode not in MODES:
            raise IngestError(f"touches mode {self.mode!r} is not one of {', '.join(MODES)}")
        try:
            minutes = float(self.timeout_minutes)
        except (TypeError, ValueError):
            raise IngestError(f"session timeout {self.timeout_minutes!r} is not a number of minutes") from None
        if not np.isfinite(minutes) or minutes <= 0 or minutes > 7 * 24 * 60:
            raise IngestError(f"session timeout must be more than 0 and at most 10080 minutes (a week), got {minutes:g}")
        return SessionSettings(self.mode, minutes)


@dataclass(frozen=True)
class Sessionized:
    """The touches, and what happened to the events (the import report's events -> sessions -> touches)."""

    touchpoints: pd.DataFrame
    events: int
    sessions: int
    mode: str  # sessions | events (what was applied)
    reason: str  # why this mode (the default's reason, or "chosen")
    timeout_minutes: float

    def report(self) -> dict:
        return {"touch_events": int(self.events), "sessions": int(self.sessions), "touchpoints": int(len(self.touchpoints)),
                "touches_are": "one per session" if self.mode == "sessions" else "every event",
                "touches_reason": self.reason, "session_timeout_minutes": self.timeout_minutes}


def session_starts(user: np.ndarray, ts: np.ndarray, key: np.ndarray, timeout_ns: int,
                   session_ids: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the events that start a session; the input is sorted by (user, ts).

    ``user``: integer user codes; ``ts``: int64 nanoseconds; ``key``: integer traffic-key codes, -1
    where an event has no traffic information; ``session_ids``: integer codes of the collector's
    session id (-1 = none), or None.
    """
    n = int(user.shape[0])
    if n == 0:
        return np.zeros(0, dtype=bool)
    segment = np.ones(n, dtype=bool)  # user change, inactivity, or a new collector session
    segment[1:] = (user[1:] != user[:-1]) | ((ts[1:] - ts[:-1]) > timeout_ns)
    if session_ids is not None:
        segment[1:] |= (session_ids[1:] != session_ids[:-1]) & (session_ids[1:] >= 0) & (session_ids[:-1] >= 0)
    index_type = np.int32 if n < 2**31 - 1 else np.int64  # positions: half the memory for any real file
    idx = np.arange(n, dtype=index_type)
    has = key >= 0
    last_with_key = np.where(has, idx, index_type(-1))
    np.maximum.accumulate(last_with_key, out=last_with_key)  # last event with a key at or before i
    before = np.empty(n, dtype=index_type)
    before[0], before[1:] = -1, last_with_key[:-1]
    del last_with_key
    segment_first = np.where(segment, idx, index_type(0))
    del idx
    np.maximum.accumulate(segment_first, out=segment_first)
    inside = before >= segment_first  # that event is in the same segment
    del segment_first
    np.maximum(before, 0, out=before)
    previous_key = key[before]
    del before
    previous_key[~inside] = -1
    return segment | (has & (key != previous_key))


def _codes(values: pd.Series) -> np.ndarray:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype(np.int64)
    codes, _ = pd.factorize(values, sort=False, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False)


def traffic_keys(touch: pd.DataFrame) -> np.ndarray:
    """One integer per distinct (channel, source, medium, campaign, campaign id), -1 where the event
    carries no traffic information (``has_traffic`` false)."""
    n = len(touch)
    combined = np.zeros(n, dtype=np.int64)
    bound = 1  # combined < bound
    for column in KEY_COLUMNS:
        if column not in touch.columns:
            continue
        codes = _codes(touch[column])
        radix = int(codes.max(initial=-1)) + 2
        if bound * radix >= 2**62:  # the packed key would overflow: renumber the combinations so far densely
            combined, uniques = pd.factorize(combined, sort=False)
            combined, bound = combined.astype(np.int64, copy=False), max(len(uniques), 1)
        combined *= radix  # (combined, code) packed into one integer: equal exactly when every part is
        combined += codes
        combined += 1
        bound *= radix
        del codes
    if TRAFFIC_COLUMN in touch.columns:
        combined[~touch[TRAFFIC_COLUMN].to_numpy(dtype=bool)] = -1
    return combined


def _ns(ts: pd.Series) -> np.ndarray:
    return ts.array.asi8 if isinstance(ts.dtype, pd.DatetimeTZDtype) else ts.to_numpy().view(np.int64)


def choose_mode(touch: pd.DataFrame, starts: np.ndarray, interactions_given: bool = False,
                clickstream: str | None = None) -> tuple[str, str]:
    """(mode, reason) for ``auto``: sessions for clickstreams, every event for ad-exposure logs (a file
    whose own interaction column says most touches are impressions or clicks). ``clickstream`` names
    a collector whose exports are event streams by nature (GA4, Segment, Snowplow)."""
    events, sessions = len(touch), int(starts.sum())
    if events == 0:
        return "events", "no touch events"
    if clickstream:
        return "sessions", f"{clickstream} exports are event streams: {events:,} events form {sessions:,} sessions"
    if interactions_given and "interaction" in touch.columns:
        kinds = touch["interaction"].astype("object")
        ads = kinds.isin(["impression", "click"]).mean()
        if ads >= 0.5:
            return "events", f"{ads:.0%} of the touches are ad impressions or clicks: each is a touch of its own"
    if SESSION_COLUMN in touch.columns and touch[SESSION_COLUMN].notna().mean() >= 0.5:
        return "sessions", f"the file carries the collector's session ids: {events:,} events form {sessions:,} sessions"
    ratio = events / max(sessions, 1)
    if ratio >= CLICKSTREAM_RATIO:
        return "sessions", f"{events:,} events form {sessions:,} sessions ({ratio:.1f} per session): a clickstream, one touch per visit"
    return "events", f"{events:,} events form {sessions:,} sessions ({ratio:.1f} per session): events are visits already"


def decision_rule(reason: str) -> str:
    """Which of `choose_mode`'s rules gave ``reason``: clickstream | ads | session_ids | ratio |
    empty | chosen (so engines that decide per partition can check they all decided alike)."""
    for marker, rule in (("exports are event streams", "clickstream"), ("ad impressions or clicks", "ads"),
                         ("session ids", "session_ids"), ("per session", "ratio"), ("no touch events", "empty")):
        if marker in reason:
            return rule
    return "chosen"


def sessionize(touch: pd.DataFrame, settings: SessionSettings | None = None, *, interactions_given: bool = False,
               clickstream: str | None = None) -> Sessionized:
    """Apply ``settings`` to touch events sorted by (user, ts); returns the touches (the session
    starts in sessions mode, every event otherwise) without the helper columns. ``interactions_given``:
    the files had an interaction column (impression / click), which the default choice trusts."""
    settings = (settings or SessionSettings()).validated()
    keep_columns = [c for c in touch.columns if c not in (SESSION_COLUMN, TRAFFIC_COLUMN)]
    n = len(touch)
    if n == 0:
        return Sessionized(touch[keep_columns].reset_index(drop=True), 0, 0, "events", "no touch events", settings.timeout_minutes)
    user = _codes(touch["user_key"])
    ts = _ns(touch["ts"])
    if n > 1 and np.any((user[1:] == user[:-1]) & (ts[1:] < ts[:-1])):
        raise IngestError("internal: touch events must be sorted by user and time before sessionizing")
    sids = _codes(touch[SESSION_COLUMN]) if SESSION_COLUMN in touch.columns and touch[SESSION_COLUMN].notna().any() else None
    starts = session_starts(user, ts, traffic_keys(touch), int(round(settings.timeout_minutes * 60e9)), sids)
    if settings.mode == "auto":
        mode, reason = choose_mode(touch, starts, interactions_given, clickstream)
    else:
        mode, reason = settings.mode, "chosen"
    sessions = int(starts.sum())
    out = touch.loc[starts, keep_columns] if mode == "sessions" else touch[keep_columns]
    return Sessionized(out.reset_index(drop=True), n, sessions, mode, reason, settings.timeout_minutes)


__all__ = ["DEFAULT_TIMEOUT_MINUTES", "MODES", "SessionSettings", "Sessionized", "session_starts", "traffic_keys",
           "choose_mode", "decision_rule", "sessionize"]
