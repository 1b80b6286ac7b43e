"""A plan's net daily budget change is exact: summed in Decimal, so a budget-neutral plan is 0, never -0.00."""

from __future__ import annotations

from decimal import Decimal

from core.changes import DraftChange, create_plan, plans_frame

from .conftest import WS


def test_a_budget_neutral_plan_nets_to_exactly_zero(eng, sandbox):
    campaigns = [e for e in sandbox.list_entities() if e.daily_budget is not None][:3]
    assert len(campaigns) == 3
    # moves of +0.30, -0.10 and -0.20: in float the sum is -5.6e-17, shown as "-0.00" on Review and History
    steps = [Decimal("0.30"), Decimal("-0.10"), Decimal("-0.20")]
    drafts = [DraftChange("sandbox", "sandbox-1", e.entity_type, e.external_id, e.name, "budget", e.daily_budget,
                          e.daily_budget + step, e.currency, "move budget", 70.0) for e, step in zip(campaigns, steps)]
    pid = create_plan(eng, WS, drafts, actor="alice")
    row = plans_frame(eng, WS).set_index("id").loc[pid]
    assert row["budget_delta"] == 0.0 and f"{row['budget_delta']:+,.2f}" == "+0.00"
    assert row["applied_budget_delta"] == 0.0

    pid2 = create_plan(eng, WS, drafts[:2], actor="alice")  # +0.30 - 0.10: exactly 0.20
    assert plans_frame(eng, WS).set_index("id").loc[pid2, "budget_delta"] == 0.2
