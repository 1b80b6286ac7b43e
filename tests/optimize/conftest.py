"""Simulated campaign performance with known response curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def simulate(n_campaigns=20, n_days=90, seed=0, noise=0.2, k_range=(0.3, 0.8), spread=0.5, platform="meta", cvr=0.02):
    """Daily performance of campaigns whose value is a * spend**k with lognormal noise (mean-one)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(5, 30, n_campaigns)
    k = rng.uniform(*k_range, n_campaigns)
    base = rng.uniform(50, 500, n_campaigns)
    spend = base[:, None] * rng.lognormal(0, spread, (n_campaigns, n_days))
    value = a[:, None] * spend ** k[:, None] * rng.lognormal(-(noise**2) / 2, noise, (n_campaigns, n_days))
    clicks = np.maximum((spend * 2).astype("int64"), 1)
    conv = rng.binomial(clicks, cvr).astype(float)
    ids = [f"c{i:04d}" for i in range(n_campaigns)]  # zero-padded: key order == simulation order
    df = pd.DataFrame(
        {
            "date": np.tile(pd.date_range("2024-01-01", periods=n_days), n_campaigns),
            "platform": platform,
            "account_id": "act1",
            "entity_type": "campaign",
            "external_id": np.repeat(ids, n_days),
            "entity_name": np.repeat([f"Campaign {i}" for i in range(n_campaigns)], n_days),
            "spend": spend.ravel(),
            "impressions": (clicks.ravel() * 50).astype("int64"),
            "clicks": clicks.ravel(),
            "conversions": conv.ravel(),
            "conversion_value": value.ravel(),
            "currency": "USD",
        }
    )
    return df, a, k


@pytest.fixture
def sim():
    return simulate
