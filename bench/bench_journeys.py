"""Benchmark: 10 million events (2 million users, 8 channels) -> PathTable.

Prints the seconds and peak memory of the in-memory step (`core.journeys.build_pathtable` on
canonical DataFrames) and, separately, of parsing the same events from CSV with pandas' pyarrow
engine. Target on a 2-core machine: in-memory step under 5 s and under 1.5 GB. Also times the path of
an attribution run on a stored data set: `core.ingest.load_events` (SQLite) + `build_pathtable` on
``--stored`` events (0 skips it).

    python bench/bench_journeys.py [--events 10000000] [--users 2000000] [--repeat 3] [--no-csv] [--stored 300000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.journeys import build_pathtable_with_report  # noqa: E402

CHANNELS = np.array(["meta", "google_search", "google_display", "youtube", "tiktok", "email", "organic_search", "direct"])
START = pd.Timestamp("2024-01-01", tz="UTC").value // 10**9
DAYS = 90


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_events(n_events: int, n_users: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical touchpoint and conversion frames in random row order, second-resolution times."""
    rng = np.random.default_rng(seed)
    n_conv = n_events // 25  # 4 % of the events are conversions
    n_touch = n_events - n_conv
    t_user = rng.integers(0, n_users, n_touch)
    c_user = rng.integers(0, n_users // 4, n_conv)  # a quarter of the users can convert
    keys = pa.array([f"u{i:07d}" for i in range(n_users)], type=pa.large_string())
    t_ts = START + rng.integers(0, DAYS * 86_400, n_touch)
    c_ts = START + rng.integers(0, DAYS * 86_400, n_conv)
    touch = pd.DataFrame(
        {
            "user_key": keys.take(pa.array(t_user)).to_pandas(),
            "ts": pd.to_datetime(t_ts, unit="s", utc=True),
            "channel": pd.array(CHANNELS[rng.integers(0, len(CHANNELS), n_touch)], dtype="str"),
        }
    )
    conv = pd.DataFrame(
        {
            "user_key": keys.take(pa.array(c_user)).to_pandas(),
            "ts": pd.to_datetime(c_ts, unit="s", utc=True),
            "conversion_id": pd.array(np.char.add("o", np.arange(n_conv).astype(str)), dtype="str"),
            "value": np.round(rng.gamma(2.0, 40.0, n_conv), 2),
        }
    )
    return touch, conv


def time_in_memory(touch: pd.DataFrame, conv: pd.DataFrame, repeat: int, label: str) -> None:
    frame_mb = (touch.memory_usage(deep=True).sum() + conv.memory_usage(deep=True).sum()) / 2**20
    print(f"[{label}] input frames: {len(touch):,} touchpoints + {len(conv):,} conversions = {len(touch) + len(conv):,} events, {frame_mb:,.0f} MB")
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        table, report = build_pathtable_with_report(touch, conv, lookback_days=30)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        del table
    gc.collect()
    rss_before = rss_mb()
    tracemalloc.start()
    table, report = build_pathtable_with_report(touch, conv, lookback_days=30)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"[{label}] in-memory events -> PathTable: best {min(walls):.2f} s wall (median {np.median(walls):.2f}), "
          f"best {min(cpus):.2f} s CPU, over {repeat} runs; load average {os.getloadavg()[0]:.1f}")
    print(f"[{label}]   peak memory allocated by the step (tracemalloc): {peak / 2**20:,.0f} MB; "
          f"process peak RSS {rss_mb():,.0f} MB (inputs and data generation included; {rss_before:,.0f} MB before the traced run)")
    print(f"[{label}]   {table.n_paths:,} unique paths, {len(table.channels)} channels, conversions {table.total_conversions:,.0f}, "
          f"nulls {table.total_nulls:,.0f}, value {table.total_value:,.2f}")
    assert table.total_conversions == len(conv), "conversions not conserved"
    assert abs(table.total_value - conv["value"].sum()) < 1e-6 * max(1.0, conv["value"].sum()), "value not conserved"
    return report


def time_csv(touch: pd.DataFrame, conv: pd.DataFrame) -> None:
    """Write the events as one canonical CSV (event_type column) and time pandas' pyarrow reader."""
    events = pd.concat(
        [
            touch.assign(event_type="touch", conversion_id="", value=np.nan),
            conv.assign(event_type="conversion", channel=""),
        ],
        ignore_index=True,
    )
    events["ts"] = events["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.csv")
        pacsv.write_csv(pa.Table.from_pandas(events, preserve_index=False), path)
        size = os.path.getsize(path) / 2**20
        del events
        gc.collect()
        t0 = time.perf_counter()
        frame = pd.read_csv(path, engine="pyarrow")
        t1 = time.perf_counter()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        is_conv = frame["event_type"].eq("conversion").to_numpy()
        touch2, conv2 = frame[~is_conv], frame[is_conv]
        t2 = time.perf_counter()
    print(f"CSV ({size:,.0f} MB, {len(frame):,} rows): read_csv(engine='pyarrow') {t1 - t0:.2f} s; "
          f"timestamp parsing and split {t2 - t1:.2f} s; total {t2 - t0:.2f} s (reported separately from the in-memory step)")
    del touch2, conv2


def time_stored(n_events: int, repeat: int) -> None:
    """Store ``n_events`` imported events in a fresh SQLite database, then time load_events + build_pathtable."""
    from bench_ingest import make_csv

    from core.ingest import load_events, read_files, save_import
    from core.journeys import build_pathtable
    from core.store.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.csv"
        make_csv(path, n_events)
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            dataset = save_import(engine, "bench", "bench", read_files([path]))
            loads, builds = [], []
            for _ in range(repeat):
                gc.collect()
                t0 = time.perf_counter()
                touch, conv = load_events(engine, "bench", dataset)
                t1 = time.perf_counter()
                table = build_pathtable(touch, conv, lookback_days=30)
                loads.append(t1 - t0)
                builds.append(time.perf_counter() - t1)
        finally:
            engine.dispose()
    print(f"stored data set (SQLite, {len(touch) + len(conv):,} events, user_key {touch['user_key'].dtype}): "
          f"load_events best {min(loads):.2f} s + build_pathtable best {min(builds):.2f} s; {table.n_paths:,} unique paths")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-csv", action="store_true")
    parser.add_argument("--stored", type=int, default=300_000, help="events for the stored-data-set timing (0 = skip)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    touch, conv = make_events(args.events, args.users)
    print(f"generated in {time.perf_counter() - t0:.1f} s; {args.users:,} users, {len(CHANNELS)} channels, {os.cpu_count()} cores")
    report = time_in_memory(touch, conv, args.repeat, "str columns")
    print(f"  report: {report.as_dict()}")
    # The reader can hand over dictionary-encoded (categorical) user and channel columns, which skips
    # hashing 10 million strings here; the encoding cost then sits in parsing.
    cat_touch = touch.assign(user_key=touch["user_key"].astype("category"), channel=touch["channel"].astype("category"))
    time_in_memory(cat_touch, conv, args.repeat, "categorical columns")
    del cat_touch
    # What core.ingest and load_events hand over: rows sorted by user and time, user categories shared
    # by touchpoints and conversions (users then keep their order without a scatter over all rows).
    from core.ingest.events import shared_user_categoricals, text_categorical

    s_touch = touch.sort_values(["user_key", "ts"], ignore_index=True)
    s_conv = conv.sort_values(["user_key", "ts"], ignore_index=True)
    s_touch["user_key"], s_conv["user_key"] = shared_user_categoricals(s_touch["user_key"], s_conv["user_key"])
    s_touch["channel"] = text_categorical(s_touch["channel"])
    time_in_memory(s_touch, s_conv, args.repeat, "categorical, sorted as imported")
    del s_touch, s_conv
    if not args.no_csv:
        time_csv(touch, conv)
    del touch, conv
    if args.stored:
        time_stored(args.stored, args.repeat)


if __name__ == "__main__":
    main()
