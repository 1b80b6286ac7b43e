"""The sandbox account: history on first use, protocol answers, simulated response to changes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest

from core.platforms.base import AdPlatform, ChangeRequest, PermanentPlatformError, RateLimitError
from core.platforms.registry import available_platforms, get_platform
from core.platforms.sandbox import SandboxPlatform

from .conftest import TODAY, WS


def test_first_use_creates_entities_and_history(eng, sandbox):
    assert isinstance(sandbox, AdPlatform)
    ents = sandbox.list_entities()
    kinds = {e.entity_type for e in ents}
    assert kinds == {"campaign", "ad_set", "ad_group"} and len(ents) == 4 + 8
    assert all(e.daily_budget is not None for e in ents if e.entity_type == "campaign")
    assert all(e.bid is not None and e.parent_id for e in ents if e.entity_type != "campaign")
    assert sandbox.clock() == TODAY - dt.timedelta(days=1)
    rows = sandbox.fetch_performance(TODAY - dt.timedelta(days=10), TODAY)
    assert {r.date for r in rows} == {TODAY - dt.timedelta(days=i) for i in range(1, 11)}
    assert {r.segment_type for r in rows} == {"", "device", "placement", "hour"}
    assert all(isinstance(r.spend, Decimal) and r.spend >= 0 for r in rows)
    # reopening the same account reuses it (no second history)
    again = SandboxPlatform(eng, WS, seed=99, today=TODAY + dt.timedelta(days=40))
    assert again.clock() == sandbox.clock() and len(again.list_entities()) == len(ents)


def test_same_seed_same_history(tmp_path):
    from core.store.db import make_engine

    frames = []
    for i in range(2):
        e = make_engine("sqlite:///" + str(tmp_path / f"{i}.db"))
        sb = SandboxPlatform(e, WS, seed=11, n_meta=1, n_google=1, history_days=5, today=TODAY)
        frames.append(sb.performance_frame(TODAY - dt.timedelta(days=9), TODAY))
        e.dispose()
    assert frames[0].equals(frames[1]) and len(frames[0]) > 0


def test_segments_add_up_to_campaign_totals(sandbox):
    f = sandbox.performance_frame(TODAY - dt.timedelta(days=30), TODAY)
    camp = f[(f.entity_type == "campaign") & (f.segment_type == "")].set_index(["external_id", "date"])
    seg = f[f.segment_type != ""].groupby(["external_id", "date", "segment_type"])[["conversions", "clicks"]].sum()
    for (xid, day, _), row in seg.iterrows():
        assert row.conversions == camp.at[(xid, day), "conversions"] and row.clicks == camp.at[(xid, day), "clicks"]


def campaign_spend(sandbox, xid, start, end):
    f = sandbox.performance_frame(start, end)
    sel = f[(f.external_id == xid) & (f.segment_type == "")]
    return np.array([float(v) for v in sel.spend]), sel.conversions.to_numpy(float)


def test_budget_change_moves_future_performance(sandbox):
    xid = "meta-c001"
    old = sandbox.read_live("campaign", xid, "budget")
    start, end = sandbox.advance_days(20)
    spend0, conv0 = campaign_spend(sandbox, xid, start, end)
    sandbox.apply(ChangeRequest("k", "campaign", xid, "budget", old, (old * 3).quantize(Decimal("0.01"))))
    start, end = sandbox.advance_days(20)
    spend1, conv1 = campaign_spend(sandbox, xid, start, end)
    assert spend1.mean() > 2.5 * spend0.mean()
    assert conv1.mean() > conv0.mean()  # more value, with diminishing returns per unit of spend
    assert conv1.sum() / spend1.sum() < conv0.sum() / spend0.sum() * 1.05


def test_pause_stops_spend(sandbox):
    sandbox.apply(ChangeRequest("k", "campaign", "google-c001", "status", "ACTIVE", "PAUSED"))
    start, end = sandbox.advance_days(3)
    spend, conv = campaign_spend(sandbox, "google-c001", start, end)
    assert spend.sum() == 0 and conv.sum() == 0


def test_validate_and_apply_reject_what_the_platform_would(sandbox):
    reqs = [ChangeRequest("1", "campaign", "meta-c001", "budget", None, Decimal("10.005")),
            ChangeRequest("2", "campaign", "nope", "budget", None, Decimal("10")),
            ChangeRequest("3", "campaign", "meta-c001", "bid", None, Decimal("1.00")),
            ChangeRequest("4", "ad_group", "google-c001-ag1", "bid", None, Decimal("1.25")),
            ChangeRequest("5", "campaign", "meta-c001", "status", None, "ARCHIVED")]
    res = sandbox.validate(reqs)
    assert [r.ok for r in res] == [False, False, False, True, False]
    assert sandbox.read_live("ad_group", "google-c001-ag1", "bid") != Decimal("1.25")  # validate writes nothing
    with pytest.raises(PermanentPlatformError) as err:
        sandbox.apply(reqs[0])
    assert err.value.code == "100" and err.value.request_id


def test_fault_injection_counts_calls(sandbox):
    sandbox.inject("rate_limit", method="read_live", on_call=2, retry_after=3.0)
    sandbox.read_live("campaign", "meta-c001", "budget")
    with pytest.raises(RateLimitError) as err:
        sandbox.read_live("campaign", "meta-c001", "budget")
    assert err.value.retry_after == 3.0 and err.value.transient
    sandbox.read_live("campaign", "meta-c001", "budget")
    assert sandbox.calls["read_live"] == 3
    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.inject("flood")


def test_registry_gives_the_sandbox_by_default(eng):
    assert available_platforms()[0] == "sandbox"
    p = get_platform(None, eng, WS, n_meta=1, n_google=0, history_days=2)
    assert p.name == "sandbox" and p.account_id == "sandbox-1"
    with pytest.raises(ValueError, match="unknown ad platform"):
        get_platform("myspace", eng, WS)
