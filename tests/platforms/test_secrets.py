"""No secret is ever logged, stored, or put in an error: failing Meta and Google calls run through
`core.execute` with recognisable tokens that the servers echo back, and every log record (all
loggers, DEBUG), every exception text and every database row is searched for them."""

from __future__ import annotations

import logging
import re
from decimal import Decimal

import grpc
import pytest
import responses
from sqlalchemy import inspect, select

from core import execute as ex
from core.changes import DraftChange, content_hash, create_plan, load_plan
from core.execute import RetryPolicy
from core.platforms.base import ChangeRequest, PlatformError
from core.platforms.credentials import MetaCredentials
from core.platforms.registry import get_platform
from core.store.db import transaction
from core.store.models import Base, ChangePlan

from .conftest import GOOGLE_DEV_TOKEN
from .fake_google import Abort, GoogleAdsFailure, ads_error
from .test_meta import G

WS = "secrets"
META_TOKEN = "EAAsecretTOKEN-META-7f3a9c"
META_APP_SECRET = "appsecret-META-5e1d2b"


def db_text(engine) -> str:
    """Every row of every table, as text."""
    out = []
    with transaction(engine, WS) as s:
        for table in Base.metadata.sorted_tables:
            if table.name in inspect(engine).get_table_names():
                out += [repr(tuple(r)) for r in s.execute(select(table)).all()]
    return "\n".join(out)


def assert_nowhere(secrets, every_log_record, engine, errors):
    """No secret in any log record of the process (every logger, whatever its propagation: order-independent),
    on stderr, in an error or in the database."""
    texts = [every_log_record()]
    texts += [str(e) + repr(e) + repr(getattr(e, "__dict__", {})) for e in errors]
    texts.append(db_text(engine))
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob


def execute_one(engine, platform, draft, errors):
    pid = create_plan(engine, WS, [draft], actor="alice")
    try:
        pr = ex.preview(engine, WS, pid, platform, actor="alice")
    except PlatformError as exc:
        errors.append(exc)
        return pid
    for key, v in pr.validations.items():
        errors.append(v["message"])
    return pid


def test_meta_failing_calls_leak_no_token(engine, every_log_record):
    errors: list = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        echo = f"Invalid OAuth access token {META_TOKEN} (app secret {META_APP_SECRET})"
        rsps.add(responses.GET, re.compile(re.escape(G) + r"/11/.*"), json={
            "id": "11", "status": "ACTIVE", "daily_budget": "5000", "bid_strategy": "LOWEST_COST_WITHOUT_CAP"})
        rsps.add(responses.POST, re.compile(re.escape(G) + r"/11/.*"), status=400, json={
            "error": {"message": echo, "error_user_msg": echo, "type": "OAuthException", "code": 100, "fbtrace_id": "T9"}})
        rsps.add(responses.POST, f"{G}/", status=400, json={
            "error": {"message": echo, "type": "OAuthException", "code": 190, "fbtrace_id": "T8"}})
        meta = get_platform("meta", engine, WS, credentials=MetaCredentials(
            access_token=META_TOKEN, app_secret=META_APP_SECRET, ad_account_id="act_1234"), currency="EUR")
        draft = DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("50"), Decimal("60"), "EUR", "x", 80)
        execute_one(engine, meta, draft, errors)  # the validate batch answers 190 with the token echoed
        # a permanent rejection of the write, recorded on the change through core/execute
        pid = create_plan(engine, WS, [draft], actor="alice")
        v = load_plan(engine, WS, pid)
        # approve without the platform's dry run (it is down): freeze the plan with a passing preview
        h = content_hash(v.platform, v.account_id, v.settings, v.changes)
        with transaction(engine, WS) as s:
            plan = s.get(ChangePlan, pid)
            plan.status, plan.content_hash = "approved", h
            plan.preview = {"checks": {"1": {"ok": True, "messages": []}}, "validations": {"1": {"ok": True}}}
        res = ex.execute(engine, WS, pid, h, meta, actor="alice", retry=RetryPolicy(max_attempts=1, sleep=lambda s: None))
        assert res.counts == {"failed": 1}
        row = load_plan(engine, WS, pid).rows[0]
        assert row["error_code"] == "100" and "***" in row["error_message"] and row["request_id"] == "T9"
        try:
            meta.apply(ChangeRequest("k", "campaign", "11", "budget", Decimal("50"), Decimal("60"), "EUR"))
        except PlatformError as exc:
            errors.append(exc)
        logging.getLogger("probe").error("after the calls", exc_info=(type(errors[-1]), errors[-1], None))
    assert errors
    assert_nowhere([META_TOKEN, META_APP_SECRET], every_log_record, engine, errors)


def test_google_failing_calls_leak_no_token(google_fake, engine, every_log_record):
    fake, g = google_fake
    access = g.client.credentials.token
    echo = f"developer token {GOOGLE_DEV_TOKEN} / access token {access} refused"
    errors: list = []
    failure = GoogleAdsFailure(errors=[ads_error("range_error", "TOO_LOW", echo, index=0)])
    fake.aborts["MutateCampaignBudgets"] = [
        None,  # the dry run passes
        Abort(grpc.StatusCode.INVALID_ARGUMENT, echo, failure, request_id="req-secret"),
    ]
    draft = DraftChange("google", g.account_id, "campaign", "111", "Search brand", "budget", Decimal("50"), Decimal("60"),
                        "USD", "x", 80)
    pid = create_plan(engine, WS, [draft], actor="alice")
    pr = ex.preview(engine, WS, pid, g, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="alice")
    res = ex.execute(engine, WS, pid, pr.content_hash, g, actor="alice", retry=RetryPolicy(max_attempts=1, sleep=lambda s: None))
    assert res.counts == {"failed": 1}
    row = load_plan(engine, WS, pid).rows[0]
    assert row["request_id"] == "req-secret" and "***" in row["error_message"]
    fake.aborts["SearchStream"] = [Abort(grpc.StatusCode.UNAUTHENTICATED, echo,
                                         GoogleAdsFailure(errors=[ads_error("authentication_error", "OAUTH_TOKEN_EXPIRED", echo)]))]
    with pytest.raises(PlatformError) as info:
        g.list_entities()
    errors.append(info.value)
    assert_nowhere([GOOGLE_DEV_TOKEN, access], every_log_record, engine, errors)
