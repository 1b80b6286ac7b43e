"""Lift tests in the database, and calibrated credit stored as a run the Optimizer can use.

A calibrated run is a new stored run of the same data set: the parent run's credit table plus one more
model, ``<model>_calibrated``, whose credit `core.attribution.calibration.calibrate` computed from the
lift tests. Stored runs never change (the page caches them by id), so calibrating adds a run instead of
editing one; the Optimizer's attribution-adjusted value reads it like any other model of a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.attribution.calibration import TEST_COLUMNS, CalibrationError, LiftResult, calibrate
from core.attribution_runs import TABLE_COLUMNS, StoredRun, find_run, load_run, store_run
from core.access import Role, audit_target, guarded
from core.store.db import transaction
from core.store.models import LiftTest

CALIBRATED_SUFFIX = "_calibrated"


@guarded(Role.ANALYST, "lift-test.add", target="lift test of {result.channel}")
def add_lift_test(engine: Engine, workspace: str, result: LiftResult, *, actor=None) -> int:
    """Store one validated lift test; returns its id."""
    r = result.validated()
    with transaction(engine, workspace) as s:
        row = LiftTest(channel=r.channel, start_date=r.start_date, end_date=r.end_date,
                       incremental_conversions=r.incremental_conversions, low=r.low, high=r.high, source=r.source,
                       note=r.note)
        s.add(row)
        s.flush()
        audit_target(f"lift test #{row.id} {r.channel}")
        return int(row.id)


def list_lift_tests(engine: Engine, workspace: str) -> pd.DataFrame:
    """The workspace's lift tests (TEST_COLUMNS), oldest first."""
    with transaction(engine, workspace) as s:
        rows = s.scalars(select(LiftTest).order_by(LiftTest.id)).all()
        records = [{c: getattr(r, c) for c in TEST_COLUMNS} for r in rows]
    return pd.DataFrame.from_records(records, columns=TEST_COLUMNS)


@guarded(Role.ANALYST, "lift-test.delete", target="lift test #{test_id}")
def delete_lift_test(engine: Engine, workspace: str, test_id: int, *, actor=None) -> None:
    with transaction(engine, workspace) as s:
        row = s.scalars(select(LiftTest).where(LiftTest.id == int(test_id))).first()
        if row is None:
            raise CalibrationError(f"lift test {test_id} does not exist in this workspace")
        s.delete(row)


def calibration_inputs(run: StoredRun) -> tuple[dict | None, float]:
    """What calibration needs from a stored run: converting journeys per channel and day, total conversions."""
    return run.extra.get("channel_days"), float(run.extra.get("total_conversions") or 0.0)


def store_calibrated_run(engine: Engine, workspace: str, run_id: int, model: str, test_ids=None) -> StoredRun:
    """A new run: run ``run_id``'s credit plus ``<model>_calibrated`` (reused when the same calibration exists)."""
    parent = load_run(engine, workspace, run_id)
    if parent.extra.get("calibration"):
        raise CalibrationError("this run is already calibrated: calibrate the run it came from")
    tests = list_lift_tests(engine, workspace)
    if test_ids is not None:
        tests = tests[tests["id"].isin([int(i) for i in test_ids])]
    days, total = calibration_inputs(parent)
    frame, summary = calibrate(parent.table, model, tests, days, total)
    digest = hashlib.sha256(json.dumps([parent.key, model, tests.astype(str).values.tolist()]).encode()).hexdigest()
    found = find_run(engine, workspace, digest, parent.dataset_id)
    if found is not None:
        run = load_run(engine, workspace, found)
        run.reused = True
        return run
    name = model + CALIBRATED_SUFFIX
    total_cal = frame["calibrated_conversions"].sum()
    rows = pd.DataFrame({"channel": frame["channel"], "model": name, "conversions": frame["calibrated_conversions"],
                         "value": frame["calibrated_value"],
                         "share": frame["calibrated_conversions"] / total_cal if total_cal else 0.0})
    for c in ("conversions_low", "conversions_high", "value_low", "value_high"):
        rows[c] = np.nan
    table = pd.concat([parent.table[parent.table["model"] != name], rows[TABLE_COLUMNS]], ignore_index=True)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    summary = summary | {"from_run": parent.id, "at": stamp, "table": frame.to_dict(orient="list")}
    extra = dict(parent.extra) | {"calibration": summary}
    new_id = store_run(engine, workspace, parent.params, table, parent.details, parent.seconds, key=digest, extra=extra)
    return load_run(engine, workspace, new_id)
