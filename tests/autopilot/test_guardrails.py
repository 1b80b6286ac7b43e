"""Workspace guardrails and the kill switch, enforced in core for manual and scheduled plans alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core import execute as ex
from core.changes import DraftChange, SafetySettings, create_plan, load_plan
from core.guardrails import (
    ChangeView,
    GuardrailError,
    Guardrails,
    check_changes,
    load_guardrails,
    save_guardrails,
    set_kill_switch,
)

from .conftest import WS


def drafts_for(platform, factor: str, ids=None) -> list[DraftChange]:
    out = []
    for e in platform.list_entities():
        if e.daily_budget is None or (ids is not None and e.external_id not in ids):
            continue
        new = (e.daily_budget * Decimal(factor)).quantize(Decimal("0.01"))
        out.append(DraftChange("sandbox", platform.account_id, e.entity_type, e.external_id, e.name, "budget",
                               e.daily_budget, new, e.currency, "test", 90.0, True))
    return out


@pytest.mark.parametrize("kw, match", [
    ({"entity_budget_ceiling": 0}, "entity_budget_ceiling"),
    ({"max_increase_pct": -5}, "max_increase_pct"),
    ({"max_changes_per_entity_per_day": 0}, "max_changes_per_entity_per_day"),
    ({"quiet_hours": (22, 22)}, "quiet_hours"),
    ({"quiet_hours": (25, 3)}, "quiet_hours"),
    ({"timezone": "Mars/Olympus"}, "time zone"),
    ({"step_limit_pct": 60, "max_increase_pct": 50}, "no step could ever pass"),
    ({"learning_policy": "ignore"}, "learning_policy"),
    ({"learning_cap_pct": 30}, "learning_cap_pct"),
], ids=["ceiling", "increase", "per-day", "quiet-empty", "quiet-hour", "zone", "step>increase", "policy", "cap"])
def test_contradictory_guardrails_are_refused(kw, match):
    with pytest.raises(GuardrailError, match=match):
        Guardrails(**kw)


def test_guardrails_round_trip_through_the_database(engine):
    g = Guardrails(entity_budget_ceiling=Decimal("250.50"), quiet_hours=(22, 6), timezone="Europe/Berlin",
                   step_limit_pct=15, learning_policy="cap", learning_cap_pct=5)
    save_guardrails(engine, WS, g, actor="alice")
    state = load_guardrails(engine, WS)
    assert state.limits == g and state.updated_by == "alice" and not state.kill_switch


def test_quiet_hours_wrap_midnight_in_the_accounts_zone():
    g = Guardrails(quiet_hours=(22, 6), timezone="Europe/Berlin")
    assert g.in_quiet_hours(dt.datetime(2031, 1, 10, 22, 30, tzinfo=dt.timezone.utc))  # 23:30 in Berlin
    assert g.in_quiet_hours(dt.datetime(2031, 1, 10, 4, 0, tzinfo=dt.timezone.utc))  # 05:00 in Berlin
    assert not g.in_quiet_hours(dt.datetime(2031, 1, 10, 5, 0, tzinfo=dt.timezone.utc))  # 06:00 in Berlin


def test_each_limit_is_a_visible_reason(engine, sandbox):
    save_guardrails(engine, WS, Guardrails(entity_budget_ceiling=Decimal("100"),
                                           max_increase_pct=30, step_limit_pct=20), actor="t")
    views = [ChangeView(1, "campaign", "a", "budget", Decimal("90"), Decimal("120")),  # +33 %, above ceiling
             ChangeView(2, "campaign", "b", "budget", Decimal("50"), Decimal("55")),  # fine
             ChangeView(3, "campaign", "c", "budget", Decimal("50"), Decimal("59"))]  # +18 %: fine (step 20)
    hits = check_changes(engine, WS, "sandbox", sandbox.account_id, views, today=dt.date(2031, 3, 3))
    assert any("above the workspace's maximum of 30%" in m for m in hits[1])
    assert any("ceiling of 100" in m for m in hits[1])
    assert hits[2] == [] and hits[3] == []
    step = ChangeView(1, "campaign", "c", "budget", Decimal("50"), Decimal("62"))  # +24 %: within 30, above the step
    assert check_changes(engine, WS, "sandbox", sandbox.account_id, [step], today=dt.date(2031, 3, 3))[1] == []
    auto = check_changes(engine, WS, "sandbox", sandbox.account_id, [step], today=dt.date(2031, 3, 3), origin="autopilot")
    assert any("above the step limit of 20%" in m for m in auto[1])


def test_account_ceiling_counts_the_synced_budgets(engine, sandbox):
    ents = [e for e in sandbox.list_entities() if e.daily_budget is not None]
    total = sum(e.daily_budget for e in ents)
    save_guardrails(engine, WS, Guardrails(account_budget_ceiling=total + 5), actor="t")
    e = ents[0]
    up = ChangeView(1, e.entity_type, e.external_id, "budget", e.daily_budget, e.daily_budget + 6)
    down = ChangeView(2, ents[1].entity_type, ents[1].external_id, "budget", ents[1].daily_budget, ents[1].daily_budget - 2)
    hits = check_changes(engine, WS, "sandbox", sandbox.account_id, [up], today=dt.date(2031, 3, 3))
    assert "would total" in hits[1][0]
    ok = check_changes(engine, WS, "sandbox", sandbox.account_id, [up, down], today=dt.date(2031, 3, 3))
    assert ok == {1: [], 2: []}  # a cut elsewhere pays for it


def test_a_manual_plan_is_blocked_at_the_dry_run_with_the_reason(engine, sandbox):
    save_guardrails(engine, WS, Guardrails(max_increase_pct=25, step_limit_pct=20), actor="t")
    pid = create_plan(engine, WS, drafts_for(sandbox, "1.4"), actor="alice", origin="manual",
                      settings=SafetySettings(max_change_pct=None))
    pr = ex.preview(engine, WS, pid, sandbox, actor="alice")
    assert all(not c["ok"] and "guardrail: an increase of +40.0%" in c["messages"][-1] for c in pr.checks.values())
    diff = load_plan(engine, WS, pid).diff()
    assert diff["safety"].str.contains("guardrail").all()
    with pytest.raises(ex.PlanStateError, match="no change passes"):
        ex.approve(engine, WS, pid, pr.content_hash, actor="alice")


def test_manual_override_of_the_step_limit_is_warned_in_the_dry_run(engine, sandbox):
    pid = create_plan(engine, WS, drafts_for(sandbox, "1.3"), actor="alice", origin="manual")
    pr = ex.preview(engine, WS, pid, sandbox, actor="alice")
    assert all(c["ok"] for c in pr.checks.values())  # allowed: within the 50 % maximum
    diff = load_plan(engine, WS, pid).diff()
    assert diff["warning"].str.contains("exceeds the step limit of 20%").all()
    assert diff["warning"].str.contains("learning phase").all()


def test_kill_switch_stops_an_execution_between_two_changes(engine, sandbox):
    drafts = drafts_for(sandbox, "1.1")
    pid = create_plan(engine, WS, drafts, actor="alice")
    pr = ex.preview(engine, WS, pid, sandbox, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="alice")

    def throw(done, total, info):
        if done == 1:
            set_kill_switch(engine, WS, True, actor="ops", note="incident")

    res = ex.execute(engine, WS, pid, pr.content_hash, sandbox, actor="alice", progress=throw)
    assert res.counts == {"applied": 1, "blocked": len(drafts) - 1}
    rows = [r for r in load_plan(engine, WS, pid).rows if r["error_code"]]
    assert all(r["error_code"] == "guardrail" and "kill switch is on" in r["error_message"] and "incident" in r["error_message"]
               for r in rows)
    # while it is on, a new plan cannot even be approved
    pid2 = create_plan(engine, WS, drafts_for(sandbox, "0.9"), actor="alice")
    pr2 = ex.preview(engine, WS, pid2, sandbox, actor="alice")
    assert all("kill switch" in " ".join(c["messages"]) for c in pr2.checks.values())
    set_kill_switch(engine, WS, False, actor="ops")
    pr2 = ex.preview(engine, WS, pid2, sandbox, actor="alice")
    assert all(c["ok"] for c in pr2.checks.values())


def test_changes_per_entity_per_day_count_applied_and_in_flight(engine, sandbox):
    save_guardrails(engine, WS, Guardrails(max_changes_per_entity_per_day=1), actor="t")
    target = [d for d in drafts_for(sandbox, "1.1")][:1]
    pid = create_plan(engine, WS, target, actor="alice")
    pr = ex.preview(engine, WS, pid, sandbox, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="alice")
    assert ex.execute(engine, WS, pid, pr.content_hash, sandbox, actor="alice").status == "completed"
    again = DraftChange(**{**target[0].__dict__, "old_value": target[0].new_value,
                           "new_value": (target[0].new_value * Decimal("1.05")).quantize(Decimal("0.01"))})
    pid2 = create_plan(engine, WS, [again], actor="alice")
    pr2 = ex.preview(engine, WS, pid2, sandbox, actor="alice")
    assert "already has 1 change(s) today" in pr2.checks["1"]["messages"][-1]


def test_quiet_hours_block_at_execution_time(engine, sandbox):
    pid = create_plan(engine, WS, drafts_for(sandbox, "1.05")[:1], actor="alice")
    pr = ex.preview(engine, WS, pid, sandbox, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="alice")
    now_hour = dt.datetime.now(dt.timezone.utc).hour
    save_guardrails(engine, WS, Guardrails(quiet_hours=(now_hour, (now_hour + 2) % 24)), actor="t")
    res = ex.execute(engine, WS, pid, pr.content_hash, sandbox, actor="alice")
    row = load_plan(engine, WS, pid).rows[0]
    assert res.counts == {"blocked": 1} and row["error_code"] == "guardrail" and "quiet hours" in row["error_message"]
