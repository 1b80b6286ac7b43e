"""Money on the pages at each currency's ISO 4217 precision (AppTest from app.py): a KWD workspace shows fils
(3 decimals), a JPY one whole yen, downloads carry the exact values, and a sandbox account can be made in a
chosen currency from the Connections page."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from streamlit import dataframe_util
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core import attribution_runs as ar
from core import execute as ex
from core.autopilot.outcomes import evaluate_outcomes, outcomes_frame, record_predictions
from core.changes import DraftChange, create_plan
from core.optimize import session as S
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform
from core.store.db import transaction
from core.store.models import AdEntity, SandboxAccount
from tests.attribution_runs.helpers import add_event_dataset

APP = str(Path(__file__).resolve().parents[2] / "app.py")
WS = "default"
#: currency -> (decimals shown, a display cell at exactly that precision)
PLACES = {"KWD": 3, "JPY": 0}


def shown_at(places: int) -> re.Pattern:
    return re.compile(r"^[+-]?\d{1,3}(,\d{3})*" + (rf"\.\d{{{places}}}$" if places else "$"))


@pytest.fixture
def db(empty_app_db):
    return empty_app_db


@pytest.fixture
def downloads(monkeypatch):
    """Every file a page offered for download: {file name: bytes}."""
    seen: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        seen[str(filename)] = path_or_data if isinstance(path_or_data, bytes) else str(path_or_data).encode()
        return real(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def app_on(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest, *columns: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(values, the text each cell is shown as, column config) of the first table with ``columns``.

    The text is the table's Styler display value, or else the printf format of its column config applied to the
    value (what the browser shows; a column config format wins over a Styler's)."""
    d = next(d for d in at.dataframe if set(columns) <= set(d.value.columns))
    config = json.loads(d.proto.columns or "{}")
    raw = d.proto.arrow_data.styler.display_values
    shown = dataframe_util.convert_arrow_bytes_to_pandas_df(raw) if raw else d.value.astype(str)
    shown = shown.reset_index(drop=True)
    for col, cfg in config.items():
        fmt = (cfg.get("type_config") or {}).get("format")
        if fmt and fmt.startswith("%") and col in d.value.columns:
            shown[col] = ["" if pd.isna(v) else fmt % v for v in d.value[col]]
    return d.value.reset_index(drop=True), shown, config


def csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# ------------------------------------------------------------------------------ attribution
def _events(currency: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four users, three conversions whose values need every digit of the currency's minor unit."""
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    touches = [("u1", 0, "search"), ("u1", 1, "email"), ("u2", 0, "display"), ("u2", 1, "search"),
               ("u3", 0, "email"), ("u4", 0, "display")]
    touch = pd.DataFrame({"user_key": [u for u, _, _ in touches],
                          "ts": [t0 + pd.Timedelta(days=d, hours=i) for i, (_, d, _) in enumerate(touches)],
                          "channel": [c for _, _, c in touches], "campaign_id": "c1", "interaction": "click",
                          "source_system": "csv"})
    values = {"KWD": [1.234, 10.005, 0.001], "JPY": [1500.0, 2499.0, 7.0]}[currency]
    conv = pd.DataFrame({"user_key": ["u1", "u2", "u3"], "ts": [t0 + pd.Timedelta(days=3)] * 3,
                         "conversion_id": ["o1", "o2", "o3"], "type": "purchase", "value": values, "currency": currency})
    return touch, conv


@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_attribution_values_at_the_currency_precision_and_exact_downloads(db, downloads, currency):
    touch, conv = _events(currency)
    ds = add_event_dataset(db, WS, touch, conv, name=f"{currency} shop", places=PLACES[currency])
    run = ar.execute_run(db, WS, ar.RunParams(ds, ("first", "linear"), bootstrap=0))
    at = app_on("pages/attribution.py")
    values, shown, config = table(at, "share", "value")
    assert all(shown_at(PLACES[currency]).match(v) for v in shown["value"]), shown["value"].tolist()
    assert config["value"]["label"] == f"value ({currency})"
    cells = dict(zip(zip(values["channel"], values["model"]), shown["value"]))
    if currency == "KWD":  # every fils shown: 2 decimals would read 1.23, 10.01 (or 10.00) and 0.00
        assert [cells[(c, "first")] for c in ("search", "display", "email")] == ["1.234", "10.005", "0.001"]
    else:  # whole yen: linear gives search 750 + 1249.5 and display 1249.5, shown 2,000 and 1,250 (never 1,999.50)
        assert [cells[(c, "linear")] for c in ("search", "display", "email")] == ["2,000", "1,250", "757"]
    assert run.extra["currency"] == currency  # kept with the run
    # the download is the exact table, not the display
    rows = csv_rows(downloads[f"attribution_run_{run.id}.csv"])
    exact = {(r["channel"], r["model"]): r["value"] for r in rows}
    if currency == "KWD":
        assert [exact[(c, "first")] for c in ("search", "display", "email")] == ["1.234", "10.005", "0.001"]
    else:
        assert [exact[(c, "linear")] for c in ("search", "display", "email")] == ["1999.5", "1249.5", "757"]


def test_a_run_stored_before_the_currency_was_kept_reads_its_data_set(db):
    touch, conv = _events("KWD")
    ds = add_event_dataset(db, WS, touch, conv, name="old run", places=3)
    run = ar.execute_run(db, WS, ar.RunParams(ds, ("first",), bootstrap=0))
    run.extra.pop("currency")
    assert ar.run_currency(db, WS, run) == "KWD"
    assert ar.value_currency(pd.DataFrame({"currency": ["usd", "EUR", "USD"]})) == "EUR/USD"
    assert ar.value_currency(None) == ""


# ------------------------------------------------------------------------------ history
def _executed_plan(eng, currency: str) -> tuple[SandboxPlatform, int, Decimal]:
    """A sandbox account in ``currency``, synced, with an executed budget plan whose change needs the minor unit."""
    sb = SandboxPlatform(eng, WS, currency=currency, n_meta=2, n_google=1, history_days=30)
    sync_platform(eng, WS, sb)
    unit = Decimal(1).scaleb(-PLACES[currency])
    drafts, total = [], Decimal(0)
    for e in sb.list_entities():
        if e.entity_type != "campaign":
            continue
        new = (e.daily_budget * Decimal("1.1")).quantize(unit) + 7 * unit
        total += new - e.daily_budget
        drafts.append(DraftChange("sandbox", sb.account_id, "campaign", e.external_id, e.name, "budget", e.daily_budget,
                                  new, currency, "grow", 80.0))
    pid = create_plan(eng, WS, drafts, actor="alice", name=f"grow in {currency}")
    pr = ex.preview(eng, WS, pid, sb, actor="alice")
    ex.approve(eng, WS, pid, pr.content_hash, actor="alice")
    ex.execute(eng, WS, pid, pr.content_hash, sb, actor="alice")
    assert record_predictions(eng, WS, pid, sb) == len(drafts)
    sb.advance_days(8)
    sync_platform(eng, WS, sb)
    evaluate_outcomes(eng, WS, "sandbox", sb.account_id)
    return sb, pid, total


@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_history_plans_and_outcomes_at_the_currency_precision(db, downloads, currency):
    sb, pid, total = _executed_plan(db, currency)
    places = PLACES[currency]
    at = app_on("pages/history.py")
    values, shown, config = table(at, "n_applied", "budget_delta")
    row = values.index[values["id"] == pid][0]
    assert values.loc[row, "budget_currency"] == currency
    assert shown.loc[row, "budget_delta"] == f"{total:+,.{places}f}" and shown_at(places).match(shown.loc[row, "budget_delta"])
    assert shown.loc[row, "applied_budget_delta"] == f"{total:+,.{places}f}"
    plans_csv = {int(r["id"]): r for r in csv_rows(downloads["plans.csv"])}
    assert Decimal(plans_csv[pid]["budget_delta"]) == total  # exact, not rounded to cents
    changes_csv = [r for r in csv_rows(downloads["changes.csv"]) if int(r["plan_id"]) == pid]
    assert {r["currency"] for r in changes_csv} == {currency}
    assert all(Decimal(r["new_value"]) % Decimal(1).scaleb(-places) == 0 for r in changes_csv)

    # the measured outcomes of the plan: every amount at the currency's precision, the download exact
    measured = outcomes_frame(db, WS, [pid])
    assert measured["predicted_value"].notna().all()
    values, shown, _ = table(at, "verdict", "predicted_value")
    assert (values["currency"] == currency).all()
    for col in ("predicted_value", "value_lo", "value_hi", "predicted_spend"):
        assert all(shown_at(places).match(v) for v in shown[col]), (col, shown[col].tolist())
    judged = measured[measured["verdict"].isin(["as predicted", "better", "worse"])]
    if len(judged):
        amounts = re.findall(r"value (\S+)/day against the predicted (\S+) ", judged["reason"].iloc[0])[0]
        assert all(shown_at(places).match(a) for a in amounts), judged["reason"].iloc[0]
        tile = next(m for m in at.metric if m.label.startswith("Value a day"))
        assert tile.label.endswith(f"({currency})") and shown_at(places).match(tile.value), tile.value
    exact = csv_rows(downloads[f"outcomes-{pid}.csv"])
    assert [float(r["predicted_value"]) for r in exact] == pytest.approx(measured["predicted_value"].tolist(), rel=1e-12)


# ------------------------------------------------------------------------------ sandbox in a chosen currency
def test_a_sandbox_account_is_made_in_the_chosen_currency_from_the_connections_page(db):
    at = app_on("pages/connections.py")
    assert at.selectbox(key="conn.sandbox.currency").value == "USD"  # the default
    assert at.text_input(key="conn.sandbox.account_id").value == "sandbox-1"
    at.text_input(key="conn.sandbox.account_id").set_value("shop-kw")
    at.selectbox(key="conn.sandbox.currency").set_value("KWD")
    next(b for b in at.button if b.label == "Create the sandbox account").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("shop-kw" in s.value and "KWD" in s.value for s in at.success)
    with transaction(db, WS) as s:
        assert s.query(SandboxAccount.currency).filter_by(account_id="shop-kw").scalar() == "KWD"
        assert {c for (c,) in s.query(AdEntity.currency).filter_by(account_id="shop-kw")} == {"KWD"}
    listed, _, _ = table(at, "account_id", "currency")
    assert listed.set_index("account_id").loc["shop-kw", "currency"] == "KWD"
    assert any(src.platform == "sandbox" and src.account_id == "shop-kw" for src in S.list_sources(db, WS))
    # an existing account keeps its currency: asking for it in another one says so and changes nothing
    at.text_input(key="conn.sandbox.account_id").set_value("shop-kw")
    at.selectbox(key="conn.sandbox.currency").set_value("JPY")
    next(b for b in at.button if b.label == "Create the sandbox account").click().run()
    assert any("exists already, in KWD" in e.value for e in at.error), [e.value for e in at.error]
    assert S.sandbox_accounts(db, WS).set_index("account_id").loc["shop-kw", "currency"] == "KWD"


@pytest.mark.parametrize("bad", ["XAU", "XXX", "ABC", "US", "   ", "€", "KWDX"])
def test_a_sandbox_currency_must_be_iso_4217_money(db, bad):
    with pytest.raises(S.OptimizerInputError, match="ISO 4217"):
        S.ensure_sandbox(db, WS, account_id="sandbox-x", currency=bad, actor="t")
    assert S.sandbox_accounts(db, WS).empty


def test_a_sandbox_account_id_is_checked_and_lowercase_currency_taken(db):
    with pytest.raises(S.OptimizerInputError, match="account id"):
        S.ensure_sandbox(db, WS, account_id="bad id/1", currency="USD", actor="t")
    made = S.ensure_sandbox(db, WS, account_id="sandbox-2", currency="jpy", actor="t")
    assert made.account_id == "sandbox-2"
    assert S.sandbox_accounts(db, WS).set_index("account_id").loc["sandbox-2", "currency"] == "JPY"
    assert S.next_sandbox_account(db, WS) == "sandbox-1"


# ------------------------------------------------------------------------------ optimizer and review
@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_optimizer_figures_at_the_currency_precision(db, currency):
    sb = SandboxPlatform(db, WS, currency=currency, n_meta=2, n_google=1, history_days=40)
    sync_platform(db, WS, sb)
    at = app_on("pages/optimizer.py")
    places = PLACES[currency]
    tiles = {m.label: m for m in at.metric}
    total = tiles[f"Total daily budget ({currency})"]
    value = next(m for label, m in tiles.items() if label.endswith(f"a day ({currency})"))
    for tile in (total, value):  # 2 decimals would read 1,234.57 for KWD and 1,500.00 for JPY
        assert shown_at(places).match(tile.value), (tile.label, tile.value)
    _, shown, config = table(at, "budget_before", "budget_after")
    assert config["budget_after"]["type_config"]["format"] == f"%.{places}f"
    assert f"({currency}/day)" in config["budget_after"]["label"]


def test_review_advances_the_sandbox_account_chosen(db):
    usd = S.ensure_sandbox(db, WS, actor="t")
    S.ensure_sandbox(db, WS, account_id="sandbox-kwd", currency="KWD", actor="t")
    kwd = SandboxPlatform(db, WS, "sandbox-kwd")
    usd_clock, kwd_clock = SandboxPlatform(db, WS, usd.account_id).clock(), kwd.clock()
    at = app_on("pages/review.py")
    at.selectbox(key="review.sandbox_account").set_value("sandbox-kwd")
    at.number_input(key="review.sandbox_days").set_value(2)
    next(b for b in at.button if b.key == "review.sandbox_advance").click().run()
    assert not at.exception, at.exception
    assert (kwd.clock() - kwd_clock).days == 2 and SandboxPlatform(db, WS, usd.account_id).clock() == usd_clock


def test_history_rows_in_different_currencies_each_at_their_own_precision(db):
    deltas = {}
    for currency in ("KWD", "JPY"):
        sb = SandboxPlatform(db, WS, f"sandbox-{currency.lower()}", currency=currency, n_meta=1, n_google=1, history_days=3)
        e = next(e for e in sb.list_entities() if e.entity_type == "campaign")
        step = Decimal(1).scaleb(-PLACES[currency])
        pid = create_plan(db, WS, [DraftChange("sandbox", sb.account_id, "campaign", e.external_id, e.name, "budget",
                                               e.daily_budget, e.daily_budget + 1234 * step, currency, "grow", 80.0)],
                          actor="alice", name=f"in {currency}")
        deltas[pid] = (currency, 1234 * step)
    at = app_on("pages/history.py")
    values, shown, _ = table(at, "n_applied", "budget_delta")
    got = {int(i): (c, d) for i, c, d in zip(values["id"], values["budget_currency"], shown["budget_delta"])}
    assert got == {pid: (c, f"{d:+,.{PLACES[c]}f}") for pid, (c, d) in deltas.items()}  # +1.234 KWD, +1,234 JPY


def test_old_and_new_values_read_in_their_currency():
    from core.changes import display_values

    frame = pd.DataFrame({"field": ["budget", "status", "budget", "bid"], "currency": ["KWD", "KWD", "JPY", "USD"],
                          "old": ["350.000000", "ACTIVE", None, pd.NA],
                          "new": [Decimal("385.007"), "PAUSED", Decimal("1500.000000"), float("nan")]})
    out = display_values(frame, ["old", "new"])
    assert out["old"].tolist() == ["350.000 KWD", "ACTIVE", "", ""]
    assert out["new"].tolist() == ["385.007 KWD", "PAUSED", "1,500 JPY", ""]
    assert frame["new"].iloc[0] == Decimal("385.007")  # the input (what downloads carry) is left as it was


def test_a_table_too_large_to_style_is_rounded_to_each_rows_precision_and_still_shown():
    """Streamlit refuses a Styler over pandas' ``styler.render.max_elements`` cells (262,144: an attribution table
    of 40,000 campaign rows) and takes seconds for one near it: a larger table comes back as a rounded copy,
    each row at its currency's precision, which `st.dataframe` shows; the frame given keeps its exact values."""
    from streamlit.elements.lib.pandas_styler_utils import marshall_styler
    from streamlit.proto.ArrowData_pb2 import ArrowData

    from core.money import STYLED_CELLS, money_table

    small = pd.DataFrame({"value": [1.2345, 1500.6]})
    assert not isinstance(money_table(small, ["value"], ["KWD", "JPY"]), pd.DataFrame)  # a Styler
    rows = 40_000
    big = pd.DataFrame({"campaign": [f"c{i}" for i in range(rows)], "model": "markov", "conversions": 1.0,
                        "value": [Decimal("1.2345"), Decimal("1500.6"), Decimal("3.004"), None] * (rows // 4),
                        "share": 0.1, "value_low": 0.5, "value_high": 2.25})
    currencies = ["KWD", "JPY", "USD", "KWD"] * (rows // 4)
    assert big.size > max(STYLED_CELLS, pd.options.styler.render.max_elements)
    with pytest.raises(Exception, match="maximum number of cells"):  # why: the Styler itself would not be shown
        marshall_styler(ArrowData(), big.style, "x")
    shown = money_table(big, ["value", "value_low", "value_high"], currencies)
    assert isinstance(shown, pd.DataFrame)
    assert shown["value"].head(4).tolist()[:3] == [1.234, 1501.0, 3.0] and pd.isna(shown["value"].iloc[3])
    assert shown["value_high"].head(3).tolist() == [2.25, 2.0, 2.25]  # JPY: whole yen (half to even)
    assert big["value"].iloc[0] == Decimal("1.2345")  # the frame given (and its download) is untouched
    assert dataframe_util.convert_anything_to_arrow_bytes(shown)  # what st.dataframe sends: no cell limit
