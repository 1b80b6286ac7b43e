"""Safety rules, content hash, diff table and inverse plan as pure functions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.changes import (
    ChangePlanError,
    PlannedChange,
    SafetySettings,
    check_changes,
    content_hash,
    diff_table,
    inverse_changes,
)


def pc(seq, field="budget", old="100", new="120", status="pending", currency="USD"):
    conv = (lambda v: None if v is None else Decimal(v)) if field != "status" else (lambda v: v)
    return PlannedChange(seq, "campaign", f"c{seq}", f"Camp {seq}", field, conv(old), conv(new), currency, "why", 70.0,
                         status=status)


def verdicts(changes, **kw):
    return [(c.ok, " | ".join(c.messages)) for c in check_changes(changes, SafetySettings(**kw))]


def test_max_change_pct_both_directions():
    v = verdicts([pc(1, new="150"), pc(2, new="150.01"), pc(3, new="50"), pc(4, new="49.99")], max_change_pct=50)
    assert [ok for ok, _ in v] == [True, False, True, False]
    assert "+50.0% exceeds the ±50% limit" in v[1][1]
    assert verdicts([pc(1, new="1000")], max_change_pct=None)[0][0] is True


def test_budget_bounds_and_bids():
    v = verdicts([pc(1, old="10", new="12"), pc(2, old="900", new="1000"), pc(3, field="bid", old="1.00", new="0.80")],
                 min_budget=Decimal("15"), max_budget=Decimal("950"))
    assert not v[0][0] and "below the minimum 15" in v[0][1]
    assert not v[1][0] and "above the maximum 950" in v[1][1]
    assert v[2][0]  # budget bounds do not apply to bids


def test_total_increase_cap_blocks_the_increases_only():
    changes = [pc(1, old="100", new="140"), pc(2, old="100", new="130"), pc(3, old="100", new="90")]
    v = verdicts(changes, max_total_increase=Decimal("50"))  # net +60
    assert [ok for ok, _ in v] == [False, False, True]
    assert "raises total daily budget by 60 > cap 50" in v[0][1]
    assert all(ok for ok, _ in verdicts(changes, max_total_increase=Decimal("60")))


def test_status_changes_need_permission_and_a_valid_status():
    assert verdicts([pc(1, "status", "ACTIVE", "PAUSED")])[0] == (False, "status changes are not allowed by the safety settings")
    assert verdicts([pc(1, "status", "ACTIVE", "PAUSED")], allow_status_changes=True)[0][0]
    assert not verdicts([pc(1, "status", "ACTIVE", "DELETED")], allow_status_changes=True)[0][0]


def test_amount_rules():
    v = verdicts([pc(1, new="100.005"), pc(2, new="0"), pc(3, old=None, new="10"), pc(4, new="100"),
                  pc(5, old="0", new="5"), pc(6, old="1000", new="1001", currency="JPY"),
                  pc(7, old="1000", new="1000.5", currency="JPY")], min_budget=Decimal("0"))
    assert "minor units" in v[0][1]
    assert "must be positive" in v[1][1]
    assert "no current value" in v[2][1]
    assert "nothing to change" in v[3][1]
    assert "unbounded" in v[4][1]
    assert v[5][0] and "JPY minor units" in v[6][1]


def test_settings_validate_and_round_trip():
    s = SafetySettings(max_change_pct=20, min_budget="5", max_budget=Decimal("500"), max_total_increase=100)
    assert SafetySettings.from_dict(s.to_dict()) == s and s.min_budget == Decimal("5")
    with pytest.raises(ChangePlanError):
        SafetySettings(max_change_pct=0)
    with pytest.raises(ChangePlanError):
        SafetySettings(min_budget=10, max_budget=5)
    with pytest.raises(ChangePlanError, match="unknown"):
        SafetySettings.from_dict({"speed": 1})


def test_content_hash_covers_what_was_reviewed_and_ignores_decimal_scale():
    s = SafetySettings()
    base = [pc(1), pc(2, new="110")]
    h = content_hash("sandbox", "a", s, base)
    assert h == content_hash("sandbox", "a", s, [pc(1, old="100.000000", new="120.00"), pc(2, new="110.0")])
    assert h == content_hash("sandbox", "a", s, list(reversed(base)))
    assert h != content_hash("sandbox", "a", s, [pc(1), pc(2, new="111")])
    assert h != content_hash("sandbox", "b", s, base)
    assert h != content_hash("sandbox", "a", SafetySettings(max_change_pct=10), base)
    reason = PlannedChange(**{**pc(1).__dict__, "reason": "other"})
    assert h != content_hash("sandbox", "a", s, [reason, pc(2, new="110")])


def test_diff_table_rows():
    changes = [pc(1, new="125"), pc(2, "status", "ACTIVE", "PAUSED")]
    df = diff_table(changes, check_changes(changes, SafetySettings(max_change_pct=20)))
    assert list(df["old"]) == ["100.00 USD", "ACTIVE"] and list(df["new"]) == ["125.00 USD", "PAUSED"]
    assert df["change_pct"].iloc[0] == 25.0 and df["change_pct"].isna().iloc[1]
    assert "exceeds" in df["safety"].iloc[0] and "not allowed" in df["safety"].iloc[1]
    assert {"entity", "field", "reason", "confidence"} <= set(df.columns)


def test_inverse_swaps_applied_changes_in_reverse_order():
    changes = [pc(1, status="applied"), pc(2, new="90", status="failed"), pc(3, "status", "ACTIVE", "PAUSED", status="applied")]
    inv = inverse_changes(changes, plan_id=7)
    assert [(c.seq, c.external_id, c.old_value, c.new_value) for c in inv] == [
        (1, "c3", "PAUSED", "ACTIVE"), (2, "c1", Decimal("120"), Decimal("100"))]
    assert inv[1].reason == "rollback of plan #7 change 1"
    with pytest.raises(ChangePlanError, match="no old value"):
        inverse_changes([pc(1, old=None, status="applied")], 1)
