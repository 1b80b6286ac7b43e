"""Benchmark: how long the Optimizer page takes to re-render after a what-if slider move (target < 300 ms).

Runs the app's entry point under Streamlit's AppTest on a fresh SQLite database holding the synced
sandbox account, opens the Optimizer page, warms the caches, then moves one what-if slider N times
and (for comparison) the total-budget slider N times, timing each rerun. Prints wall-clock and
CPU time per rerun (the CPU figure is the one to read on a loaded machine). AppTest reruns the
whole page even for a widget inside the what-if fragment, so the figure is an upper bound of what a
browser sees (there only the fragment reruns).

    python bench/bench_optimizer_page.py [--moves 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_MS = 300.0


def _timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1000.0, (time.process_time() - c0) * 1000.0


def _report(name: str, samples: list[tuple[float, float]]) -> float:
    wall = sorted(s[0] for s in samples)
    cpu = sorted(s[1] for s in samples)
    p90 = wall[int(0.9 * (len(wall) - 1))]
    print(f"{name:<28} wall median {statistics.median(wall):7.1f} ms  p90 {p90:7.1f} ms  max {wall[-1]:7.1f} ms | "
          f"cpu median {statistics.median(cpu):7.1f} ms")
    return statistics.median(wall)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_opt_page_"))
    url = f"sqlite:///{folder / 'bench.db'}"
    os.environ["MARKETING_SUITE_DB_URL"] = url
    os.environ["MARKETING_SUITE_NO_SAMPLE"] = "1"
    from core.optimize import session as S
    from core.store.db import make_engine

    eng = make_engine(url)
    t0 = time.perf_counter()
    S.ensure_sandbox(eng, "default")
    print(f"sandbox account created and synced in {time.perf_counter() - t0:.2f} s")
    eng.dispose()

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    w, c = _timed(lambda: at.switch_page("pages/optimizer.py").run())
    if at.exception:
        print("page failed:", [e.value for e in at.exception])
        return 1
    print(f"first render of the page (loading + fitting): {w:.0f} ms wall, {c:.0f} ms cpu")
    slider = next(s for s in at.slider if s.key and s.key.startswith("opt.whatif.") and s.key.count(".") == 2)
    base = float(slider.value)
    at.slider(key=slider.key).set_value(base + 1.0).run()  # warm
    moves = [_timed(lambda i=i: at.slider(key=slider.key).set_value(base + 2.0 + i).run()) for i in range(args.moves)]
    med = _report(f"what-if slider move (x{args.moves})", moves)
    total = float(at.slider(key="opt.total_budget").value)
    budget_moves = [_timed(lambda i=i: at.slider(key="opt.total_budget").set_value(total + 5.0 * (i + 1)).run())
                    for i in range(args.moves)]
    _report(f"total budget move (x{args.moves})", budget_moves)
    if at.exception or at.error:
        print("page reported:", [e.value for e in at.exception] + [e.value for e in at.error])
        return 1
    print(f"target: what-if re-render < {TARGET_MS:.0f} ms -> {'met' if med < TARGET_MS else 'NOT met'} (median {med:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
