"""`python -m core` never prints a traceback or a secret (issue 11 §2): an unreachable or unusable
``--db`` is one line; an unexpected error is one line with an error id, its detail in the error log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.small_events import EVENTS_CSV

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cretPW-0042"


def run(*args, home: Path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("db", [
    f"postgresql+psycopg://ann:{SECRET}@127.0.0.1:1/shop",
    f"postgresql+psycopg://ann@127.0.0.1:1/shop?password={SECRET}",
    "sqlite:////no/such/folder/app.db",
    f"nosuchdriver://ann:{SECRET}@host/db",
    f"not a url {SECRET}",
], ids=["unreachable server", "password in the query", "unwritable sqlite path", "unknown dialect", "not a url"])
def test_an_unusable_database_is_one_line_without_its_secret(tmp_path, db):
    events = tmp_path / "events.csv"
    events.write_text(EVENTS_CSV)
    out = run("import", str(events), "--db", db, home=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the database"), out.stderr
    assert "Traceback" not in out.stderr and SECRET not in out.stderr + out.stdout


def test_an_unexpected_error_is_one_line_with_an_error_id(tmp_path, monkeypatch, capsys):
    """A bug (here: a KeyError from inside a command) prints one line; the traceback goes to the error log."""
    import logging

    import core.__main__ as cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    app_logger = logging.getLogger("marketing_suite")  # the command line sends it to a file: undo that afterwards
    monkeypatch.setattr(app_logger, "propagate", app_logger.propagate)
    monkeypatch.setattr(app_logger, "handlers", [])  # as in a fresh process (page tests in this worker add a stderr handler)

    def broken(args):
        raise KeyError(f"token={SECRET}")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["paths"].set_defaults(func=broken)
    status = cli.main(["paths", "x.csv", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "an unexpected KeyError (error id " in err
    error_id = err.split("error id ")[1][:10]
    log = Path(err.split("the details are in ")[1].rstrip(")\n"))
    text = log.read_text()
    assert error_id in text and "Traceback" in text and "KeyError" in text and SECRET not in text
