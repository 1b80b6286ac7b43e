"""Reading a stored event set back fast (issue 15 §5) without changing the answer.

Event files carry each row's index into the set's sorted ``users.parquet`` and each day's rows sorted by
(user, time); the reader merges the days' runs with one integer sort instead of hashing user keys and a
lexsort. These tests hold it to the import's frames and the in-memory builder's path table on random
multi-day sets (users across days, ties in time, null journeys, ``(no touch)`` conversions), on sets in
the layout of earlier versions (no users file), and on files whose rows are NOT in (user, time) order,
where a reader that trusted the order would go wrong.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ingest import load_events, read_files, save_import
from core.ingest.persist import JOURNEY_COLUMNS, event_tables, frames_from_tables
from core.journeys import build_journeys_with_report, build_pathtable
from core.store import event_store
from core.store.db import make_engine

T0 = pd.Timestamp("2024-01-01 22:00", tz="UTC")
CHANNELS = [("google", "cpc"), ("facebook", "paid"), ("newsletter", "email"), ("bing", "organic")]

# One event: user, minutes after T0 (a few days, so users span day files; coarse, so times tie), a touch's
# channel or a conversion (-1), revenue.
EVENT = st.tuples(st.integers(0, 7), st.integers(0, 4 * 24 * 60).map(lambda m: m - m % 90), st.integers(-1, 3),
                  st.integers(0, 500))


def _csv(events: list[tuple], path: Path) -> Path:
    rows = ["user_id,timestamp,event_type,source,medium,order_id,revenue"]
    for i, (user, minutes, channel, revenue) in enumerate(events):
        ts = (T0 + pd.Timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"u{user * 7 % 11}"  # not in numeric order: "u10" sorts before "u2"
        if channel < 0:
            rows.append(f"{name},{ts},purchase,,,o{i},{revenue}.25")
        else:
            rows.append(f"{name},{ts},touch,{CHANNELS[channel][0]},{CHANNELS[channel][1]},,")
    path.write_text("\n".join(rows) + "\n")
    return path


def _assert_same_paths(touch, conv, expected_touch, expected_conv):
    got = build_pathtable(touch, conv, lookback_days=1.5).to_frame()
    # The in-memory builder on the import's rows in another order and with plain text keys: the same table.
    shuffled = expected_touch.sample(frac=1.0, random_state=3).astype({"user_key": "str", "channel": "str"})
    want = build_pathtable(shuffled, expected_conv.astype({"user_key": "str"}), lookback_days=1.5).to_frame()
    key = ["path"]
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True), want.sort_values(key, ignore_index=True))
    j1, r1 = build_journeys_with_report(touch, conv, lookback_days=1.5)
    j2, r2 = build_journeys_with_report(expected_touch, expected_conv, lookback_days=1.5)
    assert r1 == r2 and j1.user_key.tolist() == j2.user_key.tolist()
    assert j1.conversion_id.tolist() == j2.conversion_id.tolist()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(EVENT, max_size=60).map(lambda found: [(3, 120, 1, 0), *found]))  # an import needs a touch
def test_stored_sets_read_back_as_the_import_made_them(events):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = read_files([_csv(events, tmp / "events.csv")])
        engine = make_engine(f"sqlite:///{tmp / 'db.sqlite'}")
        try:
            ds = save_import(engine, "ws", "events", result, storage=str(tmp / "store"))
            assert list((tmp / "store").rglob(event_store.USERS_FILE))  # the fast layout was written
            touch, conv = load_events(engine, "ws", ds)
            pd.testing.assert_frame_equal(touch, result.touchpoints)
            pd.testing.assert_frame_equal(conv, result.conversions)
            narrow_touch, narrow_conv = load_events(engine, "ws", ds, JOURNEY_COLUMNS)
            pd.testing.assert_frame_equal(narrow_touch, result.touchpoints[JOURNEY_COLUMNS["touchpoints"]])
            pd.testing.assert_frame_equal(narrow_conv, result.conversions[JOURNEY_COLUMNS["conversions"]])
            if len(result.touchpoints):
                _assert_same_paths(narrow_touch, narrow_conv, result.touchpoints, result.conversions)
        finally:
            engine.dispose()


def _ties_and_days() -> list[tuple]:
    """Users across three days, several touches and conversions of one user at one instant, a user with
    only a conversion ((no touch)), users with touches only (null journeys)."""
    return [(1, 0, 0, 0), (1, 0, 2, 0), (1, 0, 1, 0), (1, 0, -1, 10), (1, 0, -1, 20), (1, 1500, 3, 0), (1, 1530, -1, 30),
            (2, 60, 1, 0), (2, 2900, 1, 0), (2, 2900, 0, 0), (3, 30, -1, 40), (4, 4000, 2, 0), (5, 10, 0, 0),
            (5, 1440, 0, 0), (5, 2880, 1, 0), (5, 2880, -1, 50), (6, 100, 3, 0), (0, 3000, -1, 5), (0, 2990, 2, 0)]


def test_sets_in_the_layout_of_earlier_versions_read_back_the_same(tmp_path, monkeypatch):
    """No users file, no user codes, day rows in input order: what main wrote before this reader."""
    result = read_files([_csv(_ties_and_days(), tmp_path / "events.csv")])
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = tmp_path / "store"
    with monkeypatch.context() as m:
        m.setattr(event_store, "_with_user_codes", lambda tables: (tables, None))
        ds = save_import(engine, "ws", "events", result, storage=str(store))
    assert not list(store.rglob(event_store.USERS_FILE))
    assert all(event_store.USER_CODE not in pq.read_schema(f).names for f in store.rglob("*.parquet"))
    touch, conv = load_events(engine, "ws", ds)
    pd.testing.assert_frame_equal(touch, result.touchpoints)
    pd.testing.assert_frame_equal(conv, result.conversions)
    _assert_same_paths(touch, conv, result.touchpoints, result.conversions)
    engine.dispose()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_files_whose_rows_are_not_in_user_time_order_read_back_sorted(tmp_path, monkeypatch, seed):
    """Day files written in any row order (another writer, a hand-made set) still read back sorted by
    (user, time) with ties in file order: the reader checks the order it relies on, never trusts it."""
    result = read_files([_csv(_ties_and_days(), tmp_path / "events.csv")])
    rng = np.random.default_rng(seed)

    def shuffled(frame):  # rows tied on (user, time) keep their relative order: that order is data
        tie = frame.groupby(["user_key", "ts"], observed=True, sort=False).ngroup().to_numpy()
        key = rng.permutation(tie.max() + 1)[tie]
        return frame.iloc[np.lexsort((np.arange(len(frame)), key))].reset_index(drop=True)

    touch, conv = shuffled(result.touchpoints), shuffled(result.conversions)
    monkeypatch.setattr(event_store, "_user_time_order", lambda table: None)  # write the rows as given
    location = str(tmp_path / "store")
    staged = event_store.stage(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"), event_tables(touch, conv), location)
    event_store.publish(staged)
    codes = [pq.read_table(f, columns=[event_store.USER_CODE])[event_store.USER_CODE].to_numpy()
             for f in sorted(Path(staged.final).glob("touchpoints/*/*.parquet"))]
    assert any((np.diff(c) < 0).any() for c in codes)  # the files really are out of order
    got_touch, got_conv = frames_from_tables(*event_store.read_tables(staged.uri, {"touchpoints": None, "conversions": None}))
    pd.testing.assert_frame_equal(got_touch, result.touchpoints)
    pd.testing.assert_frame_equal(got_conv, result.conversions)
    _assert_same_paths(got_touch, got_conv, result.touchpoints, result.conversions)


def test_a_user_code_out_of_range_is_a_clear_error(tmp_path):
    result = read_files([_csv(_ties_and_days(), tmp_path / "events.csv")])
    staged = event_store.stage(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"),
                               event_tables(result.touchpoints, result.conversions), str(tmp_path / "store"))
    event_store.publish(staged)
    users = Path(staged.final) / event_store.USERS_FILE
    table = pq.read_table(users)
    pq.write_table(table.slice(0, 2), users)  # the users file lost keys the rows point at
    with pytest.raises(event_store.EventStoreError, match="cannot be read"):
        event_store.read_tables(staged.uri, {"touchpoints": ["user_key", "ts"]})
