"""A scheduled run killed while it executed its plan: the next run finishes that plan before anything else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import update

from core.autopilot.runner import run_schedule
from core.autopilot.schedules import runs_frame
from core.changes import load_plan, plans_frame
from core.platforms.sandbox import SandboxCrash
from core.store.db import transaction
from core.store.models import AutopilotRun, ChangePlan, utcnow

from .conftest import START, WS, at, make_schedule


def campaign_total(sb) -> Decimal:
    return sum((e.daily_budget for e in sb.list_entities() if e.entity_type == "campaign"), Decimal(0))


def test_a_run_killed_mid_execution_is_finished_by_the_next_run(engine, sandbox):
    """The auto-executed plan is balanced (raises paid for by cuts). Killed after its first write, the account
    spends more every day until the plan is finished: the next run resumes it (live values decide), so the
    total comes back, and no change of it is left pending or sent twice."""
    total0 = campaign_total(sandbox)
    sid = make_schedule(engine, sandbox)
    sandbox.inject("crash", on_call=2)  # the process dies before its second write
    with pytest.raises(SandboxCrash):
        run_schedule(engine, WS, sid, platform=sandbox, due_at=at(START), now=at(START))
    plans = plans_frame(engine, WS)
    (pid,) = plans.loc[plans["status"] == "executing", "id"].tolist()
    first = load_plan(engine, WS, pid)
    assert [c.status for c in first.changes].count("applied") == 1 and len(first.changes) > 1
    with transaction(engine, WS) as s:  # a day later: the dead executor's lease ran out long ago
        s.execute(update(ChangePlan).where(ChangePlan.id == pid).values(heartbeat_at=utcnow() - dt.timedelta(hours=20))
                  .execution_options(synchronize_session=False))
        s.execute(update(AutopilotRun).values(started_at=utcnow() - dt.timedelta(hours=20))
                  .execution_options(synchronize_session=False))
    sandbox.advance_days(1)
    calls = sandbox.calls["apply"]
    dry = run_schedule(engine, WS, sid, platform=sandbox, dry_run=True, now=at(START + dt.timedelta(days=1)))
    assert sandbox.calls["apply"] == calls and load_plan(engine, WS, pid).status == "executing"  # a dry run sends nothing
    assert any(f"plan #{pid}" in n and "a real run resumes it" in n for n in dry.summary["notes"])
    res = run_schedule(engine, WS, sid, platform=sandbox, due_at=at(START + dt.timedelta(days=1)),
                       now=at(START + dt.timedelta(days=1)))
    done = load_plan(engine, WS, pid)
    assert done.status == "completed", [(c.status, c.external_id) for c in done.changes]
    assert any(f"plan #{pid}" in n and "resumed" in n for n in res.summary["notes"]), res.summary["notes"]
    runs = runs_frame(engine, WS, sid).set_index("due_at")["status"].tolist()
    assert runs == ["completed", "interrupted"]  # newest first: the killed run no longer shows as running
    assert abs(campaign_total(sandbox) - total0) <= Decimal("0.01") * len(done.changes)
    # the first write, the call the process died in (it wrote nothing), the rest once each, then today's run
    assert sandbox.calls["apply"] == 2 + (len(first.changes) - 1) + len(res.summary["executed"])
