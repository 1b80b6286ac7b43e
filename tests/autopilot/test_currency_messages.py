"""A schedule's money in its account's currency: the total budget kept exactly and refused when finer than the
currency's unit (in core, whatever the caller), and the run's messages (moves, guardrail reasons, glide paths)
stating amounts at the currency's ISO precision (KWD fils, JPY whole yen)."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

import pytest

from core.autopilot import AutopilotSettings
from core.autopilot.glide import paths_frame
from core.autopilot.runner import run_schedule
from core.autopilot.schedules import (
    ScheduleError,
    list_schedules,
    load_schedule,
    update_schedule,
)
from core.guardrails import load_guardrails, save_guardrails
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform

from .conftest import START, WS, at, make_schedule

PLACES = {"KWD": 3, "JPY": 0}
#: an amount as a message states it: thousands separators, exactly the currency's decimals
AMOUNT = r"\d{1,3}(?:,\d{3})*"


def amounts_in(text: str, after: str) -> list[str]:
    return re.findall(rf"{after} ([\d,]+(?:\.\d+)?)", text)


@pytest.fixture(params=["KWD", "JPY"])
def account(request, engine):
    sb = SandboxPlatform(engine, WS, account_id="shop", currency=request.param, seed=2, n_meta=2, n_google=1,
                         history_days=60, today=START)
    sync_platform(engine, WS, sb)
    return sb, request.param


def test_a_run_states_its_amounts_at_the_currency_precision(engine, account):
    sb, currency = account
    places = PLACES[currency]
    shown = re.compile(rf"^{AMOUNT}" + (rf"\.\d{{{places}}}$" if places else "$"))
    g = load_guardrails(engine, WS).limits
    save_guardrails(engine, WS, replace(g, account_budget_ceiling=Decimal(10), entity_budget_ceiling=Decimal(20)),
                    actor="t")
    sid = make_schedule(engine, sb)
    texts = []
    for dry in (True, False):
        res = run_schedule(engine, WS, sid, platform=sb, due_at=at(START), now=at(START), dry_run=dry, actor="t")
        texts += [i["text"] for i in res.summary["blocked"]]
    assert texts, "the ceilings block the raises"
    for text in texts:
        moved = re.search(rf"budget (\S+) {currency} -> (\S+) {currency}", text)
        assert moved and all(shown.match(a) for a in moved.groups()), text
        found = amounts_in(text, "would total") + amounts_in(text, "its ceiling") + amounts_in(text, "ceiling of")
        assert found and all(shown.match(a) for a in found), text
    assert any("its ceiling " + ("10.000" if currency == "KWD" else "10") in t for t in texts), texts
    paths = paths_frame(engine, WS)
    for steps, note in zip(paths["steps"], paths["note"]):
        assert all(shown.match(v) for v in re.findall(r"([\d,.]+) \(", steps)), steps
        for a in amounts_in(note, "toward"):
            assert shown.match(a), note


def test_the_total_budget_is_kept_exactly_and_a_finer_one_refused_naming_the_field(engine, account):
    sb, currency = account
    exact, finer = {"KWD": ("1234.567", "1.2345"), "JPY": ("150000", "1500.5")}[currency]
    sid = make_schedule(engine, sb, settings=AutopilotSettings(total_budget=Decimal(exact)))
    assert load_schedule(engine, WS, sid).settings.total_budget == Decimal(exact)
    assert load_schedule(engine, WS, sid).settings.to_dict()["total_budget"] == exact
    with pytest.raises(ScheduleError, match=rf"total daily budget: {re.escape(finer)} {currency} is finer"):
        make_schedule(engine, sb, name="fine", settings=AutopilotSettings(total_budget=Decimal(finer)))
    with pytest.raises(ScheduleError, match="total daily budget"):
        update_schedule(engine, WS, sid, settings=AutopilotSettings(total_budget=Decimal(finer)), actor="t")
    assert [s.name for s in list_schedules(engine, WS)] == ["daily"]
    assert load_schedule(engine, WS, sid).settings.total_budget == Decimal(exact)  # the update changed nothing
    # a float from an input or an older schedule is read by its shortest repr: 1.234 stays 1.234
    assert AutopilotSettings(total_budget=1.234).total_budget == Decimal("1.234")
    assert AutopilotSettings.from_dict({"total_budget": 0.1}).total_budget == Decimal("0.1")
    with pytest.raises(ScheduleError, match="total daily budget"):
        AutopilotSettings(total_budget=float("nan"))
