"""Response curves: how much conversion value a campaign's daily spend buys.

Per campaign, from the canonical daily performance frame (totals rows), we fit

* ``power`` (default): ``value = a * spend**k`` with ``0 < k < 1``, by weighted least squares in log
  space (closed form, vectorized over all campaigns with ``np.bincount``), retransformed with Duan's
  smearing factor so predictions are means rather than medians, over every day with spend (days that
  returned no value count as zero);
* ``hill`` (option): ``value = vmax * s**h / (ec50**h + s**h)`` with ``0 < h <= 1`` (concave, so the
  allocator stays exact), fitted with `scipy.optimize.curve_fit` per campaign.

Campaigns with too little history (few days, or a spend range too narrow to identify the slope) fall
back to a pooled curve: the slope is shared (the within-campaign estimator over the well-identified
campaigns) and only the level is the campaign's own. The diagnostics say so.

The `CurveSet` holds every campaign's parameters as arrays, with covariances of the fitted
parameters so that `CurveSet.sample` can draw plausible curves for uncertainty bands and confidence.

`attribution_adjusted` re-weights platform-reported value so each channel's total equals the value
an attribution run credited to it (so the optimizer does not trust each platform's self-credit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.ingest.performance import top_level_rows

#: Columns that identify one optimizable entity.
KEY = ["platform", "account_id", "entity_type", "external_id"]
#: Columns the performance frame must have.
REQUIRED = ["date", "platform", "external_id", "spend", "conversion_value"]
#: Bounds on the power-law exponent (strictly inside (0, 1): concave and increasing).
K_BOUNDS = (0.02, 0.98)
#: Bounds on the Hill shape (<= 1 keeps the curve concave).
H_BOUNDS = (0.05, 1.0)


class CurveFitError(ValueError):
    """The performance data cannot give a response curve; the message says what and where."""


# --------------------------------------------------------------------------------------------
# The performance frame
# --------------------------------------------------------------------------------------------


def totals_frame(performance: pd.DataFrame, entity_type: str | None = "campaign") -> pd.DataFrame:
    """The totals rows (no segment) of one entity type, with defaults filled and input checked.

    Raises `CurveFitError` naming the column/row for missing columns, non-numeric, NaN or negative
    spend/value, and when no row of ``entity_type`` exists.
    """
    if not isinstance(performance, pd.DataFrame):
        raise TypeError("performance must be a pandas DataFrame in the canonical performance columns")
    missing = [c for c in REQUIRED if c not in performance.columns]
    if missing:
        raise CurveFitError(f"performance frame is missing column(s) {missing}; needs {REQUIRED}")
    df = performance
    if "segment_type" in df.columns:
        seg = df["segment_type"].fillna("").astype(str)
        df = df[seg == ""]
    df = df.copy()
    defaults = {"account_id": "", "entity_type": "campaign", "currency": "USD", "clicks": 0, "impressions": 0, "conversions": 0.0}
    for col, val in defaults.items():
        if col not in df.columns:
            df[col] = val
    if "entity_name" not in df.columns:
        df["entity_name"] = df["external_id"]
    for col in ("platform", "account_id", "entity_type", "external_id", "entity_name", "currency"):
        df[col] = df[col].fillna("").astype(str)
    if entity_type is not None:
        df = df[df["entity_type"] == entity_type]
        if df.empty:
            kinds = sorted(set(performance.get("entity_type", pd.Series(["campaign"])).astype(str)))
            raise CurveFitError(f"performance frame has no totals rows of entity_type {entity_type!r} (found {kinds})")
    if df.empty:
        raise CurveFitError("performance frame has no totals rows")
    for col in ("spend", "conversion_value", "clicks", "impressions", "conversions"):
        vals = pd.to_numeric(df[col], errors="coerce").astype("float64")
        bad = vals.isna() | ~np.isfinite(vals.to_numpy())
        if bad.any():
            row = df.loc[bad].iloc[0]
            raise CurveFitError(f"{col} is missing or not a number for {row['platform']} {row['external_id']} on {row['date']}")
        neg = vals < 0
        if neg.any():
            row = df.loc[neg].iloc[0]
            raise CurveFitError(
                f"negative {col} {vals[neg].iloc[0]} for {row['platform']} {row['external_id']} on {row['date']} "
                f"({int(neg.sum())} row(s)); {col} cannot be negative"
            )
        df[col] = vals
    dates = pd.to_datetime(df["date"], errors="coerce")
    if dates.isna().any():
        row = df.loc[dates.isna()].iloc[0]
        raise CurveFitError(f"date {row['date']!r} is not a date ({row['platform']} {row['external_id']})")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    df["date"] = dates.dt.normalize()
    return df


def campaign_daily(performance: pd.DataFrame, entity_type: str | None = "campaign") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(keys, daily): one row per campaign (keys) and per campaign-day (daily, with ``idx`` into keys).

    Duplicate rows of one campaign-day are summed. Keys carry ``entity_name`` and ``currency``.
    """
    df = totals_frame(performance, entity_type)
    sums = ["spend", "conversion_value", "clicks", "impressions", "conversions"]
    daily = df.groupby(KEY + ["date"], sort=True, observed=True)[sums].sum().reset_index()
    keys = (
        df.groupby(KEY, sort=True, observed=True)[["entity_name", "currency"]].last().reset_index()
    )
    idx = pd.MultiIndex.from_frame(keys[KEY]).get_indexer(pd.MultiIndex.from_frame(daily[KEY]))
    daily["idx"] = idx.astype(np.int64)
    return keys, daily


# --------------------------------------------------------------------------------------------
# Curve set
# --------------------------------------------------------------------------------------------


def _log_sig(x):
    """log(1 / (1 + exp(-x))) without overflow."""
    return -np.logaddexp(0.0, -x)


def _power_value(s, a, k):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(s > 0, a * np.power(np.maximum(s, 0.0), k), 0.0)


def _power_marginal(s, a, k):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = a * k * np.power(np.maximum(s, 0.0), k - 1.0)
    return np.where(a > 0, m, 0.0)


def _hill_value(s, vmax, ec, h):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.power(np.maximum(s, 0.0) / ec, h)
        return np.where(s > 0, vmax * r / (1.0 + r), 0.0)


def _hill_marginal(s, vmax, ec, h):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.maximum(s, 0.0)
        r = np.power(s / ec, h)
        m = vmax * h * np.power(s / ec, h - 1.0) / ec / (1.0 + r) ** 2
    return np.where(vmax > 0, m, 0.0)


@dataclass(frozen=True)
class CurveSet:
    """Response curves of ``n`` campaigns, as arrays.

    ``params`` is (n, p): power ``[a, k]``; hill ``[vmax, ec50, h]``. ``theta`` is the fitted
    parametrization with covariance ``cov`` (n, p, p): power ``[log a, k]``; hill
    ``[log vmax, log ec50, h]``. A campaign with ``a == 0`` / ``vmax == 0`` has a zero curve (no
    value ever recorded). ``keys`` has one row per campaign (KEY + entity_name, currency);
    ``diagnostics`` has per-campaign fit figures and warnings; ``daily`` the observed points.
    ``bounds`` (n, p, 2) is the box in the ``theta`` parametrization the fit was allowed to search
    (None: only the exponent/shape is bounded); parameter draws stay inside it.
    """

    model: str
    keys: pd.DataFrame
    params: np.ndarray
    cov: np.ndarray
    diagnostics: pd.DataFrame
    daily: pd.DataFrame = field(repr=False)
    bounds: np.ndarray | None = field(default=None, repr=False)

    # ---- shape
    @property
    def n(self) -> int:
        return int(self.params.shape[0])

    @property
    def labels(self) -> list[str]:
        """Display labels ``platform:external_id``."""
        return (self.keys["platform"] + ":" + self.keys["external_id"]).tolist()

    def index_of(self, platform: str, external_id: str) -> int:
        hit = np.flatnonzero((self.keys["platform"] == platform).to_numpy() & (self.keys["external_id"] == external_id).to_numpy())
        if hit.size == 0:
            raise KeyError(f"no curve for {platform}:{external_id}")
        return int(hit[0])

    def subset(self, mask: np.ndarray) -> "CurveSet":
        """The curves of the campaigns selected by a boolean mask or index array."""
        idx = np.arange(self.n)[mask]
        remap = -np.ones(self.n, dtype=np.int64)
        remap[idx] = np.arange(idx.size)
        daily = self.daily[np.isin(self.daily["idx"].to_numpy(), idx)].copy()
        daily["idx"] = remap[daily["idx"].to_numpy()]
        return CurveSet(
            self.model,
            self.keys.iloc[idx].reset_index(drop=True),
            self.params[idx],
            self.cov[idx],
            self.diagnostics.iloc[idx].reset_index(drop=True),
            daily,
            None if self.bounds is None else self.bounds[idx],
        )

    # ---- evaluation (params may be (n, p) or (draws, n, p))
    def _p(self, params):
        p = self.params if params is None else np.asarray(params, dtype=float)
        return [p[..., j] for j in range(p.shape[-1])]

    def predict(self, spend, params=None) -> np.ndarray:
        """Predicted daily value at ``spend`` (broadcast against campaigns)."""
        s = np.asarray(spend, dtype=float)
        if self.model == "power":
            a, k = self._p(params)
            return _power_value(s, a, k)
        vmax, ec, h = self._p(params)
        return _hill_value(s, vmax, ec, h)

    def marginal(self, spend, params=None) -> np.ndarray:
        """Marginal return d value / d spend (the marginal ROAS) at ``spend``."""
        s = np.asarray(spend, dtype=float)
        if self.model == "power":
            a, k = self._p(params)
            return _power_marginal(s, a, k)
        vmax, ec, h = self._p(params)
        return _hill_marginal(s, vmax, ec, h)

    def inverse_marginal(self, lam: float) -> np.ndarray:
        """Spend per campaign at which the marginal return equals ``lam`` (> 0); 0 where never reached.

        Closed form for the power law; vectorized bisection in log spend for Hill curves.
        """
        lam = float(lam)
        if not lam > 0:
            raise ValueError(f"marginal return must be positive, got {lam}")
        if self.model == "power":
            a, k = self.params[:, 0], self.params[:, 1]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                b = np.exp((np.log(a * k) - np.log(lam)) / (1.0 - k))
            return np.where(a > 0, b, 0.0)
        vmax, ec, h = self.params.T
        m0 = _hill_marginal(np.full(self.n, 1e-300), vmax, ec, h)
        lo = np.log(ec) - 60.0
        hi = np.log(ec) + 60.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = _hill_marginal(np.exp(mid), vmax, ec, h) > lam
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        b = np.exp(0.5 * (lo + hi))
        return np.where((vmax > 0) & (m0 > lam), b, 0.0)

    def theta_box(self) -> np.ndarray:
        """(n, p, 2): lower/upper limits of each fitted parameter (``theta`` scale); it always holds ``theta``."""
        theta = self.theta()
        if self.bounds is not None:
            box = np.array(self.bounds, dtype=float, copy=True)
        else:
            box = np.empty(theta.shape + (2,))
            box[..., 0], box[..., 1] = -np.inf, np.inf
            j = 1 if self.model == "power" else 2
            box[:, j] = K_BOUNDS if self.model == "power" else H_BOUNDS
        box[..., 0] = np.where(np.isnan(box[..., 0]), theta, np.minimum(box[..., 0], theta))
        box[..., 1] = np.where(np.isnan(box[..., 1]), theta, np.maximum(box[..., 1], theta))
        return box

    def _hill_anchor(self) -> np.ndarray:
        """log of the spend where a Hill curve's level is pinned for sampling (the campaign's mean spend)."""
        ref = self.diagnostics["mean_spend"].to_numpy(float) if "mean_spend" in self.diagnostics.columns else np.zeros(self.n)
        ok = np.isfinite(ref) & (ref > 0)
        return np.log(np.where(ok, ref, np.maximum(self.params[:, 1], 1e-300)))

    def sample_cov(self) -> np.ndarray:
        """The covariance the draws use, in the sampling parametrization (see `sample`).

        Power: the fit's covariance of ``[log a, k]``. Hill: ``curve_fit``'s covariance of
        ``[log vmax, log ec50, h]`` carried (delta method) to ``[log value at the mean spend, log ec50,
        h]`` and combined with a weak prior on ``log ec50`` and ``h``: a normal whose variance is that
        of a uniform draw over the fit's bounds. A Hill fit whose saturation the data do not show has
        a near-singular Jacobian and standard errors of hundreds on log EC50; the value at the spend
        the data saw is still well determined, and the prior bounds the rest by the range the fit
        could have chosen (information form via Woodbury, so an unbounded variance is fine).
        """
        cov = np.nan_to_num(np.asarray(self.cov, dtype=float), nan=0.0, posinf=1e300, neginf=-1e300)
        if self.model != "hill":
            return cov
        lv, le, h = self.theta().T
        d = self._hill_anchor() - le
        sig = 0.5 * (1.0 + np.tanh(0.5 * h * d))  # r / (1 + r), r = (s_ref / ec50) ** h, without overflow
        jac = np.zeros_like(cov)
        jac[:, 0, 0] = 1.0
        jac[:, 0, 1] = -h * (1.0 - sig)
        jac[:, 0, 2] = d * (1.0 - sig)
        jac[:, 1, 1] = jac[:, 2, 2] = 1.0
        cu = jac @ cov @ np.swapaxes(jac, 1, 2)
        box = self.theta_box()
        w = box[:, 1:, 1] - box[:, 1:, 0]
        ok = np.isfinite(w).all(axis=1) & (w > 0).all(axis=1)
        if ok.any():
            prior = np.zeros((int(ok.sum()), 2, 2))
            prior[:, [0, 1], [0, 1]] = w[ok] ** 2 / 12.0
            c = cu[ok]
            cb = c[:, :, 1:]  # (m, 3, 2)
            post = c - cb @ np.linalg.solve(c[:, 1:, 1:] + prior, np.swapaxes(cb, 1, 2))
            cu[ok] = 0.5 * (post + np.swapaxes(post, 1, 2))
        return cu

    def sample(self, n_draws: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
        """``n_draws`` parameter draws (draws, n, p) from the fit's normal approximation, truncated to the box.

        Power curves are drawn in ``[log a, k]``; Hill curves in ``[log value at the mean spend, log
        ec50, h]`` (`sample_cov`), so the level stays tied to the data whatever the weakly
        identified saturation does. Draws outside `theta_box` (an exponent outside the concave
        range, an EC50 outside the searched range) are drawn again, so each campaign's draws follow
        the normal truncated to the box with its parameters jointly consistent (clipping one of them
        would break that); the rare draws still outside after 50 rounds are clipped. Every draw is
        finite; zero curves stay zero.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        theta = self.theta()
        n, p = theta.shape
        box = self.theta_box()
        lo, hi = box[..., 0].copy(), box[..., 1].copy()
        centre = theta.copy()
        if self.model == "hill":  # the level coordinate is free; only log ec50 and h are boxed
            anchor = self._hill_anchor()
            centre[:, 0] = theta[:, 0] + _log_sig(theta[:, 2] * (anchor - theta[:, 1]))
            lo[:, 0], hi[:, 0] = -np.inf, np.inf
        lam, vec = np.linalg.eigh(self.sample_cov())
        root = vec * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]  # root @ root.T == cov, even when singular
        draws = centre[None] + np.einsum("nij,dnj->dni", root, rng.standard_normal((n_draws, n, p)))
        for _ in range(50):
            bad = ((draws < lo[None]) | (draws > hi[None])).any(axis=-1)
            if not bad.any():
                break
            _, ci = np.nonzero(bad)
            draws[bad] = centre[ci] + np.einsum("kij,kj->ki", root[ci], rng.standard_normal((ci.size, p)))
        draws = np.clip(draws, lo[None], hi[None])
        if self.model == "hill":
            draws[..., 0] = draws[..., 0] - _log_sig(draws[..., 2] * (anchor[None] - draws[..., 1]))
        out = np.empty_like(draws)
        zero = self.params[:, 0] <= 0
        out[..., 0] = np.where(zero, 0.0, np.exp(np.clip(draws[..., 0], -700.0, 700.0)))
        if self.model == "power":
            out[..., 1] = draws[..., 1]
        else:
            out[..., 1] = np.exp(np.clip(draws[..., 1], -700.0, 700.0))
            out[..., 2] = draws[..., 2]
        return out

    def theta(self) -> np.ndarray:
        """Parameters in the fitted parametrization (log-scale level)."""
        with np.errstate(divide="ignore"):
            if self.model == "power":
                return np.column_stack([np.log(np.maximum(self.params[:, 0], 1e-300)), self.params[:, 1]])
            return np.column_stack([np.log(np.maximum(self.params[:, 0], 1e-300)), np.log(self.params[:, 1]), self.params[:, 2]])

    def to_frame(self) -> pd.DataFrame:
        """Keys + parameters + diagnostics, one row per campaign (for display and export)."""
        names = ["a", "k"] if self.model == "power" else ["vmax", "ec50", "h"]
        out = self.keys.copy()
        for j, name in enumerate(names):
            out[name] = self.params[:, j]
        return pd.concat([out, self.diagnostics.drop(columns=[c for c in KEY if c in self.diagnostics.columns])], axis=1)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _bc(idx, w, n):
    return np.bincount(idx, weights=w, minlength=n)


def fit_curves(
    performance: pd.DataFrame,
    model: str = "power",
    *,
    entity_type: str | None = "campaign",
    min_days: int = 14,
    min_spend_ratio: float = 1.5,
    half_life_days: float | None = None,
) -> CurveSet:
    """Fit one response curve per campaign from daily spend and conversion value.

    ``min_days``: days with spend and value a campaign needs for its own slope; ``min_spend_ratio``:
    the max/min ratio of its daily spend needed to identify the slope (a flat spend gives no
    curve). Others get the pooled slope (diagnostics ``pooled=True`` and a warning).
    ``half_life_days`` weights recent days more (None = equal weights).
    Raises `CurveFitError` for a single day of data, all-zero value, negative/NaN input.
    """
    if model not in ("power", "hill"):
        raise ValueError(f"model must be 'power' or 'hill', got {model!r}")
    if min_days < 3:
        raise ValueError("min_days must be at least 3 (two parameters plus one degree of freedom)")
    keys, daily = campaign_daily(performance, entity_type)
    if daily["date"].nunique() < 2:
        raise CurveFitError(
            f"performance data covers a single day ({daily['date'].iloc[0].date()}); response curves need "
            "daily history (at least 2 days, ideally several weeks)"
        )
    if float(daily["conversion_value"].sum()) <= 0:
        raise CurveFitError("conversion_value is zero on every row: there is no value to fit a response curve to")
    if float(daily["spend"].sum()) <= 0:
        raise CurveFitError("spend is zero on every row: there is no spend to fit a response curve to")
    n = len(keys)
    power = _fit_power(keys, daily, n, min_days, min_spend_ratio, half_life_days)
    if model == "power":
        return power
    return _fit_hill(power, min_days)


def _fit_power(keys, daily, n, min_days, min_spend_ratio, half_life_days) -> CurveSet:
    idx_all = daily["idx"].to_numpy()
    s_all = daily["spend"].to_numpy()
    v_all = daily["conversion_value"].to_numpy()
    spend_days = _bc(idx_all, (s_all > 0).astype(float), n)
    n_days = _bc(idx_all, np.ones_like(s_all), n)
    total_spend = _bc(idx_all, s_all, n)
    total_value = _bc(idx_all, v_all, n)

    use = (s_all > 0) & (v_all > 0)
    idx = idx_all[use]
    x = np.log(s_all[use])
    y = np.log(v_all[use])
    if half_life_days:
        age = (daily["date"].max() - daily["date"][use]).dt.days.to_numpy().astype(float)
        w = 0.5 ** (age / float(half_life_days))
    else:
        w = np.ones_like(x)
    npts = _bc(idx, np.ones_like(x), n)
    W0 = _bc(idx, w, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = w * (npts[idx] / W0[idx])  # normalize: weights sum to the number of points per campaign
    W = _bc(idx, w, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        xbar = _bc(idx, w * x, n) / W
        ybar = _bc(idx, w * y, n) / W
        dx = x - xbar[idx]
        dy = y - ybar[idx]
        Sxx = _bc(idx, w * dx * dx, n)
        Sxy = _bc(idx, w * dx * dy, n)
        k_raw = Sxy / Sxx
    smin = pd.Series(s_all[use]).groupby(idx).min().reindex(range(n)).to_numpy()
    spent = s_all > 0  # the evidence: every day with spend, whatever it returned
    omin = pd.Series(s_all[spent]).groupby(idx_all[spent]).min().reindex(range(n)).to_numpy()
    omax = pd.Series(s_all[spent]).groupby(idx_all[spent]).max().reindex(range(n)).to_numpy()
    smax = pd.Series(s_all[use]).groupby(idx).max().reindex(range(n)).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = smax / smin
    enough_days = npts >= min_days
    wide = ratio >= min_spend_ratio
    own = enough_days & wide & (Sxx > 0)
    k_ols = np.clip(np.nan_to_num(k_raw, nan=K_PRIOR[0]), *K_BOUNDS)
    r = y - (ybar - k_ols * xbar)[idx] - k_ols[idx] * x
    rss = _bc(idx, w * r * r, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2_own = rss / np.maximum(npts - 2.0, 1.0)
    # residuals that run in streaks (weeks of high demand, slow drifts) carry less information than
    # independent days: the variances are widened by the AR(1) factors of the level and of the slope
    streak_level, streak_slope = _streak_factors(idx, r, dx, n)
    # the slope is shrunk toward a weak prior (K_PRIOR): a slope the data barely identify stays near
    # the middle of (0, 1) instead of sticking to a bound, where the draws could only fall on one side
    with np.errstate(divide="ignore", invalid="ignore"):
        var_k_data = sigma2_own / Sxx * streak_slope
    k_own, var_k_own = _shrink_slope(np.nan_to_num(k_raw, nan=K_PRIOR[0]), var_k_data)

    # pooled slope: within-campaign estimator over the well-identified campaigns
    pool = own if own.any() else (npts >= 2) & (Sxx > 0)
    if not pool.any():
        raise CurveFitError(
            "no campaign has two days with different spend and positive value: the spend range is too narrow "
            "to fit any response curve"
        )
    k_pool_raw = Sxy[pool].sum() / Sxx[pool].sum()
    rp0 = y - (ybar[idx] + float(np.clip(k_pool_raw, *K_BOUNDS)) * dx)
    rss_pool = _bc(idx, w * rp0 * rp0, n)
    dof = npts[pool].sum() - 2.0 * pool.sum()
    sigma2_pool = float(rss_pool[pool].sum() / dof) if dof > 0 else float(np.nanmedian(sigma2_own[pool]))
    k_pool_arr, var_pool_arr = _shrink_slope(np.array([k_pool_raw]), np.array([sigma2_pool / Sxx[pool].sum()]))
    k_pool, var_k_pool_est = float(k_pool_arr[0]), float(var_pool_arr[0])
    rp = y - (ybar[idx] + k_pool * dx)
    # a pooled campaign's own slope is unknown: its uncertainty is the pooled estimate's error plus
    # the spread of slopes between campaigns (1/12, the variance of a uniform slope, without data)
    k_spread = float(np.var(k_own[own])) if own.sum() >= 3 else K_PRIOR[1]
    var_k_pool = var_k_pool_est + k_spread

    k = np.where(own, k_own, k_pool)
    c = ybar - k * xbar
    resid = y - c[idx] - k[idx] * x
    sigma2 = np.where(own, sigma2_own, sigma2_pool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        smear_own = _bc(idx, w * np.exp(resid), n) / W
        pool_smear = float(np.exp(rp[pool[idx]]).mean())
        var_k = np.where(own, var_k_own, var_k_pool)
        var_c = sigma2 / W * streak_level + xbar**2 * var_k
        cov_ck = -xbar * var_k
    smear = np.where(own, smear_own, pool_smear)
    has_pts = npts > 0
    # the log fit sees only days with value; days with spend that returned nothing count as zero, so the
    # curve predicts the mean over every day with spend (a campaign with a conversion every other day is
    # not credited with its good days' level)
    with np.errstate(divide="ignore", invalid="ignore"):
        valued_share = np.where(spend_days > 0, npts / np.maximum(spend_days, 1.0), 1.0)
    a = np.where(has_pts, np.exp(c) * smear * valued_share, 0.0)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0)
    cov = np.zeros((n, 2, 2))
    cov[:, 0, 0] = np.where(has_pts, var_c, 0.0)
    cov[:, 1, 1] = np.where(has_pts, var_k, 0.0)
    cov[:, 0, 1] = cov[:, 1, 0] = np.where(has_pts, cov_ck, 0.0)
    cov = np.nan_to_num(cov)
    k = np.where(has_pts, k, k_pool)
    params = np.column_stack([a, k])

    lack_of_fit = _lack_of_fit(idx, x, resid, npts, streak_level, n)
    # R² on the value scale over days with spend (zero-value days included)
    pred = _power_value(s_all, a[idx_all], k[idx_all])
    sp = s_all > 0
    vmean = _bc(idx_all[sp], v_all[sp], n) / np.maximum(spend_days, 1)
    ss_res = _bc(idx_all[sp], (v_all[sp] - pred[sp]) ** 2, n)
    ss_tot = _bc(idx_all[sp], (v_all[sp] - vmean[idx_all[sp]]) ** 2, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)

    warnings = _warnings(
        npts, n_days, spend_days, total_spend, total_value, ratio, own, enough_days, wide, k_raw, min_days, min_spend_ratio, k_pool
    )
    last = daily["date"].max()
    recent = (daily["date"] > last - pd.Timedelta(days=7)).to_numpy()
    # Days the data covers inside that week: an export of the last 2 days is not a week with 5 idle days.
    recent_days = min(7, (last - daily["date"].min()).days + 1) if len(daily) else 7
    diag = pd.DataFrame(
        {
            "n_days": n_days.astype(int),
            "points_used": npts.astype(int),
            "zero_value_days": (spend_days - npts).astype(int),
            "observed_min": omin,
            "observed_max": omax,
            "streak_factor": streak_slope,
            "spend_min": smin,
            "spend_max": smax,
            "mean_spend": total_spend / np.maximum(n_days, 1),
            "last7_mean_spend": _bc(idx_all[recent], s_all[recent], n) / recent_days,
            "total_spend": total_spend,
            "total_value": total_value,
            "r2": r2,
            "lack_of_fit_p": lack_of_fit,
            "k_raw": k_raw,
            "pooled": ~own,
            "warnings": warnings,
        }
    )
    return CurveSet("power", keys, params, cov, diag, daily)


#: Weak prior of a power-law slope: mean and variance of a uniform slope on (0, 1).
K_PRIOR = (0.5, 1.0 / 12.0)


def _shrink_slope(k_raw: np.ndarray, var_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(posterior mean within K_BOUNDS, posterior variance) of slopes under the normal prior K_PRIOR.

    Precision weighting: a slope estimated with variance ``var_data`` moves toward 0.5 by the share
    ``var_data / (var_data + 1/12)``; an unidentified one (infinite or NaN variance) is the prior.
    """
    m0, v0 = K_PRIOR
    v = np.where(np.isfinite(var_data) & (var_data > 0), var_data, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = 1.0 / v + 1.0 / v0
        mean = (np.where(np.isfinite(v), k_raw / v, 0.0) + m0 / v0) / prec
    return np.clip(mean, *K_BOUNDS), 1.0 / prec


#: Days per spend bin of the lack-of-fit test, and the most bins (at least 3 are needed: 2 parameters).
LACK_OF_FIT_DAYS_PER_BIN = 5
LACK_OF_FIT_MAX_BINS = 6


def _lack_of_fit(idx: np.ndarray, x: np.ndarray, resid: np.ndarray, npts: np.ndarray, streak: np.ndarray,
                 n: int) -> np.ndarray:
    """Per campaign, the p-value of the classical lack-of-fit F test of the curve's form: its days are
    cut into bins of similar spend, and the bins' mean residuals (the pattern the curve misses) are
    weighed against the scatter within the bins (the noise no curve could explain). A noisy campaign
    whose curve is right keeps a high p-value however low its R²; a wrong form (an S-shape, a hard
    ceiling read as a power law) gets a small one. Bin means of days in streaks vary more than
    independent days would, so F is divided by the streak factor. NaN with too few days for 3 bins."""
    bins = np.minimum(npts // LACK_OF_FIT_DAYS_PER_BIN, LACK_OF_FIT_MAX_BINS).astype(int)
    order = np.lexsort((x, idx))
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=start[1:])
    i_sorted = idx[order]
    pos = np.arange(idx.size) - start[i_sorted]
    b = np.zeros(idx.size, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b[order] = (pos * bins[i_sorted]) // np.maximum(npts[i_sorted], 1).astype(np.int64)
    cell = idx.astype(np.int64) * (LACK_OF_FIT_MAX_BINS + 1) + b
    cells = n * (LACK_OF_FIT_MAX_BINS + 1)
    nb = np.bincount(cell, minlength=cells).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_b = np.bincount(cell, weights=resid, minlength=cells) / nb
    mean_b = np.nan_to_num(mean_b)
    ss_lof = _bc(np.repeat(np.arange(n), LACK_OF_FIT_MAX_BINS + 1), nb * mean_b**2, n)
    ss_pe = _bc(idx, (resid - mean_b[cell]) ** 2, n)
    df_lof, df_pe = bins - 2.0, npts - bins
    ok = (bins >= 3) & (df_pe > 0) & (ss_pe > 0)
    from scipy.stats import f as f_dist

    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (ss_lof / df_lof) / (ss_pe / df_pe) / np.maximum(streak, 1.0)
        p = f_dist.sf(stat, np.maximum(df_lof, 1.0), np.maximum(df_pe, 1.0))
    return np.where(ok, p, np.nan)


#: Largest AR(1) correlation trusted when widening variances (a factor of at most 39).
MAX_STREAK_CORRELATION = 0.95


def _streak_factors(idx: np.ndarray, resid: np.ndarray, dx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per campaign, the variance inflation of the level and of the slope under AR(1) residuals.

    With lag-1 correlation ``rho`` of the residuals and ``phi`` of the (centred) log spend, in date
    order, the variance of a mean grows by ``(1 + rho) / (1 - rho)`` and that of a least-squares
    slope by ``(1 + rho phi) / (1 - rho phi)`` (the classical result for AR(1) errors and regressor).
    Negative correlations are not credited (factor 1). ``idx`` must be sorted by campaign, then date.
    """
    same = np.zeros(idx.size, dtype=bool)
    same[1:] = idx[1:] == idx[:-1]
    prev = np.flatnonzero(same)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = _bc(idx[prev], resid[prev] * resid[prev - 1], n) / _bc(idx, resid * resid, n)
        phi = _bc(idx[prev], dx[prev] * dx[prev - 1], n) / _bc(idx, dx * dx, n)
    rho = np.clip(np.nan_to_num(rho, nan=0.0), 0.0, MAX_STREAK_CORRELATION)
    phi = np.clip(np.nan_to_num(phi, nan=0.0), 0.0, MAX_STREAK_CORRELATION)
    return (1.0 + rho) / (1.0 - rho), (1.0 + rho * phi) / (1.0 - rho * phi)


def _warnings(npts, n_days, spend_days, total_spend, total_value, ratio, own, enough_days, wide, k_raw, min_days, min_ratio, k_pool):
    """Plain-language fit warnings per campaign (loops only over the flagged campaigns)."""
    n = npts.size
    out = [[] for _ in range(n)]
    no_spend = total_spend <= 0
    no_value = (total_spend > 0) & (total_value <= 0)
    no_pts = (npts == 0) & ~no_spend & ~no_value
    few = ~enough_days & (npts > 0)
    narrow = enough_days & ~wide & ~no_spend & ~no_value
    capped = own & ((k_raw < K_BOUNDS[0]) | (k_raw > K_BOUNDS[1]))
    for i in np.flatnonzero(no_spend):
        out[i].append("no spend recorded: the curve is zero (no evidence of response)")
    for i in np.flatnonzero(no_value):
        out[i].append("spend without any conversion value: the curve is zero")
    for i in np.flatnonzero(no_pts):
        out[i].append("no day with both spend and value: the curve is zero")
    for i in np.flatnonzero(few):
        out[i].append(f"too few days with spend and value ({int(npts[i])} < {min_days}): pooled slope k={k_pool:.2f} used")
    for i in np.flatnonzero(narrow):
        out[i].append(f"spend range too narrow to fit (max/min {ratio[i]:.2f} < {min_ratio}): pooled slope k={k_pool:.2f} used")
    for i in np.flatnonzero(capped):
        out[i].append(f"fitted exponent {k_raw[i]:.2f} outside (0, 1): capped to keep the curve concave")
    return ["; ".join(w) for w in out]


def _fit_hill(power: CurveSet, min_days: int) -> CurveSet:
    """Hill curves: own fit (curve_fit, bounded) where the power fit was own; pooled shape otherwise."""
    from scipy.optimize import curve_fit

    daily = power.daily
    n = power.n
    order = np.argsort(daily["idx"].to_numpy(), kind="stable")
    idx_sorted = daily["idx"].to_numpy()[order]
    s_sorted = daily["spend"].to_numpy()[order]
    v_sorted = daily["conversion_value"].to_numpy()[order]
    bounds = np.searchsorted(idx_sorted, np.arange(n + 1))
    params = np.zeros((n, 3))
    cov = np.zeros((n, 3, 3))
    own = ~power.diagnostics["pooled"].to_numpy()
    streak = power.diagnostics["streak_factor"].to_numpy(float) if "streak_factor" in power.diagnostics.columns else np.ones(n)
    fitted = np.zeros(n, dtype=bool)

    def model(s, lv, le, h):
        r = np.power(s / np.exp(le), h)
        return np.exp(lv) * r / (1.0 + r)

    # the search box of every campaign (theta scale), from its days with spend: the own fits search
    # inside it and parameter draws stay inside it (`CurveSet.theta_box`)
    pos = s_sorted > 0
    ip, sp_, vp = idx_sorted[pos], s_sorted[pos], v_sorted[pos]
    cnt = _bc(ip, np.ones(ip.size), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        v_mean = _bc(ip, vp, n) / cnt
        v_max = pd.Series(vp).groupby(ip).max().reindex(range(n)).to_numpy()
        s_min = pd.Series(sp_).groupby(ip).min().reindex(range(n)).to_numpy()
        s_max = pd.Series(sp_).groupby(ip).max().reindex(range(n)).to_numpy()
        box = np.empty((n, 3, 2))
        box[:, 0, 0] = np.log(np.maximum(v_mean, 1e-9)) - 5.0
        box[:, 0, 1] = np.log(np.maximum(v_max, 1e-9)) + 12.0
        box[:, 1, 0] = np.log(s_min) - 3.0
        box[:, 1, 1] = np.log(s_max * 1e3)
    box[:, 2, 0], box[:, 2, 1] = H_BOUNDS

    for i in np.flatnonzero(own):  # one scipy fit per campaign (loop over campaigns, not rows)
        s = s_sorted[bounds[i] : bounds[i + 1]]
        v = v_sorted[bounds[i] : bounds[i + 1]]
        m = s > 0
        s, v = s[m], v[m]
        p0 = [np.log(max(v.max(), 1e-9) * 2.0), np.log(np.median(s)), 0.8]
        lb, ub = box[i, :, 0], box[i, :, 1]
        p0 = np.clip(p0, np.add(lb, 1e-6), np.subtract(ub, 1e-6))
        try:
            popt, pcov = curve_fit(model, s, v, p0=p0, bounds=(lb, ub), maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        if not np.all(np.isfinite(pcov)):
            pcov = np.diag(np.square(np.asarray(popt) * 0.5 + 0.1))
        params[i] = [np.exp(popt[0]), np.exp(popt[1]), popt[2]]
        cov[i] = pcov * streak[i]  # residuals in streaks: as for the power fit
        fitted[i] = True
    diag = power.diagnostics.copy()
    med_spend = diag["mean_spend"].to_numpy()
    if fitted.any():
        h_pool = float(np.median(params[fitted, 2]))
        lr = np.log(params[fitted, 1] / np.maximum(med_spend[fitted], 1e-12))
        lr_pool = float(np.median(lr))
        var_h = float(np.var(params[fitted, 2])) + 1e-4
        var_lr = float(np.var(lr)) + 1e-2
    else:  # no campaign can carry its own Hill fit: shape from the pooled power-law slope
        h_pool = float(np.clip(power.params[0, 1], *H_BOUNDS))
        lr_pool, var_h, var_lr = np.log(3.0), 0.05, 1.0
    rest = ~fitted
    ec = np.maximum(med_spend, 1e-9) * np.exp(lr_pool)
    g = _hill_value(s_sorted, 1.0, ec[idx_sorted], h_pool)
    sgg = _bc(idx_sorted, g * g, n)
    sgv = _bc(idx_sorted, g * v_sorted, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        vmax = np.where(sgg > 0, sgv / sgg, 0.0)
        res = v_sorted - vmax[idx_sorted] * g
        sig2 = _bc(idx_sorted, res * res, n) / np.maximum(_bc(idx_sorted, (s_sorted > 0).astype(float), n) - 1.0, 1.0)
        var_lv = np.where(vmax > 0, sig2 / (vmax**2 * sgg), 0.0)
    params[rest, 0] = vmax[rest]
    params[rest, 1] = ec[rest]
    params[rest, 2] = h_pool
    cov[rest] = 0.0
    cov[rest, 0, 0] = np.nan_to_num(var_lv[rest])
    cov[rest, 1, 1] = var_lr
    cov[rest, 2, 2] = var_h
    zero = power.params[:, 0] <= 0
    params[zero, 0] = 0.0
    cov[zero] = 0.0
    pred = _hill_value(s_sorted, params[idx_sorted, 0], params[idx_sorted, 1], params[idx_sorted, 2])
    sp = s_sorted > 0
    vmean = _bc(idx_sorted[sp], v_sorted[sp], n) / np.maximum(_bc(idx_sorted[sp], np.ones(sp.sum()), n), 1)
    ss_res = _bc(idx_sorted[sp], (v_sorted[sp] - pred[sp]) ** 2, n)
    ss_tot = _bc(idx_sorted[sp], (v_sorted[sp] - vmean[idx_sorted[sp]]) ** 2, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        diag["r2"] = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    newly_pooled = own & ~fitted
    diag["pooled"] = rest
    w = diag["warnings"].to_numpy(dtype=object).copy()
    for i in np.flatnonzero(newly_pooled):
        w[i] = (w[i] + "; " if w[i] else "") + "Hill fit did not converge: pooled shape used"
    diag["warnings"] = w
    box[~np.isfinite(box)] = np.nan  # campaigns without a day of spend: the box is the point itself
    return CurveSet("hill", power.keys, params, np.nan_to_num(cov), diag, power.daily, box)


# --------------------------------------------------------------------------------------------
# Value source
# --------------------------------------------------------------------------------------------


def attribution_adjusted(
    performance: pd.DataFrame,
    channel_value: Mapping[str, float],
    campaign_channel: Mapping[str, str] | None = None,
    *,
    shares: bool = False,
    total_value: float | None = None,
) -> pd.DataFrame:
    """The performance frame with ``conversion_value`` re-weighted to attribution-credited value.

    Each campaign belongs to a channel: ``campaign_channel[external_id]`` (or
    ``campaign_channel["platform:external_id"]``) when given, else its ``platform`` (meta, google...).
    Every row of channel c (totals and segments alike, so daily shapes are kept) is multiplied by
    ``credited_c / reported_c``, where ``reported_c`` is the channel's platform-reported value in the
    totals rows of each account's top entity level (ad sets do not count again on top of campaigns). Afterwards each channel's total equals its credited value.

    ``channel_value`` is credited value per channel, or with ``shares=True`` the share of value per
    channel (normalized over the channels present), multiplied by ``total_value`` (default: the
    reported total of those channels, i.e. the value is redistributed, not changed in sum).
    Raises `CurveFitError` for a channel in the frame without credit, or with credit but no reported
    value to re-weight.
    """
    tot = top_level_rows(totals_frame(performance, entity_type=None))  # campaigns, not also their ad sets
    ch_all = _channels(performance, campaign_channel)
    ch_tot = _channels(tot, campaign_channel)
    reported = tot.groupby(ch_tot.to_numpy())["conversion_value"].sum()
    credit = {str(k): float(v) for k, v in channel_value.items()}
    missing = sorted(set(reported.index) - set(credit))
    if missing:
        raise CurveFitError(f"no attributed value for channel(s) {missing}; got credit for {sorted(credit)}")
    if any(v < 0 or not np.isfinite(v) for v in credit.values()):
        raise CurveFitError("attributed value per channel must be finite and non-negative")
    present = list(reported.index)
    if shares:
        sh = pd.Series({c: credit[c] for c in present})
        if sh.sum() <= 0:
            raise CurveFitError("attribution shares of the channels in the performance frame sum to zero")
        total = float(reported.sum()) if total_value is None else float(total_value)
        target = sh / sh.sum() * total
    else:
        target = pd.Series({c: credit[c] for c in present})
    no_rep = [c for c in present if reported[c] <= 0 and target[c] > 0]
    if no_rep:
        raise CurveFitError(f"channel(s) {no_rep} have attributed value but no reported conversion value to re-weight")
    factor = (target / reported.where(reported > 0)).fillna(0.0)
    out = performance.copy()
    out["conversion_value"] = pd.to_numeric(out["conversion_value"], errors="coerce").astype(float) * ch_all.map(factor).fillna(1.0).to_numpy()
    return out


def _channels(frame: pd.DataFrame, campaign_channel: Mapping[str, str] | None) -> pd.Series:
    plat = frame["platform"].fillna("").astype(str)
    if not campaign_channel:
        return plat.reset_index(drop=True)
    ext = frame["external_id"].fillna("").astype(str)
    both = (plat + ":" + ext).map(campaign_channel)
    by_id = ext.map(campaign_channel)
    return both.fillna(by_id).fillna(plat).astype(str).reset_index(drop=True)
