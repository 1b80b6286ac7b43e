"""Meta Conversions API through facebook-business's ``serverside`` classes.

`EventRequest` / `Event` / `UserData` / `CustomData` build and normalize each request (identity fields
arrive already normalized and hashed by `core.tracking.identity`, which the SDK passes through; IP,
user agent, fbc and fbp are never hashed), and a private `FacebookAdsApi` sends it: a 1.5 s timeout
(Meta's advice), no crash reporter, never debug (the SDK's ``FacebookAdsApi.init`` defaults are
``timeout=None, crash_log=True``). Batches hold at most 1,000 events; one bad event rejects the whole
request, so a rejected batch is split until the bad event is alone (`send_bisecting`), the others are
re-sent with the same event ids and counted once. ``event_time`` is whole seconds.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from facebook_business.adobjects.adspixel import AdsPixel
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from core.platforms.meta import META_API_VERSION, THROTTLE_CODES

from ..config import meta_event_name
from .base import FAILED, SENT, TEST, Item, Outcome, Rejected, Transient, quick_retry, retry_after, send_bisecting

MAX_BATCH = 1000
#: Full batches in flight at once: one is built while Meta reads another.
CONCURRENCY = 2
TIMEOUT_SECONDS = 1.5
PER_EVENT_SECONDS = 0.003
#: Limited Data Use: (options, country, state); "geolocate" lets Meta decide from the IP.
LDU = {"off": ([], None, None), "geolocate": (["LDU"], 0, 0), "california": (["LDU"], 1, 1000)}
_TRANSIENT_CODES = frozenset({1, 2, 341} | THROTTLE_CODES)
_NOT_META = "Meta's answer was not the Conversions API's (an empty body or a proxy's page): sent again later"


class MetaSender:
    name = "meta"
    max_batch = MAX_BATCH

    def __init__(self, pixel_id: str, access_token: str, app_secret: str | None = None, *, test_event_code: str | None = None,
                 ldu: str = "off", graph_url: str | None = None, timeout: float = TIMEOUT_SECONDS,
                 api_version: str = META_API_VERSION):
        self.pixel_id = str(pixel_id)
        self._api_settings = (app_secret, access_token, graph_url, api_version)
        self._local = threading.local()  # one SDK session per sending thread (each sets its own timeout)
        self.timeout = timeout
        self.test_event_code = test_event_code
        self.ldu = LDU[ldu]
        self._secrets = [s for s in (access_token, app_secret) if s]

    @property
    def api(self) -> FacebookAdsApi:
        api = getattr(self._local, "api", None)
        if api is None:
            app_secret, access_token, graph_url, api_version = self._api_settings
            session = FacebookSession(app_secret=app_secret, access_token=access_token, timeout=self.timeout)
            if graph_url:
                session.GRAPH = graph_url.rstrip("/")
            api = self._local.api = FacebookAdsApi(session, api_version=api_version)  # no crash log, no debug, our timeout
        return api

    def event(self, item: Item) -> Event:
        c = item.conversion
        ud = c.get("user_data", {}).get("meta", {})
        user = UserData(emails=[ud["em"]] if "em" in ud else None, phones=[ud["ph"]] if "ph" in ud else None,
                        first_names=[ud["fn"]] if "fn" in ud else None, last_names=[ud["ln"]] if "ln" in ud else None,
                        dates_of_birth=[ud["db"]] if "db" in ud else None, cities=[ud["ct"]] if "ct" in ud else None,
                        states=[ud["st"]] if "st" in ud else None, zip_codes=[ud["zp"]] if "zp" in ud else None,
                        country_codes=[ud["country"]] if "country" in ud else None,
                        external_ids=[ud["external_id"]] if "external_id" in ud else None,
                        client_ip_address=c.get("client_ip"), client_user_agent=c.get("user_agent"),
                        fbc=c.get("fbc"), fbp=c.get("fbp"))
        custom = CustomData(value=float(c["value"]), currency=str(c["currency"]).lower(), order_id=c.get("order_id"))
        options, country, state = self.ldu
        event = Event(event_name=meta_event_name(c["type"]), event_time=int(c["ts"].timestamp()), event_id=c["event_id"],
                      event_source_url=c.get("event_source_url"), action_source=ActionSource(c.get("action_source") or "website"),
                      user_data=user, custom_data=custom, data_processing_options=options,
                      data_processing_options_country=country, data_processing_options_state=state)
        return event

    def _params(self, items: list[Item], test: bool) -> dict:
        events = [self.event(i) for i in items]
        request = EventRequest(pixel_id=self.pixel_id, events=events,
                               test_event_code=self.test_event_code if test and self.test_event_code else None)
        params = request.get_params()
        for n, item in enumerate(items):  # gender is stored hashed; the SDK's Gender enum only takes "f"/"m"
            ge = item.conversion.get("user_data", {}).get("meta", {}).get("ge")
            if ge:
                payload = json.loads(params["data"][n])
                payload.setdefault("user_data", {})["ge"] = [ge]
                params["data"][n] = json.dumps(payload)
        return params

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _post(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        params = self._params(items, test)
        # Meta's advice (about 1.5 s) is for a few events; a full batch of 1,000 gets a few seconds more
        self.api._session.timeout = self.timeout + PER_EVENT_SECONDS * len(items)
        try:
            response = AdsPixel(self.pixel_id, api=self.api).create_event(fields=[], params=params)
        except FacebookRequestError as exc:
            code, sub = exc.api_error_code(), exc.api_error_subcode()
            text = self._scrub(exc.api_error_message() or str(exc.body())[:300])
            trace = (exc.body() or {}).get("error", {}).get("fbtrace_id") if isinstance(exc.body(), dict) else None
            label = f"{code}/{sub}" if sub else str(code)
            if exc.api_transient_error() or code in _TRANSIENT_CODES or (exc.http_status() or 0) >= 500 or exc.http_status() == 429:
                raise Transient(f"Meta: {text}", label, retry_after=retry_after(exc.http_headers()), trace_id=trace) from None
            if code in (190, 102):
                raise Transient(f"Meta refused the access token (renew it): {text}", label, retry_after=3600, trace_id=trace) from None
            raise Rejected(f"Meta rejected the request: {text}", label, trace) from None
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise Transient(f"Meta did not answer in time ({type(exc).__name__})", "timeout") from None
        except (TypeError, ValueError, AttributeError, KeyError):  # the SDK could not read the answer as an object
            raise Transient(_NOT_META, "bad_response") from None
        trace = response.get("fbtrace_id")
        try:
            received = int(response["events_received"])
        except (KeyError, TypeError, ValueError):
            # Meta's answer always carries events_received; an empty 2xx or a gateway's own JSON (the SDK
            # reads both as success) says nothing of whether the events landed: re-send them, same event ids
            raise Transient(_NOT_META, "bad_response", trace_id=trace) from None
        if received != len(items):
            raise Rejected(f"Meta received {received} of {len(items)} events", "partial", trace)
        status = TEST if test and self.test_event_code else SENT
        return {i.delivery_id: Outcome(status, "ok", None, trace) for i in items}

    def send(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        if test and not self.test_event_code:
            return {i.delivery_id: Outcome(FAILED, "no_test_code", "test mode needs a test event code (Events Manager > Test events)")
                    for i in items}
        invalid = {}
        good = []
        for i in items:
            c = i.conversion
            if (c.get("action_source") or "website") == "website" and not (c.get("event_source_url") and c.get("user_agent")):
                invalid[i.delivery_id] = Outcome(FAILED, "missing_fields",
                                                 "Meta needs event_source_url and user_agent for website events")
            else:
                good.append(i)
        out = dict(invalid)
        chunks = [good[start:start + MAX_BATCH] for start in range(0, len(good), MAX_BATCH)]

        def one(chunk: list[Item]) -> dict[int, Outcome]:
            return send_bisecting(chunk, lambda part: quick_retry(lambda: self._post(part, test)))

        if len(chunks) <= 1:
            results = map(one, chunks)
        else:
            with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(chunks)), thread_name_prefix="meta") as pool:
                results = list(pool.map(one, chunks))
        for result in results:
            out |= result
        return out


__all__ = ["MetaSender", "MAX_BATCH", "LDU"]
