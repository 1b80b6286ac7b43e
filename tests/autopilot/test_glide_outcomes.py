"""Glide paths (staging rules) and outcome verdicts, without a database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.autopilot import glide
from core.autopilot.outcomes import band, judge, plan_outcomes
from core.changes import DraftChange
from core.guardrails import Guardrails

TODAY = dt.date(2031, 3, 10)


def move(old, new, field="budget", xid="c1") -> DraftChange:
    return DraftChange("sandbox", "a", "campaign", xid, xid.upper(), field, Decimal(old), Decimal(new), "USD", "why", 90.0, True)


@pytest.mark.parametrize("old, new, step", [("100", "140", 20), ("100", "60", 20), ("37.5", "380", 15), ("900", "12", 20),
                                            ("100", "119", 20), ("5000", "5400", 5)])
def test_path_steps_never_exceed_the_limit_and_end_at_the_target(old, new, step):
    path = glide.path_values(Decimal(old), Decimal(new), step)
    assert path[-1] == Decimal(new)
    prev = Decimal(old)
    for v in path:
        assert abs(float(v / prev) - 1) * 100 <= step + 1e-9
        assert v == v.quantize(Decimal("0.01"))
        prev = v
    up = Decimal(new) > Decimal(old)
    fewest = np.ceil(abs(np.log(float(Decimal(new) / Decimal(old)))) / abs(np.log(1 + (step if up else -step) / 100)) - 1e-9)
    assert len(path) <= max(1, int(fewest)) + 1  # no dawdling: at most one extra step for the rounding


def test_a_40_percent_move_starts_with_a_20_percent_step_and_names_the_next_due_day():
    (d,) = glide.stage([move("100", "140")], Guardrails(), TODAY, glide.History())
    assert d.action == "propose" and d.new_value == Decimal("120.00") and d.path == (Decimal("140"),)
    assert d.next_due == TODAY + dt.timedelta(days=3)
    assert "step 1 of 2 toward 140" in d.note and str(TODAY + dt.timedelta(days=3)) in d.note
    assert d.as_draft().new_value == Decimal("120.00") and "step 1 of 2" in d.as_draft().reason


def test_a_small_move_goes_in_one_step():
    (d,) = glide.stage([move("100", "112")], Guardrails(), TODAY, glide.History())
    assert (d.action, d.new_value, d.path) == ("propose", Decimal("112"), ())


@pytest.mark.parametrize("history, expect", [
    (glide.History(last_change={"campaign:c1:budget": TODAY - dt.timedelta(days=2)}), "cooldown"),
    (glide.History(learning={"campaign:c1": "LEARNING"}), "learning phase"),
    (glide.History(contradicted={"campaign:c1:budget": "value 10 against 20"}), "contradicts the plan"),
], ids=["cooldown", "learning", "contradicted"])
def test_holds(history, expect):
    (d,) = glide.stage([move("100", "140")], Guardrails(), TODAY, history)
    assert d.action == "hold" and d.new_value is None and expect in d.note


def test_cooldown_passed_allows_the_next_step():
    h = glide.History(last_change={"campaign:c1:budget": TODAY - dt.timedelta(days=3)})
    (d,) = glide.stage([move("120", "140")], Guardrails(), TODAY, h)
    assert d.action == "propose" and d.new_value == Decimal("140")


def test_learning_cap_policy_allows_only_a_small_step():
    g = Guardrails(learning_policy="cap", learning_cap_pct=5)
    (d,) = glide.stage([move("100", "140")], g, TODAY, glide.History(learning={"campaign:c1": "LEARNING_BUDGET_CHANGE"}))
    assert d.action == "propose" and d.new_value == Decimal("105.00") and "learning phase" in d.note


def test_balance_keeps_the_total_budget():
    kept, held = glide.balance([move("100", "120", xid="a"), move("200", "240", xid="b"), move("300", "270", xid="c")])
    delta = sum(Decimal(d.new_value) - Decimal(d.old_value) for d in kept)
    assert abs(delta) <= Decimal("0.02") and not held
    assert {d.external_id: d.new_value for d in kept}["c"] == Decimal("270")
    kept, held = glide.balance([move("100", "120", xid="a")])  # nothing pays for it: it waits
    assert kept == [] and "hold the total daily budget" in held[0][1]


PRED = {"kind": "budget", "spend_cv": 0.05, "noise_cv": 0.2, "spend_draws": [90.0] * 50 + [110.0] * 50,
        "value_draws": [280.0] * 50 + [320.0] * 50}
WINDOW = (dt.date(2031, 3, 1), dt.date(2031, 3, 7))


def daily(value, days=7, start=dt.date(2031, 3, 1), spend=100.0):
    return pd.DataFrame({"date": [start + dt.timedelta(days=i) for i in range(days)], "spend": spend,
                         "conversion_value": value})


@pytest.mark.parametrize("rows, last, cut, verdict, flagged", [
    (daily(300.0), dt.date(2031, 3, 7), None, "as predicted", False),
    (daily(600.0), dt.date(2031, 3, 7), None, "better", True),
    (daily(100.0), dt.date(2031, 3, 7), None, "worse", True),
    (daily(300.0, days=4), dt.date(2031, 3, 4), None, "too early", False),
    (daily(300.0, days=2), dt.date(2031, 3, 7), dt.date(2031, 3, 3), "not measurable", False),
    (daily(300.0, days=4), dt.date(2031, 3, 7), dt.date(2031, 3, 5), "as predicted", False),
    (daily(300.0, days=0), dt.date(2031, 3, 7), None, "not measurable", False),
], ids=["inside", "above", "below", "too-early", "cut-too-short", "cut-but-enough", "no-data"])
def test_verdicts(rows, last, cut, verdict, flagged):
    v, reason, actual, flag = judge(PRED, rows, WINDOW, last, cut)
    assert (v, flag) == (verdict, flagged), reason
    assert reason


def test_bid_changes_are_not_measurable_with_the_reason():
    v, reason, _, flag = judge({"kind": "none", "why": "bids are not predicted"}, daily(1.0), WINDOW, WINDOW[1], None)
    assert (v, reason, flag) == ("not measurable", "bids are not predicted", False)


def test_band_narrows_with_more_days_and_covers_its_own_model():
    rng = np.random.default_rng(3)
    pred = {"kind": "budget", "spend_cv": 0.04, "noise_cv": 0.3, "spend_draws": rng.normal(100, 3, 200).tolist(),
            "value_draws": rng.normal(300, 15, 200).tolist()}
    assert band(pred, 7)["value"]["hi"] - band(pred, 7)["value"]["lo"] < band(pred, 2)["value"]["hi"] - band(pred, 2)["value"]["lo"]
    inside = 0
    for _ in range(400):  # outcomes drawn from the very model the band describes: ~90 % inside
        mean = rng.choice(pred["value_draws"]) * (1 + rng.normal(0, 0.3, 7)).mean()
        b = band(pred, 7)["value"]
        inside += b["lo"] <= mean <= b["hi"]
    assert 0.85 <= inside / 400 <= 0.95


def test_plan_verdict_adds_up_measured_changes():
    frame = pd.DataFrame({"plan_id": [1, 1, 1], "verdict": ["as predicted", "worse", "too early"],
                          "predicted_value": [100.0, 200.0, 50.0], "value_lo": [90.0, 180.0, 40.0],
                          "value_hi": [110.0, 220.0, 60.0], "actual_value": [100.0, 150.0, None]})
    row = plan_outcomes(frame).iloc[0]
    assert row["measured"] == 2 and row["predicted_value"] == 300.0 and row["actual_value"] == 250.0
    assert row["verdict"] == "worse" and row["too early"] == 1
