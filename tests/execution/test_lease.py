"""Two executors never apply the same change: the executor's lease (heartbeat) and the per-change claim.

Both tests run on SQLite and on PostgreSQL (the suite's parametrized ``engine``).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from core import execute as ex
from core.changes import load_plan
from core.platforms.sandbox import SandboxPlatform

from .conftest import WS, approved_plan, budget_drafts, expire_lease


class Gate(SandboxPlatform):
    """The sandbox, counting writes per entity, whose ``hold_at``-th apply waits until released."""

    def __init__(self, *a, hold_at=2, **kw):
        super().__init__(*a, **kw)
        self.writes: Counter = Counter()
        self.hold_at, self.n = hold_at, 0
        self.entered, self.release = threading.Event(), threading.Event()
        self.lock = threading.Lock()

    def apply(self, change):
        with self.lock:
            self.n += 1
            n = self.n
        if n == self.hold_at:
            self.entered.set()
            assert self.release.wait(30)
        self.writes[change.external_id] += 1
        return super().apply(change)


def test_resume_from_another_thread_while_executing_is_refused(engine, fast):
    sb = Gate(engine, WS, seed=2, n_meta=1, n_google=2, history_days=2, hold_at=2)
    drafts = budget_drafts(sb)
    pid, h = approved_plan(engine, sb, drafts)
    out: dict = {}
    first = threading.Thread(target=lambda: out.setdefault("a", ex.execute(engine, WS, pid, h, sb, actor="tab1", retry=fast)))
    first.start()
    assert sb.entered.wait(30)  # tab 1 is in the middle of writing change 2
    second_errors = []

    def resume():
        try:
            ex.execute(engine, WS, pid, h, sb, actor="tab2", retry=fast, resume=True)
        except ex.PlanClaimError as exc:
            second_errors.append(str(exc))

    second = threading.Thread(target=resume)
    second.start()
    second.join(30)
    sb.release.set()
    first.join(30)
    assert second_errors and "still being executed elsewhere" in second_errors[0]
    assert out["a"].status == "completed"
    assert all(n == 1 for n in sb.writes.values()) and len(sb.writes) == len(drafts)  # each change written once
    view = load_plan(engine, WS, pid)
    assert [c.status for c in view.changes] == ["applied"] * len(drafts)
    assert [e["actor"] for e in view.events if e["to"] == "executing"] == ["tab1"]


def test_takeover_after_a_crash_mid_write_settles_the_claimed_change_once(engine, fast):
    """Executor 1 dies inside the platform call of change 2 (after the write); executor 2 resumes from
    another thread once the lease ran out: change 2 is found at its new value, not written again."""
    sb = Gate(engine, WS, seed=2, n_meta=1, n_google=2, history_days=2, hold_at=99)
    drafts = budget_drafts(sb)
    pid, h = approved_plan(engine, sb, drafts)
    sb.inject("crash_after", on_call=2)

    def dies():
        with pytest.raises(BaseException):
            ex.execute(engine, WS, pid, h, sb, actor="tab1", retry=fast)

    t = threading.Thread(target=dies)
    t.start()
    t.join(30)
    assert [c.status for c in load_plan(engine, WS, pid).changes][:2] == ["applied", "applying"]
    expire_lease(engine, pid)
    res: list = []
    t2 = threading.Thread(target=lambda: res.append(ex.execute(engine, WS, pid, h, sb, actor="tab2", retry=fast, resume=True)))
    t2.start()
    t2.join(30)
    assert res and res[0].status == "completed"
    assert all(n == 1 for n in sb.writes.values()) and len(sb.writes) == len(drafts)
    assert "already at the new value" in load_plan(engine, WS, pid).rows[1]["response"]["note"]


def test_executor_that_lost_its_lease_stops_before_writing(eng, sandbox, fast):
    """A takeover during a slow run: the first executor's next claim fails and it stops, writing nothing more."""
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    taken: list = []

    def takeover(done, total, info):
        if done == 1 and not taken:
            expire_lease(eng, pid)
            taken.append(ex.execute(eng, WS, pid, h, sandbox, actor="tab2", retry=fast, resume=True))

    res = ex.execute(eng, WS, pid, h, sandbox, actor="tab1", retry=fast, progress=takeover)
    assert res.interrupted and taken[0].status == "completed"
    assert sandbox.calls["apply"] == 4  # 1 by tab1, 3 by tab2: nothing twice
