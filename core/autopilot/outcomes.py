"""Measured outcomes: what each executed change predicted, and what the synced performance then showed.

At execution (`record_predictions`, called right after a plan is executed, by the autopilot and by the
Review page) each applied change stores its prediction for the entity: spend and value per day over
the observation window, with a 90 % band. The band holds the response curve's parameter uncertainty
(draws from `core.response.CurveSet.sample`), the spread of pacing (spend / budget) and the day-to-day
noise of the value around the curve, averaged over the days observed, and never narrower than the
entity's measured spread of an average over that many days around its curve (`window_spread`: drift,
streaks and the curve's miss of the recent level do not average away); the draws are stored, so the
band is recomputed for the number of days actually observed.

`evaluate_outcomes` compares each prediction with the synced daily performance over the window
(default 7 days from the first full day with the new value; cut short when the entity is changed again)
and gives a verdict: as predicted (inside the band), better / worse (outside: flagged), too early (fewer
days observed than needed) or not measurable (with the reason). Per plan the measured changes are
added up (`plan_outcomes`). A flagged outcome goes into the next run's summary, and the next refit
weights recent days more (`recent_half_life`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.changes import WRITTEN_STATUSES
from core.guardrails import account_today, entity_key
from core.money import format_money, to_decimal
from core.store.db import transaction
from core.store.models import Change, ChangeOutcome, ChangePlan, Dataset, PerformanceDaily, utcnow

#: Days after a change over which its outcome is measured.
OBSERVATION_DAYS = 7
#: Fewest days a verdict is given on when the window is cut short by a later change.
MIN_DAYS = 3
#: The band's level.
LEVEL = 0.90
#: Recent days whose residuals around the curve measure the spread of a window's average.
RESIDUAL_DAYS = 28
#: Parameter draws stored with each prediction.
N_DRAWS = 200
VERDICTS = ("as predicted", "better", "worse", "too early", "not measurable")


def first_full_day(platform, change_day: dt.date) -> dt.date:
    """The first day wholly under the new value: the sandbox's next simulated day is; a real platform's
    change lands during ``change_day``, so the next day is the first full one."""
    return change_day if callable(getattr(platform, "clock", None)) else change_day + dt.timedelta(days=1)


def _synced_daily(engine: Engine, workspace_id: str, platform: str, account_id: str, keys: Sequence[tuple[str, str]],
                  start: dt.date | None = None, end: dt.date | None = None) -> pd.DataFrame:
    """Daily totals (no segments) of the given (entity_type, external_id) from the account's synced data set."""
    from core.platforms.sync import sync_dataset_name

    P = PerformanceDaily
    ids = sorted({x for _, x in keys})
    cols = ["entity_type", "external_id", "date", "spend", "conversion_value"]
    if not ids:
        return pd.DataFrame(columns=cols)
    stmt = (select(P.entity_type, P.external_id, P.date, P.spend, P.conversion_value)
            .join(Dataset, Dataset.id == P.dataset_id)
            .where(Dataset.name == sync_dataset_name(platform, account_id), P.segment_type == "",
                   P.external_id.in_(ids)))
    if start is not None:
        stmt = stmt.where(P.date >= start)
    if end is not None:
        stmt = stmt.where(P.date <= end)
    with transaction(engine, workspace_id) as s:
        rows = s.execute(stmt).all()
    df = pd.DataFrame(rows, columns=cols)
    wanted = set(keys)
    df = df[np.array([(a, b) in wanted for a, b in zip(df["entity_type"], df["external_id"])], dtype=bool)]
    df["spend"] = df["spend"].astype(float)
    df["conversion_value"] = df["conversion_value"].astype(float)
    return df.reset_index(drop=True)


def last_synced_day(engine: Engine, workspace_id: str, platform: str, account_id: str) -> dt.date | None:
    from core.platforms.sync import last_synced_day as _last

    return _last(engine, workspace_id, platform, account_id)


# ------------------------------------------------------------------------------ predictions
def predict_budget(curves, i: int, old_budget: float, new_budget: float, history: pd.DataFrame, *,
                   n_draws: int = N_DRAWS, seed: int = 0) -> dict:
    """Prediction for campaign ``i`` of ``curves`` moving from ``old_budget`` to ``new_budget`` a day.

    ``history`` is the entity's recent daily spend and value (before the change): its spend / old budget
    gives the pacing, its residuals around the curve the day-to-day noise. Returns a JSON-safe dict.
    """
    recent = history.sort_values("date").tail(14)
    spend_hist = recent["spend"].to_numpy(float)
    value_hist = recent["conversion_value"].to_numpy(float)
    pace = spend_hist / old_budget if old_budget > 0 and len(spend_hist) else np.array([1.0])
    pace = np.clip(pace[np.isfinite(pace)], 0.0, 1.5) if len(pace) else np.array([1.0])
    pace_mean = float(np.clip(np.mean(pace), 0.02, 1.2)) if len(pace) else 1.0
    pace_sd = float(np.std(pace, ddof=1)) if len(pace) > 2 else 0.05 * pace_mean
    one = curves.subset(np.array([i]))
    draws = curves.sample(n_draws, seed=seed)[:, i:i + 1, :]
    rng = np.random.default_rng([seed, i, 11])
    # the mean pacing is known to about its standard error; each draw takes one plausible mean pacing
    pace_draw = np.clip(pace_mean + rng.normal(0.0, pace_sd / np.sqrt(max(len(pace), 1)), n_draws), 0.0, None)
    spend_draw = new_budget * pace_draw
    value_draw = one.predict(spend_draw[:, None], draws)[:, 0]
    pos = (spend_hist > 0) & (value_hist > 0)
    if pos.sum() >= 3:
        fitted = one.predict(spend_hist[pos][:, None])[:, 0]
        resid = np.log(value_hist[pos]) - np.log(np.maximum(fitted, 1e-12))
        noise_cv = float(np.sqrt(max(np.exp(np.var(resid, ddof=1)) - 1.0, 0.0)))
    else:
        noise_cv = 0.3
    window_cv = window_spread(one, history.sort_values("date").tail(RESIDUAL_DAYS), OBSERVATION_DAYS)
    spend_cv = pace_sd / pace_mean if pace_mean > 0 else 0.0
    pred = {
        "kind": "budget", "old_budget": old_budget, "new_budget": new_budget,
        "pacing": pace_mean, "spend_cv": spend_cv, "noise_cv": noise_cv, "window_cv": window_cv,
        "spend_draws": np.round(spend_draw, 4).tolist(), "value_draws": np.round(value_draw, 4).tolist(),
        "baseline_value": float(one.predict(np.array([[old_budget * pace_mean]]))[0, 0]),
        "before": {"days": int(len(recent)), "spend": float(spend_hist.mean()) if len(spend_hist) else None,
                   "value": float(value_hist.mean()) if len(value_hist) else None},
    }
    pred.update(band(pred, OBSERVATION_DAYS))
    return pred


def window_spread(one, history: pd.DataFrame, max_days: int) -> list[float] | None:
    """The account's measured spread of an n-day average around the fitted curve, for n = 1..``max_days``:
    the root mean square of the n-day rolling means of the log residuals (value vs the curve at the day's
    spend) over the entity's recent days, as a coefficient of variation.

    Independent day-to-day noise shrinks as 1/sqrt(n) over an observation window; real accounts (and the
    sandbox) also drift and run in streaks, and a curve fitted on a longer, weighted history misses the
    entity's recent level: both show up here as rolling means that stay away from zero, so the band of a
    window average is at least this wide. None with fewer than ``max_days + 3`` usable days.
    """
    spend = history["spend"].to_numpy(float)
    value = history["conversion_value"].to_numpy(float)
    pos = (spend > 0) & (value > 0)
    if pos.sum() < max_days + 3:
        return None
    resid = pd.Series(np.log(value[pos]) - np.log(np.maximum(one.predict(spend[pos][:, None])[:, 0], 1e-12)))
    out = []
    for n in range(1, max_days + 1):  # a handful of window lengths
        means = resid.rolling(n).mean().dropna().to_numpy()
        rms = float(np.sqrt(np.mean(np.square(means))))
        out.append(float(np.sqrt(max(np.exp(rms ** 2) - 1.0, 0.0))))
    return out


def band(pred: dict, days: int, level: float = LEVEL, seed: int = 0) -> dict:
    """Point and ``level`` band of the mean spend and value per day over ``days`` observed days."""
    if pred.get("kind") == "pause":
        return {"spend": {"mean": 0.0, "lo": 0.0, "hi": 0.0}, "value": {"mean": 0.0, "lo": 0.0, "hi": 0.0}, "days": days}
    rng = np.random.default_rng([seed, days, 5])
    n = max(int(days), 1)
    out = {"days": n}
    widen = float(pred.get("widen", 1.0))
    window = pred.get("window_cv")  # the measured spread of an n-day average (None: too little history)
    for what, cv in (("spend", pred["spend_cv"]), ("value", pred["noise_cv"])):
        d = np.asarray(pred[f"{what}_draws"], float)
        sd = cv / np.sqrt(n)
        if what == "value" and window:
            sd = max(sd, float(window[min(n, len(window)) - 1]))
        sims = np.repeat(d, 10) * (1.0 + rng.normal(0.0, sd, d.size * 10))
        sims = d.mean() + widen * (sims - d.mean())  # the account's own calibration (see `calibration`)
        lo, hi = np.quantile(np.clip(sims, 0.0, None), [(1 - level) / 2, (1 + level) / 2])
        out[what] = {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi)}
    return out


def calibration(engine: Engine, workspace_id: str, platform: str, account_id: str, *, min_outcomes: int = 8) -> float:
    """How much wider than the model says the account's bands must be to hold their level: the spread of the
    measured outcomes' standardized errors (actual - predicted) / (band half-width / z), at least 1, at most 3.

    Predictions tend to be optimistic for the changes an optimizer picks (it picks where the fitted curve
    looks best), and a curve fitted on the past misses drift; measuring that on the account's own outcomes
    and widening the next bands by it keeps them calibrated. 1 until ``min_outcomes`` were measured.
    """
    from scipy.stats import norm

    O = ChangeOutcome
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(O.actual, O.prediction).where(
            O.entity_key.like(f"{platform}:{account_id}:%"), O.verdict.in_(("as predicted", "better", "worse")))).all()
    z = norm.ppf(0.5 + LEVEL / 2)
    errs = []
    for actual, pred in rows:  # the account's measured outcomes (tens to hundreds)
        b = (actual or {}).get("band", {}).get("value")
        if not b or actual.get("value") is None or b["hi"] <= b["lo"]:
            continue
        sd = (b["hi"] - b["lo"]) / (2 * z) / float(pred.get("widen", 1.0))
        errs.append((actual["value"] - b["mean"]) / sd if sd > 0 else 0.0)
    if len(errs) < min_outcomes:
        return 1.0
    return float(np.clip(np.sqrt(np.mean(np.square(errs))), 1.0, 3.0))


@guarded(Role.ANALYST, "outcome.predict", audit=False)
def record_predictions(engine: Engine, workspace_id: str, plan_id: int, platform, *, curves=None,
                       timezone: str = "UTC", half_life_days: float | None = None, seed: int = 0,
                       actor: str | None = None) -> int:
    """Store the prediction of every applied change of ``plan_id`` that has none yet; returns how many.

    ``curves`` are the response curves that proposed the changes (the autopilot passes its own); without
    them the account's synced history up to the change is fitted here. Budget changes get a spend and
    value prediction; a pause predicts zero; bid and re-activation changes are stored as not measurable.
    """
    from core.response import CurveFitError, fit_curves

    with transaction(engine, workspace_id) as s:
        plan = s.get(ChangePlan, plan_id)
        if plan is None:
            raise ValueError(f"plan {plan_id} does not exist in workspace {workspace_id}")
        done = set(s.scalars(select(ChangeOutcome.change_id).where(ChangeOutcome.plan_id == plan_id)))
        # a reduced change is predicted at the value it was sent with
        changes = [(c.id, c.entity_type, c.external_id, c.field, c.old_value, c.funded_value or c.new_value)
                   for c in plan.changes if c.status in WRITTEN_STATUSES and c.id not in done]
        plat, acct = plan.platform, plan.account_id
    if not changes:
        return 0
    today = account_today(platform, timezone)
    first = first_full_day(platform, today)
    keys = [(et, x) for _, et, x, f, _, _ in changes]
    hist = _synced_daily(engine, workspace_id, plat, acct, keys, end=first - dt.timedelta(days=1))
    fits: dict[str, object] = {}

    def curves_for(entity_type: str):
        if curves is not None and entity_type == "campaign":
            return curves
        if entity_type not in fits:
            try:
                from core.optimize.session import load_performance
                from core.platforms.sync import sync_dataset_name

                with transaction(engine, workspace_id) as s:
                    ds = s.scalars(select(Dataset.id).where(Dataset.name == sync_dataset_name(plat, acct))).one_or_none()
                perf = load_performance(engine, workspace_id, ds) if ds is not None else None
                if perf is not None:
                    perf = perf[pd.to_datetime(perf["date"]) < pd.Timestamp(first)]
                fits[entity_type] = None if perf is None or perf.empty else fit_curves(
                    perf, entity_type=entity_type, half_life_days=half_life_days)
            except (CurveFitError, ValueError):
                fits[entity_type] = None
        return fits[entity_type]

    widen = calibration(engine, workspace_id, plat, acct)
    rows = []
    for cid, et, xid, fld, old, new in changes:
        pred: dict
        if fld == "status":
            pred = {"kind": "pause"} if new == "PAUSED" else {
                "kind": "none", "why": "a re-activated entity restarts delivery and learning: no model predicts it"}
            if new == "PAUSED":
                pred.update(band(pred, OBSERVATION_DAYS))
        elif fld == "bid":
            pred = {"kind": "none", "why": "the response curves model budgets; a bid change is recorded but not predicted"}
        else:
            cs = curves_for(et)
            idx = None
            if cs is not None:
                hit = np.flatnonzero((cs.keys["external_id"] == xid).to_numpy() & (cs.keys["entity_type"] == et).to_numpy())
                idx = int(hit[0]) if hit.size else None
            own = hist[(hist["entity_type"] == et) & (hist["external_id"] == xid)]
            if idx is None:
                pred = {"kind": "none", "why": f"no response curve for {et} {xid}: too little synced history before the change"}
            else:
                pred = predict_budget(cs, idx, float(to_decimal(old)), float(to_decimal(new)), own, seed=seed + cid)
                if widen > 1.0:
                    pred["widen"] = widen
                    pred.update(band(pred, OBSERVATION_DAYS))
        rows.append(ChangeOutcome(change_id=cid, plan_id=plan_id, change_day=today, first_day=first,
                                  entity_key=entity_key(plat, acct, et, xid), prediction=pred,
                                  window_days=OBSERVATION_DAYS,
                                  verdict="too early" if pred["kind"] != "none" else "not measurable",
                                  reason="waiting for the first days after the change" if pred["kind"] != "none"
                                  else pred["why"]))
    with transaction(engine, workspace_id) as s:
        s.add_all(rows)
    return len(rows)


# ------------------------------------------------------------------------------ evaluation
def judge(pred: dict, actual: pd.DataFrame, window: tuple[dt.date, dt.date], last_day: dt.date | None,
          cut_at: dt.date | None, currency: str | None = None) -> tuple[str, str, dict, bool]:
    """(verdict, reason, actual summary, flagged) of one prediction against the entity's daily rows; the reason
    states money at ``currency``'s precision (KWD 1.234/day, JPY 1,500/day)."""

    def _fmt(x: float) -> str:
        return format_money(x, currency)

    start, end = window
    if cut_at is not None and cut_at <= end:
        end = cut_at - dt.timedelta(days=1)
    need = (end - start).days + 1
    seen = actual[(actual["date"] >= start) & (actual["date"] <= end)]
    observed = int(seen["date"].nunique())
    summary = {"start": start.isoformat(), "end": end.isoformat(), "days": observed,
               "spend": float(seen["spend"].mean()) if observed else None,
               "value": float(seen["conversion_value"].mean()) if observed else None}
    if pred.get("kind") == "none":
        return "not measurable", pred.get("why", "no prediction"), summary, False
    if need < MIN_DAYS and cut_at is not None:
        return ("not measurable", f"changed again on {cut_at} after {max(need, 0)} day(s): fewer than {MIN_DAYS} days "
                "to measure this change alone", summary, False)
    if last_day is None or last_day < end:
        if observed == 0 and last_day is not None and last_day >= start:
            return "not measurable", "no synced performance of this entity in the observation window", summary, False
        return "too early", f"{observed} of {need} days observed (window {start} to {end})", summary, False
    if observed == 0:
        return "not measurable", "no synced performance of this entity in the observation window", summary, False
    b = band(pred, observed)
    summary["band"] = b
    v, lo, hi, mid = summary["value"], b["value"]["lo"], b["value"]["hi"], b["value"]["mean"]
    verdict = "as predicted" if lo <= v <= hi else "better" if v > hi else "worse"
    reason = (f"value {_fmt(v)}/day against the predicted {_fmt(mid)} (90 % band {_fmt(lo)} – {_fmt(hi)}) "
              f"over {observed} day(s) from {start}")
    s_lo, s_hi = b["spend"]["lo"], b["spend"]["hi"]
    if not s_lo <= summary["spend"] <= s_hi:
        reason += (f"; spend {_fmt(summary['spend'])}/day was outside its predicted {_fmt(s_lo)} – {_fmt(s_hi)} "
                   "(the platform paced the budget differently)")
    return verdict, reason, summary, verdict in ("better", "worse")


@guarded(Role.ANALYST, "outcome.evaluate", audit=False)
def evaluate_outcomes(engine: Engine, workspace_id: str, platform: str, account_id: str, *,
                      actor: str | None = None) -> dict[str, int]:
    """Give every open outcome of the account its verdict from the synced performance; returns counts."""
    O = ChangeOutcome
    prefix = f"{platform}:{account_id}:"
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(O.id, O.change_id, O.entity_key, O.first_day, O.window_days, O.prediction, O.verdict,
                                Change.field, Change.currency).join(Change, Change.id == O.change_id)
                         .where(O.entity_key.like(prefix + "%"))).all()
    if not rows:
        return {}
    frame = pd.DataFrame(rows, columns=["id", "change_id", "entity_key", "first_day", "window", "prediction", "verdict",
                                        "field", "currency"])
    # the next change of the same entity and field cuts the window of the one before
    frame = frame.sort_values(["entity_key", "field", "first_day", "change_id"])
    frame["cut_at"] = frame.groupby(["entity_key", "field"])["first_day"].shift(-1)
    todo = frame[frame["verdict"] == "too early"]
    if todo.empty:
        return {}
    keys = [tuple(k[len(prefix):].split(":", 1)) for k in todo["entity_key"]]
    daily = _synced_daily(engine, workspace_id, platform, account_id, keys, start=todo["first_day"].min())
    last = last_synced_day(engine, workspace_id, platform, account_id)
    counts: dict[str, int] = {}
    updates = []
    for r in todo.itertuples(index=False):  # open outcomes of one account (tens), not events
        et, xid = r.entity_key[len(prefix):].split(":", 1)
        own = daily[(daily["entity_type"] == et) & (daily["external_id"] == xid)]
        cut = None if pd.isna(r.cut_at) else r.cut_at
        window = (r.first_day, r.first_day + dt.timedelta(days=int(r.window) - 1))
        verdict, reason, actual, flagged = judge(r.prediction, own, window, last, cut, r.currency)
        counts[verdict] = counts.get(verdict, 0) + 1
        updates.append((int(r.id), verdict, reason, actual, flagged))
    now = utcnow()
    with transaction(engine, workspace_id) as s:
        for oid, verdict, reason, actual, flagged in updates:
            o = s.get(O, oid)
            o.verdict, o.reason, o.actual, o.flagged = verdict, reason, actual, flagged
            o.evaluated_at = now
    return counts


def outcomes_frame(engine: Engine, workspace_id: str, plan_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per recorded outcome: plan, change, entity, field, old -> new, predicted and actual value and
    spend per day with the band, verdict and reason, flagged."""
    O, C = ChangeOutcome, Change
    # "new" is the value the change was sent with: its funded value when it was reduced (core.funding)
    stmt = (select(O.plan_id, C.seq, C.id, C.entity_type, C.external_id, C.entity_name, C.field, C.old_value,
                   func.coalesce(C.funded_value, C.new_value), C.currency, O.change_day, O.first_day, O.prediction, O.actual, O.verdict, O.reason, O.flagged,
                   O.reported_in_run).join(C, C.id == O.change_id).order_by(O.plan_id.desc(), C.seq))
    if plan_ids is not None:
        stmt = stmt.where(O.plan_id.in_(list(plan_ids)))
    with transaction(engine, workspace_id) as s:
        rows = s.execute(stmt).all()
    out = []
    for (pid, seq, cid, et, xid, name, fld, old, new, cur, cday, fday, pred, act, verdict, reason, flagged,
         reported) in rows:
        b = (act or {}).get("band") or ({k: pred.get(k) for k in ("spend", "value")} if pred.get("value") else {})
        out.append({
            "plan_id": pid, "seq": seq, "change_id": cid, "entity": name or xid, "entity_type": et, "external_id": xid,
            "field": fld, "old": old, "new": new, "currency": cur, "change_day": cday, "first_day": fday,
            "predicted_value": (b.get("value") or {}).get("mean"), "value_lo": (b.get("value") or {}).get("lo"),
            "value_hi": (b.get("value") or {}).get("hi"), "actual_value": (act or {}).get("value"),
            "predicted_spend": (b.get("spend") or {}).get("mean"), "spend_lo": (b.get("spend") or {}).get("lo"),
            "spend_hi": (b.get("spend") or {}).get("hi"), "actual_spend": (act or {}).get("spend"),
            "days_observed": (act or {}).get("days"), "before_value": (pred.get("before") or {}).get("value"),
            "verdict": verdict, "reason": reason, "flagged": bool(flagged), "reported_in_run": reported,
        })
    cols = ["plan_id", "seq", "change_id", "entity", "entity_type", "external_id", "field", "old", "new", "currency",
            "change_day", "first_day", "predicted_value", "value_lo", "value_hi", "actual_value", "predicted_spend",
            "spend_lo", "spend_hi", "actual_spend", "days_observed", "before_value", "verdict", "reason", "flagged",
            "reported_in_run"]
    return pd.DataFrame(out, columns=cols)


def plan_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per plan: changes measured, verdict counts, predicted and actual value per day of the measured changes
    with a 90 % band (independent changes: half-widths add in quadrature) and the plan's verdict."""
    rows = []
    for pid, g in frame.groupby("plan_id", sort=False):  # per plan
        m = g[g["verdict"].isin(["as predicted", "better", "worse"])]
        row = {"plan_id": int(pid), "changes": len(g), "measured": len(m),
               **{v: int((g["verdict"] == v).sum()) for v in VERDICTS}}
        if len(m):
            pred = float(m["predicted_value"].sum())
            half = float(np.sqrt((((m["value_hi"] - m["value_lo"]) / 2) ** 2).sum()))
            act = float(m["actual_value"].sum())
            lo, hi = pred - half, pred + half
            cur = "/".join(sorted(set(m["currency"].dropna().astype(str)))) if "currency" in m else None

            def fmt(x: float) -> str:
                return format_money(x, cur)

            row.update(predicted_value=pred, value_lo=lo, value_hi=hi, actual_value=act,
                       verdict="as predicted" if lo <= act <= hi else "better" if act > hi else "worse",
                       reason=f"{len(m)} measured change(s): {fmt(act)}/day against {fmt(pred)} (band {fmt(lo)} – {fmt(hi)})")
        else:
            open_ = int((g["verdict"] == "too early").sum())
            row.update(predicted_value=None, value_lo=None, value_hi=None, actual_value=None,
                       verdict="too early" if open_ else "not measurable",
                       reason=f"{open_} change(s) still in their observation window" if open_ else
                       "no change of this plan could be measured")
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_chart_frame(engine: Engine, workspace_id: str, change_id: int, platform: str, account_id: str,
                        days_before: int = 14) -> pd.DataFrame:
    """Daily value of the changed entity around the change (before / after), with the prediction band over
    the observation window, for the History chart: date, value, spend, phase, predicted, lo, hi."""
    O, C = ChangeOutcome, Change
    with transaction(engine, workspace_id) as s:
        row = s.execute(select(C.entity_type, C.external_id, O.first_day, O.window_days, O.prediction)
                        .join(O, O.change_id == C.id).where(C.id == change_id)).one_or_none()
    if row is None:
        return pd.DataFrame(columns=["date", "value", "spend", "phase", "predicted", "lo", "hi"])
    et, xid, first, window, pred = row
    end = first + dt.timedelta(days=int(window) - 1)
    daily = _synced_daily(engine, workspace_id, platform, account_id, [(et, xid)],
                          start=first - dt.timedelta(days=days_before), end=end)
    dates = pd.date_range(first - dt.timedelta(days=days_before), end).date
    out = pd.DataFrame({"date": dates}).merge(daily[["date", "spend", "conversion_value"]], on="date", how="left")
    out = out.rename(columns={"conversion_value": "value"})
    out["phase"] = np.where(out["date"] < first, "before", "after")
    if pred.get("value"):
        b = band(pred, int(window)) if pred.get("kind") != "none" else None
        after = out["date"] >= first
        out["predicted"] = np.where(after, b["value"]["mean"], np.nan) if b else np.nan
        out["lo"] = np.where(after, b["value"]["lo"], np.nan) if b else np.nan
        out["hi"] = np.where(after, b["value"]["hi"], np.nan) if b else np.nan
    else:
        out["predicted"] = out["lo"] = out["hi"] = np.nan
    out["date"] = pd.to_datetime(out["date"])
    return out


def flagged_unreported(engine: Engine, workspace_id: str, platform: str, account_id: str) -> pd.DataFrame:
    """Outcomes outside their band that no run summary has carried yet."""
    with transaction(engine, workspace_id) as s:
        plans = list(s.scalars(select(ChangePlan.id).where(ChangePlan.platform == platform,
                                                           ChangePlan.account_id == account_id)))
    df = outcomes_frame(engine, workspace_id, plans)
    return df[df["flagged"] & df["reported_in_run"].isna()].reset_index(drop=True)


@guarded(Role.ANALYST, "outcome.report", audit=False)
def mark_reported(engine: Engine, workspace_id: str, change_ids: Sequence[int], run_id: int, *,
                  actor: str | None = None) -> None:
    with transaction(engine, workspace_id) as s:
        for o in s.scalars(select(ChangeOutcome).where(ChangeOutcome.change_id.in_(list(change_ids)))):
            o.reported_in_run = run_id


def recent_flags(engine: Engine, workspace_id: str, platform: str, account_id: str, since: dt.date) -> int:
    """How many outcomes of the account measured since ``since`` fell outside their band."""
    O = ChangeOutcome
    with transaction(engine, workspace_id) as s:
        return len(s.scalars(select(O.id).where(O.entity_key.like(f"{platform}:{account_id}:%"), O.flagged.is_(True),
                                                O.first_day >= since)).all())


__all__ = ["OBSERVATION_DAYS", "VERDICTS", "band", "calibration", "evaluate_outcomes", "first_full_day", "flagged_unreported",
           "judge", "mark_reported", "outcome_chart_frame", "outcomes_frame", "plan_outcomes", "predict_budget",
           "recent_flags", "record_predictions", "window_spread"]
