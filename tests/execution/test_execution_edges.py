"""Execution edges (issue 11 §2, §6): a call slower than the lease, a busy SQLite database, an error no
adapter mapped, a change already at its new value, and rolling a plan back (once, over live values)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import ChangePlanError, load_plan, rollback_state
from core.platforms.base import PLATFORM_CALL_TIMEOUT, ChangeRequest
from core.platforms.sandbox import SandboxPlatform
from core.store.db import DatabaseBusy, make_engine

from .conftest import TODAY, WS, approved_plan, budget_drafts


class Slow(SandboxPlatform):
    """The sandbox whose ``apply`` takes ``delay`` seconds (a slow platform), counting writes per entity."""

    def __init__(self, *a, delay=0.0, slow_call=1, **kw):
        super().__init__(*a, **kw)
        self.delay, self.slow_call, self.n = delay, slow_call, 0
        self.writes: Counter = Counter()
        self.in_call = threading.Event()

    def apply(self, change):
        self.n += 1
        if self.n == self.slow_call:
            self.in_call.set()
            time.sleep(self.delay)
        self.writes[change.external_id] += 1
        return super().apply(change)


# --------------------------------------------------------------------------- §6 a call longer than the lease
def test_a_call_longer_than_the_lease_is_never_sent_twice(eng, fast):
    """The first executor's platform call takes 4 leases; a Resume from another tab during it is refused
    (the lease is renewed while the call is in flight), and every change is written exactly once."""
    lease = dt.timedelta(seconds=0.4)
    sb = Slow(eng, WS, seed=3, n_meta=1, n_google=1, history_days=3, today=TODAY, delay=1.6, slow_call=1)
    drafts = budget_drafts(sb)
    pid, h = approved_plan(eng, sb, drafts)
    out: dict = {}
    first = threading.Thread(target=lambda: out.setdefault(
        "a", ex.execute(eng, WS, pid, h, sb, actor="tab1", retry=fast, lease=lease)))
    first.start()
    assert sb.in_call.wait(10)
    time.sleep(2.5 * lease.total_seconds())  # well past the lease, the call still in flight
    with pytest.raises(ex.PlanClaimError, match="still being executed elsewhere"):
        ex.execute(eng, WS, pid, h, sb, actor="tab2", retry=fast, resume=True, lease=lease)
    first.join(20)
    assert out["a"].status == "completed"
    assert set(sb.writes.values()) == {1} and len(sb.writes) == len(drafts)
    assert [e["actor"] for e in load_plan(eng, WS, pid).events if e["to"] == "executing"] == ["tab1"]


def test_every_platform_call_times_out_well_inside_the_lease():
    from core.platforms.credentials import MetaCredentials
    from core.platforms.google import GoogleAdsPlatform
    from core.platforms.meta import MetaAdsPlatform

    assert PLATFORM_CALL_TIMEOUT * 3 < ex.LEASE.total_seconds()
    meta = MetaAdsPlatform(MetaCredentials(access_token="EAAtoken-123456", app_secret="secret-123456", ad_account_id="1"))
    assert meta.api._session.timeout == PLATFORM_CALL_TIMEOUT
    import inspect

    assert inspect.signature(GoogleAdsPlatform).parameters["timeout"].default == PLATFORM_CALL_TIMEOUT


# --------------------------------------------------------------------------- §6 already at the new value
def test_a_change_already_at_its_new_value_is_unchanged_not_applied(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    first = drafts[0]
    sandbox.apply(ChangeRequest("x", first.entity_type, first.external_id, "budget", first.old_value, first.new_value))
    sends = sandbox.calls["apply"]
    res = ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast)
    assert res.status == "completed" and res.counts == {"applied": len(drafts) - 1, "unchanged": 1}
    assert sandbox.calls["apply"] == sends + len(drafts) - 1  # not sent
    view = load_plan(eng, WS, pid)
    assert view.changes[0].status == "unchanged"
    assert view.rows[0]["response"]["note"] == "already at the new value (not sent)"
    assert "interruption" not in str(view.rows[0])
    # the rollback leaves the entity someone else set alone
    rb = load_plan(eng, WS, ex.rollback(eng, WS, pid, actor="alice"))
    assert first.external_id not in {c.external_id for c in rb.changes} and len(rb.changes) == len(drafts) - 1


# --------------------------------------------------------------------------- §6 rollback once, over live values
def _execute(eng, platform, pid, fast):
    pr = ex.preview(eng, WS, pid, platform, actor="alice")
    ex.approve(eng, WS, pid, pr.content_hash, actor="alice")
    return pr, ex.execute(eng, WS, pid, pr.content_hash, platform, actor="alice", retry=fast)


def test_a_rolled_back_plan_offers_no_second_rollback(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast)
    rb = ex.rollback(eng, WS, pid, actor="alice")
    with pytest.raises(ChangePlanError, match=f"already open as plan #{rb}"):
        ex.rollback(eng, WS, pid, actor="bob")
    assert not rollback_state(eng, WS, pid).can_roll_back
    _, res = _execute(eng, sandbox, rb, fast)
    assert res.status == "completed"
    state = rollback_state(eng, WS, pid)
    assert state.remaining == 0 and not state.can_roll_back and state.rollbacks == ((rb, "completed"),)
    assert f"rolled back by plan #{rb} (completed)" in state.describe()
    with pytest.raises(ChangePlanError, match=f"already rolled back by plan #{rb}"):
        ex.rollback(eng, WS, pid, actor="bob")


def test_a_cancelled_rollback_can_be_made_again(eng, sandbox, fast):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast)
    rb = ex.rollback(eng, WS, pid, actor="alice")
    ex.cancel(eng, WS, rb, actor="alice")
    assert rollback_state(eng, WS, pid).can_roll_back
    assert ex.rollback(eng, WS, pid, actor="alice") != rb


def test_rollback_preview_reads_live_values_and_skips_what_someone_else_changed(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast)
    changed = drafts[0]
    theirs = (changed.new_value * Decimal("1.1")).quantize(Decimal("0.01"))
    sandbox.apply(ChangeRequest("x", changed.entity_type, changed.external_id, "budget", changed.new_value, theirs))
    rb = ex.rollback(eng, WS, pid, actor="alice")
    pr = ex.preview(eng, WS, rb, sandbox, actor="alice")
    view = load_plan(eng, WS, rb)
    seq = next(c.seq for c in view.changes if c.external_id == changed.external_id)
    verdict = pr.validations[str(seq)]
    assert not verdict["ok"] and verdict["code"] == "changed_since"
    assert "changed since by someone else" in verdict["message"] and str(theirs) in verdict["message"]
    assert sum(1 for v in pr.validations.values() if v["ok"]) == len(drafts) - 1
    ex.approve(eng, WS, rb, pr.content_hash, actor="alice")
    res = ex.execute(eng, WS, rb, pr.content_hash, sandbox, actor="alice", retry=fast)
    assert res.counts == {"applied": len(drafts) - 1, "blocked": 1}
    assert sandbox.read_live(changed.entity_type, changed.external_id, "budget") == theirs  # their change stays
    for d in drafts[1:]:
        assert sandbox.read_live(d.entity_type, d.external_id, "budget") == d.old_value
    row = next(r for r in load_plan(eng, WS, rb).rows if r["seq"] == seq)
    assert row["error_code"] == "changed_since"
    # their change is settled: nothing is left to roll back, so no second rollback is offered
    assert rollback_state(eng, WS, pid).remaining == 0


# --------------------------------------------------------------------------- §2 a busy SQLite database
@pytest.fixture
def impatient(tmp_path, monkeypatch):
    """A database whose writes wait 0.3 s for the lock, and executor patience of 1 s to start."""
    path = tmp_path / "busy.db"
    eng = make_engine(f"sqlite:///{path}", busy_timeout=0.3)
    monkeypatch.setattr(ex, "START_PATIENCE", 1.0)
    yield eng, path
    eng.dispose()


def hold_write_lock(path, seconds: float | None = None):
    """Another process's long write (a large import): a raw connection holding SQLite's write lock."""
    conn = sqlite3.connect(path, timeout=0, check_same_thread=False)
    conn.isolation_level = None
    conn.execute("BEGIN IMMEDIATE")
    if seconds is not None:
        threading.Timer(seconds, lambda: (conn.execute("COMMIT"), conn.close())).start()
    return conn


def test_an_execution_that_cannot_get_the_database_does_not_start_and_says_why(impatient, fast):
    eng, path = impatient
    sb = SandboxPlatform(eng, WS, seed=3, n_meta=1, n_google=1, history_days=3, today=TODAY)
    pid, h = approved_plan(eng, sb, budget_drafts(sb))
    sends = sb.calls.get("apply", 0)
    said: list = []
    lock = hold_write_lock(path)
    try:
        with pytest.raises(DatabaseBusy, match="was not started and nothing was sent"):
            ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast, progress=lambda d, t, i: said.append(i))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert said and all(i["status"] == "waiting" and "waiting for another write" in i["note"] for i in said)
    view = load_plan(eng, WS, pid)
    assert view.status == "approved" and {c.status for c in view.changes} == {"pending"}  # never half-started
    assert sb.calls.get("apply", 0) == sends
    assert ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast).status == "completed"


def test_a_write_that_must_wait_mid_execution_says_so_and_applies_each_change_once(impatient, fast):
    eng, path = impatient
    sb = Slow(eng, WS, seed=3, n_meta=1, n_google=1, history_days=3, today=TODAY)
    drafts = budget_drafts(sb)
    pid, h = approved_plan(eng, sb, drafts)
    said: list = []

    def progress(done, total, info):
        said.append(info)
        if done == 1 and info["status"] == "applied":
            hold_write_lock(path, seconds=1.5)  # an import grabs the database between two changes

    res = ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast, progress=progress)
    assert res.status == "completed"
    assert any(i["status"] == "waiting" for i in said)
    assert set(sb.writes.values()) == {1} and len(sb.writes) == len(drafts)


# --------------------------------------------------------------------------- §2 an error no adapter mapped
class Broken(SandboxPlatform):
    def apply(self, change):
        raise TypeError("string indices must be integers, not 'str' (an SDK choking on an HTML page)")


def test_an_unmapped_error_stops_cleanly_with_an_error_id_and_can_be_resumed_at_once(eng, fast, every_log_record):
    sb = Broken(eng, WS, seed=3, n_meta=1, n_google=1, history_days=3, today=TODAY)
    pid, h = approved_plan(eng, sb, budget_drafts(sb))
    with pytest.raises(ex.ExecutionStopped, match=r"error id [0-9a-f]{10}") as info:
        ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast)
    error_id = str(info.value).split("error id ")[1][:10]
    assert any(error_id in r.getMessage() and r.exc_text and "TypeError" in r.exc_text for r in every_log_record.records)
    view = load_plan(eng, WS, pid)
    assert view.status == "executing" and view.changes[0].status == "applying"
    assert ex.executor_heartbeat(eng, WS, pid) is None  # the lease is released: no two-minute wait
    good = SandboxPlatform(eng, WS, seed=3, n_meta=1, n_google=1, history_days=3, today=TODAY)
    res = ex.execute(eng, WS, pid, h, good, actor="alice", retry=fast, resume=True)
    assert res.status == "completed"
