"""Shared helpers for the attribution tests: random small path tables and the ChannelAttribution data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.pathtable import PathTable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "attribution"


def random_table(seed: int, n_paths: int = 40, n_channels: int = 4, max_len: int = 5, names=None) -> PathTable:
    """Random paths with integer conversions/nulls and positive values per conversion."""
    rng = np.random.default_rng(seed)
    names = names or [f"c{i}" for i in range(n_channels)]
    seqs = [list(rng.choice(names, size=rng.integers(1, max_len + 1))) for _ in range(n_paths)]
    conv = rng.integers(0, 5, size=n_paths).astype(float)
    nulls = rng.integers(0, 8, size=n_paths).astype(float)
    conv[0] = max(conv[0], 1.0)
    value = conv * rng.uniform(1, 20, size=n_paths)
    return PathTable.from_sequences(seqs, conv, value, nulls)


@pytest.fixture(scope="session")
def ca_data() -> PathTable:
    return PathTable.from_frame(pd.read_csv(FIXTURES / "Data.csv"))
