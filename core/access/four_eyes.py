"""Four-eyes approval: a plan that moves much money needs an approver other than its author.

A plan *exceeds* the workspace's thresholds when the sum of its absolute daily budget changes is above
``total``, or any single budget or bid change is above ``single`` (currency units of the plan's account),
or it pauses or activates anything (that switches a whole budget off or on). Thresholds of ``None`` turn
the rule off; the default, 0, asks a second person for every plan once people sign in.

Who is exempt: the local user of single-user mode (there is no second person), and a schedule approving
its own plan under auto-execute, which an admin switched on within the workspace's guardrails (the
audit log names both the schedule and that admin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from core.store.access_models import WorkspaceAccess
from core.store.db import transaction
from core.store.models import utcnow

from .guard import as_actor, guarded
from .roles import AccessDenied, AccessError, Actor, Role


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


@dataclass(frozen=True)
class FourEyes:
    """The workspace's thresholds (daily budget, currency units); None = that rule is off."""

    total: Decimal | None = Decimal(0)
    single: Decimal | None = Decimal(0)

    def __post_init__(self):
        for name in ("total", "single"):
            v = getattr(self, name)
            if v is not None:
                try:
                    v = Decimal(str(v))
                except ArithmeticError:
                    raise AccessError(f"four-eyes {name} threshold must be an amount, got {v!r}") from None
                if not v.is_finite() or v < 0:
                    raise AccessError(f"four-eyes {name} threshold must be 0 or more (or empty for off), got {v}")
                object.__setattr__(self, name, v)

    @property
    def off(self) -> bool:
        return self.total is None and self.single is None

    def describe(self) -> str:
        if self.off:
            return "off: an approver may approve their own plans"
        parts = []
        if self.total is not None:
            parts.append(f"total budget change above {_fmt(self.total)}" if self.total else "any budget change")
        if self.single is not None:
            parts.append(f"a single change above {_fmt(self.single)}" if self.single else "any single change")
        return "a second person must approve plans with " + " or ".join(parts) + ", and any pause or activation"


def load_four_eyes(engine, workspace_id: str) -> FourEyes:
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(WorkspaceAccess))
        return FourEyes() if row is None else FourEyes(row.four_eyes_total, row.four_eyes_single)


@guarded(Role.ADMIN, "access.four_eyes")
def set_four_eyes(engine, workspace_id: str, policy: FourEyes, *, actor: Actor | str | None = None) -> None:
    """Store the workspace's four-eyes thresholds."""
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(WorkspaceAccess))
        if row is None:
            row = WorkspaceAccess()
            s.add(row)
        row.four_eyes_total, row.four_eyes_single = policy.total, policy.single
        row.updated_by, row.updated_at = str(actor), utcnow()


def exposure(changes: Sequence) -> dict:
    """What a plan moves: ``total`` = sum of |budget change|, ``single`` = largest |budget or bid change|,
    ``status`` = number of pauses / activations. ``changes`` carry field, old_value, new_value."""
    total, single, status = Decimal(0), Decimal(0), 0
    for c in changes:
        if c.field == "status":
            status += 1
            continue
        if not isinstance(c.new_value, Decimal):
            continue
        delta = abs(c.new_value - (c.old_value if isinstance(c.old_value, Decimal) else Decimal(0)))
        single = max(single, delta)
        if c.field == "budget":
            total += delta
    return {"total": total, "single": single, "status": status}


def second_person_reason(policy: FourEyes, changes: Sequence) -> str | None:
    """Why the plan needs an approver other than its author under ``policy``, or None."""
    if policy.off:
        return None
    e = exposure(changes)
    if policy.total is not None and e["total"] > policy.total:
        return f"its budget changes add up to {_fmt(e['total'])} a day (four-eyes threshold {_fmt(policy.total)})"
    if policy.single is not None and e["single"] > policy.single:
        return f"one change moves {_fmt(e['single'])} (four-eyes threshold {_fmt(policy.single)} per change)"
    if e["status"]:
        return f"it pauses or activates {e['status']} entit{'y' if e['status'] == 1 else 'ies'}"
    return None


def same_person(author: str, actor: Actor) -> bool:
    """Whether the plan's author (its stored label) is the acting person."""
    a = str(author or "").strip().lower()
    return bool(a) and a in {str(actor).strip().lower(), (actor.person.email or "").lower(),
                             str(actor.person).strip().lower()}


def applies_to(approver: Actor | str | None) -> bool:
    """Whether the four-eyes rule can bind ``approver``: not the local user of single-user mode, who has no
    second person to ask (the Access page says so beside the rule)."""
    return as_actor(approver).kind != "local"


def check_four_eyes(engine, workspace_id: str, *, plan_id: int, author: str, changes: Sequence,
                    approver: Actor | str | None) -> None:
    """Refuse (`AccessDenied`) an approval by the plan's own author when the plan exceeds the thresholds."""
    approver = as_actor(approver)
    if not applies_to(approver):
        return
    if approver.kind == "autopilot" and str(author) == str(approver):
        return  # a schedule's own plan under auto-execute, switched on by an admin (the log names both)
    if not same_person(author, approver):
        return
    reason = second_person_reason(load_four_eyes(engine, workspace_id), changes)
    if reason:
        raise AccessDenied(f"plan #{plan_id} needs approval by someone other than its author {author}: {reason}",
                           required=Role.APPROVER, workspace=workspace_id, actor=str(approver))


__all__ = ["FourEyes", "applies_to", "approval_refusal", "check_four_eyes", "exposure", "load_four_eyes", "same_person", "second_person_reason",
           "set_four_eyes"]


def approval_refusal(engine, workspace_id: str, *, plan_id: int, author: str, changes: Sequence,
                     approver: Actor | str | None) -> str | None:
    """Why ``approver`` may not approve this plan (role or four-eyes), or None; for automatic approvals,
    which wait for a person instead of failing."""
    from .guard import require

    try:
        require(engine, workspace_id, approver, Role.APPROVER, action="plan.approve")
        check_four_eyes(engine, workspace_id, plan_id=plan_id, author=author, changes=changes, approver=approver)
    except AccessDenied as exc:
        return str(exc)
    return None
