"""Fixtures of the platform tests: a local fake Google Ads gRPC server.

Tests that touch the database use the suite's ``engine`` (tests/conftest.py), parametrized over SQLite
and PostgreSQL, so the end-to-end flows through `core.execute` run on both. The suite-wide guard fails
any test that connects beyond 127.0.0.1.
"""

from __future__ import annotations

import pytest


# ---- Google Ads: a local fake gRPC server with TLS on 127.0.0.1 --------------------------------------
GOOGLE_CUSTOMER = "1234567890"
GOOGLE_LOGIN = "9876543210"
GOOGLE_DEV_TOKEN = "devtoken-ABCDEFGHIJ"


@pytest.fixture(scope="session")
def google_tls(tmp_path_factory):
    """A throwaway certificate the gRPC client trusts (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, read once)."""
    from .fake_google import shared_tls

    return shared_tls(tmp_path_factory.mktemp("tls"))


def default_google_account():
    from .fake_google import FakeAccount

    return FakeAccount(
        currency="USD",
        campaigns={
            111: {"name": "Search brand", "status": "ENABLED", "strategy": "MANUAL_CPC", "budget": 901},
            222: {"name": "PMax", "status": "ENABLED", "strategy": "MAXIMIZE_CONVERSION_VALUE", "budget": 902},
            333: {"name": "Shared A", "status": "PAUSED", "strategy": "TARGET_CPA", "budget": 903},
            444: {"name": "Shared B", "status": "ENABLED", "strategy": "TARGET_CPA", "budget": 903},
        },
        budgets={
            901: {"amount_micros": 50_000_000, "explicitly_shared": False},
            902: {"amount_micros": 120_000_000, "explicitly_shared": False},
            903: {"amount_micros": 30_000_000, "explicitly_shared": True},
        },
        ad_groups={
            5001: {"name": "Brand exact", "status": "ENABLED", "cpc_bid_micros": 1_250_000, "campaign": 111},
            5002: {"name": "PMax group", "status": "ENABLED", "cpc_bid_micros": 0, "campaign": 222},
        },
        performance=[
            ("campaign", 111, "2026-11-01", 12_345_678, 1000, 50, 3.5, 210.75),
            ("campaign", 111, "2026-11-02", 10_000_000, 900, 40, 2.0, 99.5),
            ("campaign", 222, "2026-11-01", 60_000_000, 5000, 120, 7.25, 880.0),
            ("ad_group", 5001, "2026-11-01", 12_345_678, 1000, 50, 3.5, 210.75),
        ],
    )


@pytest.fixture
def google_fake(google_tls):
    """(fake servicer, GoogleAdsPlatform) — the real GoogleAdsClient talking TLS to 127.0.0.1."""
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    from core.platforms.google import GOOGLE_API_VERSION, GoogleAdsPlatform

    from .fake_google import FakeGoogleAds, start_server

    fake = FakeGoogleAds(GOOGLE_CUSTOMER, default_google_account())
    server, port = start_server(fake, *google_tls)
    client = GoogleAdsClient(
        credentials=Credentials(token="test-access-token"),  # valid, no expiry: never refreshed
        developer_token=GOOGLE_DEV_TOKEN,
        login_customer_id=GOOGLE_LOGIN,
        endpoint=f"127.0.0.1:{port}",
        version=GOOGLE_API_VERSION,
        use_proto_plus=True,
    )
    platform = GoogleAdsPlatform(client, GOOGLE_CUSTOMER, timeout=10.0)
    yield fake, platform
    server.stop(grace=None)
