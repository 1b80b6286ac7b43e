"""What every destination shares: the item to send, the outcome per item, retry rules, bisection."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_exponential_jitter

#: Outcomes a sender gives an item (the dispatcher adds expired / skipped_consent itself).
SENT, TEST, RETRY, FAILED = "sent", "test", "retry", "failed"


@dataclass
class Item:
    """One delivery to send: its outbox id, the stored conversion (a row as dict) and its idempotency key."""

    delivery_id: int
    conversion: dict
    key: str


@dataclass
class Outcome:
    status: str  # sent | test | retry | failed
    code: str | None = None
    message: str | None = None
    trace_id: str | None = None
    retry_after: float | None = None  # seconds, when the platform said


@dataclass
class Transient(Exception):
    """A failure worth retrying later (timeout, 5xx, throttling); ``retry_after`` when the platform said."""

    message: str
    code: str | None = None
    retry_after: float | None = None
    trace_id: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class Rejected(Exception):
    """The platform refused the whole request (for all-or-nothing APIs: some item in it is bad)."""

    message: str
    code: str | None = None
    trace_id: str | None = None
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


#: The quick retry's first pause (then doubling, at most 1 s).
QUICK_WAIT = 0.2


def _quick_policy(attempts: int, first_wait: float = QUICK_WAIT) -> dict:
    return {"retry": retry_if_exception(lambda e: isinstance(e, Transient)), "stop": stop_after_attempt(attempts),
            "wait": wait_exponential(multiplier=first_wait, max=1.0), "reraise": True}


# The first attempt runs without tenacity's machinery (building it cost more than a GA4 request at
# thousands of requests a second); after a transient failure the same policy goes on: a pause of
# QUICK_WAIT, then tenacity for the attempts left, its pauses doubling from there.
def quick_retry(call: Callable, attempts: int = 2):
    """``call()`` with one quick retry of a transient failure (a blip), then the outbox's backoff takes over."""
    try:
        return call()
    except Transient:
        if attempts <= 1:
            raise
    time.sleep(QUICK_WAIT)
    for attempt in Retrying(**_quick_policy(attempts - 1, 2 * QUICK_WAIT)):
        with attempt:
            return call()


async def quick_retry_async(call: Callable, attempts: int = 2):
    """`quick_retry` for a coroutine function (the same policy)."""
    try:
        return await call()
    except Transient:
        if attempts <= 1:
            raise
    await asyncio.sleep(QUICK_WAIT)
    async for attempt in AsyncRetrying(**_quick_policy(attempts - 1, 2 * QUICK_WAIT)):
        with attempt:
            return await call()


#: Outbox backoff after a transient failure: exponential with jitter, 30 s .. 1 h.
BACKOFF = wait_exponential_jitter(multiplier=30, max=3600, exp_base=2, jitter=10)


def next_attempt(now: dt.datetime, attempts: int, retry_after: float | None = None) -> dt.datetime:
    """When to try again after ``attempts`` attempts (the platform's hint wins when it is longer)."""

    class _State:  # the attribute tenacity's wait strategies read
        attempt_number = max(1, attempts)

    seconds = float(BACKOFF(_State()))
    if retry_after:
        seconds = max(seconds, float(retry_after))
    return now + dt.timedelta(seconds=seconds)


def retry_after(headers) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (a platform throttling us), else None."""
    value = None
    for name, text in (headers or {}).items():
        if str(name).lower() == "retry-after":
            value = str(text).strip()
    if value and value.isascii() and value.isdigit():
        return min(float(value), 86_400.0)
    return None


def send_bisecting(items: list[Item], send: Callable[[list[Item]], dict[int, Outcome]]) -> dict[int, Outcome]:
    """Send an all-or-nothing batch; when it is rejected, split it in halves until the bad items are alone.

    Safe because every item carries its idempotency key: an item the platform already took from an
    earlier half-accepted request is de-duplicated there.
    """
    try:
        return send(items)
    except Rejected as exc:
        if len(items) == 1:
            return {items[0].delivery_id: Outcome(FAILED, exc.code, exc.message, exc.trace_id)}
        mid = len(items) // 2
        return send_bisecting(items[:mid], send) | send_bisecting(items[mid:], send)


__all__ = ["SENT", "TEST", "RETRY", "FAILED", "Item", "Outcome", "Transient", "Rejected", "quick_retry", "quick_retry_async",
           "next_attempt", "retry_after", "send_bisecting"]
