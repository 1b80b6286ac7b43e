"""Money conversion at the platform boundary, credential discovery and masking, the guardrail rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.platforms.credentials import (
    CredentialsError,
    GoogleCredentials,
    MetaCredentials,
    customer_id_digits,
    describe,
    discover,
    mask,
    test_connection as connection_test,
)
from core.platforms.guardrails import next_allowed
from core.platforms.units import google_units, meta_units


@pytest.mark.parametrize("amount,currency,minor", [
    ("60", "USD", 6000), ("19.99", "USD", 1999), ("0.01", "EUR", 1), ("1234.56", "EUR", 123456),
    ("5000", "JPY", 5000), ("1", "JPY", 1), ("150000", "IDR", 150000), ("99999999", "IDR", 99999999),
])
def test_meta_units_round_trip_exact(amount, currency, minor):
    assert meta_units(Decimal(amount), currency) == minor
    assert meta_units(str(minor), currency, to_platform=False) == Decimal(amount)
    assert meta_units(minor, currency, to_platform=False) == Decimal(amount)


def test_meta_units_never_lose_a_cent_where_floats_would():
    # float(19.99) * 100 == 1998.9999999999998 -> int() == 1998: a lost cent
    assert int(19.99 * 100) == 1998
    assert meta_units(19.99, "USD") == 1999 and meta_units(Decimal("0.29"), "EUR") == 29
    assert sum(meta_units(Decimal("0.01"), "USD") for _ in range(1000)) == 1000


def test_meta_units_refuse_what_meta_cannot_express_and_reject_bad_input():
    # a fraction of Meta's unit is refused, never rounded (rounding would lose or invent money)
    for amount, currency in (("12.345", "USD"), ("12.355", "USD"), ("1000.5", "JPY"), ("1500.50", "HUF")):
        with pytest.raises(ValueError, match=f"{currency} cannot be sent to Meta exactly"):
            meta_units(Decimal(amount), currency)
    assert meta_units(Decimal("12.350"), "USD") == 1235  # trailing zeros are not a fraction
    with pytest.raises(ValueError, match="negative"):
        meta_units(Decimal("-1"), "USD")
    with pytest.raises(ValueError, match="non-integer"):
        meta_units("12.5", "USD", to_platform=False)
    with pytest.raises(ValueError, match="ISO 4217"):
        meta_units(Decimal(1), "US")
    with pytest.raises(ValueError):
        meta_units(float("nan"), "USD")


@pytest.mark.parametrize("amount,currency,micros", [
    ("12.34", "USD", 12_340_000), ("0.01", "USD", 10_000), ("60", "EUR", 60_000_000),
    ("1500", "JPY", 1_500_000_000), ("250000", "IDR", 250_000_000_000),
])
def test_google_units_round_trip(amount, currency, micros):
    assert google_units(Decimal(amount), currency) == micros
    assert google_units(micros, currency, to_platform=False) == Decimal(amount)


def test_google_units_refuse_off_the_billable_unit_and_keep_reported_cost():
    for amount, currency in (("12.345678", "USD"), ("99.5", "JPY"), ("1.2345", "KWD")):
        with pytest.raises(ValueError, match="billable unit"):
            google_units(Decimal(amount), currency)
    with pytest.raises(ValueError, match="billable unit for IDR"):  # the account's live unit: whole rupiah
        google_units(Decimal("100.5"), "IDR", billable_unit_micros=1_000_000)
    assert google_units(Decimal("100.5"), "IDR") == 100_500_000  # ISO's 0.01 IDR when no live unit is known
    assert google_units(1_234_567, "USD", to_platform=False, billable=False) == Decimal("1.234567")
    with pytest.raises(ValueError, match="billable"):
        google_units(1_234_567, "USD", to_platform=False)  # a budget off the billable unit is reported
    with pytest.raises(ValueError, match="billable"):
        google_units(500_000, "JPY", to_platform=False)  # half a yen


def test_mask_never_shows_a_short_secret_or_more_than_4_chars():
    assert mask("abc") == "••••••••" and mask(None) == "(not set)"
    assert mask("EAABsbCS1iHgBAxyz1234") == "••••••••1234"


def test_discover_from_secrets_then_environment_with_masked_repr():
    secrets = {"meta_access_token": "EAAB-secret-token-0001", "meta_app_secret": "app-secret-000000001",
               "meta_ad_account_id": "1234"}
    env = {"GOOGLE_DEVELOPER_TOKEN": "dev-token-xyz-00001", "GOOGLE_CLIENT_ID": "cid", "GOOGLE_CLIENT_SECRET": "csecret-000000001",
           "GOOGLE_REFRESH_TOKEN": "1//refresh-00000001", "GOOGLE_CUSTOMER_ID": "123-456-7890",
           "GOOGLE_LOGIN_CUSTOMER_ID": "111 222 3333", "GOOGLE_ALLOW_SHARED_BUDGETS": "true",
           "META_ACCESS_TOKEN": "env-token-is-not-used-000"}
    found = discover(secrets, environ=env)
    assert found.configured() == ["meta", "google"] and found.problems == {}
    assert found.meta.access_token == "EAAB-secret-token-0001" and found.meta.ad_account_id == "act_1234"
    assert found.meta.conversion_action_type == "omni_purchase"
    assert found.sources["meta_access_token"] == "secrets" and found.sources["google_refresh_token"] == "environment"
    g = found.google
    assert (g.customer_id, g.login_customer_id, g.allow_shared_budgets) == ("1234567890", "1112223333", True)
    shown = repr(found) + str(describe(found.meta)) + str(describe(g))
    for secret in ("EAAB-secret-token-0001", "app-secret-000000001", "dev-token-xyz-00001", "csecret-000000001", "1//refresh-00000001"):
        assert secret not in shown
    assert describe(g)["google_customer_id"] == "1234567890"


def test_discover_reports_missing_and_malformed_by_key_only():
    found = discover({"meta_access_token": "tok-000000000001", "google_customer_id": "12-34"}, environ={})
    assert found.configured() == []
    assert found.problems["meta"] == ["missing meta_app_secret", "missing meta_ad_account_id"]
    assert "missing google_developer_token" in found.problems["google"]
    assert "tok-000000000001" not in str(found.problems)
    bad = discover({"google_developer_token": "d", "google_client_id": "c", "google_client_secret": "s",
                    "google_refresh_token": "r", "google_customer_id": "12-34"}, environ={})
    assert bad.google is None and "10-digit" in bad.problems["google"][0]
    assert discover({}, environ={}).problems == {}


def test_secrets_object_that_raises_is_treated_as_empty():
    class NoSecrets:
        def get(self, key):
            raise FileNotFoundError("no secrets.toml")

    assert discover(NoSecrets(), environ={"META_ACCESS_TOKEN": "t"}).problems["meta"][0] == "missing meta_app_secret"


def test_credential_validation():
    assert customer_id_digits("123-456-7890") == "1234567890"
    with pytest.raises(CredentialsError, match="google_login_customer_id"):
        GoogleCredentials(developer_token="d", client_id="c", client_secret="s", refresh_token="r",
                          customer_id="1234567890", login_customer_id="abc")
    with pytest.raises(CredentialsError, match="meta_ad_account_id"):
        MetaCredentials(access_token="t", app_secret="s", ad_account_id="act_x1")


def test_connection_test_maps_outcomes():
    from core.platforms.base import AuthError, PermanentPlatformError

    class P:
        name = "meta"

        def __init__(self, outcome):
            self.outcome = outcome

        def account_info(self):
            if isinstance(self.outcome, Exception):
                raise self.outcome
            return self.outcome

    ok = connection_test(P({"name": "Shop", "currency": "EUR"}))
    assert ok.ok and ok.account_name == "Shop" and ok.currency == "EUR"
    auth = connection_test(P(AuthError("token expired", code="190")))
    assert not auth.ok and auth.reconnect and "reconnect" in auth.message
    perm = connection_test(P(PermanentPlatformError("no such account", code="100")))
    assert not perm.ok and not perm.reconnect and "code 100" in perm.message


def test_next_allowed_window():
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    times = [now - dt.timedelta(minutes=m) for m in (1, 2, 3)]
    assert next_allowed(times, now, limit=4, window=dt.timedelta(hours=1)) is None
    times.append(now - dt.timedelta(minutes=59))
    assert next_allowed(times, now, limit=4, window=dt.timedelta(hours=1)) == now + dt.timedelta(minutes=1)
    with pytest.raises(ValueError, match="timezone"):
        next_allowed(times, now.replace(tzinfo=None), limit=4, window=dt.timedelta(hours=1))
