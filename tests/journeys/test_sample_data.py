"""The shipped sample data: reproducible from data/make_sample.py, the promised shape, loads on first start."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.journeys import build_pathtable_with_report
from core.sample import SAMPLE_DIR, SAMPLE_SETS, load_sample_if_empty

ROOT = Path(__file__).resolve().parents[2]
EVENT_COLUMNS = ["user_key", "ts", "event_type", "channel", "source", "medium", "campaign", "campaign_id", "conversion_id", "value", "currency"]
PERF_COLUMNS = ["date_day", "platform", "account_id", "campaign_id", "campaign_name", "spend", "clicks", "impressions", "conversions", "conversions_value", "currency"]
FILES = [f for files in SAMPLE_SETS.values() for f in files]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "data" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def events():
    return pd.read_csv(SAMPLE_DIR / "events.csv.gz", dtype={"campaign_id": "str"})


def test_shipped_files_are_what_the_script_makes(generator, tmp_path):
    written = generator.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(FILES)
    for p in written:
        assert sha256(p) == sha256(SAMPLE_DIR / p.name), f"{p.name} differs from a fresh run of data/make_sample.py"
    assert sum((SAMPLE_DIR / f).stat().st_size for f in FILES) < 3 * 2**20


def test_events_have_the_promised_shape(events):
    assert list(events.columns) == EVENT_COLUMNS
    assert set(events["event_type"]) == {"touch", "conversion"}
    touch = events[events["event_type"] == "touch"]
    conv = events[events["event_type"] == "conversion"]
    assert 20_000 <= events["user_key"].nunique() <= 40_000
    assert touch["channel"].nunique() >= 8 and touch["channel"].notna().all()
    ts = pd.to_datetime(events["ts"], utc=True, format="ISO8601")
    assert (ts.max() - ts.min()).days == 89 and events["ts"].str.endswith("Z").all()
    assert conv["conversion_id"].is_unique and conv["conversion_id"].notna().all()
    assert (conv["value"] > 0).all() and set(conv["currency"]) == {"USD"}
    assert len(conv) > 1_000 and conv["user_key"].nunique() < len(conv)  # several conversions per user happen
    paid = touch[touch["channel"].isin(["meta", "google_search", "google_display", "youtube"])]
    assert paid["campaign_id"].notna().all() and paid["campaign"].notna().all()
    assert touch.loc[touch["channel"] == "direct", "campaign_id"].isna().all()


def test_performance_has_the_promised_shape(generator):
    totals = pd.read_csv(SAMPLE_DIR / "performance.csv.gz", dtype={"campaign_id": "str"})
    assert list(totals.columns) == PERF_COLUMNS
    assert set(totals["platform"]) == {"facebook_ads", "google_ads"}
    assert totals["campaign_id"].nunique() == len(generator.CAMPAIGNS) and 10 <= len(generator.CAMPAIGNS) <= 14
    assert totals.groupby("campaign_id")["date_day"].nunique().eq(90).all() and not totals.duplicated(["campaign_id", "date_day"]).any()
    assert (totals["spend"] > 0).all() and (totals["clicks"] <= totals["impressions"]).all()
    for seg in ("device", "hour", "placement"):
        part = pd.read_csv(SAMPLE_DIR / f"performance_{seg}.csv.gz", dtype={"campaign_id": "str", seg: "str"})
        assert seg in part.columns and part[seg].notna().all()
        day = "date" if "date" in part.columns else "date_day"
        summed = part.groupby(["campaign_id", day])[["spend", "clicks", "conversions"]].sum().reset_index()
        merged = summed.merge(totals, left_on=["campaign_id", day], right_on=["campaign_id", "date_day"], suffixes=("", "_total"))
        assert len(merged) == len(summed)
        np.testing.assert_allclose(merged["spend"], merged["spend_total"], atol=0.011)
        assert (merged["clicks"] == merged["clicks_total"]).all() and (merged["conversions"] == merged["conversions_total"]).all()


def test_spend_response_is_concave(generator):
    """log(value) on log(spend) per campaign: the slope is the hidden exponent k, between 0 and 1."""
    totals = pd.read_csv(SAMPLE_DIR / "performance.csv.gz", dtype={"campaign_id": "str"})
    k_true = {c[0]: c[6] for c in generator.CAMPAIGNS}
    for cid, g in totals[totals["conversions_value"] > 0].groupby("campaign_id"):
        slope = np.polyfit(np.log(g["spend"]), np.log(g["conversions_value"]), 1)[0]
        assert 0 < slope < 1.1 and abs(slope - k_true[cid]) < 0.35, (cid, slope)


def test_sample_journeys_conserve_conversions(events):
    touch = events[events["event_type"] == "touch"].assign(ts=lambda f: pd.to_datetime(f["ts"], utc=True, format="ISO8601"))
    conv = events[events["event_type"] == "conversion"].assign(ts=lambda f: pd.to_datetime(f["ts"], utc=True, format="ISO8601"))
    table, report = build_pathtable_with_report(touch, conv, 30)
    assert table.total_conversions == len(conv) and table.total_value == pytest.approx(conv["value"].sum())
    assert report.no_touch_conversions < 0.01 * len(conv)
    # The hidden incremental lifts make high-lift channels convert more often per path than low-lift ones.
    f = table.to_frame()
    single = f[~f["path"].str.contains(">")].set_index("path")
    rate = single["total_conversions"] / (single["total_conversions"] + single["total_null"])
    assert rate["google_search"] > rate["google_display"] and rate["email"] > rate["linkedin"]


def test_sample_loads_once_into_an_empty_workspace(tmp_path):
    from core.ingest import list_datasets, load_events
    from core.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        ids = load_sample_if_empty(engine, "default")
        assert len(ids) == 2
        assert load_sample_if_empty(engine, "default") == []
        names = set(list_datasets(engine, "default")["name"])
        assert set(SAMPLE_SETS) <= names
        assert any(n.startswith("sync:sandbox") for n in names), "the sandbox account is opened and synced"
        from core.attribution_runs import list_runs

        assert len(list_runs(engine, "default")) == 1, "the sample journeys get a first attribution run"
        touch, conv = load_events(engine, "default", ids[0])
        assert len(conv) > 1_000 and len(touch) > 50_000
        assert load_sample_if_empty(engine, "other") != []  # a fresh workspace gets its own copy
    finally:
        engine.dispose()
