"""Exports written in the account's language and locale: accented headers, European decimal commas,
currency signs on either side, and money columns whose headers disagree on the currency."""

from __future__ import annotations

import pytest

from core.ingest import IngestError, read_files
from core.ingest.mapping import compact

PT_BR = (
    "Nome da campanha,ID da campanha,Dia,Valor usado (BRL),Impressões,Resultados,Início dos relatórios,Término dos relatórios\n"
    'Prospecção,123,2026-10-01,"1.234,56",1000,5,2026-10-01,2026-10-31\n'
    'Prospecção,123,2026-10-02,"1.100,10",900,4,2026-10-01,2026-10-31\n'
    "Remarketing,456,2026-10-01,\"99,90\",300,2,2026-10-01,2026-10-31\n"
)


def test_accents_fold_so_localized_headers_match():
    assert compact("Impressões") == "impressoes" and compact("Início dos relatórios") == "iniciodosrelatorios"
    assert compact("Campaign ID") == "campaignid"


def test_a_brazilian_meta_export_imports_with_its_decimal_commas(write):
    r = read_files([write("meta_pt.csv", PT_BR)])
    p = r.performance
    assert r.report["format"] == ["Meta Ads Manager export"]
    assert set(p["currency"]) == {"BRL"}
    assert p.groupby("external_id")["spend"].sum().round(2).to_dict() == {"123": 2334.66, "456": 99.9}
    assert int(p["conversions"].sum()) == 11 and int(p["impressions"].sum()) == 2200


@pytest.mark.parametrize("cells, expected", [
    (['"1.234,56"', '"456,78"'], [1234.56, 456.78]),          # European writing
    (['"1,234"', '"2,000"'], [1234.0, 2000.0]),               # English thousands stay thousands
    (['"1,234.50"', "7.25"], [1234.5, 7.25]),                 # English decimals
    (['"€456,78"', '"12,5 €"'], [456.78, 12.5]),              # signs before or after
    (['"R$ 1.000,00"', '"R$ 3,5"'], [1000.0, 3.5]),
], ids=["eu", "en-thousands", "en-decimals", "euro-signs", "real-signs"])
def test_number_writings(write, cells, expected):
    rows = "".join(f"2026-10-0{i + 1},Brand,EUR,{c},100\n" for i, c in enumerate(cells))
    csv = "Day,Campaign,Currency code,Cost,Impr.\n" + rows
    p = read_files([write("n.csv", csv)]).performance.sort_values("date")
    assert p["spend"].round(6).tolist() == expected


def test_spend_and_value_headers_in_two_currencies_are_refused(write):
    csv = ('date,"Link clicks","Website purchases","Amount spent (USD)","Purchase conversion value (EUR)",Campaign name\n'
           '2024-04-01,"1,234",7,"$123.45","€456,78",A\n')
    with pytest.raises(IngestError, match="spend is in USD but conversion value in EUR"):
        read_files([write("two.csv", csv)])


def test_a_currency_column_that_contradicts_the_header_is_refused(write):
    csv = ("Reporting starts,Reporting ends,Campaign name,Currency,Amount spent (EUR)\n"
           "2026-10-01,2026-10-01,A,EUR,10\n2026-10-01,2026-10-01,B,USD,12\n")
    with pytest.raises(IngestError, match="'USD' is not the EUR"):
        read_files([write("cur.csv", csv)])
