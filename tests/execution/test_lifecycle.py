"""Every lifecycle rule: draft -> previewed -> approved -> executing -> final, and what is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from core import execute as ex
from core.changes import ChangePlanError, DraftChange, SafetySettings, create_plan, load_plan
from core.store.db import transaction
from core.store.models import Change

from .conftest import WS, approved_plan, budget_drafts


def test_create_plan_is_a_draft_with_an_audit_event(eng, sandbox):
    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="alice", name="grow")
    view = load_plan(eng, WS, pid)
    assert view.status == "draft" and view.name == "grow" and view.content_hash == ""
    assert [c.seq for c in view.changes] == [1, 2, 3, 4]
    assert all(c.status == "pending" for c in view.changes)
    assert [(e["from"], e["to"], e["actor"]) for e in view.events] == [(None, "draft", "alice")]


def test_create_plan_rejects_bad_input(eng, sandbox):
    drafts = budget_drafts(sandbox)
    with pytest.raises(ChangePlanError, match="at least one"):
        create_plan(eng, WS, [], actor="a")
    with pytest.raises(ChangePlanError, match="both set budget"):
        create_plan(eng, WS, [drafts[0], drafts[0]], actor="a")
    other = DraftChange("sandbox", "sandbox-2", "campaign", "x", "x", "budget", Decimal(1), Decimal(2), "USD", "", 1)
    with pytest.raises(ChangePlanError, match="one account"):
        create_plan(eng, WS, [drafts[0], other], actor="a")
    bad_field = DraftChange("sandbox", "sandbox-1", "campaign", "x", "x", "colour", "red", "blue", "USD", "", 1)
    with pytest.raises(ChangePlanError, match="unknown field"):
        create_plan(eng, WS, [bad_field], actor="a")
    bad_amount = DraftChange("sandbox", "sandbox-1", "campaign", "x", "x", "budget", "1", "lots", "USD", "", 1)
    with pytest.raises(ChangePlanError, match="not an amount"):
        create_plan(eng, WS, [bad_amount], actor="a")


def test_nothing_executes_without_preview_and_approval(eng, sandbox):
    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="alice")
    with pytest.raises(ex.PlanStateError, match="draft"):
        ex.execute(eng, WS, pid, "0" * 64, sandbox, actor="alice")
    with pytest.raises(ex.PlanStateError, match="previewed plan can be approved"):
        ex.approve(eng, WS, pid, "0" * 64, actor="alice")
    pr = ex.preview(eng, WS, pid, sandbox, actor="alice")
    with pytest.raises(ex.PlanStateError, match="previewed"):
        ex.execute(eng, WS, pid, pr.content_hash, sandbox, actor="alice")
    assert sandbox.calls.get("apply", 0) == 0
    assert load_plan(eng, WS, pid).status == "previewed"


def test_approve_refuses_another_hash_and_a_tampered_plan(eng, sandbox):
    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="alice")
    pr = ex.preview(eng, WS, pid, sandbox, actor="alice")
    with pytest.raises(ex.PlanHashMismatch):
        ex.approve(eng, WS, pid, "f" * 64, actor="alice")
    with transaction(eng, WS) as s:  # someone edits a change after the preview
        s.execute(update(Change).where(Change.plan_id == pid, Change.seq == 1).values(new_value="9999.00"))
    with pytest.raises(ex.PlanHashMismatch, match="no longer match"):
        ex.approve(eng, WS, pid, pr.content_hash, actor="alice")
    assert load_plan(eng, WS, pid).status == "previewed"


def test_preview_freezes_verdicts_and_hash_and_is_repeatable(eng, sandbox):
    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="alice")
    a = ex.preview(eng, WS, pid, sandbox, actor="alice")
    b = ex.preview(eng, WS, pid, sandbox, actor="bob")
    assert a.content_hash == b.content_hash and len(a.content_hash) == 64
    view = load_plan(eng, WS, pid)
    assert view.content_hash == a.content_hash
    assert set(view.preview["checks"]) == {"1", "2", "3", "4"} and all(v["ok"] for v in view.preview["validations"].values())
    # other limits are part of what was reviewed: a new hash
    c = ex.preview(eng, WS, pid, sandbox, actor="alice", settings=SafetySettings(max_change_pct=10))
    assert c.content_hash != a.content_hash and not any(v["ok"] for v in c.checks.values())
    with pytest.raises(ex.PlanStateError, match="no change passes"):
        ex.approve(eng, WS, pid, c.content_hash, actor="alice")


def test_full_lifecycle_records_every_transition(eng, sandbox):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox), actor="alice")
    res = ex.execute(eng, WS, pid, h, sandbox, actor="bob")
    assert res.status == "completed" and res.counts == {"applied": 4}
    view = load_plan(eng, WS, pid)
    assert [(e["from"], e["to"], e["actor"]) for e in view.events] == [
        (None, "draft", "alice"), ("draft", "previewed", "alice"), ("previewed", "approved", "alice"),
        ("approved", "executing", "bob"), ("executing", "completed", "bob")]
    assert all(e["at"].tzinfo is not None for e in view.events)
    with pytest.raises(ex.PlanStateError):
        ex.preview(eng, WS, pid, sandbox, actor="alice")
    with pytest.raises(ex.PlanStateError):
        ex.cancel(eng, WS, pid, actor="alice")


def test_cancelled_plan_cannot_be_approved_or_executed(eng, sandbox):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox))
    ex.cancel(eng, WS, pid, actor="alice", note="changed my mind")
    assert load_plan(eng, WS, pid).events[-1]["note"] == "changed my mind"
    with pytest.raises(ex.PlanStateError, match="cancelled"):
        ex.execute(eng, WS, pid, h, sandbox, actor="alice")
    assert sandbox.calls.get("apply", 0) == 0


def test_plan_for_another_account_is_refused(eng, sandbox):
    from core.platforms.sandbox import SandboxPlatform

    pid = create_plan(eng, WS, budget_drafts(sandbox), actor="alice")
    other = SandboxPlatform(eng, WS, account_id="sandbox-2", n_meta=1, n_google=0, history_days=2)
    with pytest.raises(ex.PlanStateError, match="targets sandbox/sandbox-1"):
        ex.preview(eng, WS, pid, other, actor="alice")


def test_blocked_changes_are_not_applied_and_the_result_is_partial(eng, sandbox):
    drafts = budget_drafts(sandbox)
    huge = drafts[0].__class__(**{**drafts[0].__dict__, "new_value": drafts[0].old_value * 3})
    pid, h = approved_plan(eng, sandbox, [huge] + drafts[1:])
    res = ex.execute(eng, WS, pid, h, sandbox, actor="alice")
    assert res.status == "partially_failed" and res.counts == {"blocked": 1, "applied": 3}
    view = load_plan(eng, WS, pid)
    assert view.changes[0].status == "blocked" and "exceeds" in view.rows[0]["error_message"]
    assert sandbox.read_live("campaign", huge.external_id, "budget") == huge.old_value
    assert sandbox.calls["apply"] == 3


def test_safety_checks_run_again_at_execution(eng, sandbox):
    pid, h = approved_plan(eng, sandbox, budget_drafts(sandbox, "1.2"))
    res = ex.execute(eng, WS, pid, h, sandbox, actor="alice", settings=SafetySettings(max_change_pct=5))
    assert res.status == "failed" and res.counts == {"blocked": 4}
    assert sandbox.calls.get("apply", 0) == 0


def test_platform_validation_failures_are_blocked(eng, sandbox):
    d = budget_drafts(sandbox)[0]
    cents = d.__class__(**{**d.__dict__, "new_value": d.old_value + Decimal("0.005")})
    ok = budget_drafts(sandbox)[1]
    pid = create_plan(eng, WS, [cents, ok], actor="a", settings=SafetySettings(min_budget=Decimal("0.001")))
    pr = ex.preview(eng, WS, pid, sandbox, actor="a")
    assert pr.validations["1"]["ok"] is False and "minor unit" in pr.validations["1"]["message"]
    ex.approve(eng, WS, pid, pr.content_hash, actor="a")
    res = ex.execute(eng, WS, pid, pr.content_hash, sandbox, actor="a")
    assert res.counts == {"blocked": 1, "applied": 1}


def test_auto_approval_only_when_switched_on_and_logged(eng, sandbox):
    off = create_plan(eng, WS, budget_drafts(sandbox, auto=True), actor="alice")
    assert ex.preview(eng, WS, off, sandbox, actor="alice").status == "previewed"

    on = create_plan(eng, WS, budget_drafts(sandbox, auto=True), actor="alice")
    pr = ex.preview(eng, WS, on, sandbox, actor="alice", auto_approve=True)
    assert pr.auto_approved and pr.status == "approved"
    ev = load_plan(eng, WS, on).events[-1]
    assert ev["actor"] == "auto-approval" and ev["to"] == "approved" and "switched on by alice" in ev["note"]
    assert ex.execute(eng, WS, on, pr.content_hash, sandbox, actor="alice").status == "completed"


def test_auto_approval_refused_when_a_change_is_below_threshold(eng, sandbox):
    drafts = budget_drafts(sandbox, auto=True)
    drafts[2] = drafts[2].__class__(**{**drafts[2].__dict__, "auto_approve": False})
    pid = create_plan(eng, WS, drafts, actor="alice")
    pr = ex.preview(eng, WS, pid, sandbox, actor="alice", auto_approve=True)
    assert not pr.auto_approved
    view = load_plan(eng, WS, pid)
    assert view.status == "previewed" and "manual approval" in view.events[-1]["note"]
