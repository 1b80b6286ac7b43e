"""The shipped demo data (data/sample, made by data/make_sample.py), loaded into a fresh workspace.

On first start the app calls `prepare_in_background`, which runs `load_sample_if_empty` in a thread
while the first page shows at once with the preparation as progress, so a person sees data on every
page with no upload and no credentials. It goes through the normal ingestion path (`core.ingest.import_files`),
so the sample is stored exactly like a user's import and can be deleted like one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .store.db import DEFAULT_WORKSPACE, transaction
from .store.models import Dataset

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
#: Data set name -> files, imported in this order (one data set each).
SAMPLE_SETS: dict[str, tuple[str, ...]] = {
    "Sample journeys (demo)": ("events.csv.gz",),
    "Sample ad performance (demo)": (
        "performance.csv.gz",
        "performance_device.csv.gz",
        "performance_hour.csv.gz",
        "performance_placement.csv.gz",
    ),
}


def sample_files(folder: Path = SAMPLE_DIR) -> dict[str, list[Path]]:
    """The sample files by data set name; raises FileNotFoundError naming a missing one."""
    out = {}
    for name, files in SAMPLE_SETS.items():
        paths = [folder / f for f in files]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"sample file {p} is missing; run `python data/make_sample.py`")
        out[name] = paths
    return out


def workspace_is_empty(engine, workspace_id: str = DEFAULT_WORKSPACE) -> bool:
    """True when the workspace holds no data set at all."""
    with transaction(engine, workspace_id) as session:
        return not session.scalar(select(func.count()).select_from(Dataset))


#: The first-start steps with their share of the work (seen: journeys 3.6 s, performance 0.4 s,
#: sandbox 2 s, attribution run 1.8 s): the progress bar moves by these weights.
STEPS = (("Sample journeys (demo)", 0.40), ("Sample ad performance (demo)", 0.05), ("sandbox", 0.30), ("attribution", 0.25))


def load_sample_if_empty(engine, workspace_id: str = DEFAULT_WORKSPACE, *, progress=None, folder: Path = SAMPLE_DIR) -> list[int]:
    """Import the sample data sets when the workspace has no data set; returns the new data set ids.

    Then opens the sandbox ad account (the Optimizer's default data) and runs a default attribution
    of the sample journeys (the Attribution page's first results). ``progress(fraction, text)`` sees
    every step. Returns ``[]`` when the workspace already has data (or another process loaded the
    sample at the same moment: the data set name is unique per workspace, so a second import is refused).
    """
    if not workspace_is_empty(engine, workspace_id):
        return []
    from .ingest import import_files  # ingestion sits above the store; imported lazily

    sets = sample_files(folder)
    weights = dict(STEPS)
    done = 0.0

    def report(step: str, fraction: float, text: str) -> None:
        if progress is not None:
            progress(min(1.0, done + weights[step] * min(max(float(fraction), 0.0), 1.0)), text)

    ids: list[int] = []
    for name, paths in sets.items():
        try:
            dataset_id, _report = import_files(engine, workspace_id, paths, name=name,
                                               progress=lambda f, m, name=name: report(name, f, f"{name}: {m}"))
        except IntegrityError:
            return ids  # loaded concurrently by another session
        ids.append(int(dataset_id))
        done += weights.get(name, 0.0)
    if ids:
        report("sandbox", 0.0, "opening the sandbox ad account (simulated, no credentials needed)")
        open_sandbox_account(engine, workspace_id)
        done += weights["sandbox"]
        report("attribution", 0.0, "running a first attribution of the sample journeys")
        run_default_attribution(engine, workspace_id, ids[0],
                                progress=lambda f, m: report("attribution", f, f"attribution: {m}"))
    if progress is not None:
        progress(1.0, "ready")
    return ids


class Preparation:
    """The first-start preparation of one database running in a background thread, so the first page
    shows at once and the preparation as progress (`prepare_in_background`).

    ``snapshot()`` is safe to call from any thread: fraction (0-1), message, done, error.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.fraction, self.message, self.error = 0.0, "starting", None
        self.started = time.monotonic()
        self.seconds: float | None = None

    def update(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction, self.message = float(fraction), str(message)

    def finish(self, error: str | None = None) -> None:
        with self._lock:
            self.error = error
            self.fraction = 1.0 if error is None else self.fraction
            self.seconds = time.monotonic() - self.started
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the preparation ended (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def snapshot(self) -> dict:
        with self._lock:
            return {"fraction": self.fraction, "message": self.message, "done": self.done, "error": self.error,
                    "seconds": self.seconds}


_PREPARATIONS: dict[tuple[str, str], Preparation] = {}
_PREPARATIONS_LOCK = threading.Lock()


def prepare_in_background(engine, workspace_id: str = DEFAULT_WORKSPACE, *, folder: Path = SAMPLE_DIR) -> Preparation | None:
    """Start (once per database and workspace in this process) `load_sample_if_empty` in a background thread.

    Returns the running or finished `Preparation`, or None when the workspace already had data before
    any preparation started here. A failure is kept in ``error`` (the message, not the traceback).
    """
    key = (engine.url.render_as_string(hide_password=True), workspace_id)
    with _PREPARATIONS_LOCK:
        if key in _PREPARATIONS:
            return _PREPARATIONS[key]
        if not workspace_is_empty(engine, workspace_id):
            return None
        prep = _PREPARATIONS[key] = Preparation()

    def work() -> None:
        try:
            load_sample_if_empty(engine, workspace_id, progress=prep.update, folder=folder)
        except Exception as exc:  # shown on the page; the app stays usable without the sample
            prep.finish(f"{type(exc).__name__}: {exc}")
            return
        prep.finish()

    threading.Thread(target=work, name="marketing-suite-first-start", daemon=True).start()
    return prep


def preparation(engine, workspace_id: str = DEFAULT_WORKSPACE) -> Preparation | None:
    """The preparation started in this process for this database and workspace, if any."""
    with _PREPARATIONS_LOCK:
        return _PREPARATIONS.get((engine.url.render_as_string(hide_password=True), workspace_id))


def open_sandbox_account(engine, workspace_id: str) -> None:
    """Create and sync the simulated ad account, so the Optimizer has campaigns to work on at once."""
    from .optimize.session import ensure_sandbox

    ensure_sandbox(engine, workspace_id)


def run_default_attribution(engine, workspace_id: str, dataset_id: int, *, progress=None) -> int:
    """A first attribution run of the sample journeys (every model, bootstrap intervals), so the
    Attribution page shows results at once; returns its run id."""
    from .attribution_runs import RunParams, execute_run, model_names

    params = RunParams(dataset_id=dataset_id, models=tuple(model_names()), bootstrap=50, seed=0)
    return int(execute_run(engine, workspace_id, params, progress).id)
