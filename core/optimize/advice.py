"""Advice beyond budgets, each with a plain-language reason and a confidence 0-100.

Over the last ``window_days`` of the performance frame (totals rows):

* **pause** - spend without a single conversion or any value, when the account's cost per
  conversion says several conversions were due: expected = spend / account CPA; the chance of zero by
  bad luck is ``exp(-expected)`` (Poisson). Flagged when that chance is below ``1 - pause_probability``.
* **targeting** - ROAS below the target on enough spend (at least ``min_spend``, default three
  times the account's cost per conversion, and ``min_days`` days with spend). Confidence is the
  probability the true ROAS is below target (normal approximation of the ratio estimator from
  daily spend and value).
* **creative** - falling CTR: the impression-weighted linear trend of daily CTR loses at least
  ``ctr_drop_per_week`` of its mean per week with a t statistic below -2. Or high frequency: the
  canonical frame has no reach, so frequency is only used when the frame carries a ``frequency``
  column (impression-weighted mean) or a ``reach`` column (impressions / reach per day); at or
  above ``max_frequency`` it is flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from core.optimize.confidence import pause_confidence
from core.response import KEY, campaign_daily

COLUMNS = KEY + ["entity_name", "currency", "kind", "reason", "confidence", "spend", "value", "conversions", "roas"]


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def advise(
    performance: pd.DataFrame,
    *,
    target_roas: float | None = None,
    entity_type: str | None = "campaign",
    window_days: int = 28,
    min_spend: float | None = None,
    min_days: int = 7,
    pause_probability: float = 0.95,
    ctr_drop_per_week: float = 0.10,
    max_frequency: float = 3.0,
) -> pd.DataFrame:
    """Advice rows (kind = pause | targeting | creative) with reason and confidence; empty if none."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    if target_roas is not None and not target_roas > 0:
        raise ValueError(f"target ROAS must be positive, got {target_roas}")
    keys, daily = campaign_daily(performance, entity_type)
    last = daily["date"].max()
    extra = _frequency_daily(performance, entity_type, keys, last - pd.Timedelta(days=window_days))
    win = daily[daily["date"] > last - pd.Timedelta(days=window_days)]
    n = len(keys)
    idx = win["idx"].to_numpy()
    s = win["spend"].to_numpy()
    v = win["conversion_value"].to_numpy()
    c = win["conversions"].to_numpy()
    S = np.bincount(idx, weights=s, minlength=n)
    V = np.bincount(idx, weights=v, minlength=n)
    C = np.bincount(idx, weights=c, minlength=n)
    days = np.bincount(idx, weights=(s > 0).astype(float), minlength=n)
    acct = keys.groupby(["platform", "account_id"], sort=False).ngroup().to_numpy()
    S_acc = np.bincount(acct, weights=S)
    C_acc = np.bincount(acct, weights=C)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpa = np.where(C_acc > 0, S_acc / C_acc, np.nan)[acct]
        roas = np.where(S > 0, V / S, np.nan)
    out = []
    base = keys.assign(spend=S, value=V, conversions=C, roas=roas)

    # pause: spend, no conversions, no value, and the account's CPA says that is not luck
    expected = np.where(np.isfinite(cpa), S / cpa, 0.0)
    conf_p = pause_confidence(expected)
    pause = (S > 0) & (C <= 0) & (V <= 0) & (conf_p >= 100 * pause_probability)
    for i in np.flatnonzero(pause):
        out.append(
            {
                **base.iloc[i].to_dict(),
                "kind": "pause",
                "confidence": float(conf_p[i]),
                "reason": (
                    f"Spent {_money(S[i])} {keys['currency'].iloc[i]} in the last {window_days} days without a conversion. "
                    f"At the account's cost per conversion of {_money(cpa[i])} about {expected[i]:.1f} conversions were due; "
                    f"the chance of none by bad luck is {np.exp(-expected[i]):.1%}. Pause it."
                ),
            }
        )

    # targeting: below target ROAS on enough spend
    if target_roas is not None:
        floor = 3.0 * cpa if min_spend is None else np.full(n, float(min_spend))
        floor = np.where(np.isfinite(floor), floor, np.inf if min_spend is None else float(min_spend))
        R = roas[idx]
        resid = v - R * s
        var = np.bincount(idx, weights=np.nan_to_num(resid) ** 2, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(var * days / np.maximum(days - 1, 1)) / S
            z = (target_roas - roas) / se
        conf_t = 100 * norm.cdf(np.nan_to_num(z, nan=0.0, posinf=50, neginf=-50))
        tgt = (S >= floor) & (days >= min_days) & (roas < target_roas) & ~pause
        for i in np.flatnonzero(tgt):
            out.append(
                {
                    **base.iloc[i].to_dict(),
                    "kind": "targeting",
                    "confidence": float(conf_t[i]),
                    "reason": (
                        f"ROAS {roas[i]:.2f} over the last {window_days} days on {_money(S[i])} {keys['currency'].iloc[i]} spend is "
                        f"below the target {target_roas:g}. Refine the targeting (audiences, keywords, placements, "
                        f"geographies) before giving it more budget."
                    ),
                }
            )

    # creative: falling CTR trend
    imp = win["impressions"].to_numpy()
    clk = win["clicks"].to_numpy()
    has = imp > 0
    ii, t = idx[has], (win["date"][has] - last).dt.days.to_numpy().astype(float)
    w = imp[has]
    ctr = clk[has] / imp[has]
    W = np.bincount(ii, weights=w, minlength=n)
    m_days = np.bincount(ii, minlength=n).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tbar = np.bincount(ii, weights=w * t, minlength=n) / W
        ybar = np.bincount(ii, weights=w * ctr, minlength=n) / W
        dt_ = t - tbar[ii]
        Stt = np.bincount(ii, weights=w * dt_**2, minlength=n)
        Sty = np.bincount(ii, weights=w * dt_ * (ctr - ybar[ii]), minlength=n)
        slope = Sty / Stt
        r = ctr - ybar[ii] - slope[ii] * dt_
        s2 = np.bincount(ii, weights=w * r**2, minlength=n) / np.maximum(m_days - 2, 1)
        tstat = slope / np.sqrt(s2 / Stt)
        weekly = slope * 7.0 / ybar
    falling = (m_days >= min_days) & (weekly <= -ctr_drop_per_week) & (tstat < -2) & ~pause
    conf_c = 100 * norm.cdf(-np.nan_to_num(tstat, nan=0.0, posinf=50, neginf=-50))
    freq = extra
    high_freq = np.isfinite(freq) & (freq >= max_frequency) & ~pause
    for i in np.flatnonzero(falling | high_freq):
        why = []
        if falling[i]:
            why.append(f"CTR fell {-weekly[i]:.0%} a week over the last {int(m_days[i])} days (from about {ybar[i] * 100:.2f}% on average)")
        if high_freq[i]:
            why.append(f"frequency is {freq[i]:.1f} impressions per person (at or above {max_frequency:g})")
        out.append(
            {
                **base.iloc[i].to_dict(),
                "kind": "creative",
                "confidence": float(conf_c[i]) if falling[i] else 100.0 * min(1.0, freq[i] / (2 * max_frequency) + 0.5),
                "reason": "Rotate creatives: " + " and ".join(why) + ", a sign the audience has tired of the ads.",
            }
        )
    if not out:
        return pd.DataFrame(columns=COLUMNS)
    return pd.DataFrame(out)[COLUMNS].reset_index(drop=True)


def _frequency_daily(performance: pd.DataFrame, entity_type: str | None, keys: pd.DataFrame, after) -> np.ndarray:
    """Impression-weighted frequency per campaign after ``after`` if the frame has ``frequency`` or ``reach``; else NaN."""
    if "frequency" not in performance.columns and "reach" not in performance.columns:
        return np.full(len(keys), np.nan)
    df = performance
    if "segment_type" in df.columns:
        df = df[df["segment_type"].fillna("").astype(str) == ""]
    if entity_type is not None and "entity_type" in df.columns:
        df = df[df["entity_type"].astype(str) == entity_type]
    dates = pd.to_datetime(df["date"])
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    df = df[(dates.dt.normalize() > after).to_numpy()]
    imp = pd.to_numeric(df["impressions"], errors="coerce").fillna(0.0).to_numpy()
    if "frequency" in df.columns:
        f = pd.to_numeric(df["frequency"], errors="coerce").to_numpy()
    else:
        reach = pd.to_numeric(df["reach"], errors="coerce").to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(reach > 0, imp / reach, np.nan)
    ok = np.isfinite(f) & (imp > 0)
    k = pd.MultiIndex.from_frame(keys[KEY])
    rows = df.assign(account_id=df["account_id"].astype(str) if "account_id" in df.columns else "", entity_type=df["entity_type"].astype(str) if "entity_type" in df.columns else "campaign")
    pos = k.get_indexer(pd.MultiIndex.from_frame(rows[KEY].astype(str)))
    ok &= pos >= 0
    num = np.bincount(pos[ok], weights=(f * imp)[ok], minlength=len(keys))
    den = np.bincount(pos[ok], weights=imp[ok], minlength=len(keys))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
