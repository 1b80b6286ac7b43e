"""Google Ads API adapter (google-ads) implementing `core.platforms.base.AdPlatform`.

Reads go through GAQL ``search_stream``; writes through the budget / ad group / campaign mutate
services with an explicit ``update_mask`` (the SDK's field-mask helper drops fields set to 0),
``validate_only=True`` for the platform's dry run and ``partial_failure=True`` so each operation's
error (a `GoogleAdsFailure`) maps back to its change by operation index. Money crosses the boundary
only through `units.google_units` (micros, a multiple of the billable unit the account's
``currency_constant`` states; anything finer is refused, never rounded). A shared budget is refused
unless the user opted in; a CPC bid is refused on a smart-bidding campaign. Every call carries an
explicit ``timeout``; reads get a short ``retry`` on unavailability, writes none (the execution engine
retries, honouring the ``retry_after`` hint this module extracts).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal

import grpc

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.protobuf import field_mask_pb2

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
from ..money import currency_code, google_billable_unit_micros
from ..redact import register_secret
from .credentials import GoogleCredentials, customer_id_digits
from .units import google_units

#: The one place the Google Ads API version is set (a sunset version is blocked outright).
GOOGLE_API_VERSION = "v26"
TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPES = ("https://www.googleapis.com/auth/adwords",)
#: Bidding strategies under which an ad group's ``cpc_bid_micros`` is used; all others ignore it.
MANUAL_CPC_STRATEGIES = frozenset({"MANUAL_CPC", "ENHANCED_CPC"})
_TO_GOOGLE_STATUS = {"ACTIVE": "ENABLED", "PAUSED": "PAUSED"}
_FROM_GOOGLE_STATUS = {"ENABLED": "ACTIVE", "PAUSED": "PAUSED", "REMOVED": "REMOVED"}
#: Retry for idempotent reads only (brief, on unavailability); mutates are retried by core/execute.
READ_RETRY = gretry.Retry(
    predicate=gretry.if_exception_type(gexc.ServiceUnavailable), initial=0.5, maximum=4.0, multiplier=2.0, timeout=20.0
)


def _error_code(err) -> tuple[str, str]:
    """(category, name) of a `GoogleAdsError`'s error code, e.g. ("quota_error", "RESOURCE_EXHAUSTED")."""
    code = err.error_code
    pb = type(code).pb(code)
    field = pb.WhichOneof("error_code") or "unknown"
    value = getattr(code, field, None)
    return field, getattr(value, "name", str(value))


def _retry_delay(err) -> float | None:
    delay = err.details.quota_error_details.retry_delay
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else getattr(delay, "seconds", 0)
    return float(seconds) if seconds else None


def _status_retry_info(exc: gexc.GoogleAPICallError) -> float | None:
    from google.rpc import error_details_pb2

    for detail in getattr(exc, "details", None) or []:
        if isinstance(detail, error_details_pb2.RetryInfo):
            d = detail.retry_delay
            return d.seconds + d.nanos / 1e9
    return None


def _system_status(campaign) -> str | None:
    """The campaign's ``bidding_strategy_system_status`` name (LEARNING_BUDGET_CHANGE, ENABLED, ...); None when unset."""
    status = campaign.bidding_strategy_system_status
    name = getattr(status, "name", str(status))
    return None if name in ("UNSPECIFIED", "UNKNOWN", "0") else name


class _RequestIdInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Remembers, per thread, the ``request-id`` trailing metadata of the last unary call.

    Mutate responses carry no request id of their own; Google returns it in the trailing metadata.
    """

    def __init__(self):
        self._local = threading.local()

    def intercept_unary_unary(self, continuation, client_call_details, request):
        self._local.request_id = None
        outcome = continuation(client_call_details, request)
        # The SDK's own response wrapper (inside this interceptor) answers trailing_metadata() with the
        # *initial* metadata (google-ads 34.x): walk down to the real gRPC call and read its trailers.
        calls, node = [], outcome
        for _ in range(6):
            if node is None or node in calls:
                break
            calls.append(node)
            node = getattr(node, "_underlay_call", None) or getattr(node, "_call", None)
        for call in reversed(calls):
            try:
                found = next((v for k, v in (call.trailing_metadata() or ()) if k == "request-id"), None)
            except Exception:  # an outcome without metadata
                found = None
            if found:
                self._local.request_id = found
                break
        return outcome

    @property
    def last_request_id(self) -> str | None:
        return getattr(self._local, "request_id", None)


class GoogleAdsPlatform:
    """A Google Ads customer account behind the `AdPlatform` protocol."""

    name = "google"

    def __init__(
        self,
        client,
        customer_id: str,
        *,
        allow_shared_budgets: bool = False,
        timeout: float = PLATFORM_CALL_TIMEOUT,
        read_retry: gretry.Retry | None = READ_RETRY,
        currency: str | None = None,
    ):
        """``client`` is a `GoogleAdsClient` (see `from_credentials`); ``customer_id`` digits only."""
        self.client = client
        self.account_id = customer_id_digits(customer_id)
        self.api_version = client.version or GOOGLE_API_VERSION
        self.allow_shared_budgets = allow_shared_budgets
        self.timeout = timeout
        self.read_retry = read_retry
        #: "" until known (given here or read on first use); a plain attribute so that
        #: ``isinstance(x, AdPlatform)`` never makes a request.
        self.currency = (currency or "").upper()
        self._services: dict[str, object] = {}
        self._info: dict | None = None
        self._billable: tuple[str, int] | None = None  # (currency, billable unit micros), read on first write
        self._request_ids = _RequestIdInterceptor()
        self.last_request_id: str | None = None
        register_secret(*self._secrets())  # the process-wide log redaction blanks them wherever they turn up

    @classmethod
    def from_credentials(cls, creds: GoogleCredentials, *, api_version: str = GOOGLE_API_VERSION, **kwargs) -> "GoogleAdsPlatform":
        """Build the client without any network call (the OAuth token is refreshed on first request)."""
        from google.ads.googleads.client import GoogleAdsClient
        from google.oauth2.credentials import Credentials

        oauth = Credentials(token=None, refresh_token=creds.refresh_token, client_id=creds.client_id,
                            client_secret=creds.client_secret, token_uri=TOKEN_URI, scopes=list(SCOPES))
        client = GoogleAdsClient(credentials=oauth, developer_token=creds.developer_token,
                                 login_customer_id=creds.login_customer_id, version=api_version, use_proto_plus=True)
        kwargs.setdefault("allow_shared_budgets", creds.allow_shared_budgets)
        return cls(client, creds.customer_id, **kwargs)

    def __repr__(self) -> str:
        return f"GoogleAdsPlatform(customer_id={self.account_id!r}, api_version={self.api_version!r})"

    # ---- plumbing -----------------------------------------------------------------------------
    def _service(self, name: str):
        if name not in self._services:
            self._services[name] = self.client.get_service(name, version=self.api_version,
                                                           interceptors=[self._request_ids])
        return self._services[name]

    def _failure_type(self):
        return type(self.client.get_type("GoogleAdsFailure", version=self.api_version))

    def _from_failure(self, failure, request_id: str | None) -> PlatformError:
        errors = list(failure.errors)
        codes = [_error_code(e) for e in errors]
        message = "; ".join(e.message for e in errors) or "Google Ads rejected the request"
        code_text = ",".join(f"{f}:{n}" for f, n in codes) or None
        request_id = request_id or getattr(failure, "request_id", None) or None
        fields = {f for f, _ in codes}
        if fields & {"authentication_error", "authorization_error"}:
            return AuthError(f"Google Ads refused the credentials (reconnect): {message}", code=code_text, request_id=request_id)
        if "quota_error" in fields:
            names = {n for f, n in codes if f == "quota_error"}
            delays = [d for e in errors if (d := _retry_delay(e))]
            if names & {"RESOURCE_TEMPORARILY_EXHAUSTED", "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION"}:
                return RateLimitError(f"Google Ads quota temporarily exhausted: {message}", code=code_text,
                                      request_id=request_id, retry_after=max(delays) if delays else None)
            return PermanentPlatformError(f"Google Ads daily quota exhausted, not retried: {message}", code=code_text,
                                          request_id=request_id, retry_after=max(delays) if delays else None)
        if fields and fields <= {"internal_error", "database_error"}:
            return TransientPlatformError(f"Google Ads transient error: {message}", code=code_text, request_id=request_id)
        return PermanentPlatformError(message, code=code_text, request_id=request_id)

    def _map_error(self, exc: Exception) -> PlatformError:
        from google.ads.googleads.errors import GoogleAdsException
        from google.auth import exceptions as auth_exc

        if isinstance(exc, PlatformError):
            return exc
        if isinstance(exc, GoogleAdsException):
            return self._from_failure(exc.failure, exc.request_id)
        if isinstance(exc, auth_exc.RefreshError):
            if getattr(exc, "retryable", False):
                return TransientPlatformError("Google's OAuth server is unavailable (token refresh)", code="oauth_refresh")
            return AuthError("Google refused the OAuth refresh token (reconnect)", code="oauth_refresh")
        if isinstance(exc, auth_exc.TransportError):
            return TransientPlatformError(f"could not reach Google's OAuth server: {type(exc).__name__}", code="oauth_transport")
        if isinstance(exc, auth_exc.GoogleAuthError):
            return AuthError(f"Google refused the credentials (reconnect): {type(exc).__name__}", code="oauth")
        if isinstance(exc, grpc.RpcError) and not isinstance(exc, gexc.GoogleAPICallError):
            # a transport failure the SDK did not wrap (e.g. a stream cut mid-way): map by its status code
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            name = getattr(code, "name", "UNKNOWN")
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return AuthError(f"Google Ads refused the credentials (reconnect): {name}", code=name)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED, None):
                return TransientPlatformError(f"could not reach Google Ads ({name})", code=name)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return RateLimitError(f"Google Ads quota exhausted ({name})", code=name)
            return PermanentPlatformError(f"Google Ads call failed ({name})", code=name)
        if isinstance(exc, gexc.ResourceExhausted):
            # arrives without GoogleAdsException wrapping; its trailing metadata may still carry the failure
            failure = self._trailing_failure(exc)
            if failure is not None:
                mapped = self._from_failure(failure, self._trailing_request_id(exc))
                if isinstance(mapped, (RateLimitError, PermanentPlatformError)) and mapped.retry_after is None:
                    mapped.retry_after = _status_retry_info(exc)
                return mapped
            return RateLimitError(f"Google Ads quota exhausted: {exc.message}", code="RESOURCE_EXHAUSTED",
                                  request_id=self._trailing_request_id(exc), retry_after=_status_retry_info(exc))
        if isinstance(exc, (gexc.Unauthenticated, gexc.PermissionDenied)):
            return AuthError(f"Google Ads refused the credentials (reconnect): {exc.message}", code=type(exc).__name__)
        if isinstance(exc, (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted,
                            gexc.Unknown, gexc.RetryError, gexc.Cancelled, gexc.GatewayTimeout, gexc.BadGateway)):
            return TransientPlatformError(f"Google Ads unavailable: {getattr(exc, 'message', type(exc).__name__)}",
                                          code=type(exc).__name__, request_id=self._trailing_request_id(exc))
        if isinstance(exc, gexc.GoogleAPICallError):
            return PermanentPlatformError(exc.message or type(exc).__name__, code=type(exc).__name__,
                                          request_id=self._trailing_request_id(exc))
        if isinstance(exc, gexc.GoogleAPIError):
            return PermanentPlatformError(f"Google Ads client error: {type(exc).__name__}: {exc}", code=type(exc).__name__)
        raise exc

    @staticmethod
    def _trailing(exc) -> tuple:
        call = getattr(exc, "response", None)
        try:
            return tuple(call.trailing_metadata() or ()) if call is not None else ()
        except Exception:  # not a grpc.Call
            return ()

    def _trailing_request_id(self, exc) -> str | None:
        return next((v for k, v in self._trailing(exc) if k == "request-id"), None)

    def _trailing_failure(self, exc):
        key = f"google.ads.googleads.{self.api_version}.errors.googleadsfailure-bin"
        raw = next((v for k, v in self._trailing(exc) if k == key), None)
        return self._failure_type().deserialize(raw) if raw else None

    def _secrets(self) -> list[str]:
        """Every secret the client holds (developer token, OAuth client secret, refresh and access token)."""
        creds = getattr(self.client, "credentials", None)
        found = [getattr(self.client, "developer_token", None)] + [
            getattr(creds, name, None) for name in ("client_secret", "refresh_token", "token")]
        return [str(v) for v in found if v and len(str(v)) >= 6]

    def _scrub(self, exc: PlatformError) -> PlatformError:
        """Blank out any secret a server or transport echoed into an error (it is stored and shown)."""
        text = exc.message
        for secret in self._secrets():
            text = text.replace(secret, "***")
        if text != exc.message:
            exc.message = text
            exc.args = (text,)
        return exc

    def _call(self, fn: Callable, *args, **kwargs):
        from google.ads.googleads.errors import GoogleAdsException
        from google.auth import exceptions as auth_exc

        register_secret(*self._secrets())  # the access token changes when it is refreshed
        try:
            return fn(*args, **kwargs)
        except (GoogleAdsException, gexc.GoogleAPIError, auth_exc.GoogleAuthError, grpc.RpcError) as exc:
            raise self._scrub(self._map_error(exc)) from None

    def search(self, query: str) -> list:
        """All rows of a GAQL query through ``search_stream`` (the stream is consumed inside the error mapping)."""
        service = self._service("GoogleAdsService")

        def run():
            stream = service.search_stream(customer_id=self.account_id, query=query,
                                           retry=self.read_retry, timeout=self.timeout)
            return [row for batch in stream for row in batch.results]

        return self._call(run)

    # ---- account and sync ---------------------------------------------------------------------
    def account_info(self) -> dict:
        """Name, currency and time zone of the customer (one query; also the connection test)."""
        if self._info is None:
            rows = self.search("SELECT customer.id, customer.descriptive_name, customer.currency_code, "
                               "customer.time_zone FROM customer LIMIT 1")
            if not rows:
                raise PermanentPlatformError(f"customer {self.account_id} returned no row", code="not_found")
            c = rows[0].customer
            self._info = {"name": c.descriptive_name, "currency": c.currency_code, "time_zone": c.time_zone}
            self.currency = str(c.currency_code).upper()
        return self._info

    def _currency(self) -> str:
        return self.currency or str(self.account_info()["currency"]).upper()

    def billable_unit_micros(self) -> int:
        """The account currency's billable unit in micros, from Google's ``currency_constant`` (read once);
        the ISO minor unit when Google returns none. Budgets and bids must be a multiple of it."""
        try:
            cur = currency_code(self._currency())  # three letters: safe inside the GAQL string
        except ValueError as exc:
            raise PermanentPlatformError(f"the account's currency: {exc}", code="currency") from None
        if self._billable is None or self._billable[0] != cur:
            rows = self.search("SELECT currency_constant.code, currency_constant.billable_unit_micros "
                               f"FROM currency_constant WHERE currency_constant.code = '{cur}'")
            live = int(rows[0].currency_constant.billable_unit_micros) if rows else 0
            self._billable = (cur, live if live > 0 else google_billable_unit_micros(cur))
        return self._billable[1]

    def _micros(self, amount, cur: str) -> int:
        """``amount`` in micros, exactly a multiple of the billable unit, or a refusal that says why."""
        try:
            return google_units(amount, cur, billable_unit_micros=self.billable_unit_micros())
        except ValueError as exc:
            raise PermanentPlatformError(str(exc), code="refused") from None

    def list_entities(self) -> list[Entity]:
        """Campaigns (with their budget, shared or not) and ad groups (with CPC bid) that are not removed."""
        cur = self._currency()
        camps = self.search(
            "SELECT campaign.id, campaign.name, campaign.status, campaign.bidding_strategy_type, "
            "campaign.bidding_strategy_system_status, "
            "campaign_budget.amount_micros, campaign_budget.explicitly_shared, campaign_budget.reference_count "
            "FROM campaign WHERE campaign.status != 'REMOVED'")
        groups = self.search(
            "SELECT ad_group.id, ad_group.name, ad_group.status, ad_group.cpc_bid_micros, campaign.id, "
            "campaign.bidding_strategy_type FROM ad_group WHERE ad_group.status != 'REMOVED'")
        out = []
        for r in camps:
            b = r.campaign_budget
            out.append(Entity(
                "google", self.account_id, "campaign", str(r.campaign.id), r.campaign.name,
                _FROM_GOOGLE_STATUS.get(r.campaign.status.name, r.campaign.status.name), cur,
                daily_budget=google_units(b.amount_micros, cur, to_platform=False, billable=False) if b.amount_micros else None,
                bid_strategy=r.campaign.bidding_strategy_type.name,
                shared_budget=bool(b.explicitly_shared or b.reference_count > 1),
                learning_status=_system_status(r.campaign)))
        for r in groups:
            g = r.ad_group
            out.append(Entity(
                "google", self.account_id, "ad_group", str(g.id), g.name,
                _FROM_GOOGLE_STATUS.get(g.status.name, g.status.name), cur, parent_id=str(r.campaign.id),
                bid=google_units(g.cpc_bid_micros, cur, to_platform=False, billable=False) if g.cpc_bid_micros else None,
                bid_strategy=r.campaign.bidding_strategy_type.name))
        return out

    def fetch_performance(self, start: dt.date, end: dt.date) -> list[PerformanceRow]:
        """Daily spend, impressions, clicks, conversions and value by campaign and by ad group."""
        if end < start:
            raise ValueError(f"fetch_performance: end {end} is before start {start}")
        cur = self._currency()
        metrics = ("segments.date, metrics.cost_micros, metrics.impressions, metrics.clicks, "
                   "metrics.conversions, metrics.conversions_value")
        where = f"WHERE segments.date BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
        out = []
        for entity, resource in (("campaign", "campaign"), ("ad_group", "ad_group")):
            for r in self.search(f"SELECT {resource}.id, {metrics} FROM {resource} {where}"):
                m = r.metrics
                out.append(PerformanceRow(
                    "google", self.account_id, entity, str(getattr(r, resource).id), dt.date.fromisoformat(r.segments.date),
                    spend=google_units(m.cost_micros, cur, to_platform=False, billable=False),
                    impressions=int(m.impressions), clicks=int(m.clicks), conversions=float(m.conversions),
                    conversion_value=Decimal(repr(float(m.conversions_value))),  # a plain amount, not micros
                    currency=cur))
        return out

    # ---- live values ---------------------------------------------------------------------------
    def _context(self, entity_type: str, external_id: str) -> dict:
        """What a change needs to know about its entity: current values, budget sharing, bidding."""
        eid = str(external_id)
        if not eid.isdigit():
            raise PermanentPlatformError(f"Google Ads ids are digits, got {external_id!r}", code="bad_id")
        if entity_type == "campaign":
            rows = self.search(
                "SELECT campaign.id, campaign.resource_name, campaign.status, campaign.bidding_strategy_type, "
                "campaign_budget.resource_name, campaign_budget.amount_micros, campaign_budget.explicitly_shared, "
                f"campaign_budget.reference_count FROM campaign WHERE campaign.id = {eid}")
            if not rows:
                raise PermanentPlatformError(f"campaign {eid} not found", code="not_found")
            r = rows[0]
            return {"resource_name": r.campaign.resource_name, "status": r.campaign.status.name,
                    "strategy": r.campaign.bidding_strategy_type.name, "budget_resource": r.campaign_budget.resource_name,
                    "budget_micros": r.campaign_budget.amount_micros,
                    "shared": bool(r.campaign_budget.explicitly_shared or r.campaign_budget.reference_count > 1),
                    "reference_count": r.campaign_budget.reference_count, "bid_micros": None}
        if entity_type == "ad_group":
            rows = self.search(
                "SELECT ad_group.id, ad_group.resource_name, ad_group.status, ad_group.cpc_bid_micros, "
                f"campaign.bidding_strategy_type FROM ad_group WHERE ad_group.id = {eid}")
            if not rows:
                raise PermanentPlatformError(f"ad group {eid} not found", code="not_found")
            r = rows[0]
            return {"resource_name": r.ad_group.resource_name, "status": r.ad_group.status.name,
                    "strategy": r.campaign.bidding_strategy_type.name, "bid_micros": r.ad_group.cpc_bid_micros,
                    "budget_micros": None, "shared": False}
        raise PermanentPlatformError(f"Google adapter cannot change a {entity_type!r} (campaign or ad_group)", code="unsupported")

    def _value(self, ctx: dict, field: str) -> Decimal | str | None:
        if field == "status":
            return _FROM_GOOGLE_STATUS.get(ctx["status"], ctx["status"])
        micros = ctx["budget_micros"] if field == "budget" else ctx["bid_micros"]
        return None if not micros else google_units(micros, self._currency(), to_platform=False, billable=False)

    def read_live(self, entity_type: str, external_id: str, field: str) -> Decimal | str | None:
        if field not in ("budget", "bid", "status"):
            raise ValueError(f"unknown field {field!r}")
        return self._value(self._context(entity_type, external_id), field)

    # ---- changes -------------------------------------------------------------------------------
    def _refusal(self, change: ChangeRequest, ctx: dict) -> str | None:
        if change.field == "status":
            return None if change.new_value in STATUSES else f"status must be one of {STATUSES}"
        if change.currency.upper() != self._currency():
            return f"change in {change.currency} but the account bills in {self._currency()}"
        if Decimal(change.new_value) <= 0:
            return f"a {change.field} must be positive"
        if change.field == "budget":
            if change.entity_type != "campaign":
                return "Google Ads budgets belong to campaigns"
            if ctx["shared"] and not self.allow_shared_budgets:
                return (f"the budget is shared by {max(ctx.get('reference_count') or 0, 2)} campaigns or explicitly "
                        "shared: changing it changes them all (enable google_allow_shared_budgets to allow)")
            return None
        if change.field == "bid":
            if change.entity_type != "ad_group":
                return "Google Ads CPC bids are set on ad groups"
            if ctx["strategy"] not in MANUAL_CPC_STRATEGIES:
                return f"the campaign uses {ctx['strategy']} bidding, which ignores cpc_bid_micros"
            return None
        return f"unknown field {change.field!r}"

    def _operation(self, change: ChangeRequest, ctx: dict) -> tuple[str, object]:
        """(service name, operation) with an explicit update mask naming exactly the changed field."""
        cur = self._currency()
        if change.field == "budget":
            op = self.client.get_type("CampaignBudgetOperation", version=self.api_version)
            op.update.resource_name = ctx["budget_resource"]
            op.update.amount_micros = self._micros(change.new_value, cur)
            path, service = "amount_micros", "CampaignBudgetService"
        elif change.entity_type == "ad_group":
            op = self.client.get_type("AdGroupOperation", version=self.api_version)
            op.update.resource_name = ctx["resource_name"]
            if change.field == "bid":
                op.update.cpc_bid_micros = self._micros(change.new_value, cur)
                path = "cpc_bid_micros"
            else:
                op.update.status = self.client.enums.AdGroupStatusEnum[_TO_GOOGLE_STATUS[change.new_value]]
                path = "status"
            service = "AdGroupService"
        else:
            op = self.client.get_type("CampaignOperation", version=self.api_version)
            op.update.resource_name = ctx["resource_name"]
            op.update.status = self.client.enums.CampaignStatusEnum[_TO_GOOGLE_STATUS[change.new_value]]
            path, service = "status", "CampaignService"
        # written by hand: protobuf_helpers.field_mask() drops a field whose new value is 0 / default
        op.update_mask = field_mask_pb2.FieldMask(paths=[path])
        return service, op

    _MUTATE = {
        "CampaignBudgetService": ("MutateCampaignBudgetsRequest", "mutate_campaign_budgets"),
        "AdGroupService": ("MutateAdGroupsRequest", "mutate_ad_groups"),
        "CampaignService": ("MutateCampaignsRequest", "mutate_campaigns"),
    }

    def _mutate(self, service: str, operations: list, *, validate_only: bool) -> tuple[object, dict[int, PlatformError]]:
        """One mutate request with partial failure on; returns the response and the error of each failed index."""
        request_type, method = self._MUTATE[service]
        request = self.client.get_type(request_type, version=self.api_version)
        request.customer_id = self.account_id
        request.operations = operations
        request.partial_failure = True
        request.validate_only = validate_only
        response = self._call(getattr(self._service(service), method), request=request, retry=None, timeout=self.timeout)
        self.last_request_id = self._request_ids.last_request_id
        return response, self.partial_failures(response.partial_failure_error)

    def partial_failures(self, status) -> dict[int, PlatformError]:
        """Decode a ``partial_failure_error`` (`google.rpc.Status`) into {operation index: error}."""
        out: dict[int, PlatformError] = {}
        if status is None or not status.code:
            return out
        ftype = self._failure_type()
        for detail in status.details:
            failure = ftype.deserialize(detail.value)
            for err in failure.errors:
                elements = list(err.location.field_path_elements)
                index = elements[0].index if elements and elements[0].field_name == "operations" else -1
                single = ftype(errors=[err], request_id=failure.request_id)
                out[index] = self._scrub(self._from_failure(single, failure.request_id or None))
        if not out:
            out[-1] = PermanentPlatformError(status.message or "partial failure", code=str(status.code))
        return out

    def validate(self, changes: list[ChangeRequest]) -> list[ValidationResult]:
        """Google's dry run: one ``validate_only`` mutate per service; verdicts mapped by operation index."""
        verdicts: dict[str, ValidationResult] = {}
        groups: dict[str, list[tuple[ChangeRequest, object]]] = {}
        for change in changes:
            try:
                ctx = self._context(change.entity_type, change.external_id)
                reason = self._refusal(change, ctx)
                if reason:
                    verdicts[change.key] = ValidationResult(change.key, False, reason, code="refused")
                    continue
                service, op = self._operation(change, ctx)
                groups.setdefault(service, []).append((change, op))
            except AuthError:
                raise
            except PlatformError as exc:
                verdicts[change.key] = ValidationResult(change.key, False, exc.message, code=exc.code)
        for service, items in groups.items():
            try:
                _, failures = self._mutate(service, [op for _, op in items], validate_only=True)
            except AuthError:
                raise
            except PlatformError as exc:
                failures = {-1: exc}
            for i, (change, _) in enumerate(items):
                err = failures.get(i) or failures.get(-1)
                verdicts[change.key] = (ValidationResult(change.key, True, "validated by Google Ads") if err is None
                                        else ValidationResult(change.key, False, err.message, code=err.code))
        return [verdicts[c.key] for c in changes]

    def apply(self, change: ChangeRequest) -> ApplyResult:
        """Write one change, then read the value back; a rejection raises with code, message and request id."""
        ctx = self._context(change.entity_type, change.external_id)
        reason = self._refusal(change, ctx)
        if reason:
            raise PermanentPlatformError(reason, code="refused")
        service, op = self._operation(change, ctx)
        response, failures = self._mutate(service, [op], validate_only=False)
        request_id = self.last_request_id  # of the mutate, before the read-back
        if failures:
            raise failures.get(0) or next(iter(failures.values()))
        read_back = self.read_live(change.entity_type, change.external_id, change.field)
        expected = change.new_value if change.field == "status" else google_units(
            getattr(op.update, op.update_mask.paths[0]), self._currency(), to_platform=False, billable=False)
        ok = read_back == expected
        names = [r.resource_name for r in response.results]
        return ApplyResult(change.key, ok, read_back=read_back, request_id=request_id,
                           response={"resource_names": names, "update_mask": list(op.update_mask.paths),
                                     "request_id": request_id,
                                     "read_back": str(read_back),
                                     **({} if ok else {"error": "the value read back differs from the value sent"})})


def make_platform(engine, workspace_id: str, *, credentials: GoogleCredentials | None = None, client=None,
                  **options) -> GoogleAdsPlatform:
    """Registry factory: from ``credentials=`` (or its fields as keywords), or from a ready ``client``
    plus ``customer_id`` (tests and advanced setups). ``engine``/``workspace_id`` are not needed."""
    if client is not None:
        return GoogleAdsPlatform(client, options.pop("customer_id"), **options)
    if credentials is None:
        keys = ("developer_token", "client_id", "client_secret", "refresh_token", "customer_id",
                "login_customer_id", "allow_shared_budgets")
        credentials = GoogleCredentials(**{k: options.pop(k) for k in keys if k in options})
    return GoogleAdsPlatform.from_credentials(credentials, **options)
