"""Fixtures of the command-line tests."""

from __future__ import annotations

import subprocess

import pytest

from core.__main__ import main


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """``python -m core ...`` in this process (fast); same entry point, exit status and streams. The
    default database is a fresh SQLite file; ``env_db=`` points the command at another one."""
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'default.db'}")

    def _run(*args, env_db=None):
        if env_db:
            monkeypatch.setenv("MARKETING_SUITE_DB_URL", env_db)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return _run
