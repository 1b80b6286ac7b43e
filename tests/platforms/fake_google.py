"""A local fake Google Ads API: a gRPC server on 127.0.0.1 (TLS, throwaway certificate) built from the
SDK's own proto-plus message classes under the exact method paths, holding a tiny account in memory.

It honours ``update_mask.paths`` (only masked fields change), ``validate_only`` (nothing is written) and
``partial_failure`` (per-operation errors in ``partial_failure_error``); it records every request with
its metadata, and can abort a call with a `GoogleAdsFailure` in the trailing metadata or with a plain
status (e.g. RESOURCE_EXHAUSTED with a RetryInfo).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

V = "v26"
from google.ads.googleads.v26.errors.types.errors import (  # noqa: E402
    ErrorCode,
    ErrorLocation,
    GoogleAdsError,
    GoogleAdsFailure,
)
from google.ads.googleads.v26.services.types import (  # noqa: E402
    ad_group_service,
    campaign_budget_service,
    campaign_service,
    conversion_upload_service,
    google_ads_service,
)

FAILURE_KEY = f"google.ads.googleads.{V}.errors.googleadsfailure-bin"


def make_cert(folder) -> tuple[bytes, bytes, str]:
    """A self-signed certificate for 127.0.0.1 / localhost; returns (key pem, cert pem, cert path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = folder / "fake-google-ca.pem"
    path.write_bytes(cert_pem)
    return key_pem, cert_pem, str(path)


def shared_tls(folder) -> tuple[bytes, bytes]:
    """(key pem, cert pem) trusted by every gRPC client of this process.

    gRPC reads ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` once per process, so every fake server of a test
    process must use the same certificate: the first caller makes it, later callers reuse it.
    """
    import os
    from pathlib import Path

    path = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
    if path and Path(path + ".key").exists():
        return Path(path + ".key").read_bytes(), Path(path).read_bytes()
    key_pem, cert_pem, path = make_cert(folder)
    Path(path + ".key").write_bytes(key_pem)
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = path
    return key_pem, cert_pem


def ads_error(category: str, name: str, message: str, index: int | None = None, retry_seconds: int | None = None) -> GoogleAdsError:
    """A `GoogleAdsError` like the API's, e.g. ads_error("quota_error", "RESOURCE_EXHAUSTED", ...)."""
    err = GoogleAdsError(error_code=ErrorCode(**{category: ErrorCode.meta.fields[category].enum[name]}), message=message)
    if index is not None:
        err.location = ErrorLocation(field_path_elements=[
            ErrorLocation.FieldPathElement(field_name="operations", index=index),
            ErrorLocation.FieldPathElement(field_name="update")])
    if retry_seconds:
        err.details.quota_error_details.retry_delay = dt.timedelta(seconds=retry_seconds)
    return err


@dataclass
class Abort:
    """Make the next call of a method fail: with a GoogleAdsFailure (trailing metadata) or a bare status."""

    code: grpc.StatusCode
    message: str
    failure: GoogleAdsFailure | None = None
    retry_seconds: int | None = None  # RetryInfo in grpc-status-details-bin
    request_id: str = "req-abort-1"


@dataclass
class FakeAccount:
    currency: str = "USD"
    billable_unit_micros: int = 10_000  # currency_constant.billable_unit_micros of ``currency`` (0: no row)
    name: str = "Fake Shop"
    campaigns: dict = field(default_factory=dict)  # id -> {name, status, strategy, budget}
    budgets: dict = field(default_factory=dict)  # id -> {amount_micros, explicitly_shared}
    ad_groups: dict = field(default_factory=dict)  # id -> {name, status, cpc_bid_micros, campaign}
    performance: list = field(default_factory=list)  # (resource, id, date, cost_micros, impr, clicks, conv, value)


class FakeGoogleAds:
    """The servicers; ``requests`` records (method, request, metadata dict) of every call."""

    def __init__(self, customer_id: str, account: FakeAccount):
        self.customer_id = customer_id
        self.account = account
        self.requests: list[tuple[str, object, dict]] = []
        self.aborts: dict[str, list[Abort]] = {}
        self.reject: dict[str, tuple[str, str, str]] = {}  # resource name -> (category, name, message)
        self.request_counter = 0
        self._lock = threading.Lock()
        #: click conversions the account holds: (conversion action, order id) -> times uploaded
        self.conversions: dict[tuple[str, str], int] = {}
        self.reject_orders: dict[str, tuple[str, str]] = {}  # order id -> (error name, message)

    # ---- helpers ------------------------------------------------------------------------------
    def _record(self, method, request, context):
        with self._lock:
            self.requests.append((method, request, dict(context.invocation_metadata())))
            self.request_counter += 1
            rid = f"req-{self.request_counter}"
        context.set_trailing_metadata((("request-id", rid),))
        abort = (self.aborts.get(method) or [None]).pop(0) if self.aborts.get(method) else None
        if abort:
            md = [("request-id", abort.request_id)]
            if abort.failure is not None:
                md.append((FAILURE_KEY, GoogleAdsFailure.serialize(abort.failure)))
            if abort.retry_seconds:
                info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=abort.retry_seconds))
                detail = any_pb2.Any()
                detail.Pack(info)
                st = status_pb2.Status(code=abort.code.value[0], message=abort.message, details=[detail])
                md.append(("grpc-status-details-bin", st.SerializeToString()))
            context.set_trailing_metadata(tuple(md))
            context.abort(abort.code, abort.message)
        return rid

    def ref_count(self, budget_id):
        return sum(1 for c in self.account.campaigns.values() if c["budget"] == budget_id)

    # ---- GoogleAdsService ---------------------------------------------------------------------
    def search_stream(self, request, context):
        self._record("SearchStream", request, context)
        q = request.query
        source = re.search(r"\bFROM\s+(\w+)", q).group(1)
        only = re.search(r"WHERE\s+(\w+)\.id\s*=\s*(\d+)", q)
        only_id = int(only.group(2)) if only else None
        a, cid = self.account, self.customer_id
        rows = []
        if source == "currency_constant":
            code = re.search(r"currency_constant\.code\s*=\s*'(\w+)'", q).group(1)
            if code == a.currency and a.billable_unit_micros:
                r = google_ads_service.GoogleAdsRow()
                r.currency_constant.code, r.currency_constant.billable_unit_micros = code, a.billable_unit_micros
                rows.append(r)
        elif source == "customer":
            r = google_ads_service.GoogleAdsRow()
            r.customer.id, r.customer.descriptive_name, r.customer.currency_code = int(cid), a.name, a.currency
            r.customer.time_zone = "Europe/Berlin"
            rows.append(r)
        elif "segments.date" in q:
            lo, hi = re.search(r"BETWEEN '([\d-]+)' AND '([\d-]+)'", q).groups()
            for res, eid, day, cost, impr, clicks, conv, value in a.performance:
                if res == source and lo <= day <= hi:
                    r = google_ads_service.GoogleAdsRow()
                    getattr(r, res).id = eid
                    r.segments.date = day
                    r.metrics.cost_micros, r.metrics.impressions, r.metrics.clicks = cost, impr, clicks
                    r.metrics.conversions, r.metrics.conversions_value = conv, value
                    rows.append(r)
        elif source == "campaign":
            for i, c in a.campaigns.items():
                if only_id is None or i == only_id:
                    r = google_ads_service.GoogleAdsRow()
                    r.campaign.id, r.campaign.name, r.campaign.status = i, c["name"], c["status"]
                    r.campaign.resource_name = f"customers/{cid}/campaigns/{i}"
                    r.campaign.bidding_strategy_type = c["strategy"]
                    if c.get("system_status"):
                        r.campaign.bidding_strategy_system_status = c["system_status"]
                    b = a.budgets[c["budget"]]
                    r.campaign_budget.resource_name = f"customers/{cid}/campaignBudgets/{c['budget']}"
                    r.campaign_budget.amount_micros = b["amount_micros"]
                    r.campaign_budget.explicitly_shared = b["explicitly_shared"]
                    r.campaign_budget.reference_count = self.ref_count(c["budget"])
                    rows.append(r)
        elif source == "ad_group":
            for i, g in a.ad_groups.items():
                if only_id is None or i == only_id:
                    r = google_ads_service.GoogleAdsRow()
                    r.ad_group.id, r.ad_group.name, r.ad_group.status = i, g["name"], g["status"]
                    r.ad_group.resource_name = f"customers/{cid}/adGroups/{i}"
                    r.ad_group.cpc_bid_micros = g["cpc_bid_micros"]
                    r.campaign.id = g["campaign"]
                    r.campaign.bidding_strategy_type = a.campaigns[g["campaign"]]["strategy"]
                    rows.append(r)
        for start in range(0, max(len(rows), 1), 2):  # several stream messages, 2 rows each
            yield google_ads_service.SearchGoogleAdsStreamResponse(results=rows[start:start + 2], request_id="stream-1")

    # ---- mutates ------------------------------------------------------------------------------
    def _mutate(self, method, request, context, store, id_of, result_type, response_type):
        rid = self._record(method, request, context)
        errors, results = [], []
        for i, op in enumerate(request.operations):
            name = op.update.resource_name
            if name in self.reject:
                cat, code, msg = self.reject[name]
                errors.append(ads_error(cat, code, msg, index=i))
                results.append(result_type())
                continue
            if not request.validate_only:
                target = store[id_of(name)]
                for path in op.update_mask.paths:
                    target[path] = getattr(op.update, path)
            results.append(result_type(resource_name=name))
        resp = response_type(results=results)
        if errors:
            if not request.partial_failure:
                context.set_trailing_metadata((("request-id", rid),
                                               (FAILURE_KEY, GoogleAdsFailure.serialize(GoogleAdsFailure(errors=errors, request_id=rid)))))
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request contains an invalid argument")
            detail = any_pb2.Any(type_url=f"type.googleapis.com/google.ads.googleads.{V}.errors.GoogleAdsFailure",
                                 value=GoogleAdsFailure.serialize(GoogleAdsFailure(errors=errors, request_id=rid)))
            resp.partial_failure_error = status_pb2.Status(code=3, message="multiple errors", details=[detail])
        if request.validate_only:
            resp = response_type(partial_failure_error=resp.partial_failure_error) if errors else response_type()
        return resp

    def mutate_campaign_budgets(self, request, context):
        return self._mutate("MutateCampaignBudgets", request, context, self._budget_store(),
                            lambda n: int(n.rsplit("/", 1)[1]),
                            campaign_budget_service.MutateCampaignBudgetResult,
                            campaign_budget_service.MutateCampaignBudgetsResponse)

    def _budget_store(self):
        return self.account.budgets

    def mutate_ad_groups(self, request, context):
        return self._mutate("MutateAdGroups", request, context, _NamedStore(self.account.ad_groups),
                            lambda n: int(n.rsplit("/", 1)[1]),
                            ad_group_service.MutateAdGroupResult, ad_group_service.MutateAdGroupsResponse)

    def mutate_campaigns(self, request, context):
        return self._mutate("MutateCampaigns", request, context, _NamedStore(self.account.campaigns),
                            lambda n: int(n.rsplit("/", 1)[1]),
                            campaign_service.MutateCampaignResult, campaign_service.MutateCampaignsResponse)

    # ---- ConversionUploadService --------------------------------------------------------------
    def upload_click_conversions(self, request, context):
        """Partial failure per conversion: a known order id answers ORDER_ID_ALREADY_IN_USE, as Google does."""
        rid = self._record("UploadClickConversions", request, context)
        errors, results = [], []
        cus = conversion_upload_service
        for i, conv in enumerate(request.conversions):
            key = (conv.conversion_action, conv.order_id)
            if conv.order_id in self.reject_orders:
                name, message = self.reject_orders[conv.order_id]
                errors.append(ads_error("conversion_upload_error", name, message, index=i))
                results.append(cus.ClickConversionResult())
                continue
            with self._lock:
                if key in self.conversions:
                    errors.append(ads_error("conversion_upload_error", "ORDER_ID_ALREADY_IN_USE",
                                            "The order id was already used for this conversion action", index=i))
                    results.append(cus.ClickConversionResult())
                    continue
                if not request.validate_only:
                    self.conversions[key] = 1
            results.append(cus.ClickConversionResult(gclid=conv.gclid, conversion_action=conv.conversion_action,
                                                     conversion_date_time=conv.conversion_date_time))
        resp = cus.UploadClickConversionsResponse(results=results)
        if errors:
            detail = any_pb2.Any(type_url=f"type.googleapis.com/google.ads.googleads.{V}.errors.GoogleAdsFailure",
                                 value=GoogleAdsFailure.serialize(GoogleAdsFailure(errors=errors, request_id=rid)))
            resp.partial_failure_error = status_pb2.Status(code=3, message="partial failure", details=[detail])
        return resp

    # ---- server -------------------------------------------------------------------------------
    def handlers(self):
        svc = f"google.ads.googleads.{V}.services"
        gas = google_ads_service
        return [
            grpc.method_handlers_generic_handler(f"{svc}.GoogleAdsService", {
                "SearchStream": grpc.unary_stream_rpc_method_handler(
                    self.search_stream, request_deserializer=gas.SearchGoogleAdsStreamRequest.deserialize,
                    response_serializer=gas.SearchGoogleAdsStreamResponse.serialize)}),
            grpc.method_handlers_generic_handler(f"{svc}.CampaignBudgetService", {
                "MutateCampaignBudgets": grpc.unary_unary_rpc_method_handler(
                    self.mutate_campaign_budgets,
                    request_deserializer=campaign_budget_service.MutateCampaignBudgetsRequest.deserialize,
                    response_serializer=campaign_budget_service.MutateCampaignBudgetsResponse.serialize)}),
            grpc.method_handlers_generic_handler(f"{svc}.AdGroupService", {
                "MutateAdGroups": grpc.unary_unary_rpc_method_handler(
                    self.mutate_ad_groups, request_deserializer=ad_group_service.MutateAdGroupsRequest.deserialize,
                    response_serializer=ad_group_service.MutateAdGroupsResponse.serialize)}),
            grpc.method_handlers_generic_handler(f"{svc}.ConversionUploadService", {
                "UploadClickConversions": grpc.unary_unary_rpc_method_handler(
                    self.upload_click_conversions,
                    request_deserializer=conversion_upload_service.UploadClickConversionsRequest.deserialize,
                    response_serializer=conversion_upload_service.UploadClickConversionsResponse.serialize)}),
            grpc.method_handlers_generic_handler(f"{svc}.CampaignService", {
                "MutateCampaigns": grpc.unary_unary_rpc_method_handler(
                    self.mutate_campaigns, request_deserializer=campaign_service.MutateCampaignsRequest.deserialize,
                    response_serializer=campaign_service.MutateCampaignsResponse.serialize)}),
        ]


class _NamedStore(dict):
    """Maps mask paths of campaigns / ad groups onto the fake's keys (status is stored by name)."""

    def __init__(self, store):
        super().__init__()
        self.store = store

    def __getitem__(self, key):
        return _FieldWriter(self.store[key])


class _FieldWriter:
    def __init__(self, row):
        self.row = row

    def __setitem__(self, path, value):
        self.row[path] = value.name if hasattr(value, "name") else value


def start_server(servicer: FakeGoogleAds, key_pem: bytes, cert_pem: bytes) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(servicer.handlers())
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    return server, port
