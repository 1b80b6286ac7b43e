"""Time for the Attribution page to re-render a stored run (AppTest, from the app entry point).

Target (issue 3): under 1 s. Issue 14's sections (model fit, experiments, path explorer) are drawn only
when chosen; the time to switch to each is printed too. A generated event data set (USERS users, 8 channels, campaign ids) is
written to a temporary SQLite database, one run with every model, Markov order 2 and 100 bootstrap
replicates is computed and stored, then the page is rendered in new sessions (a browser refresh:
``?run=<id>``) and re-run in the same session. Prints the figures.

    python bench/bench_attribution_page.py [USERS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def make_events(n_users: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    channels = np.array(["display", "email", "search", "social", "video", "affiliate", "direct", "referral"], dtype=object)
    n_touch = rng.integers(1, 7, size=n_users)
    user = np.repeat(np.arange(n_users), n_touch)
    ch = rng.integers(0, channels.size, size=user.size)
    ts = (pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 60, size=user.size), unit="D")).floor("s")
    keys = pd.Series(np.char.add("u", np.arange(n_users).astype(str)))
    touch = pd.DataFrame({"user_key": keys.to_numpy()[user], "ts": ts, "channel": channels[ch],
                          "campaign_id": np.char.add("c", (ch * 3 + rng.integers(0, 3, size=user.size)).astype(str)),
                          "interaction": "click", "source_system": "csv"})
    conv_users = np.flatnonzero(rng.uniform(size=n_users) < 0.3)
    last = pd.Series(ts).groupby(user).max().to_numpy()
    conv = pd.DataFrame({"user_key": keys.to_numpy()[conv_users],
                         "ts": pd.DatetimeIndex(last[conv_users]) + pd.Timedelta(hours=2),
                         "conversion_id": np.char.add("o", conv_users.astype(str)), "type": "purchase",
                         "value": np.round(rng.uniform(10, 300, size=conv_users.size), 2), "currency": "USD"})
    return touch, conv


def main(n_users: int = 20_000) -> None:
    from streamlit.testing.v1 import AppTest

    from core import attribution_runs as ar
    from core.store.db import make_engine
    from tests.attribution_runs.helpers import add_event_dataset

    folder = Path(tempfile.mkdtemp(prefix="bench_attr_page_"))
    url = f"sqlite:///{folder / 'bench.db'}"
    os.environ["MARKETING_SUITE_DB_URL"] = url
    os.environ["MARKETING_SUITE_NO_SAMPLE"] = "1"
    eng = make_engine(url)
    touch, conv = make_events(n_users)
    ds = add_event_dataset(eng, "default", touch, conv, name="bench events")
    t0 = time.perf_counter()
    run = ar.execute_run(eng, "default", ar.RunParams(ds, ar.model_names(), order=2, bootstrap=100))
    compute = time.perf_counter() - t0
    mk = run.details["markov"]
    print(f"data: {len(touch):,} touchpoints, {len(conv):,} conversions, {run.extra['n_paths']:,} unique paths, "
          f"{run.extra['n_channels']} channels; Markov order 2: {mk['states']} states")
    print(f"compute + store the run ({len(run.params.models)} models, 100 bootstrap replicates): {compute:.2f} s")

    app = str(ROOT / "app.py")

    shared: dict = {}

    def new_session(with_url: bool = True) -> tuple[AppTest, float]:
        at = AppTest.from_file(app, default_timeout=120)
        # AppTest scans every installed package for components once per AppTest (~1 s here); a real
        # server does that once at startup, so later sessions reuse the first scan.
        if "components" in shared:
            at._bidi_component_manager = shared["components"]
        if with_url:
            at.query_params["run"] = str(run.id)
        at.switch_page("pages/attribution.py")
        t = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - t
        assert not at.exception, at.exception
        assert at.selectbox(key="attr.run_pick").value == run.id
        shared.setdefault("components", at._bidi_component_manager)
        return at, elapsed

    _, cold = new_session()
    sessions = [new_session()[1] for _ in range(5)]
    no_url = [new_session(with_url=False)[1] for _ in range(5)]  # the run opened last, from the database
    at, _ = new_session()
    reruns = []
    for _ in range(5):
        t = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - t)
    print(f"first render in a fresh process (engine, caches and AppTest component scan cold): {cold:.3f} s")
    print(f"re-render of the stored run in a new session (browser refresh), median of 5: {statistics.median(sessions):.3f} s "
          f"(max {max(sessions):.3f} s)")
    print(f"re-render in a new session without ?run= (run opened last, read from the database), median of 5: "
          f"{statistics.median(no_url):.3f} s (max {max(no_url):.3f} s)")
    print(f"re-render in the same session (rerun), median of 5: {statistics.median(reruns):.3f} s (max {max(reruns):.3f} s)")
    for section in ("fit", "experiments", "paths"):  # the accuracy sections (issue 14), drawn one at a time
        times = []
        for _ in range(3):
            t = time.perf_counter()
            at.segmented_control(key="attr.section").set_value(section).run()
            times.append(time.perf_counter() - t)
            assert not at.exception, at.exception
            at.segmented_control(key="attr.section").set_value("credit").run()
        print(f"switch to the {section!r} section, median of 3: {statistics.median(times):.3f} s (max {max(times):.3f} s)")
    ok = max(statistics.median(sessions), statistics.median(no_url)) < 1.0
    print(f"target < 1 s for re-rendering a stored run: {'met' if ok else 'NOT met'}")
    eng.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
