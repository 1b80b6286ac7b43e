"""GA4 Measurement Protocol over HTTP (``/mp/collect``; ``/debug/mp/collect`` in test mode).

The live endpoint answers 2xx even to a malformed payload, so test mode sends to the validation
endpoint, which records nothing and returns ``validationMessages``. A request carries one client id
(``_ga`` cookie's client id, else the first-party user key) and at most 25 events; conversions of the
same client with the same consent and user data share a request. ``transaction_id`` is never empty
(an empty one would merge every purchase into one). Events more than 72 hours old are refused by GA4;
the outbox expires them first. Without ``ad_user_data`` consent the event is sent with consent
DENIED and without user-provided data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp

from ..config import ga4_event_name
from .base import FAILED, SENT, TEST, Item, Outcome, Transient, quick_retry_async, retry_after

MAX_EVENTS = 25
TIMEOUT_SECONDS = 5.0
BASE_URL = "https://www.google-analytics.com"
#: Requests in flight: GA4 takes one client per request, so conversions rarely share one, and 100,000
#: conversions are about 100,000 requests; they go out on one event loop over keep-alive connections.
CONCURRENCY = 16
_JSON = {"Content-Type": "application/json"}


def _run(coroutine):
    """Run ``coroutine`` to its end on a fresh event loop (uvloop's, as the collector uses, when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a requirement, but the standard loop works too
        uvloop = None
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        return runner.run(coroutine)


class GA4Sender:
    name = "ga4"
    max_batch = 500

    def __init__(self, measurement_id: str, api_secret: str, *, base_url: str | None = None, timeout: float = TIMEOUT_SECONDS,
                 concurrency: int = CONCURRENCY):
        self.measurement_id, self.api_secret = measurement_id, api_secret
        self.base = (base_url or BASE_URL).rstrip("/")
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        query = urlencode({"measurement_id": measurement_id, "api_secret": api_secret})
        self._urls = {test: f"{self.base}{'/debug/mp/collect' if test else '/mp/collect'}?{query}" for test in (False, True)}
        self._timeout = aiohttp.ClientTimeout(total=self.timeout)

    def proxy(self) -> str | None:
        """The environment's proxy for the endpoint (``HTTPS_PROXY``, ``NO_PROXY``), read once per send:
        aiohttp's ``trust_env`` reads the environment and ~/.netrc again for every request (in a thread),
        which cost more than the request itself at thousands of requests a second."""
        parts = urlsplit(self.base)
        if parts.hostname and proxy_bypass(parts.hostname):
            return None
        return getproxies().get(parts.scheme)

    @staticmethod
    def event(item: Item) -> dict:
        c = item.conversion
        micros = int(c["ts"].astimezone(dt.timezone.utc).timestamp() * 1_000_000)
        return {"name": ga4_event_name(c["type"]), "timestamp_micros": micros,
                "params": {"transaction_id": item.key, "value": float(c["value"]), "currency": c["currency"]}}

    @staticmethod
    def envelope(c: dict) -> dict:
        """The request-level part of a conversion: client id, consent and (with consent) user data."""
        granted = c.get("ad_user_data") is True
        out = {"client_id": c.get("ga_client_id") or c["user_key"],
               "consent": {"ad_user_data": "GRANTED" if granted else "DENIED",
                           "ad_personalization": "GRANTED" if c.get("ad_personalization") is True else "DENIED"}}
        g = c.get("user_data", {}).get("google", {})
        if granted:
            user = {}
            if "email" in g:
                user["sha256_email_address"] = [g["email"]]
            if "phone" in g:
                user["sha256_phone_number"] = [g["phone"]]
            if {"first_name", "last_name"} <= set(g):
                address = {"sha256_first_name": g["first_name"], "sha256_last_name": g["last_name"]}
                if "country" in g:
                    address["country"] = g["country"].upper()
                if "postal_code" in g:
                    address["postal_code"] = g["postal_code"]
                user["address"] = [address]
            if user:
                out["user_data"] = user
        return out

    async def _post(self, http: aiohttp.ClientSession, envelope: dict, items: list[Item], test: bool,
                    proxy: str | None = None) -> dict[int, Outcome]:
        body = dict(envelope, events=[self.event(i) for i in items])
        try:
            async with http.post(self._urls[test], data=json.dumps(body, separators=(",", ":")).encode(), headers=_JSON,
                                 timeout=self._timeout, proxy=proxy) as response:
                data = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # timeouts, refused or dropped connections
            raise Transient(f"GA4 did not answer ({type(exc).__name__})", "timeout") from None
        if response.status in (408, 429) or response.status >= 500:
            raise Transient(f"GA4 answered {response.status}", str(response.status), retry_after(response.headers))
        if response.status >= 300:
            return {i.delivery_id: Outcome(FAILED, str(response.status), f"GA4 refused the request ({response.status})")
                    for i in items}
        if not test:
            return {i.delivery_id: Outcome(SENT, str(response.status)) for i in items}
        try:
            messages = json.loads(data).get("validationMessages") or []
        except ValueError:
            messages = [{"description": "the validation endpoint did not answer JSON"}]
        if messages:
            text = "; ".join(f"{m.get('fieldPath', '')}: {m.get('description', '')}".strip(": ") for m in messages)[:2000]
            return {i.delivery_id: Outcome(FAILED, messages[0].get("validationCode", "invalid"), text) for i in items}
        return {i.delivery_id: Outcome(TEST, "valid") for i in items}

    def send(self, items: list[Item], test: bool) -> dict[int, Outcome]:
        groups: dict[str, tuple[dict, list[Item]]] = {}
        for i in items:
            env = self.envelope(i.conversion)
            groups.setdefault(json.dumps(env, sort_keys=True), (env, []))[1].append(i)
        requests_ = [(env, group[start:start + MAX_EVENTS]) for env, group in groups.values()
                     for start in range(0, len(group), MAX_EVENTS)]

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: the dispatcher's own thread
            return _run(self._send_all(requests_, test))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ga4") as pool:  # called from inside an event loop
            return pool.submit(_run, self._send_all(requests_, test)).result()

    async def _send_all(self, requests_: list[tuple[dict, list[Item]]], test: bool) -> dict[int, Outcome]:
        """Every request, `concurrency` at a time over keep-alive connections (the environment's proxy honoured)."""
        gate = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        proxy = self.proxy()
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:

            async def one(env: dict, chunk: list[Item]) -> dict[int, Outcome]:
                async with gate:
                    try:
                        return await quick_retry_async(lambda: self._post(http, env, chunk, test, proxy))
                    except Transient as exc:  # this request only; the others go on
                        return {i.delivery_id: Outcome("retry", exc.code, exc.message, retry_after=exc.retry_after) for i in chunk}

            out: dict[int, Outcome] = {}
            for result in await asyncio.gather(*(one(env, chunk) for env, chunk in requests_)):
                out |= result
        return out


__all__ = ["GA4Sender", "MAX_EVENTS", "BASE_URL"]
