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
