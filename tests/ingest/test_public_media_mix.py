"""A media-mix (MMM) table from google/meridian: spend per channel in columns and one total KPI per
week. It holds no journeys and no per-channel results, so the reader must say so, not ask for a user id."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.ingest import MappingNeeded, read_files

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"


def test_a_media_mix_table_is_named_as_such_not_as_journeys_without_a_user():
    with pytest.raises(MappingNeeded) as err:
        read_files([PUBLIC / "meridian_national_media.csv"])
    text = str(err.value)
    assert "media-mix table" in text
    assert "'Channel0_spend'" in text and "'Channel3_spend'" in text
    assert "one row per date and channel" in text
    assert "looks like Event-level" not in text


def test_a_performance_export_with_a_cost_column_is_still_performance(tmp_path):
    f = tmp_path / "perf.csv"
    f.write_text("date,campaign,spend,conversions,conversion_value\n2024-01-01,A,10,1,20\n2024-01-02,A,12,1,25\n")
    assert read_files([f]).kind == "performance"
