"""A real ``kill -9`` of an executing process, mid-plan and mid-rollback, on SQLite and PostgreSQL.

The child applies through the sandbox; after its second write has landed on the platform (the
sandbox's own transaction committed) it hangs, and the test kills it with SIGKILL, the way a killed
container or OOM kill ends it: no ``finally``, no ``except``. The resume must send only what was
never sent, settle the in-flight change from its live value, and History must show the truth.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import execute as ex
from core.changes import load_plan
from core.platforms.sandbox import SandboxPlatform

from .conftest import WS, TODAY, approved_plan, budget_drafts

CHILD = textwrap.dedent("""
    import datetime as dt, sys, time
    from core import execute as ex
    from core.platforms.sandbox import SandboxPlatform
    from core.store.db import make_engine

    url, plan_id, digest, marker = sys.argv[1:]
    eng = make_engine(url)
    sb = SandboxPlatform(eng, "%s", seed=3, n_meta=2, n_google=2, history_days=10, today=dt.date(2026, 6, 1))
    real_apply, writes = sb.apply, []

    def apply(change):
        result = real_apply(change)  # committed on the platform
        writes.append(change.external_id)
        if len(writes) == 2:
            open(marker, "w").write(change.external_id)
            time.sleep(600)  # hangs before the executor hears the answer: killed here
        return result

    sb.apply = apply
    ex.execute(eng, "%s", int(plan_id), digest, sb, actor="alice", lease=dt.timedelta(seconds=2))
""" % (WS, WS))

LEASE = dt.timedelta(seconds=2)


def kill_mid_plan(url: str, plan_id: int, digest: str, tmp_path: Path) -> str:
    """Run the plan in a child process, SIGKILL it right after its second write; returns that change's entity id."""
    marker = tmp_path / f"written-{plan_id}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(plan_id), digest, str(marker)],
                             cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the child ended before the kill: {child.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "the child never reached its second write"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return marker.read_text()


def resume_after_lease(engine, sandbox, plan_id: int, digest: str, fast):
    with pytest.raises(ex.PlanClaimError):  # not before the dead executor's lease ran out
        ex.execute(engine, WS, plan_id, digest, sandbox, actor="bob", retry=fast, resume=True, lease=dt.timedelta(minutes=5))
    time.sleep(LEASE.total_seconds() + 0.5)
    return ex.execute(engine, WS, plan_id, digest, sandbox, actor="bob", retry=fast, resume=True, lease=LEASE)


def test_kill_9_mid_plan_then_resume_applies_each_change_once(engine, db_url, tmp_path, fast):
    sandbox = SandboxPlatform(engine, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=TODAY)
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(engine, sandbox, drafts)
    in_flight = kill_mid_plan(db_url, pid, h, tmp_path)
    view = load_plan(engine, WS, pid)
    assert view.status == "executing" and [c.status for c in view.changes] == ["applied", "applying", "pending", "pending"]
    assert in_flight == drafts[1].external_id
    res = resume_after_lease(engine, sandbox, pid, h, fast)
    assert res.status == "completed" and res.counts == {"applied": 4}
    assert sandbox.calls.get("apply", 0) == 2  # only the two never sent; the in-flight one is found, not re-sent
    rows = load_plan(engine, WS, pid).rows
    assert "already at the new value" in rows[1]["response"]["note"]
    for d in drafts:
        assert sandbox.read_live(d.entity_type, d.external_id, "budget") == d.new_value


def test_kill_9_mid_rollback_then_resume_restores_every_old_value(engine, db_url, tmp_path, fast):
    sandbox = SandboxPlatform(engine, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=TODAY)
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(engine, sandbox, drafts)
    assert ex.execute(engine, WS, pid, h, sandbox, actor="alice", retry=fast).status == "completed"
    rb = ex.rollback(engine, WS, pid, actor="alice")
    pr = ex.preview(engine, WS, rb, sandbox, actor="alice")
    ex.approve(engine, WS, rb, pr.content_hash, actor="alice")
    kill_mid_plan(db_url, rb, pr.content_hash, tmp_path)
    with pytest.raises(Exception, match="already open"):  # the half-done rollback is the one to finish, not a second
        ex.rollback(engine, WS, pid, actor="alice")
    before = sandbox.calls.get("apply", 0)
    res = resume_after_lease(engine, sandbox, rb, pr.content_hash, fast)
    assert res.status == "completed" and sandbox.calls["apply"] - before == 2
    for d in drafts:
        assert sandbox.read_live(d.entity_type, d.external_id, "budget") == d.old_value
