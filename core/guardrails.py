"""One set of guardrails for every change of a workspace, manual or scheduled, and its kill switch.

A plan's `core.changes.SafetySettings` are the reviewer's limits for that plan (loosened in the dry run
when they see fit); the guardrails here are the workspace's hard limits that no plan can loosen:

* a ceiling on any one entity's daily budget, and on the account's total daily budget;
* the largest increase of a budget or bid in one step (percent);
* how many changes one entity may receive per day (the account's day);
* quiet hours (the account's local time) in which nothing is executed;
* the kill switch: while it is on, no schedule runs and no change of the workspace is executed.

They are checked at the dry run (`core.execute.preview` freezes each hit as a visible reason on the
change) and again right before each change is sent (`core.execute.execute` blocks it with error code
``guardrail``), so a kill switch thrown during an execution stops the changes not yet sent.

The same row holds the staging policy the autopilot follows (`Guardrails.step_limit_pct`,
cooldowns, what to do with an entity in its learning phase); a manual plan may exceed the step limit,
and its dry run then warns that the platform may reset the entity's learning phase.

Time is the account's: `account_today` is the sandbox's simulated day when the platform has a
simulation clock, else today's date in the account's zone. Platform-imposed limits (Meta: an ad set's
budget at most 4 times an hour) stay in `core.platforms.guardrails`; `core.execute` applies both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from core.access import Role, guarded, require
from core.changes import WRITTEN_STATUSES
from core.money import format_money, to_decimal
from core.platforms.base import in_learning
from core.store.db import transaction
from core.store.models import AdEntity, Change, ChangeOutcome, ChangePlan, WorkspaceGuardrails, utcnow

#: What to do with an entity in its learning phase: propose nothing, or only a small step.
LEARNING_POLICIES = ("hold", "cap")


class GuardrailError(ValueError):
    """Guardrail settings that contradict themselves or cannot be read; the message names the setting."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise GuardrailError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


@dataclass(frozen=True)
class Guardrails:
    """The workspace's limits (None = no limit) and its staging policy.

    ``entity_budget_ceiling`` / ``account_budget_ceiling``: highest daily budget of one entity / of the
    account's entities together (currency units); ``max_increase_pct``: largest increase of a budget or
    bid in one change; ``max_changes_per_entity_per_day``: changes one entity may receive per day;
    ``quiet_hours``: ``(start, end)`` hours in ``timezone`` (end exclusive, may wrap midnight) in which
    nothing is executed. Staging: ``step_limit_pct`` per step (larger changes become a glide path; a
    manual plan may exceed it with a warning), ``cooldown_days_budget`` / ``cooldown_days_bid`` after a
    change before the next on the same entity, ``learning_policy`` "hold" (no change while learning) or
    "cap" (steps of at most ``learning_cap_pct``).
    """

    entity_budget_ceiling: Decimal | None = None
    account_budget_ceiling: Decimal | None = None
    max_increase_pct: float | None = 50.0
    max_changes_per_entity_per_day: int | None = 10  # more is a runaway loop, not a plan
    quiet_hours: tuple[int, int] | None = None
    timezone: str = "UTC"
    step_limit_pct: float = 20.0
    cooldown_days_budget: float = 3.0
    cooldown_days_bid: float = 3.0
    learning_policy: str = "hold"
    learning_cap_pct: float = 5.0

    def __post_init__(self):
        for name in ("entity_budget_ceiling", "account_budget_ceiling"):
            v = getattr(self, name)
            if v is not None:
                v = to_decimal(v)
                if v <= 0:
                    raise GuardrailError(f"{name} must be positive or None, got {v}")
                object.__setattr__(self, name, v)
        if self.max_increase_pct is not None and not float(self.max_increase_pct) > 0:
            raise GuardrailError(f"max_increase_pct must be positive or None, got {self.max_increase_pct!r}")
        if self.max_changes_per_entity_per_day is not None and int(self.max_changes_per_entity_per_day) < 1:
            raise GuardrailError("max_changes_per_entity_per_day must be at least 1 or None")
        if self.quiet_hours is not None:
            q = tuple(int(h) for h in self.quiet_hours)
            if len(q) != 2 or not all(0 <= h <= 23 for h in q) or q[0] == q[1]:
                raise GuardrailError(f"quiet_hours must be two different hours 0-23 (start, end), got {self.quiet_hours!r}")
            object.__setattr__(self, "quiet_hours", q)
        zone(self.timezone)
        if not 0 < float(self.step_limit_pct) <= 1000:
            raise GuardrailError(f"step_limit_pct must be in (0, 1000], got {self.step_limit_pct!r}")
        if self.max_increase_pct is not None and self.step_limit_pct > self.max_increase_pct:
            raise GuardrailError(f"step_limit_pct {self.step_limit_pct:g} is above max_increase_pct "
                                 f"{self.max_increase_pct:g}: no step could ever pass")
        for name in ("cooldown_days_budget", "cooldown_days_bid"):
            if float(getattr(self, name)) < 0:
                raise GuardrailError(f"{name} must not be negative")
        if self.learning_policy not in LEARNING_POLICIES:
            raise GuardrailError(f"learning_policy must be one of {LEARNING_POLICIES}, got {self.learning_policy!r}")
        if not 0 < float(self.learning_cap_pct) <= float(self.step_limit_pct):
            raise GuardrailError("learning_cap_pct must be positive and at most step_limit_pct")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Guardrails":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise GuardrailError(f"unknown guardrail settings: {sorted(unknown)}")
        if d.get("quiet_hours") is not None:
            d["quiet_hours"] = tuple(d["quiet_hours"])
        return cls(**d)

    def cooldown_days(self, field: str) -> float:
        return float(self.cooldown_days_bid if field == "bid" else self.cooldown_days_budget)

    def in_quiet_hours(self, now: dt.datetime) -> bool:
        if self.quiet_hours is None:
            return False
        h = now.astimezone(zone(self.timezone)).hour
        start, end = self.quiet_hours
        return start <= h < end if start < end else (h >= start or h < end)


@dataclass(frozen=True)
class GuardrailState:
    """The stored guardrails of a workspace and its kill switch."""

    limits: Guardrails
    kill_switch: bool = False
    kill_note: str = ""
    updated_by: str = ""
    updated_at: dt.datetime | None = None


def load_guardrails(engine: Engine, workspace_id: str) -> GuardrailState:
    """The workspace's guardrails (defaults when never set)."""
    with transaction(engine, workspace_id) as s:
        row = s.scalars(select(WorkspaceGuardrails)).one_or_none()
        if row is None:
            return GuardrailState(Guardrails())
        return GuardrailState(Guardrails.from_dict(row.limits), bool(row.kill_switch), row.kill_note or "",
                              row.updated_by or "", row.updated_at)


def _row(s) -> WorkspaceGuardrails:
    row = s.scalars(select(WorkspaceGuardrails)).one_or_none()
    if row is None:
        row = WorkspaceGuardrails(limits=Guardrails().to_dict(), kill_switch=False, kill_note="")
        s.add(row)
    return row


@guarded(Role.ADMIN, "guardrails.save")
def save_guardrails(engine: Engine, workspace_id: str, limits: Guardrails, *, actor: str) -> None:
    """Store new limits (the kill switch is left as it is)."""
    with transaction(engine, workspace_id) as s:
        row = _row(s)
        row.limits, row.updated_by, row.updated_at = limits.to_dict(), actor or "unknown", utcnow()


@guarded(Role.APPROVER, "killswitch.set")
def set_kill_switch(engine: Engine, workspace_id: str, on: bool, *, actor: str, note: str = "") -> None:
    """Throw (``on``) or release the kill switch: while on, no schedule runs and no change is executed.
    Anyone who may execute may stop everything; releasing it needs an admin."""
    if not on:
        require(engine, workspace_id, actor, Role.ADMIN, action="killswitch.release")
    with transaction(engine, workspace_id) as s:
        row = _row(s)
        row.kill_switch = bool(on)
        row.kill_note = (note or ("stopped" if on else "released")).strip()
        row.updated_by, row.updated_at = actor or "unknown", utcnow()


def kill_switch_reason(state: GuardrailState) -> str | None:
    """Why nothing may run (the kill switch), or None."""
    if not state.kill_switch:
        return None
    when = f" at {state.updated_at:%Y-%m-%d %H:%M} UTC" if state.updated_at else ""
    note = f": {state.kill_note}" if state.kill_note else ""
    return f"the workspace's kill switch is on (thrown by {state.updated_by or 'someone'}{when}{note}); nothing is executed"


def account_today(platform=None, timezone: str = "UTC", now: dt.datetime | None = None) -> dt.date:
    """The account's current day: the sandbox's next simulated day, else today's date in ``timezone``."""
    clock = getattr(platform, "clock", None) if platform is not None else None
    if callable(clock):
        return clock() + dt.timedelta(days=1)
    now = now or utcnow()
    return now.astimezone(zone(timezone)).date()


def entity_key(platform: str, account_id: str, entity_type: str, external_id: str) -> str:
    return f"{platform}:{account_id}:{entity_type}:{external_id}"


# ------------------------------------------------------------------------------ checks
@dataclass(frozen=True)
class ChangeView:
    """What a check needs of one change (a `core.changes.PlannedChange` has all of it)."""

    seq: int
    entity_type: str
    external_id: str
    field: str
    old_value: object
    new_value: object
    currency: str | None = None  # the account's: amounts in the messages at its precision


def changes_today(engine: Engine, workspace_id: str, platform: str, account_id: str, today: dt.date,
                  exclude_change_ids: Sequence[int] = (), external_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Changes per ``entity_type:external_id`` made on the account's day ``today``: applied ones (by the day
    recorded with their outcome, else those applied in the last 24 hours) and ones in flight ("applying")."""
    C, P, O = Change, ChangePlan, ChangeOutcome
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(C.id, C.entity_type, C.external_id, C.status, C.applied_at, O.change_day)
            .join(P, P.id == C.plan_id).outerjoin(O, O.change_id == C.id)
            .where(P.platform == platform, P.account_id == account_id, C.status.in_(("applied", "reduced", "applying")),
                   (C.applied_at.is_(None)) | (C.applied_at >= utcnow() - dt.timedelta(days=3)) | (O.change_day >= today),
                   *([C.external_id.in_(list(external_ids))] if external_ids is not None else []))
        ).all()
    recent = utcnow() - dt.timedelta(days=1)
    out: dict[str, int] = {}
    skip = set(exclude_change_ids)
    for cid, et, xid, status, at, day in rows:  # the account's recent changes (a few), not events
        if cid in skip:
            continue
        # recorded with its outcome: the account's day; else the last 24 hours count (a sandbox's day is simulated)
        counts = day == today if day is not None else (status == "applying" or at is None or at >= recent)
        if counts:
            out[f"{et}:{xid}"] = out.get(f"{et}:{xid}", 0) + 1
    return out


def account_budgets(engine: Engine, workspace_id: str, platform: str, account_id: str) -> dict[str, Decimal]:
    """Today's daily budget per ``entity_type:external_id`` as last synced (entities with a budget of their own)."""
    A = AdEntity
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(A.entity_type, A.external_id, A.daily_budget)
                         .where(A.platform == platform, A.account_id == account_id, A.daily_budget.is_not(None),
                                A.status == "ACTIVE")).all()
    return {f"{et}:{xid}": to_decimal(b) for et, xid, b in rows}


def check_changes(engine: Engine, workspace_id: str, platform: str, account_id: str, changes: Sequence,
                  *, today: dt.date, now: dt.datetime | None = None, origin: str = "optimizer",
                  state: GuardrailState | None = None, exclude_change_ids: Sequence[int] = ()) -> dict[int, list[str]]:
    """Guardrail hits per change ``seq`` (empty list = passes), each a plain reason.

    ``changes`` are the plan's changes (seq, entity_type, external_id, field, old_value, new_value);
    ``origin`` "autopilot" also holds automatic plans to the step limit; a "rollback" returns to values that
    were live, so neither the increase limit nor the per-day count holds it back (ceilings, quiet hours and
    the kill switch do).
    """
    state = state or load_guardrails(engine, workspace_id)
    g = state.limits
    now = now or utcnow()
    out: dict[int, list[str]] = {c.seq: [] for c in changes}
    stop = kill_switch_reason(state)
    if stop:
        for c in changes:
            out[c.seq].append(stop)
        return out
    if g.in_quiet_hours(now):
        local = now.astimezone(zone(g.timezone))
        for c in changes:
            out[c.seq].append(f"quiet hours {g.quiet_hours[0]:02d}:00-{g.quiet_hours[1]:02d}:00 ({g.timezone}): "
                              f"it is {local:%H:%M} there; nothing is executed now")
    counts = changes_today(engine, workspace_id, platform, account_id, today, exclude_change_ids,
                           sorted({c.external_id for c in changes}) if len(changes) <= 50 else None) \
        if g.max_changes_per_entity_per_day and origin != "rollback" else {}
    in_plan: dict[str, int] = {}
    budgets = account_budgets(engine, workspace_id, platform, account_id) if g.account_budget_ceiling is not None else {}
    after = dict(budgets)
    for c in changes:
        if c.field == "budget" and isinstance(c.new_value, Decimal):
            after[f"{c.entity_type}:{c.external_id}"] = c.new_value
    total_after = sum(after.values(), Decimal(0))
    for c in changes:
        msgs = out[c.seq]
        key = f"{c.entity_type}:{c.external_id}"
        old, new = c.old_value, c.new_value
        money = c.field in ("budget", "bid") and isinstance(new, Decimal)
        if money and isinstance(old, Decimal) and old > 0 and new > old and origin != "rollback":
            pct = float((new - old) / old * 100)
            if g.max_increase_pct is not None and pct > g.max_increase_pct + 1e-9:
                msgs.append(f"an increase of {pct:+.1f}% is above the workspace's maximum of {g.max_increase_pct:g}% per step")
            elif origin == "autopilot" and pct > g.step_limit_pct + 1e-9:
                msgs.append(f"an automatic step of {pct:+.1f}% is above the step limit of {g.step_limit_pct:g}%")
        if c.field == "budget" and money:
            cur = getattr(c, "currency", None)
            if g.entity_budget_ceiling is not None and new > g.entity_budget_ceiling:
                msgs.append(f"daily budget {format_money(new, cur)} is above the workspace's ceiling of "
                            f"{format_money(g.entity_budget_ceiling, cur)} per entity")
            if g.account_budget_ceiling is not None and total_after > g.account_budget_ceiling and \
                    (not isinstance(old, Decimal) or new > old):
                msgs.append(f"the account's daily budgets would total {format_money(total_after, cur)} > its ceiling "
                            f"{format_money(g.account_budget_ceiling, cur)}")
        if g.max_changes_per_entity_per_day and origin != "rollback":
            in_plan[key] = in_plan.get(key, 0) + 1
            done = counts.get(key, 0)
            if done + in_plan[key] > g.max_changes_per_entity_per_day:
                msgs.append(f"{c.entity_type} {c.external_id} already has {done + in_plan[key] - 1} change(s) today "
                            f"(the workspace allows {g.max_changes_per_entity_per_day} per entity per day)")
    return out


def check_change_now(engine: Engine, workspace_id: str, platform, change, *, change_id: int | None = None,
                     origin: str = "optimizer", clock: Callable[[], dt.datetime] = utcnow) -> str | None:
    """The guardrail reason to block one change right before it is sent, or None.

    The account budget ceiling is checked at the dry run only (the plan as a whole); everything else
    is checked again here, with the changes applied or in flight since then counted.
    """
    state = load_guardrails(engine, workspace_id)
    now = clock()
    today = account_today(platform, state.limits.timezone, now)
    view = ChangeView(0, change.entity_type, change.external_id, change.field, change.old_value, change.new_value)
    limits = replace(state.limits, account_budget_ceiling=None)
    hits = check_changes(engine, workspace_id, platform.name, platform.account_id, [view], today=today, now=now,
                         origin=origin, state=replace(state, limits=limits),
                         exclude_change_ids=[change_id] if change_id is not None else ())[0]
    return "; ".join(hits) if hits else None


def dry_run_warnings(engine: Engine, workspace_id: str, platform: str, account_id: str,
                     changes: Sequence, *, state: GuardrailState | None = None) -> dict[int, list[str]]:
    """Warnings (not refusals) per change seq: a step above the step limit may reset the platform's learning
    phase; an entity in its learning phase restarts it when changed."""
    g = (state or load_guardrails(engine, workspace_id)).limits
    learning = learning_states(engine, workspace_id, platform, account_id)
    out: dict[int, list[str]] = {}
    for c in changes:
        msgs = []
        old, new = c.old_value, c.new_value
        if c.field in ("budget", "bid") and isinstance(old, Decimal) and isinstance(new, Decimal) and old > 0:
            pct = float((new - old) / old * 100)
            if abs(pct) > g.step_limit_pct + 1e-9:
                msgs.append(f"{pct:+.1f}% exceeds the step limit of {g.step_limit_pct:g}%: the platform may reset this "
                            "entity's learning phase (performance is unstable for about a week); automatic plans "
                            "would take it in steps")
        status = learning.get(f"{c.entity_type}:{c.external_id}")
        if status:
            msgs.append(f"in its learning phase ({status}): a change now restarts learning")
        if msgs:
            out[c.seq] = msgs
    return out


def learning_states(engine: Engine, workspace_id: str, platform: str, account_id: str) -> dict[str, str]:
    """``entity_type:external_id`` -> learning status of the entities in learning (as last synced); a campaign
    counts as learning when one of its ad sets / ad groups is."""
    A = AdEntity
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(A.entity_type, A.external_id, A.parent_id, A.learning_status)
                         .where(A.platform == platform, A.account_id == account_id,
                                A.learning_status.is_not(None))).all()
    out: dict[str, str] = {}
    for et, xid, parent, status in rows:  # entities of one account
        if in_learning(status):
            out[f"{et}:{xid}"] = status
            if parent:
                out.setdefault(f"campaign:{parent}", f"{status} (ad set / ad group {xid})")
    return out


def latest_change_days(engine: Engine, workspace_id: str, platform: str, account_id: str,
                       timezone: str = "UTC") -> dict[str, dt.date]:
    """``entity_type:external_id:field`` -> the account day of its last applied change (cooldowns start there)."""
    C, P, O = Change, ChangePlan, ChangeOutcome
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(C.entity_type, C.external_id, C.field, func.max(C.applied_at), func.max(O.change_day))
            .join(P, P.id == C.plan_id).outerjoin(O, O.change_id == C.id)
            .where(P.platform == platform, P.account_id == account_id, C.status.in_(WRITTEN_STATUSES))
            .group_by(C.entity_type, C.external_id, C.field)).all()
    tz = zone(timezone)
    out = {}
    for et, xid, fld, at, day in rows:
        out[f"{et}:{xid}:{fld}"] = day if day is not None else at.astimezone(tz).date()
    return out


def looser_fields(current: Guardrails, agreed: Guardrails) -> list[str]:
    """The settings in which ``current`` allows more than ``agreed`` (a higher or removed ceiling, a larger
    step, a shorter cooldown, other quiet hours, ...): what an admin who agreed to ``agreed`` did not agree to."""
    out = []

    def more(name: str, cur, old) -> None:  # None = no limit, the loosest
        if old is not None and (cur is None or cur > old):
            out.append(name)

    for name in ("entity_budget_ceiling", "account_budget_ceiling", "max_increase_pct", "max_changes_per_entity_per_day"):
        more(name, getattr(current, name), getattr(agreed, name))
    for name in ("step_limit_pct", "learning_cap_pct"):
        if float(getattr(current, name)) > float(getattr(agreed, name)):
            out.append(name)
    for name in ("cooldown_days_budget", "cooldown_days_bid"):
        if float(getattr(current, name)) < float(getattr(agreed, name)):
            out.append(name)
    if agreed.quiet_hours is not None and (current.quiet_hours != agreed.quiet_hours or current.timezone != agreed.timezone):
        out.append("quiet_hours")
    if agreed.learning_policy == "hold" and current.learning_policy != "hold":
        out.append("learning_policy")
    return out
