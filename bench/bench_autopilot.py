"""Autopilot simulation: 60 days of daily scheduled runs on a sandbox account whose hidden curves drift.

Target (issue 13): by day 60 the autopilot earns at least 95 % of the hidden-curve optimum, with zero
guardrail breaches and zero changes executed twice; a calibrated 90 % band holds about 90 % of outcomes.

Each simulated day: the hidden curves of the day give the optimum (the best split of the same total
budget, exact water filling on the true curves and pacing); the scheduled run syncs, measures, refits,
optimizes, stages and auto-executes; two runners race for the day's slot (only one may run it); then the
sandbox simulates the day with the live budgets (learning phase after large changes included). On day 15
a person raises one campaign by 40 % by hand (a manual plan through the same guardrails): its learning
phase restarts and the autopilot must hold that campaign until the platform reports it has left learning.

Value is the expected value under the hidden curves at the live budgets, with the learning-phase
penalty, so the figures measure the decisions, not the noise. Baselines: doing nothing (today's
budgets for 60 days) and a one-shot plan (the Optimizer's default plan, max change 30 %, applied in full
on day 1 and left alone). Guardrail breaches are counted from the executed changes against the
workspace guardrails; a change executed twice is a platform write more than once for one change.

Nobody reviews the changes left for review here, so the schedule's confidence threshold decides how much
the autopilot may do alone: the bench runs the app's default schedule (threshold 80, `AutopilotSettings`),
so the figure is what a user gets without tuning (--threshold to try others). The sandbox is as noisy as
small real accounts (a few conversions a day per campaign: R² of 0.0-0.3 under the right curve); the
confidence counts that noise once, in the plausible curves, and each executed step moves the edge of the
observed spend that the next step starts from.

    python bench/bench_autopilot.py [--days 60] [--seed 11] [--drift 0.01] [--threshold 80]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from core.autopilot import AutopilotSettings, create_schedule  # noqa: E402
from core.autopilot.outcomes import outcomes_frame, record_predictions  # noqa: E402
from core.autopilot.runner import run_due  # noqa: E402
from core.guardrails import Guardrails, save_guardrails  # noqa: E402
from core.money import quantize_money  # noqa: E402
from core.platforms import sandbox as sbx  # noqa: E402
from core.platforms.sandbox import SandboxPlatform  # noqa: E402
from core.platforms.sync import sync_platform  # noqa: E402
from core.store.db import make_engine, transaction  # noqa: E402
from core.store.models import AutopilotRun, Change, ChangeOutcome, ChangePlan  # noqa: E402

WS = "bench"


def optimum(curves: pd.DataFrame, total: float) -> np.ndarray:
    """Budgets maximizing sum a (b p)^k with sum b = total (water filling, bisection on the multiplier)."""
    a, k, p = curves["a"].to_numpy(), curves["k"].to_numpy(), curves["pacing"].to_numpy()
    c = a * k * p ** k  # d/db a (b p)^k = c b^(k-1)

    def budgets(lam):
        return (c / lam) ** (1.0 / (1.0 - k))

    lo, hi = 1e-9, 1e9
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if budgets(mid).sum() > total else (lo, mid)
    return budgets(np.sqrt(lo * hi))


def expected_value(curves: pd.DataFrame, budgets: np.ndarray, penalty: np.ndarray | None = None) -> float:
    v = curves["a"].to_numpy() * (budgets * curves["pacing"].to_numpy()) ** curves["k"].to_numpy()
    return float((v * (1.0 if penalty is None else penalty)).sum())


def live_budgets(sb: SandboxPlatform, ids: list[str]) -> np.ndarray:
    by = {e.external_id: float(e.daily_budget) for e in sb.list_entities() if e.entity_type == "campaign"}
    return np.array([by[i] for i in ids])


def penalty_today(engine, sb: SandboxPlatform, day: dt.date) -> np.ndarray:
    from core.store.models import SandboxAccount

    with transaction(engine, WS) as s:
        params = s.scalars(select(SandboxAccount.params).where(SandboxAccount.account_id == sb.account_id)).one()
    pen = sbx._learning_penalty(params, [day])
    return np.ones(len(params["campaigns"])) if pen is None else pen[0]


def one_shot_budgets(engine, sb: SandboxPlatform, ids: list[str]) -> dict[str, float]:
    """The Optimizer page's default plan on day 1 (best split of today's total, max change 30 %)."""
    from core.optimize import session as S
    from core.optimize.recommend import recommend

    src = next(d for d in S.list_sources(engine, WS) if d.kind == "sync" and d.platform == "sandbox")
    perf = S.load_performance(engine, WS, src.dataset_id)
    ents = S.entity_state(engine, WS, src)
    rec = recommend(perf, max_change=0.3, current_budgets=ents, statuses=ents)
    out = dict(zip(ids, live_budgets(sb, ids)))
    for d in rec.changes:
        if d.field == "budget":
            out[d.external_id] = float(d.new_value)
    return out


def manual_edit(engine, sb: SandboxPlatform, xid: str) -> None:
    """A manual plan through core (dry run, approval, execution): +40 %, above the step limit, with its warning."""
    from core import execute as ex
    from core.changes import DraftChange, create_plan

    old = sb.read_live("campaign", xid, "budget")
    new = quantize_money(old * Decimal("1.4"), sb.currency)
    pid = create_plan(engine, WS, [DraftChange("sandbox", sb.account_id, "campaign", xid, xid, "budget", old, new, sb.currency,
                                               "a person's push", 100.0)], actor="a person", origin="manual")
    pr = ex.preview(engine, WS, pid, sb, actor="a person")
    if not pr.checks["1"]["ok"]:
        print(f"manual change {xid} {old} -> {new} refused: {'; '.join(pr.checks['1']['messages'])}")
        return
    ex.approve(engine, WS, pid, pr.content_hash, actor="a person")
    res = ex.execute(engine, WS, pid, pr.content_hash, sb, actor="a person")
    record_predictions(engine, WS, pid, sb)  # as the Review page does after an execution
    print(f"manual change {xid} {old} -> {new} (+40 %, above the step limit): {res.status}")


def breaches(engine, limits: Guardrails) -> list[str]:
    """Executed changes that break a guardrail: increase per step, ceilings, per-day count; and automatic changes
    above the step limit (a manual plan may exceed it, with a warning)."""
    with transaction(engine, WS) as s:
        rows = s.execute(select(Change.id, Change.external_id, Change.field, Change.old_value, Change.new_value,
                                ChangeOutcome.change_day, ChangePlan.origin).join(ChangePlan, ChangePlan.id == Change.plan_id)
                         .outerjoin(ChangeOutcome, ChangeOutcome.change_id == Change.id)
                         .where(Change.status == "applied")).all()
    out = []
    per_day: dict[tuple, int] = {}
    for cid, xid, fld, old, new, day, origin in rows:
        if fld not in ("budget", "bid"):
            continue
        o, n = Decimal(old), Decimal(new)
        pct = float(n / o - 1) * 100
        above_step = origin != "manual" and pct > limits.step_limit_pct + 1e-9
        if above_step or (limits.max_increase_pct and pct > limits.max_increase_pct + 1e-9):
            out.append(f"change {cid} {xid}: {pct:+.2f}% in one step")
        if limits.entity_budget_ceiling is not None and fld == "budget" and n > limits.entity_budget_ceiling:
            out.append(f"change {cid} {xid}: budget {n} above the ceiling")
        per_day[(xid, day)] = per_day.get((xid, day), 0) + 1
        if per_day[(xid, day)] > (limits.max_changes_per_entity_per_day or 10 ** 9):
            out.append(f"{xid} changed more than allowed on {day}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--drift", type=float, default=0.01)
    ap.add_argument("--manual-day", type=int, default=15, help="the day a person makes a +40 %% change by hand (0: never)")
    ap.add_argument("--threshold", type=float, default=AutopilotSettings().confidence_threshold,
                    help="the schedule's confidence threshold (default: the app's default schedule setting)")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-autopilot-"))
    engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
    start = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)  # slots after the schedule exists
    sb = SandboxPlatform(engine, WS, seed=args.seed, n_meta=4, n_google=4, history_days=90, today=start, drift=args.drift)
    sync_platform(engine, WS, sb)
    ids = list(sb.hidden_curves(start)["external_id"])
    initial = live_budgets(sb, ids)
    total = float(initial.sum())
    limits = Guardrails(entity_budget_ceiling=Decimal(str(round(float(initial.max()) * 3, 2))),
                        account_budget_ceiling=Decimal(str(round(total * 1.02, 2))), max_increase_pct=50.0,
                        max_changes_per_entity_per_day=2)
    save_guardrails(engine, WS, limits, actor="bench")
    sid = create_schedule(engine, WS, name="daily sandbox", platform="sandbox", account_id=sb.account_id,
                          time_of_day="06:00", timezone="UTC", auto_execute=True,
                          settings=AutopilotSettings(confidence_threshold=args.threshold), actor="bench")
    oneshot = one_shot_budgets(engine, sb, ids)
    oneshot_b = np.array([oneshot[i] for i in ids])
    shot_learning = np.abs(oneshot_b / initial - 1) * 100 > sbx.LEARNING_RESET_PCT + 1e-9

    applies = {"n": 0}
    real_apply = sb.apply

    def counted_apply(change):
        applies["n"] += 1
        return real_apply(change)

    sb.apply = counted_apply  # count every platform write
    rows = []
    t0 = time.perf_counter()
    held_learning = 0
    for day_i in range(args.days):
        day = start + dt.timedelta(days=day_i)
        now = dt.datetime.combine(day, dt.time(6, 30), dt.timezone.utc)
        if day_i == args.manual_day - 1:  # a person raises one campaign by 40 % by hand: its learning phase restarts
            manual_edit(engine, sb, ids[int(np.argmin(live_budgets(sb, ids)))])  # the smallest: within the ceilings
            sync_platform(engine, WS, sb)
        results: list = []
        racers = [threading.Thread(target=lambda: results.extend(run_due(engine, WS, now=now, platform_factory=lambda s: sb,
                                                                         runner=f"runner-{j}"))) for j in range(2)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        held_learning += sum("held: in its learning phase" in h.get("text", "") for r in results
                             for h in r.summary.get("held", []))
        hidden = sb.hidden_curves(day)
        opt = optimum(hidden, total)
        live = live_budgets(sb, ids)
        pen = penalty_today(engine, sb, day)
        shot_pen = np.where(shot_learning & (day_i < sbx.LEARNING_DAYS), sbx.LEARNING_EFFICIENCY, 1.0)
        rows.append({"day": day_i + 1, "optimum": expected_value(hidden, opt), "autopilot": expected_value(hidden, live, pen),
                     "one_shot": expected_value(hidden, oneshot_b, shot_pen), "nothing": expected_value(hidden, initial),
                     "runs": len(results), "learning": int((pen < 1).sum())})
        sb.advance_days(1)
        if (day_i + 1) % 10 == 0:
            r = rows[-1]
            print(f"day {day_i + 1:>2}: autopilot {r['autopilot'] / r['optimum']:.1%} of the optimum, one-shot "
                  f"{r['one_shot'] / r['optimum']:.1%}, nothing {r['nothing'] / r['optimum']:.1%} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    last = df.tail(7)
    with transaction(engine, WS) as s:
        applied = s.scalar(select(Change.id).where(Change.status == "applied").with_only_columns(
            __import__("sqlalchemy").func.count())) or 0
        runs = s.execute(select(AutopilotRun.due_at, AutopilotRun.status)).all()
    oc = outcomes_frame(engine, WS)
    measured = oc[oc["verdict"].isin(["as predicted", "better", "worse"])]
    inside = float((measured["verdict"] == "as predicted").mean()) if len(measured) else float("nan")
    bad = breaches(engine, limits)
    slots = pd.Series([r[0] for r in runs])
    print()
    print(f"days simulated: {args.days}; scheduled runs: {len(runs)} for {slots.nunique()} slots "
          f"({int(df['runs'].sum())} run by two racing runners); changes applied: {applied}; platform writes: {applies['n']}")
    print(f"outcomes: {len(oc)} recorded, {len(measured)} measured "
          f"({', '.join(f'{k} {v}' for k, v in oc['verdict'].value_counts().items())})")
    print(f"entity-days in a learning phase: {int(df['learning'].sum())} (after a manual +40 % change on day "
          f"{args.manual_day}); runs that held an entity for its learning phase: {held_learning}")
    print(f"over the {args.days} days: autopilot {df['autopilot'].sum() / df['optimum'].sum():.1%}, one-shot "
          f"{df['one_shot'].sum() / df['optimum'].sum():.1%}, doing nothing {df['nothing'].sum() / df['optimum'].sum():.1%} "
          "of the optimum's value")
    print(f"doing nothing vs optimum: {last['nothing'].sum() / last['optimum'].sum() * 100:.1f} %")
    print(f"autopilot vs optimum: {last['autopilot'].sum() / last['optimum'].sum() * 100:.1f} %")
    print(f"one-shot plan vs optimum: {last['one_shot'].sum() / last['optimum'].sum() * 100:.1f} %")
    print(f"guardrail breaches: {len(bad)}")
    print(f"changes executed twice: {applies['n'] - applied + (len(runs) - slots.nunique())}")
    print(f"outcomes inside band: {inside * 100:.1f} %" if len(measured) else
          "outcomes inside band: n/a (no change was executed, so no outcome was measured)")
    for b in bad[:10]:
        print(f"  breach: {b}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
