"""Event sets as Parquet files (issue 15 §2): storage locations (folder, fsspec URL), whole-or-nothing imports
(an exception or a kill leaves neither rows nor files), removal with the data set, row-stored data sets of
older versions, and reading back without row-by-row database traffic. SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event, func, select

from core.ingest import IngestError, delete_dataset, load_events, read_files, save_import
from core.ingest.persist import move_row_events_to_files, stored_event_files, stored_events
from core.store import event_store
from core.store.db import make_engine
from core.store.models import Conversion, Dataset, EventSet, Touchpoint

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_roundtrip_on_an_fsspec_url_partitioned_by_day(engine, events_csv):
    location = f"memory://ms-{uuid.uuid4().hex}/events"
    result = read_files([events_csv])
    ds = save_import(engine, "ws", "events", result, storage=location)
    touch, conv = load_events(engine, "ws", ds)
    pd.testing.assert_frame_equal(touch, result.touchpoints)
    pd.testing.assert_frame_equal(conv, result.conversions)
    files = stored_event_files(engine, "ws", ds)
    fs, paths = files["touchpoints"]
    days = sorted({p.split("/date=")[1].split("/")[0] for p in paths})
    assert days == sorted({d.date().isoformat() for d in result.touchpoints["ts"]})
    assert all(p.startswith("/ms-") for p in paths) and "memory" in fs.protocol
    with engine.connect() as conn:
        row = conn.execute(select(EventSet.uri, EventSet.touchpoints, EventSet.conversions)).one()
    assert row.uri.startswith(location) and (row.touchpoints, row.conversions) == (4, 2)
    assert delete_dataset(engine, "ws", ds)
    assert not fs.exists(row.uri.removeprefix("memory://"))


def test_reading_back_does_not_touch_row_tables(engine, events_csv, tmp_path):
    ds = save_import(engine, "ws", "events", read_files([events_csv]), storage=str(tmp_path / "store"))
    statements = []
    listener = lambda conn, cursor, statement, *a: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        touch, conv = load_events(engine, "ws", ds)
        arrow_touch, arrow_conv = stored_events(engine, "ws", ds, {"touchpoints": ["user_key", "ts", "channel"]})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(touch) == arrow_touch.num_rows == 4 and arrow_touch.column_names == ["user_key", "ts", "channel"]
    assert arrow_conv.num_rows == len(conv) == 2
    assert not [s for s in statements if "FROM touchpoints" in s or "FROM conversions" in s]
    assert len(statements) <= 20  # a few metadata look-ups (and per-transaction pragmas), not one per row


def test_delete_removes_the_files(engine, events_csv, tmp_path):
    store = tmp_path / "store"
    ds = save_import(engine, "ws", "events", read_files([events_csv]), storage=str(store))
    assert any(f.endswith(".parquet") for f in _files(store))
    assert delete_dataset(engine, "ws", ds)
    assert not [f for f in _files(store) if f.endswith(".parquet")]
    assert _count(engine, EventSet) == 0


def test_a_failed_commit_leaves_no_files(engine, events_csv, tmp_path):
    store = tmp_path / "store"
    result = read_files([events_csv])
    save_import(engine, "ws", "events", result, storage=str(store))
    before = _files(store)
    with pytest.raises(IngestError, match="already exists"):
        save_import(engine, "ws", "events", result, storage=str(store))  # fails inside the transaction, after staging
    assert _files(store) == before and _count(engine, Dataset) == 1


def test_an_unusable_location_is_a_clear_error(engine, events_csv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(IngestError, match="nothing was saved"):
        save_import(engine, "ws", "events", read_files([events_csv]), storage=str(blocker / "store"))
    assert _count(engine, Dataset) == 0


_KILLED_IMPORT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from core.ingest import read_files, save_import
from core.store import event_store
from core.store.db import make_engine
real = getattr(event_store, {hook!r})
def killed(*args, **kwargs):
    out = real(*args, **kwargs) if {after!r} else None
    os.kill(os.getpid(), signal.SIGKILL)
setattr(event_store, {hook!r}, killed)
save_import(make_engine({url!r}), "ws", "events", read_files([{csv!r}]), storage={store!r})
"""


@pytest.mark.parametrize("hook, after", [("stage", True), ("publish", False)], ids=["killed-before-commit", "killed-before-publish"])
def test_a_killed_import_leaves_nothing_behind(db_url, events_csv, tmp_path, hook, after):
    store = tmp_path / "store"
    make_engine(db_url).dispose()
    script = _KILLED_IMPORT.format(root=str(ROOT), hook=hook, after=after, url=db_url, csv=str(events_csv), store=str(store))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    engine = make_engine(db_url)
    try:
        staged = [f for f in _files(store) if "/staging/" in f and f.endswith(".parquet")]
        assert staged  # the files were written, then the process died
        if hook == "stage":  # died before the commit: no data set, and the files go at the next cleanup
            assert _count(engine, Dataset) == 0
            assert event_store.clean_orphans(engine, str(store))["removed_staged"] == 1
            assert not [f for f in _files(store) if f.endswith(".parquet")]
        else:  # died after the commit: the data set is whole, its files are published when first read
            ds = engine.connect().scalar(select(Dataset.id))
            touch, conv = load_events(engine, "ws", ds)
            assert len(touch) == 4 and len(conv) == 2
            assert not [f for f in _files(store) if "/staging/" in f]
    finally:
        engine.dispose()


def test_staged_files_of_a_running_import_are_kept(engine, tmp_path):
    """Cleanup never removes what a live process is still writing (its writer is this process)."""
    import pyarrow as pa

    store = str(tmp_path / "store")
    staged = event_store.stage(engine, {"touchpoints": pa.table({"ts": pa.array([0], pa.timestamp("ns", tz="UTC"))})}, store)
    assert event_store.clean_orphans(engine, store, min_age=0)["removed_staged"] == 0
    event_store.discard(staged)


def test_files_of_a_deleted_data_set_that_survived_are_cleaned(engine, events_csv, tmp_path, monkeypatch):
    store = tmp_path / "store"
    ds = save_import(engine, "ws", "events", read_files([events_csv]), storage=str(store))
    monkeypatch.setattr(event_store, "remove", lambda uri: None)  # the removal after the commit fails
    delete_dataset(engine, "ws", ds)
    assert [f for f in _files(store) if f.endswith(".parquet")]
    assert event_store.clean_orphans(engine, str(store))["removed_sets"] == 1
    assert not [f for f in _files(store) if f.endswith(".parquet")]


def test_row_stored_data_sets_of_older_versions_still_load_and_move_to_files(engine, tmp_path):
    from tests.attribution_runs.helpers import add_event_dataset, make_events

    touch, conv = make_events(n_users=30)
    ds = add_event_dataset(engine, "ws", touch, conv)
    before_t, before_c = load_events(engine, "ws", ds)  # read from the old row tables
    assert len(before_t) == len(touch) and len(before_c) == len(conv)
    assert move_row_events_to_files(engine, str(tmp_path / "store")) == [ds]
    assert _count(engine, Touchpoint) == 0 and _count(engine, Conversion) == 0
    after_t, after_c = load_events(engine, "ws", ds)
    pd.testing.assert_frame_equal(after_t, before_t)
    pd.testing.assert_frame_equal(after_c, before_c)
    assert move_row_events_to_files(engine, str(tmp_path / "store")) == []  # a rerun has nothing to do


def test_default_location_is_beside_a_sqlite_file_or_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(event_store.STORAGE_URL_ENV, raising=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    assert event_store.storage_location(engine) == str(tmp_path / "app_events")
    monkeypatch.setenv(event_store.STORAGE_URL_ENV, "memory://elsewhere")
    assert event_store.storage_location(engine) == "memory://elsewhere"
    assert event_store.storage_location(engine, "s3://bucket/x") == "s3://bucket/x"
    engine.dispose()


def test_missing_files_are_a_clear_error(engine, events_csv, tmp_path):
    import shutil

    store = tmp_path / "store"
    ds = save_import(engine, "ws", "events", read_files([events_csv]), storage=str(store))
    shutil.rmtree(store)
    with pytest.raises(IngestError, match="event files of this data set are missing"):
        load_events(engine, "ws", ds)


def test_only_the_columns_asked_for_are_read(engine, events_csv, tmp_path):
    from core.ingest.persist import JOURNEY_COLUMNS
    from core.journeys import build_pathtable

    result = read_files([events_csv])
    ds = save_import(engine, "ws", "events", result, storage=str(tmp_path / "store"))
    touch, conv = load_events(engine, "ws", ds, JOURNEY_COLUMNS)
    assert list(touch.columns) == JOURNEY_COLUMNS["touchpoints"] and list(conv.columns) == JOURNEY_COLUMNS["conversions"]
    full = build_pathtable(result.touchpoints, result.conversions)
    assert build_pathtable(touch, conv).to_frame().equals(full.to_frame())


def test_storage_command_moves_row_events_and_reports(tmp_path, capsys, monkeypatch):
    from core.__main__ import main
    from tests.attribution_runs.helpers import add_event_dataset, make_events

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv(event_store.STORAGE_URL_ENV, str(tmp_path / "cli-store"))
    engine = make_engine(url)
    touch, conv = make_events(n_users=20)
    add_event_dataset(engine, "ws", touch, conv)
    engine.dispose()
    assert main(["storage", "--db", url, "--move-row-events", "--clean"]) == 0
    out = capsys.readouterr().out
    assert f"event files: {tmp_path / 'cli-store'}" in out and "moved 1 data set(s) to files" in out
    assert f"1 event set(s), {len(touch) + len(conv):,} events" in out
