"""Benchmark: the journey engines at warehouse size (issue 15 §5).

* ``--sql``: SQL pushdown on DuckDB and on PostgreSQL (``MS_TEST_POSTGRES_URL``, as `scripts/postgres.sh`
  prints it) over ``--events`` events (default 10 M): seconds, rows and bytes fetched (target: the
  fetched result is the path table only, i.e. unique paths plus the label names).
* ``--dask``: ``--events`` (use 100 M) of generated Parquet on a 2-worker LocalCluster: total seconds
  and peak memory per worker (target: under 2 GB each), the result compared with DuckDB's pushdown.

Data is generated under a fresh folder in /tmp (free disk is checked first) and deleted afterwards.
Prints one table row per run: events, engine, seconds, peak memory.

    python bench/bench_scale.py --sql [--events 10000000] ; python bench/bench_scale.py --dask --events 100000000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.journeys.dask_engine import build_pathtable_dask  # noqa: E402
from core.journeys.sql import build_pathtable_sql  # noqa: E402

CHANNELS = np.array(["meta", "google_search", "google_display", "youtube", "tiktok", "email", "organic_search", "direct"])
START_US = 1_704_067_200 * 10**6  # 2024-01-01
DAYS = 90
ROWS = []
#: Memory cap of the DuckDB runs that check the Dask result (DuckDB spills beyond it).
DUCKDB_MEMORY = "4GB"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_events(folder: Path, n_events: int, n_files: int, seed: int = 11) -> int:
    """Event Parquet files, compact (zstd; integer user ids, dictionary-encoded text): user_id, ts,
    event_type, channel, order_id, revenue in cents (4 % purchases). Written file by file, so
    generating 100 M events needs one file's worth of memory."""
    rng = np.random.default_rng(seed)
    n_users = max(n_events // 5, 1)
    per = -(-n_events // n_files)
    kinds = pa.array(["visit", "purchase"], pa.string())
    channels = pa.array(CHANNELS.tolist(), pa.string())
    written = 0
    for i in range(n_files):
        k = min(per, n_events - written)
        if k <= 0:
            break
        conv = rng.random(k) < 0.04
        ids = np.arange(written, written + k)
        order_ids = pa.array(np.char.add("o", ids[conv].astype("U12")), pa.string())
        order_col = pa.array(np.full(k, None, dtype=object), pa.string())
        order_col = pc.replace_with_mask(order_col, pa.array(conv), order_ids)
        channel_codes = rng.integers(0, len(CHANNELS), k).astype(np.int8)
        table = pa.table({
            "user_id": pa.array(rng.integers(0, n_users, k), pa.int64()),
            "ts": pa.array(START_US + rng.integers(0, DAYS * 86_400, k) * 10**6, pa.timestamp("us", tz="UTC")),
            "event_type": pa.DictionaryArray.from_arrays(pa.array(conv.astype(np.int8)), kinds),
            "channel": pa.DictionaryArray.from_arrays(pa.array(channel_codes, mask=conv), channels),
            "order_id": order_col,
            "revenue": pa.array(rng.integers(500, 50_000, k) / 100, pa.float64(), mask=~conv),
        })
        pq.write_table(table, folder / f"events-{i:04d}.parquet", row_group_size=k, compression="zstd")
        written += k
    return written


def row(events: int, engine: str, seconds: float, memory: str, note: str = "") -> None:
    ROWS.append(f"| {events:,} | {engine} | {seconds:,.1f} s | {memory} | {note} |")
    print(ROWS[-1], flush=True)


def bench_sql(folder: Path, n: int) -> None:
    """PostgreSQL first (its client's peak memory is then its own), then DuckDB in this process."""
    import duckdb

    fetched = "{r[rows_fetched]:,} rows / {r[bytes_fetched]:,} bytes fetched for {p:,} paths"
    pout = None
    pg = os.environ.get("MS_TEST_POSTGRES_URL")
    if pg:
        pout = bench_postgres(pg, folder, n, fetched)
    else:
        print("PostgreSQL skipped: set MS_TEST_POSTGRES_URL (bash scripts/postgres.sh prints it)")
    db = folder / "events.duckdb"
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    con.close()
    print(f"loaded DuckDB table in {time.perf_counter() - t:.1f} s", flush=True)
    out = build_pathtable_sql(f"duckdb:///{db}", "events", lookback_days=30)
    r = out.report
    row(n, "sql (DuckDB file)", r["seconds"], f"DuckDB in process {peak_rss_mb():,.0f} MB", fetched.format(r=r, p=out.paths.n_paths))
    assert r["rows_fetched"] <= out.paths.n_paths + len(CHANNELS) + 1, "fetched more than the path table"
    if pout is not None:
        print(f"PostgreSQL result equals DuckDB's: {same_paths(pout.paths, out.paths)}")


def same_paths(a, b) -> bool:
    x = a.to_frame().sort_values("path").reset_index(drop=True)
    y = b.to_frame().sort_values("path").reset_index(drop=True)
    return bool(x["path"].equals(y["path"]) and np.allclose(x.iloc[:, 1:], y.iloc[:, 1:]))


def bench_postgres(pg: str, folder: Path, n: int, fetched: str):
    import sqlalchemy as sa

    name = f"ms_bench_{os.getpid()}"
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(pg).set(database=name).render_as_string(hide_password=False)
    try:
        t = time.perf_counter()
        load_postgres(url, folder)
        print(f"loaded PostgreSQL table in {time.perf_counter() - t:.1f} s", flush=True)
        pout = build_pathtable_sql(url, "events", lookback_days=30, timeout_s=3600)
        r = pout.report
        row(n, "sql (PostgreSQL)", r["seconds"], f"client {peak_rss_mb():,.0f} MB", fetched.format(r=r, p=pout.paths.n_paths))
        assert r["rows_fetched"] <= pout.paths.n_paths + len(CHANNELS) + 1, "fetched more than the path table"
        return pout
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def load_postgres(url: str, folder: Path) -> None:
    """COPY the Parquet files into PostgreSQL (binary-free CSV stream per file)."""
    import io

    import psycopg
    import pyarrow.csv as pacsv

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE events (user_id bigint, ts timestamptz, event_type text, channel text, order_id text, revenue double precision)")
        for f in sorted(folder.glob("*.parquet")):
            buf = io.BytesIO()
            pacsv.write_csv(pq.read_table(f), buf, pacsv.WriteOptions(include_header=False))
            with conn.cursor().copy("COPY events FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(buf.getvalue())
        conn.execute("ANALYZE events")
        conn.commit()


def bench_dask(folder: Path, n: int, workers: int, memory_limit: str) -> None:
    lines = []

    def progress(f, m):
        if not lines or f - lines[-1] >= 0.1 or f >= 1.0:
            lines.append(f)
            print(f"  [{f:4.0%}] {m}", flush=True)

    out = build_pathtable_dask(str(folder), lookback_days=30, n_workers=workers, memory_limit=memory_limit, progress=progress)
    r = out.report
    peaks = sorted(v / 2**30 for v in r["peak_memory_per_worker"].values())
    row(n, f"dask ({workers} workers, LocalCluster)", r["seconds"], "per worker " + " / ".join(f"{p:.2f} GB" for p in peaks),
        f"{out.paths.n_paths:,} paths, {r['user_partitions']} partitions")
    print(f"peak per worker under 2 GB: {max(peaks) < 2.0}")
    t = time.perf_counter()
    # DuckDB in this process, capped (it spills to the bench folder), so the comparison itself stays bounded.
    spill = folder / "duckdb-spill"
    duck = build_pathtable_sql(f"duckdb:///:memory:?memory_limit={DUCKDB_MEMORY}&temp_directory={spill}",
                               query=f"SELECT * FROM read_parquet('{folder}/*.parquet')", lookback_days=30, timeout_s=7200)
    row(n, "sql (DuckDB on the Parquet files)", time.perf_counter() - t, f"client {peak_rss_mb():,.0f} MB")
    print(f"Dask result equals DuckDB's: {same_paths(out.paths, duck.paths)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sql", action="store_true")
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=0, help="Parquet files to write (default: one per 1 M events)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB")
    args = ap.parse_args()
    need = args.events * 40  # Parquet about 15 bytes/event, DuckDB copy and PostgreSQL table more
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        sys.exit(f"not enough free disk in {tempfile.gettempdir()}: {free / 2**30:.1f} GB free, about {need / 2**30:.1f} GB needed")
    folder = Path(tempfile.mkdtemp(prefix="ms-bench-scale-"))
    try:
        t = time.perf_counter()
        n = write_events(folder, args.events, args.files or max(args.events // 1_000_000, 1))
        print(f"generated {n:,} events in {time.perf_counter() - t:.1f} s under {folder}", flush=True)
        print("| events | engine | time | peak memory | note |\n|---|---|---|---|---|")
        if args.sql:
            bench_sql(folder, n)
        if args.dask:
            bench_dask(folder, n, args.workers, args.memory_limit)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(["", "| events | engine | time | peak memory | note |", "|---|---|---|---|---|", *ROWS]))


if __name__ == "__main__":
    main()
