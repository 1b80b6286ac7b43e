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


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "99999"], "argument --port: must be between 1 and 65535, got 99999"),
    (["serve", "--port", "0"], "argument --port: must be between 1 and 65535, got 0"),
    (["serve", "--workers", "0"], "argument --workers: must be between 1 and 64, got 0"),
    (["serve", "--rate-limit", "nan"], "argument --rate-limit: must be at least 0, got nan"),
    (["dispatch", "--lease-seconds", "-1"], "argument --lease-seconds: must be between 1 and 86400, got -1"),
    (["dispatch", "--lease-seconds", "soon"], "argument --lease-seconds: not a number: 'soon'"),
])
def test_out_of_range_numbers_are_usage_errors(argv, message, capsys):
    """A port past 65535 was bound modulo 65536 while uvicorn printed the number given; a negative lease was used."""
    import core.__main__ as cli

    with pytest.raises(SystemExit) as stop:
        cli.build_parser().parse_args(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_app_port_is_set_so_a_taken_port_is_an_error():
    """Streamlit moves to the next free port unless the port is set; from 8501 that is 8502, the collector's."""
    import inspect
    import tomllib

    from core.serve import serve

    config = tomllib.loads((Path(__file__).parents[2] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["port"] == 8501
    assert inspect.signature(serve).parameters["port"].default != config["server"]["port"]
