"""review -> execute -> rollback through `core.execute`, once against each fake platform.

The same lifecycle the sandbox goes through, with the real SDKs building every request: proof that
the Meta and Google adapters are interchangeable with the sandbox (and that the engine's retries
honour the adapters' throttling hints, and the Meta guardrail sees the engine's recorded changes).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import grpc
import responses
from sqlalchemy import select

from core import execute as ex
from core.changes import DraftChange, SafetySettings, create_plan, load_plan
from core.execute import RetryPolicy
from core.platforms.credentials import MetaCredentials
from core.platforms.registry import get_platform
from core.store.db import transaction
from core.store.models import Change

from .fake_google import Abort, GoogleAdsFailure, ads_error
from .test_meta import G, SECRET, TOKEN

WS = "e2e"


class Waits(list):
    def __call__(self, seconds):
        self.append(seconds)


def run_plan(engine, platform, drafts, waits):
    """Create -> preview -> approve -> execute; returns (plan id, preview, result)."""
    pid = create_plan(engine, WS, drafts, actor="alice", settings=SafetySettings(max_change_pct=50))
    pr = ex.preview(engine, WS, pid, platform, actor="alice")
    ex.approve(engine, WS, pid, pr.content_hash, actor="bob")
    res = ex.execute(engine, WS, pid, pr.content_hash, platform, actor="bob",
                     retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=600, sleep=waits))
    return pid, pr, res


def rollback(engine, platform, pid, waits):
    rid = ex.rollback(engine, WS, pid, actor="alice")
    pr = ex.preview(engine, WS, rid, platform, actor="alice")
    ex.approve(engine, WS, rid, pr.content_hash, actor="bob")
    return rid, ex.execute(engine, WS, rid, pr.content_hash, platform, actor="bob",
                           retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=600, sleep=waits))


# ------------------------------------------------------------------------------------------ Meta
class GraphFake:
    """A stateful Graph API behind `responses`: GET/POST on node ids; validate_only writes nothing."""

    def __init__(self, rsps):
        self.nodes = {
            "act_1234": {"id": "act_1234", "name": "Shop", "currency": "EUR", "account_status": 1},
            "11": {"id": "11", "status": "ACTIVE", "daily_budget": "5000", "bid_strategy": "LOWEST_COST_WITHOUT_CAP"},
            "21": {"id": "21", "status": "ACTIVE", "daily_budget": "2000", "bid_strategy": "COST_CAP", "bid_amount": "150"},
            "22": {"id": "22", "status": "ACTIVE", "daily_budget": "2000", "bid_strategy": "LOWEST_COST_WITHOUT_CAP"},
        }
        self.writes: list[dict] = []
        self.throttle_next_write = False
        url = re.compile(re.escape(G) + r"/(act_\d+|\d+)/")
        rsps.add_callback(responses.GET, url, callback=self.get)
        rsps.add_callback(responses.POST, url, callback=self.post)
        rsps.add_callback(responses.POST, f"{G}/", callback=self.batch)
        self.batches = 0

    @staticmethod
    def _auth_ok(request) -> bool:
        q = parse_qs(urlsplit(request.url).query)
        return q.get("access_token") == [TOKEN] and "appsecret_proof" in q

    def _node(self, request):
        return urlsplit(request.url).path.strip("/").split("/")[1]

    def read(self, node_id, query):
        node = self.nodes[node_id]
        fields = parse_qs(query)["fields"][0].split(",")
        return 200, {}, json.dumps({k: node[k] for k in ["id", *fields] if k in node})

    def get(self, request):
        assert self._auth_ok(request)
        return self.read(self._node(request), urlsplit(request.url).query)

    def batch(self, request):
        """A Graph batch: each call answered by the same node logic as a single request."""
        assert self._auth_ok(request)
        self.batches += 1
        out = []
        for call in json.loads(parse_qs(request.body)["batch"][0]):
            path, _, query = call["relative_url"].partition("?")
            node_id = path.strip("/")
            code, headers, body = (self.read(node_id, query) if call["method"] == "GET"
                                   else self.write(node_id, call.get("body", "")))
            out.append({"code": code, "headers": [{"name": k, "value": v} for k, v in headers.items()], "body": body})
        return 200, {}, json.dumps(out)

    def post(self, request):
        assert self._auth_ok(request)
        return self.write(self._node(request), request.body)

    def write(self, node_id, body):
        form = {k: v[0] for k, v in parse_qs(body).items()}
        if self.throttle_next_write and "execution_options" not in form:
            self.throttle_next_write = False
            usage = json.dumps({"1234": [{"type": "ads_management", "estimated_time_to_regain_access": 2}]})
            return 400, {"x-business-use-case-usage": usage}, json.dumps(
                {"error": {"message": "User request limit reached", "code": 17, "fbtrace_id": "TR"}})
        validate = json.loads(form.pop("execution_options", "[]")) == ["validate_only"]
        headers = {}
        if not validate:
            self.writes.append(form)
            self.nodes[node_id].update(form)
            headers = {"x-fb-trace-id": f"TRACE-{len(self.writes)}"}
        return 200, headers, json.dumps({"success": True})


def test_meta_review_execute_rollback(engine):
    waits = Waits()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = GraphFake(rsps)
        creds = MetaCredentials(access_token=TOKEN, app_secret=SECRET, ad_account_id="act_1234")
        meta = get_platform("meta", engine, WS, credentials=creds)  # through the registry, guardrail on
        drafts = [
            DraftChange("meta", "act_1234", "campaign", "11", "C1", "budget", Decimal("50"), Decimal("60"), "EUR", "grow", 80),
            DraftChange("meta", "act_1234", "ad_set", "21", "A1", "bid", Decimal("1.50"), Decimal("1.75"), "EUR", "bid up", 80),
            DraftChange("meta", "act_1234", "ad_set", "22", "A2", "bid", None, Decimal("1.00"), "EUR", "ignored", 80),
        ]
        fake.throttle_next_write = True  # the first real write is throttled once: the engine waits, retries
        pid, pr, res = run_plan(engine, meta, drafts, waits)
        assert pr.validations["3"]["ok"] is False and "ignores bid_amount" in pr.validations["3"]["message"]
        assert res.counts == {"applied": 2, "blocked": 1} and res.status == "partially_failed"
        assert 120.0 in waits  # estimated_time_to_regain_access (2 min) honoured
        assert fake.nodes["11"]["daily_budget"] == "6000" and fake.nodes["21"]["bid_amount"] == "175"
        applied = {c.seq: c for c in load_plan(engine, WS, pid).changes}
        assert applied[1].status == "applied" and applied[2].status == "applied"
        rows = {r["seq"]: r for r in load_plan(engine, WS, pid).rows}
        assert rows[1]["request_id"] == "TRACE-1" and rows[2]["request_id"] == "TRACE-2"  # Meta's x-fb-trace-id

        rid, back = rollback(engine, meta, pid, waits)
        assert back.status == "completed" and back.counts == {"applied": 2}
        assert fake.nodes["11"]["daily_budget"] == "5000" and fake.nodes["21"]["bid_amount"] == "150"
        assert fake.writes[:2] == [{"daily_budget": "6000"}, {"bid_amount": "175"}]
        assert fake.batches == 4  # preview = one batch of reads + one of validate_only updates, twice
        assert sorted(fake.writes[2:], key=str) == [{"bid_amount": "150"}, {"daily_budget": "5000"}]  # inverse plan


def test_meta_guardrail_sees_changes_recorded_by_the_engine(engine):
    waits = Waits()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = GraphFake(rsps)
        meta = get_platform("meta", engine, WS, access_token=TOKEN, app_secret=SECRET, ad_account_id="1234")
        budget = Decimal("20")
        for i in range(4):
            new = budget + 1
            _, _, res = run_plan(engine, meta, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget, new,
                                                            "EUR", "step", 80)], waits)
            assert res.status == "completed", res
            budget = new
        pid = create_plan(engine, WS, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget, budget + 1,
                                                   "EUR", "fifth", 80)], actor="alice")
        pr = ex.preview(engine, WS, pid, meta, actor="alice")
        assert pr.validations["1"] == {"ok": False, "message": pr.validations["1"]["message"], "code": "refused"}
        assert "4 times" in pr.validations["1"]["message"]
        assert len(fake.writes) == 4 and fake.nodes["22"]["daily_budget"] == "2400"


# ---------------------------------------------------------------------------------------- Google
def test_google_review_execute_rollback(google_fake, engine):
    fake, g = google_fake
    waits = Waits()
    drafts = [
        DraftChange("google", g.account_id, "campaign", "111", "Search brand", "budget", Decimal("50"), Decimal("60"), "USD", "grow", 80),
        DraftChange("google", g.account_id, "ad_group", "5001", "Brand exact", "bid", Decimal("1.25"), Decimal("1.40"), "USD", "bid", 80),
        DraftChange("google", g.account_id, "campaign", "444", "Shared B", "budget", Decimal("30"), Decimal("33"), "USD", "shared", 80),
    ]
    temp = GoogleAdsFailure(errors=[ads_error("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED", "slow", retry_seconds=7)])
    fake.aborts["MutateAdGroups"] = [None, Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", temp)]  # 1st: validate
    pid, pr, res = run_plan(engine, g, drafts, waits)
    assert pr.validations["3"]["ok"] is False and "shared" in pr.validations["3"]["message"]
    assert res.counts == {"applied": 2, "blocked": 1}
    assert 7.0 in waits  # Google's retry_delay honoured by the engine's backoff
    assert fake.account.budgets[901]["amount_micros"] == 60_000_000
    assert fake.account.ad_groups[5001]["cpc_bid_micros"] == 1_400_000
    with transaction(engine, WS) as s:
        attempts = dict(s.execute(select(Change.seq, Change.attempts).where(Change.plan_id == pid)).all())
    assert attempts[2] == 2  # throttled once, then applied
    rows = {r["seq"]: r for r in load_plan(engine, WS, pid).rows}
    assert rows[1]["request_id"].startswith("req-") and rows[2]["request_id"].startswith("req-")  # trailing metadata
    assert rows[1]["request_id"] != rows[2]["request_id"]

    rid, back = rollback(engine, g, pid, waits)
    assert back.status == "completed"
    assert fake.account.budgets[901]["amount_micros"] == 50_000_000
    assert fake.account.ad_groups[5001]["cpc_bid_micros"] == 1_250_000
    validate_flags = [r.validate_only for m, r, _ in fake.requests if m == "MutateCampaignBudgets"]
    assert validate_flags == [True, False, True, False]  # preview, execute, rollback preview, rollback execute


def test_google_sync_into_the_sandbox_tables_is_idempotent(google_fake, engine):
    import datetime as dt

    from core.platforms.sync import sync_platform
    from core.store.models import AdEntity, PerformanceDaily

    fake, g = google_fake
    first = sync_platform(engine, WS, g, dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    again = sync_platform(engine, WS, g, dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    assert (first.entities, first.rows_new) == (6, 4) and (again.rows_new, again.rows_updated) == (0, 4)
    with transaction(engine, WS) as s:
        spend = s.scalar(select(PerformanceDaily.spend).where(PerformanceDaily.external_id == "111",
                                                             PerformanceDaily.date == dt.date(2026, 11, 1),
                                                             PerformanceDaily.entity_type == "campaign"))
        shared = s.scalar(select(AdEntity.shared_budget).where(AdEntity.external_id == "444"))
    assert spend == Decimal("12.345678") and shared is True


def test_meta_guardrail_is_enforced_by_core_execute_at_execution_time(engine):
    """Plan B passes its dry run with 3 changes in the hour; plan A then makes the 4th; executing B is
    blocked by core/execute (the adapter here has no guard of its own), and allowed an hour later."""
    import datetime as dt

    from core.platforms.meta import MetaAdsPlatform

    waits = Waits()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = GraphFake(rsps)
        creds = MetaCredentials(access_token=TOKEN, app_secret=SECRET, ad_account_id="act_1234")
        bare = MetaAdsPlatform(creds, budget_guard=None)  # no adapter-side guardrail: core must enforce it
        budget = Decimal("20")
        for _ in range(3):
            _, _, res = run_plan(engine, bare, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget,
                                                            budget + 1, "EUR", "step", 80)], waits)
            assert res.status == "completed"
            budget += 1
        # plan B (ad set 22: 23 -> 24) is previewed and approved while only 3 changes are in the window
        pid_b = create_plan(engine, WS, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget + 1,
                                                     budget + 2, "EUR", "B", 80)], actor="alice")
        pr_b = ex.preview(engine, WS, pid_b, bare, actor="alice")
        ex.approve(engine, WS, pid_b, pr_b.content_hash, actor="bob")
        _, _, res = run_plan(engine, bare, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget,
                                                        budget + 1, "EUR", "4th", 80)], waits)
        assert res.status == "completed" and len(fake.writes) == 4
        res_b = ex.execute(engine, WS, pid_b, pr_b.content_hash, bare, actor="bob",
                           retry=RetryPolicy(max_attempts=1, sleep=waits))
        assert res_b.status == "failed" and res_b.counts == {"blocked": 1}
        row = load_plan(engine, WS, pid_b).rows[0]
        assert row["error_code"] == "guardrail" and "4 times" in row["error_message"]
        assert len(fake.writes) == 4  # the fifth change never reached Meta

        # an hour later the same change is allowed (the guard's clock is injectable)
        later = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1, minutes=1)  # noqa: E731
        pid_c = create_plan(engine, WS, [DraftChange("meta", "act_1234", "ad_set", "22", "A2", "budget", budget + 1,
                                                     budget + 2, "EUR", "C", 80)], actor="alice")
        pr_c = ex.preview(engine, WS, pid_c, bare, actor="alice")
        ex.approve(engine, WS, pid_c, pr_c.content_hash, actor="bob")
        res_c = ex.execute(engine, WS, pid_c, pr_c.content_hash, bare, actor="bob", guard_clock=later,
                           retry=RetryPolicy(max_attempts=1, sleep=waits))
        assert res_c.status == "completed" and len(fake.writes) == 5
