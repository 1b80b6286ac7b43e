"""Benchmark: execute an approved plan of 500 budget changes on the sandbox (target: under 5 s).

Prints the time of the execution alone, and of preview + approve, on a fresh SQLite file.
Run: python bench/bench_execute.py [n_changes]
"""

from __future__ import annotations

import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import execute as ex  # noqa: E402
from core.changes import DraftChange, SafetySettings, create_plan  # noqa: E402
from core.money import quantize_money  # noqa: E402
from core.platforms.sandbox import SandboxPlatform  # noqa: E402
from core.store.db import make_engine  # noqa: E402


def main(n: int = 500) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        half = n // 2
        sb = SandboxPlatform(engine, "bench", seed=1, n_meta=half, n_google=n - half, children=1, history_days=2)
        drafts = [DraftChange("sandbox", sb.account_id, e.entity_type, e.external_id, e.name, "budget", e.daily_budget,
                              quantize_money(e.daily_budget * Decimal("1.1"), e.currency), e.currency, "bench", 80.0)
                  for e in sb.list_entities() if e.entity_type == "campaign"]
        assert len(drafts) == n
        pid = create_plan(engine, "bench", drafts, actor="bench", settings=SafetySettings())
        t0 = time.perf_counter()
        pr = ex.preview(engine, "bench", pid, sb, actor="bench")
        ex.approve(engine, "bench", pid, pr.content_hash, actor="bench")
        t1 = time.perf_counter()
        res = ex.execute(engine, "bench", pid, pr.content_hash, sb, actor="bench")
        t2 = time.perf_counter()
        engine.dispose()
    assert res.status == "completed" and res.counts == {"applied": n}, res
    print(f"preview + approve of {n} changes: {t1 - t0:.2f} s")
    print(f"execute {n} changes on the sandbox: {t2 - t1:.2f} s ({(t2 - t1) / n * 1000:.1f} ms per change; target < 5 s)")
    return t2 - t1


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
