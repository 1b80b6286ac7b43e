"""The optimizer plans budgets at the currency's own precision: fils for KWD, whole yen for JPY, and the
platform's coarser unit where it has one (Meta keeps HUF in whole forints)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from core.optimize.recommend import recommend
from core.optimize.settings import FixedBudget, RecommendSettings

from .test_honest_confidence import _stepped


def _in(currency: str, platform: str = "google", **kw):
    df = _stepped(n=5, days=60, seed=10, **kw)
    return df.assign(currency=currency, platform=platform)


@pytest.mark.parametrize("currency,platform,step", [
    ("KWD", "google", Decimal("0.001")), ("OMR", "sandbox", Decimal("0.001")), ("JPY", "meta", Decimal(1)),
    ("HUF", "meta", Decimal(1)), ("HUF", "google", Decimal("0.01")), ("BHD", "meta", Decimal("0.01")),
])
def test_a_fixed_total_is_split_exactly_at_the_money_step(currency, platform, step):
    df = _in(currency, platform)
    base = recommend(df, FixedBudget(), settings=RecommendSettings(max_change=0.5))
    total = (Decimal(repr(float(base.budget_table["current_budget"].sum()))) * Decimal("1.07")).quantize(step)
    rec = recommend(df, FixedBudget(total=float(total)), settings=RecommendSettings(max_change=0.5))
    assert rec.stated_total == total and sum(rec.proposal.values()) == total
    assert all(v == v.quantize(step) for v in rec.proposal.values())
    for d in rec.changes:
        if d.field == "budget":
            assert d.currency == currency and d.new_value == d.new_value.quantize(step)
            assert d.old_value == d.old_value.quantize(step)
    if step < Decimal("0.01"):  # the fils are used, not thrown away
        assert any(v != v.quantize(Decimal("0.01")) for v in rec.proposal.values())
    np.testing.assert_allclose(rec.budget_table["new_budget"], [float(v) for v in rec.proposal.values()])


def test_a_currency_the_platform_cannot_hold_is_said_not_crashed():
    rec = recommend(_in("KWD", "meta"), FixedBudget(), settings=RecommendSettings(max_change=0.5))
    assert any("Meta does not support KWD as an ad account currency" in n for n in rec.notes)
    assert all(v == v.quantize(Decimal("0.001")) for v in rec.proposal.values())
