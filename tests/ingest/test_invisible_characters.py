"""Invisible characters cannot make a channel pose as another: bidirectional controls, zero-width space
and byte-order marks are removed from text cells (CSV and Parquet), the joiners that spelling needs stay."""

from __future__ import annotations

import pandas as pd
import pytest

from core.ingest import read_files
from core.ingest.errors import IngestError

ROWS = [("u1", "Google"), ("u2", "Google\u202e"), ("u3", "\u200bGoogle"), ("u4", "\u2066Google\u2069"),
        ("u6", "\u0645\u06cc\u200c\u0631\u0648\u0645")]  # u6: Persian with a ZWNJ


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _ in ROWS], "timestamp": [f"2024-01-0{i + 1}T00:00:00Z" for i in range(len(ROWS))],
                         "channel": [c for _, c in ROWS]})


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_channel_with_invisible_characters_is_the_visible_channel(tmp_path, suffix):
    path = tmp_path / f"touches.{suffix}"
    frame = _frame()
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path, index=False)
    t = read_files([path]).touchpoints.set_index("user_key")["channel"].astype(object)
    assert [t[u] for u in ("u1", "u2", "u3", "u4")] == ["Google"] * 4  # one channel, not four look-alikes
    assert t["u6"] == "\u0645\u06cc\u200c\u0631\u0648\u0645"  # the zero-width non-joiner is part of the spelling


def test_a_channel_of_invisible_characters_only_is_missing(tmp_path):
    path = tmp_path / "touches.csv"
    _frame().assign(channel=["Google", "\ufeff\u200b", "Meta", "Email", "Google"]).to_csv(path, index=False)
    with pytest.raises(IngestError) as err:
        read_files([path])
    assert "channel is missing" in str(err.value) and "touches.csv" in str(err.value) and "'channel'" in str(err.value)
