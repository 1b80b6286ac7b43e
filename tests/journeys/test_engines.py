"""The three engines give one answer: Dask (few partitions, a real LocalCluster on 127.0.0.1), SQL on
files through DuckDB, and the memory engine; the one switch on the command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.ingest import read_files
from core.journeys import JourneyError, build_pathtable
from core.journeys import engines
from core.journeys.dask_engine import build_pathtable_dask, list_event_files, local_cluster

ROOT = Path(__file__).resolve().parents[2]


def _frame(n=3000, seed=5):
    rng = np.random.default_rng(seed)
    etype = rng.choice(["page_view", "click", "visit", "purchase"], n, p=[0.4, 0.2, 0.25, 0.15])
    return pd.DataFrame({
        "user_id": rng.choice([f"u{i}" for i in range(250)], n),
        "ts": pd.to_datetime(1_709_251_200_000 + rng.integers(0, 86_400 * 25, n) * 1000, unit="ms", utc=True),
        "event_type": etype,
        "source": rng.choice(["google", "facebook", "newsletter", "", None, "bing"], n),
        "medium": rng.choice(["cpc", "email", "organic", None], n),
        "campaign_id": rng.choice(["c1", "c2", None], n),
        "order_id": [f"o{i:05d}" if e == "purchase" else None for i, e in enumerate(etype)],
        "revenue": np.where(etype == "purchase", rng.integers(1, 300, n).astype(float), np.nan),
    })


@pytest.fixture(scope="module")
def event_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("events")
    frame = _frame()
    for i in range(4):  # users spread over every file: the shuffle has to bring them together
        frame.iloc[i::4].to_parquet(folder / f"part-{i}.parquet", index=False)
    csv = tmp_path_factory.mktemp("csv")
    for i in range(3):
        frame.iloc[i::3].assign(ts=lambda f: f["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).to_csv(csv / f"ev-{i}.csv", index=False)
    return folder, csv


@pytest.fixture(scope="module")
def cluster():
    c = local_cluster(n_workers=2, memory_limit="1GB")
    yield c
    c.close()


def _memory(files, lookback, level):
    r = read_files(files)
    return build_pathtable(r.touchpoints, r.conversions, lookback, level)


def _as_dict(table):
    f = table.to_frame()
    return {p: (c, round(v, 6), n) for p, c, v, n in zip(f["path"], f["total_conversions"], f["total_conversion_value"], f["total_null"])}


def test_local_cluster_listens_on_loopback_only(cluster):
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert "127.0.0.1" in cluster.dashboard_link
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in cluster.scheduler_info["workers"])


@pytest.mark.parametrize("level", ["channel", "campaign"])
def test_dask_equals_memory_on_parquet(event_folder, cluster, level):
    folder, _ = event_folder
    files = list_event_files(folder)
    seen = []
    out = build_pathtable_dask(str(folder), lookback_days=7, level=level, scheduler=cluster.scheduler_address, npartitions=3,
                               progress=lambda f, m: seen.append((f, m)))
    memory = _memory(files, 7, level)
    assert _as_dict(out.paths) == _as_dict(memory)
    assert out.paths.channels == memory.channels
    assert out.report["user_partitions"] == 3 and out.report["input_partitions"] == 4
    assert seen[-1][0] == 1.0 and any("partitions done" in m for _, m in seen)
    assert all(0 < v < 1.5e9 for v in out.report["peak_memory_per_worker"].values())


def test_dask_equals_memory_on_a_csv_glob(event_folder, cluster):
    _, csv = event_folder
    out = build_pathtable_dask(str(csv / "ev-*.csv"), lookback_days=30, scheduler=cluster.scheduler_address)
    assert _as_dict(out.paths) == _as_dict(_memory(sorted(csv.glob("ev-*.csv")), 30, "channel"))


def test_dask_integer_user_ids_equal_memory_and_duckdb(tmp_path, cluster):
    # Integer ids are shuffled as integers (no text copy); the answer must not change, and " 7" in
    # one file and 7 in another are different types, so each file keeps one type here.
    frame = _frame(n=2000, seed=9)
    frame["user_id"] = frame["user_id"].str[1:].astype("int64") * 1_000_003  # wide ids, not 0..n
    for i in range(3):
        frame.iloc[i::3].to_parquet(tmp_path / f"p-{i}.parquet", index=False)
    files = list_event_files(tmp_path)
    out = build_pathtable_dask(str(tmp_path), lookback_days=10, scheduler=cluster.scheduler_address, npartitions=2)
    assert _as_dict(out.paths) == _as_dict(_memory(files, 10, "channel"))
    duck = engines.build_paths(engines.event_source([str(tmp_path)]), "sql", lookback_days=10)
    assert _as_dict(duck.paths) == _as_dict(out.paths)


def test_sql_engine_reads_files_through_duckdb(event_folder):
    folder, _ = event_folder
    source = engines.event_source([str(folder)])
    out = engines.build_paths(source, "sql", lookback_days=7)
    assert out.engine == "sql" and "read_parquet" in out.sql
    assert _as_dict(out.paths) == _as_dict(_memory(list(source.files), 7, "channel"))


def test_default_engine_by_size(event_folder, monkeypatch, tmp_path):
    folder, _ = event_folder
    source = engines.event_source([str(folder / "part-*.parquet")])
    assert len(source.files) == 4
    assert engines.default_engine(source) == "memory"
    monkeypatch.setattr(engines, "MEMORY_ENGINE_MAX_BYTES", 10)
    assert engines.default_engine(source) == "dask"
    assert engines.default_engine(engines.event_source(["sqlite:///x.db"], table="events")) == "sql"


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(JourneyError, match="--table T or --query Q"):
        engines.event_source(["postgresql://u@127.0.0.1/db"])
    with pytest.raises(JourneyError, match="no Parquet or CSV"):
        engines.event_source([str(tmp_path)])
    with pytest.raises(JourneyError, match="no such file"):
        engines.event_source([str(tmp_path / "missing")])
    with pytest.raises(JourneyError, match="dask engine reads files"):
        engines.build_paths(engines.EventSource(url="sqlite:///x.db", table="t"), "dask")
    with pytest.raises(JourneyError, match="engine must be"):
        engines.build_paths(engines.EventSource(files=("a.csv",)), "spark")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cli_one_switch(event_folder, cluster, tmp_path):
    folder, _ = event_folder
    url = f"sqlite:///{tmp_path / 'src.db'}"
    eng = sa.create_engine(url)
    _frame().to_sql("events", eng, index=False)
    eng.dispose()
    outs = {}
    for name, args in {
        "memory": [str(folder), "--engine", "memory"],
        "dask": [str(folder / "*.parquet"), "--engine", "dask", "--scheduler", cluster.scheduler_address],
        "sql-db": [url, "--table", "events"],  # default engine for a database: sql
        "sql-query": [url, "--query", "SELECT * FROM events", "--engine", "sql"],
    }.items():
        dest = tmp_path / f"{name}.csv"
        res = _cli("paths", *args, "--lookback-days", "7", "--out", str(dest))
        assert res.returncode == 0, res.stderr
        outs[name] = pd.read_csv(dest).sort_values("path").reset_index(drop=True)
        if name != "memory":
            assert re.search(r"^100% ", res.stderr, re.M) and "engine " in res.stderr  # progress on the command line
    for name in ("dask", "sql-db", "sql-query"):
        pd.testing.assert_frame_equal(outs[name], outs["memory"], check_exact=False, rtol=1e-9)
    res = _cli("attribute", url, "--table", "events", "--models", "last,markov", "--json")
    assert res.returncode == 0, res.stderr
    assert "markov" in res.stdout
    res = _cli("attribute", url, "--models", "last")
    assert res.returncode == 2 and "--table T or --query Q" in res.stderr


def test_dask_groups_sessions_like_memory_and_says_so(tmp_path, cluster):
    from core.ingest.sessionize import SessionSettings

    from .test_sql_sessions import _clickstream

    frame = _clickstream()
    for i in range(3):
        frame.iloc[i::3].to_parquet(tmp_path / f"c-{i}.parquet", index=False)
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    for mode in ("auto", "events"):
        r = read_files(files, sessions=SessionSettings(mode))
        memory = build_pathtable(r.touchpoints, r.conversions, 30)
        out = build_pathtable_dask(str(tmp_path), lookback_days=30, scheduler=cluster.scheduler_address, npartitions=2,
                                   sessions=SessionSettings(mode))
        assert _as_dict(out.paths) == _as_dict(memory), mode
        assert out.report["touches_are"] == r.report["touches_are"] and out.report["touch_events"] == r.report["touch_events"]
        assert out.report["sessions"] == r.report["sessions"] and out.report["touchpoints"] == r.report["touchpoints"]
    assert out.report["touches_are"] == "every event"
    assert r.report["sessions"] == 12 and read_files(files).report["touches_are"] == "one per session"


def test_dask_refuses_partitions_that_decide_touches_differently():
    from core.ingest.sessionize import SessionSettings
    from core.journeys.dask_engine import _SEP, _touch_choice

    def rows(*keys):
        return pd.DataFrame({"path": [_SEP + m + _SEP + r for m, r in keys], "conversions": 10.0, "value": 4.0, "nulls": 4.0})

    # Ratio 2.5 in one partition, 1.2 in the other: the whole data's ratio depends on how users were split.
    with pytest.raises(JourneyError, match="partitions disagree.*--touches events"):
        _touch_choice(rows(("sessions", "ratio"), ("events", "ratio")), SessionSettings())
    same = _touch_choice(rows(("sessions", "ratio"), ("events", "empty")), SessionSettings())
    assert same["touches_are"] == "one per session" and same["touch_events"] == 10
