"""The Data page's list of data sets counts the rows each set holds, whatever made it (file, sync, sandbox)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from core.ingest import read_files, save_import
from core.ingest.persist import list_datasets
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform
from core.store.db import make_engine, transaction
from core.store.models import PerformanceDaily

WS = "ws1"


def test_synced_and_simulated_performance_sets_count_their_stored_rows(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'list.db'}")
    try:
        sandbox = SandboxPlatform(engine, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=dt.date(2026, 6, 1))
        sync_platform(engine, WS, sandbox)
        perf = tmp_path / "perf.csv"
        perf.write_text("date,campaign,spend,clicks\n2026-05-01,brand,10.50,3\n2026-05-01,brand,1.50,1\n2026-05-02,brand,4,2\n")
        save_import(engine, WS, "perf", read_files([perf]))
        with transaction(engine, WS) as s:
            stored = dict(s.execute(select(PerformanceDaily.dataset_id, func.count())
                                    .group_by(PerformanceDaily.dataset_id)).all())
        listed = list_datasets(engine, WS).set_index("id")
        assert set(listed["kind"]) == {"performance"} and len(listed) == 3
        assert all(n > 0 for n in stored.values())
        assert listed["rows"].to_dict() == stored  # the sandbox's and the sync's sets showed 0 rows
        assert listed["rows"].dtype == "int64"
    finally:
        engine.dispose()
