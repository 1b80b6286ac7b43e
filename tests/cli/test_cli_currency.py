"""`python -m core optimize --currency`: a file mixing currencies is refused unless one is chosen."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tests.cli.test_cli import run


def _mixed_file(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for cid, platform, currency, a in (("m1", "meta", "EUR", 9.0), ("m2", "meta", "EUR", 6.0), ("g1", "google", "USD", 8.0)):
        for day in pd.date_range("2026-06-01", periods=40, freq="D"):
            spend = float(rng.uniform(50, 200))
            rows.append({"date": day.date().isoformat(), "platform": platform, "account_id": "acct", "entity_type": "campaign",
                         "external_id": cid, "entity_name": cid, "spend": round(spend, 2), "impressions": 1000, "clicks": 50,
                         "conversions": 2.0, "conversion_value": round(a * spend ** 0.6 * rng.uniform(0.9, 1.1), 2),
                         "currency": currency})
    path = tmp_path / "mixed.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_mixed_currencies_need_a_choice(tmp_path):
    path = _mixed_file(tmp_path)
    out = run("optimize", str(path), "--budget", "300")
    assert out.returncode == 2 and "EUR" in out.stderr and "USD" in out.stderr and "--currency" in out.stderr
    out = run("optimize", str(path), "--budget", "300", "--currency", "EUR", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    text = json.dumps(result)
    assert "m1" in text and "m2" in text and "g1" not in text
