"""Currencies whose minor unit is not a cent: ISO 4217 precision inside, each platform's unit at its boundary.

A 1.234 KWD budget is planned, dry-run and executed on the sandbox and on Google (1,234,000 micros sent),
and refused by name on Meta, which has no KWD ad accounts; Meta's BHD (kept in hundredths) takes 1.23 and
refuses 1.234; JPY stays in whole yen. The real SDKs build every request.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
import responses

from core import execute as ex
from core.changes import DraftChange, SafetySettings, create_plan, diff_table, load_plan
from core.execute import RetryPolicy
from core.money import (
    META_OFFSETS,
    UnsupportedCurrency,
    currency_exponent,
    format_money,
    meta_offset,
    money_step,
    quantize_money,
    split_exact,
)
from core.platforms.base import ChangeRequest, PermanentPlatformError
from core.platforms.credentials import MetaCredentials
from core.platforms.meta import MetaAdsPlatform
from core.platforms.sandbox import SandboxPlatform
from core.platforms.units import google_units, meta_units

from .conftest import GOOGLE_CUSTOMER, GOOGLE_DEV_TOKEN, GOOGLE_LOGIN, default_google_account
from .test_end_to_end import GraphFake, Waits
from .test_meta import SECRET, TOKEN

WS = "minor"
THREE_DECIMALS = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")


def run_plan(engine, platform, drafts):
    """Create -> preview -> approve -> execute; returns (plan id, preview, result)."""
    pid = create_plan(engine, WS, drafts, actor="alice", settings=SafetySettings(max_change_pct=50, min_budget=Decimal(0)))
    pr = ex.preview(engine, WS, pid, platform, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="bob")
    res = ex.execute(engine, WS, pid, pr.content_hash, platform, actor="bob",
                     retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=1, sleep=Waits()))
    return pid, pr, res


def preview_only(engine, platform, drafts):
    """Create -> preview (a plan nothing of which passes cannot be approved); returns (plan id, preview)."""
    pid = create_plan(engine, WS, drafts, actor="alice", settings=SafetySettings(max_change_pct=50, min_budget=Decimal(0)))
    return pid, ex.preview(engine, WS, pid, platform, actor="alice")


# ------------------------------------------------------------------------------------- the two tables
def test_iso_exponents_and_meta_offsets_are_separate_concepts():
    assert [currency_exponent(c) for c in THREE_DECIMALS] == [3] * 7
    assert [currency_exponent(c) for c in ("JPY", "KRW", "UGX", "XOF", "ISK")] == [0] * 5
    assert [currency_exponent(c) for c in ("USD", "EUR", "HUF", "IDR", "TWD", "COP")] == [2] * 6  # ISO keeps their cents
    assert currency_exponent("CLF") == 4
    with pytest.raises(UnsupportedCurrency, match="XAU is not money"):
        currency_exponent("XAU")
    # Meta's table (Marketing API "Currency codes"): 11 currencies at offset 1, 54 at 100, no 3-decimal offset
    assert sorted(c for c, o in META_OFFSETS.items() if o == 1) == sorted(
        ["CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"])
    assert sum(o == 100 for o in META_OFFSETS.values()) == 54 and set(META_OFFSETS.values()) == {1, 100}
    assert meta_offset("BHD") == meta_offset("JOD") == 100  # Meta keeps these 3-decimal dinars in hundredths
    for code in ("KWD", "OMR", "IQD", "LYD", "TND", "UGX"):
        with pytest.raises(UnsupportedCurrency, match=f"Meta does not support {code} as an ad account currency"):
            meta_offset(code)


def test_money_step_is_iso_unless_the_platform_is_coarser():
    assert money_step("KWD") == Decimal("0.001") and money_step("KWD", "google") == Decimal("0.001")
    assert money_step("JPY") == money_step("JPY", "meta") == Decimal(1)
    assert money_step("HUF") == Decimal("0.01") and money_step("HUF", ["sandbox", "meta"]) == Decimal(1)
    assert money_step("BHD", "meta") == Decimal("0.01")
    with pytest.raises(UnsupportedCurrency, match="KWD"):
        money_step("KWD", "meta")
    assert quantize_money(Decimal("1.234"), "KWD") == Decimal("1.234")  # was 1.23: a lost fils per budget
    assert quantize_money(Decimal("1500.5"), "JPY") == Decimal("1500")  # half-even, whole yen
    assert format_money(Decimal("1234.5"), "KWD", code=True) == "1,234.500 KWD"
    assert format_money(Decimal("-7"), "JPY", signed=True) == "-7"


@pytest.mark.parametrize("currency,places", [("KWD", 3), ("JPY", 0), ("USD", 2), ("OMR", 3)])
def test_split_exact_sums_exactly_at_the_currency_precision(currency, places):
    rng = random.Random(7)
    step = Decimal(1).scaleb(-places)
    for _ in range(200):
        amounts = [rng.uniform(0, 50) for _ in range(rng.randint(1, 9))]
        total = Decimal(repr(sum(amounts))).quantize(step, rounding="ROUND_FLOOR")
        parts = split_exact(amounts, total, currency)
        assert sum(parts) == total
        assert all(p == p.quantize(step) and p.as_tuple().exponent == -places for p in parts)
        assert all(abs(p - Decimal(repr(a))) < step for p, a in zip(parts, amounts))
    assert split_exact([0.4115, 0.4115, 0.4115], Decimal("1.234"), "KWD") == [Decimal("0.412"), Decimal("0.411"), Decimal("0.411")]
    with pytest.raises(ValueError, match="whole number"):
        split_exact([1.0, 1.0], Decimal("2.5"), "JPY")


# ------------------------------------------------------------------------------------------ sandbox
def test_kwd_sandbox_plans_dry_runs_and_executes_to_the_fils(engine):
    sb = SandboxPlatform(engine, WS, account_id="sandbox-kwd", currency="KWD", n_meta=1, n_google=1, history_days=3)
    assert SandboxPlatform(engine, WS, account_id="sandbox-kwd").currency == "KWD"  # kept with the account
    camp = next(e for e in sb.list_entities() if e.entity_type == "campaign")
    assert camp.currency == "KWD"
    new = camp.daily_budget + Decimal("1.234")
    pid, pr, res = run_plan(engine, sb, [DraftChange("sandbox", sb.account_id, "campaign", camp.external_id, camp.name,
                                                     "budget", camp.daily_budget, new, "KWD", "fils", 80)])
    assert pr.checks["1"]["ok"] and pr.validations["1"]["ok"], (pr.checks, pr.validations)
    assert res.status == "completed"
    assert sb.read_live("campaign", camp.external_id, "budget") == new and new % 1 == Decimal("0.234")
    (change,) = load_plan(engine, WS, pid).changes
    assert change.new_value == new
    view = load_plan(engine, WS, pid)
    assert diff_table(view.changes)["new"].tolist() == [f"{format_money(new, 'KWD')} KWD"]  # 1,351.234 KWD, not 1,351.23
    # a fraction of a fils is refused before anything is sent
    with pytest.raises(PermanentPlatformError, match="0.001 KWD"):
        sb.apply(ChangeRequest("k", "campaign", camp.external_id, "budget", new, new + Decimal("0.0005"), "KWD"))


def test_jpy_sandbox_stays_in_whole_yen(engine):
    sb = SandboxPlatform(engine, WS, account_id="sandbox-jpy", currency="JPY", n_meta=1, n_google=1, history_days=3)
    camp = next(e for e in sb.list_entities() if e.entity_type == "campaign")
    pid, pr = preview_only(engine, sb, [DraftChange("sandbox", sb.account_id, "campaign", camp.external_id, camp.name,
                                                    "budget", camp.daily_budget, camp.daily_budget + Decimal("0.5"), "JPY",
                                                    "half", 80)])
    said = f"budget {(camp.daily_budget + Decimal('0.5')).normalize():f} is not a whole number of JPY minor units (1 JPY"
    assert not pr.checks["1"]["ok"] and said in " ".join(pr.checks["1"]["messages"])
    assert not pr.validations["1"]["ok"]
    with pytest.raises(ValueError, match="XAU is not money"):
        SandboxPlatform(engine, WS, account_id="sandbox-gold", currency="XAU")


# --------------------------------------------------------------------------------------------- Meta
def meta_with(rsps, currency: str, budget: str = "500"):
    fake = GraphFake(rsps)
    fake.nodes["act_1234"]["currency"] = currency
    fake.nodes["11"]["daily_budget"] = budget
    return fake, MetaAdsPlatform(MetaCredentials(access_token=TOKEN, app_secret=SECRET, ad_account_id="act_1234"),
                                 budget_guard=None, sleep=lambda s: None)


def test_meta_refuses_kwd_by_name_and_sends_nothing(engine):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake, meta = meta_with(rsps, "KWD")
        draft = DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("1"), Decimal("1.234"), "KWD", "fils", 80)
        pid, pr = preview_only(engine, meta, [draft])
        assert not pr.checks["1"]["ok"] and "Meta does not support KWD" in " ".join(pr.checks["1"]["messages"])
        assert pr.validations["1"]["ok"] is False and pr.validations["1"]["code"] == "refused"
        assert "Meta does not support KWD as an ad account currency" in pr.validations["1"]["message"]
        with pytest.raises(ex.PlanStateError, match="no change passes"):
            ex.approve(engine, WS, pid, pr.content_hash, actor="bob")
        assert fake.writes == []
        with pytest.raises(PermanentPlatformError, match="Meta does not support KWD") as info:
            meta.apply(ChangeRequest("k", "campaign", "11", "budget", Decimal("1"), Decimal("2"), "KWD"))
        assert info.value.code == "refused" and fake.writes == []


def test_meta_bhd_is_kept_in_hundredths_exactly_and_refuses_a_fils(engine):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake, meta = meta_with(rsps, "BHD", budget="500")  # 5.00 BHD
        assert meta.read_live("campaign", "11", "budget") == Decimal("5.000")  # shown at ISO's 3 decimals
        ok = DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("5.000"), Decimal("6.230"), "BHD", "up", 80)
        pid, pr, res = run_plan(engine, meta, [ok])
        assert pr.validations["1"]["ok"] and res.status == "completed"
        assert fake.writes == [{"daily_budget": "623"}]  # 6.23 BHD x offset 100, the exact integer Meta gets
        assert load_plan(engine, WS, pid).changes[0].status == "applied"  # the read-back matched what was sent
        assert meta.read_live("campaign", "11", "budget") == Decimal("6.23")

        bad = DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("6.230"), Decimal("6.234"), "BHD", "fils", 80)
        pid2, pr2 = preview_only(engine, meta, [bad])
        assert not pr2.checks["1"]["ok"] and "0.01 BHD on meta" in " ".join(pr2.checks["1"]["messages"])
        assert pr2.validations["1"]["ok"] is False and "6.234 BHD cannot be sent to Meta exactly" in pr2.validations["1"]["message"]
        with pytest.raises(PermanentPlatformError, match="6.234 BHD cannot be sent to Meta exactly"):
            meta.apply(ChangeRequest("k", "campaign", "11", "budget", Decimal("6.23"), Decimal("6.234"), "BHD"))
        assert fake.writes == [{"daily_budget": "623"}]  # nothing rounded and sent


def test_meta_jpy_whole_units_and_huf_cents_refused():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake, meta = meta_with(rsps, "HUF", budget="15000")
        with pytest.raises(PermanentPlatformError, match="1500.50 HUF cannot be sent to Meta exactly"):
            meta.apply(ChangeRequest("k", "campaign", "11", "budget", Decimal("15000"), Decimal("1500.50"), "HUF"))
        assert meta.apply(ChangeRequest("k", "campaign", "11", "budget", Decimal("15000"), Decimal("16000.00"), "HUF")).ok
        assert fake.writes == [{"daily_budget": "16000"}]


# ------------------------------------------------------------------------------------------- Google
@pytest.fixture
def google_kwd(google_tls):
    """A KWD customer behind the fake gRPC server (billable unit 1 fils = 1,000 micros)."""
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    from core.platforms.google import GOOGLE_API_VERSION, GoogleAdsPlatform

    from .fake_google import FakeGoogleAds, start_server

    account = default_google_account()
    account.currency, account.billable_unit_micros = "KWD", 1_000
    fake = FakeGoogleAds(GOOGLE_CUSTOMER, account)
    server, port = start_server(fake, *google_tls)
    client = GoogleAdsClient(credentials=Credentials(token="test-access-token"), developer_token=GOOGLE_DEV_TOKEN,
                             login_customer_id=GOOGLE_LOGIN, endpoint=f"127.0.0.1:{port}", version=GOOGLE_API_VERSION,
                             use_proto_plus=True)
    yield fake, GoogleAdsPlatform(client, GOOGLE_CUSTOMER, timeout=10.0)
    server.stop(grace=None)


def test_google_kwd_budget_planned_dry_run_and_executed_in_exact_micros(google_kwd, engine):
    fake, g = google_kwd
    draft = DraftChange("google", g.account_id, "campaign", "111", "Search brand", "budget", Decimal("50"),
                        Decimal("55.234"), "KWD", "fils", 80)
    pid, pr, res = run_plan(engine, g, [draft])
    assert pr.checks["1"]["ok"] and pr.validations["1"]["ok"], (pr.checks, pr.validations)
    assert res.status == "completed"
    budgets = [r for m, r, _ in fake.requests if m == "MutateCampaignBudgets"]
    assert [(r.validate_only, r.operations[0].update.amount_micros) for r in budgets] == [(True, 55_234_000), (False, 55_234_000)]
    assert fake.account.budgets[901]["amount_micros"] == 55_234_000
    assert g.read_live("campaign", "111", "budget") == Decimal("55.234")
    queries = [r.query for m, r, _ in fake.requests if m == "SearchStream" and "currency_constant" in r.query]
    assert len(queries) == 1 and "currency_constant.code = 'KWD'" in queries[0]  # read once, then kept


def test_google_refuses_an_amount_off_its_live_billable_unit(google_kwd):
    fake, g = google_kwd
    fake.account.billable_unit_micros = 10_000  # this account bills KWD in hundredths
    out = g.validate([ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("55.234"), "KWD"),
                      ChangeRequest("j", "campaign", "222", "budget", Decimal("120"), Decimal("125.23"), "KWD")])
    assert (out[0].ok, out[0].code, out[1].ok) == (False, "refused", True)
    assert "not a whole number of Google's billable unit for KWD (0.01 KWD)" in out[0].message
    (req,) = [r for m, r, _ in fake.requests if m == "MutateCampaignBudgets"]
    assert [op.update.amount_micros for op in req.operations] == [125_230_000]  # the refused one was never sent
    with pytest.raises(PermanentPlatformError, match="billable unit"):
        g.apply(ChangeRequest("k", "campaign", "111", "budget", Decimal("50"), Decimal("55.234"), "KWD"))
    assert fake.account.budgets[901]["amount_micros"] == 50_000_000


def test_boundary_refuses_rather_than_overflows_or_rounds():
    big = Decimal("99999999999999.99")  # storable (Numeric(20, 6)), yet 1e20 micros: beyond Google's int64
    with pytest.raises(ValueError, match="int64 micros"):
        google_units(big, "USD")
    assert meta_units(big, "USD") == 9_999_999_999_999_999
    assert google_units(Decimal("1.234"), "KWD") == 1_234_000 and google_units(1_234_000, "KWD", to_platform=False) == Decimal("1.234")
    assert google_units(Decimal("1500"), "JPY") == 1_500_000_000
    with pytest.raises(ValueError, match="billable unit for JPY"):
        google_units(Decimal("1500.5"), "JPY")
    with pytest.raises(ValueError, match="finer than a micro"):
        google_units(Decimal("1.0000001"), "USD", billable_unit_micros=1)
    assert meta_units(Decimal("1.23"), "JOD") == 123 and meta_units("123", "JOD", to_platform=False) == Decimal("1.230")
    with pytest.raises(ValueError, match="1.235 JOD cannot be sent to Meta exactly"):
        meta_units(Decimal("1.235"), "JOD")


def test_an_astronomical_amount_is_refused_at_once_not_overflowed_or_scaled_for_minutes():
    """1e999999999 overflows Decimal's context when multiplied and takes minutes as an int: refused first."""
    from core.platforms.units import google_units, meta_units

    for convert in (google_units, meta_units):
        with pytest.raises(ValueError, match="beyond the largest amount"):
            convert("1e999999999", "USD")
