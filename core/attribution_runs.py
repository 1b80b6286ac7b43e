"""Attribution runs: parameters -> data set -> journeys -> PathTable -> every model, stored and reopened.

A run is computed once and stored in ``attribution_runs`` with its parameters, its tidy credit table
and the engine's details (Markov transition matrix, removal effects, ...), plus the credit split of
the most frequent converting paths for the journey drill-down. The Attribution page only reads stored
runs, so a browser refresh or a new session reopens a run without recomputing. Identical parameters
on an unchanged data set reuse the stored run (the run key hashes workspace, data set id, the data
set's content hash and the canonical parameters).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.access import Role, audit_target, guarded
from core.journeys.memory import MAX_LOOKBACK_DAYS
from core.pathtable import Journeys, PathTable
from core.store.db import transaction
from core.store.models import AttributionRun, Dataset

Progress = Callable[[float, str], None]

LEVELS = ("channel", "campaign")
#: Data set kinds attribution can run on.
ATTRIBUTABLE_KINDS = ("journeys", "paths")
#: Models that need event timestamps (event-level data sets only).
TIMED_MODELS = ("time_decay",)
MAX_BOOTSTRAP = 2000
#: How many of the most frequent converting paths get a stored drill-down.
DRILLDOWN_PATHS = 25
TABLE_COLUMNS = ["channel", "model", "conversions", "value", "share", "conversions_low", "conversions_high", "value_low", "value_high"]


class RunError(ValueError):
    """Bad run parameters or a data set a run cannot use; the message says which and why, and ``field``
    names the `RunParams` field at fault (None when no one field is)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RunNotFound(LookupError):
    """No stored run with that id in this workspace."""


# --------------------------------------------------------------------------- parameters
def model_names() -> tuple[str, ...]:
    """The engine's model names, in its display order."""
    from core.attribution.compare import MODEL_NAMES

    return tuple(MODEL_NAMES)


@dataclass(frozen=True)
class RunParams:
    """Everything that determines a run's numbers."""

    dataset_id: int
    models: tuple[str, ...]
    lookback_days: float = 30.0
    level: str = "channel"
    order: int = 1
    position_shares: tuple[float, float] = (0.4, 0.4)
    half_life_days: float = 7.0
    bootstrap: int = 0
    seed: int = 0

    def validated(self) -> "RunParams":
        """Normalized copy (floats, tuples, models in engine order); raises `RunError` naming the bad field."""
        known = model_names()
        models = tuple(str(m) for m in self.models)
        if not models:
            raise RunError("pick at least one model", "models")
        unknown = sorted(set(models) - set(known))
        if unknown:
            raise RunError(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(known)}", "models")
        models = tuple(m for m in known if m in models)
        try:
            dataset_id = int(self.dataset_id)
            lookback = float(self.lookback_days)
            order = int(self.order)
            first, last = (float(x) for x in self.position_shares)
            half_life = float(self.half_life_days)
            bootstrap = int(self.bootstrap)
            seed = int(self.seed)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RunError(f"run parameters must be numbers: {exc}") from None
        if not math.isfinite(lookback) or not 0 < lookback <= MAX_LOOKBACK_DAYS:
            raise RunError(f"lookback must be a positive number of days up to {MAX_LOOKBACK_DAYS:,}, got {self.lookback_days!r}",
                           "lookback_days")
        if self.level not in LEVELS:
            raise RunError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}", "level")
        if not 1 <= order <= 4:
            raise RunError(f"Markov order must be 1 to 4, got {self.order!r}", "order")
        if not (math.isfinite(first) and math.isfinite(last)) or first < 0 or last < 0 or first + last > 1 + 1e-12:
            raise RunError(
                f"position shares: first and last must be >= 0 and add up to at most 1 (100%); got first={first:g}, last={last:g}",
                "position_shares")
        if not math.isfinite(half_life) or half_life <= 0:
            raise RunError(f"time-decay half-life must be a positive number of days, got {self.half_life_days!r}", "half_life_days")
        if not 0 <= bootstrap <= MAX_BOOTSTRAP:
            raise RunError(f"bootstrap replicates must be 0 to {MAX_BOOTSTRAP}, got {self.bootstrap!r}", "bootstrap")
        if seed < 0:
            raise RunError(f"seed must be >= 0, got {seed}", "seed")
        return RunParams(dataset_id, models, lookback, self.level, order, (first, last), half_life, bootstrap, seed)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["position_shares"] = list(self.position_shares)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunParams":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["models"] = tuple(kw.get("models", ()))
        if "position_shares" in kw:
            kw["position_shares"] = tuple(kw["position_shares"])
        return cls(**kw)

    def digest(self) -> str:
        """sha256 of the canonical parameters."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def run_key(workspace: str, dataset_content_hash: str, params: RunParams) -> str:
    """Cache/reuse key of a run: workspace + data set id + data set content + parameter hash."""
    text = json.dumps([workspace, int(params.dataset_id), dataset_content_hash or "", params.digest()])
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- stored runs
@dataclass
class StoredRun:
    """A run as stored: parameters, tidy credit table, engine details and the drill-down of top paths."""

    id: int
    dataset_id: int
    dataset_name: str
    params: RunParams
    table: pd.DataFrame
    details: dict
    created_at: dt.datetime
    seconds: float
    key: str = ""
    reused: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        cal = self.extra.get("calibration")
        return describe_run(self.id, self.created_at, self.params, None if not cal else int(cal["from_run"]))


def describe_run(run_id: int, created_at: dt.datetime, params: RunParams, calibrated_from: int | None = None) -> str:
    """One line naming a run for selectors and captions."""
    when = created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"#{run_id} · {when} · {params.level} · {params.lookback_days:g} d · {len(params.models)} models"
        + (f" · {params.bootstrap} bootstrap" if params.bootstrap else "")
        + (f" · calibrated to lift tests (from #{calibrated_from})" if calibrated_from is not None else "")
    )


def _jsonable(obj):
    """Plain JSON values: numpy scalars/arrays converted, NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, (pd.Timestamp, dt.datetime, dt.date)):
        return obj.isoformat()
    raise TypeError(f"cannot store a {type(obj).__name__} in a run's details")


def _table_records(table: pd.DataFrame) -> list[dict]:
    """The tidy table as JSON records (the ``results`` column's contract; NaN stored as null)."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise RunError(f"the engine's credit table lacks column(s): {', '.join(missing)}")
    frame = table[TABLE_COLUMNS].astype({c: object for c in ("channel", "model")})
    return _jsonable(frame.to_dict(orient="records"))


def _table_frame(records: list[dict]) -> pd.DataFrame:
    """Stored records back into the tidy table (null -> NaN, engine column order)."""
    frame = pd.DataFrame.from_records(records or [], columns=TABLE_COLUMNS)
    out = {c: frame[c].astype("str") if c in ("channel", "model") else pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
           for c in TABLE_COLUMNS}
    return pd.DataFrame(out)


def _to_stored(row: AttributionRun, dataset_name: str, reused: bool = False) -> StoredRun:
    details = dict(row.details or {})
    extra = details.pop("_run", {})
    params = RunParams.from_dict(row.params)
    return StoredRun(row.id, row.dataset_id, dataset_name, params, _table_frame(row.results), details, row.created_at,
                     row.seconds, key=str(row.params.get("_key", "")), reused=reused, extra=extra)


def list_attributable_datasets(engine: Engine, workspace: str) -> pd.DataFrame:
    """Data sets attribution can run on (event-level or path-level): id, name, kind, created_at, newest first."""
    with transaction(engine, workspace) as s:
        rows = s.execute(
            select(Dataset.id, Dataset.name, Dataset.kind, Dataset.created_at)
            .where(Dataset.kind.in_(ATTRIBUTABLE_KINDS))
            .order_by(Dataset.id.desc())
        ).all()
    return pd.DataFrame(rows, columns=["id", "name", "kind", "created_at"])


def _dataset(session, dataset_id: int) -> Dataset:
    ds = session.scalars(select(Dataset).where(Dataset.id == int(dataset_id))).first()
    if ds is None:
        raise RunError(f"data set {dataset_id} does not exist in this workspace")
    if ds.kind not in ATTRIBUTABLE_KINDS:
        raise RunError(f"data set {ds.name!r} holds {ds.kind} data; attribution needs journeys (events) or paths")
    return ds


@guarded(Role.ANALYST, "attribution.run", collector="server")
def store_run(engine: Engine, workspace: str, params: RunParams, table: pd.DataFrame, details: dict,
              seconds: float, *, key: str = "", extra: dict | None = None, actor: str | None = None) -> int:
    """Store a computed run in one transaction; returns its id."""
    params = params.validated()
    payload = params.to_dict() | {"_key": key}
    if extra and extra.get("calibration"):  # listed without loading the run's results
        payload["_calibrated_from"] = int(extra["calibration"]["from_run"])
    det = _jsonable(dict(details) | {"_run": extra or {}})
    with transaction(engine, workspace) as s:
        _dataset(s, params.dataset_id)
        row = AttributionRun(dataset_id=params.dataset_id, params=payload, results=_table_records(table),
                             details=det, seconds=float(seconds))
        s.add(row)
        s.flush()
        audit_target(f"attribution run #{row.id} of data set #{params.dataset_id}")
        return int(row.id)


def load_run(engine: Engine, workspace: str, run_id: int) -> StoredRun:
    """A stored run of this workspace; raises `RunNotFound`."""
    with transaction(engine, workspace) as s:
        row = s.scalars(select(AttributionRun).where(AttributionRun.id == int(run_id))).first()
        if row is None:
            raise RunNotFound(f"attribution run {run_id} does not exist in workspace {workspace!r}")
        name = s.scalar(select(Dataset.name).where(Dataset.id == row.dataset_id)) or ""
        return _to_stored(row, name)


def list_runs(engine: Engine, workspace: str, dataset_id: int | None = None) -> pd.DataFrame:
    """Stored runs (newest first): id, dataset_id, created_at, seconds, models, level, lookback_days, bootstrap,
    label, opened_at (ISO time the user last opened it, "" if never)."""
    q = select(AttributionRun.id, AttributionRun.dataset_id, AttributionRun.created_at, AttributionRun.seconds, AttributionRun.params)
    if dataset_id is not None:
        q = q.where(AttributionRun.dataset_id == int(dataset_id))
    with transaction(engine, workspace) as s:
        rows = s.execute(q.order_by(AttributionRun.id.desc())).all()
    records = []
    for rid, ds, created, secs, p in rows:
        params = RunParams.from_dict(p)
        records.append({
            "id": int(rid), "dataset_id": int(ds), "created_at": created, "seconds": float(secs),
            "models": ", ".join(params.models), "level": params.level, "lookback_days": params.lookback_days,
            "bootstrap": params.bootstrap,
            "label": describe_run(rid, created, params, p.get("_calibrated_from")),
            "opened_at": str(p.get("_opened_at", "")),
        })
    cols = ["id", "dataset_id", "created_at", "seconds", "models", "level", "lookback_days", "bootstrap", "label", "opened_at"]
    return pd.DataFrame.from_records(records, columns=cols)


def latest_run_id(engine: Engine, workspace: str, dataset_id: int | None = None) -> int | None:
    """The newest run of a data set (or of the workspace when ``dataset_id`` is None)."""
    q = select(AttributionRun.id)
    if dataset_id is not None:
        q = q.where(AttributionRun.dataset_id == int(dataset_id))
    with transaction(engine, workspace) as s:
        rid = s.scalar(q.order_by(AttributionRun.id.desc()).limit(1))
    return None if rid is None else int(rid)


@guarded(Role.VIEWER, "attribution.open", audit=False)
def mark_opened(engine: Engine, workspace: str, run_id: int, *, actor: str | None = None) -> None:
    """Remember that the user opened this run (``params["_opened_at"]``), so a refresh or a new session
    reopens it: `last_opened_run` reads it back. Only the small parameters JSON is rewritten; the run's
    numbers never change."""
    with transaction(engine, workspace) as s:
        row = s.scalars(select(AttributionRun).where(AttributionRun.id == int(run_id))).first()
        if row is None:
            raise RunNotFound(f"attribution run {run_id} does not exist in workspace {workspace!r}")
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        row.params = dict(row.params or {}) | {"_opened_at": stamp}  # a new dict, so the JSON change is saved


def last_opened_run(engine: Engine, workspace: str, dataset_id: int | None = None) -> int | None:
    """The run the user opened last (of one data set, or of the workspace); None if none was ever opened."""
    runs = list_runs(engine, workspace, dataset_id)
    opened = runs[runs["opened_at"].astype(str) != ""]
    if opened.empty:
        return None
    return int(opened.sort_values(["opened_at", "id"], ascending=False)["id"].iloc[0])


def find_run(engine: Engine, workspace: str, key: str, dataset_id: int) -> int | None:
    """The newest stored run with this run key, if any."""
    with transaction(engine, workspace) as s:
        rows = s.execute(
            select(AttributionRun.id, AttributionRun.params)
            .where(AttributionRun.dataset_id == int(dataset_id))
            .order_by(AttributionRun.id.desc())
        ).all()
    for rid, p in rows:
        if p.get("_key") == key:
            return int(rid)
    return None


# --------------------------------------------------------------------------- computing
def load_inputs(engine: Engine, workspace: str, params: RunParams, progress: Progress | None = None
                ) -> tuple[PathTable, Journeys | None]:
    """The PathTable (and Journeys for event-level data) a run works on."""
    paths, journeys, _ = _inputs(engine, workspace, params, progress)
    return paths, journeys


def value_currency(conversions: pd.DataFrame | None) -> str:
    """The currency of the conversion values a run credits: one code, several joined by "/" (the values of a
    data set in several currencies are added as they are), "" when unknown (a path table has none)."""
    if conversions is None or "currency" not in conversions.columns or conversions.empty:
        return ""
    codes = conversions["currency"].dropna().astype(str).str.strip().str.upper()
    return "/".join(sorted(set(codes) - {""}))


def run_currency(engine: Engine, workspace: str, run: StoredRun) -> str:
    """`value_currency` of ``run``: stored with the run; for a run stored before, its data set's as it is now."""
    if "currency" in run.extra:
        return str(run.extra["currency"] or "")
    from core.ingest.persist import load_events

    with transaction(engine, workspace) as s:
        kind = _dataset(s, run.dataset_id).kind
    if kind != "journeys":
        return ""
    _, conversions = load_events(engine, workspace, run.dataset_id,
                                 {"touchpoints": ["user_key", "ts"], "conversions": ["user_key", "ts", "currency"]})
    return value_currency(conversions)


def _inputs(engine: Engine, workspace: str, params: RunParams, progress: Progress | None = None
            ) -> tuple[PathTable, Journeys | None, str]:
    """`load_inputs` and the `value_currency` of the conversions."""
    from core.ingest.persist import load_events, load_pathtable
    from core.journeys import build_journeys_with_report

    with transaction(engine, workspace) as s:
        kind = _dataset(s, params.dataset_id).kind
    if kind == "paths":
        if params.level != "channel":
            raise RunError("a path-level data set has no campaign ids: choose the channel level")
        bad = [m for m in params.models if m in TIMED_MODELS]
        if bad:
            raise RunError(f"{', '.join(bad)} needs event timestamps; this data set is a path-level table")
        return load_pathtable(engine, workspace, params.dataset_id), None, ""
    touchpoints, conversions = load_events(engine, workspace, params.dataset_id)
    if conversions.empty:
        raise RunError("this data set has no conversions: attribution needs at least one")
    journeys, report = build_journeys_with_report(touchpoints, conversions, lookback_days=params.lookback_days,
                                                  level=params.level, progress=progress)
    reason = report.no_credit_reason()  # never a plausible table in which every conversion is "(no touch)"
    if reason:
        raise RunError(reason)
    return journeys.to_pathtable(), journeys, value_currency(conversions)


def top_converting_paths(paths: PathTable, n: int = DRILLDOWN_PATHS) -> pd.DataFrame:
    """The ``n`` paths with the most conversions: index, path text, conversions, value, nulls."""
    conv = paths.conversions
    idx = np.flatnonzero(conv > 0)
    idx = idx[np.lexsort((idx, -conv[idx]))][:n]
    names = np.asarray(paths.channels, dtype=object)
    text = [" > ".join(names[paths.codes[paths.offsets[i]:paths.offsets[i + 1]]]) for i in idx.tolist()]
    return pd.DataFrame({"path_index": idx, "path": text, "conversions": conv[idx], "value": paths.value[idx],
                         "nulls": paths.nulls[idx]})


@guarded(Role.ANALYST, "attribution.run", collector="server")
def execute_run(engine: Engine, workspace: str, params: RunParams, progress: Progress | None = None,
                *, reuse: bool = True, actor: str | None = None) -> StoredRun:
    """Compute (or reuse) and store a run: data set -> journeys -> PathTable -> run_attribution.

    ``progress(fraction, text)`` gets the stages: loading 0-0.2, journeys 0.2-0.35, models 0.35-0.95.
    """
    from core.attribution.calibration import channel_days
    from core.attribution.compare import run_attribution
    from core.attribution.explorer import explore

    def step(lo: float, hi: float) -> Progress | None:
        if progress is None:
            return None
        return lambda f, text: progress(lo + (hi - lo) * min(max(float(f), 0.0), 1.0), text)

    from core.ingest.persist import content_hash as dataset_content_hash

    params = params.validated()
    with transaction(engine, workspace) as s:
        ds_name = _dataset(s, params.dataset_id).name
    content_hash = dataset_content_hash(engine, workspace, params.dataset_id)  # live data sets: as of now
    key = run_key(workspace, content_hash, params)
    if reuse:
        found = find_run(engine, workspace, key, params.dataset_id)
        if found is not None:
            run = load_run(engine, workspace, found)
            run.reused = True
            if progress:
                progress(1.0, f"reused stored run #{found} (same data and parameters)")
            return run
    t0 = time.perf_counter()
    if progress:
        progress(0.0, f"loading data set {ds_name!r}")
    paths, journeys, currency = _inputs(engine, workspace, params, step(0.2, 0.35))
    paths.validate()
    result = run_attribution(
        paths, journeys, list(params.models), order=params.order, position_shares=params.position_shares,
        half_life_days=params.half_life_days, bootstrap=params.bootstrap, seed=params.seed,
        progress=step(0.35, 0.95),
    )
    if progress:
        progress(0.95, "summarising the journeys for the path explorer")
    extra = {"drilldown": drilldown_table(paths, journeys, result), "n_paths": paths.n_paths,
             "explorer": explore(paths, journeys),
             "channel_days": None if journeys is None else channel_days(journeys),
             "n_channels": paths.n_channels, "total_conversions": paths.total_conversions,
             "total_value": paths.total_value, "total_nulls": paths.total_nulls,
             "n_journeys": None if journeys is None else journeys.n_journeys, "currency": currency}
    seconds = time.perf_counter() - t0
    if progress:
        progress(0.97, "storing the run")
    run_id = store_run(engine, workspace, params, result.table, result.details, seconds, key=key, extra=extra,
                       actor=actor)
    if progress:
        progress(1.0, f"stored run #{run_id}")
    return load_run(engine, workspace, run_id)


def _journey_entry(result, journeys: Journeys, j: int, **counts) -> dict:
    """Drill-down record of journey ``j``: its path, user, conversion, timestamps and split under every model."""
    from core.attribution.compare import explain_journey

    a, b = int(journeys.offsets[j]), int(journeys.offsets[j + 1])
    path = journeys.path(j)
    split = explain_journey(result, path, journeys.touch_ts[a:b], int(journeys.end_ts[j]))
    entry = {
        "path": " > ".join(path),
        "user_key": str(journeys.user_key[j]),
        "conversion_id": None if journeys.conversion_id[j] is None else str(journeys.conversion_id[j]),
        "converted": bool(journeys.conversions[j] > 0),
        "journey_value": float(journeys.value[j]),
        "end_ts": pd.Timestamp(int(journeys.end_ts[j]), unit="ns", tz="UTC").isoformat(),
        "touch_ts": [pd.Timestamp(int(t), unit="ns", tz="UTC").isoformat() for t in journeys.touch_ts[a:b]],
        "split": split.to_dict(orient="list"),
    }
    return _jsonable(entry | counts)


def drilldown_table(paths: PathTable, journeys: Journeys | None, result, n: int = DRILLDOWN_PATHS) -> list[dict]:
    """Credit split under every model of the ``n`` most converting paths (stored with the run).

    With journeys, each path is shown through its most recent converting journey (real touch times,
    so time decay has its numbers); a path-level data set shows the bare path.
    """
    from core.attribution.compare import explain_journey

    if journeys is None:
        top = top_converting_paths(paths, n)
        return [
            _jsonable({"path": r.path, "conversions": r.conversions, "value": r.value, "nulls": r.nulls,
                       "split": explain_journey(result, paths.path(int(r.path_index))).to_dict(orient="list")})
            for r in top.itertuples(index=False)
        ]
    from core.journeys import unique_paths

    inverse, first = unique_paths(journeys.offsets, journeys.codes, len(journeys.channels))
    k = first.shape[0]
    conv = np.bincount(inverse, weights=journeys.conversions, minlength=k)
    value = np.bincount(inverse, weights=journeys.value, minlength=k)
    nulls = np.bincount(inverse, weights=(journeys.conversions <= 0).astype(np.float64), minlength=k)
    top = np.flatnonzero(conv > 0)
    top = top[np.lexsort((top, -conv[top]))][:n]
    # Representative journey per unique path: its latest converting journey.
    cj = np.flatnonzero(journeys.conversions > 0)
    o = cj[np.lexsort((journeys.end_ts[cj], inverse[cj]))]
    last = np.ones(o.shape[0], dtype=bool)
    last[:-1] = inverse[o][1:] != inverse[o][:-1]
    rep = np.full(k, -1, dtype=np.int64)
    rep[inverse[o][last]] = o[last]
    return [_journey_entry(result, journeys, int(rep[u]), conversions=conv[u], value=value[u], nulls=nulls[u])
            for u in top.tolist()]


def drilldown_result(run: StoredRun, paths: PathTable):
    """What `explain_journey` needs for a stored run: its stored details, with the fitted models rebuilt.

    The rate game (2^channels numbers) is not stored; it is rebuilt exactly from the data and the stored
    shrinkage, and the conversion model from its stored coefficients.
    """
    from core.attribution.compare import AttributionResult, rebuild_fitted

    return AttributionResult(run.table, run.details, rebuild_fitted(paths, run.details))


MAX_USER_JOURNEYS = 50


def user_drilldown(result, journeys: Journeys | None, user_key: str) -> list[dict]:
    """The journeys of one user (newest first, at most 50), each with its split under every model."""
    if journeys is None:
        raise RunError("this data set is a path-level table: it has no user keys to look up")
    user_key = str(user_key).strip()
    if not user_key:
        raise RunError("type a user key")
    idx = np.flatnonzero(journeys.user_key == user_key)
    if idx.size == 0:
        raise RunError(f"user {user_key!r} has no journey in this run's data (lookback and level as in the run)")
    idx = idx[np.argsort(-journeys.end_ts[idx], kind="stable")][:MAX_USER_JOURNEYS]
    return [_journey_entry(result, journeys, int(j)) for j in idx.tolist()]


def split_frame(entry: dict) -> pd.DataFrame:
    """A drill-down record's split as a table: channel, model, share."""
    return pd.DataFrame(entry["split"], columns=["channel", "model", "share"])

# --------------------------------------------------------------------------- views for the page
def shapley_vs_markov(table: pd.DataFrame) -> pd.DataFrame:
    """Per channel and Shapley variant: Shapley credit minus Markov credit (conversions)."""
    wide = table.pivot_table(index="channel", columns="model", values="conversions", aggfunc="sum")
    if "markov" not in wide.columns:
        return pd.DataFrame(columns=["channel", "variant", "difference"])
    variants = [m for m in wide.columns if str(m).startswith("shapley")]
    frames = [pd.DataFrame({"channel": wide.index.astype(str), "variant": v, "difference": (wide[v] - wide["markov"]).to_numpy()})
              for v in variants]
    if not frames:
        return pd.DataFrame(columns=["channel", "variant", "difference"])
    return pd.concat(frames, ignore_index=True)


def removal_effects(run: StoredRun) -> pd.DataFrame:
    """Markov removal effects per channel (conversion and value), largest first; empty without Markov."""
    mk = run.details.get("markov")
    if not mk:
        return pd.DataFrame(columns=["channel", "removal_effect", "value_removal_effect"])
    re, rv = mk.get("removal_effects", {}), mk.get("value_removal_effects", {})
    frame = pd.DataFrame({"channel": list(re), "removal_effect": [np.nan if v is None else v for v in re.values()],
                          "value_removal_effect": [np.nan if rv.get(c) is None else rv.get(c) for c in re]})
    return frame.sort_values(["removal_effect", "channel"], ascending=[False, True], ignore_index=True)


MAX_HEATMAP_STATES = 40


def transition_frame(run: StoredRun, max_states: int = MAX_HEATMAP_STATES) -> pd.DataFrame:
    """Markov transition probabilities (from, to, probability) for the heat map.

    At higher orders there can be thousands of states: only the ``max_states`` busiest transient states
    (by probability mass flowing in) are kept, with (start), (conversion) and (null) always shown.
    """
    mk = run.details.get("markov")
    if not mk or "transition_matrix" not in mk:
        return pd.DataFrame(columns=["from", "to", "probability"])
    tm = mk["transition_matrix"]
    states = np.asarray(tm["states"], dtype=object)
    fr = np.asarray(tm["from"], dtype=np.int64)
    to = np.asarray(tm["to"], dtype=np.int64)
    p = np.asarray(tm["probability"], dtype=np.float64)
    special = np.isin(states, ["(start)", "(conversion)", "(null)"])
    transient = np.flatnonzero(~special)
    if transient.size > max_states:
        inflow = np.bincount(to, weights=p, minlength=states.shape[0])
        keep_t = transient[np.argsort(-inflow[transient], kind="stable")[:max_states]]
        keep = np.zeros(states.shape[0], dtype=bool)
        keep[keep_t] = True
        keep |= special
        sel = keep[fr] & keep[to]
        fr, to, p = fr[sel], to[sel], p[sel]
    return pd.DataFrame({"from": states[fr].astype(str), "to": states[to].astype(str), "probability": p})


def interval_text(table: pd.DataFrame) -> pd.Series:
    """The bootstrap interval of the conversions as text ("low – high"), empty without a bootstrap."""
    lo, hi = table["conversions_low"], table["conversions_high"]
    text = lo.map("{:,.2f}".format) + " – " + hi.map("{:,.2f}".format)
    return text.where(lo.notna() & hi.notna(), "")


DISPLAY_COLUMNS = ["channel", "model", "conversions", "value", "share", "conversions_low", "conversions_high",
                   "value_low", "value_high", "interval"]
#: The columns of `display_table` that hold money (in the run's `run_currency`).
VALUE_COLUMNS = ["value", "value_low", "value_high"]


def display_table(run: StoredRun) -> pd.DataFrame:
    """The one tidy table the page shows and offers for download: every credit with its bootstrap interval
    (conversions and value as low/high columns, the conversion interval also as text; empty without a
    bootstrap)."""
    t = run.table
    out = t[DISPLAY_COLUMNS[:-1]].copy()
    out["interval"] = interval_text(t)
    return out


# --------------------------------------------------------------------------- accuracy views (issue 14)
def run_evaluation(run: StoredRun):
    """The run's held-out evaluation (`core.attribution.evaluate.Evaluation`), or None if it has none."""
    from core.attribution.evaluate import Evaluation

    ev = run.details.get("evaluation")
    return None if not ev else Evaluation.from_dict(ev)


def baseline_info(run: StoredRun) -> dict | None:
    """Data-driven's baseline: conversions no channel earned, their share, and the no-touch conversion rate."""
    dd = run.details.get("data_driven")
    if not dd:
        return None
    total = float(run.extra.get("total_conversions") or dd["baseline_conversions"] + dd["incremental_conversions"])
    return {"conversions": float(dd["baseline_conversions"]), "value": float(dd["baseline_value"]),
            "share": float(dd["baseline_conversions"]) / total if total else float("nan"), "rate": float(dd["baseline_rate"]),
            "incremental": float(dd["incremental_conversions"]), "form": dd.get("form_description", dd.get("form", ""))}


SUPPORT_COLUMNS = ["channel", "journeys", "converting_journeys", "data_weight", "smallest_set_journeys"]


def support_frame(run: StoredRun) -> pd.DataFrame:
    """How many journeys stand behind each channel's rate-game credit (empty when the run has no shrinkage)."""
    sup = (run.details.get("shapley_rate") or {}).get("support")
    if not sup:
        return pd.DataFrame(columns=SUPPORT_COLUMNS)
    frame = pd.DataFrame({c: sup[c] for c in SUPPORT_COLUMNS})
    for c in SUPPORT_COLUMNS[1:]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame.sort_values(["journeys", "channel"], ascending=[False, True], ignore_index=True)


def coefficient_frame(run: StoredRun) -> pd.DataFrame:
    """The fitted conversion model's coefficients per channel (data-driven runs)."""
    dd = run.details.get("data_driven")
    if not dd:
        return pd.DataFrame(columns=["channel", "effect"])
    return pd.DataFrame(dd["coefficients"])


def unmeasured_note(details: dict) -> str | None:
    """Which channels the data-driven model gave no effect (the data cannot tell theirs from zero), or None."""
    from core.attribution.fitted import MEASURED_EFFECT_Z

    off = (details.get("data_driven") or {}).get("unmeasured_channels") or []
    if not off:
        return None
    return (f"data_driven gives no effect to {', '.join(off)}: the data cannot tell {'its' if len(off) == 1 else 'their'} "
            f"effect from zero (under {MEASURED_EFFECT_Z:g} standard errors), so they get no credit, and their touches are passed over "
            "when the model finds a journey's first and last touch")


def negative_note(details: dict) -> str | None:
    """What negative Shapley values would have taken from channels under ``data_driven`` and ``shapley_rate`` (they
    earn no negative credit: `core.attribution.shapley.no_negative_credit`), or None."""
    kept = {m: float((details.get(m) or {}).get("negative_conversions") or 0.0) for m in ("data_driven", "shapley_rate")}
    kept = {m: x for m, x in kept.items() if x >= 0.005}
    if not kept:
        return None
    where = {"data_driven": "stay with the baseline",
             "shapley_rate": "are not taken: each journey is shared among its channels with positive values"}
    said = "; ".join(f"{m}: {x:,.2f} conversions that negative values would have taken from channels {where[m]}" for m, x in kept.items())
    return ("in the fitted models some touches lower the chance of converting (often because converting journeys end at "
            f"the conversion while the others run on); a channel earns no negative credit — {said}")


def explorer_frames(run: StoredRun) -> dict[str, pd.DataFrame]:
    """The path explorer's stored tables as frames (empty dict for runs stored before it existed)."""
    ex = run.extra.get("explorer")
    if not ex:
        return {}
    out = {k: pd.DataFrame(v) for k, v in ex.items() if isinstance(v, dict) and k not in ("sankey", "time_to_convert_summary")}
    return out
