"""Adversarial pass over execution: lost answers, hostile plan values, money at the boundary."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import ChangePlanError, DraftChange, create_plan, load_plan

from .conftest import WS, approved_plan, budget_drafts


def run(eng, sandbox, pid, h, fast, **kw):
    return ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast, **kw)


# ------------------------------------------------------------------ "did it apply?"
def test_a_write_whose_answer_was_lost_is_found_not_sent_again(eng, sandbox, fast):
    """The write reached the platform, the answer timed out: the retry reads the live value first."""
    d = budget_drafts(sandbox)[0]
    pid, h = approved_plan(eng, sandbox, [d])
    sandbox.inject("timeout_after", match=d.external_id)
    res = run(eng, sandbox, pid, h, fast)
    assert res.status == "completed" and res.counts == {"applied": 1}
    assert sandbox.calls["apply"] == 1  # found on the platform, not sent a second time
    row = load_plan(eng, WS, pid).rows[0]
    assert row["attempts"] == 1 and "answer" in row["response"]["note"]
    assert sandbox.read_live("campaign", d.external_id, "budget") == d.new_value


def test_a_write_whose_answers_are_all_lost_is_recorded_as_applied_and_rolled_back(eng, sandbox, fast):
    """Every answer lost: History must say what the platform holds (applied), so rollback can undo it."""
    drafts = budget_drafts(sandbox)[:2]
    pid, h = approved_plan(eng, sandbox, drafts)
    sandbox.inject("timeout_after", match=drafts[0].external_id, times=10)
    res = run(eng, sandbox, pid, h, fast)
    assert sandbox.read_live("campaign", drafts[0].external_id, "budget") == drafts[0].new_value
    assert res.status == "completed" and res.counts == {"applied": 2}
    assert sandbox.calls["apply"] == 2
    rb = ex.rollback(eng, WS, pid, actor="alice")
    assert {c.external_id for c in load_plan(eng, WS, rb).changes} == {d.external_id for d in drafts}


def test_a_transient_error_before_the_write_is_still_a_failure(eng, sandbox, fast):
    """The live read decides: a platform that never wrote keeps the old value and the change fails."""
    d = budget_drafts(sandbox)[0]
    pid, h = approved_plan(eng, sandbox, [d])
    sandbox.inject("timeout", match=d.external_id, times=10)
    res = run(eng, sandbox, pid, h, fast)
    assert res.status == "failed" and res.counts == {"failed": 1}
    assert sandbox.read_live("campaign", d.external_id, "budget") == d.old_value


# ------------------------------------------------------------------ hostile plan values
@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity", "-Infinity", "1e30", Decimal("NaN"), Decimal("-Infinity"),
                                 "100000000000000000"])
def test_a_hostile_new_value_is_refused_when_the_plan_is_made(eng, sandbox, bad):
    d = budget_drafts(sandbox)[0]
    hostile = DraftChange(d.platform, d.account_id, d.entity_type, d.external_id, d.entity_name, "budget",
                          d.old_value, bad, d.currency, "hostile file", 50.0, False)
    with pytest.raises(ChangePlanError, match="change 1"):
        create_plan(eng, WS, [hostile], actor="alice")


# ------------------------------------------------------------------ two plans on one entity at once
class _HeldSandbox:
    """A sandbox whose first write waits until the test lets it go (a slow platform, one write in flight)."""

    def __init__(self, inner, started, release):
        self._inner, self._started, self._release, self._held = inner, started, release, False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def apply(self, change):
        if not self._held:
            self._held = True
            self._started.set()
            assert self._release.wait(20)
        return self._inner.apply(change)


def test_two_plans_changing_one_budget_at_once_send_one_write(engine, fast):
    """A manual plan and an autopilot plan on the same campaign: while one write is in flight, the other
    plan reads the old value too; it must not send a second, conflicting write that History calls applied."""
    import threading

    from core.platforms.sandbox import SandboxPlatform

    eng = engine
    sandbox = SandboxPlatform(eng, WS, seed=3, n_meta=1, n_google=1, history_days=2)

    d = budget_drafts(sandbox)[0]
    raise_, cut = d, DraftChange(d.platform, d.account_id, d.entity_type, d.external_id, d.entity_name, "budget",
                                 d.old_value, (d.old_value * Decimal("0.9")).quantize(Decimal("0.01")), d.currency,
                                 "autopilot cut", 90.0, True)
    pa, ha = approved_plan(eng, sandbox, [raise_])
    pb, hb = approved_plan(eng, sandbox, [cut])
    started, release = threading.Event(), threading.Event()
    slow = _HeldSandbox(sandbox, started, release)
    outcome = {}
    t = threading.Thread(target=lambda: outcome.setdefault("a", run(eng, slow, pa, ha, fast)))
    t.start()
    assert started.wait(20)  # plan A read 'old' and its write is in flight
    res_b = run(eng, sandbox, pb, hb, fast)
    release.set()
    t.join(30)
    live = sandbox.read_live(d.entity_type, d.external_id, "budget")
    applied = [(p, v) for p, v in ((pa, raise_.new_value), (pb, cut.new_value))
               if load_plan(eng, WS, p).changes[0].status == "applied"]
    assert applied == [(pa, raise_.new_value)] and live == raise_.new_value  # one write; History matches the platform
    row = load_plan(eng, WS, pb).rows[0]
    assert res_b.status == "failed" and row["error_code"] == "concurrent" and f"#{pa}" in row["error_message"]


def test_a_budget_changed_by_someone_else_during_a_retry_wait_is_not_overwritten(eng, sandbox):
    """429 with Retry-After; meanwhile a person sets the budget in the platform's UI: the retry must not
    overwrite it (the same rule as the stale check before the first write)."""
    from core.platforms.base import ChangeRequest

    d = budget_drafts(sandbox)[0]
    pid, h = approved_plan(eng, sandbox, [d])
    sandbox.inject("rate_limit", match=d.external_id, retry_after=30)

    def someone_edits(seconds):
        sandbox.apply(ChangeRequest("ui", d.entity_type, d.external_id, "budget", d.old_value, Decimal("77.00")))

    res = ex.execute(eng, WS, pid, h, sandbox, actor="alice",
                     retry=ex.RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=60, sleep=someone_edits))
    assert sandbox.read_live(d.entity_type, d.external_id, "budget") == Decimal("77.00")
    row = load_plan(eng, WS, pid).rows[0]
    assert res.counts == {"stale": 1} and row["error_code"] == "stale" and "77" in row["error_message"]


def test_a_plan_in_another_currency_than_the_account_is_refused_by_the_sandbox(eng, sandbox, fast):
    """100 EUR is not 100 USD: the sandbox (the default platform) refuses it as Meta and Google do."""
    d = budget_drafts(sandbox)[0]
    euros = DraftChange(d.platform, d.account_id, d.entity_type, d.external_id, d.entity_name, "budget",
                        d.old_value, d.new_value, "EUR", "hostile file", 50.0, False)
    pid = create_plan(eng, WS, [euros], actor="alice")
    pr = ex.preview(eng, WS, pid, sandbox, actor="alice")
    assert not pr.validations["1"]["ok"] and "EUR" in pr.validations["1"]["message"]
    from core.platforms.base import ChangeRequest, PermanentPlatformError

    with pytest.raises(PermanentPlatformError, match="bills in USD"):
        sandbox.apply(ChangeRequest("x", d.entity_type, d.external_id, "budget", d.old_value, d.new_value, "EUR"))
    assert sandbox.read_live(d.entity_type, d.external_id, "budget") == d.old_value
