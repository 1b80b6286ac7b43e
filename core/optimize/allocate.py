"""Exact budget allocation over concave response curves (water filling).

Maximize ``sum f_i(b_i)`` subject to ``sum b_i = B`` and ``lo_i <= b_i <= hi_i``. For concave,
increasing ``f_i`` the KKT conditions say: there is one multiplier ``lam`` (the marginal ROAS of the
last unit of money) with ``f_i'(b_i) = lam`` for every campaign strictly inside its bounds, and
``b_i = clip(g_i(lam), lo_i, hi_i)`` where ``g_i`` inverts the marginal return. The total
``sum_i clip(g_i(lam))`` falls monotonically in ``lam``, so a bracketed root search on ``log lam``
(bisection with Brent's acceleration, `scipy.optimize.brentq`) finds the optimum; each evaluation
is one vectorized pass over all campaigns. A final Newton-type step makes ``sum b_i == B`` to
rounding.

Bounds come from per-campaign min/max budgets, the max change % from today's budget and locks
(`build_bounds`). Constraints that cannot hold raise `InfeasibleError` naming the constraint.

Second objectives: `allocate_for_target_roas` (the largest budget, i.e. the smallest cut, whose
optimally allocated ROAS reaches a target) and `allocate_for_marginal_floor` (the largest budget
whose marginal ROAS stays at or above a floor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from scipy.optimize import brentq

from core.optimize.currency import require_one_currency


class Curves(Protocol):
    """What the allocator needs from a set of concave response curves (e.g. `core.response.CurveSet`)."""

    @property
    def n(self) -> int: ...

    def predict(self, spend) -> np.ndarray: ...

    def marginal(self, spend) -> np.ndarray: ...

    def inverse_marginal(self, lam: float) -> np.ndarray: ...


class InfeasibleError(ValueError):
    """The constraints admit no budget vector; ``constraint`` names the one that fails."""

    def __init__(self, message: str, constraint: str):
        super().__init__(message)
        self.constraint = constraint


@dataclass(frozen=True)
class Bounds:
    """Per-campaign budget bounds and a plain description of what produced them."""

    lo: np.ndarray
    hi: np.ndarray
    lo_sources: str = "min budgets"
    hi_sources: str = "max budgets"

    def __post_init__(self):
        lo = np.asarray(self.lo, dtype=float)
        hi = np.asarray(self.hi, dtype=float)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise ValueError(f"lo and hi must be 1-d arrays of the same length, got {lo.shape} and {hi.shape}")
        if np.isnan(lo).any() or np.isnan(hi).any() or (lo < 0).any():
            raise ValueError("budget bounds must be numbers and lower bounds non-negative")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise InfeasibleError(f"campaign #{i}: lower bound {lo[i]:g} is above upper bound {hi[i]:g}", "bounds")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


def _fmt(x: float) -> str:
    """A budget in a message, every digit down to micro-units kept (a KWD bound of 1.234 is never "1.23")."""
    return f"{x:,.6f}".rstrip("0").rstrip(".") if np.isfinite(x) else "unlimited"


def build_bounds(
    n: int,
    *,
    current=None,
    min_budget=0.0,
    max_budget=np.inf,
    max_change: float | None = None,
    locked=None,
    labels: list[str] | None = None,
) -> Bounds:
    """Bounds ``lo <= b <= hi`` from min/max budgets, max change from today's budget and locks.

    ``max_change`` is a fraction (0.3 = at most 30% up or down from ``current``). A locked campaign
    keeps today's budget exactly (the lock wins over min/max). Raises `InfeasibleError` naming the
    campaign and the two constraints that contradict each other.
    """
    names = labels if labels is not None else [f"#{i}" for i in range(n)]
    lo_min = np.broadcast_to(np.asarray(min_budget, dtype=float), (n,)).copy()
    hi_max = np.broadcast_to(np.asarray(max_budget, dtype=float), (n,)).copy()
    if np.isnan(lo_min).any() or (lo_min < 0).any():
        raise ValueError("min budgets must be non-negative numbers")
    if np.isnan(hi_max).any() or (hi_max < 0).any():
        raise ValueError("max budgets must be non-negative numbers")
    bad = np.flatnonzero(lo_min > hi_max)
    if bad.size:
        i = int(bad[0])
        raise InfeasibleError(
            f"campaign {names[i]}: min budget {_fmt(lo_min[i])} is above its max budget {_fmt(hi_max[i])}", "min/max budget"
        )
    lock = np.zeros(n, dtype=bool) if locked is None else np.broadcast_to(np.asarray(locked, dtype=bool), (n,))
    cur = None
    if current is not None:
        cur = np.broadcast_to(np.asarray(current, dtype=float), (n,))
        if np.isnan(cur).any() or (cur < 0).any():
            raise ValueError("today's budgets must be non-negative numbers")
    if (max_change is not None or lock.any()) and cur is None:
        raise ValueError("max change and locks need today's budgets (current=...)")
    lo, hi = lo_min.copy(), hi_max.copy()
    lo_src, hi_src = ["min budgets"], ["max budgets"]
    if max_change is not None:
        if not 0 <= max_change:
            raise ValueError(f"max change must be a non-negative fraction, got {max_change}")
        lo_mc = cur * max(0.0, 1.0 - max_change)
        hi_mc = cur * (1.0 + max_change)
        pct = f"{max_change * 100:g}%"
        bad = np.flatnonzero((lo_min > hi_mc) & ~lock)
        if bad.size:
            i = int(bad[0])
            raise InfeasibleError(
                f"campaign {names[i]}: min budget {_fmt(lo_min[i])} is above today's budget {_fmt(cur[i])} + max change "
                f"{pct} = {_fmt(hi_mc[i])}",
                "min budget vs max change",
            )
        bad = np.flatnonzero((hi_max < lo_mc) & ~lock)
        if bad.size:
            i = int(bad[0])
            raise InfeasibleError(
                f"campaign {names[i]}: max budget {_fmt(hi_max[i])} is below today's budget {_fmt(cur[i])} - max change "
                f"{pct} = {_fmt(lo_mc[i])}",
                "max budget vs max change",
            )
        lo = np.maximum(lo, lo_mc)
        hi = np.minimum(hi, hi_mc)
        lo_src.append(f"max change {pct} from today")
        hi_src.append(f"max change {pct} from today")
    if lock.any():
        lo = np.where(lock, cur, lo)
        hi = np.where(lock, cur, hi)
        lo_src.append(f"{int(lock.sum())} locked campaign(s)")
        hi_src.append(f"{int(lock.sum())} locked campaign(s)")
    return Bounds(lo, hi, " and ".join(lo_src), " and ".join(hi_src))


@dataclass(frozen=True)
class Allocation:
    """An optimal budget vector and what it predicts.

    ``lam`` is the marginal ROAS shared by every campaign strictly inside its bounds (the value of
    one more unit of money); ``at_lo``/``at_hi`` mark campaigns held by a bound.
    """

    budgets: np.ndarray
    values: np.ndarray
    lam: float
    lo: np.ndarray
    hi: np.ndarray
    objective: str
    note: str = ""

    @property
    def total_budget(self) -> float:
        return float(self.budgets.sum())

    @property
    def total_value(self) -> float:
        return float(self.values.sum())

    @property
    def roas(self) -> float:
        return self.total_value / self.total_budget if self.total_budget > 0 else float("nan")

    @property
    def at_lo(self) -> np.ndarray:
        return self.budgets <= self.lo * (1 + 1e-12) + 1e-12

    @property
    def at_hi(self) -> np.ndarray:
        return self.budgets >= self.hi * (1 - 1e-12) - 1e-12


def _resolve_bounds(curves: Curves, bounds: Bounds | None) -> Bounds:
    require_one_currency(curves, "the campaigns to allocate")  # a curve set with keys: one currency only
    if bounds is None:
        return Bounds(np.zeros(curves.n), np.full(curves.n, np.inf))
    if bounds.lo.shape[0] != curves.n:
        raise ValueError(f"bounds are for {bounds.lo.shape[0]} campaigns but there are {curves.n} curves")
    return bounds


def _spend_at(curves: Curves, t: float, lo, hi) -> np.ndarray:
    return np.clip(curves.inverse_marginal(float(np.exp(t))), lo, hi)


def _start_t(curves: Curves, lo, hi, budget_hint: float) -> float:
    guess = np.clip(np.full(curves.n, budget_hint / max(curves.n, 1)), np.maximum(lo, 1e-9), np.where(np.isfinite(hi), np.maximum(hi, 1e-9), np.inf))
    m = curves.marginal(guess)
    m = m[np.isfinite(m) & (m > 0)]
    return float(np.log(np.median(m))) if m.size else 0.0


def _bracket(fun, t0: float, max_steps: int = 200) -> tuple[float, float] | None:
    """(t_a, t_b) with fun(t_a) >= 0 >= fun(t_b), for ``fun`` non-increasing in t; None if none found."""
    f0 = fun(t0)
    if f0 == 0:
        return t0, t0
    step = 1.0
    prev = t0
    for _ in range(max_steps):
        t = prev + step if f0 > 0 else prev - step
        if abs(t) > 700:  # exp(t) would leave the floating-point range
            t = 700.0 if t > 0 else -700.0
        ft = fun(t)
        if (ft <= 0) if f0 > 0 else (ft >= 0):
            return (prev, t) if f0 > 0 else (t, prev)
        prev = t
        step *= 2.0
        if abs(t) >= 700:
            break
    return None


def _polish(curves: Curves, b: np.ndarray, total: float, lo, hi) -> np.ndarray:
    """Make ``sum b == total`` by moving the tiny residual onto the campaigns inside their bounds."""
    for _ in range(5):
        r = total - b.sum()
        if abs(r) <= 1e-12 * max(total, 1.0):
            break
        free = (b > lo) & (b < hi) if r < 0 else (b < hi) & (b >= lo)
        wgt = np.where(free, np.maximum(b, 1e-12), 0.0)
        if wgt.sum() <= 0:
            break
        b = np.clip(b + r * wgt / wgt.sum(), lo, hi)
    return b


def allocate(curves: Curves, total_budget: float, bounds: Bounds | None = None) -> Allocation:
    """The budget vector that maximizes total predicted value with ``sum b == total_budget``.

    Exact (to floating point) for concave increasing curves. Raises `InfeasibleError` when the
    total budget is below the sum of the lower bounds or above the sum of the upper bounds.
    """
    B = float(total_budget)
    if not np.isfinite(B) or B < 0:
        raise ValueError(f"total budget must be a non-negative number, got {total_budget}")
    bd = _resolve_bounds(curves, bounds)
    lo, hi = bd.lo, bd.hi
    slo, shi = float(lo.sum()), float(hi.sum())
    tol = 1e-9 * max(B, 1.0)
    if B < slo - tol:
        raise InfeasibleError(
            f"total budget {_fmt(B)} is below the sum of minimum budgets {_fmt(slo)} ({bd.lo_sources})", "total budget vs minimum budgets"
        )
    if B > shi + tol:
        raise InfeasibleError(
            f"total budget {_fmt(B)} is above the sum of maximum budgets {_fmt(shi)} ({bd.hi_sources})", "total budget vs maximum budgets"
        )
    if B <= slo + tol or B >= shi - tol:
        b = lo.copy() if B <= slo + tol else hi.copy()
        return _result(curves, _polish(curves, b, B, lo, hi), lo, hi, f"maximize value at total budget {_fmt(B)}")

    def excess(t):
        return float(_spend_at(curves, t, lo, hi).sum() - B)

    br = _bracket(excess, _start_t(curves, lo, hi, B))
    note = ""
    if br is None:
        # the campaigns with a positive curve are all at their maximum: the rest of the money has
        # no predicted return; it goes to zero-response campaigns in proportion to their headroom
        pos = curves.predict(np.maximum(hi, 1.0)) > 0
        b = np.where(pos, hi, lo)
        room = np.where(~pos, np.where(np.isfinite(hi), hi - lo, 1.0), 0.0)
        b = b + (B - b.sum()) * room / room.sum()
        note = "campaigns with a response are at their maximum; the rest of the budget has no predicted return"
        return _result(curves, _polish(curves, np.clip(b, lo, hi), B, lo, hi), lo, hi, f"maximize value at total budget {_fmt(B)}", note)
    ta, tb = br
    t = ta if ta == tb else brentq(excess, ta, tb, xtol=1e-14, rtol=8.9e-16, maxiter=500)
    b = _polish(curves, _spend_at(curves, t, lo, hi), B, lo, hi)
    return _result(curves, b, lo, hi, f"maximize value at total budget {_fmt(B)}", note, lam=float(np.exp(t)))


def _result(curves, b, lo, hi, objective, note="", lam=None) -> Allocation:
    values = curves.predict(b)
    if lam is None:
        m = curves.marginal(b)
        inside = (b > lo) & (b < hi) & np.isfinite(m)
        lam = float(np.median(m[inside])) if inside.any() else float("nan")
    return Allocation(b, values, lam, lo, hi, objective, note)


def allocate_for_marginal_floor(curves: Curves, floor: float, bounds: Bounds | None = None) -> Allocation:
    """The largest budget whose marginal ROAS stays at or above ``floor``, optimally allocated.

    Each campaign spends until its marginal return falls to ``floor`` (within its bounds).
    """
    floor = float(floor)
    if not floor > 0:
        raise ValueError(f"marginal ROAS floor must be positive, got {floor}")
    bd = _resolve_bounds(curves, bounds)
    b = np.clip(curves.inverse_marginal(floor), bd.lo, bd.hi)
    if not np.isfinite(b).all():
        raise InfeasibleError("a campaign without a maximum budget never reaches the marginal ROAS floor", "maximum budgets")
    below = curves.marginal(np.maximum(bd.lo, 1e-12)) < floor
    note = f"{int((below & (bd.lo > 0)).sum())} campaign(s) are held at their minimum below the floor" if (below & (bd.lo > 0)).any() else ""
    return _result(curves, b, bd.lo, bd.hi, f"largest budget with marginal ROAS >= {floor:g}", note, lam=floor)


def allocate_for_target_roas(curves: Curves, target_roas: float, bounds: Bounds | None = None, *,
                             describe: Callable[[float], str] | None = None) -> Allocation:
    """The largest total budget (the smallest cut) whose optimally allocated ROAS reaches ``target_roas``.

    Along the water-filling path (every campaign at the same marginal ROAS ``lam``) total ROAS falls
    as the budget grows; we search ``lam`` for the point where total ROAS equals the target. If the
    maximum budgets keep ROAS above the target, they are returned (and the note says so). Raises
    `InfeasibleError` when even the minimum budgets fall short of the target. ``describe`` words a
    return-per-money ratio for messages (default ``ROAS 2.5``; a count metric says cost per unit).
    """
    describe = describe or (lambda ratio: f"ROAS {ratio:.4g}")
    target = float(target_roas)
    if not target > 0:
        raise ValueError(f"target ROAS must be positive, got {target_roas}")
    bd = _resolve_bounds(curves, bounds)
    lo, hi = bd.lo, bd.hi
    objective = f"largest budget with ROAS >= {target:g}"

    def roas_gap(t):
        b = _spend_at(curves, t, lo, hi)
        s = b.sum()
        return float(curves.predict(b).sum() / s - target) if s > 0 else np.inf

    if np.isfinite(hi).all() and hi.sum() > 0:
        r_hi = float(curves.predict(hi).sum() / hi.sum())
        if r_hi >= target:
            return _result(curves, hi.copy(), lo, hi, objective, f"maximum budgets already give ROAS {r_hi:.2f} >= target")
    if lo.sum() > 0:
        r_lo = float(curves.predict(lo).sum() / lo.sum())
        if r_lo < target:
            raise InfeasibleError(
                f"the target {describe(target)} is out of reach: even the minimum budgets {_fmt(lo.sum())} ({bd.lo_sources}) "
                f"predict {describe(r_lo)}",
                "target vs minimum budgets",
            )
    # roas_gap rises with t (a higher marginal ROAS means less money); bracket its negation
    br = _bracket(lambda t: -roas_gap(t), _start_t(curves, lo, hi, max(lo.sum(), 1.0) * 2.0))
    if br is None:
        raise InfeasibleError(f"no budget reaches the target {describe(target)}", "target")
    ta, tb = br
    t = ta if ta == tb else brentq(roas_gap, ta, tb, xtol=1e-13, rtol=8.9e-16, maxiter=500)
    if roas_gap(t) < -1e-9 * target:
        t = tb
    b = _spend_at(curves, t, lo, hi)
    return _result(curves, b, lo, hi, objective, lam=float(np.exp(t)))
