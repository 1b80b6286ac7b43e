"""Google: the Data Manager API (primary) and the Google Ads API's click conversion upload.

* **Data Manager** (``google-ads-datamanager``): `IngestionServiceClient.ingest_events` with the
  Google Ads operating account and the conversion action as ``product_destination_id``, request-level
  consent, ``encoding=HEX`` for the hashed identifiers, ``validate_only`` in test mode; at most 2,000
  events, all or nothing (a rejected request is bisected). The returned ``request_id`` is kept as the
  trace id; `request_status` reads the later per-destination outcome back.
* **Google Ads API** (accounts that still use it): ``ConversionUploadService.upload_click_conversions``
  always with ``partial_failure=True``; each row's error is mapped back by its operation index;
  ORDER_ID_ALREADY_IN_USE / CLICK_CONVERSION_ALREADY_EXISTS / DUPLICATE_ORDER_ID mean it landed
  before (delivered); TOO_RECENT_EVENT is retried after 6 hours.

Both send ``order_id`` / ``transaction_id`` (the idempotency key), timestamps with their UTC offset,
Google's normalization of identifiers (`core.tracking.identity`) and ``ad_user_data`` consent.
"""

from __future__ import annotations

import datetime as dt

from google.api_core import exceptions as gexc

from .base import FAILED, RETRY, SENT, TEST, Item, Outcome, Rejected, Transient, quick_retry, send_bisecting

MAX_BATCH = 2000
TIMEOUT_SECONDS = 20.0
DATAMANAGER_SCOPE = "https://www.googleapis.com/auth/datamanager"
#: Google Ads conversion upload errors that mean "this conversion is already there".
ALREADY_THERE = frozenset({"ORDER_ID_ALREADY_IN_USE", "CLICK_CONVERSION_ALREADY_EXISTS", "DUPLICATE_ORDER_ID"})
_TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.TooManyRequests,
              gexc.ResourceExhausted, gexc.Aborted, gexc.Unknown)


def google_time(ts: dt.datetime) -> str:
    """``yyyy-mm-dd hh:mm:ss+00:00``: the Google Ads API needs the offset (a naive time is read in the
    account's zone and can precede the click)."""
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")


def click_ids(c: dict) -> dict:
    """One click id: gclid, else gbraid, else wbraid (Google refuses gbraid and wbraid together)."""
    for name in ("gclid", "gbraid", "wbraid"):
        if c.get(name):
            return {name: c[name]}
    return {}


def _transient(exc: Exception) -> Transient:
    return Transient(f"Google unavailable: {getattr(exc, 'message', None) or type(exc).__name__}", type(exc).__name__)


# ------------------------------------------------------------------------------------ Data Manager
class DataManagerSender:
    name = "google"
    max_batch = MAX_BATCH

    def __init__(self, client, customer_id: str, conversion_actions: dict, *, login_customer_id: str | None = None,
                 timeout: float = TIMEOUT_SECONDS):
        self.client, self.customer_id = client, customer_id
        self.login_customer_id = login_customer_id
        self.actions = conversion_actions
        self.timeout = timeout

    @classmethod
    def from_secrets(cls, secrets: dict, settings: dict, endpoint: str | None = None) -> "DataManagerSender":
        from google.ads import datamanager_v1
        from google.oauth2.credentials import Credentials

        from core.platforms.google import TOKEN_URI

        creds = Credentials(token=None, refresh_token=secrets["google_refresh_token"], client_id=secrets["google_client_id"],
                            client_secret=secrets["google_client_secret"], token_uri=TOKEN_URI, scopes=[DATAMANAGER_SCOPE])
        options = {"api_endpoint": endpoint} if endpoint else None
        client = datamanager_v1.IngestionServiceClient(credentials=creds, client_options=options)
        return cls(client, settings["customer_id"], settings.get("conversion_actions") or {},
                   login_customer_id=settings.get("login_customer_id"))

    def _action(self, c: dict) -> str | None:
        return self.actions.get(c["type"]) or self.actions.get("*")

    def event(self, item: Item):
        from google.ads import datamanager_v1 as dm
        from google.protobuf import timestamp_pb2

        c = item.conversion
        g = c.get("user_data", {}).get("google", {})
        ids = []
        if "email" in g:
            ids.append(dm.UserIdentifier(email_address=g["email"]))
        if "phone" in g:
            ids.append(dm.UserIdentifier(phone_number=g["phone"]))
        if {"first_name", "last_name", "country", "postal_code"} <= set(g):
            ids.append(dm.UserIdentifier(address=dm.AddressInfo(given_name=g["first_name"], family_name=g["last_name"],
                                                                region_code=g["country"].upper(), postal_code=g["postal_code"])))
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(c["ts"].astimezone(dt.timezone.utc))
        granted = dm.ConsentStatus.CONSENT_GRANTED
        denied = dm.ConsentStatus.CONSENT_DENIED
        return dm.Event(
            transaction_id=item.key, event_timestamp=stamp, ad_identifiers=dm.AdIdentifiers(**click_ids(c)),
            user_data=dm.UserData(user_identifiers=ids[:10]) if ids else None, currency=c["currency"],
            conversion_value=float(c["value"]), event_source=dm.EventSource.WEB if c.get("action_source") == "website" else dm.EventSource.OTHER,
            consent=dm.Consent(ad_user_data=granted if c.get("ad_user_data") is not False else denied,
                               ad_personalization=granted if c.get("ad_personalization") else denied))

    def request(self, items: list[Item], action: str, test: bool):
        from google.ads import datamanager_v1 as dm

        account = dm.ProductAccount(account_type=dm.ProductAccount.AccountType.GOOGLE_ADS, account_id=self.customer_id)
        destination = dm.Destination(operating_account=account, product_destination_id=action)
        if self.login_customer_id:
            destination.login_account = dm.ProductAccount(account_type=dm.ProductAccount.AccountType.GOOGLE_ADS,
                                                          account_id=self.login_customer_id)
        return dm.IngestEventsRequest(destinations=[destination], events=[self.event(i) for i in items],
                                      encoding=dm.Encoding.HEX, validate_only=test)

    def _post(self, items: list[Item], action: str, test: bool) -> dict[int, Outcome]:
        try:
            response = self.client.ingest_events(request=self.request(items, action, test), timeout=self.timeout, retry=None)
        except _TRANSIENT as exc:
            raise _transient(exc) from None
        except gexc.Unauthenticated as exc:
            raise Transient(f"Google refused the credentials (renew them): {exc.message}", "UNAUTHENTICATED", retry_after=3600) from None
        except gexc.GoogleAPICallError as exc:
            raise Rejected(f"Data Manager rejected the request: {exc.message}", type(exc).__name__) from None
        status = TEST if test else SENT
        return {i.delivery_id: Outcome(status, "accepted", None, response.request_id or None) for i in items}

    def send(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        out, by_action = {}, {}
        for i in items:
            action = self._action(i.conversion)
            if action is None:
                out[i.delivery_id] = Outcome(FAILED, "no_conversion_action", f"no conversion action for type {i.conversion['type']!r}")
            else:
                by_action.setdefault(action, []).append(i)
        for action, group in by_action.items():
            for start in range(0, len(group), MAX_BATCH):
                chunk = group[start:start + MAX_BATCH]
                out |= send_bisecting(chunk, lambda part, a=action: quick_retry(lambda: self._post(part, a, test)))
        return out

    def request_status(self, request_id: str) -> str:
        """SUCCESS / PROCESSING / FAILED / PARTIAL_SUCCESS of an earlier request (its first destination)."""
        from google.ads import datamanager_v1 as dm

        response = self.client.retrieve_request_status(request=dm.RetrieveRequestStatusRequest(request_id=request_id),
                                                       timeout=self.timeout)
        statuses = [s.request_status.name for s in response.request_status_per_destination]
        return statuses[0] if statuses else "REQUEST_STATUS_UNKNOWN"


# ------------------------------------------------------------------------------------ Google Ads API
class GoogleAdsSender:
    name = "google"
    max_batch = MAX_BATCH

    def __init__(self, client, customer_id: str, conversion_actions: dict, *, api_version: str | None = None,
                 timeout: float = TIMEOUT_SECONDS):
        from core.platforms.google import GOOGLE_API_VERSION

        self.client, self.customer_id, self.actions = client, customer_id, conversion_actions
        self.version = api_version or client.version or GOOGLE_API_VERSION
        self.timeout = timeout
        self.service = client.get_service("ConversionUploadService", version=self.version)

    @classmethod
    def from_secrets(cls, secrets: dict, settings: dict, endpoint: str | None = None) -> "GoogleAdsSender":
        from core.platforms.credentials import GoogleCredentials
        from core.platforms.google import GoogleAdsPlatform

        creds = GoogleCredentials(developer_token=secrets["google_developer_token"], client_id=secrets["google_client_id"],
                                  client_secret=secrets["google_client_secret"], refresh_token=secrets["google_refresh_token"],
                                  customer_id=settings["customer_id"], login_customer_id=settings.get("login_customer_id"))
        client = GoogleAdsPlatform.from_credentials(creds).client
        if endpoint:
            client.endpoint = endpoint
        return cls(client, settings["customer_id"], settings.get("conversion_actions") or {})

    def conversion(self, item: Item):
        c = item.conversion
        action = self.actions.get(c["type"]) or self.actions.get("*")
        conv = self.client.get_type("ClickConversion", version=self.version)
        for name, value in click_ids(c).items():
            setattr(conv, name, value)
        conv.conversion_action = f"customers/{self.customer_id}/conversionActions/{action}"
        conv.conversion_date_time = google_time(c["ts"])
        conv.conversion_value = float(c["value"])
        conv.currency_code = c["currency"]
        conv.order_id = item.key
        g = c.get("user_data", {}).get("google", {})
        if "email" in g:
            ident = self.client.get_type("UserIdentifier", version=self.version)
            ident.hashed_email = g["email"]
            conv.user_identifiers.append(ident)
        if "phone" in g:
            ident = self.client.get_type("UserIdentifier", version=self.version)
            ident.hashed_phone_number = g["phone"]
            conv.user_identifiers.append(ident)
        status = self.client.enums.ConsentStatusEnum
        conv.consent.ad_user_data = status.GRANTED if c.get("ad_user_data") is not False else status.DENIED
        return conv

    def _post(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        from google.ads.googleads.errors import GoogleAdsException

        request = self.client.get_type("UploadClickConversionsRequest", version=self.version)
        request.customer_id = self.customer_id
        request.conversions.extend(self.conversion(i) for i in items)
        request.partial_failure = True
        request.validate_only = test
        try:
            response = self.service.upload_click_conversions(request=request, timeout=self.timeout)
        except GoogleAdsException as exc:
            names = {_error_name(e) for e in exc.failure.errors}
            text = "; ".join(e.message for e in exc.failure.errors) or "rejected"
            if names & {"INTERNAL_ERROR", "TRANSIENT_ERROR", "RESOURCE_TEMPORARILY_EXHAUSTED"}:
                raise Transient(f"Google Ads: {text}", ",".join(sorted(names)), trace_id=exc.request_id) from None
            raise Rejected(f"Google Ads rejected the upload: {text}", ",".join(sorted(names)), exc.request_id) from None
        except _TRANSIENT as exc:
            raise _transient(exc) from None
        except gexc.GoogleAPICallError as exc:
            raise Rejected(f"Google Ads rejected the upload: {exc.message}", type(exc).__name__) from None
        errors = self._row_errors(response)
        ok = TEST if test else SENT
        out = {}
        for index, item in enumerate(items):
            found = errors.get(index)
            if not found:
                out[item.delivery_id] = Outcome(ok, "ok")
                continue
            names = {n for n, _ in found}
            text = "; ".join(m for _, m in found)
            if names <= ALREADY_THERE:
                out[item.delivery_id] = Outcome(ok, ",".join(sorted(names)), "already uploaded (same order id): counted once")
            elif "TOO_RECENT_EVENT" in names or "TOO_RECENT_CONVERSION_ACTION" in names:
                out[item.delivery_id] = Outcome(RETRY, ",".join(sorted(names)), text, retry_after=6 * 3600)
            else:
                out[item.delivery_id] = Outcome(FAILED, ",".join(sorted(names)), text)
        return out

    def _row_errors(self, response) -> dict[int, list[tuple[str, str]]]:
        """Per conversion index, its (error name, message) pairs from ``partial_failure_error``."""
        status = response.partial_failure_error
        if not status or not status.details:
            return {}
        failure_type = type(self.client.get_type("GoogleAdsFailure", version=self.version))
        out: dict[int, list] = {}
        for detail in status.details:
            failure = failure_type.deserialize(detail.value)
            for err in failure.errors:
                elements = list(err.location.field_path_elements)
                index = elements[0].index if elements else 0
                out.setdefault(int(index), []).append((_error_name(err), err.message))
        return out

    def send(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        out, good = {}, []
        for i in items:
            if not (self.actions.get(i.conversion["type"]) or self.actions.get("*")):
                out[i.delivery_id] = Outcome(FAILED, "no_conversion_action", f"no conversion action for type {i.conversion['type']!r}")
            elif not click_ids(i.conversion) and not i.conversion.get("user_data", {}).get("google"):
                out[i.delivery_id] = Outcome(FAILED, "no_click_id", "a click conversion needs a gclid, gbraid or wbraid (or identifiers)")
            else:
                good.append(i)
        for start in range(0, len(good), MAX_BATCH):
            chunk = good[start:start + MAX_BATCH]
            out |= quick_retry(lambda: self._post(chunk, test))
        return out


def _error_name(err) -> str:
    code = err.error_code
    pb = type(code).pb(code)
    field = pb.WhichOneof("error_code") or "unknown"
    value = getattr(code, field, None)
    return getattr(value, "name", str(value))


__all__ = ["DataManagerSender", "GoogleAdsSender", "google_time", "click_ids", "ALREADY_THERE", "MAX_BATCH"]
