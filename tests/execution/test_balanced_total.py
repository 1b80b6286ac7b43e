"""A plan that moves budget between campaigns never takes the account above the total that was approved.

Decreases go first; the increases add only what the decreases that applied freed. A stale, failed or
interrupted decrease holds or reduces the increases it funded (exactly, to the cent), each says which
decrease did not apply, a resumed execution sends the same values, and a rollback follows the same rule.
The sandbox account's total is read after every change, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import DraftChange, load_plan, plans_frame
from core.funding import shortfall_note
from core.platforms.base import ChangeRequest
from core.platforms.sandbox import SandboxCrash, SandboxPlatform

from .conftest import TODAY, WS, approved_plan, expire_lease

A, B, C, D = "meta-c001", "meta-c002", "google-c002", "google-c001"  # budgets 390, 115, 160, 45


@pytest.fixture
def sb(engine):
    return SandboxPlatform(engine, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=TODAY)


def draft(sb, external_id: str, new: str) -> DraftChange:
    e = next(x for x in sb.list_entities() if x.external_id == external_id)
    return DraftChange("sandbox", sb.account_id, "campaign", e.external_id, e.name, "budget", e.daily_budget,
                       Decimal(new), "USD", "move budget", 80.0)


def budget(sb, external_id: str) -> Decimal:
    return sb.read_live("campaign", external_id, "budget")


def total(sb, ids) -> Decimal:
    return sum((budget(sb, x) for x in ids), Decimal(0))


class Watch:
    """The progress callback: the plan's campaigns' live total after every change, and the order of the changes."""

    def __init__(self, sb, ids, stop_after_seq: int | None = None):
        self.sb, self.ids, self.stop = sb, ids, stop_after_seq
        self.totals: list[Decimal] = []
        self.order: list[int] = []

    def __call__(self, done, total_, info):
        if info.get("status") == "waiting":
            return
        self.order.append(info["seq"])
        self.totals.append(total(self.sb, self.ids))
        if self.stop is not None and info["seq"] == self.stop:
            raise KeyboardInterrupt("killed between the decrease and the increase")


def test_a_stale_decrease_holds_the_increase_it_funded(engine, sb, fast):
    """The increase comes first in the plan; someone edits the decreased campaign after the review."""
    pid, h = approved_plan(engine, sb, [draft(sb, B, "140"), draft(sb, A, "365")])
    approved = Decimal("505")  # 140 + 365: what the person approved
    sb.apply(ChangeRequest("x", "campaign", A, "budget", Decimal("390"), Decimal("389")))  # someone trims A by 1
    watch = Watch(sb, [A, B])
    res = ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast, progress=watch)
    assert watch.order == [2, 1]  # the decrease first
    assert all(t <= approved for t in watch.totals), watch.totals  # B at 140 would make it 529
    assert res.counts == {"stale": 1, "held": 1} and res.status == "failed"
    assert budget(sb, B) == Decimal("115") and budget(sb, A) == Decimal("389")
    view = load_plan(engine, WS, pid)
    row = {r["seq"]: r for r in view.rows}[1]
    assert row["error_code"] == "not_funded"
    assert "not funded: the decrease of campaign Meta - Prospecting - Broad (change 2" in row["error_message"]
    assert "was stale" in row["error_message"] and "held at 115.00 USD" in row["error_message"]
    assert "1 increase(s) held (change 1)" in shortfall_note(view.changes)
    assert sb.calls["apply"] == 1  # only the test's own edit: nothing was sent


def four_way(sb):
    """A -20 and C -13.33 fund B +21.11 and D +12.22: budget-neutral, 710.00 in all."""
    return [draft(sb, A, "370"), draft(sb, C, "146.67"), draft(sb, B, "136.11"), draft(sb, D, "57.22")]


def test_a_failed_decrease_reduces_two_increases_in_proportion_exactly(engine, sb, fast):
    pid, h = approved_plan(engine, sb, four_way(sb))
    sb.inject("permanent", match=A, message="budget locked by an account rule")
    watch = Watch(sb, [A, B, C, D])
    res = ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast, progress=watch)
    assert watch.order == [1, 2, 3, 4]
    assert all(t <= Decimal("710") for t in watch.totals), watch.totals
    assert res.counts == {"failed": 1, "applied": 1, "reduced": 2} and res.status == "partially_failed"
    # C freed 13.33, shared 21.11 : 12.22 -> 8.4427 and 4.8873: 8.44 + 4.89 (largest remainder) = 13.33 exactly
    assert budget(sb, B) == Decimal("123.44") and budget(sb, D) == Decimal("49.89")
    assert total(sb, [A, B, C, D]) == Decimal("710.00")
    view = load_plan(engine, WS, pid)
    by = {c.seq: c for c in view.changes}
    assert by[3].status == "reduced" and by[3].funded_value == Decimal("123.44") and by[3].new_value == Decimal("136.11")
    msg = {r["seq"]: r for r in view.rows}[3]["error_message"]
    assert msg.startswith("reduced to 123.44 USD (+8.44 USD of the approved +21.11 USD): not fully funded: the decrease "
                          "of campaign Meta - Prospecting - Broad (change 1") and "failed" in msg
    plans = plans_frame(engine, WS).set_index("id")
    assert plans.loc[pid, "applied_budget_delta"] == 0.0 and plans.loc[pid, "n_reduced"] == 2
    diff = view.diff().set_index("seq")
    assert diff.loc[4, "funded_value"] == "49.89 USD" and diff.loc[4, "status"] == "reduced"


def test_killed_between_decrease_and_increase_then_resumed(engine, sb, fast):
    pid, h = approved_plan(engine, sb, [draft(sb, B, "140"), draft(sb, A, "365")])
    watch = Watch(sb, [A, B], stop_after_seq=2)
    with pytest.raises(KeyboardInterrupt):
        ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast, progress=watch)
    assert [c.status for c in load_plan(engine, WS, pid).changes] == ["pending", "applied"]
    assert total(sb, [A, B]) == Decimal("480")  # below the approved 505 while it is stopped, never above
    expire_lease(engine, pid)
    res = ex.execute(engine, WS, pid, h, sb, actor="bob", retry=fast, resume=True)
    assert res.status == "completed" and total(sb, [A, B]) == Decimal("505") and budget(sb, B) == Decimal("140")


def test_a_resume_sends_a_reduced_increase_at_its_stored_value(engine, sb, fast):
    """Killed while the second reduced increase was in flight (its write landed): the resume settles it from the
    live value at its funded value, and a resume before it would send exactly that value."""
    pid, h = approved_plan(engine, sb, four_way(sb))
    sb.inject("permanent", match=A)
    sb.inject("crash_after", match=D)  # the write of D lands, then the process dies
    with pytest.raises(SandboxCrash):
        ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast)
    expire_lease(engine, pid)
    view = load_plan(engine, WS, pid)
    assert [c.status for c in view.changes] == ["failed", "applied", "reduced", "applying"]
    assert budget(sb, D) == Decimal("49.89")
    res = ex.execute(engine, WS, pid, h, sb, actor="bob", retry=fast, resume=True)
    assert res.counts == {"failed": 1, "applied": 1, "reduced": 2}
    assert total(sb, [A, B, C, D]) == Decimal("710.00") and sb.calls["apply"] == 4  # D was not sent again


def test_a_resume_after_the_funding_step_keeps_the_allocation(engine, sb, fast):
    pid, h = approved_plan(engine, sb, four_way(sb))
    sb.inject("permanent", match=A)
    with pytest.raises(KeyboardInterrupt):
        ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast, progress=Watch(sb, [A, B, C, D], stop_after_seq=3))
    assert budget(sb, B) == Decimal("123.44") and budget(sb, D) == Decimal("45")
    expire_lease(engine, pid)
    ex.execute(engine, WS, pid, h, sb, actor="bob", retry=fast, resume=True)
    assert budget(sb, D) == Decimal("49.89") and total(sb, [A, B, C, D]) == Decimal("710.00")


def test_an_approved_net_increase_still_funds_its_share(engine, sb, fast):
    """A -10 and B +30: the person approved +20 a day. With A stale, B may add those 20, no more."""
    pid, h = approved_plan(engine, sb, [draft(sb, A, "380"), draft(sb, B, "145")])
    sb.apply(ChangeRequest("x", "campaign", A, "budget", Decimal("390"), Decimal("391")))
    res = ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast)
    assert res.counts == {"stale": 1, "reduced": 1} and budget(sb, B) == Decimal("135")
    row = {r["seq"]: r for r in load_plan(engine, WS, pid).rows}[2]
    assert "plus its approved net increase (20.00 USD)" in row["error_message"]


def test_plans_of_only_increases_or_only_decreases_are_unchanged(eng, sandbox, fast):
    sb = sandbox
    pid, h = approved_plan(eng, sb, [draft(sb, B, "140"), draft(sb, D, "50")])
    assert ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast).counts == {"applied": 2}
    assert load_plan(eng, WS, pid).preview["funding"] == ""


def test_the_dry_run_states_the_order_and_the_rule(eng, sandbox):
    pid = approved_plan(eng, sandbox, [draft(sandbox, B, "140"), draft(sandbox, A, "365")])[0]
    text = load_plan(eng, WS, pid).preview["funding"]
    assert text.startswith("Execution order: the 1 budget decrease(s) first (change 2), then the other changes in plan "
                           "order. The 1 increase(s) (change 1) are funded only by what the decreases actually freed")
    assert "funded only by what the decreases actually freed" in text and "(505.00 USD now, 505.00 USD as approved)" in text


def test_a_rollback_takes_its_decreases_first_and_never_overshoots(engine, sb, fast):
    pid, h = approved_plan(engine, sb, [draft(sb, B, "140"), draft(sb, A, "365")])
    assert ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast).status == "completed"
    rb = ex.rollback(engine, WS, pid, actor="bob")
    rb_view = load_plan(engine, WS, rb)
    assert [(c.external_id, c.old_value, c.new_value) for c in rb_view.changes] == [
        (A, Decimal("365"), Decimal("390")), (B, Decimal("140"), Decimal("115"))]
    pr = ex.preview(engine, WS, rb, sb, actor="bob")
    ex.approve(engine, WS, rb, pr.content_hash, actor="bob")
    sb.apply(ChangeRequest("x", "campaign", B, "budget", Decimal("140"), Decimal("139")))  # edited after the review
    watch = Watch(sb, [A, B])
    res = ex.execute(engine, WS, rb, pr.content_hash, sb, actor="bob", retry=fast, progress=watch)
    assert watch.order == [2, 1] and all(t <= Decimal("505") for t in watch.totals), watch.totals
    assert res.counts == {"stale": 1, "held": 1} and budget(sb, A) == Decimal("365")


def test_a_reduced_change_rolls_back_from_the_value_it_was_sent_with(eng, sandbox, fast):
    sb = sandbox
    pid, h = approved_plan(eng, sb, four_way(sb))
    sb.inject("permanent", match=A)
    ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast)
    sb.clear_faults()
    from core.autopilot.outcomes import outcomes_frame, record_predictions

    assert record_predictions(eng, WS, pid, sb, actor="alice") == 3  # C applied, B and D reduced: all three predicted
    sent = outcomes_frame(eng, WS, [pid]).set_index("external_id")["new"]
    assert sent[B] == "123.44" and sent[D] == "49.89"  # the outcome is of the value sent, not of the approved one
    rb = ex.rollback(eng, WS, pid, actor="bob")
    changes = {c.external_id: c for c in load_plan(eng, WS, rb).changes}
    assert set(changes) == {B, C, D} and changes[B].old_value == Decimal("123.44") and changes[D].old_value == Decimal("49.89")
    pr = ex.preview(eng, WS, rb, sb, actor="bob")
    ex.approve(eng, WS, rb, pr.content_hash, actor="bob")
    watch = Watch(sb, [A, B, C, D])
    res = ex.execute(eng, WS, rb, pr.content_hash, sb, actor="bob", retry=fast, progress=watch)
    assert res.status == "completed" and all(t <= Decimal("710") for t in watch.totals)
    assert [budget(sb, x) for x in (A, B, C, D)] == [Decimal("390"), Decimal("115"), Decimal("160"), Decimal("45")]


def test_a_resumed_execution_after_an_old_order_start_never_overshoots(eng, sandbox, fast):
    """A plan whose increase was applied before its decrease settled (started by an executor before this rule):
    the resume funds the rest only from what is left."""
    from sqlalchemy import update

    from core.store.db import transaction
    from core.store.models import Change

    sb = sandbox
    pid, h = approved_plan(eng, sb, [draft(sb, B, "140"), draft(sb, D, "57.22"), draft(sb, A, "362.78")])
    with pytest.raises(KeyboardInterrupt):
        ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast, progress=Watch(sb, [A, B, D], stop_after_seq=3))
    # rewrite history: B went first (applied), A is still pending, as the old plan order would have left it
    sb.apply(ChangeRequest("x", "campaign", A, "budget", Decimal("362.78"), Decimal("390")))
    sb.apply(ChangeRequest("x", "campaign", B, "budget", Decimal("115"), Decimal("140")))
    with transaction(eng, WS) as s:
        s.execute(update(Change).where(Change.plan_id == pid, Change.seq == 1).values(status="applied")
                  .execution_options(synchronize_session=False))
        s.execute(update(Change).where(Change.plan_id == pid, Change.seq == 3).values(status="pending")
                  .execution_options(synchronize_session=False))
    sb.apply(ChangeRequest("x", "campaign", A, "budget", Decimal("390"), Decimal("395")))  # and A goes stale
    expire_lease(eng, pid)
    ex.execute(eng, WS, pid, h, sb, actor="bob", retry=fast, resume=True)
    statuses = {c.seq: c.status for c in load_plan(eng, WS, pid).changes}
    assert statuses == {1: "applied", 2: "held", 3: "stale"} and budget(sb, D) == Decimal("45")


def test_guardrail_blocked_decrease_holds_the_increase(eng, sandbox, fast):
    """A decrease a guardrail blocks right before it is sent (here the kill switch) frees nothing."""
    from core.guardrails import set_kill_switch

    sb = sandbox
    pid, h = approved_plan(eng, sb, [draft(sb, B, "140"), draft(sb, A, "365")])
    set_kill_switch(eng, WS, True, actor="alice", note="stop")
    res = ex.execute(eng, WS, pid, h, sb, actor="alice", retry=fast)
    assert res.counts == {"blocked": 1, "held": 1} and budget(sb, B) == Decimal("115")


def test_kill_9_after_a_decrease_landed_then_a_stale_one_reduces_the_increase(engine, db_url, sb, tmp_path, fast):
    """A real SIGKILL right after the second decrease's write landed (its answer never heard). While the process is
    dead someone trims the third decreased campaign, so the resume finds it stale: the increase gets exactly what
    the two applied decreases freed, and the total never passes the approved one."""
    from .test_killed_executor import kill_mid_plan, resume_after_lease

    pid, h = approved_plan(engine, sb, [draft(sb, B, "155"), draft(sb, A, "365"), draft(sb, C, "150"),
                                        draft(sb, D, "40")])
    assert kill_mid_plan(db_url, pid, h, tmp_path) == C  # the decreases went first: A, then C
    assert total(sb, [A, B, C, D]) == Decimal("675")  # 710 approved, 35 freed so far, nothing raised
    sb.apply(ChangeRequest("x", "campaign", D, "budget", Decimal("45"), Decimal("44")))
    res = resume_after_lease(engine, sb, pid, h, fast)
    assert res.counts == {"applied": 2, "stale": 1, "reduced": 1}
    assert budget(sb, B) == Decimal("150") and total(sb, [A, B, C, D]) == Decimal("709")
    msg = {r["seq"]: r for r in load_plan(engine, WS, pid).rows}[1]["error_message"]
    assert "(+35.00 USD of the approved +40.00 USD)" in msg and "(change 4," in msg and "was stale" in msg


@pytest.mark.parametrize("currency,platform", [("USD", None), ("JPY", None), ("KWD", None), ("HUF", "meta")])
def test_allocation_never_exceeds_the_funding_and_is_proportional_to_the_unit(currency, platform):
    """Random plans and outcomes: the shares add up to exactly what is left (whole units), none above its
    approved increase, each within one unit of its proportional share; the plan's net never above approved."""
    import random

    from core.changes import PlannedChange
    from core.funding import allocate
    from core.money import money_step

    rnd, unit = random.Random(11), money_step(currency, platform)  # 0.01 USD, 1 JPY, 0.001 KWD, whole HUF on Meta
    for _ in range(300):
        changes = []
        for seq in range(1, rnd.randint(2, 9)):
            old = Decimal(rnd.randint(100, 100000)) * unit
            half = int(old / unit) // 2
            new = old + Decimal(rnd.randint(-half, half)) * unit
            status = "pending" if new > old else rnd.choice(["applied", "applied", "unchanged", "stale", "failed"])
            changes.append(PlannedChange(seq, "campaign", f"c{seq}", "", "budget", old, new, currency, status=status))
        alloc = allocate(changes, {c.seq for c in changes}, platform)
        decs = [c for c in changes if c.new_value < c.old_value]
        incs = [c for c in changes if c.new_value > c.old_value]
        net = sum((c.new_value - c.old_value for c in changes), Decimal(0))
        freed = sum((c.old_value - c.new_value for c in decs if c.status in ("applied", "unchanged")), Decimal(0))
        funding = min(max(freed + net, Decimal(0)), sum((c.new_value - c.old_value for c in incs), Decimal(0)))
        sent = {c.seq: (alloc.funded[c.seq][0] if c.seq in alloc.funded else c.old_value if c.seq in alloc.held
                        else c.new_value) - c.old_value for c in incs}
        assert all(Decimal(0) <= sent[c.seq] <= c.new_value - c.old_value for c in incs)
        assert all(v == v.quantize(unit) for v in sent.values())
        if alloc:
            assert sum(sent.values()) == funding.quantize(unit, rounding="ROUND_FLOOR")
            need = sum((c.new_value - c.old_value for c in incs), Decimal(0))
            assert all(abs(sent[c.seq] - (c.new_value - c.old_value) * funding / need) < unit for c in incs)
        assert sum(sent.values()) <= funding
        applied_net = sum(sent.values()) - freed
        assert applied_net <= max(net, -freed)  # after the increases: at or below the approved total


def test_a_rollback_whose_increases_were_reduced_offers_the_rest_from_the_values_it_sent(engine, sb, fast):
    """Rolling back a budget move whose decrease fails: the rollback's increases are reduced (never overspend).
    Their remainder is not lost: the plan still counts them as not restored, and the next rollback restores
    them from the values the reduced rollback sent (not from the plan's, which the live budgets no longer hold),
    together with the failed change, until every budget is back."""
    from core.changes import rollback_state

    pid, h = approved_plan(engine, sb, four_way(sb))
    assert ex.execute(engine, WS, pid, h, sb, actor="alice", retry=fast).status == "completed"
    rb = ex.rollback(engine, WS, pid, actor="bob")
    pr = ex.preview(engine, WS, rb, sb, actor="bob")
    ex.approve(engine, WS, rb, pr.content_hash, actor="bob")
    sb.inject("permanent", match=B, message="budget locked by an account rule")
    res = ex.execute(engine, WS, rb, pr.content_hash, sb, actor="bob", retry=fast)
    sb.clear_faults()
    assert res.counts == {"failed": 1, "applied": 1, "reduced": 2}
    sent = {c.external_id: c.written_value for c in load_plan(engine, WS, rb).changes if c.status == "reduced"}
    assert set(sent) == {A, C} and budget(sb, A) == sent[A] < Decimal("390") and budget(sb, C) == sent[C] < Decimal("160")
    state = rollback_state(engine, WS, pid)
    assert state.remaining == 3 and state.can_roll_back  # A and C only partly restored, B not at all
    rb2 = ex.rollback(engine, WS, pid, actor="bob")
    changes = {c.external_id: (c.old_value, c.new_value) for c in load_plan(engine, WS, rb2).changes}
    assert changes == {A: (sent[A], Decimal("390")), C: (sent[C], Decimal("160")), B: (Decimal("136.11"), Decimal("115"))}
    pr2 = ex.preview(engine, WS, rb2, sb, actor="bob")
    ex.approve(engine, WS, rb2, pr2.content_hash, actor="bob")
    watch = Watch(sb, [A, B, C, D])
    assert ex.execute(engine, WS, rb2, pr2.content_hash, sb, actor="bob", retry=fast, progress=watch).status == "completed"
    assert all(t <= Decimal("710") for t in watch.totals), watch.totals
    assert [budget(sb, x) for x in (A, B, C, D)] == [Decimal("390"), Decimal("115"), Decimal("160"), Decimal("45")]
    assert rollback_state(engine, WS, pid).remaining == 0
