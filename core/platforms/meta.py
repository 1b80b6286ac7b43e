"""Meta Marketing API adapter (facebook-business) implementing `core.platforms.base.AdPlatform`.

The SDK builds every request; this module adds what it lacks: a private `FacebookAdsApi` instance
(no crash reporter, never debug, so no token is ever printed or posted), exact money conversion
(`units.meta_units`), one configurable conversion action type (aliases are never summed), async
insight jobs for long ranges, refusal of changes the platform would ignore, the 4-per-hour ad set
budget guardrail, a read-back after every write, and the mapping of `FacebookRequestError` onto the
error classes of `base` (retries are the execution engine's job; the throttling hint is passed on).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal

import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookError, FacebookRequestError
from facebook_business.session import FacebookSession

from .base import (
    PLATFORM_CALL_TIMEOUT,
    STATUSES,
    ApplyResult,
    AuthError,
    ChangeRequest,
    Entity,
    PerformanceRow,
    PermanentPlatformError,
    PlatformError,
    RateLimitError,
    TransientPlatformError,
    ValidationResult,
)
from ..redact import register_secret
from .credentials import MetaCredentials
from .units import meta_units

#: The one place the Graph API version is set (Meta answers error 2635 for a deprecated version).
META_API_VERSION = "v26.0"
#: Throttling error codes (application, user, ad account, business use case).
THROTTLE_CODES = frozenset({4, 17, 32, 613} | set(range(80000, 80015)))
#: Invalid / expired / revoked token and session errors: reconnect, never retry.
AUTH_CODES = frozenset({102, 190})
#: Bid strategies under which an ad set's ``bid_amount`` is used; any other ignores it.
BID_STRATEGIES_WITH_BID = frozenset({"LOWEST_COST_WITH_BID_CAP", "COST_CAP", "TARGET_COST"})
#: Our field name -> Meta's node field.
FIELD_MAP = {"budget": "daily_budget", "bid": "bid_amount", "status": "status"}
PAGE_LIMIT = 200
#: Graph batch requests carry at most 50 calls.
BATCH_LIMIT = 50
INSIGHT_FIELDS = (
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "date_start",
    "spend",
    "impressions",
    "clicks",
    "actions",
    "action_values",
    "account_currency",
)
_LEVEL_ENTITY = {"campaign": "campaign", "adset": "ad_set"}


def _request_id(headers) -> str | None:
    """Meta's id of one request, from its response headers (quoted in support cases)."""
    lower = _header_map(headers)
    return lower.get("x-fb-trace-id") or lower.get("x-fb-request-id") or None


class _TracedApi(FacebookAdsApi):
    """`FacebookAdsApi` that remembers, per thread, the headers of its last successful response.

    The SDK's node methods (``api_update``...) return the node, not the response, so the request id
    of a successful write would otherwise be lost.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last = threading.local()

    def call(self, *args, **kwargs):
        response = super().call(*args, **kwargs)
        self._last.headers = response.headers()
        return response

    def last_request_id(self) -> str | None:
        return _request_id(getattr(self._last, "headers", None))


class MetaBadAnswer(Exception):
    """Meta (or a proxy in front of it) answered something that is not a Graph API answer: an HTML
    error page, an empty or non-JSON body, or a 5xx without Meta's error object."""

    def __init__(self, status: int, detail: str, headers=None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.headers = status, detail, headers or {}


def _body_kind(text: str) -> str:
    """A short description of a body that is not Graph JSON (never the body itself: it may echo a token)."""
    stripped = (text or "").lstrip()[:200].lower()
    if not stripped:
        return "an empty body"
    if stripped.startswith("<"):
        return "an HTML page"
    return "a body that is not JSON"


def check_graph_answer(response: requests.Response, *args, **kwargs) -> requests.Response:
    """A `requests` response hook: refuse anything that is not a Graph API JSON answer, before the SDK
    parses it (the SDK raises TypeError / AttributeError on an HTML 502 and takes a 5xx JSON body
    without an ``error`` object, or an empty 200, for success)."""
    try:
        data = json.loads(response.text) if response.text and response.text.strip() else None
    except ValueError:
        raise MetaBadAnswer(response.status_code, _body_kind(response.text), response.headers) from None
    if data is None:
        raise MetaBadAnswer(response.status_code, "an empty body", response.headers)
    is_batch = response.request is not None and "batch=" in str(response.request.body or "")
    if isinstance(data, dict):
        if response.status_code >= 500 and not isinstance(data.get("error"), dict):
            raise MetaBadAnswer(response.status_code, "a server error without Meta's error object", response.headers)
        if response.status_code >= 400 and "error" in data and not isinstance(data["error"], dict):
            raise MetaBadAnswer(response.status_code, "an error answer Meta never sends", response.headers)
        return response
    if is_batch and isinstance(data, list) and all(item is None or isinstance(item, dict) for item in data):
        return response
    raise MetaBadAnswer(response.status_code, f"a JSON {type(data).__name__} where an object was expected", response.headers)


def _node_class(entity_type: str):
    if entity_type == "campaign":
        return Campaign
    if entity_type == "ad_set":
        return AdSet
    raise PermanentPlatformError(f"Meta adapter cannot change a {entity_type!r} (campaign or ad_set only)", code="unsupported")


def _header_map(headers) -> dict[str, str]:
    """Response headers as a lower-cased dict (batch answers give a list of {"name", "value"})."""
    if not headers:
        return {}
    if isinstance(headers, list):
        return {str(h.get("name", "")).lower(): h.get("value") for h in headers if isinstance(h, dict)}
    return {str(k).lower(): v for k, v in dict(headers).items()}


def _retry_after(headers) -> float | None:
    """Seconds to wait from Meta's usage headers (estimated_time_to_regain_access is in minutes)."""
    lower = _header_map(headers)
    if not lower:
        return None
    best: float | None = None
    raw = lower.get("x-business-use-case-usage")
    if raw:
        try:
            usage = json.loads(raw)
            for entries in usage.values():
                for entry in entries if isinstance(entries, list) else [entries]:
                    minutes = float(entry.get("estimated_time_to_regain_access") or 0)
                    if minutes > 0:
                        best = max(best or 0.0, minutes * 60.0)
        except (ValueError, TypeError, AttributeError):
            pass
    raw = lower.get("x-ad-account-usage")
    if best is None and raw:
        try:
            seconds = float(json.loads(raw).get("reset_time_duration") or 0)
            best = seconds if seconds > 0 else None
        except (ValueError, TypeError, AttributeError):
            pass
    return best


def parse_action(items: Iterable[dict] | None, action_type: str) -> str:
    """The value (as Meta's string) of exactly one action type from ``actions``/``action_values`` ("0" if absent).

    Meta repeats a purchase under several aliases (``purchase``, ``omni_purchase``,
    ``offsite_conversion.fb_pixel_purchase``...): summing them would double count, so only the
    configured type is read.
    """
    for item in items or ():
        if item.get("action_type") == action_type:
            return str(item.get("value") or "0")
    return "0"


def learning_stage(info: dict | None) -> dict:
    """An ad set's ``learning_stage_info`` as `Entity` fields: its status (LEARNING / SUCCESS / FAIL) and the
    time of the last significant edit (``last_sig_edit_ts``, Unix seconds) as UTC; empty when Meta sent none."""
    if not isinstance(info, dict) or not info.get("status"):
        return {}
    out: dict = {"learning_status": str(info["status"]).upper()}
    ts = info.get("last_sig_edit_ts")
    try:
        if ts not in (None, "", 0, "0"):
            out["last_significant_edit"] = dt.datetime.fromtimestamp(int(ts), dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    return out


class MetaAdsPlatform:
    """A Meta ad account behind the `AdPlatform` protocol."""

    name = "meta"

    def __init__(
        self,
        credentials: MetaCredentials,
        *,
        api_version: str = META_API_VERSION,
        timeout: float = PLATFORM_CALL_TIMEOUT,
        budget_guard=None,
        async_after_days: int = 31,
        poll_interval: float = 2.0,
        poll_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        currency: str | None = None,
    ):
        self._creds = credentials
        self.account_id = credentials.ad_account_id
        self.action_type = credentials.conversion_action_type
        self.api_version = api_version
        # Built by hand: FacebookAdsApi.init would install a crash reporter that posts stack traces.
        session = FacebookSession(app_secret=credentials.app_secret, access_token=credentials.access_token, timeout=timeout)
        session.requests.hooks["response"].append(check_graph_answer)
        register_secret(credentials.access_token, credentials.app_secret, getattr(session, "appsecret_proof", None))
        #: Seconds each HTTP request may take (connect and each read); well inside the executor's lease.
        self.timeout = timeout
        self.api = _TracedApi(session, api_version=api_version, enable_debug_logger=False)
        self.budget_guard = budget_guard
        self.async_after_days = async_after_days
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self._sleep = sleep
        self._info: dict | None = None
        #: The account currency; "" until known (given here, or read by the first call that needs it).
        #: A plain attribute, not a property, so ``isinstance(x, AdPlatform)`` never makes a request.
        self.currency = (currency or "").upper()

    def __repr__(self) -> str:
        return f"MetaAdsPlatform(account_id={self.account_id!r}, api_version={self.api_version!r})"

    # ---- errors -------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in (self._creds.access_token, self._creds.app_secret, getattr(self.api._session, "appsecret_proof", None)):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _map_error(self, exc: Exception) -> PlatformError:
        """`FacebookRequestError` / transport failure -> the matching `base` error class."""
        if isinstance(exc, PlatformError):
            return exc
        if isinstance(exc, FacebookRequestError):
            body = exc.body() if isinstance(exc.body(), dict) else {}
            error = body.get("error", {}) if isinstance(body, dict) else {}
            code, sub = exc.api_error_code(), exc.api_error_subcode()
            message = self._scrub(str(error.get("error_user_msg") or exc.api_error_message() or "Meta request failed"))
            headers = exc.http_headers() or {}
            lower = _header_map(headers)
            request_id = error.get("fbtrace_id") or _request_id(lower)
            code_text = f"{code}" + (f"/{sub}" if sub else "") if code is not None else f"http_{exc.http_status()}"
            if code in AUTH_CODES or exc.http_status() == 401:
                return AuthError(f"Meta refused the access token (reconnect): {message}", code=code_text, request_id=request_id)
            if code in THROTTLE_CODES or exc.http_status() == 429:
                return RateLimitError(f"Meta throttled the request: {message}", code=code_text, request_id=request_id,
                                      retry_after=_retry_after(headers))
            status = exc.http_status() or 0
            if exc.api_transient_error() or code in (1, 2) or status >= 500:
                return TransientPlatformError(f"Meta transient error: {message}", code=code_text, request_id=request_id)
            return PermanentPlatformError(message, code=code_text, request_id=request_id)
        if isinstance(exc, MetaBadAnswer):
            return self._bad_answer(exc.status, exc.detail, exc.headers)
        if isinstance(exc, (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                            requests.exceptions.ContentDecodingError)):
            return TransientPlatformError(f"could not reach Meta: {type(exc).__name__}", code="transport")
        if isinstance(exc, requests.RequestException):
            return PermanentPlatformError(f"the request to Meta failed: {type(exc).__name__}", code="transport")
        if isinstance(exc, FacebookError):
            return PermanentPlatformError(self._scrub(f"Meta SDK error: {exc}"), code="sdk")
        raise exc

    @staticmethod
    def _bad_answer(status: int, detail: str, headers=None) -> PlatformError:
        """An answer that is not Graph JSON: transient for 5xx, throttling and timeouts, else permanent."""
        request_id = _request_id(headers)
        code = f"http_{status}"
        if status == 429:
            return RateLimitError(f"Meta throttled the request (HTTP 429, {detail})", code=code, request_id=request_id,
                                  retry_after=_retry_after(headers))
        if status >= 500 or status in (0, 200, 408):
            return TransientPlatformError(f"Meta answered HTTP {status} with {detail}: the service is unavailable or a "
                                          "proxy failed; try again later", code=code, request_id=request_id)
        return PermanentPlatformError(f"Meta answered HTTP {status} with {detail}", code=code, request_id=request_id)

    def _call(self, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (FacebookError, requests.RequestException, MetaBadAnswer) as exc:
            raise self._map_error(exc) from None

    # ---- account ------------------------------------------------------------------------------
    def account_info(self) -> dict:
        """Name, currency, status and time zone of the ad account (one GET; also a connection test)."""
        if self._info is None:
            node = self._call(AdAccount(self.account_id, api=self.api).api_get,
                              fields=["name", "currency", "account_status", "timezone_name"])
            self._info = {k: node.get(k) for k in ("name", "currency", "account_status", "timezone_name")}
            self.currency = str(self._info["currency"] or "").upper()
        return self._info

    def _currency(self) -> str:
        return self.currency or str(self.account_info()["currency"]).upper()

    # ---- sync ---------------------------------------------------------------------------------
    def _collect(self, cursor_fn: Callable, **kwargs) -> list[dict]:
        def run():
            return [dict(obj.export_all_data()) for obj in cursor_fn(**kwargs)]

        return self._call(run)

    def list_entities(self) -> list[Entity]:
        """Campaigns and ad sets with status, daily budget, bid and bid strategy (all pages)."""
        account = AdAccount(self.account_id, api=self.api)
        currency = self._currency()
        campaigns = self._collect(account.get_campaigns,
                                  fields=["id", "name", "status", "daily_budget", "lifetime_budget", "bid_strategy"],
                                  params={"limit": PAGE_LIMIT})
        adsets = self._collect(account.get_ad_sets,
                               fields=["id", "name", "status", "campaign_id", "daily_budget", "bid_amount", "bid_strategy",
                                       "learning_stage_info"],
                               params={"limit": PAGE_LIMIT})
        strategy = {c["id"]: c.get("bid_strategy") for c in campaigns}

        def money(value):
            return meta_units(value, currency, to_platform=False) if value not in (None, "", "0", 0) else None

        out = [
            Entity("meta", self.account_id, "campaign", str(c["id"]), c.get("name", ""), c.get("status", ""), currency,
                   daily_budget=money(c.get("daily_budget")), bid_strategy=c.get("bid_strategy"))
            for c in campaigns
        ]
        out += [
            Entity("meta", self.account_id, "ad_set", str(a["id"]), a.get("name", ""), a.get("status", ""), currency,
                   parent_id=str(a.get("campaign_id") or "") or None, daily_budget=money(a.get("daily_budget")),
                   bid=money(a.get("bid_amount")), bid_strategy=a.get("bid_strategy") or strategy.get(a.get("campaign_id")),
                   **learning_stage(a.get("learning_stage_info")))
            for a in adsets
        ]
        return out

    def _insights(self, level: str, start: dt.date, end: dt.date) -> list[dict]:
        account = AdAccount(self.account_id, api=self.api)
        params = {
            "level": level,
            "time_increment": 1,
            "time_range": {"since": start.isoformat(), "until": end.isoformat()},
            "limit": 500,
        }
        fields = list(INSIGHT_FIELDS)
        if (end - start).days + 1 <= self.async_after_days:
            return self._collect(account.get_insights, fields=fields, params=params)
        job: AdReportRun = self._call(account.get_insights, fields=fields, params=params, is_async=True)
        deadline = time.monotonic() + self.poll_timeout
        while True:
            status = self._call(job.api_get, fields=["async_status", "async_percent_completion"])
            state = status.get("async_status")
            if state == "Job Completed":  # not percent == 100: the job may still be writing
                break
            if state in ("Job Failed", "Job Skipped"):
                raise TransientPlatformError(f"Meta insights job {job.get_id()} ended as {state!r}", code="async_job")
            if time.monotonic() > deadline:
                raise TransientPlatformError(f"Meta insights job {job.get_id()} not done after {self.poll_timeout:.0f} s",
                                             code="async_timeout")
            self._sleep(self.poll_interval)
        return self._collect(job.get_insights, params={"limit": 500})

    def parse_insights(self, rows: list[dict], level: str, currency: str) -> list[PerformanceRow]:
        """Insight rows (numbers as strings) -> `PerformanceRow`s with the one configured action type."""
        entity = _LEVEL_ENTITY[level]
        id_key = "campaign_id" if level == "campaign" else "adset_id"
        out = []
        for r in rows:
            cur = r.get("account_currency") or currency
            out.append(PerformanceRow(
                platform="meta", account_id=self.account_id, entity_type=entity, external_id=str(r[id_key]),
                date=dt.date.fromisoformat(r["date_start"]),
                spend=Decimal(str(r.get("spend") or "0")),
                impressions=int(r.get("impressions") or 0), clicks=int(r.get("clicks") or 0),
                conversions=float(parse_action(r.get("actions"), self.action_type)),
                conversion_value=Decimal(parse_action(r.get("action_values"), self.action_type)),
                currency=cur,
            ))
        return out

    def fetch_performance(self, start: dt.date, end: dt.date) -> list[PerformanceRow]:
        """Daily performance by campaign and by ad set; long ranges run as async insight jobs."""
        if end < start:
            raise ValueError(f"fetch_performance: end {end} is before start {start}")
        currency = self._currency()
        rows = []
        for level in ("campaign", "adset"):
            rows += self.parse_insights(self._insights(level, start, end), level, currency)
        return rows

    # ---- live values and changes --------------------------------------------------------------
    def _read_node(self, entity_type: str, external_id: str) -> dict:
        cls = _node_class(entity_type)
        fields = ["id", "status", "daily_budget", "lifetime_budget", "bid_strategy"]
        if entity_type == "ad_set":
            fields.append("bid_amount")
        node = self._call(cls(str(external_id), api=self.api).api_get, fields=fields)
        return dict(node.export_all_data())

    def _value(self, node: dict, field: str) -> Decimal | str | None:
        raw = node.get(FIELD_MAP[field])
        if field == "status":
            return raw
        if raw in (None, ""):
            return None
        return meta_units(raw, self._currency(), to_platform=False)

    def read_live(self, entity_type: str, external_id: str, field: str) -> Decimal | str | None:
        if field not in FIELD_MAP:
            raise ValueError(f"unknown field {field!r}; expected one of {sorted(FIELD_MAP)}")
        return self._value(self._read_node(entity_type, external_id), field)

    def _refusal(self, change: ChangeRequest, node: dict) -> str | None:
        """Why the platform would ignore or reject this change, checked before sending it."""
        if change.field == "status":
            if change.new_value not in STATUSES:
                return f"status must be one of {STATUSES}, not {change.new_value!r}"
            return None
        if change.field == "bid":
            if change.entity_type != "ad_set":
                return "Meta bids are set on ad sets"
            strategy = node.get("bid_strategy") or "LOWEST_COST_WITHOUT_CAP"
            if strategy not in BID_STRATEGIES_WITH_BID:
                return f"the bid strategy {strategy} ignores bid_amount (only bid cap / cost cap use a bid)"
            if Decimal(change.new_value) <= 0:
                return "a bid must be positive"
            return None
        if change.field == "budget":
            if node.get("lifetime_budget") not in (None, "", "0") and node.get("daily_budget") in (None, "", "0"):
                return "this entity has a lifetime budget, not a daily one"
            if node.get("daily_budget") in (None, "", "0"):
                where = "its campaign (campaign budget)" if change.entity_type == "ad_set" else "its ad sets"
                return f"no daily budget on this {change.entity_type}: the budget is set on {where}"
            if Decimal(change.new_value) <= 0:
                return "a budget must be positive"
            return None
        return f"unknown field {change.field!r}"

    def _params(self, change: ChangeRequest) -> dict:
        if change.field == "status":
            return {"status": change.new_value}
        if change.currency.upper() != self._currency().upper():
            raise PermanentPlatformError(
                f"change in {change.currency} but the ad account bills in {self._currency()}", code="currency")
        try:
            return {FIELD_MAP[change.field]: meta_units(change.new_value, self._currency())}
        except ValueError as exc:  # an amount or a currency Meta cannot express: refused, never rounded
            raise PermanentPlatformError(str(exc), code="refused") from None

    def _guard(self, change: ChangeRequest) -> str | None:
        return self.budget_guard.check(self.account_id, change) if self.budget_guard is not None else None

    def _batched(self, calls: list[tuple[str, Callable]]) -> dict[str, dict | PlatformError]:
        """Run SDK calls in Graph batches of at most 50 (one HTTP request each).

        ``calls`` are (key, fn) where ``fn(batch=..., success=..., failure=...)`` queues one request.
        Returns key -> response JSON, or key -> the mapped error of that request. Requests the server
        left unanswered (``null`` in the batch) are sent once more, then reported as transient.
        """
        out: dict[str, dict | PlatformError] = {}

        def ok(key):
            def record(resp):
                data = resp.json()
                out[key] = data if isinstance(data, dict) else self._bad_answer(
                    resp.status() or 0, _body_kind(str(resp.body())) if not isinstance(data, (list, int, float))
                    else f"a JSON {type(data).__name__} where an object was expected", resp.headers())
            return record

        def fail(key):
            def record(resp):
                if not isinstance(resp.json(), dict):  # the SDK cannot even build its error from this
                    out[key] = self._bad_answer(resp.status() or 0, _body_kind(str(resp.body() or "")), resp.headers())
                else:
                    out[key] = self._map_error(resp.error())
            return record

        for start in range(0, len(calls), BATCH_LIMIT):
            batch = self.api.new_batch()
            for key, fn in calls[start:start + BATCH_LIMIT]:
                fn(batch=batch, success=ok(key), failure=fail(key))
            for _ in range(2):
                batch = self._call(batch.execute)
                if batch is None:
                    break
        for key, _ in calls:
            out.setdefault(key, TransientPlatformError("Meta left this request of a batch unanswered", code="batch"))
        return out

    def validate(self, changes: list[ChangeRequest]) -> list[ValidationResult]:
        """Meta's own dry run (``execution_options=["validate_only"]``): nothing is written.

        Two Graph batches: one reads every entity (to refuse what Meta would ignore), one sends every
        remaining change with validate_only. A token error stops with `AuthError`.
        """
        verdicts: dict[str, ValidationResult] = {}
        reads = []
        for c in changes:
            cls = _node_class(c.entity_type)
            fields = ["id", "status", "daily_budget", "lifetime_budget", "bid_strategy"] + (
                ["bid_amount"] if c.entity_type == "ad_set" else [])
            reads.append((c.key, lambda cls=cls, c=c, fields=fields, **kw: cls(c.external_id, api=self.api).api_get(
                fields=fields, **kw)))
        nodes = self._batched(reads) if reads else {}
        sends = []
        for c in changes:
            node = nodes[c.key]
            if isinstance(node, AuthError):
                raise node
            try:
                if isinstance(node, PlatformError):
                    raise node
                reason = self._guard(c) or self._refusal(c, node)
                if reason:
                    verdicts[c.key] = ValidationResult(c.key, False, reason, code="refused")
                    continue
                params = {**self._params(c), "execution_options": ["validate_only"]}
            except AuthError:
                raise
            except PlatformError as exc:
                verdicts[c.key] = ValidationResult(c.key, False, exc.message, code=exc.code)
                continue
            cls = _node_class(c.entity_type)
            sends.append((c.key, lambda cls=cls, c=c, params=params, **kw: cls(c.external_id, api=self.api).api_update(
                params=params, **kw)))
        for key, answer in (self._batched(sends) if sends else {}).items():
            if isinstance(answer, AuthError):
                raise answer
            verdicts[key] = (ValidationResult(key, False, answer.message, code=answer.code)
                             if isinstance(answer, PlatformError) else ValidationResult(key, True, "validated by Meta"))
        return [verdicts[c.key] for c in changes]

    def apply(self, change: ChangeRequest) -> ApplyResult:
        """Write one change, then read the value back; refusals raise `PermanentPlatformError`."""
        reason = self._guard(change)
        if reason:
            raise PermanentPlatformError(reason, code="guardrail")
        node_data = self._read_node(change.entity_type, change.external_id)
        reason = self._refusal(change, node_data)
        if reason:
            raise PermanentPlatformError(reason, code="refused")
        params = self._params(change)
        node = _node_class(change.entity_type)(change.external_id, api=self.api)
        self._call(node.api_update, params=params)
        request_id = self.api.last_request_id()  # of the write, before the read-back replaces it
        read_back = self.read_live(change.entity_type, change.external_id, change.field)
        expected = change.new_value if change.field == "status" else meta_units(
            params[FIELD_MAP[change.field]], self._currency(), to_platform=False)
        ok = read_back == expected
        return ApplyResult(change.key, ok, read_back=read_back, request_id=request_id,
                           response={"sent": {k: v for k, v in params.items()}, "read_back": str(read_back),
                                     "request_id": request_id,
                                     **({} if ok else {"error": "the value read back differs from the value sent"})})


def make_platform(engine, workspace_id: str, *, credentials: MetaCredentials | None = None, **options) -> MetaAdsPlatform:
    """Registry factory: a Meta adapter whose ad set budget guardrail counts this workspace's changes.

    Pass ``credentials=`` (from `credentials.discover`) or the fields as keywords (``access_token``,
    ``app_secret``, ``ad_account_id``, ``conversion_action_type``); other keywords go to the adapter.
    """
    from .guardrails import MetaBudgetGuard

    if credentials is None:
        keys = ("access_token", "app_secret", "ad_account_id", "conversion_action_type")
        values = {k: options.pop(k) for k in keys if k in options}
        if "account_id" in options:
            values.setdefault("ad_account_id", options.pop("account_id"))
        credentials = MetaCredentials(**values)
    options.setdefault("budget_guard", MetaBudgetGuard(engine, workspace_id))
    return MetaAdsPlatform(credentials, **options)
