"""Bids: ``bid = CVR x value per conversion / target ROAS`` with empirical-Bayes shrinkage.

A campaign's (ad set's, ad group's) conversion rate from few clicks is noisy, so it is shrunk toward
its account's mean with a Beta prior ``Beta(kappa * m, kappa * (1 - m))``: the posterior mean is
``(conversions + kappa * m) / (clicks + kappa)``. The prior mean ``m`` is the account's pooled CVR;
the prior strength ``kappa`` is estimated from the spread of the entities' rates (method of moments
for the beta-binomial): a tight spread means rates differ little, so thin entities are pulled hard.
Value per conversion is shrunk the same way with ``value_prior_conversions`` pseudo-conversions.
Conversions above clicks (view-through) are capped at clicks for the rate.

Contextual modifiers (device, hour, placement) are segment CVR / entity CVR, each segment's CVR
shrunk toward the entity's with the same estimator, and bounded by the max change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.response import KEY, totals_frame

#: Segment types that carry contextual bid modifiers.
SEGMENT_TYPES = ("device", "hour", "placement")
#: Prior strength when the rates give no evidence of differences (full pooling, in clicks).
MAX_KAPPA = 1e6


def beta_prior(successes, trials, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, strength) of a Beta prior per group, by the beta-binomial method of moments.

    ``groups``: integer codes 0..G-1 per entity (None = one group). Returns arrays of length G.
    Strength is in pseudo-trials, ``MAX_KAPPA`` when the rates vary no more than chance.
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if x.shape != n.shape:
        raise ValueError("successes and trials must have the same shape")
    if (x < 0).any() or (n < 0).any() or (x > n).any():
        raise ValueError("need 0 <= successes <= trials for a conversion rate")
    g = np.zeros(x.size, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    G = int(g.max()) + 1 if g.size else 0
    N = np.bincount(g, weights=n, minlength=G)
    X = np.bincount(g, weights=x, minlength=G)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(N > 0, X / N, 0.0)
        has = n > 0
        p = np.where(has, x / np.where(has, n, 1.0), 0.0)
        k = np.bincount(g, weights=has.astype(float), minlength=G)
        ss = np.bincount(g, weights=np.where(has, n * (p - m[g]) ** 2, 0.0), minlength=G)
        n2 = np.bincount(g, weights=n * n, minlength=G)
        # between-entity variance of the true rates (DerSimonian-Laird style moment estimator)
        tau2 = (ss - (k - 1.0) * m * (1.0 - m)) / (N - n2 / N)
        kappa = np.where((tau2 > 0) & (k > 1), m * (1.0 - m) / tau2 - 1.0, MAX_KAPPA)
    return m, np.clip(np.nan_to_num(kappa, nan=MAX_KAPPA), 1e-6, MAX_KAPPA)


def suggest_bids(
    performance: pd.DataFrame,
    target_roas: float,
    *,
    entity_type: str | None = None,
    current_bids=None,
    max_change: float = 0.3,
    value_prior_conversions: float = 5.0,
) -> pd.DataFrame:
    """One row per entity: raw and shrunk CVR, value per conversion, the target bid and the bounded bid.

    ``current_bids``: mapping ``(platform, external_id)`` or ``"platform:external_id"`` -> bid, or a
    frame with platform, external_id, bid. The suggested bid moves at most ``max_change`` from it.
    """
    if not target_roas or target_roas <= 0:
        raise ValueError(f"target ROAS must be positive, got {target_roas}")
    df = totals_frame(performance, entity_type)
    agg = df.groupby(KEY, sort=True, observed=True).agg(
        entity_name=("entity_name", "last"),
        currency=("currency", "last"),
        clicks=("clicks", "sum"),
        conversions=("conversions", "sum"),
        value=("conversion_value", "sum"),
        spend=("spend", "sum"),
    ).reset_index()
    prior_groups = agg.groupby(["platform", "account_id", "entity_type"], sort=False).ngroup().to_numpy()
    clicks = agg["clicks"].to_numpy()
    conv = np.minimum(agg["conversions"].to_numpy(), clicks)
    m, kappa = beta_prior(conv, clicks, prior_groups)
    mg, kg = m[prior_groups], kappa[prior_groups]
    alpha = conv + kg * mg
    beta = clicks - conv + kg * (1.0 - mg)
    cvr = alpha / (alpha + beta)
    value = agg["value"].to_numpy()
    convs_all = agg["conversions"].to_numpy()
    vg = np.bincount(prior_groups, weights=value) / np.maximum(np.bincount(prior_groups, weights=convs_all), 1e-12)
    vpc = (value + value_prior_conversions * vg[prior_groups]) / (convs_all + value_prior_conversions)
    target = cvr * vpc / float(target_roas)
    cur = _lookup(agg, current_bids, "bid")
    lo = cur * max(0.0, 1.0 - max_change)
    hi = cur * (1.0 + max_change)
    bid = np.where(np.isfinite(cur), np.clip(target, lo, hi), target)
    out = agg.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cvr_raw"] = np.where(clicks > 0, conv / clicks, np.nan)
    out["cvr"] = cvr
    out["prior_cvr"] = mg
    out["prior_strength"] = kg
    out["alpha"] = np.maximum(alpha, 1e-9)
    out["beta"] = np.maximum(beta, 1e-9)
    out["value_per_conversion"] = vpc
    out["bid_target"] = target
    out["current_bid"] = cur
    out["bid"] = bid
    out["bounded"] = np.isfinite(cur) & ~np.isclose(bid, target)
    return out


def _lookup(agg: pd.DataFrame, values, column: str) -> np.ndarray:
    """Per row of ``agg`` the value from a mapping or frame keyed by platform + external_id (NaN if absent)."""
    if values is None:
        return np.full(len(agg), np.nan)
    labels = agg["platform"] + ":" + agg["external_id"]
    if isinstance(values, pd.DataFrame):
        if not {"platform", "external_id", column} <= set(values.columns):
            raise ValueError(f"the frame of current values needs columns platform, external_id, {column}")
        vals = values.dropna(subset=[column])
        mapping = dict(zip(vals["platform"].astype(str) + ":" + vals["external_id"].astype(str), vals[column].astype(float)))
    else:
        mapping = {}
        for k, v in dict(values).items():
            if v is None:
                continue
            key = f"{k[0]}:{k[1]}" if isinstance(k, tuple) else str(k)
            mapping[key] = float(v)
    got = labels.map(mapping)
    by_id = agg["external_id"].map({k.split(":", 1)[-1]: v for k, v in mapping.items() if ":" not in k})
    return pd.to_numeric(got.fillna(by_id), errors="coerce").astype(float).to_numpy()


def bid_modifiers(
    performance: pd.DataFrame,
    *,
    max_change: float = 0.3,
    segment_types: tuple[str, ...] = SEGMENT_TYPES,
    entity_type: str | None = None,
) -> pd.DataFrame:
    """Per entity, segment type and value: the shrunk segment CVR relative to the entity's, bounded.

    Uses the frame's segment rows (``segment_type`` in ``segment_types``); empty frame if none.
    ``modifier`` is clipped to ``[1 - max_change, 1 + max_change]``.
    """
    cols = KEY + ["segment_type", "segment_value", "clicks", "conversions", "modifier_raw", "modifier", "cvr", "cvr_raw"]
    if "segment_type" not in performance.columns:
        return pd.DataFrame(columns=cols)
    seg = performance[performance["segment_type"].fillna("").astype(str).isin(segment_types)].copy()
    if seg.empty:
        return pd.DataFrame(columns=cols)
    sv = seg["segment_value"].fillna("").astype(str) if "segment_value" in seg.columns else ""
    # validate and fill defaults like totals rows, carrying the segment columns alongside
    seg = totals_frame(seg.assign(_st=seg["segment_type"].astype(str), _sv=sv, segment_type=""), entity_type)
    seg = seg.drop(columns=["segment_type", "segment_value"], errors="ignore").rename(columns={"_st": "segment_type", "_sv": "segment_value"})
    agg = seg.groupby(KEY + ["segment_type", "segment_value"], sort=True, observed=True)[["clicks", "conversions"]].sum().reset_index()
    grp = agg.groupby(KEY + ["segment_type"], sort=False).ngroup().to_numpy()
    clicks = agg["clicks"].to_numpy()
    conv = np.minimum(agg["conversions"].to_numpy(), clicks)
    m, kappa = beta_prior(conv, clicks, grp)
    post = (conv + kappa[grp] * m[grp]) / (clicks + kappa[grp])
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(m[grp] > 0, post / m[grp], 1.0)
        agg["cvr_raw"] = np.where(clicks > 0, conv / clicks, np.nan)
    agg["cvr"] = post
    agg["modifier_raw"] = raw
    agg["modifier"] = np.clip(raw, max(0.0, 1.0 - max_change), 1.0 + max_change)
    return agg[cols]
