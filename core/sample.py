"""The shipped demo data (data/sample, made by data/make_sample.py), loaded into a fresh workspace.

On first start the app calls `load_sample_if_empty` so a person sees data on every page with no
upload and no credentials. It goes through the normal ingestion path (`core.ingest.import_files`),
so the sample is stored exactly like a user's import and can be deleted like one.
"""

from __future__ import annotations

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


def load_sample_if_empty(engine, workspace_id: str = DEFAULT_WORKSPACE, *, progress=None, folder: Path = SAMPLE_DIR) -> list[int]:
    """Import the sample data sets when the workspace has no data set; returns the new data set ids.

    Returns ``[]`` when the workspace already has data (or another process loaded the sample at the
    same moment: the data set name is unique per workspace, so a second import is refused).
    """
    if not workspace_is_empty(engine, workspace_id):
        return []
    from .access import system_task

    with system_task("sample data (first start)") as actor:  # nobody's action, also when sign-in is required
        return _load_sample(engine, workspace_id, progress, folder, actor)


def _load_sample(engine, workspace_id: str, progress, folder: Path, actor) -> list[int]:
    from .ingest import import_files  # ingestion sits above the store; imported lazily

    sets = sample_files(folder)
    ids: list[int] = []
    for k, (name, paths) in enumerate(sets.items()):
        step = None
        if progress is not None:
            step = lambda f, m, k=k: progress((k + f) / len(sets), m)  # noqa: E731
        try:
            dataset_id, _report = import_files(engine, workspace_id, paths, name=name, progress=step, actor=actor)
        except IntegrityError:
            return ids  # loaded concurrently by another session
        ids.append(int(dataset_id))
    if ids:
        run_default_attribution(engine, workspace_id, ids[0], actor=actor)
        open_sandbox_account(engine, workspace_id, actor=actor)
    return ids


def open_sandbox_account(engine, workspace_id: str, *, actor=None) -> None:
    """Create and sync the simulated ad account, so the Optimizer has campaigns to work on at once."""
    from .optimize.session import ensure_sandbox

    ensure_sandbox(engine, workspace_id, actor=actor)


def run_default_attribution(engine, workspace_id: str, dataset_id: int, *, actor=None) -> int:
    """A first attribution run of the sample journeys (every model, bootstrap intervals), so the
    Attribution page shows results at once; returns its run id."""
    from .attribution_runs import RunParams, execute_run, model_names

    params = RunParams(dataset_id=dataset_id, models=tuple(model_names()), bootstrap=50, seed=0)
    return int(execute_run(engine, workspace_id, params, actor=actor).id)
