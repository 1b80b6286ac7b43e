"""The AdPlatform protocol every ad platform adapter implements, and its value types.

The sandbox, Meta and Google adapters all speak this protocol, so the whole
review -> execute -> history -> rollback flow is the same on every platform.
Money is `Decimal` in currency units here; adapters convert at their own boundary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

#: Fields a change may touch.
FIELDS = ("budget", "bid", "status")
#: Statuses a change may set.
STATUSES = ("ACTIVE", "PAUSED")
#: Entity types across platforms (Meta ad set == Google ad group level).
ENTITY_TYPES = ("campaign", "ad_set", "ad_group", "ad")
#: Seconds every request of a real adapter may take (Meta: connect and each read; Google: the gRPC
#: deadline). Well inside the executor's lease (`core.execute.LEASE`, 120 s), which is also renewed
#: while a call is in flight.
PLATFORM_CALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Entity:
    """A campaign, ad set / ad group or ad as the platform reports it."""

    platform: str
    account_id: str
    entity_type: str
    external_id: str
    name: str
    status: str
    currency: str
    parent_id: str | None = None
    daily_budget: Decimal | None = None
    bid: Decimal | None = None
    bid_strategy: str | None = None
    shared_budget: bool = False
    #: the platform's learning state as reported (see `in_learning`); None when the platform reports none
    learning_status: str | None = None
    #: when the platform last counted a significant edit (resets learning), timezone-aware UTC
    last_significant_edit: dt.datetime | None = None


def in_learning(learning_status: str | None) -> bool:
    """Whether a reported learning state means the delivery system is still learning.

    Meta ``learning_stage_info.status`` LEARNING (SUCCESS / FAIL have left learning; FAIL is "learning
    limited"); Google ``bidding_strategy_system_status`` LEARNING_NEW, LEARNING_BUDGET_CHANGE,
    LEARNING_SETTING_CHANGE, LEARNING_COMPOSITION_CHANGE, LEARNING_CONVERSION_TYPE_CHANGE,
    LEARNING_CONVERSION_SETTING_CHANGE, and MULTIPLE_LEARNING (a portfolio whose campaigns are learning).

    >>> in_learning("LEARNING"), in_learning("LEARNING_BUDGET_CHANGE"), in_learning("SUCCESS"), in_learning(None)
    (True, True, False, False)
    """
    status = str(learning_status or "").upper()
    return status == "LEARNING" or status.startswith("LEARNING_") or status == "MULTIPLE_LEARNING"


@dataclass(frozen=True)
class PerformanceRow:
    """One entity's performance on one day (the account's date)."""

    platform: str
    account_id: str
    entity_type: str
    external_id: str
    date: dt.date
    spend: Decimal
    impressions: int
    clicks: int
    conversions: float
    conversion_value: Decimal
    currency: str
    segment_type: str = ""  # "" for totals; "device", "hour", "placement" for segments
    segment_value: str = ""


@dataclass(frozen=True)
class ChangeRequest:
    """One change to apply: set ``field`` of an entity from ``old_value`` to ``new_value``.

    Budgets and bids are `Decimal` currency units; statuses are strings from STATUSES.
    ``key`` identifies the change within its plan (used to map platform answers back).
    """

    key: str
    entity_type: str
    external_id: str
    field: str
    old_value: Decimal | str | None
    new_value: Decimal | str
    currency: str = "USD"


@dataclass(frozen=True)
class ValidationResult:
    """The platform's verdict on a change it was asked to validate without applying it."""

    key: str
    ok: bool
    message: str = ""
    code: str | None = None


@dataclass(frozen=True)
class ApplyResult:
    """What the platform did with an applied change; ``read_back`` is the value read after writing."""

    key: str
    ok: bool
    read_back: Decimal | str | None = None
    request_id: str | None = None
    response: dict = field(default_factory=dict)


class PlatformError(Exception):
    """An error answered by a platform. Never carries a secret in its message."""

    transient = False

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after


class TransientPlatformError(PlatformError):
    """Retry with backoff (timeouts, 5xx, temporary unavailability)."""

    transient = True


class RateLimitError(TransientPlatformError):
    """Throttled; ``retry_after`` seconds is the platform's hint when it gave one."""


class PermanentPlatformError(PlatformError):
    """Rejected for good (bad parameter, policy); recorded with the platform's code and message."""


class AuthError(PlatformError):
    """Invalid or expired credentials: reconnect, never retry."""


@runtime_checkable
class AdPlatform(Protocol):
    """What the execution engine and sync need from an ad platform."""

    name: str
    account_id: str
    currency: str

    def list_entities(self) -> list[Entity]: ...

    def fetch_performance(self, start: dt.date, end: dt.date) -> list[PerformanceRow]: ...

    def read_live(self, entity_type: str, external_id: str, field: str) -> Decimal | str | None: ...

    def validate(self, changes: list[ChangeRequest]) -> list[ValidationResult]: ...

    def apply(self, change: ChangeRequest) -> ApplyResult: ...
