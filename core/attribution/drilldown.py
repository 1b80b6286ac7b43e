"""Single-journey drill-down: how every model of a run splits one journey's conversion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.attribution import heuristics
from core.attribution.datadriven import journey_split
from core.attribution.fitted import FittedModel
from core.attribution.shapley import no_negative_credit
from core.pathtable import NO_TOUCH, Journeys, PathTableError


def map_codes(src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(dst)}
    return np.array([index[c] for c in src], dtype=np.int64)


def _ns(values) -> np.ndarray:
    """Timestamps (int64 ns, datetimes or strings; naive ones taken as UTC) as int64 ns since the epoch."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return pd.to_datetime(pd.Index(list(arr.ravel())), utc=True).as_unit("ns").asi8


def explain_journey(result, path: Sequence[str], touch_ts=None, end_ts=None) -> pd.DataFrame:
    """Split of one journey's conversion under every model of ``result`` (columns channel, model, share).

    Heuristics and time decay apply their rule to the journey's touches. ``shapley`` gives each distinct
    channel 1/|channels| (its own per-journey rule) and ``shapley_rate`` the Shapley values of the fitted
    rate game restricted to the journey's channel set, divided by its rate, exactly as the model credits
    that journey inside the totals (NaN when the fitted game gives that set no conversions); ``data_driven``
    the exact Shapley values of the fitted conversion model over the journey's channels divided by its
    conversion probability (what the journey gives each channel inside the totals; the rest is the
    baseline's, so the shares add up to less than 1). ``markov``
    has no per-journey rule: the journey's distinct channels share it in proportion to their fitted
    removal effects (equally if all are zero). Channels the fitted model never saw get 0 from
    markov/shapley_rate. Time decay needs ``touch_ts`` (one per touch) and ``end_ts`` (any datetime-like).
    """
    names = [str(c) for c in path]
    if not names:
        raise PathTableError("the journey has no channels")
    params = result.details["params"]
    if set(names) == {NO_TOUCH}:  # a conversion with no touch is (no touch)'s under every model
        return pd.DataFrame([{"channel": NO_TOUCH, "model": m, "share": 1.0} for m in params["models"]],
                            columns=["channel", "model", "share"])
    distinct = list(dict.fromkeys(names))
    codes = map_codes(names, distinct).astype(np.int32)
    rows = []

    def add(model: str, shares: np.ndarray) -> None:
        rows.extend({"channel": c, "model": model, "share": float(s)} for c, s in zip(distinct, shares))

    for model in params["models"]:
        if model in heuristics.HEURISTIC_MODELS:
            w = heuristics.single_path_heuristic(codes, model, tuple(params["position_shares"]))
            add(model, np.bincount(codes, weights=w, minlength=len(distinct)))
        elif model == "time_decay":
            if touch_ts is None or end_ts is None:
                add(model, np.full(len(distinct), np.nan))
                continue
            ts, end = _ns(touch_ts), int(_ns([end_ts])[0])
            if len(ts) != len(names):
                raise ValueError(f"touch_ts has {len(ts)} entries for a journey of {len(names)} touches")
            one = Journeys(tuple(distinct), np.array([0, len(names)]), codes, np.asarray(ts, dtype=np.int64), np.array([end], dtype=np.int64), np.ones(1), np.zeros(1), np.array(["journey"], dtype=object), np.array([None], dtype=object))
            w = heuristics.time_decay_touch_weights(one, params["half_life_days"])
            add(model, np.bincount(codes, weights=w, minlength=len(distinct)))
        elif model == "shapley":
            add(model, np.full(len(distinct), 1.0 / len(distinct)))
        elif model == "markov":
            re = result.details["markov"]["removal_effects"]
            w = np.array([re.get(c, 0.0) for c in distinct], dtype=np.float64)
            add(model, w / w.sum() if w.sum() > 0 else np.full(len(distinct), 1.0 / len(distinct)))
        elif model == "shapley_rate":
            fit = result.fitted.get("shapley_rate")
            if fit is None:
                raise ValueError("the shapley_rate drill-down needs the fitted model; re-run the attribution (it is deterministic)")
            known = result.details["shapley_rate"]["shapley_values"]
            order = list(known)
            mask = 0
            for c in distinct:
                if c in known:
                    mask |= 1 << order.index(c)
            v = float(fit.game[mask]) if mask else 0.0
            if v <= 0:
                add(model, np.full(len(distinct), np.nan))
                continue
            phi = fit.split(mask)
            at = [order.index(c) for c in distinct if c in known]
            phi[at] = no_negative_credit(phi[at][None, :], np.array([v]))[0]  # as the totals bound them
            add(model, np.array([phi[order.index(c)] / v if c in known else 0.0 for c in distinct]))
        elif model == "data_driven":
            dd = result.details["data_driven"]
            known = {c: i for i, c in enumerate(dd["channels"])}
            seen = [c for c in names if c in known]
            if not seen:
                add(model, np.zeros(len(distinct)))
                continue
            fm = result.fitted.get("data_driven") or FittedModel.from_dict(dd["model"])
            chans, shares, _, _ = journey_split(fm, np.array([known[c] for c in seen]))
            by_code = dict(zip(chans.tolist(), shares.tolist()))
            add(model, np.array([by_code.get(known.get(c, -1), 0.0) for c in distinct]))
    return pd.DataFrame(rows, columns=["channel", "model", "share"])
