"""What the optimizer is asked: one typed objective, the settings, the per-campaign limits and today's state.

`recommend` takes these objects instead of a long list of keywords, so a contradictory request
(a marginal floor *and* a total budget to split) cannot be written down, and a scheduled run
(autopilot) can store and replay exactly what it asked:

* the objective is one of `FixedBudget` (best split of a total), `TargetRoas` (the largest budget
  that still reaches a ROAS, optionally capped) or `MarginalFloor` (spend while the next unit
  returns at least ``floor``);
* `RecommendSettings` holds everything else that shapes the answer (max change, confidence
  threshold, how proposals beyond the observed spend are treated, curve model, draws, seed, the
  metric, the entity level); it is frozen and validated once, here;
* `Limits` holds per-campaign min/max budgets and locks;
* `AccountState` holds today's budgets, bids and statuses (e.g. `current_budgets_from_entities`).

Each class validates itself in ``__post_init__`` and raises `SettingsError` (a ValueError) naming
the field. ``to_dict``/``from_dict`` round-trip through JSON for storage.

>>> FixedBudget(total=1500.0).describe()
'best split of a total budget of 1,500.00'
>>> RecommendSettings(max_change=0.5).extrapolation
'cap'
>>> TargetRoas(target=-1)
Traceback (most recent call last):
...
core.optimize.settings.SettingsError: target ROAS must be a positive number, got -1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Union

import pandas as pd

from core.money import format_money

__all__ = [
    "SettingsError", "FixedBudget", "TargetRoas", "MarginalFloor", "Objective", "RecommendSettings", "Limits",
    "AccountState", "EXTRAPOLATION_MODES", "CURVE_MODELS", "objective_from_dict",
]

#: How a proposal beyond the observed spend (plus the margin) is treated: held at the edge of the
#: evidence ("cap"), or allowed and marked "extrapolated" with a confidence that says so ("mark").
EXTRAPOLATION_MODES = ("cap", "mark")
CURVE_MODELS = ("power", "hill")
METRICS = ("value", "conversions", "clicks", "auto")
LEVELS = ("auto", "campaign", "ad_set", "ad_group")


class SettingsError(ValueError):
    """An objective, setting or limit that cannot be used; the message names the field."""


def _positive(value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{what} must be a positive number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise SettingsError(f"{what} must be a positive number, got {value!r}")
    return x


def _fraction(value: Any, what: str, *, upper: float | None = None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{what} must be a non-negative number, got {value!r}") from None
    if not (math.isfinite(x) and x >= 0) or (upper is not None and x > upper):
        rng = f"between 0 and {upper:g}" if upper is not None else "a non-negative number"
        raise SettingsError(f"{what} must be {rng}, got {value!r}")
    return x


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FixedBudget:
    """Split ``total`` (a daily amount) to earn the most; None = today's total."""

    total: float | None = None
    kind: str = field(default="fixed_budget", init=False)

    def __post_init__(self):
        if self.total is not None:
            object.__setattr__(self, "total", _fraction(self.total, "total budget"))

    def describe(self, currency: str | None = None) -> str:
        """In words, the total at ``currency``'s precision (KWD 1,234.567)."""
        return "best split of today's total budget" if self.total is None else \
            f"best split of a total budget of {format_money(self.total, currency)}"


@dataclass(frozen=True, kw_only=True)
class TargetRoas:
    """The largest budget whose (optimally split) ROAS still reaches ``target``; at most ``cap`` when given."""

    target: float
    cap: float | None = None
    kind: str = field(default="target_roas", init=False)

    def __post_init__(self):
        object.__setattr__(self, "target", _positive(self.target, "target ROAS"))
        if self.cap is not None:
            object.__setattr__(self, "cap", _fraction(self.cap, "budget cap"))

    def describe(self, currency: str | None = None) -> str:
        """In words, the cap at ``currency``'s precision."""
        capped = f", spending at most {format_money(self.cap, currency)}" if self.cap is not None else ""
        return f"largest budget that reaches ROAS {self.target:g}{capped}"


@dataclass(frozen=True, kw_only=True)
class MarginalFloor:
    """Spend on each campaign while one more unit of money returns at least ``floor``."""

    floor: float
    kind: str = field(default="marginal_floor", init=False)

    def __post_init__(self):
        object.__setattr__(self, "floor", _positive(self.floor, "marginal ROAS floor"))

    def describe(self, currency: str | None = None) -> str:
        return f"largest budget whose marginal ROAS stays at or above {self.floor:g}"


Objective = Union[FixedBudget, TargetRoas, MarginalFloor]
_OBJECTIVES = {c.__dataclass_fields__["kind"].default: c for c in (FixedBudget, TargetRoas, MarginalFloor)}


def objective_to_dict(objective: Objective) -> dict:
    return asdict(objective)


def objective_from_dict(data: Mapping) -> Objective:
    """The objective stored by ``asdict`` (its ``kind`` says which)."""
    d = dict(data)
    kind = d.pop("kind", None)
    if kind not in _OBJECTIVES:
        raise SettingsError(f"objective kind must be one of {sorted(_OBJECTIVES)}, got {kind!r}")
    return _OBJECTIVES[kind](**d)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecommendSettings:
    """Everything besides the objective that shapes a recommendation.

    Parameters
    ----------
    max_change : float or None, default 0.3
        Largest budget move per campaign, as a fraction of today's budget (None = no limit).
    min_change : float, default 0.01
        Smaller budget moves (fraction of today's) are not proposed; the rest of the plan is re-solved
        with those campaigns held, so the proposal still spends exactly its total.
    confidence_threshold : float, default 80
        Changes at or above this confidence (0-100) are marked for auto-approval.
    min_confidence : float, default 50
        A budget move the curves favour less than this (model confidence, 0-100) is not proposed:
        the campaign keeps today's budget and the rest of the plan is re-solved around it.
    guide_roas : float or None
        The ROAS bids and targeting advice aim at when the objective has no target of its own.
    extrapolation : {"cap", "mark"}, default "cap"
        A budget beyond the observed daily spend (widened by ``extrapolation_margin``) is held at the
        edge of the evidence ("cap"), or allowed and marked extrapolated ("mark"), its confidence
        then at most ``extrapolated_confidence_cap``.
    extrapolation_margin : float, default 0.2
        How far beyond the observed spend still counts as evidence (0.2: 20 % above the highest
        day, 1/1.2 of the lowest).
    extrapolated_confidence_cap : float, default 60
        The highest confidence an extrapolated change can show.
    curve_model : {"power", "hill"}, default "power"
    n_draws : int, default 400
        Parameter draws behind every confidence.
    seed : int, default 0
    metric : {"auto", "value", "conversions", "clicks"}, default "auto"
        What the curves predict: conversion value, or conversions / clicks when the data has no value
        ("auto" picks the first the data has, in that order).
    level : {"auto", "campaign", "ad_set", "ad_group"}, default "campaign"
        The entity level optimized: campaigns (ad set / ad group rows rolled up when there are no
        campaign rows), a child level, or "auto": where the account's budgets live.
    """

    max_change: float | None = 0.3
    min_change: float = 0.01
    confidence_threshold: float = 80.0
    min_confidence: float = 50.0
    guide_roas: float | None = None
    extrapolation: str = "cap"
    extrapolation_margin: float = 0.2
    extrapolated_confidence_cap: float = 60.0
    curve_model: str = "power"
    n_draws: int = 400
    seed: int = 0
    metric: str = "auto"
    level: str = "campaign"

    def __post_init__(self):
        if self.max_change is not None:
            object.__setattr__(self, "max_change", _fraction(self.max_change, "max change"))
        object.__setattr__(self, "min_change", _fraction(self.min_change, "min change", upper=1.0))
        object.__setattr__(self, "confidence_threshold", _fraction(self.confidence_threshold, "confidence threshold", upper=100.0))
        object.__setattr__(self, "min_confidence", _fraction(self.min_confidence, "min confidence", upper=100.0))
        if self.guide_roas is not None:
            object.__setattr__(self, "guide_roas", _positive(self.guide_roas, "guide ROAS"))
        if self.extrapolation not in EXTRAPOLATION_MODES:
            raise SettingsError(f"extrapolation must be one of {EXTRAPOLATION_MODES}, got {self.extrapolation!r}")
        object.__setattr__(self, "extrapolation_margin", _fraction(self.extrapolation_margin, "extrapolation margin", upper=10.0))
        object.__setattr__(self, "extrapolated_confidence_cap",
                           _fraction(self.extrapolated_confidence_cap, "extrapolated confidence cap", upper=100.0))
        if self.curve_model not in CURVE_MODELS:
            raise SettingsError(f"curve model must be one of {CURVE_MODELS}, got {self.curve_model!r}")
        if not isinstance(self.n_draws, int) or isinstance(self.n_draws, bool) or not 20 <= self.n_draws <= 100_000:
            raise SettingsError(f"n_draws must be a whole number between 20 and 100000, got {self.n_draws!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SettingsError(f"seed must be a whole number, got {self.seed!r}")
        if self.metric not in METRICS:
            raise SettingsError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.level not in LEVELS:
            raise SettingsError(f"level must be one of {LEVELS}, got {self.level!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping | None) -> "RecommendSettings":
        d = dict(data or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingsError(f"unknown recommend settings: {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Limits and today's state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-campaign budget limits: a number for all, one per campaign (curve order), or a mapping keyed
    by ``platform:external_id`` or external id (absent = no limit); ``locked`` campaigns keep today's budget."""

    min_budget: Any = 0.0
    max_budget: Any = math.inf
    locked: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "locked", tuple(str(x) for x in (self.locked or ())))
        for name in ("min_budget", "max_budget"):
            v = getattr(self, name)
            if v is None:
                object.__setattr__(self, name, 0.0 if name == "min_budget" else math.inf)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                if math.isnan(v) or v < 0:
                    raise SettingsError(f"{name.replace('_', ' ')} must be a non-negative number, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class AccountState:
    """What is live today: ``budgets`` (platform, external_id, daily_budget), ``bids`` (..., bid) and
    ``statuses`` (..., status), as frames (e.g. `core.optimize.recommend.current_budgets_from_entities`,
    one frame may serve all three) or mappings keyed by ``(platform, external_id)``,
    ``"platform:external_id"`` or external id. A campaign without a known budget uses its mean daily
    spend of the last 7 days. ``entities`` (with ``parent_id``) tells which campaign an ad set / ad group
    belongs to and where budgets live."""

    budgets: Any = None
    bids: Any = None
    statuses: Any = None
    entities: pd.DataFrame | None = None
