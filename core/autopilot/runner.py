"""One autopilot run: sync, measure, refit, optimize, stage, plan, (auto-)execute, summarize, notify.

`run_schedule` does one run of one schedule:

1. the kill switch is on -> the run is recorded as skipped and nothing else happens;
2. the account is synced (entities with their learning state, daily performance);
3. earlier changes get their measured outcome (`outcomes.evaluate_outcomes`);
4. the response curves are refitted, recent days weighted (more so after an outcome fell outside its band);
5. `core.optimize.recommend` proposes targets with the schedule's saved settings;
6. `glide.stage` turns them into today's steps (step limit, cooldown, learning phase, contradicting outcomes);
7. a draft plan is written; with auto-execute on, the changes that pass every guardrail and reach the
   confidence threshold go into a plan of their own that is previewed, approved and executed at once,
   and the rest wait for review in a previewed plan. Every step of the audit log names the schedule;
8. the executed changes store their predictions; the glide paths are updated; the summary is stored
   with the run and sent by e-mail / webhook.

`run_due` runs every due schedule (the cron entry point); `dry_run=True` computes the same proposal and
summary but writes no plan, executes nothing and claims no slot.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from core import funding
from core.access import Actor, Role, guarded, may, require
from core.changes import ChangePlanError, create_plan, display_value, load_plan, parse_value
from core.guardrails import (
    ChangeView,
    account_today,
    check_changes,
    Guardrails,
    kill_switch_reason,
    latest_change_days,
    learning_states,
    load_guardrails,
    looser_fields,
)
from core.store.models import utcnow
from core.redact import redact_text

from . import glide, outcomes
from .notify import NotifyConfig, deliver
from .schedules import (
    RunClaimed,
    Schedule,
    claim_run,
    close_abandoned_runs,
    due_schedules,
    finish_run,
    load_schedule,
)

PlatformFactory = Callable[[Schedule], object]


@dataclass
class RunResult:
    """What one run did: its row (None for a dry run), status, plans, and the summary it sent."""

    schedule_id: int
    run_id: int | None
    status: str
    plan_ids: list[int] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    dry_run: bool = False


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def schedule_actor(schedule: Schedule) -> Actor:
    """Who every step of a schedule acts as: the schedule, for the admin who switched auto-execute on (else its
    owner), whose current role is what counts; the audit log names both."""
    return Actor.autopilot(schedule_id=schedule.id, schedule_name=schedule.name, on_behalf_of=schedule.authority)


def auto_execute_refusal(engine: Engine, workspace_id: str, schedule: Schedule, actor: Actor,
                         limits: Guardrails) -> str | None:
    """Why this run may not execute anything by itself (its changes then wait for review), or None: the admin
    who switched auto-execute on must still be an approver, and the guardrails no looser than they agreed to."""
    if not schedule.auto_execute:
        return None
    who = schedule.authority or "the local user"
    if not may(engine, workspace_id, actor, Role.APPROVER):
        return (f"auto-execute was switched on by {who}, who is no longer an approver of this workspace: "
                "every change waits for review")
    if schedule.auto_execute_guardrails:
        looser = looser_fields(limits, Guardrails.from_dict(schedule.auto_execute_guardrails))
        if looser:
            return (f"the guardrails were loosened ({', '.join(looser)}) since {who} switched auto-execute on: every "
                    "change waits for review until an admin switches it on again")
    return None


def default_platform(engine: Engine, workspace_id: str, secrets=None) -> PlatformFactory:
    """Platforms for schedules: the sandbox, or Meta / Google with credentials from ``secrets`` / environment."""
    from core.platforms.registry import get_platform

    def make(schedule: Schedule):
        if schedule.platform == "sandbox":
            return get_platform("sandbox", engine, workspace_id, account_id=schedule.account_id)
        from core.platforms.credentials import discover

        creds = getattr(discover(secrets, os.environ), schedule.platform, None)
        if creds is None:
            raise ChangePlanError(f"{schedule.platform} is not connected: add its credentials (secrets or environment)")
        return get_platform(schedule.platform, engine, workspace_id, credentials=creds)

    return make


# ------------------------------------------------------------------------------ the optimization
def _optimize(engine: Engine, workspace_id: str, schedule: Schedule, platform, half_life: float):
    """(recommendations, performance, confidence policy) for the account with the schedule's settings."""
    from core.optimize import session as S
    from core.optimize.recommend import policy_for, recommend
    from core.optimize.settings import AccountState, FixedBudget, RecommendSettings
    from core.response import fit_curves

    st = schedule.settings
    source = next((d for d in S.list_sources(engine, workspace_id)
                   if d.kind == "sync" and d.platform == platform.name and d.account_id == platform.account_id), None)
    if source is None:
        raise ChangePlanError(f"{platform.name} account {platform.account_id} has no synced performance")
    perf = S.load_performance(engine, workspace_id, source.dataset_id)
    ents = S.entity_state(engine, workspace_id, source)
    currencies = S.source_currencies(engine, workspace_id, source)
    if len(currencies) > 1:
        perf, _, ents = S.filter_to_currency(perf, str(currencies.index[0]), None, ents)
    curves = fit_curves(perf, st.curve_model, half_life_days=half_life)
    live = ents if not ents.empty else None
    total = st.total_budget
    if st.objective == "cap" and total is None:  # capped at today's campaign budgets
        total = float(sum(float(b) for b in ents.loc[ents["entity_type"] == "campaign", "daily_budget"].dropna()))
    objective, guide = S.page_objective(st.objective, float(total or 0.0), st.target_roas, st.marginal_floor)
    if st.objective == "value" and total is None:
        objective = FixedBudget()  # today's total
    settings = RecommendSettings(max_change=st.max_change, min_change=st.min_change, confidence_threshold=st.confidence_threshold,
                                 guide_roas=guide, curve_model=st.curve_model, n_draws=st.n_draws)
    account = AccountState(budgets=live, bids=live if st.include_bids else None, statuses=live)
    rec = recommend(perf, objective, settings=settings, account=account, curves=curves)
    return rec, perf, policy_for(settings)


def _contradicted(engine: Engine, workspace_id: str, platform: str, account_id: str, drafts) -> dict[str, str]:
    """key -> why, for moves whose entity's last measured change went the same way and did worse than predicted."""
    from core.store.db import transaction
    from sqlalchemy import select

    from core.store.models import ChangePlan

    with transaction(engine, workspace_id) as s:
        plans = list(s.scalars(select(ChangePlan.id).where(ChangePlan.platform == platform,
                                                           ChangePlan.account_id == account_id)))
    df = outcomes.outcomes_frame(engine, workspace_id, plans)
    df = df[df["verdict"].isin(["as predicted", "better", "worse"])].sort_values("first_day")
    last = df.groupby(["entity_type", "external_id", "field"]).tail(1)
    out = {}
    want = {f"{d.entity_type}:{d.external_id}:{d.field}": d for d in drafts if d.field != "status"}
    for r in last.itertuples(index=False):
        key = f"{r.entity_type}:{r.external_id}:{r.field}"
        d = want.get(key)
        if d is None or r.verdict != "worse":
            continue
        went_up = parse_value(r.field, r.new) > parse_value(r.field, r.old)
        goes_up = parse_value(d.field, d.new_value) > parse_value(d.field, d.old_value)
        if went_up == goes_up:
            out[key] = r.reason
    return out


def _item(d, text: str) -> dict:
    return {"entity": d.entity_name or d.external_id, "external_id": d.external_id, "field": d.field,
            "old": None if d.old_value is None else str(d.old_value), "new": None if d.new_value is None else str(d.new_value),
            "currency": d.currency, "text": text}


def _move(d) -> str:
    """"entity field old -> new", money in the account's currency at its precision (1,234.500 KWD -> 1,300.000 KWD)."""
    return (f"{d.entity_name or d.external_id} {d.field} {display_value(d.field, d.old_value, d.currency)} -> "
            f"{display_value(d.field, d.new_value, d.currency)}")


def _key(d) -> tuple[str, str, str]:
    return d.entity_type, d.external_id, d.field


def _executable(engine: Engine, workspace_id: str, platform, drafts, state, today: dt.date, now: dt.datetime, *,
                auto_execute: bool, hold_total: bool, min_change: float):
    """(changes to execute now, kept back with why, guardrail hits by key) for today's staged drafts.

    The guardrails judge what would really execute: the changes that reach the threshold, balanced so
    today's raises and cuts cancel out when the total is held (`glide.balance`). Judging every draft
    at once, changes that wait for review included, would count raises that never go (an account
    ceiling breached on paper) and block the ones that would. A change a guardrail stops waits for
    review with its reason; the rest are balanced again without it. The drafts left for review are
    judged together as their own plan, as its preview will judge them.
    """
    def judge(changes) -> dict[tuple, list[str]]:
        if not changes:
            return {}
        views = [ChangeView(i, x.entity_type, x.external_id, x.field, parse_value(x.field, x.old_value),
                            parse_value(x.field, x.new_value), x.currency) for i, x in enumerate(changes, start=1)]
        found = check_changes(engine, workspace_id, platform.name, platform.account_id, views, today=today, now=now,
                              origin="autopilot", state=state)
        return {_key(x): found.get(i) or [] for i, x in enumerate(changes, start=1)}

    hits: dict[tuple, list[str]] = {}
    kept_back: list = []
    going = [x for x in drafts if x.auto_approve and x.field != "status" and auto_execute]
    for _ in range(len(going) + 1):  # each round drops at least one change (a few dozen at most)
        if hold_total and going:
            going, held = glide.balance(going, min_change)
            kept_back += held
        found = judge(going)
        stopped = {k for k, v in found.items() if v}
        if not stopped:
            break
        hits.update({k: found[k] for k in stopped})
        going = [x for x in going if _key(x) not in stopped]
    settled = {_key(x) for x in going} | {_key(d) for d, _ in kept_back}
    rest = [x for x in drafts if _key(x) not in settled and _key(x) not in hits]
    hits.update({k: v for k, v in judge(rest).items() if v})
    return going, kept_back, hits


def _finish_interrupted(engine: Engine, workspace_id: str, platform, actor: Actor, auto_execute: bool,
                        notes: list[str], *, dry_run: bool = False) -> None:
    """Resume this account's auto-executed plans whose runner died mid-execution, before anything else.

    Such a plan is balanced (raises paid for by cuts): left half-done, the account spends more (or less)
    every day, and the next optimization would take the drifted total for the intended one. Resuming
    settles each open change from its live value (never sent twice; changed by someone since -> stale), and
    funds the increases only from the decreases that applied (`core.funding`): never above the approved total.
    With auto-execute off or suspended, a person decides: the run only says so.
    """
    from core import execute as ex

    for pid in ex.interrupted_plans(engine, workspace_id, older_than=ex.LEASE):
        view = load_plan(engine, workspace_id, pid)
        if view.origin != "autopilot" or (view.platform, view.account_id) != (platform.name, platform.account_id):
            continue
        if dry_run:
            notes.append(f"plan #{pid} was interrupted while it executed: a real run resumes it first")
            continue
        if not auto_execute:
            notes.append(f"plan #{pid} was interrupted while it executed: resume it on the Review page")
            continue
        try:
            res = ex.execute(engine, workspace_id, pid, view.content_hash, platform, actor=actor, resume=True)
            counts = ", ".join(f"{n} {k}" for k, n in sorted(res.counts.items()))
            notes.append(f"plan #{pid} had been interrupted while it executed (its runner stopped): resumed first, "
                         f"{res.status.replace('_', ' ')} ({counts})")
        except ex.PlanStateError as exc:
            notes.append(f"plan #{pid} was interrupted while it executed and could not be resumed: {exc}")


# ------------------------------------------------------------------------------ one run
@guarded(Role.ANALYST, "autopilot.run", target="schedule #{schedule_id}")
def run_schedule(engine: Engine, workspace_id: str, schedule_id: int, *, platform=None,
                 platform_factory: PlatformFactory | None = None, due_at: dt.datetime | None = None,
                 trigger: str = "schedule", dry_run: bool = False, notify: NotifyConfig | None = None,
                 runner: str | None = None, now: dt.datetime | None = None, actor: str | None = None) -> RunResult:
    """Run ``schedule_id`` once for the slot ``due_at`` (default: now, a manual run). Raises `RunClaimed`
    when another runner has this slot. A failure is recorded on the run (status "failed") and re-raised.
    ``actor`` triggers the run (the schedule itself on time; a person asking for a run needs the approver
    role when the schedule auto-executes); its steps act as the schedule (`schedule_actor`)."""
    schedule = load_schedule(engine, workspace_id, schedule_id)
    if actor.kind != "autopilot" and schedule.auto_execute and not dry_run:
        require(engine, workspace_id, actor, Role.APPROVER, action="autopilot.run")
    principal = schedule_actor(schedule)
    now = now or utcnow()
    due_at = due_at or now
    run_id = None if dry_run else claim_run(engine, workspace_id, schedule.id, due_at, trigger=trigger,
                                            runner=runner or runner_name(), actor=principal)
    if run_id is not None:
        close_abandoned_runs(engine, workspace_id, schedule.id, due_at, actor=principal)
    try:
        result = _run(engine, workspace_id, schedule, platform, platform_factory, dry_run, now, run_id, principal)
    except Exception as exc:
        if run_id is not None:
            # redacted: the headline is mailed and posted, and a driver's or platform's message may quote a secret
            summary = {"headline": f"{schedule.name}: the run failed ({type(exc).__name__}: {redact_text(exc)[:300]})"}
            summary["notifications"] = deliver(notify, summary, emails=schedule.notify_emails,
                                               webhook=schedule.notify_webhook)
            finish_run(engine, workspace_id, run_id, status="failed", summary=summary,
                       error=f"{type(exc).__name__}: {redact_text(exc)[:2000]}", actor=principal)
        raise
    if run_id is not None:
        result.summary["notifications"] = deliver(notify, result.summary, emails=schedule.notify_emails,
                                                  webhook=schedule.notify_webhook)
        finish_run(engine, workspace_id, run_id, status=result.status, summary=result.summary, plan_ids=result.plan_ids,
                   actor=principal)
    return result


def _run(engine: Engine, workspace_id: str, schedule: Schedule, platform, platform_factory, dry_run: bool,
         now: dt.datetime, run_id: int | None, actor: Actor) -> RunResult:
    from core import execute as ex
    from core.platforms.sync import sync_platform

    state = load_guardrails(engine, workspace_id)
    stop = kill_switch_reason(state)
    if stop:
        return RunResult(schedule.id, run_id, "skipped", [], {"headline": f"{schedule.name}: skipped — {stop}"}, dry_run)
    platform = platform or (platform_factory or default_platform(engine, workspace_id))(schedule)
    limits = state.limits
    notes: list[str] = []
    refusal = auto_execute_refusal(engine, workspace_id, schedule, actor, limits)
    auto_execute = schedule.auto_execute and refusal is None
    if refusal:
        notes.append(refusal)

    _finish_interrupted(engine, workspace_id, platform, actor, auto_execute and not dry_run, notes, dry_run=dry_run)
    sync_platform(engine, workspace_id, platform, actor=actor)
    counts = outcomes.evaluate_outcomes(engine, workspace_id, platform.name, platform.account_id, actor=actor)
    today = account_today(platform, schedule.timezone, now)
    st = schedule.settings
    flagged_recent = outcomes.recent_flags(engine, workspace_id, platform.name, platform.account_id,
                                           today - dt.timedelta(days=21))
    half_life = st.flagged_half_life_days if flagged_recent else st.half_life_days
    if flagged_recent:
        notes.append(f"{flagged_recent} recent outcome(s) fell outside their band: the refit weights recent days "
                     f"more (half-life {half_life:g} days)")
    rec, _, policy = _optimize(engine, workspace_id, schedule, platform, half_life)
    notes.extend(rec.notes)
    history = glide.History(
        learning=learning_states(engine, workspace_id, platform.name, platform.account_id),
        last_change=latest_change_days(engine, workspace_id, platform.name, platform.account_id, schedule.timezone),
        contradicted=_contradicted(engine, workspace_id, platform.name, platform.account_id, rec.changes))
    decisions = glide.restate_steps(glide.stage(rec.changes, limits, today, history), rec, st.confidence_threshold, policy)
    proposed = [d for d in decisions if d.action == "propose"]
    held = [d for d in decisions if d.action == "hold"]
    drafts = [d.as_draft() for d in proposed]
    eligible, kept_back, hits = _executable(engine, workspace_id, platform, drafts, state, today, now,
                                            auto_execute=auto_execute,
                                            hold_total=st.objective == "value" and st.total_budget is None,
                                            min_change=st.min_change)
    going = {_key(d) for d in eligible}
    kept = {_key(d) for d, _ in kept_back}
    review = [x for x in drafts if _key(x) not in going and _key(x) not in kept]

    summary: dict = {"schedule": schedule.name, "schedule_id": schedule.id, "account": f"{platform.name}/{platform.account_id}",
                     "day": today.isoformat(), "auto_execute": auto_execute, "acting_as": str(actor), "dry_run": dry_run,
                     "outcomes_evaluated": counts, "executed": [], "waiting": [], "blocked": [], "held": [],
                     "flagged": [], "plans": [], "notes": notes}
    summary["held"] = [_item(d.draft, f"{d.draft.entity_name or d.draft.external_id} {d.draft.field}: {d.note}")
                       for d in held]
    summary["held"] += [_item(d, f"{d.entity_name or d.external_id} {d.field}: {why}") for d, why in kept_back]
    if dry_run:
        # today's executed steps as they would go (scaled to hold the total); the kept-back ones are held
        as_going = {_key(d): d for d in eligible}
        for x in drafts:
            key = _key(x)
            x = as_going.get(key, x)
            what = f"{_move(x)} (confidence {x.confidence:.0f})"
            if hits.get(key):
                summary["blocked"].append(_item(x, f"{what}: {'; '.join(hits[key])}"))
            elif key in going:
                summary["executed"].append(_item(x, f"{what} — would be executed"))
            elif key in kept:
                continue
            else:
                summary["waiting"].append(_item(x, f"{what} — would wait for review"))
        moves = {parse_value(d.field, d.new_value) > parse_value(d.field, d.old_value) for d in eligible
                 if d.field == "budget" and d.old_value is not None}
        if moves == {True, False}:  # raises and cuts: say in which order they go and what funds the raises
            notes.append(funding.RULE)
        summary["headline"] = (f"{schedule.name} (dry run, {today}): {len(eligible)} change(s) would execute, "
                               f"{len(review)} would wait for review, {len(summary['held'])} held")
        return RunResult(schedule.id, None, "dry run", [], summary, True)

    plan_ids: list[int] = []
    carried: dict[str, tuple[int, int]] = {}
    if eligible:
        pid = create_plan(engine, workspace_id, eligible, actor=actor, origin="autopilot",
                          name=f"Autopilot {today}: {schedule.name} (auto-executed)")
        plan_ids.append(pid)
        pr = ex.preview(engine, workspace_id, pid, platform, actor=actor)
        view = load_plan(engine, workspace_id, pid)
        if any(v["ok"] for v in pr.checks.values()):
            try:
                ex.approve(engine, workspace_id, pid, pr.content_hash, actor=actor)
                ex.execute(engine, workspace_id, pid, pr.content_hash, platform, actor=actor)
            except ex.PlanStateError as exc:
                notes.append(f"plan #{pid} was not executed: {exc}")
        outcomes.record_predictions(engine, workspace_id, pid, platform, curves=rec.curves, timezone=schedule.timezone,
                                    actor=actor)
        view = load_plan(engine, workspace_id, pid)
        rows = {r["seq"]: r for r in view.rows}
        for c in view.changes:
            r = rows[c.seq]
            what = _move(c)
            if c.status == "applied":
                summary["executed"].append(_item(c, what))
            elif c.status == "reduced":  # sent smaller: a decrease funding it did not apply (core.funding)
                summary["executed"].append(_item(c, f"{what}: {r.get('error_message') or 'reduced'}"))
            else:
                summary["blocked"].append(_item(c, f"{what}: {c.status} — {r.get('error_message') or ''}".rstrip(" —")))
            carried[f"{c.entity_type}:{c.external_id}:{c.field}"] = (pid, _change_id(engine, workspace_id, pid, c.seq))
    if review:
        pid = create_plan(engine, workspace_id, review, actor=actor, origin="autopilot",
                          name=f"Autopilot {today}: {schedule.name} (for review)")
        plan_ids.append(pid)
        pr = ex.preview(engine, workspace_id, pid, platform, actor=actor)
        view = load_plan(engine, workspace_id, pid)
        for c in view.changes:
            chk = pr.checks.get(c.key, {})
            val = pr.validations.get(c.key, {})
            what = f"{_move(c)} (confidence {c.confidence:.0f})"
            if not chk.get("ok") or not val.get("ok"):
                why = "; ".join(chk.get("messages") or []) or val.get("message") or "blocked"
                summary["blocked"].append(_item(c, f"{what}: {why}"))
            else:
                why = ("auto-execute is off" if not schedule.auto_execute else
                       "auto-execute is suspended" if not auto_execute else
                       "below the confidence threshold" if not c.auto_approve else "a person must decide")
                summary["waiting"].append(_item(c, f"{what} — {why}"))
            carried[f"{c.entity_type}:{c.external_id}:{c.field}"] = (pid, _change_id(engine, workspace_id, pid, c.seq))
    glide.record_paths(engine, workspace_id, platform.name, platform.account_id, decisions, carried, today,
                       schedule_id=schedule.id,
                       cooldown={"budget": limits.cooldown_days_budget, "bid": limits.cooldown_days_bid}, actor=actor)
    glide.refresh_paths(engine, workspace_id, actor=actor)
    flagged = outcomes.flagged_unreported(engine, workspace_id, platform.name, platform.account_id)
    summary["flagged"] = [{"entity": r.entity, "external_id": r.external_id, "field": r.field, "verdict": r.verdict,
                           "text": f"{r.entity} {r.field} {r.old} -> {r.new} (plan #{r.plan_id}): {r.verdict} — {r.reason}"}
                          for r in flagged.itertuples(index=False)]
    if run_id is not None and len(flagged):
        outcomes.mark_reported(engine, workspace_id, flagged["change_id"].tolist(), run_id, actor=actor)
    summary["plans"] = plan_ids
    summary["headline"] = (f"{schedule.name} ({today}): {len(summary['executed'])} executed, "
                           f"{len(summary['waiting'])} waiting for review, {len(summary['blocked'])} blocked, "
                           f"{len(summary['held'])} held" + (f", {len(flagged)} outcome(s) outside their band" if len(flagged) else ""))
    return RunResult(schedule.id, run_id, "completed", plan_ids, summary, False)


def _change_id(engine: Engine, workspace_id: str, plan_id: int, seq: int) -> int:
    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import Change

    with transaction(engine, workspace_id) as s:
        return int(s.scalar(select(Change.id).where(Change.plan_id == plan_id, Change.seq == seq)))


def run_due(engine: Engine, workspace_id: str, *, now: dt.datetime | None = None, dry_run: bool = False,
            platform_factory: PlatformFactory | None = None, notify: NotifyConfig | None = None,
            runner: str | None = None, on_error: Callable[[Schedule, Exception], None] | None = None) -> list[RunResult]:
    """One pass: run every due schedule of the workspace (a slot another runner claimed is skipped)."""
    now = now or utcnow()
    out = []
    for schedule, slot in due_schedules(engine, workspace_id, now):
        try:
            out.append(run_schedule(engine, workspace_id, schedule.id, platform_factory=platform_factory, due_at=slot,
                                    dry_run=dry_run, notify=notify, runner=runner, now=now,
                                    actor=schedule_actor(schedule)))
        except RunClaimed:
            continue
        except Exception as exc:  # one schedule's failure (recorded on its run) must not stop the others
            if on_error is not None:
                on_error(schedule, exc)
            out.append(RunResult(schedule.id, None, "failed", [], {"headline": f"{type(exc).__name__}: {redact_text(exc)}"},
                                 dry_run))
    return out

