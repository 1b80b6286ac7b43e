"""The Schedules page in the currency of the account a schedule targets (AppTest from app.py): a KWD account's
amounts take fils (3 decimals, step 0.001) and a JPY one's whole yen, the total budget is stored exactly
(1.234 KWD stays 1.234), an amount finer than the currency's unit is refused naming the field, the guardrail
ceilings follow the workspace's accounts, and the sandbox button opens an existing sandbox account or makes one
in a chosen currency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.autopilot.schedules import list_schedules
from core.guardrails import load_guardrails
from core.optimize import session as S
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform
from core.store.db import transaction
from core.store.models import AutopilotSchedule
from tests.pages.test_money_display import app_on

WS = "default"
#: currency -> (decimals, step, an amount at exactly that precision, one finer than it)
CASES = {"KWD": (3, 0.001, "1.234", "1.2345"), "JPY": (0, 1.0, "1500", "1500.5")}


@pytest.fixture
def db(empty_app_db):
    return empty_app_db


def sandbox_in(eng, currency: str, account_id: str) -> SandboxPlatform:
    sb = SandboxPlatform(eng, WS, account_id, currency=currency, n_meta=1, n_google=1, history_days=20)
    sync_platform(eng, WS, sb)
    return sb


def create(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label == "Create schedule").click().run()


def stored_settings(eng) -> list[dict]:
    with transaction(eng, WS) as s:
        return [dict(r) for r in s.scalars(select(AutopilotSchedule.settings).order_by(AutopilotSchedule.id))]


@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_the_total_budget_takes_the_accounts_precision_and_is_stored_exactly(db, currency):
    places, step, exact, finer = CASES[currency]
    sandbox_in(db, "USD", "sandbox-1")  # another account, in cents, listed first
    sandbox_in(db, currency, "shop")
    at = app_on("pages/schedules.py")
    at.selectbox(key="schedules.new.account").set_value("sandbox/shop").run()
    assert not at.exception, at.exception
    total = at.number_input(key="schedules.new.sandbox/shop.total")
    assert (total.proto.format, total.proto.step) == (f"%.{places}f", step)
    assert f"({currency})" in total.label
    # finer than the currency's unit: refused, naming the field, nothing stored
    total.set_value(float(finer))
    at.text_input(key="schedules.new.name").set_value("too fine")
    create(at)
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("total daily budget" in e and finer in e and currency in e for e in errors), errors
    assert list_schedules(db, WS) == []
    # at the currency's precision: stored exactly, as decimal text in the schedule's settings
    at.number_input(key="schedules.new.sandbox/shop.total").set_value(float(exact))
    at.text_input(key="schedules.new.name").set_value("exact")
    create(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    (sched,) = list_schedules(db, WS)
    assert (sched.account_id, sched.settings.total_budget) == ("shop", Decimal(exact))
    assert stored_settings(db)[0]["total_budget"] == exact


def test_the_usd_account_keeps_cents_and_switching_account_switches_the_input(db):
    sandbox_in(db, "USD", "sandbox-1")
    sandbox_in(db, "KWD", "shop-kw")
    at = app_on("pages/schedules.py")
    assert at.selectbox(key="schedules.new.account").value == "sandbox/sandbox-1"
    usd = at.number_input(key="schedules.new.sandbox/sandbox-1.total")
    assert (usd.proto.format, usd.proto.step) == ("%.2f", 0.01)
    usd.set_value(12.5)
    at.selectbox(key="schedules.new.account").set_value("sandbox/shop-kw").run()
    kwd = at.number_input(key="schedules.new.sandbox/shop-kw.total")
    assert (kwd.proto.format, kwd.proto.step, kwd.value) == ("%.3f", 0.001, 0.0)  # not the USD amount


@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_guardrail_ceilings_take_the_accounts_precision(db, currency):
    places, step, exact, finer = CASES[currency]
    sandbox_in(db, currency, "shop")
    at = app_on("pages/schedules.py")
    key = f"guard.{currency}.entity"
    ceiling = at.number_input(key=key)
    assert (ceiling.proto.format, ceiling.proto.step) == (f"%.{places}f", step)
    ceiling.set_value(float(finer))
    next(b for b in at.button if b.label == "Save guardrails").click().run()
    errors = [e.value for e in at.error]
    assert any("max daily budget per entity" in e and finer in e for e in errors), errors
    assert load_guardrails(db, WS).limits.entity_budget_ceiling is None
    at.number_input(key=key).set_value(float(exact))
    next(b for b in at.button if b.label == "Save guardrails").click().run()
    assert not at.error, [e.value for e in at.error]
    assert load_guardrails(db, WS).limits.entity_budget_ceiling == Decimal(exact)


def test_the_sandbox_button_makes_an_account_in_the_chosen_currency(db):
    at = app_on("pages/schedules.py")
    assert at.selectbox(key="schedules.sandbox.account").value == "__new__"  # none yet: a new one
    at.text_input(key="schedules.sandbox.new_id").set_value("shop-kw")
    at.selectbox(key="schedules.sandbox.currency").set_value("KWD")
    next(b for b in at.button if b.key == "schedules.sandbox").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert S.sandbox_accounts(db, WS).set_index("account_id").loc["shop-kw", "currency"] == "KWD"
    # the new account is picked for the schedule, its amounts in fils
    assert at.selectbox(key="schedules.new.account").value == "sandbox/shop-kw"
    assert at.number_input(key="schedules.new.sandbox/shop-kw.total").proto.step == 0.001
    # and another, in yen, from the same opener below the form
    at.selectbox(key="schedules.sandbox.account").set_value("__new__")
    at.text_input(key="schedules.sandbox.new_id").set_value("shop-jp")
    at.selectbox(key="schedules.sandbox.currency").set_value("JPY")
    next(b for b in at.button if b.key == "schedules.sandbox").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert dict(S.sandbox_accounts(db, WS)[["account_id", "currency"]].values) == {"shop-kw": "KWD", "shop-jp": "JPY"}
    assert at.selectbox(key="schedules.new.account").value == "sandbox/shop-jp"
    assert at.number_input(key="schedules.new.sandbox/shop-jp.total").proto.format == "%.0f"


def test_the_sandbox_button_opens_an_existing_account_in_its_own_currency(db):
    SandboxPlatform(db, WS, "old-kw", currency="KWD", n_meta=1, n_google=1, history_days=10)  # made, never synced
    at = app_on("pages/schedules.py")
    at.selectbox(key="schedules.sandbox.account").set_value("old-kw")
    next(b for b in at.button if b.key == "schedules.sandbox").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert S.sandbox_accounts(db, WS)["account_id"].tolist() == ["old-kw"]  # no USD account was made
    assert any(s.kind == "sync" and s.account_id == "old-kw" for s in S.list_sources(db, WS))
    assert at.selectbox(key="schedules.new.account").value == "sandbox/old-kw"
    assert at.number_input(key="schedules.new.sandbox/old-kw.total").proto.format == "%.3f"


def test_a_runs_items_show_their_amounts_in_the_accounts_currency(db):
    from core.autopilot import AutopilotSettings, create_schedule

    sb = SandboxPlatform(db, WS, "shop-kw", currency="KWD", seed=2, n_meta=2, n_google=1, history_days=60)
    sync_platform(db, WS, sb)
    sid = create_schedule(db, WS, name="kw", platform="sandbox", account_id="shop-kw", actor="t",
                          settings=AutopilotSettings(confidence_threshold=0.0))
    at = app_on("pages/schedules.py")
    next(b for b in at.button if b.key == f"schedules.{sid}.dry").click().run()
    assert not at.exception, at.exception
    items = [d.value for d in at.dataframe if {"old", "new", "text"} <= set(d.value.columns)]
    assert items, "the dry run lists its moves"
    fils = r"\d{1,3}(?:,\d{3})*\.\d{3} KWD"
    for frame in items:
        for col in ("old", "new"):
            assert frame.loc[frame["field"] == "budget", col].str.fullmatch(fils).all(), frame[col].tolist()
        assert frame.loc[frame["field"] == "budget", "text"].str.contains(rf"{fils} -> {fils}").any(), frame["text"].tolist()
