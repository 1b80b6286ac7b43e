"""Ingestion benchmark: CSV read + detect + map + validate + channel rules, and storing an import.

Prints seconds and peak memory (RSS) for each step. Usage:
    python bench/bench_ingest.py [--events 2000000] [--store 300000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ingest import read_files, save_import  # noqa: E402
from core.store.db import make_engine  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_csv(path: Path, n: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, max(n // 5, 1), n)
    ts = 1_704_067_200 + rng.integers(0, 90 * 86400, n)
    sm = np.array(["google|cpc", "facebook|paid", "newsletter|email", "(direct)|(none)", "bing|organic",
                   "linkedin|cpc", "tiktok|paid_social", "example.com|referral"])[rng.integers(0, 8, n)]
    conv = rng.random(n) < 0.03
    frame = pd.DataFrame({
        "user_id": np.char.add("u", users.astype(str)),
        "timestamp": ts,
        "event_type": np.where(conv, "purchase", "touch"),
        "source": [s.split("|")[0] for s in sm],
        "medium": [s.split("|")[1] for s in sm],
        "campaign": np.char.add("camp", rng.integers(0, 40, n).astype(str)),
        "order_id": np.where(conv, np.char.add("o", np.arange(n).astype(str)), ""),
        "revenue": np.where(conv, np.round(rng.gamma(2, 40, n), 2), np.nan),
    })
    frame.to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--store", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        big = folder / "events.csv"
        make_csv(big, args.events)
        size = big.stat().st_size / 1e6
        start, cpu = time.perf_counter(), time.process_time()
        result = read_files([big])
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"read_files: {args.events:,} events ({size:,.0f} MB CSV) -> {result.report['touchpoints']:,} touchpoints, "
              f"{result.report['conversions']:,} conversions in {took:.2f} s wall, {cpu:.2f} s CPU ({args.events / took:,.0f} rows/s); "
              f"load average {os.getloadavg()[0]:.1f}; peak RSS {peak_mb():,.0f} MB")
        small = folder / "store.csv"
        make_csv(small, args.store, seed=8)
        r = read_files([small])
        engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
        start = time.perf_counter()
        save_import(engine, "bench", "bench", r)
        took = time.perf_counter() - start
        rows = r.report["touchpoints"] + r.report["conversions"]
        print(f"save_import (SQLite, one transaction): {rows:,} rows in {took:.2f} s ({rows / took:,.0f} rows/s); peak RSS {peak_mb():,.0f} MB")
        from core.ingest import load_events

        start = time.perf_counter()
        t, c = load_events(engine, "bench", 1)
        print(f"load_events: {len(t) + len(c):,} rows in {time.perf_counter() - start:.2f} s")
        engine.dispose()


if __name__ == "__main__":
    main()
