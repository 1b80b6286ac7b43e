"""Attribution on the tracked data through the collector's API: run jobs and one user's journey.

``POST /v1/attribution/runs`` records a job and answers its id at once; a worker computes the run
with `core.attribution_runs.execute_run` on the workspace's live data set and stores the run id on
the job. ``GET /v1/journeys/{user}`` shows the user's journeys with their credit under every model of
the latest stored run of the live data set.
"""

from __future__ import annotations

import math
from decimal import Decimal

from sqlalchemy import select, update

from core import attribution_runs as ar
from core.access import Role, guarded
from core.store.db import transaction
from core.store.models import TrackingRunJob, utcnow

from .live import ensure_live_dataset, tracked_frames
from .payloads import USER_KEY_LIMIT, InputError, text_field

RUN_FIELDS = ("models", "lookback_days", "level", "order", "position_shares", "half_life_days", "bootstrap", "seed")


def run_params(engine, workspace_id: str, body: object, *, actor=None) -> ar.RunParams:
    """Validated run parameters for the live data set from a request body (defaults: every model);
    `InputError` naming the parameter at fault."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InputError("body", "must be a JSON object of run parameters", 400)
    unknown = sorted(set(body) - set(RUN_FIELDS))
    if unknown:
        raise InputError(unknown[0], "is not a run parameter")
    models = body.get("models", list(ar.model_names()))
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InputError("models", "must be a list of model names")
    kwargs = {}
    for name in RUN_FIELDS[1:]:
        if name not in body:
            continue
        value = body[name]
        if name == "level":
            if not isinstance(value, str):
                raise InputError(name, "must be a string")
        elif name == "position_shares":
            if not (isinstance(value, list) and len(value) == 2):
                raise InputError(name, "must be [first, last]")
            value = tuple(_number(f"{name}[{i}]", x) for i, x in enumerate(value))
        else:
            value = _number(name, value, whole=name in _WHOLE)
        kwargs[name] = value
    params = ar.RunParams(dataset_id=ensure_live_dataset(engine, workspace_id, actor=actor), models=tuple(models), **kwargs)
    try:
        return params.validated()
    except ar.RunError as exc:
        raise InputError(exc.field or "body", str(exc)) from None


_WHOLE = frozenset({"order", "bootstrap", "seed"})


def _number(name: str, value: object, *, whole: bool = False) -> int | float:
    """A JSON number as a float (or an int when ``whole``); `InputError` naming ``name`` for anything else.
    A huge number is refused as a float first: ``int()`` of 1e1000000 would take minutes of CPU."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InputError(name, "must be a number")
    if isinstance(value, int) and whole:
        return value
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise InputError(name, "must be a finite number")
    if not whole:
        return number
    if number != int(number) or (isinstance(value, Decimal) and value != value.to_integral_value()):
        raise InputError(name, "must be a whole number")
    return int(value)


#: Runs a workspace may have waiting at once: one worker computes them in turn, so a client starting
#: runs in a loop would queue work without end (and take the collector's CPU from ingest).
MAX_QUEUED_RUNS = 5


@guarded(Role.ANALYST, "attribution.api_run", collector="server")
def create_job(engine, workspace_id: str, params: ar.RunParams, *, actor=None) -> tuple[int, bool]:
    """Queue a run: ``(job id, True)``; a run with the same parameters already waiting is that job's
    ``(id, False)`` (one computation answers both); `InputError` 429 when `MAX_QUEUED_RUNS` wait."""
    wanted = params.to_dict()
    with transaction(engine, workspace_id) as s:
        waiting = s.scalars(select(TrackingRunJob).where(TrackingRunJob.status == "queued").order_by(TrackingRunJob.id)).all()
        for job in waiting:
            if job.params == wanted:
                return int(job.id), False
        if len(waiting) >= MAX_QUEUED_RUNS:
            raise InputError("body", f"{len(waiting)} runs are already waiting in this workspace; poll them "
                                     "(GET /v1/attribution/runs/{id}) and start more when they are done", 429)
        job = TrackingRunJob(status="queued", params=wanted)
        s.add(job)
        s.flush()
        return int(job.id), True


@guarded(Role.ANALYST, "attribution.api_run", collector="server", audit=False)
def run_job(engine, workspace_id: str, job_id: int, *, actor=None) -> None:
    """Compute a queued job (in a worker thread); its status says how it ended, it never raises."""
    with transaction(engine, workspace_id) as s:
        job = s.scalar(select(TrackingRunJob).where(TrackingRunJob.id == int(job_id)))
        params = ar.RunParams.from_dict(job.params)
        job.status = "running"
    last = [0.0]

    def progress(fraction: float, text: str) -> None:
        if fraction - last[0] >= 0.1:
            last[0] = fraction
            with transaction(engine, workspace_id) as s:
                s.execute(update(TrackingRunJob).where(TrackingRunJob.id == int(job_id)).values(progress=fraction, message=text[:500]))

    try:
        run = ar.execute_run(engine, workspace_id, params, progress, actor=actor)
        values = {"status": "done", "run_id": run.id, "progress": 1.0,
                  "message": "reused a stored run (no new events since)" if run.reused else "done"}
    except (ar.RunError, ValueError) as exc:
        values = {"status": "failed", "message": str(exc)[:2000]}
    except Exception as exc:  # report, never crash the worker
        values = {"status": "failed", "message": f"{type(exc).__name__}: {str(exc)[:500]}"}
    with transaction(engine, workspace_id) as s:
        s.execute(update(TrackingRunJob).where(TrackingRunJob.id == int(job_id)).values(finished_at=utcnow(), **values))


def fail_interrupted_jobs(engine) -> int:
    """Jobs left queued or running by a collector that stopped: marked failed (run them again)."""
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        result = s.execute(update(TrackingRunJob).where(TrackingRunJob.status.in_(("queued", "running")))
                           .values(status="failed", finished_at=utcnow(), message="the collector stopped during the run; start it again"))
        return int(result.rowcount or 0)


def job_status(engine, workspace_id: str, job_id: int) -> dict | None:
    """Status, progress and (when done) the credit table of a job of this workspace; None if unknown."""
    with transaction(engine, workspace_id) as s:
        job = s.scalar(select(TrackingRunJob).where(TrackingRunJob.id == int(job_id)))
        if job is None:
            return None
        out = {"id": job.id, "status": job.status, "progress": job.progress, "message": job.message,
               "created_at": job.created_at.isoformat(), "finished_at": job.finished_at.isoformat() if job.finished_at else None,
               "params": job.params, "run_id": job.run_id}
    if out["status"] == "done" and out["run_id"]:
        run = ar.load_run(engine, workspace_id, out["run_id"])
        out["results"] = ar._table_records(run.table)
        out["totals"] = {k: run.extra.get(k) for k in ("total_conversions", "total_value", "n_journeys", "n_paths")}
    return out


_PATHS: dict[tuple, object] = {}  # (engine, workspace, run id) -> the run's PathTable, a few kept


def _run_paths(engine, workspace_id: str, run: ar.StoredRun):
    """The PathTable of a run's data set (shapley_rate's per-journey split refits its game on it)."""
    key = (id(engine), workspace_id, run.id)
    if key not in _PATHS:
        if len(_PATHS) >= 4:
            _PATHS.pop(next(iter(_PATHS)))
        _PATHS[key] = ar.load_inputs(engine, workspace_id, run.params)[0]
    return _PATHS[key]


def user_journeys(engine, workspace_id: str, user_key: str, *, actor=None) -> dict:
    """One user's tracked touches and conversions, journeys and their credit under the latest run."""
    from core.journeys import build_journeys

    user_key = text_field("user_key", user_key, USER_KEY_LIMIT)  # as the collector stored it
    dataset_id = ensure_live_dataset(engine, workspace_id, actor=actor)
    touch, conv = tracked_frames(engine, workspace_id, user_key=user_key)
    if touch.empty and conv.empty:
        raise InputError("user_key", f"no tracked events for user {user_key!r}", 404)
    text = touch[["source", "medium", "campaign"]].astype(object).where(touch[["source", "medium", "campaign"]].notna(), None)
    events = {"touches": [{"ts": ts.isoformat(), "channel": str(ch), "source": src, "medium": med, "campaign": camp}
                          for ts, ch, src, med, camp in zip(touch["ts"], touch["channel"], text["source"], text["medium"], text["campaign"])],
              "conversions": [{"ts": r.ts.isoformat(), "event_id": r.conversion_id, "type": r.type, "value": r.value,
                               "currency": r.currency} for r in conv.itertuples()]}
    run_id = ar.latest_run_id(engine, workspace_id, dataset_id)
    if run_id is None:
        return {"user_key": user_key, "run": None, "journeys": [], **events,
                "note": "no attribution run on the tracked data yet: POST /v1/attribution/runs"}
    run = ar.load_run(engine, workspace_id, run_id)
    journeys = build_journeys(touch, conv, lookback_days=run.params.lookback_days, level=run.params.level)
    if "shapley_rate" in run.params.models:
        result = ar.drilldown_result(run, _run_paths(engine, workspace_id, run))
    else:
        from core.attribution.compare import AttributionResult

        result = AttributionResult(run.table, run.details, {})
    entries = ar.user_drilldown(result, journeys, user_key) if journeys.n_journeys else []
    return {"user_key": user_key, "run": {"id": run.id, "created_at": run.created_at.isoformat(), "models": list(run.params.models),
                                          "level": run.params.level, "lookback_days": run.params.lookback_days},
            "journeys": entries, **events}


__all__ = ["MAX_QUEUED_RUNS", "run_params", "create_job", "run_job", "job_status", "fail_interrupted_jobs", "user_journeys"]
