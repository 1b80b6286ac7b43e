"""`python -m core import|paths`: reports, ChannelAttribution output, and clear errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from tests.small_events import EVENTS_CSV

ROOT = Path(__file__).resolve().parents[2]

EVENTS = EVENTS_CSV


def run(*args, env_db=None):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(ROOT)}
    if env_db:
        env["MARKETING_SUITE_DB_URL"] = env_db
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_import_prints_the_report(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text(EVENTS)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = run("import", str(events), "--workspace", "cli", env_db=db)
    assert out.returncode == 0, out.stderr
    assert "imported dataset 1 into workspace 'cli'" in out.stdout
    assert "conversions" in out.stdout


def test_paths_writes_channelattribution_format(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text(EVENTS)
    dest = tmp_path / "paths.csv"
    out = run("paths", str(events), "--lookback-days", "30", "--out", str(dest))
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(dest)
    assert list(table.columns) == ["path", "total_conversions", "total_conversion_value", "total_null"]
    assert table["total_conversions"].sum() == 2
    assert table["total_conversion_value"].sum() == 200.5
    rows = dict(zip(table["path"], table["total_conversions"]))
    assert rows["google > email"] == 1 and rows["meta"] == 1


def test_bad_input_exits_non_zero_with_the_same_message(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(EVENTS.replace("120.50", "abc"))
    out = run("paths", str(bad), "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 2
    assert out.stderr.startswith("error: bad.csv, row 3") and "'value'" in out.stderr
    assert not (tmp_path / "p.csv").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = run("import", str(empty), env_db=f"sqlite:///{tmp_path / 'x.db'}")
    assert out.returncode == 2 and "empty.csv" in out.stderr
