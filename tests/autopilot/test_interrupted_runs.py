"""A scheduled run killed while it executed its plan: the next run finishes that plan before anything else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import update

from core.autopilot.runner import run_schedule
from core.autopilot.schedules import runs_frame
from core.changes import load_plan, plans_frame
from core.platforms.base import ChangeRequest
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


def test_a_resumed_run_funds_its_increases_only_from_the_decreases_that_applied(engine, sandbox):
    """Killed in its first write, a decrease (the decreases go first); while it is dead someone trims that campaign by 1.00, so the resume finds the
    decrease stale. The increases it funded are reduced or held (each naming it), and no write of the resume or of
    the day's new plan takes the campaigns' total above the total the run approved (less that trim)."""
    total0 = campaign_total(sandbox)
    sid = make_schedule(engine, sandbox)
    sandbox.inject("crash", on_call=1)  # the process dies in its first write (nothing written)
    with pytest.raises(SandboxCrash):
        run_schedule(engine, WS, sid, platform=sandbox, due_at=at(START), now=at(START))
    plans = plans_frame(engine, WS)
    (pid,) = plans.loc[plans["status"] == "executing", "id"].tolist()
    first = load_plan(engine, WS, pid)
    moves = [(c.status, c.new_value < c.old_value) for c in first.changes if c.field == "budget"]
    assert ("applying", True) in moves and all(st == "pending" for st, down in moves if not down), moves
    stale = next(c for c in first.changes if c.status == "applying")
    trimmed = stale.old_value - Decimal("1.00")
    sandbox.apply(ChangeRequest("x", "campaign", stale.external_id, "budget", stale.old_value, trimmed))
    with transaction(engine, WS) as s:
        s.execute(update(ChangePlan).where(ChangePlan.id == pid).values(heartbeat_at=utcnow() - dt.timedelta(hours=20))
                  .execution_options(synchronize_session=False))
        s.execute(update(AutopilotRun).values(started_at=utcnow() - dt.timedelta(hours=20))
                  .execution_options(synchronize_session=False))
    sandbox.advance_days(1)
    totals, real_apply = [], sandbox.apply

    def apply(change):
        out = real_apply(change)
        totals.append(campaign_total(sandbox))
        return out

    sandbox.apply = apply
    run_schedule(engine, WS, sid, platform=sandbox, due_at=at(START + dt.timedelta(days=1)),
                 now=at(START + dt.timedelta(days=1)))
    done = load_plan(engine, WS, pid)
    by = {c.seq: c for c in done.changes}
    rows = {r["seq"]: r for r in done.rows}
    assert by[stale.seq].status == "stale"
    short = [c for c in done.changes if c.status in ("held", "reduced")]
    assert short and all(f"(change {stale.seq}," in rows[c.seq]["error_message"] and "was stale" in rows[c.seq]["error_message"]
                         for c in short)
    assert totals and max(totals) <= total0 - Decimal("1.00"), (totals, total0)
