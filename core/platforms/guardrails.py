"""Platform guardrails enforced in `core`: a Meta ad set's budget changes at most 4 times an hour.

The count is derived from the `changes` table (applied budget changes of that ad set in the last
hour), so it survives restarts and covers every plan and every session without a table of its own.
Meta counts per ad set, whoever sends the change: the count is keyed on the ad account and the ad set,
across every workspace of the database (two workspaces on one account share the 4), and it reads only
times, never another workspace's data.
`core.execute` enforces it at execution time for every Meta plan, whatever adapter instance it is
given, and then also counts changes other executors have claimed but not yet settled ("applying").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.changes import WRITTEN_STATUSES
from core.store.models import Change, ChangePlan

from .base import ChangeRequest

#: Meta's documented limit: an ad set's budget may change at most this many times per window.
META_BUDGET_CHANGES_PER_HOUR = 4
META_BUDGET_WINDOW = dt.timedelta(hours=1)


def _aware(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.timezone.utc) if at is not None and at.tzinfo is None else at


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def next_allowed(applied_at: list[dt.datetime], now: dt.datetime, *, limit: int, window: dt.timedelta) -> dt.datetime | None:
    """When the next change is allowed given the times of past ones: None if it is allowed now."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    recent = sorted(t for t in applied_at if t > now - window)
    if len(recent) < limit:
        return None
    # the (len - limit + 1)-th oldest recent change must leave the window first
    return recent[len(recent) - limit] + window


class MetaBudgetGuard:
    """Refuses a Meta ad set budget change when 4 were applied to that ad set in the last hour.

    Counted per ad account and ad set across all workspaces (``workspace_id`` names the asking
    workspace only; Meta's limit does not know workspaces)."""

    def __init__(
        self,
        engine: Engine,
        workspace_id: str,
        *,
        limit: int = META_BUDGET_CHANGES_PER_HOUR,
        window: dt.timedelta = META_BUDGET_WINDOW,
        clock: Callable[[], dt.datetime] = _utcnow,
        count_in_flight: bool = False,
    ):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.engine, self.workspace_id, self.limit, self.window, self.clock = engine, workspace_id, limit, window, clock
        self.count_in_flight = count_in_flight

    def applied_times(self, account_id: str, external_id: str, now: dt.datetime,
                      exclude_change_id: int | None = None) -> list[dt.datetime]:
        """Times of the applied budget changes of this ad set within the window (plus, with
        ``count_in_flight``, ``now`` for each change claimed by an executor and not yet settled)."""
        digits = account_id[4:] if account_id.startswith("act_") else account_id
        status = Change.status.in_(WRITTEN_STATUSES) & Change.applied_at.is_not(None) & (Change.applied_at > now - self.window)
        if self.count_in_flight:
            status = status | (Change.status == "applying")
        stmt = (
            select(Change.applied_at, Change.status)
            .join(ChangePlan, Change.plan_id == ChangePlan.id)
            .where(
                ChangePlan.platform == "meta",
                ChangePlan.account_id.in_([digits, "act_" + digits]),
                Change.entity_type == "ad_set",
                Change.external_id == str(external_id),
                Change.field == "budget",
                status,
            )
        )
        if exclude_change_id is not None:
            stmt = stmt.where(Change.id != exclude_change_id)
        # deliberately not a workspace-scoped session: the limit is the ad set's, whichever workspace changed it
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [now if st == "applying" else _aware(at) for at, st in rows]

    def check(self, account_id: str, change: ChangeRequest, exclude_change_id: int | None = None) -> str | None:
        """The reason to refuse ``change`` now, or None when it may go ahead."""
        if change.field != "budget" or change.entity_type != "ad_set":
            return None
        now = self.clock()
        times = self.applied_times(account_id, change.external_id, now, exclude_change_id)
        when = next_allowed(times, now, limit=self.limit, window=self.window)
        if when is None:
            return None
        return (
            f"ad set {change.external_id}: its budget was already changed {self.limit} times in the last "
            f"{int(self.window.total_seconds() // 60)} minutes (Meta's limit); next change allowed after "
            f"{when.strftime('%Y-%m-%d %H:%M')} UTC"
        )
