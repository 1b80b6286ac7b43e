"""Money in several currencies: the engine refuses a mix, filters to one currency; the CLI's --currency."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.optimize.allocate import allocate, allocate_for_marginal_floor, allocate_for_target_roas, build_bounds
from core.optimize.cli import optimize_command
from core.optimize.currency import (
    MixedCurrencyError,
    currencies,
    currency_spend,
    filter_currency,
    filter_entities,
    require_one_currency,
)
from core.optimize.recommend import recommend
from core.optimize.whatif import what_if
from core.response import fit_curves


def _mixed(sim):
    """4 campaigns: c0000/c0001 in EUR on a Meta account, c0002/c0003 in USD on a Google account."""
    df, _, _ = sim(4, 60, seed=11)
    eur = df["external_id"].isin(["c0000", "c0001"])
    df.loc[eur, "currency"] = "EUR"
    df.loc[eur, "platform"] = "meta"
    df.loc[~eur, "platform"] = "google"
    return df


def test_currencies_are_listed_most_spend_first(sim):
    df = _mixed(sim)
    spend = currency_spend(df)
    assert set(spend.index) == {"EUR", "USD"}
    expected = df.groupby("currency")["spend"].sum()
    assert spend.to_dict() == pytest.approx(expected.to_dict())
    assert currencies(df) == sorted(expected.index, key=lambda c: -expected[c])
    # segment rows and ad sets do not count twice; lower-case codes are the same currency
    extra = df[df["currency"] == "USD"].head(5).assign(segment_type="device", segment_value="mobile", spend=1e9, currency="usd")
    both = pd.concat([df.assign(segment_type="", segment_value=""), extra], ignore_index=True)
    assert currency_spend(both).to_dict() == pytest.approx(expected.to_dict())


def test_recommend_refuses_a_mix_of_currencies_naming_them(sim):
    df = _mixed(sim)
    with pytest.raises(MixedCurrencyError, match=r"2 currencies \((EUR, USD|USD, EUR)\)") as err:
        recommend(df, total_budget=1000.0)
    assert set(err.value.currencies) == {"EUR", "USD"}
    assert isinstance(err.value, ValueError)  # the page and the CLI report ValueErrors
    curves = fit_curves(df)
    with pytest.raises(MixedCurrencyError, match="EUR"):
        recommend(df[df["currency"] == "EUR"], curves=curves)  # curves of both currencies are refused too
    cur = curves.diagnostics["last7_mean_spend"].to_numpy()
    for call in (lambda: allocate(curves, float(cur.sum())), lambda: allocate_for_target_roas(curves, 2.0),
                 lambda: allocate_for_marginal_floor(curves, 1.0, build_bounds(curves.n, current=cur, max_change=0.3)),
                 lambda: what_if(curves, cur)):
        with pytest.raises(MixedCurrencyError, match="USD"):
            call()


def test_filtered_to_one_currency_the_optimizer_runs_on_its_campaigns_only(sim):
    df = _mixed(sim)
    eur = filter_currency(df, "eur")
    assert set(eur["external_id"]) == {"c0000", "c0001"} and require_one_currency(eur) == "EUR"
    rec = recommend(eur, max_change=0.3)
    assert rec.budget_table["external_id"].tolist() == ["c0000", "c0001"]
    assert set(rec.budget_table["currency"]) == {"EUR"}
    assert rec.changes and {c.currency for c in rec.changes} == {"EUR"}
    assert {c.external_id for c in rec.changes} <= {"c0000", "c0001"}
    usd = filter_currency(df, "USD")
    assert set(recommend(usd).budget_table["external_id"]) == {"c0002", "c0003"}
    # one currency: fine, whatever the code
    assert require_one_currency(df.assign(currency="JPY")) == "JPY"


def test_live_entities_follow_their_campaigns_currency():
    ents = pd.DataFrame({
        "entity_type": ["campaign", "campaign", "adset", "adset"],
        "external_id": ["c1", "c2", "a1", "a2"],
        "parent_id": [None, None, "c1", "c2"],
        "currency": ["EUR", "USD", "", None],
    })
    kept = filter_entities(ents, "EUR", ["c1"])
    assert kept["external_id"].tolist() == ["c1", "a1"]
    assert filter_entities(ents, "USD", ["c2"])["external_id"].tolist() == ["c2", "a2"]


def _write(df: pd.DataFrame, path) -> str:
    out = df.assign(date=df["date"].dt.strftime("%Y-%m-%d"))
    out.to_csv(path, index=False)
    return str(path)


def test_cli_needs_a_currency_for_a_mixed_file_and_optimizes_only_it(sim, tmp_path):
    df = _mixed(sim)
    path = _write(df, tmp_path / "mixed.csv")
    with pytest.raises(ValueError, match=r"2 currencies: .*EUR \(spend .*USD \(spend .*--currency") as err:
        optimize_command(path, 500.0)
    assert "cannot be optimized together" in str(err.value)
    with pytest.raises(ValueError, match=r"no campaigns in GBP; its currencies are .*EUR.*USD|no campaigns in GBP; its currencies are .*USD.*EUR"):
        optimize_command(path, 500.0, currency="GBP")
    def today_in(code):
        part = df[df["currency"] == code]
        return float(part.loc[part["date"] > part["date"].max() - pd.Timedelta(days=7), "spend"].sum() / 7)

    today = today_in("EUR")
    out = json.loads(optimize_command(path, today, as_json=True, currency="eur"))
    assert out["currency"] == ["EUR"]
    assert sorted(c["external_id"] for c in out["campaigns"]) == ["c0000", "c0001"]
    assert out["total_budget"] == pytest.approx(today, abs=0.01)
    np.testing.assert_allclose(out["current_total_budget"], today, atol=0.02)
    text = optimize_command(path, today_in("USD"), currency="USD")
    assert "daily amounts in USD" in text and "c0002" in text and "c0000" not in text and "EUR" not in text
    # a single-currency file needs no --currency, and accepts its own
    single = _write(df[df["currency"] == "USD"], tmp_path / "usd.csv")
    assert json.loads(optimize_command(single, today_in("USD"), as_json=True))["currency"] == ["USD"]
    assert json.loads(optimize_command(single, today_in("USD"), as_json=True, currency="usd"))["currency"] == ["USD"]
