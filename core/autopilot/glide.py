"""Staged changes: a move larger than the step limit becomes a glide path of steps, one step per cooldown.

`stage` decides, for every budget / bid the optimizer wants to move, what today's plan carries: the
whole move (within the step limit), its first step (beyond it), or nothing, with the reason:

* an entity in its learning phase is held (policy "hold") or moved by at most `learning_cap_pct`;
* the next step waits for the cooldown since the entity's last change (default 3 days);
* it waits too while the entity's last measured outcome contradicts the plan (worse than predicted
  after a move in the same direction): the path stops for a person to look.

The path itself (`GlidePath` rows) records the start, every step (value, plan, change, status), the
target and when the next step is due; a later run moves it on or replaces it when the optimizer's
target moves the other way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.changes import DraftChange
from core.guardrails import Guardrails
from core.money import format_money, money_step, to_decimal
from core.store.db import transaction
from core.store.models import Change, GlidePath, utcnow


def _step_value(value: Decimal, pct: float, up: bool, currency: str, platform: str | None = None) -> Decimal:
    """``value`` moved by ``pct`` percent, rounded toward ``value`` to the currency's step on ``platform``
    (`core.money.money_step`: 0.01 USD, 1 JPY, 0.001 KWD), never beyond the limit."""
    unit = money_step(currency, platform)
    factor = Decimal(str(1 + pct / 100 if up else 1 - pct / 100))
    return (value * factor).quantize(unit, rounding=ROUND_FLOOR if up else ROUND_CEILING)


def path_values(current: Decimal, target: Decimal, step_pct: float, currency: str = "USD",
                platform: str | None = None) -> list[Decimal]:
    """The values from ``current`` (excluded) to ``target`` (included), each step at most ``step_pct`` percent.

    >>> [str(v) for v in path_values(Decimal("100"), Decimal("140"), 20)]
    ['120.00', '140']
    >>> [str(v) for v in path_values(Decimal("100"), Decimal("60"), 20)]
    ['80.00', '64.00', '60']
    """
    current, target = to_decimal(current), to_decimal(target)
    if current <= 0:
        return [target]
    up = target > current
    out, v = [], current
    for _ in range(200):  # a path longer than this would need a step of well under a percent
        if abs(float(target / v) - 1) * 100 <= step_pct + 1e-9:
            break
        nxt = _step_value(v, step_pct, up, currency, platform)
        if nxt == v:
            break
        out.append(nxt)
        v = nxt
    out.append(target)
    return out


@dataclass(frozen=True)
class Decision:
    """What today's plan does with one move the optimizer asked for."""

    draft: DraftChange  # the optimizer's move (old -> target)
    action: str  # "propose" | "hold"
    new_value: Decimal | None  # today's value (the first step, or the target)
    path: tuple[Decimal, ...]  # the remaining path after today's value is set, excluding it
    note: str  # why held, or which step this is
    step_pct: float
    next_due: dt.date | None = None

    @property
    def key(self) -> str:
        return f"{self.draft.entity_type}:{self.draft.external_id}:{self.draft.field}"

    def as_draft(self) -> DraftChange:
        """Today's change: the step, with the path in its reason."""
        d = self.draft
        from dataclasses import replace

        return replace(d, new_value=self.new_value, reason=f"{d.reason} — {self.note}" if self.note else d.reason)


@dataclass(frozen=True)
class History:
    """What staging needs to know about the account besides the moves."""

    learning: Mapping[str, str] = field(default_factory=dict)  # "entity_type:external_id" -> learning status
    last_change: Mapping[str, dt.date] = field(default_factory=dict)  # "entity_type:external_id:field" -> day
    contradicted: Mapping[str, str] = field(default_factory=dict)  # "entity_type:external_id:field" -> reason


def stage(drafts: Sequence[DraftChange], limits: Guardrails, today: dt.date, history: History) -> list[Decision]:
    """Today's decision for each budget / bid move in ``drafts`` (status changes pass through unchanged)."""
    out = []
    for d in drafts:  # one per entity the optimizer moves (tens)
        if d.field == "status":
            out.append(Decision(d, "propose", d.new_value, (), "", 0.0))
            continue
        old, target = to_decimal(d.old_value), to_decimal(d.new_value)
        ent = f"{d.entity_type}:{d.external_id}"
        key = f"{ent}:{d.field}"
        step = float(limits.step_limit_pct)
        learning = history.learning.get(ent)
        if learning and limits.learning_policy == "hold":
            out.append(Decision(d, "hold", None, tuple(path_values(old, target, step, d.currency, d.platform)),
                                f"held: in its learning phase ({learning}); no change until the platform reports it has "
                                "left learning", step))
            continue
        if learning:
            step = float(limits.learning_cap_pct)
        last = history.last_change.get(key)
        cool = limits.cooldown_days(d.field)
        if last is not None and (today - last).days < cool:
            due = last + dt.timedelta(days=int(-(-cool // 1)))
            out.append(Decision(d, "hold", None, tuple(path_values(old, target, step, d.currency, d.platform)),
                                f"cooldown: last change on {last}; the next step is due on {due}", step, due))
            continue
        why = history.contradicted.get(key)
        if why:
            out.append(Decision(d, "hold", None, tuple(path_values(old, target, step, d.currency, d.platform)),
                                f"stopped: the last change's measured outcome contradicts the plan ({why}); "
                                "review it before the next step", step))
            continue
        path = path_values(old, target, step, d.currency, d.platform)
        due = today + dt.timedelta(days=int(-(-cool // 1)))
        if len(path) == 1:
            note = "" if not learning else f"within the learning-phase cap of {step:g}% ({learning})"
            out.append(Decision(d, "propose", path[0], (), note, step))
        else:
            pct = float(path[0] / old - 1) * 100
            note = (f"step 1 of {len(path)} toward {format_money(target, d.currency)} ({pct:+.0f}% now; step limit {step:g}%"
                    + (f", capped in the learning phase ({learning})" if learning else "")
                    + f"); the next step is due on {due} if the measured outcome so far does not contradict the plan")
            out.append(Decision(d, "propose", path[0], tuple(path[1:]), note, step, due))
    return out


def restate_steps(decisions: Sequence[Decision], rec, threshold: float, policy) -> list[Decision]:
    """Each staged budget move with the confidence of the step it takes today, not of its whole path.

    The autopilot executes only the first step; on a concave curve a step part-way toward a target
    that pays gains at least its share of the target's gain, so the step is at least as likely to pay
    and usually more (it also stays nearer the evidence). Its confidence is assessed like any change
    (`core.optimize.confidence.assess_budget_changes`: the same draws, hurdle, fit and extrapolation
    caps), and ``auto_approve`` follows from it. ``rec`` is the run's `Recommendations`, ``policy`` its
    `ConfidencePolicy`."""
    from dataclasses import replace

    import numpy as np

    from core.optimize.confidence import assess_budget_changes

    staged = [i for i, d in enumerate(decisions) if d.action == "propose" and d.draft.field == "budget"
              and d.path and d.new_value is not None]
    if not staged or rec.assessment is None or not np.isfinite(rec.hurdle):
        return list(decisions)
    table = rec.budget_table
    row = {(r.platform, r.entity_type, r.external_id): i for i, r in
           enumerate(table[["platform", "entity_type", "external_id"]].itertuples(index=False))}
    old = table["current_budget"].to_numpy(float)
    new = table["new_budget"].to_numpy(float).copy()
    at = {}
    for i in staged:
        d = decisions[i].draft
        j = row.get((d.platform, d.entity_type, d.external_id))
        if j is not None and float(to_decimal(d.old_value)) == old[j]:
            new[j] = float(decisions[i].new_value)
            at[i] = j
    if not at:
        return list(decisions)
    step = assess_budget_changes(rec.curves, old, new, rec.hurdle, policy=policy)
    conf = step.table["confidence"].to_numpy(float)
    out = list(decisions)
    for i, j in at.items():
        c = round(float(conf[j]), 1) if np.isfinite(conf[j]) else 0.0
        d = decisions[i]
        whole = d.draft.confidence
        note = f"{d.note}; confidence {c:.0f} for today's step ({whole:.0f} for the whole move)"
        out[i] = replace(d, draft=replace(d.draft, confidence=c, auto_approve=bool(c >= threshold)), note=note)
    return out


# ------------------------------------------------------------------------------ stored paths
def _direction(start: Decimal, target: Decimal) -> int:
    return 1 if target > start else -1


@guarded(Role.ANALYST, "autopilot.glide", audit=False)
def record_paths(engine: Engine, workspace_id: str, platform: str, account_id: str, decisions: Sequence[Decision],
                 proposed: Mapping[str, tuple[int, int]], today: dt.date, *, schedule_id: int | None = None,
                 cooldown: Mapping[str, float] | None = None, actor: str | None = None) -> None:
    """Bring the account's glide paths up to date with today's decisions.

    ``proposed`` maps a decision key to the (plan id, change id) that carries today's step. A move in
    the other direction, or within one step, supersedes an active path; a multi-step move starts one
    or continues it (its target follows the optimizer's latest); entities the optimizer no longer
    moves complete their path.
    """
    now = utcnow()
    by_key = {d.key: d for d in decisions if d.draft.field != "status"}
    with transaction(engine, workspace_id) as s:
        active = {f"{p.entity_type}:{p.external_id}:{p.field}": p for p in s.scalars(
            select(GlidePath).where(GlidePath.platform == platform, GlidePath.account_id == account_id,
                                    GlidePath.status == "active"))}
        for key, p in active.items():
            if key not in by_key:
                p.status, p.note, p.updated_at = "completed", (
                    f"{today}: the optimizer no longer asks to move it (at or near its target)"), now
        for key, d in by_key.items():
            p = active.get(key)
            start, target = to_decimal(d.draft.old_value), to_decimal(d.draft.new_value)
            if p is not None and _direction(to_decimal(p.start_value), to_decimal(p.target_value)) != _direction(start, target):
                p.status, p.note, p.updated_at = "superseded", f"{today}: the optimizer's target moved the other way", now
                p = None
            step_here = proposed.get(key)
            multi = len(d.path) > 0 or (d.action == "hold" and len(d.path) > 1)
            if p is None and not multi:
                continue
            if p is None:
                p = GlidePath(platform=platform, account_id=account_id, entity_type=d.draft.entity_type,
                              external_id=d.draft.external_id, entity_name=d.draft.entity_name, field=d.draft.field,
                              currency=d.draft.currency, start_value=str(start), target_value=str(target),
                              step_pct=d.step_pct, cooldown_days=float((cooldown or {}).get(d.draft.field, 3.0)),
                              status="active", steps=[], schedule_id=schedule_id)
                s.add(p)
            done = [x for x in (p.steps or []) if x.get("status") not in ("planned",)]
            new_steps = list(done)
            if step_here is not None:
                new_steps.append({"value": str(d.new_value), "status": "proposed", "plan_id": step_here[0],
                                  "change_id": step_here[1], "day": today.isoformat()})
                rest = list(d.path)
            else:
                rest = list(d.path)
            due = d.next_due
            for i, v in enumerate(rest):
                new_steps.append({"value": str(v), "status": "planned",
                                  "due": due.isoformat() if (due is not None and i == 0) else None})
            p.steps = new_steps
            p.target_value = str(target)
            p.step_pct = d.step_pct
            p.note = d.note if d.action == "hold" else (f"{today}: step proposed" if step_here else d.note)
            p.updated_at = now
            if step_here is not None and not rest:
                p.note = f"{today}: last step proposed"


@guarded(Role.ANALYST, "autopilot.glide", audit=False)
def refresh_paths(engine: Engine, workspace_id: str, *, actor: str | None = None) -> None:
    """Copy each proposed step's change status (applied, failed, blocked, waiting) into its path; a path
    whose last step was applied is completed."""
    with transaction(engine, workspace_id) as s:
        paths = list(s.scalars(select(GlidePath).where(GlidePath.status == "active")))
        ids = [x["change_id"] for p in paths for x in (p.steps or []) if x.get("change_id")]
        status = dict(s.execute(select(Change.id, Change.status).where(Change.id.in_(ids))).all()) if ids else {}
        for p in paths:
            steps = []
            for x in p.steps or []:
                x = dict(x)
                if x.get("change_id") in status:
                    st = status[x["change_id"]]
                    x["status"] = {"pending": "waiting for review", "applying": "executing"}.get(st, st)
                steps.append(x)
            p.steps = steps
            if steps and steps[-1].get("status") == "applied":
                p.status, p.note = "completed", "target reached"


def paths_frame(engine: Engine, workspace_id: str, change_ids: Sequence[int] | None = None):
    """Glide paths (all, or those carrying one of ``change_ids``) with start, steps, target and next due day."""
    import pandas as pd

    with transaction(engine, workspace_id) as s:
        rows = list(s.scalars(select(GlidePath).order_by(GlidePath.id.desc())))
        out = []
        for p in rows:
            carried = {x.get("change_id") for x in (p.steps or [])}
            if change_ids is not None and not carried & set(change_ids):
                continue
            planned = [x for x in p.steps or [] if x.get("status") == "planned"]
            out.append({"path_id": p.id, "entity": p.entity_name or p.external_id, "external_id": p.external_id,
                        "entity_type": p.entity_type, "field": p.field, "start": p.start_value, "target": p.target_value,
                        "steps": " → ".join(f"{format_money(x['value'], p.currency)} ({x.get('status')})" for x in p.steps or []),
                        "next_due": planned[0].get("due") if planned else None, "step_pct": p.step_pct,
                        "status": p.status, "note": p.note, "change_ids": sorted(c for c in carried if c)})
    return pd.DataFrame(out, columns=["path_id", "entity", "external_id", "entity_type", "field", "start", "target", "steps",
                                      "next_due", "step_pct", "status", "note", "change_ids"])


def balance(drafts: Sequence[DraftChange], min_change: float = 0.02) -> tuple[list[DraftChange], list[tuple[DraftChange, str]]]:
    """Today's budget steps scaled so raises and cuts cancel out: the total daily budget stays where it is.

    The optimizer splits a fixed total; when only part of its moves can go today (the rest wait for
    review, a cooldown or the learning phase), executing that part alone would drift the total. The
    larger side (raises or cuts) is scaled down to the smaller one; a step that becomes smaller than
    ``min_change`` of its budget waits (returned with the reason). Bids and statuses pass unchanged.
    """
    budget = [d for d in drafts if d.field == "budget"]
    other = [d for d in drafts if d.field != "budget"]
    up = sum((to_decimal(d.new_value) - to_decimal(d.old_value) for d in budget if to_decimal(d.new_value) > to_decimal(d.old_value)),
             Decimal(0))
    down = sum((to_decimal(d.old_value) - to_decimal(d.new_value) for d in budget if to_decimal(d.new_value) < to_decimal(d.old_value)),
               Decimal(0))
    if up == down:
        return list(drafts), []
    from dataclasses import replace

    raise_side = up > down
    factor = (down / up) if raise_side else (up / down)
    kept, held = list(other), []
    for d in budget:
        old, new = to_decimal(d.old_value), to_decimal(d.new_value)
        if (new > old) != raise_side:
            kept.append(d)
            continue
        unit = money_step(d.currency, d.platform)
        scaled = (old + (new - old) * factor).quantize(unit, rounding=ROUND_FLOOR if new > old else ROUND_CEILING)
        if abs(scaled - old) < Decimal(str(min_change)) * old or scaled == old:
            held.append((d, f"kept back to hold the total daily budget: the {'cuts' if raise_side else 'raises'} "
                            "that would pay for it wait (review, cooldown or learning phase)"))
            continue
        kept.append(replace(d, new_value=scaled, reason=f"{d.reason} — scaled to {format_money(scaled, d.currency)} so today's raises and cuts "
                                                         "cancel out (the total daily budget stays)"))
    return kept, held
