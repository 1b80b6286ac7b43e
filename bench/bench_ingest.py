"""Ingestion benchmarks through the product's own import path (read, detect, map, channel rules, store).

1. ``import``: a 5 M-row event CSV (about 220-250 MB) through `import_files` into a fresh SQLite database
   and its event files. Targets (issue 11 §4): **peak memory under 3x the input** and **at least 100k
   rows/s**. Peak memory is the process's peak RSS; the interpreter with pandas/pyarrow loaded is
   printed too, so the import's own growth can be read off.
2. ``stored-paths``: a 10 M-event CSV imported the same way, then its PathTable built from the stored
   set (`load_events` + `build_pathtable`). Targets (issue 15 §5): **import under 60 s, stored set ->
   paths under 5 s**.

The import prints the peak RSS of each stage (sampled every 10 ms): reading + mapping + validation
(block by block for a large CSV), duplicates / order / sessions, writing the event files, the commit.
``--whole`` forces the whole-file path (as before streaming) for a before/after comparison.

Each runs in its own process (clean peak memory). Usage:
    python bench/bench_ingest.py [--events 5000000] [--stored-events 10000000] [--only import|stored-paths] [--whole]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_csv(path: Path, n: int, seed: int = 7) -> None:
    """Event rows: user, epoch seconds, touch/purchase, source, medium, campaign, order id, revenue."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    pairs = np.array(["google|cpc", "facebook|paid", "newsletter|email", "(direct)|(none)", "bing|organic",
                      "linkedin|cpc", "tiktok|paid_social", "example.com|referral"])
    sources = np.array([p.split("|")[0] for p in pairs])
    mediums = np.array([p.split("|")[1] for p in pairs])
    with pacsv.CSVWriter(str(path), pa.schema([(c, pa.string()) for c in
                                                ("user_id", "timestamp", "event_type", "source", "medium", "campaign", "order_id", "revenue")]),
                         write_options=pacsv.WriteOptions(quoting_style="none")) as writer:
        for lo in range(0, n, chunk):
            k = min(chunk, n - lo)
            users = rng.integers(0, max(n // 5, 1), k)
            ts = 1_704_067_200 + rng.integers(0, 90 * 86400, k)
            sm = rng.integers(0, len(pairs), k)
            conv = rng.random(k) < 0.03
            revenue = np.round(rng.gamma(2, 40, k), 2)
            writer.write_table(pa.table({
                "user_id": pa.array(np.char.add("u", users.astype(str))),
                "timestamp": pa.array(ts.astype(str)),
                "event_type": pa.array(np.where(conv, "purchase", "touch")),
                "source": pa.array(sources[sm]),
                "medium": pa.array(mediums[sm]),
                "campaign": pa.array(np.char.add("camp", rng.integers(0, 40, k).astype(str))),
                "order_id": pa.array(np.where(conv, np.char.add("o", np.arange(lo, lo + k).astype(str)), "")),
                "revenue": pa.array(np.where(conv, revenue.astype(str), "")),
            }))


def _make_elsewhere(csv: Path, events: int, seed: int) -> None:
    """Write the CSV in a child process, so its memory does not count in this one's peak."""
    subprocess.run([sys.executable, __file__, "--make", str(csv), str(events), str(seed)], check=True)


#: Import stages by the progress messages that start them.
_STAGES = (("reading", "read, map, validate"), ("checking and mapping", "read, map, validate"),
           ("converting", "read, map, validate"), ("sorting", "duplicates, order, sessions"),
           ("done", "duplicates, order, sessions"), ("writing", "write event files"), ("stored", "commit"))


class _StageMemory:
    """Peak RSS per import stage, sampled every 10 ms in a thread; the stage is set from progress messages."""

    def __init__(self):
        self.stage, self.peaks, self._stop = "start (open, detect, map)", {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def progress(self, _fraction: float, message: str) -> None:
        self.stage = next((name for prefix, name in _STAGES if message.startswith(prefix)), self.stage)

    def _run(self) -> None:
        while not self._stop.is_set():
            stage, now = self.stage, rss_mb()
            self.peaks[stage] = max(self.peaks.get(stage, 0.0), now)
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _import(csv: Path, folder: Path, stages: "_StageMemory | None" = None):
    """import_files into a fresh SQLite database; returns (seconds, data set id, report, engine)."""
    from core.ingest import import_files
    from core.store.db import make_engine

    engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
    start, cpu = time.perf_counter(), time.process_time()
    dataset_id, report = import_files(engine, "bench", [csv], name="bench", progress=stages.progress if stages else None)
    _CPU["import"] = time.process_time() - cpu
    return time.perf_counter() - start, dataset_id, report, engine


#: CPU seconds of the last timed step (all threads of this process): on a shared, loaded machine the
#: wall time mostly measures the wait for a core, the CPU time what the step itself costs.
_CPU: dict[str, float] = {}


def bench_import(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv = folder / "events.csv"
        _make_elsewhere(csv, events, 7)
        size = csv.stat().st_size / 1e6
        import core.ingest  # noqa: F401  (the interpreter with pandas, pyarrow, sqlalchemy loaded)
        base = rss_mb()
        with _StageMemory() as stages:
            took, _ds, report, engine = _import(csv, folder, stages)
        peak = peak_mb()
        rate = events / took
        print(f"import (read, map, store): {events:,} rows, {size:,.0f} MB CSV -> {report['touchpoints']:,} touchpoints + "
              f"{report['conversions']:,} conversions in {took:.1f} s = {rate:,.0f} rows/s "
              f"[target >= 100,000 rows/s: {'met' if rate >= 100_000 else 'NOT met'}]")
        print(f"  CPU time {_CPU['import']:.1f} s = {events / _CPU['import']:,.0f} rows per CPU second "
              f"(what a quiet core would approach; load average {os.getloadavg()[0]:.1f})")
        print(f"  peak RSS {peak:,.0f} MB = {peak / size:.1f}x the input (interpreter before the import {base:,.0f} MB; "
              f"import's own growth {peak - base:,.0f} MB = {(peak - base) / size:.1f}x) "
              f"[target < 3x: {'met' if peak < 3 * size else 'NOT met'}]; load average {os.getloadavg()[0]:.1f}")
        print("  peak RSS by stage: " + "; ".join(f"{name} {mb:,.0f} MB ({mb / size:.1f}x)" for name, mb in stages.peaks.items()))
        engine.dispose()


def bench_stored_paths(events: int) -> None:
    from core.ingest import load_events
    from core.ingest.persist import JOURNEY_COLUMNS
    from core.journeys import build_pathtable

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv = folder / "events.csv"
        _make_elsewhere(csv, events, 11)
        size = csv.stat().st_size / 1e6
        took, dataset_id, report, engine = _import(csv, folder)
        print(f"import of {events:,} events ({size:,.0f} MB CSV) through import_files: {took:.1f} s "
              f"(CPU {_CPU['import']:.1f} s) [target < 60 s: {'met' if took < 60 else 'NOT met'}]; peak RSS {peak_mb():,.0f} MB")
        start, cpu = time.perf_counter(), time.process_time()
        touch, conv = load_events(engine, "bench", dataset_id, JOURNEY_COLUMNS)
        loaded = time.perf_counter() - start
        table = build_pathtable(touch, conv, lookback_days=30)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"stored set -> paths: {len(touch) + len(conv):,} events read back in {loaded:.1f} s, "
              f"{table.n_paths:,} paths in {total:.1f} s total (CPU {cpu:.1f} s) [target < 5 s: {'met' if total < 5 else 'NOT met'}]; "
              f"load average {os.getloadavg()[0]:.1f}")
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--stored-events", type=int, default=10_000_000)
    ap.add_argument("--only", choices=["import", "stored-paths"])
    ap.add_argument("--whole", action="store_true", help="read the file whole (the path before streaming), to compare")
    ap.add_argument("--make", nargs=3, metavar=("PATH", "EVENTS", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        return make_csv(Path(args.make[0]), int(args.make[1]), int(args.make[2]))
    if args.whole:
        from core.ingest import stream

        stream.wanted = lambda paths: False
    if args.only == "import":
        return bench_import(args.events)
    if args.only == "stored-paths":
        return bench_stored_paths(args.stored_events)
    for only in ("import", "stored-paths"):  # each in its own process, so peak memory is its own
        subprocess.run([sys.executable, __file__, "--only", only, "--events", str(args.events),
                        "--stored-events", str(args.stored_events), *(["--whole"] if args.whole else [])], check=True)


if __name__ == "__main__":
    main()
