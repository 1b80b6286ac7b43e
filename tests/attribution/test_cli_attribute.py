"""`python -m core attribute FILE [--models ...] [--order K] [--level channel|campaign] [--csv|--json]`.

On an event-level file (journeys built from the events, time decay included) and on a path-level table
(ChannelAttribution's Data.csv): the CSV has exactly the columns ``channel,model,conversions,value,share``
and its numbers are the engine's; bad input exits 2 with a clear message.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.__main__ import main
from core.attribution.compare import MODEL_NAMES, run_attribution
from core.attribution.markov import markov_attribution
from core.ingest import read_files
from core.journeys import build_journeys
from core.pathtable import PathTable

from .conftest import FIXTURES
from .test_heuristics import CA_HEURISTICS

ROOT = Path(__file__).resolve().parents[2]
CSV_COLUMNS = ["channel", "model", "conversions", "value", "share"]

EVENTS = """user_id,timestamp,event_type,source,medium,campaign_id,value,order_id
u1,2026-05-01T10:00:00Z,visit,google,cpc,brand,,
u1,2026-05-02T10:00:00Z,visit,newsletter,email,may,,
u1,2026-05-03T10:00:00Z,purchase,,,,120.50,o-1
u2,2026-05-01T09:00:00Z,visit,facebook,paid_social,spring,,
u2,2026-05-02T09:00:00Z,visit,google,cpc,generic,,
u2,2026-05-04T09:00:00Z,purchase,,,,80,o-2
u3,2026-05-02T08:00:00Z,visit,google,organic,,,
u4,2026-05-02T08:00:00Z,visit,newsletter,email,may,,
u4,2026-05-06T08:00:00Z,visit,facebook,paid_social,spring,,
u4,2026-05-07T08:00:00Z,purchase,,,,40,o-4
"""


@pytest.fixture
def events_file(tmp_path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    return path


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["attribute", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def _engine_table(path: Path, models, order: int = 1, level: str = "channel") -> pd.DataFrame:
    result = read_files([path])
    journeys = build_journeys(result.touchpoints, result.conversions, lookback_days=30.0, level=level)
    return run_attribution(journeys.to_pathtable(), journeys, models, order=order).table[CSV_COLUMNS]


def _assert_same(cli: pd.DataFrame, engine: pd.DataFrame) -> None:
    merged = cli.merge(engine, on=["channel", "model"], suffixes=("", "_engine"), validate="one_to_one")
    assert len(merged) == len(cli) == len(engine)
    for col in ("conversions", "value", "share"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_engine"], rtol=1e-9, atol=1e-9)


def test_event_file_csv_all_models(capsys, events_file):
    code, out, err = _cli(capsys, events_file, "--models", "all", "--csv")
    assert code == 0, err
    table = _csv(out)
    assert out.splitlines()[0] == "channel,model,conversions,value,share"
    assert list(table.columns) == CSV_COLUMNS
    assert list(dict.fromkeys(table["model"])) == list(MODEL_NAMES)  # time decay runs: the file has timestamps
    totals = table.groupby("model")[["conversions", "value", "share"]].sum()
    shared_out = totals.drop(index="data_driven")  # data-driven leaves the baseline's conversions to no channel
    np.testing.assert_allclose(shared_out["conversions"], 3.0, rtol=1e-9)  # three purchases
    np.testing.assert_allclose(shared_out["value"], 240.5, rtol=1e-9)
    assert 0 < totals.loc["data_driven", "conversions"] < 3.0
    np.testing.assert_allclose(totals["share"], 1.0, rtol=1e-9)
    _assert_same(table, _engine_table(events_file, list(MODEL_NAMES)))


def test_event_file_json_order_and_campaign_level(capsys, events_file):
    code, out, err = _cli(capsys, events_file, "--models", "markov,first", "--order", "2", "--json")
    assert code == 0, err
    records = pd.DataFrame(json.loads(out))
    assert list(records.columns) == CSV_COLUMNS and set(records["model"]) == {"markov", "first"}
    _assert_same(records, _engine_table(events_file, ["markov", "first"], order=2))

    code, out, err = _cli(capsys, events_file, "--models", "last", "--level", "campaign", "--csv")
    assert code == 0, err
    table = _csv(out)
    # channel:campaign_id; a touch without a campaign id keeps its channel
    assert sorted(table["channel"]) == ["email:may", "google:brand", "google:generic", "meta:spring", "organic"]
    _assert_same(table, _engine_table(events_file, ["last"], level="campaign"))


def test_path_file_matches_channelattribution_heuristics(capsys):
    data = FIXTURES / "Data.csv"
    code, out, err = _cli(capsys, data, "--models", "first,last,linear", "--csv")
    assert code == 0, err
    table = _csv(out)
    assert list(table.columns) == CSV_COLUMNS
    for col, model in enumerate(("first", "last", "linear")):
        rows = table[table["model"] == model].set_index("channel")
        for channel, ref in CA_HEURISTICS.items():
            assert rows.loc[channel, "conversions"] == pytest.approx(ref[2 * col], abs=1e-5), (model, channel)
            assert rows.loc[channel, "value"] == pytest.approx(ref[2 * col + 1], abs=1e-5), (model, channel)


def test_path_file_markov_order_and_all(capsys, tmp_path):
    paths = pd.DataFrame({"path": ["a > b > c", "a > c", "b > a > c > b", "c", "b > b > a"],
                          "total_conversions": [3, 1, 2, 0, 1], "total_conversion_value": [30.0, 5.0, 22.0, 0.0, 9.0],
                          "total_null": [4, 6, 1, 9, 3]})
    file = tmp_path / "paths.csv"
    paths.to_csv(file, index=False)
    code, out, err = _cli(capsys, file, "--models", "markov", "--order", "3", "--csv")
    assert code == 0, err
    table = _csv(out).set_index("channel")
    expected = markov_attribution(PathTable.from_frame(paths), 3)
    for i, channel in enumerate(expected.structure.channels):
        assert table.loc[channel, "conversions"] == pytest.approx(expected.conversions[i], rel=1e-9)
        assert table.loc[channel, "value"] == pytest.approx(expected.value[i], rel=1e-9)
    # "all" on a path-level table runs every model that needs no timestamps.
    code, out, err = _cli(capsys, file, "--models", "all", "--csv")
    assert code == 0, err
    assert list(dict.fromkeys(_csv(out)["model"])) == [m for m in MODEL_NAMES if m != "time_decay"]
    # Default output: one column of credited conversions per model.
    code, out, err = _cli(capsys, file, "--models", "first,shapley")
    assert code == 0, err
    assert "first" in out.splitlines()[0] and "shapley" in out.splitlines()[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--models", "time_decay"], "time_decay needs event timestamps"),
        (["--models", "first,bogus"], "unknown model(s): bogus"),
        (["--level", "campaign"], "no campaign ids"),
    ],
)
def test_bad_input_on_a_path_file_exits_2(capsys, tmp_path, args, message):
    file = tmp_path / "paths.csv"
    pd.DataFrame({"path": ["a > b"], "total_conversions": [1], "total_null": [1]}).to_csv(file, index=False)
    code, out, err = _cli(capsys, file, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err, err


def test_bad_files_exit_2_with_a_clear_message(capsys, tmp_path):
    empty = tmp_path / "nothing.csv"
    empty.write_text("path,total_conversions,total_null\na > b,-1,2\n")
    code, _, err = _cli(capsys, empty)
    assert code == 2 and "negative" in err, err
    code, _, err = _cli(capsys, tmp_path / "missing.csv")
    assert code == 2 and "missing.csv" in err, err


def test_module_entry_point(events_file):
    """The real ``python -m core attribute`` process prints the same CSV and exits 0."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "core", "attribute", str(events_file), "--models", "linear,shapley_rate", "--csv"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = _csv(proc.stdout)
    assert list(table.columns) == CSV_COLUMNS
    _assert_same(table, _engine_table(events_file, ["linear", "shapley_rate"]))


def test_evaluate_prints_scores_and_the_recommendation(capsys):
    code, out, err = _cli(capsys, FIXTURES / "Data.csv", "--evaluate")
    assert code == 0, err
    # the shared default rule: time decay is left out of "all" on a path-level table, with the reason
    assert "note: time_decay is left out: it needs event timestamps" in err
    assert "held-out evaluation" in out and "log_loss" in out and "recommended: " in out
    assert "Markov order: " in out and "data_driven leaves" in out and "baseline" in out
    for model in ("data_driven", "shapley_rate", "markov", "constant"):
        assert model in out.split("held-out evaluation")[1]


def test_evaluate_json_carries_the_evaluation(capsys, events_file):
    code, out, err = _cli(capsys, events_file, "--models", "markov,data_driven", "--evaluate", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {r["model"] for r in doc["credit"]} == {"markov", "data_driven"}
    ev = doc["evaluation"]
    assert ev["recommended"] in {"data_driven", "shapley_rate", "markov"} and ev["reason"]
    assert set(ev["scores"]["model"]) >= {"data_driven", "markov", "constant"}
    # without --evaluate a markov-only run scores nothing and prints the plain records
    code, out, err = _cli(capsys, events_file, "--models", "markov", "--json")
    assert isinstance(json.loads(out), list)
