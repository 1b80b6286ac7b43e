"""Scheduled runs end to end on the sandbox: staged steps with cooldowns, learning holds, measured outcomes,
kill switch, one run per slot, dry runs, review, audit log."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.autopilot import AutopilotSettings
from core.autopilot.glide import paths_frame
from core.autopilot.outcomes import outcomes_frame
from core.autopilot.runner import run_due, run_schedule
from core.autopilot.schedules import RunClaimed, claim_run, due_schedules, load_schedule, runs_frame, set_enabled
from core.changes import load_plan, plans_frame
from core.guardrails import set_kill_switch
from core.platforms.base import ChangeRequest
from core.store.db import transaction
from core.store.models import AutopilotRun, ChangePlan

from .conftest import START, WS, at, make_schedule


def budget(sb, xid):
    return sb.read_live("campaign", xid, "budget")


def count(engine, model):
    with transaction(engine, WS) as s:
        return s.scalar(select(func.count()).select_from(model))


def grow_40(one_campaign) -> AutopilotSettings:
    b0 = budget(one_campaign, "meta-c001")
    return AutopilotSettings(total_budget=float(b0 * Decimal("1.4")), confidence_threshold=0.0)


def test_a_40_percent_change_arrives_in_staged_steps_with_cooldowns(engine, one_campaign):
    sb = one_campaign
    b0 = budget(sb, "meta-c001")
    sid = make_schedule(engine, sb, settings=grow_40(sb))
    first = run_schedule(engine, WS, sid, platform=sb, due_at=at(START), now=at(START))
    assert first.status == "completed" and len(first.summary["executed"]) == 1
    assert budget(sb, "meta-c001") == (b0 * Decimal("1.2")).quantize(Decimal("0.01"), rounding="ROUND_FLOOR")
    path = paths_frame(engine, WS).iloc[0]
    assert path["status"] == "active" and path["next_due"] == str(START + dt.timedelta(days=3))
    assert "(applied)" in path["steps"] and "(planned)" in path["steps"]
    for day in (1, 2):  # cooldown: held, with the day the next step is due
        sb.advance_days(1)
        res = run_schedule(engine, WS, sid, platform=sb, due_at=at(START + dt.timedelta(days=day)),
                           now=at(START + dt.timedelta(days=day)))
        assert res.summary["executed"] == [] and "next step is due on" in res.summary["held"][0]["text"]
    sb.advance_days(1)
    res = run_schedule(engine, WS, sid, platform=sb, due_at=at(START + dt.timedelta(days=3)), now=at(START + dt.timedelta(days=3)))
    assert len(res.summary["executed"]) == 1
    assert abs(float(budget(sb, "meta-c001") / b0) - 1.4) < 0.001
    assert paths_frame(engine, WS).iloc[0]["status"] == "completed"
    # no step reset the learning phase: every step stayed within the 20 % limit
    assert all(e.learning_status == "SUCCESS" for e in sb.list_entities() if e.entity_type == "ad_set")
    # every step of the audit log names the schedule
    plan = load_plan(engine, WS, first.plan_ids[0])
    assert [e["to"] for e in plan.events] == ["draft", "previewed", "approved", "executing", "completed"]
    assert all("by schedule #" in e["actor"] for e in plan.events)
    # each executed change gets a measured outcome once its window has passed
    sb.advance_days(8)
    run_schedule(engine, WS, sid, platform=sb, due_at=at(START + dt.timedelta(days=11)), now=at(START + dt.timedelta(days=11)))
    oc = outcomes_frame(engine, WS)
    assert len(oc) == 2 and not (oc["verdict"] == "too early").any()
    assert oc["verdict"].isin(["as predicted", "better", "worse"]).all(), oc[["verdict", "reason"]]
    assert (oc["value_lo"] <= oc["predicted_value"]).all() and (oc["predicted_value"] <= oc["value_hi"]).all()


def test_an_entity_in_its_learning_phase_is_held(engine, one_campaign):
    sb = one_campaign
    b0 = budget(sb, "meta-c001")
    sb.apply(ChangeRequest("k", "campaign", "meta-c001", "budget", b0, (b0 * Decimal("1.5")).quantize(Decimal("0.01"))))
    sid = make_schedule(engine, sb, settings=AutopilotSettings(total_budget=float(b0), confidence_threshold=0.0))
    res = run_schedule(engine, WS, sid, platform=sb, due_at=at(START), now=at(START))
    assert res.summary["executed"] == [] and res.plan_ids == []
    assert "learning phase (LEARNING" in res.summary["held"][0]["text"]
    sb.advance_days(7)  # the learning week is over
    res = run_schedule(engine, WS, sid, platform=sb, due_at=at(START + dt.timedelta(days=7)), now=at(START + dt.timedelta(days=7)))
    assert len(res.summary["executed"]) == 1


def test_the_kill_switch_stops_every_schedule(engine, sandbox):
    sid = make_schedule(engine, sandbox)
    set_kill_switch(engine, WS, True, actor="ops", note="audit")
    (res,) = run_due(engine, WS, now=at(START), platform_factory=lambda s: sandbox)
    assert res.status == "skipped" and "kill switch" in res.summary["headline"] and res.plan_ids == []
    assert count(engine, ChangePlan) == 0
    assert runs_frame(engine, WS).iloc[0]["status"] == "skipped"
    assert due_schedules(engine, WS, at(START)) == []  # the slot is taken: released later, it waits for the next one
    set_kill_switch(engine, WS, False, actor="ops")
    assert sid == due_schedules(engine, WS, at(START + dt.timedelta(days=1)))[0][0].id


def test_two_runners_never_run_the_same_slot_twice(engine, sandbox):
    sid = make_schedule(engine, sandbox)
    slot = due_schedules(engine, WS, at(START))[0][1]
    rid = claim_run(engine, WS, sid, slot, runner="a")
    with pytest.raises(RunClaimed):
        claim_run(engine, WS, sid, slot, runner="b")
    with transaction(engine, WS) as s:
        s.delete(s.get(AutopilotRun, rid))
    results: list = []
    errors: list = []

    def race(name):
        try:
            results.extend(run_due(engine, WS, now=at(START), platform_factory=lambda s: sandbox, runner=name))
        except Exception as exc:  # pragma: no cover - shown on failure
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(f"runner-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 1 and results[0].status == "completed"
    assert count(engine, AutopilotRun) == 1
    assert len(plans_frame(engine, WS)) == len(results[0].plan_ids)


def test_a_dry_run_writes_and_executes_nothing(engine, sandbox):
    sid = make_schedule(engine, sandbox)
    before = {e.external_id: e.daily_budget for e in sandbox.list_entities()}
    res = run_schedule(engine, WS, sid, platform=sandbox, dry_run=True, now=at(START))
    assert res.dry_run and res.run_id is None and "dry run" in res.summary["headline"]
    assert res.summary["executed"] and all("would be executed" in x["text"] for x in res.summary["executed"])
    assert any(n.startswith("Budget decreases are executed first") for n in res.summary["notes"])  # raises and cuts
    assert count(engine, ChangePlan) == 0 and count(engine, AutopilotRun) == 0
    assert {e.external_id: e.daily_budget for e in sandbox.list_entities()} == before


def test_auto_execute_off_leaves_a_previewed_plan_for_review(engine, sandbox):
    sid = make_schedule(engine, sandbox, auto_execute=False)
    assert load_schedule(engine, WS, sid).auto_execute is False
    res = run_schedule(engine, WS, sid, platform=sandbox, now=at(START))
    (pid,) = res.plan_ids
    plan = load_plan(engine, WS, pid)
    assert plan.status == "previewed" and plan.origin == "autopilot"
    assert res.summary["executed"] == [] and all("auto-execute is off" in x["text"] for x in res.summary["waiting"])


def test_below_the_confidence_threshold_waits_for_review(engine, sandbox):
    sid = make_schedule(engine, sandbox, settings=AutopilotSettings(confidence_threshold=100.0))
    res = run_schedule(engine, WS, sid, platform=sandbox, now=at(START))
    waiting = [x for x in res.summary["waiting"] if "below the confidence threshold" in x["text"]]
    assert waiting and len(waiting) == len(res.summary["waiting"])


def test_a_paused_schedule_is_not_due_and_a_failure_is_recorded(engine, sandbox):
    sid = make_schedule(engine, sandbox)
    set_enabled(engine, WS, sid, False)
    assert due_schedules(engine, WS, at(START)) == []
    set_enabled(engine, WS, sid, True)

    def broken(schedule):
        raise RuntimeError("platform factory exploded")

    (res,) = run_due(engine, WS, now=at(START), platform_factory=broken)
    assert res.status == "failed"
    run = runs_frame(engine, WS).iloc[0]
    assert run["status"] == "failed" and "exploded" in run["error"]


def test_a_failure_that_quotes_a_secret_is_recorded_mailed_and_shown_without_it(engine, sandbox):
    """A driver or platform message may quote a password or a token: the run's error, its headline (mailed and
    posted) and what the Schedules page shows carry neither."""
    sid = make_schedule(engine, sandbox)
    secrets = ("Pw0rd-4242", "EAABsbCS1iHgBAKZCZAsecretTOKEN1234567890")

    def broken(schedule):
        raise RuntimeError(f"cannot reach postgresql://ann:{secrets[0]}@db.internal/shop; "
                           f"GET /act_1/insights?access_token={secrets[1]} failed")

    (res,) = run_due(engine, WS, now=at(START), platform_factory=broken)
    run = runs_frame(engine, WS).iloc[0]
    assert res.status == "failed" and run["status"] == "failed" and "cannot reach" in run["error"]
    with pytest.raises(RuntimeError):
        run_schedule(engine, WS, sid, platform_factory=broken, now=at(START))
    stored = runs_frame(engine, WS)
    shown = [res.summary["headline"], *stored["error"].astype(str), *stored["summary"].astype(str)]
    assert all(secret not in text for text in shown for secret in secrets), shown


def test_bands_widen_by_the_accounts_own_calibration(engine, sandbox):
    """Outcomes that strayed from their predictions widen the next bands by their spread (never narrow them)."""
    from core.autopilot.outcomes import calibration
    from core.store.models import ChangeOutcome

    sid = make_schedule(engine, sandbox)
    run_schedule(engine, WS, sid, platform=sandbox, due_at=at(START), now=at(START))
    assert calibration(engine, WS, "sandbox", sandbox.account_id) == 1.0  # nothing measured yet
    with transaction(engine, WS) as s:
        rows = list(s.scalars(select(ChangeOutcome)))
        assert rows
        for o in rows:  # every outcome 3 model standard deviations above its prediction
            b = {"mean": 100.0, "lo": 100.0 - 1.645 * 10, "hi": 100.0 + 1.645 * 10}
            o.verdict, o.actual = "better", {"value": 130.0, "band": {"value": b}}
    n = len(rows)
    got = calibration(engine, WS, "sandbox", sandbox.account_id, min_outcomes=n)
    assert got == pytest.approx(3.0, rel=0.01)
    assert calibration(engine, WS, "sandbox", sandbox.account_id, min_outcomes=n + 1) == 1.0


def test_guardrails_judge_the_balanced_changes_that_execute_not_every_draft(engine, sandbox):
    """The account's total may not grow at all. Today's first steps alone do not balance (each moves its own
    20 % of its own budget), so judged all at once they breach the ceiling on paper; balanced, the changes
    that execute keep the total, so the raises go with the cuts that pay for them."""
    from core.guardrails import Guardrails, account_budgets, save_guardrails

    total = sum(account_budgets(engine, WS, "sandbox", sandbox.account_id).values(), Decimal(0))
    save_guardrails(engine, WS, Guardrails(account_budget_ceiling=total), actor="test")
    sid = make_schedule(engine, sandbox)
    dry = run_schedule(engine, WS, sid, platform=sandbox, dry_run=True, now=at(START))
    res = run_schedule(engine, WS, sid, platform=sandbox, now=at(START))
    ups = [x for x in res.summary["executed"] if Decimal(x["new"]) > Decimal(x["old"])]
    downs = [x for x in res.summary["executed"] if Decimal(x["new"]) < Decimal(x["old"])]
    assert ups and downs, res.summary
    assert not any("ceiling" in x["text"] for x in res.summary["blocked"]), res.summary["blocked"]
    live = sum((e.daily_budget for e in sandbox.list_entities() if e.entity_type == "campaign"), Decimal(0))
    assert live <= total
    # the dry run showed the same steps, as they would go (scaled to hold the total)
    assert sorted((x["external_id"], x["new"]) for x in dry.summary["executed"]) == \
        sorted((x["external_id"], x["new"]) for x in res.summary["executed"])
