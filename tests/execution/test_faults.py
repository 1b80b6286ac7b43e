"""Fault injection: retries, permanent errors, stale values, crashes and resume, double confirmation."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import load_plan
from core.platforms.base import ChangeRequest
from core.platforms.sandbox import SandboxCrash

from .conftest import WS, approved_plan, budget_drafts, expire_lease


def run(eng, sandbox, pid, h, fast, **kw):
    return ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast, **kw)


def test_transient_error_is_retried_with_backoff(eng, sandbox, fast, sleeps):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    sandbox.inject("transient", on_call=2)
    sandbox.inject("timeout", on_call=3)
    res = run(eng, sandbox, pid, h, fast)
    assert res.status == "completed"
    rows = load_plan(eng, WS, pid).rows
    assert [r["attempts"] for r in rows] == [1, 3, 1, 1]
    assert len(sleeps.waits) == 2 and all(0 < w <= 0.05 for w in sleeps.waits)


def test_rate_limit_honours_retry_after_capped(eng, sandbox, sleeps):
    policy = ex.RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=2.0, sleep=sleeps)
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox)[:1])
    sandbox.inject("rate_limit", on_call=1, retry_after=1.5)
    sandbox.inject("rate_limit", on_call=2, retry_after=60)
    res = ex.execute(eng, WS, pid, h, sandbox, actor="a", retry=policy)
    assert res.status == "completed" and sleeps.waits == [1.5, 2.0]


def test_transient_errors_that_persist_are_recorded_as_failed(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox)[:2])
    target = budget_drafts(sandbox)[0].external_id
    sandbox.inject("transient", match=target, times=10, code="503", message="service unavailable")
    res = run(eng, sandbox, pid, h, fast)
    assert res.status == "partially_failed" and res.counts == {"failed": 1, "applied": 1}
    row = load_plan(eng, WS, pid).rows[0]
    assert row["attempts"] == 4 and row["error_code"] == "503" and row["error_message"] == "service unavailable"


def test_permanent_error_is_recorded_with_code_message_and_request_id_not_retried(eng, sandbox, fast, sleeps):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    sandbox.inject("permanent", match=drafts[1].external_id, code="1885272", message="budget too low for this objective")
    res = run(eng, sandbox, pid, h, fast)
    assert res.status == "partially_failed" and res.counts == {"applied": 3, "failed": 1}
    view = load_plan(eng, WS, pid)
    row = view.rows[1]
    assert (row["attempts"], row["error_code"], row["error_message"]) == (1, "1885272", "budget too low for this objective")
    assert row["request_id"].startswith("sbx-req-") and row["response"]["error"] == "permanent"
    assert sleeps.waits == []
    assert sandbox.read_live("campaign", drafts[1].external_id, "budget") == drafts[1].old_value


def test_auth_error_stops_and_skips_the_rest(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    sandbox.inject("auth", on_call=2, message="token expired")
    res = run(eng, sandbox, pid, h, fast)
    assert res.counts == {"applied": 1, "failed": 1, "skipped": 2}
    rows = load_plan(eng, WS, pid).rows
    assert rows[1]["error_code"] == "190" and "token expired" in rows[2]["error_message"]
    assert sandbox.calls["apply"] == 2


def test_stale_change_is_skipped_with_the_reason(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    d = drafts[2]  # someone changes the budget in the platform's UI after the review
    sandbox.apply(ChangeRequest("x", d.entity_type, d.external_id, "budget", d.old_value, Decimal("77.00")))
    res = run(eng, sandbox, pid, h, fast)
    assert res.counts == {"applied": 3, "stale": 1}
    row = load_plan(eng, WS, pid).rows[2]
    assert row["error_code"] == "stale" and "live value 77" in row["error_message"] and "differs" in row["error_message"]
    assert sandbox.read_live("campaign", d.external_id, "budget") == Decimal("77.00")


def test_crash_between_two_changes_then_resume_applies_only_the_rest(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)

    def die_after_two(done, total, info):
        if done == 2:
            raise KeyboardInterrupt("browser closed / process killed")

    with pytest.raises(KeyboardInterrupt):
        run(eng, sandbox, pid, h, fast, progress=die_after_two)
    view = load_plan(eng, WS, pid)
    assert view.status == "executing"
    assert [c.status for c in view.changes] == ["applied", "applied", "pending", "pending"]
    assert ex.interrupted_plans(eng, WS) == [pid]
    # a plain second confirmation is refused; an explicit resume applies only the rest
    with pytest.raises(ex.PlanClaimError, match="already being executed"):
        run(eng, sandbox, pid, h, fast)
    # ... and so is a resume while the executor's heartbeat is fresh (it may still be running elsewhere)
    with pytest.raises(ex.PlanClaimError, match="still being executed elsewhere"):
        run(eng, sandbox, pid, h, fast, resume=True)
    expire_lease(eng, pid)
    before = sandbox.calls["apply"]
    res = run(eng, sandbox, pid, h, fast, resume=True)
    assert res.status == "completed" and sandbox.calls["apply"] - before == 2
    assert [e["note"] for e in load_plan(eng, WS, pid).events if e["to"] == "executing"][-1].startswith("execution resumed")
    for d in drafts:
        assert sandbox.read_live("campaign", d.external_id, "budget") == d.new_value


def test_crash_after_the_platform_wrote_is_not_applied_twice(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    sandbox.inject("crash_after", on_call=2)
    with pytest.raises(SandboxCrash):
        run(eng, sandbox, pid, h, fast)
    # the crashed change stays claimed ("applying"): its outcome is unknown until the live value is read
    assert [c.status for c in load_plan(eng, WS, pid).changes] == ["applied", "applying", "pending", "pending"]
    expire_lease(eng, pid)
    res = run(eng, sandbox, pid, h, fast, resume=True)
    assert res.status == "completed" and sandbox.calls["apply"] == 2 + 2  # the crashed write is found, not redone
    assert "already at the new value" in load_plan(eng, WS, pid).rows[1]["response"]["note"]


def test_double_confirmation_executes_once(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    assert run(eng, sandbox, pid, h, fast).status == "completed"
    with pytest.raises(ex.PlanClaimError, match="already executed"):
        run(eng, sandbox, pid, h, fast)
    with pytest.raises(ex.PlanClaimError):
        run(eng, sandbox, pid, h, fast, resume=True)
    assert sandbox.calls["apply"] == 4
    assert [e["to"] for e in load_plan(eng, WS, pid).events].count("executing") == 1


def test_double_confirmation_from_two_threads_executes_once(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def confirm():
        barrier.wait()
        try:
            outcomes.append(run(eng, sandbox, pid, h, fast).status)
        except ex.PlanClaimError:
            outcomes.append("refused")

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["completed", "refused"]
    assert sandbox.calls["apply"] == 4
    assert [e["to"] for e in load_plan(eng, WS, pid).events].count("executing") == 1


def test_confirming_with_another_hash_is_refused(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    with pytest.raises(ex.PlanHashMismatch):
        run(eng, sandbox, pid, "a" * 64, fast)
    assert load_plan(eng, WS, pid).status == "approved" and sandbox.calls.get("apply", 0) == 0


def test_progress_reports_every_change(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    seen = []
    run(eng, sandbox, pid, h, fast, progress=lambda d, t, info: seen.append((d, t, info["status"])))
    assert seen == [(1, 4, "applied"), (2, 4, "applied"), (3, 4, "applied"), (4, 4, "applied")]


def test_two_threads_execute_once_on_each_database(engine, fast):
    """The conditional claim holds on SQLite and on PostgreSQL (row lock, re-checked WHERE)."""
    from core.platforms.sandbox import SandboxPlatform

    sb = SandboxPlatform(engine, WS, seed=2, n_meta=1, n_google=2, history_days=2)
    pid, h = approved_plan(engine, sb, budget_drafts(sb))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def confirm():
        barrier.wait()
        try:
            outcomes.append(ex.execute(engine, WS, pid, h, sb, actor="x", retry=fast).status)
        except ex.PlanClaimError:
            outcomes.append("refused")

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["completed", "refused"] and sb.calls["apply"] == 3
