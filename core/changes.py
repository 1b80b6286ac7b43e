"""Change plans: the draft changes the optimizer proposes and the rules every plan obeys.

`DraftChange` is the form in which recommendations leave the optimizer and enter a change plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class DraftChange:
    """A proposed change to one entity field, with why and how sure we are.

    ``old_value``/``new_value`` are `Decimal` currency units for budget and bid, a status string
    (ACTIVE/PAUSED) for status. ``confidence`` is 0-100. ``auto_approve`` marks a change above the
    user's confidence threshold (it is only honoured when the user switched auto-approval on).
    """

    platform: str
    account_id: str
    entity_type: str
    external_id: str
    entity_name: str
    field: str
    old_value: Decimal | str | None
    new_value: Decimal | str
    currency: str
    reason: str
    confidence: float
    auto_approve: bool = False


# --------------------------------------------------------------------------------------------
# Change plans: values, safety rules, content hash, diff, inverse, storage.
# --------------------------------------------------------------------------------------------
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, field, replace  # noqa: E402

import pandas as pd  # noqa: E402
from sqlalchemy import func, select, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from core.access import Role, audit_target, guarded  # noqa: E402
from core.money import bounded_amount, format_money, is_whole_units, money_step, to_decimal  # noqa: E402
from core.platforms.base import FIELDS, STATUSES  # noqa: E402
from core.store.db import transaction  # noqa: E402
from core.store.models import Change, ChangePlan, PlanEvent  # noqa: E402

#: Plan statuses, in lifecycle order; the last four are final.
PLAN_STATUSES = ("draft", "previewed", "approved", "executing", "completed", "partially_failed", "failed", "cancelled")
FINAL_STATUSES = frozenset({"completed", "partially_failed", "failed", "cancelled"})
#: Per-change statuses: pending until executed; applying while an executor holds it (in flight, or its
#: executor died: settled on resume from the live value); unchanged when the live value already was the
#: new one (not sent, never rolled back); blocked by safety/validation/guardrail; skipped when not attempted;
#: reduced (a budget increase sent smaller) or held (not sent) because a decrease funding it did not apply
#: (`core.funding`: a plan never takes the account above the total that was approved).
CHANGE_STATUSES = ("pending", "applying", "applied", "reduced", "unchanged", "failed", "stale", "blocked", "skipped",
                   "held")
#: The platform took the change: applied as approved, or reduced (at its ``funded_value``). Rollbacks, outcomes,
#: cooldowns and the platforms' write limits count both.
WRITTEN_STATUSES = ("applied", "reduced")
MONEY_FIELDS = ("budget", "bid")


class ChangePlanError(ValueError):
    """A plan or change that cannot be built or stored as asked."""


@dataclass(frozen=True)
class SafetySettings:
    """Limits every plan is checked against at preview and again at execution.

    ``max_change_pct``: largest allowed |new/old - 1| in percent per budget/bid change (None = no limit);
    ``min_budget``/``max_budget``: bounds of a new daily budget; ``max_total_increase``: cap on the plan's
    net daily budget increase in currency units (None = no cap); ``allow_status_changes``: whether a plan
    may pause / activate entities.
    """

    max_change_pct: float | None = 50.0
    min_budget: Decimal = Decimal("1")
    max_budget: Decimal | None = None
    max_total_increase: Decimal | None = None
    allow_status_changes: bool = False

    def __post_init__(self):
        if self.max_change_pct is not None and not self.max_change_pct > 0:
            raise ChangePlanError(f"max_change_pct must be positive or None, got {self.max_change_pct!r}")
        object.__setattr__(self, "min_budget", to_decimal(self.min_budget))
        if self.max_budget is not None:
            object.__setattr__(self, "max_budget", to_decimal(self.max_budget))
            if self.max_budget < self.min_budget:
                raise ChangePlanError(f"max_budget {self.max_budget} is below min_budget {self.min_budget}")
        if self.max_total_increase is not None:
            object.__setattr__(self, "max_total_increase", to_decimal(self.max_total_increase))
            if self.max_total_increase < 0:
                raise ChangePlanError("max_total_increase must not be negative")

    def to_dict(self) -> dict:
        """JSON-safe (Decimals as text) for storage in the plan."""
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> "SafetySettings":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ChangePlanError(f"unknown safety settings: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class PlannedChange:
    """One change of a stored plan as the rules see it (values parsed: Decimal or status text)."""

    seq: int
    entity_type: str
    external_id: str
    entity_name: str
    field: str
    old_value: Decimal | str | None
    new_value: Decimal | str
    currency: str
    reason: str = ""
    confidence: float = 0.0
    auto_approve: bool = False
    status: str = "pending"
    id: int | None = None
    funded_value: Decimal | None = None  # a reduced increase: the value it may set (`core.funding`)

    @property
    def key(self) -> str:
        return str(self.seq)

    @property
    def written_value(self) -> Decimal | str:
        """The value this change sets on the platform: its ``funded_value`` when reduced, else its new value."""
        return self.new_value if self.funded_value is None else self.funded_value


@dataclass(frozen=True)
class CheckResult:
    """The safety verdict on one change: ok, and the reasons when not."""

    seq: int
    ok: bool
    messages: tuple[str, ...] = ()
    change_pct: float | None = None


def parse_value(field_name: str, value: object) -> Decimal | str | None:
    """A stored or proposed value as the rules compare it: Decimal for budget/bid, status text."""
    if value is None:
        return None
    if field_name in MONEY_FIELDS:
        return to_decimal(value)
    if field_name == "status":
        return str(value)
    raise ChangePlanError(f"unknown field {field_name!r}; expected one of {FIELDS}")


def format_value(value: Decimal | str | None) -> str | None:
    """Text for storage; Decimal keeps every digit so parsing it back is exact."""
    return None if value is None else str(value)


def same_value(field_name: str, a: object, b: object) -> bool:
    """Equal as values (Decimal('50') == Decimal('50.000000'); statuses case-sensitive)."""
    pa, pb = parse_value(field_name, a), parse_value(field_name, b)
    return pa == pb


def change_pct(old: Decimal | str | None, new: Decimal | str) -> float | None:
    """Relative change in percent for money fields; None for statuses or when there is no old value."""
    if not isinstance(old, Decimal) or not isinstance(new, Decimal) or old == 0:
        return None
    return float((new - old) / old * 100)


def _from_draft(seq: int, d: DraftChange) -> PlannedChange:
    if d.field not in FIELDS:
        raise ChangePlanError(f"change {seq} ({d.external_id}): unknown field {d.field!r}; expected one of {FIELDS}")
    try:
        old, new = parse_value(d.field, d.old_value), parse_value(d.field, d.new_value)
        if d.field in MONEY_FIELDS:  # a hostile or broken source (NaN, Infinity, 1e30) is refused here, by name
            old, new = (None if old is None else bounded_amount(old)), (None if new is None else bounded_amount(new))
    except (ValueError, TypeError) as exc:
        raise ChangePlanError(f"change {seq} ({d.external_id} {d.field}): {exc}") from None
    if new is None:
        raise ChangePlanError(f"change {seq} ({d.external_id} {d.field}): new value is missing")
    if not 0 <= float(d.confidence) <= 100:
        raise ChangePlanError(f"change {seq} ({d.external_id}): confidence {d.confidence} is outside 0-100")
    return PlannedChange(seq, d.entity_type, d.external_id, d.entity_name, d.field, old, new, d.currency.upper(),
                         d.reason, float(d.confidence), bool(d.auto_approve))


def check_changes(changes: Sequence[PlannedChange], settings: SafetySettings, platform: str | None = None) -> list[CheckResult]:
    """Safety verdict per change: change %, budget bounds, status permission, total increase cap, and money
    that is a whole number of the currency's step on ``platform`` (`core.money.money_step`)."""
    out: list[CheckResult] = []
    increase = sum((c.new_value - c.old_value for c in changes
                    if c.field == "budget" and isinstance(c.old_value, Decimal) and isinstance(c.new_value, Decimal)),
                   Decimal(0))
    over_cap = settings.max_total_increase is not None and increase > settings.max_total_increase
    for c in changes:
        msgs: list[str] = []
        pct = change_pct(c.old_value, c.new_value)
        if c.field in MONEY_FIELDS:
            new = c.new_value
            if not isinstance(new, Decimal):
                msgs.append(f"{c.field} {new!r} is not an amount")
            else:
                if new <= 0:
                    msgs.append(f"{c.field} must be positive, got {new}")
                else:
                    try:
                        if not is_whole_units(new, c.currency, platform):
                            msgs.append(f"{c.field} {new.normalize():f} is not a whole number of {c.currency} minor units "
                                        f"({money_step(c.currency, platform)} {c.currency}{f' on {platform}' if platform else ''})")
                    except ValueError as exc:  # a currency the platform (or ISO) has no money in: said by name
                        msgs.append(str(exc))
                if c.old_value is None:
                    msgs.append("no current value to compare with (cannot bound the change)")
                elif settings.max_change_pct is not None and (pct is None or abs(pct) > settings.max_change_pct + 1e-9):
                    msgs.append(f"change of {pct:+.1f}% exceeds the ±{settings.max_change_pct:g}% limit" if pct is not None
                                else f"old value {c.old_value} is zero: the change % is unbounded")
                if c.field == "budget":
                    if new < settings.min_budget:
                        msgs.append(f"budget {new} is below the minimum {settings.min_budget}")
                    if settings.max_budget is not None and new > settings.max_budget:
                        msgs.append(f"budget {new} is above the maximum {settings.max_budget}")
                    if over_cap and isinstance(c.old_value, Decimal) and new > c.old_value:
                        msgs.append(f"the plan raises total daily budget by {increase} > cap {settings.max_total_increase}")
        elif c.field == "status":
            if c.new_value not in STATUSES:
                msgs.append(f"status must be one of {STATUSES}, got {c.new_value!r}")
            if not settings.allow_status_changes:
                msgs.append("status changes are not allowed by the safety settings")
        else:
            msgs.append(f"unknown field {c.field!r}")
        if c.old_value is not None and c.old_value == c.new_value:
            msgs.append("new value equals the current value (nothing to change)")
        out.append(CheckResult(c.seq, not msgs, tuple(msgs), pct))
    return out


def total_budget_delta(changes: Sequence[PlannedChange]) -> Decimal:
    """Net change of daily budget over the budget changes of ``changes``."""
    return sum((c.new_value - c.old_value for c in changes
                if c.field == "budget" and isinstance(c.old_value, Decimal) and isinstance(c.new_value, Decimal)), Decimal(0))


def content_hash(platform: str, account_id: str, settings: SafetySettings, changes: Sequence[PlannedChange]) -> str:
    """SHA-256 of everything the reviewer saw: target account, limits, and each change's what and why."""
    body = {
        "platform": platform, "account_id": account_id, "settings": settings.to_dict(),
        "changes": [[c.seq, c.entity_type, c.external_id, c.entity_name, c.field, format_value(c.old_value),
                     format_value(c.new_value), c.currency, c.reason, round(c.confidence, 6), c.auto_approve]
                    for c in sorted(changes, key=lambda c: c.seq)],
    }
    # Decimal text is normalized so "50.00" and "50.000000" (a database round trip) hash the same
    for row in body["changes"]:
        for i in (5, 6):
            if row[4] in MONEY_FIELDS and row[i] is not None:
                row[i] = format(to_decimal(row[i]).normalize(), "f")
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def display_value(field_name: str, value: Decimal | str | None, currency: str = "USD") -> str:
    """A value as shown in the diff: money rounded to the currency's unit."""
    if value is None:
        return "—"
    if field_name in MONEY_FIELDS:
        v = to_decimal(value)
        return f"{format_money(v, currency) if is_whole_units(v, currency) else f'{v.normalize():,f}'} {currency}"
    return str(value)


def display_values(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy of a table of changes (with ``field`` and ``currency``) whose ``columns`` of old / new values read as
    `display_value` shows them (``350.000 KWD`` for the stored ``350.000000``); empty cells stay empty."""
    out = frame.copy()
    for col in columns:
        out[col] = [display_value(f, v, c) if not pd.isna(v) else ""
                    for f, v, c in zip(out["field"], out[col], out["currency"])]
    return out


def diff_table(changes: Sequence[PlannedChange], checks: Sequence[CheckResult] | None = None,
               validations: dict[int, dict] | None = None) -> pd.DataFrame:
    """One row per change: entity, field, old -> new, change %, reason, confidence, and verdicts."""
    checks_by = {c.seq: c for c in checks or []}
    validations = validations or {}
    rows = []
    for c in changes:
        ck = checks_by.get(c.seq)
        va = validations.get(c.seq)
        pct = change_pct(c.old_value, c.new_value)
        rows.append({
            "seq": c.seq, "entity": c.entity_name or c.external_id, "entity_type": c.entity_type, "external_id": c.external_id,
            "field": c.field, "old": display_value(c.field, c.old_value, c.currency),
            "new": display_value(c.field, c.new_value, c.currency),
            "change_pct": None if pct is None else round(pct, 2), "reason": c.reason, "confidence": c.confidence,
            "auto_approve": c.auto_approve,
            "safety": "" if ck is None else ("ok" if ck.ok else "; ".join(ck.messages)),
            "validation": "" if va is None else ("ok" if va.get("ok") else f"{va.get('code') or ''} {va.get('message', '')}".strip()),
            "status": c.status,
        })
    cols = ["seq", "entity", "entity_type", "external_id", "field", "old", "new", "change_pct", "reason", "confidence",
            "auto_approve", "safety", "validation", "status"]
    return pd.DataFrame(rows, columns=cols)


def inverse_changes(changes: Sequence[PlannedChange], plan_id: int) -> list[PlannedChange]:
    """The rollback of the applied (and reduced) changes: the value written -> old, in reverse order, exact
    stored values. Executed, it too takes its decreases first (`core.funding`)."""
    applied = [c for c in changes if c.status in WRITTEN_STATUSES]
    out = []
    for i, c in enumerate(reversed(applied), start=1):
        if c.old_value is None:
            raise ChangePlanError(f"change {c.seq} ({c.external_id} {c.field}) has no old value to restore")
        out.append(PlannedChange(i, c.entity_type, c.external_id, c.entity_name, c.field, c.written_value, c.old_value,
                                 c.currency, f"rollback of plan #{plan_id} change {c.seq}", 100.0, False))
    return out


# ------------------------------------------------------------------------------ storage
def to_planned(row: Change) -> PlannedChange:
    """A stored change as the `PlannedChange` the funding, execution and rollback logic reads."""
    return PlannedChange(row.seq, row.entity_type, row.external_id, row.entity_name, row.field,
                         parse_value(row.field, row.old_value), parse_value(row.field, row.new_value), row.currency,
                         row.reason, row.confidence, row.auto_approve, row.status, row.id,
                         None if row.funded_value is None else parse_value(row.field, row.funded_value))


def add_event(session, plan: ChangePlan, to_status: str, actor: str, note: str = "", from_status: str | None = "keep") -> None:
    """Append an audit event (who, when, from -> to, note) in the caller's transaction."""
    session.add(PlanEvent(plan_id=plan.id, from_status=plan.status if from_status == "keep" else from_status,
                          to_status=to_status, actor=actor or "unknown", note=note))


def _store_plan(session, *, platform: str, account_id: str, changes: Sequence[PlannedChange], actor: str,
                settings: SafetySettings, name: str, origin: str, rollback_of_id: int | None, note: str) -> ChangePlan:
    plan = ChangePlan(name=name, platform=platform, account_id=account_id, status="draft", created_by=actor or "unknown",
                      origin=origin, rollback_of_id=rollback_of_id, settings=settings.to_dict(), preview={})
    session.add(plan)
    session.flush()
    session.add_all([Change(plan_id=plan.id, seq=c.seq, entity_type=c.entity_type, external_id=c.external_id,
                            entity_name=c.entity_name, field=c.field, old_value=format_value(c.old_value),
                            new_value=format_value(c.new_value), currency=c.currency, reason=c.reason,
                            confidence=c.confidence, auto_approve=c.auto_approve, status="pending") for c in changes])
    add_event(session, plan, "draft", actor, note, from_status=None)
    session.flush()
    return plan


@guarded(Role.ANALYST, "plan.create")
def create_plan(engine: Engine, workspace_id: str, drafts: Sequence[DraftChange], *, actor: str,
                settings: SafetySettings | None = None, name: str = "", origin: str = "optimizer") -> int:
    """Store a draft plan of ``drafts`` (one platform + account, one change per entity field); returns its id."""
    if not drafts:
        raise ChangePlanError("a change plan needs at least one change")
    if origin not in ("optimizer", "manual", "autopilot"):
        raise ChangePlanError("origin must be 'optimizer', 'manual' or 'autopilot' (rollbacks use create_rollback_plan), "
                              f"got {origin!r}")
    targets = {(d.platform, d.account_id) for d in drafts}
    if len(targets) > 1:
        raise ChangePlanError(f"one plan targets one account; these changes target {sorted(targets)}: split them by account")
    seen: dict[tuple, int] = {}
    planned = []
    for seq, d in enumerate(drafts, start=1):
        key = (d.entity_type, d.external_id, d.field)
        if key in seen:
            raise ChangePlanError(f"changes {seen[key]} and {seq} both set {d.field} of {d.entity_type} {d.external_id}")
        seen[key] = seq
        planned.append(_from_draft(seq, d))
    platform, account_id = targets.pop()
    with transaction(engine, workspace_id) as s:
        plan = _store_plan(s, platform=platform, account_id=account_id, changes=planned, actor=actor,
                           settings=settings or SafetySettings(), name=name or f"{len(planned)} changes on {platform}",
                           origin=origin, rollback_of_id=None, note=f"created with {len(planned)} changes")
        audit_target(f"plan #{plan.id}")
        return plan.id


#: A rollback plan's change settled its entity: restored (applied), found restored (unchanged), or left
#: alone because someone changed the entity since (stale at execution, changed_since at preview). A
#: ``reduced`` one (an increase sent smaller, `core.funding`) restored part: the rest is still to restore.
_ROLLBACK_SETTLED = ("applied", "unchanged", "stale")


@dataclass(frozen=True)
class RollbackState:
    """What became of rolling back one plan: its rollback plans and what is left to restore.

    ``rollbacks``: (rollback plan id, status), oldest first; ``open_rollback``: a rollback plan not yet
    executed (draft, previewed, approved or executing), if any; ``remaining``: applied changes that no
    executed rollback has settled yet.
    """

    plan_id: int
    applied: int
    rollbacks: tuple[tuple[int, str], ...]
    open_rollback: int | None
    remaining: int

    @property
    def can_roll_back(self) -> bool:
        """Whether a (further) rollback may be created: something left, and no rollback already open."""
        return self.remaining > 0 and self.open_rollback is None

    def describe(self) -> str:
        """One sentence for the History page ("" when the plan was never rolled back)."""
        if not self.rollbacks:
            return ""
        listed = ", ".join(f"#{pid} ({status.replace('_', ' ')})" for pid, status in self.rollbacks)
        if self.open_rollback is not None:
            return (f"A rollback of this plan is already open as plan #{self.open_rollback}: review, execute or cancel "
                    f"it on the Review page. Rollback plans: {listed}.")
        if self.remaining == 0:
            return f"This plan was rolled back by plan {listed}: nothing is left to roll back."
        return (f"This plan was partly rolled back by plan {listed}: {self.remaining} applied change(s) are not "
                "restored yet.")


def _settled_keys(session, plan_id: int) -> tuple[set, dict, list[tuple[int, str]], int | None]:
    """Of a plan's executed rollbacks: the entity-field keys they settled, the keys a reduced rollback change
    left part-way (key -> the value it sent, where a further rollback starts from), [(rollback id, status)],
    and the open rollback's id."""
    rollbacks = session.execute(select(ChangePlan.id, ChangePlan.status).where(ChangePlan.rollback_of_id == plan_id)
                                .order_by(ChangePlan.id)).all()
    settled, partly, open_id = set(), {}, None
    for rid, status in rollbacks:
        if status in ("draft", "previewed", "approved", "executing"):
            open_id = rid
            continue
        if status == "cancelled":
            continue
        rows = session.execute(select(Change.entity_type, Change.external_id, Change.field, Change.status,
                                      Change.error_code, Change.funded_value).where(Change.plan_id == rid)).all()
        for et, eid, f, st, code, funded in rows:
            if st in _ROLLBACK_SETTLED or code == "changed_since":
                settled.add((et, eid, f))
                partly.pop((et, eid, f), None)
            elif st == "reduced" and funded is not None:
                partly[(et, eid, f)] = parse_value(f, funded)
    return settled, partly, [(int(r), str(st)) for r, st in rollbacks], open_id


def rollback_state(engine: Engine, workspace_id: str, plan_id: int) -> RollbackState:
    """Whether ``plan_id`` was rolled back (by which plans), and what a further rollback could still restore."""
    with transaction(engine, workspace_id) as s:
        plan = s.get(ChangePlan, plan_id)
        if plan is None:
            raise ChangePlanError(f"plan {plan_id} does not exist in workspace {workspace_id}")
        settled, _, rollbacks, open_id = _settled_keys(s, plan_id)
        applied = [c for c in plan.changes if c.status in WRITTEN_STATUSES]
        remaining = sum(1 for c in applied if (c.entity_type, c.external_id, c.field) not in settled)
    return RollbackState(plan_id, len(applied), tuple(rollbacks), open_id, remaining)


def lock_plan(session, plan_id: int) -> None:
    """Hold the plan's row for the rest of the transaction, on SQLite and PostgreSQL alike: a no-op UPDATE as
    the transaction's first statement takes SQLite's write lock (before any read, so what is read after it
    is current) and PostgreSQL's row lock (READ COMMITTED: later reads see what the holder committed)."""
    session.execute(update(ChangePlan).where(ChangePlan.id == plan_id).values(status=ChangePlan.status)
                    .execution_options(synchronize_session=False))


@guarded(Role.APPROVER, "plan.rollback", target="plan #{plan_id}")
def create_rollback_plan(engine: Engine, workspace_id: str, plan_id: int, *, actor: str) -> int:
    """A new draft plan (origin "rollback") restoring the exact old values of ``plan_id``'s applied changes.

    It goes through the same preview and approval. Its safety settings keep the original bounds
    but lift the change-% limit and the total-increase cap, since it returns to values that were live.
    A plan is rolled back once: refused while a rollback of it is open, and only the changes no
    executed rollback settled are inverted (none left -> refused, saying which plan rolled it back).
    """
    with transaction(engine, workspace_id) as s:
        lock_plan(s, plan_id)  # two clicks at once: the second waits here, then finds the first one's rollback open
        plan = s.get(ChangePlan, plan_id)
        if plan is None:
            raise ChangePlanError(f"plan {plan_id} does not exist in workspace {workspace_id}")
        if plan.status not in FINAL_STATUSES - {"cancelled"}:
            raise ChangePlanError(f"plan {plan_id} is {plan.status}: only an executed plan can be rolled back")
        settled, partly, rollbacks, open_id = _settled_keys(s, plan_id)
        if open_id is not None:
            raise ChangePlanError(f"a rollback of plan {plan_id} is already open as plan #{open_id}: review, execute or "
                                  "cancel it instead of creating another")
        changes = [c for c in (to_planned(r) for r in plan.changes)
                   if (c.entity_type, c.external_id, c.field) not in settled]
        changes = [replace(c, new_value=sent, funded_value=sent) if (sent := partly.get((c.entity_type, c.external_id, c.field)))
                   is not None else c for c in changes]  # a reduced rollback left it here: restore the rest from there
        inverse = inverse_changes(changes, plan.id)
        if not inverse and rollbacks:
            done = ", ".join(f"#{rid} ({st.replace('_', ' ')})" for rid, st in rollbacks if st != "cancelled")
            raise ChangePlanError(f"plan {plan_id} was already rolled back by plan {done}: nothing is left to roll back")
        if not inverse:
            raise ChangePlanError(f"plan {plan_id} applied no change: nothing to roll back")
        original = SafetySettings.from_dict(plan.settings)
        settings = replace(original, max_change_pct=None, max_total_increase=None,
                           allow_status_changes=original.allow_status_changes or any(c.field == "status" for c in inverse),
                           min_budget=min([original.min_budget] + [c.new_value for c in inverse if c.field == "budget"]),
                           max_budget=None if original.max_budget is None else
                           max([original.max_budget] + [c.new_value for c in inverse if c.field == "budget"]))
        new = _store_plan(s, platform=plan.platform, account_id=plan.account_id, changes=inverse, actor=actor,
                          settings=settings, name=f"Rollback of #{plan.id} {plan.name}"[:300], origin="rollback",
                          rollback_of_id=plan.id, note=f"rollback of plan #{plan.id}: {len(inverse)} applied changes inverted")
        add_event(s, plan, plan.status, actor, f"rollback plan #{new.id} created")
        return new.id


@dataclass(frozen=True)
class PlanView:
    """A stored plan as read in one transaction (for pages and checks)."""

    id: int
    name: str
    platform: str
    account_id: str
    status: str
    origin: str
    rollback_of_id: int | None
    created_by: str
    created_at: dt.datetime
    content_hash: str
    settings: SafetySettings
    preview: dict
    changes: tuple[PlannedChange, ...]
    rows: tuple[dict, ...] = field(default=())  # per-change results (status, attempts, error, request id, response)
    events: tuple[dict, ...] = field(default=())

    def diff(self) -> pd.DataFrame:
        """The diff table with the frozen safety and validation verdicts and the execution results."""
        checks = [CheckResult(int(k), v["ok"], tuple(v.get("messages", ())), v.get("change_pct"))
                  for k, v in (self.preview.get("checks") or {}).items()]
        validations = {int(k): v for k, v in (self.preview.get("validations") or {}).items()}
        out = diff_table(self.changes, checks, validations)
        warnings = self.preview.get("warnings") or {}
        out["warning"] = [" ".join(warnings.get(str(q), [])) for q in out["seq"]]
        res = pd.DataFrame(list(self.rows), columns=["seq", "attempts", "error_code", "error_message", "request_id", "applied_at",
                                                     "funded_value"])
        res["funded_value"] = [None if r["funded_value"] is None else display_value(c.field, r["funded_value"], c.currency)
                               for r, c in zip(self.rows, self.changes)]
        return out.merge(res, on="seq", how="left") if len(out) else out


def load_plan(engine: Engine, workspace_id: str, plan_id: int) -> PlanView:
    """Read one plan with its changes, results and audit events."""
    with transaction(engine, workspace_id) as s:
        plan = s.get(ChangePlan, plan_id)
        if plan is None:
            raise ChangePlanError(f"plan {plan_id} does not exist in workspace {workspace_id}")
        return PlanView(
            plan.id, plan.name, plan.platform, plan.account_id, plan.status, plan.origin, plan.rollback_of_id,
            plan.created_by, plan.created_at, plan.content_hash, SafetySettings.from_dict(plan.settings), dict(plan.preview or {}),
            tuple(to_planned(c) for c in plan.changes),
            tuple({"seq": c.seq, "attempts": c.attempts, "error_code": c.error_code, "error_message": c.error_message,
                   "request_id": c.request_id, "applied_at": c.applied_at, "response": c.response,
                   "funded_value": c.funded_value} for c in plan.changes),
            tuple({"at": e.at, "from": e.from_status, "to": e.to_status, "actor": e.actor, "note": e.note} for e in plan.events),
        )


def plans_frame(engine: Engine, workspace_id: str) -> pd.DataFrame:
    """Every plan of the workspace with status, who, when and totals (newest first)."""
    P, C = ChangePlan, Change
    with transaction(engine, workspace_id) as s:
        plans = s.execute(select(P.id, P.name, P.platform, P.account_id, P.status, P.origin, P.rollback_of_id,
                                 P.created_by, P.created_at).order_by(P.id.desc())).all()
        counts = s.execute(select(C.plan_id, C.status, func.count()).group_by(C.plan_id, C.status)).all()
        money = s.execute(select(C.plan_id, C.field, C.old_value, C.new_value, C.status, C.currency, C.funded_value)
                          .where(C.field == "budget")).all()
        last = s.execute(select(PlanEvent.plan_id, PlanEvent.actor, PlanEvent.at, PlanEvent.to_status)
                         .order_by(PlanEvent.id)).all()
    cols = ["id", "name", "platform", "account_id", "status", "origin", "rollback_of_id", "created_by", "created_at"]
    df = pd.DataFrame(plans, columns=cols)
    df["rollback_of_id"] = df["rollback_of_id"].astype("Int64")
    cnt = pd.DataFrame(counts, columns=["plan_id", "status", "n"]).pivot_table(index="plan_id", columns="status", values="n",
                                                                              aggfunc="sum", fill_value=0)
    for st_ in CHANGE_STATUSES:
        df[f"n_{st_}"] = df["id"].map(cnt[st_]).fillna(0).astype(int) if st_ in cnt.columns else 0
    df["n_changes"] = df[[f"n_{s_}" for s_ in CHANGE_STATUSES]].sum(axis=1)
    m = pd.DataFrame(money, columns=["plan_id", "field", "old", "new", "status", "currency", "funded"])
    if len(m):
        # summed as Decimal, converted once: float sums of cents leave -5.6e-17 on a budget-neutral plan ("-0.00")
        m["delta"] = m["new"].map(to_decimal) - m["old"].map(lambda v: to_decimal(v) if v is not None else Decimal(0))
        m["written"] = m["funded"].where(m["funded"].notna(), m["new"]).map(to_decimal) - m["old"].map(
            lambda v: to_decimal(v) if v is not None else Decimal(0))

        def net(rows: pd.DataFrame) -> pd.Series:
            return rows.groupby("plan_id")["delta"].agg(lambda d: float(sum(d, Decimal(0))))

        df["budget_delta"] = df["id"].map(net(m)).fillna(0.0).astype(float)
        written = m[m["status"].isin(WRITTEN_STATUSES)].assign(delta=lambda x: x["written"])
        df["applied_budget_delta"] = df["id"].map(net(written)).fillna(0.0).astype(float)
        # the currency the budget deltas are in (a plan targets one account; several would be named, never summed away)
        currencies = m.assign(currency=m["currency"].str.upper()).groupby("plan_id")["currency"].agg(
            lambda c: "/".join(sorted(set(c))))
        df["budget_currency"] = df["id"].map(currencies).fillna("")
    else:
        df["budget_delta"] = 0.0
        df["applied_budget_delta"] = 0.0
        df["budget_currency"] = ""
    ev = pd.DataFrame(last, columns=["plan_id", "actor", "at", "to_status"])
    for what, status in (("approved", "approved"), ("executed", "executing")):
        sub = ev[ev["to_status"] == status].groupby("plan_id").last()
        df[f"{what}_by"] = df["id"].map(sub["actor"]) if len(sub) else None
        df[f"{what}_at"] = df["id"].map(sub["at"]) if len(sub) else None
    upd = ev.groupby("plan_id")["at"].max() if len(ev) else pd.Series(dtype=object)
    df["updated_at"] = df["id"].map(upd) if len(ev) else None
    return df


def changes_frame(engine: Engine, workspace_id: str, plan_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Changes of the given plans (all when None) with their results and platform responses."""
    C = Change
    stmt = select(C.plan_id, C.seq, C.entity_type, C.external_id, C.entity_name, C.field, C.old_value, C.new_value,
                  C.currency, C.reason, C.confidence, C.status, C.attempts, C.error_code, C.error_message, C.request_id,
                  C.applied_at, C.funded_value, C.response).order_by(C.plan_id.desc(), C.seq)
    if plan_ids is not None:
        stmt = stmt.where(C.plan_id.in_(list(plan_ids)))
    with transaction(engine, workspace_id) as s:
        rows = s.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["plan_id", "seq", "entity_type", "external_id", "entity_name", "field", "old_value",
                                     "new_value", "currency", "reason", "confidence", "status", "attempts", "error_code",
                                     "error_message", "request_id", "applied_at", "funded_value", "response"])
    df["response"] = df["response"].map(lambda r: json.dumps(r, sort_keys=True, default=str) if r else "")
    return df
