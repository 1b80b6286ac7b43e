"""Calibration to lift tests: validation, periods, the calibrated credit, and the stored calibrated run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from core import attribution_runs as ar
from core.attribution import calibration as cal
from core.attribution import lift_store
from core.optimize import session as opt_session
from core.pathtable import Journeys
from core.store.db import make_engine
from tests.attribution_runs.helpers import add_event_dataset, make_events

D = dt.date


@pytest.mark.parametrize(
    "kwargs, message",
    [({"channel": " "}, "needs the channel"), ({"end_date": D(2024, 2, 1)}, "before it starts"),
     ({"start_date": "yesterday"}, "not a date"), ({"low": 12.0}, "must contain the estimate"),
     ({"high": float("inf")}, "finite"), ({"incremental_conversions": "many"}, "must be numbers")],
    ids=["no-channel", "reversed-period", "bad-date", "estimate-outside", "infinite", "not-a-number"],
)
def test_lift_result_is_validated(kwargs, message):
    base = dict(channel="search", start_date=D(2024, 3, 1), end_date=D(2024, 3, 31), incremental_conversions=10.0,
                low=8.0, high=12.5)
    with pytest.raises(cal.CalibrationError, match=message):
        cal.LiftResult(**(base | kwargs)).validated()


def _credit():
    rows = [("search", "m", 40.0, 400.0), ("social", "m", 20.0, 100.0), ("email", "m", 10.0, 50.0),
            ("search", "other", 10.0, 100.0), ("social", "other", 50.0, 200.0), ("email", "other", 10.0, 20.0)]
    return pd.DataFrame(rows, columns=["channel", "model", "conversions", "value"])


def _tests(*rows):
    return pd.DataFrame([dict(zip(cal.TEST_COLUMNS, (i + 1, *r, "", ""))) for i, r in enumerate(rows)], columns=cal.TEST_COLUMNS)


def test_tested_channel_moves_into_its_interval_and_the_rest_follow():
    days = {"search": {"2024-03-05": 30.0, "2024-04-05": 10.0}, "social": {"2024-03-05": 5.0}}
    tests = _tests(("search", D(2024, 3, 1), D(2024, 3, 31), 15.0, 12.0, 18.0))
    frame, summary = cal.calibrate(_credit(), "m", tests, days, total_conversions=100.0)
    f = frame.set_index("channel")
    # 3/4 of search's converting journeys fall in March: model credit in the period 30 -> clipped to 18
    assert f.loc["search", "calibrated_conversions"] == pytest.approx(40.0 * 18.0 / 30.0)
    assert f.loc["search", "calibrated_value"] == pytest.approx(400.0 * 18.0 / 30.0)
    assert summary["pooled_factor"] == pytest.approx(18.0 / 30.0)
    assert f.loc["social", "calibrated_conversions"] == pytest.approx(20.0 * 0.6)  # untested: the pooled factor
    assert list(f["tested"]) == [True, False, False]
    # inside the interval: nothing moves
    inside = _tests(("search", D(2024, 3, 1), D(2024, 3, 31), 30.0, 25.0, 40.0))
    same, summary = cal.calibrate(_credit(), "m", inside, days, 100.0)
    np.testing.assert_allclose(same["calibrated_conversions"], same["model_conversions"])


def test_calibrated_credit_never_exceeds_the_conversions():
    tests = _tests(("search", D(2024, 1, 1), D(2024, 12, 31), 80.0, 75.0, 90.0))
    frame, summary = cal.calibrate(_credit(), "m", tests, None, total_conversions=100.0)  # path-level: whole period
    assert frame["calibrated_conversions"].sum() == pytest.approx(100.0)
    assert summary["capped_at_total"]
    assert frame.set_index("channel").loc["search", "calibrated_conversions"] == pytest.approx(75.0)


def test_campaign_level_runs_pool_a_channel_s_campaigns():
    credit = pd.DataFrame([("meta:a", "m", 10.0, 1.0), ("meta:b", "m", 30.0, 3.0), ("search", "m", 20.0, 2.0)],
                          columns=["channel", "model", "conversions", "value"])
    tests = _tests(("meta", D(2024, 1, 1), D(2024, 1, 31), 20.0, 15.0, 20.0))
    frame, _ = cal.calibrate(credit, "m", tests, None, 1000.0)
    f = frame.set_index("channel")
    assert f.loc["meta:a", "calibrated_conversions"] == pytest.approx(5.0)
    assert f.loc["meta:b", "calibrated_conversions"] == pytest.approx(15.0)
    cmp = cal.compare(credit, tests, None)
    assert cmp["credit_in_period"].iloc[0] == pytest.approx(40.0) and not cmp["within_interval"].iloc[0]


def test_calibration_errors_say_why():
    with pytest.raises(cal.CalibrationError, match="at least one lift test"):
        cal.calibrate(_credit(), "m", _tests(), None, 10.0)
    with pytest.raises(cal.CalibrationError, match="no tested channel is in this run"):
        cal.calibrate(_credit(), "m", _tests(("tiktok", D(2024, 1, 1), D(2024, 1, 2), 1.0, 0.0, 2.0)), None, 10.0)
    with pytest.raises(cal.CalibrationError, match="no credit for model"):
        cal.calibrate(_credit(), "nope", _tests(("search", D(2024, 1, 1), D(2024, 1, 2), 1.0, 0.0, 2.0)), None, 10.0)


def test_channel_days_counts_each_converting_journey_once_per_channel():
    day = 86_400 * 10**9
    j = Journeys(("a", "b"), np.array([0, 3, 4, 6]), np.array([0, 0, 1, 1, 0, 1], dtype=np.int32),
                 np.zeros(6, dtype=np.int64), np.array([19_800, 19_800, 19_801], dtype=np.int64) * day,
                 np.array([1.0, 0.0, 1.0]), np.zeros(3), np.array(["u", "v", "w"], dtype=object),
                 np.array(["o1", None, "o2"], dtype=object))
    days = cal.channel_days(j)
    d0, d1 = (D(1970, 1, 1) + dt.timedelta(days=19_800)).isoformat(), (D(1970, 1, 1) + dt.timedelta(days=19_801)).isoformat()
    assert days == {"a": {d0: 1.0, d1: 1.0}, "b": {d0: 1.0, d1: 1.0}}


@pytest.fixture
def db(tmp_path):
    eng = make_engine("sqlite:///" + str(tmp_path / "cal.db"))
    touch, conv = make_events(n_users=300, seed=3)
    ds = add_event_dataset(eng, "default", touch, conv)
    yield eng, ds
    eng.dispose()


def test_calibrated_run_is_a_new_stored_run_the_optimizer_reads(db):
    eng, ds = db
    run = ar.execute_run(eng, "default", ar.RunParams(ds, ("last", "data_driven")))
    tid = lift_store.add_lift_test(eng, "default", cal.LiftResult("search", D(2024, 1, 1), D(2024, 12, 31), 5.0, 4.0, 6.0, "geo"))
    tests = lift_store.list_lift_tests(eng, "default")
    assert tests["id"].tolist() == [tid] and tests["low"].tolist() == [4.0]
    new = lift_store.store_calibrated_run(eng, "default", run.id, "data_driven")
    assert new.id != run.id and not new.reused
    assert set(new.table["model"]) == {"last", "data_driven", "data_driven_calibrated"}
    search = new.table[(new.table["model"] == "data_driven_calibrated") & (new.table["channel"] == "search")]
    assert 4.0 - 1e-9 <= float(search["conversions"].iloc[0]) <= 6.0 + 1e-9  # the test covers the whole data set
    again = lift_store.store_calibrated_run(eng, "default", run.id, "data_driven")
    assert again.id == new.id and again.reused  # same calibration: reused
    with pytest.raises(cal.CalibrationError, match="already calibrated"):
        lift_store.store_calibrated_run(eng, "default", new.id, "data_driven")
    assert "calibrated" in ar.list_runs(eng, "default").set_index("id").loc[new.id, "label"]
    credit = opt_session.run_credit(eng, "default", new.id)
    assert "data_driven_calibrated" in opt_session.run_models(credit)
    assert ar.load_run(eng, "default", run.id).table.equals(run.table)  # the parent run never changes
    lift_store.delete_lift_test(eng, "default", tid)
    assert lift_store.list_lift_tests(eng, "default").empty
    with pytest.raises(cal.CalibrationError, match="does not exist"):
        lift_store.delete_lift_test(eng, "default", tid)


def test_lift_tests_belong_to_their_workspace(db):
    eng, _ = db
    lift_store.add_lift_test(eng, "default", cal.LiftResult("search", D(2024, 1, 1), D(2024, 1, 31), 5.0, 4.0, 6.0))
    assert lift_store.list_lift_tests(eng, "other").empty
