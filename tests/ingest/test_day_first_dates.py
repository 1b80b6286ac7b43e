"""Google Ads UI downloads in a European locale write days as DD-MM-YYYY. A column whose first
values are ambiguous (01-08-2026) and whose later ones are not (13-08-2026) is read day first,
not refused; a title line, a date-range line, thousands separators and a Total row still work."""

from __future__ import annotations

import pandas as pd

from core.ingest import read_files

DAY_FIRST = (
    "Ad group report\n"
    '"August 1, 2026 - August 13, 2026"\n'
    "Campaign,Ad group,Day,Currency code,Cost,Clicks,Impr.,Conversions,Conv. value\n"
    'Shoes - Search,Prospecting,01-08-2026,EUR,"1,050.00",20,1000,3,300\n'
    "Shoes - Search,Prospecting,02-08-2026,EUR,50.00,20,1000,3,100\n"
    "Boots - Search,Prospecting,13-08-2026,EUR,40.00,10,900,1,80\n"
    'Total: Account,,,EUR,"1,140.00",50,2900,7,480\n'
)


def test_a_day_first_google_ads_download_is_read_day_first(tmp_path):
    f = tmp_path / "adgroups.csv"
    f.write_text(DAY_FIRST)
    perf = read_files([f]).performance
    days = sorted(pd.to_datetime(perf["date"]).dt.strftime("%Y-%m-%d").unique())
    assert days == ["2026-08-01", "2026-08-02", "2026-08-13"]
    assert float(perf["spend"].astype(float).sum()) == 1140.0  # 1,050 + 50 + 40; the Total row is dropped
    assert perf["external_id"].nunique() == 2  # same-named ad groups in two campaigns stay two


def _report(days: list[str]) -> str:
    rows = "".join(f"{d},Brand,EUR,{10 + i}.00,100,5,1,20\n" for i, d in enumerate(days))
    return "Day,Campaign,Currency code,Cost,Impr.,Clicks,Conversions,Conv. value\n" + rows


def _days(perf) -> list[str]:
    return sorted(pd.to_datetime(perf["date"]).dt.strftime("%Y-%m-%d").unique())


def test_all_ambiguous_consecutive_days_are_read_in_the_order_that_keeps_them_together(write):
    """01/02 .. 04/02: day first they are four consecutive days; month first four months apart."""
    r = read_files([write("eu.csv", _report(["01/02/2026", "02/02/2026", "03/02/2026", "04/02/2026"]))])
    assert _days(r.performance) == ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"]
    assert any("read day first" in w and "'Day'" in w for w in r.report["warnings"])
    r = read_files([write("us.csv", _report(["02/01/2026", "02/02/2026", "02/03/2026"]))])
    assert _days(r.performance) == ["2026-02-01", "2026-02-02", "2026-02-03"]
    assert any("read month first" in w for w in r.report["warnings"])


def test_an_undecidable_date_order_is_said_and_dotted_dates_read_day_first(write):
    r = read_files([write("one.csv", _report(["05/06/2026"]))])
    assert _days(r.performance) == ["2026-05-06"]
    assert any("nothing in the data tells the orders apart" in w for w in r.report["warnings"])
    r = read_files([write("dots.csv", _report(["05.06.2026"]))])
    assert _days(r.performance) == ["2026-06-05"]


def test_unambiguous_dates_carry_no_note(write):
    r = read_files([write("iso.csv", _report(["2026-02-01", "2026-02-02"]))])
    assert not any("day first" in w for w in r.report["warnings"])
    r = read_files([write("us13.csv", _report(["02/13/2026", "02/01/2026"]))])
    assert _days(r.performance) == ["2026-02-01", "2026-02-13"]
    assert not any("day first and month first" in w for w in r.report["warnings"])


def test_ambiguous_event_times_in_a_journey_file_are_settled_too(write):
    csv = ("user_id,timestamp,channel,event_type,value\n"
           "u1,01/02/2026 10:00,email,touch,\nu1,03/02/2026 11:00,search,touch,\nu1,04/02/2026 12:00,,conversion,10\n")
    r = read_files([write("j.csv", csv)])
    assert str(r.touchpoints["ts"].min())[:10] == "2026-02-01" and str(r.conversions["ts"].max())[:10] == "2026-02-04"
    assert any("read day first" in w for w in r.report["warnings"])
