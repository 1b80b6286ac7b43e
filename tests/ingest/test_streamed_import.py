"""Streamed imports (issue 11 §4): a large event CSV is read block by block with bounded memory, and the
result is exactly the whole-file import's: the same stored events (order, ties, duplicates across
blocks, sessions), the same report; a bad row in a late block fails the whole import naming file, row,
line and column, and leaves nothing stored. Files the blocks cannot read alike go the whole-file way.
SQLite and PostgreSQL. Blocks are made tiny here so a file of a few MB spans dozens of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from core.ingest import IngestError, SessionSettings, import_files, load_events, readers, stream
from core.store import event_store
from core.store.models import Dataset, EventSet

ROWS = 15_000


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch, tmp_path):
    monkeypatch.setenv(event_store.STORAGE_URL_ENV, str(tmp_path / "store"))
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(readers, "DICTIONARY_MIN_ROWS", 100)  # repeating columns categorical in these small blocks too
    monkeypatch.setattr(stream, "BLOCK_BYTES", 16 * 1024)
    monkeypatch.setattr(stream, "GROUP_BYTES", 40 * 1024)


@pytest.fixture
def streamed(monkeypatch):
    """Records how each import went: "streamed", or the reason streaming was refused."""
    seen: list[str] = []
    original = stream.read_files_streamed

    def spy(*args, **kwargs):
        try:
            out = original(*args, **kwargs)
        except stream.StreamRefused as exc:
            seen.append(f"refused: {exc}")
            raise
        except IngestError:
            seen.append("failed")
            raise
        seen.append("streamed")
        return out

    monkeypatch.setattr(stream, "read_files_streamed", spy)
    return seen


def _events(rows: int = ROWS, *, seed: int = 3, iso: bool = False, sessions: bool = True) -> pd.DataFrame:
    """Events in random time order, with exact duplicates far apart (so in other blocks), ties (same
    user and instant, other channels), repeated and missing order ids, blank revenue, unknown event
    types, several currencies and collector session ids on most rows."""
    rng = np.random.default_rng(seed)
    users = np.char.add("user-", rng.integers(0, rows // 6, rows).astype(str))
    ts = 1_704_067_200 + rng.integers(0, 20 * 86400, rows)
    ts[rng.random(rows) < 0.05] = 1_704_067_200 + 3600  # many ties at one instant
    sources = np.array(["google", "facebook", "newsletter", "", "bing", "Example.com"])
    mediums = np.array(["cpc", "paid_social", "email", "", "organic", "referral"])
    pick = rng.integers(0, len(sources), rows)
    kind = rng.choice(["page_view", "touch", "purchase", "scroll", "signup"], rows, p=[0.5, 0.3, 0.08, 0.1, 0.02])
    order = np.where(kind == "purchase", np.char.add("o", rng.integers(0, rows // 40, rows).astype(str)), "")
    order[(kind == "purchase") & (rng.random(rows) < 0.2)] = ""  # no id: user + time + type stands in
    revenue = np.where(kind == "purchase", np.round(rng.gamma(2, 30, rows), 2).astype(str), "")
    revenue[(kind == "purchase") & (rng.random(rows) < 0.1)] = ""
    frame = pd.DataFrame({
        "user_id": users, "timestamp": ts.astype(str), "event_type": kind, "source": sources[pick], "medium": mediums[pick],
        "campaign": np.char.add("camp", rng.integers(0, 9, rows).astype(str)), "order_id": order, "revenue": revenue,
        "currency": rng.choice(["EUR", "usd", ""], rows, p=[0.6, 0.3, 0.1]),
    })
    if sessions:
        frame["session_id"] = np.where(rng.random(rows) < 0.8, np.char.add("s", (ts // 1800).astype(str)), "")
    if iso:
        stamps = pd.to_datetime(ts, unit="s", utc=True)
        frame["timestamp"] = np.where(rng.random(rows) < 0.5, stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                      stamps.tz_convert("Europe/Berlin").strftime("%Y-%m-%d %H:%M:%S%z"))
    copies = rng.choice(rows, rows // 50, replace=False)  # exact duplicates, far from their originals
    frame = pd.concat([frame, frame.iloc[copies]], ignore_index=True)
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _write(tmp_path, frame: pd.DataFrame, name: str = "events.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _import_both(engine, path, monkeypatch, streamed, **kwargs):
    """(report, touch, conv) of the streamed import and of the whole-file import of the same file."""
    ds, report = import_files(engine, "ws", [path], name="streamed", **kwargs)
    assert streamed == ["streamed"]
    monkeypatch.setattr(stream, "wanted", lambda paths: False)
    ds_whole, report_whole = import_files(engine, "ws", [path], name="whole", **kwargs)
    assert streamed == ["streamed"]  # the second import did not stream
    return (report, *load_events(engine, "ws", ds)), (report_whole, *load_events(engine, "ws", ds_whole))


def _assert_same(got, expected):
    report, touch, conv = got
    report_whole, touch_whole, conv_whole = expected
    assert report == report_whole
    pd.testing.assert_frame_equal(touch, touch_whole)
    pd.testing.assert_frame_equal(conv, conv_whole)


def test_streamed_import_equals_the_whole_file_import(engine, tmp_path, monkeypatch, streamed):
    path = _write(tmp_path, _events())
    assert path.stat().st_size > 20 * stream.GROUP_BYTES  # dozens of blocks
    got, expected = _import_both(engine, path, monkeypatch, streamed)
    _assert_same(got, expected)
    report = got[0]
    # What makes the comparison meaningful: duplicates across blocks, ties, sessions, generated ids.
    assert report["duplicate_events_dropped"] > 0 and report["duplicate_conversions_dropped"] > 0
    assert report["touches_are"] == "one per session"  # the collector session ids chose sessions mode
    assert any("have no conversion id" in w for w in report["warnings"])
    touch = got[1]
    keys = pd.DataFrame({"u": touch["user_key"].astype(str), "t": touch["ts"]})
    assert (keys.sort_values(["u", "t"], kind="stable").index == keys.index).all()  # sorted by user and time


def test_every_event_as_a_touch_and_iso_text_times_stream_alike(engine, tmp_path, monkeypatch, streamed):
    path = _write(tmp_path, _events(rows=8_000, seed=5, iso=True, sessions=False))
    got, expected = _import_both(engine, path, monkeypatch, streamed, sessions=SessionSettings(mode="events"))
    _assert_same(got, expected)
    assert got[0]["touches_are"] == "every event"


def test_a_bad_row_in_a_late_block_stores_nothing_and_names_it(engine, tmp_path, streamed):
    frame = _events()
    bad = len(frame) - 7  # 0-based, in the last block
    frame.loc[bad, "timestamp"] = "yesterday-ish"
    path = _write(tmp_path, frame)
    with pytest.raises(IngestError) as caught:
        import_files(engine, "ws", [path], name="bad")
    assert streamed == ["failed"]  # raised by the streamed import itself
    err = caught.value
    assert (err.file, err.row, err.line, err.column) == ("events.csv", bad + 1, bad + 2, "timestamp")
    assert "yesterday-ish" in str(err)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Dataset)) == 0
        assert conn.scalar(select(func.count()).select_from(EventSet)) == 0
    assert not list((tmp_path / "store").rglob("*.parquet"))


def test_the_whole_file_path_names_the_same_bad_row(engine, tmp_path, monkeypatch, streamed):
    frame = _events(rows=8_000)
    frame.loc[len(frame) - 3, "revenue"] = "12 apples"
    frame.loc[len(frame) - 3, "event_type"] = "purchase"
    path = _write(tmp_path, frame)
    with pytest.raises(IngestError) as streamed_error:
        import_files(engine, "ws", [path], name="bad")
    monkeypatch.setattr(stream, "wanted", lambda paths: False)
    with pytest.raises(IngestError) as whole_error:
        import_files(engine, "ws", [path], name="bad")
    assert str(streamed_error.value) == str(whole_error.value)
    assert streamed_error.value.row == len(frame) - 2 and streamed_error.value.column == "revenue"


def test_blocks_that_would_read_a_column_differently_go_the_whole_file_way(engine, tmp_path, monkeypatch, streamed):
    frame = _events(rows=12_000, sessions=False)
    stamps = pd.to_datetime(frame["timestamp"].astype(int), unit="s")
    frame["timestamp"] = stamps.dt.strftime("%d/%m/%Y %H:%M")  # a format chosen from the whole column's values
    path = _write(tmp_path, frame)
    ds, report = import_files(engine, "ws", [path], name="mixed")
    assert streamed and streamed[0].startswith("refused")
    monkeypatch.setattr(stream, "wanted", lambda paths: False)
    ds_whole, report_whole = import_files(engine, "ws", [path], name="mixed whole")
    assert report == report_whole


def test_mappings_that_need_the_whole_file_are_not_streamed(engine, tmp_path, streamed):
    frame = _events(rows=6_000, sessions=False)
    frame["event_id"] = np.arange(len(frame)) % 5_000  # repeated event ids are dropped file-wide
    path = _write(tmp_path, frame)
    ds, report = import_files(engine, "ws", [path], name="ids")
    assert streamed and streamed[0].startswith("refused")
    assert report["duplicate_events_dropped"] >= 1_000


def test_a_row_longer_than_a_small_block_is_read_whole(engine, tmp_path, monkeypatch, streamed):
    frame = _events(rows=6_000, sessions=False)
    frame.loc[100, "campaign"] = "x" * (40 * 1024)  # longer than the 16 KB test block, far below the row limit
    path = _write(tmp_path, frame)
    ds, report = import_files(engine, "ws", [path], name="long")
    assert streamed and streamed[0].startswith("refused")
    assert report["rows_read"] == len(frame)


def test_the_command_line_reads_large_files_block_by_block_too(tmp_path, monkeypatch, streamed):
    import argparse

    from core.ingest.commandline import add_mapping_arguments, read_with_mapping

    parser = argparse.ArgumentParser()
    add_mapping_arguments(parser)
    args = parser.parse_args(["--map", "campaign=campaign", "--touches", "events"])
    path = _write(tmp_path, _events(rows=10_000))
    got = read_with_mapping([path], args)
    assert streamed == ["streamed"]
    monkeypatch.setattr(stream, "wanted", lambda paths: False)
    expected = read_with_mapping([path], args)
    assert got.report == expected.report and got.report["touches_are"] == "every event"
    assert got.content_hash == expected.content_hash and got.mappings == expected.mappings


def test_several_files_stream_into_one_data_set_as_read_whole(engine, tmp_path, monkeypatch, streamed):
    frame = _events(rows=16_000, seed=9)
    first = _write(tmp_path, frame.iloc[: len(frame) // 2], "part-1.csv")
    second = _write(tmp_path, frame.iloc[len(frame) // 2:].drop(columns="currency"), "part-2.csv")
    ds, report = import_files(engine, "ws", [first, second], name="two")
    assert streamed == ["streamed"]
    monkeypatch.setattr(stream, "wanted", lambda paths: False)
    ds_whole, report_whole = import_files(engine, "ws", [first, second], name="two whole")
    assert report == report_whole and report["files"] == ["part-1.csv", "part-2.csv"]
    for got, expected in zip(load_events(engine, "ws", ds), load_events(engine, "ws", ds_whole)):
        pd.testing.assert_frame_equal(got, expected)
