"""The autopilot states the confidence of the step it executes today, not of the whole staged move."""

from __future__ import annotations

import datetime as dt

import numpy as np

from core.autopilot import glide
from core.guardrails import Guardrails
from core.optimize.confidence import assess_budget_changes
from core.optimize.recommend import policy_for, recommend
from core.optimize.settings import FixedBudget, RecommendSettings
from tests.optimize.test_honest_confidence import _stepped

TODAY = dt.date(2026, 6, 1)


def test_a_staged_step_carries_its_own_confidence_and_approval():
    df = _stepped(n=5, days=90, seed=21, noise=0.5)
    settings = RecommendSettings(max_change=1.0, min_confidence=0)
    rec = recommend(df, FixedBudget(), settings=settings)
    policy = policy_for(settings)
    decisions = glide.stage(rec.changes, Guardrails(), TODAY, glide.History())
    staged = [d for d in decisions if d.action == "propose" and d.path]
    assert staged, "the test needs a move larger than the 20 % step limit"
    restated = glide.restate_steps(decisions, rec, 70.0, policy)
    table = rec.budget_table
    old = table["current_budget"].to_numpy(float)
    new = table["new_budget"].to_numpy(float).copy()
    row = {x: i for i, x in enumerate(table["external_id"])}
    for d in staged:
        new[row[d.draft.external_id]] = float(d.new_value)
    expect = assess_budget_changes(rec.curves, old, new, rec.hurdle, policy=policy).table["confidence"].to_numpy(float)
    by_id = {d.draft.external_id: d for d in restated}
    for d in staged:
        r = by_id[d.draft.external_id]
        c = expect[row[d.draft.external_id]]
        assert r.draft.confidence == round(float(c), 1)
        assert r.draft.auto_approve == (r.draft.confidence >= 70.0)
        assert r.draft.confidence >= d.draft.confidence - 1e-9  # a step part-way is at least as sure (concave curves)
        assert "for today's step" in r.note and r.new_value == d.new_value
    unstaged = [d for d in decisions if not (d.action == "propose" and d.path)]
    assert all(by_id[d.draft.external_id] == d for d in unstaged)
    assert np.isfinite(rec.hurdle)
