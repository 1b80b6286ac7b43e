"""The shipped demo data (data/sample, made by data/make_sample.py), loaded into a fresh workspace.

On first start the app calls `prepare_in_background`, which runs `load_sample_if_empty` in a child
process while the first page shows at once with the preparation as progress, so a person sees data on every
page with no upload and no credentials. It goes through the normal ingestion path (`core.ingest.import_files`),
so the sample is stored exactly like a user's import and can be deleted like one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
    from .access import system_task

    with system_task("sample data (first start)") as actor:  # nobody's action, also when sign-in is required
        return _load_sample(engine, workspace_id, progress, folder, actor)


def _load_sample(engine, workspace_id: str, progress, folder: Path, actor) -> list[int]:
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
                                               progress=lambda f, m, name=name: report(name, f, f"{name}: {m}"),
                                               actor=actor)
        except IntegrityError:
            return ids  # loaded concurrently by another session
        ids.append(int(dataset_id))
        done += weights.get(name, 0.0)
    if ids:
        report("sandbox", 0.0, "opening the sandbox ad account (simulated, no credentials needed)")
        open_sandbox_account(engine, workspace_id, actor=actor)
        done += weights["sandbox"]
        report("attribution", 0.0, "running a first attribution of the sample journeys")
        run_default_attribution(engine, workspace_id, ids[0],
                                progress=lambda f, m: report("attribution", f, f"attribution: {m}"), actor=actor)
    if progress is not None:
        progress(1.0, "ready")
    return ids


class Preparation:
    """The first-start preparation of one database, running in a separate process so the first page shows at
    once (no contention for the interpreter) and the preparation as progress (`prepare_in_background`).

    The child (``python -m core prepare-sample``) writes its progress to a small JSON file; ``snapshot()``
    reads it: fraction (0-1), message, done, error, seconds.
    """

    def __init__(self, process: subprocess.Popen | None, progress_file: Path, log_file: Path | None = None) -> None:
        self._process = process
        self.progress_file = progress_file
        self.log_file = log_file
        self.started = time.monotonic()
        self._finished: float | None = None

    def _returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int | None:
        """The child's process id (None when nothing was started)."""
        return None if self._process is None else self._process.pid

    @property
    def done(self) -> bool:
        return self._process is None or self._returncode() is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the preparation ended (True) or ``timeout`` seconds passed (False)."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def snapshot(self) -> dict:
        try:
            state = json.loads(self.progress_file.read_text())
        except (OSError, ValueError):
            state = {"fraction": 0.0, "message": "starting"}
        rc = self._returncode()
        done = self.done
        if done and self._finished is None:
            self._finished = time.monotonic()
        error = None
        if done and rc not in (0, None):
            error = state.get("error") or f"the preparation stopped (exit status {rc})"
        return {"fraction": float(state.get("fraction", 0.0)) if not done or error else 1.0,
                "message": str(state.get("message", "")), "done": done, "error": error,
                "seconds": None if self._finished is None else self._finished - self.started}


def write_progress(path: Path, fraction: float, message: str, error: str | None = None) -> None:
    """Write the preparation's progress atomically (the page may read it at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fraction": round(float(fraction), 4), "message": str(message), "error": error}))
    os.replace(tmp, path)


_PREPARATIONS: dict[tuple[str, str], Preparation] = {}
_PREPARATIONS_LOCK = threading.Lock()


def prepare_in_background(engine, workspace_id: str = DEFAULT_WORKSPACE) -> Preparation | None:
    """Start (once per database and workspace in this process) `load_sample_if_empty` in a child process.

    Returns the running or finished `Preparation`, or None when the workspace already had data before
    any preparation started here. The database URL reaches the child in its environment, never on its
    command line (where other users of the machine could read a password).
    """
    url = engine.url.render_as_string(hide_password=False)
    key = (engine.url.render_as_string(hide_password=True), workspace_id)
    with _PREPARATIONS_LOCK:
        if key in _PREPARATIONS:
            return _PREPARATIONS[key]
        if not workspace_is_empty(engine, workspace_id):
            return None
        folder = Path(tempfile.mkdtemp(prefix="marketing-suite-first-start-"))
        progress, log = folder / "progress.json", folder / "prepare.log"
        write_progress(progress, 0.0, "starting")
        env = dict(os.environ, MARKETING_SUITE_DB_URL=url, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1])] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "core", "prepare-sample", "--workspace", workspace_id,
                                     "--progress", str(progress)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=str(Path(__file__).resolve().parents[1]))
        _background_priority(proc.pid)
        prep = _PREPARATIONS[key] = Preparation(proc, progress, log)
        return prep


#: Niceness added to the preparation child: it yields the CPU to the app serving the first page (on two cores
#: the child, the app and the browser otherwise share them evenly), and runs at full speed when idle.
BACKGROUND_NICENESS = 10


def _background_priority(pid: int) -> None:
    """Lower the scheduling priority of the preparation child (POSIX; elsewhere it runs as it is)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + BACKGROUND_NICENESS))
    except (AttributeError, OSError):  # no setpriority (Windows) or the child already ended
        pass


def preparation(engine, workspace_id: str = DEFAULT_WORKSPACE) -> Preparation | None:
    """The preparation started in this process for this database and workspace, if any."""
    with _PREPARATIONS_LOCK:
        return _PREPARATIONS.get((engine.url.render_as_string(hide_password=True), workspace_id))


def run_preparation(engine, workspace_id: str, progress_file: Path) -> int:
    """The child's side (``python -m core prepare-sample``): load the sample, writing progress; exit status."""
    try:
        load_sample_if_empty(engine, workspace_id, progress=lambda f, m: write_progress(progress_file, f, m))
    except Exception as exc:  # shown on the page; the app stays usable without the sample
        write_progress(progress_file, 0.0, "failed", f"{type(exc).__name__}: {exc}")
        return 1
    write_progress(progress_file, 1.0, "ready")
    return 0


def open_sandbox_account(engine, workspace_id: str, *, actor=None) -> None:
    """Create and sync the simulated ad account, so the Optimizer has campaigns to work on at once."""
    from .optimize.session import ensure_sandbox

    ensure_sandbox(engine, workspace_id, actor=actor)


def run_default_attribution(engine, workspace_id: str, dataset_id: int, *, progress=None, actor=None) -> int:
    """A first attribution run of the sample journeys (every model, bootstrap intervals), so the
    Attribution page shows results at once; returns its run id."""
    from .attribution_runs import RunParams, execute_run, model_names

    params = RunParams(dataset_id=dataset_id, models=tuple(model_names()), bootstrap=50, seed=0)
    return int(execute_run(engine, workspace_id, params, progress, actor=actor).id)
