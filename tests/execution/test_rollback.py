"""Rollback: the inverse plan restores the exact previous values through the same review."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import ChangePlanError, DraftChange, SafetySettings, create_plan, load_plan

from .conftest import WS, approved_plan, budget_drafts


def live_state(sandbox):
    return {(e.entity_type, e.external_id): (e.daily_budget, e.bid, e.status) for e in sandbox.list_entities()}


def mixed_drafts(sandbox):
    """Budgets down by 40 % (rollback is +66 %, beyond the limit), a bid up, a pause."""
    ents = sandbox.list_entities()
    camp = [e for e in ents if e.entity_type == "campaign"]
    kid = next(e for e in ents if e.bid is not None)
    out = [DraftChange("sandbox", "sandbox-1", e.entity_type, e.external_id, e.name, "budget", e.daily_budget,
                       (e.daily_budget * Decimal("0.6")).quantize(Decimal("0.01")), "USD", "cut", 60) for e in camp[:2]]
    out.append(DraftChange("sandbox", "sandbox-1", kid.entity_type, kid.external_id, kid.name, "bid", kid.bid,
                           (kid.bid + Decimal("0.37")), "USD", "raise bid", 60))
    out.append(DraftChange("sandbox", "sandbox-1", "campaign", camp[3].external_id, camp[3].name, "status", "ACTIVE",
                           "PAUSED", "USD", "pause", 60))
    return out


def test_rollback_restores_exact_values(eng, sandbox, fast):
    before = live_state(sandbox)
    settings = SafetySettings(allow_status_changes=True)
    pid, h = approved_plan(eng, sandbox, mixed_drafts(sandbox), settings=settings)
    assert ex.execute(eng, WS, pid, h, sandbox, actor="alice", retry=fast).status == "completed"
    assert live_state(sandbox) != before

    rb = ex.rollback(eng, WS, pid, actor="bob")
    view = load_plan(eng, WS, rb)
    assert (view.status, view.origin, view.rollback_of_id) == ("draft", "rollback", pid)
    assert [c.field for c in view.changes] == ["status", "bid", "budget", "budget"]
    # the rollback cannot skip the review either
    with pytest.raises(ex.PlanStateError):
        ex.execute(eng, WS, rb, "0" * 64, sandbox, actor="bob", retry=fast)
    pr = ex.preview(eng, WS, rb, sandbox, actor="bob")
    assert all(v["ok"] for v in pr.checks.values()), pr.checks
    ex.approve(eng, WS, rb, pr.content_hash, actor="bob")
    assert ex.execute(eng, WS, rb, pr.content_hash, sandbox, actor="bob", retry=fast).status == "completed"
    after = live_state(sandbox)
    assert after == before  # Decimal equality of every budget and bid, and the statuses
    assert "rollback plan #2 created" in load_plan(eng, WS, pid).events[-1]["note"]


def test_rollback_inverts_only_applied_changes(eng, sandbox, fast):
    drafts = budget_drafts(sandbox)
    pid, h = approved_plan(eng, sandbox, drafts)
    sandbox.inject("permanent", match=drafts[0].external_id)
    assert ex.execute(eng, WS, pid, h, sandbox, actor="a", retry=fast).status == "partially_failed"
    rb = load_plan(eng, WS, ex.rollback(eng, WS, pid, actor="a"))
    assert sorted(c.external_id for c in rb.changes) == sorted(d.external_id for d in drafts[1:])
    assert all(c.new_value == next(d.old_value for d in drafts if d.external_id == c.external_id) for c in rb.changes)


def test_rollback_needs_an_executed_plan_with_applied_changes(eng, sandbox, fast):
    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="a")
    with pytest.raises(ChangePlanError, match="only an executed plan"):
        ex.rollback(eng, WS, pid, actor="a")
    pid2, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    sandbox.inject("permanent", times=10)
    assert ex.execute(eng, WS, pid2, h, sandbox, actor="a", retry=fast).status == "failed"
    with pytest.raises(ChangePlanError, match="nothing to roll back"):
        ex.rollback(eng, WS, pid2, actor="a")


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_rollback_clicks_at_once_make_one_rollback_plan(request, tmp_path, fast, db):
    """Two tabs (or a double click) roll back the same plan at the same moment: one rollback plan, the
    other click is told which plan is already open (on PostgreSQL both transactions ran concurrently)."""
    import threading

    from sqlalchemy import func, select

    from core.platforms.sandbox import SandboxPlatform
    from core.store.db import make_engine, transaction
    from core.store.models import ChangePlan

    from .conftest import TODAY

    url = f"sqlite:///{tmp_path / 'race.db'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    try:
        sandbox = SandboxPlatform(engine, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=TODAY)
        pid, h = approved_plan(engine, sandbox, budget_drafts(sandbox))
        assert ex.execute(engine, WS, pid, h, sandbox, actor="alice", retry=fast).status == "completed"
        for _round in range(3):  # a race is a matter of timing: try it a few times
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def click():
                barrier.wait()
                try:
                    outcomes.append(f"plan {ex.rollback(engine, WS, pid, actor='bob')}")
                except ChangePlanError as exc:
                    outcomes.append(str(exc))

            threads = [threading.Thread(target=click) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            with transaction(engine, WS) as s:
                open_rollbacks = s.scalars(select(ChangePlan.id).where(ChangePlan.rollback_of_id == pid,
                                                                       ChangePlan.status == "draft")).all()
            assert len(open_rollbacks) == 1, outcomes
            assert sum(o.startswith("plan ") for o in outcomes) == 1 and any("already open" in o for o in outcomes), outcomes
            ex.cancel(engine, WS, open_rollbacks[0], actor="bob")
    finally:
        engine.dispose()
