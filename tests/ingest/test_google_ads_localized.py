"""Google Ads downloads from an interface in German, French, Spanish, Portuguese or Italian: localized
headers, the locale's numbers (decimal comma; dots, spaces or no-break spaces grouping thousands),
day-first dates, ``--`` blanks, a title line, a date-range line and a totals row. Every figure is
summed by hand in a comment beside its assertion."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.ingest import IngestError, read_files
from core.ingest.mapping import detect_profile

NNBSP, NBSP = "\u202f", "\u00a0"  # French groups thousands with a (narrow) no-break space

DE_CAMPAIGNS = (
    "Kampagnenbericht\n"
    '"1. September 2026 - 2. September 2026"\n'
    "Tag,Kampagne,Kampagnen-ID,Kampagnenstatus,Währungscode,Kosten,Impr.,Klicks,Conversions,Conv.-Wert\n"
    '01.09.2026,Marke,111,Aktiviert,EUR,"1.234,56",1.000,94,"2,00","300,00"\n'
    '02.09.2026,Marke,111,Aktiviert,EUR,"0,19",100,--,"0,00","0,00"\n'
    '01.09.2026,Generisch,222,Pausiert,EUR,"10,00",250,3,"0,50","12,30"\n'
    'Gesamt: Konto,--,--,--,EUR,"1.244,75",1.350,97,"2,50","312,30"\n'
)

FR_CAMPAIGNS = (
    "Rapport sur les campagnes\n"
    '"5 septembre 2026 - 5 septembre 2026"\n'
    "Jour,Campagne,ID de la campagne,Code de la devise,Coût,Impr.,Clics,Conversions,Valeur de conv.\n"
    f'05/09/2026,Marque,111,EUR,"1{NNBSP}234,56","1{NBSP}000",94,"2,00","1{NNBSP}300,00"\n'
    '05/09/2026,Générique,222,EUR,"0,19",100, --,"0,50","12,30"\n'
    f'Total : compte,--,--,EUR,"1{NNBSP}234,75","1{NBSP}100",94,"2,50","1{NNBSP}312,30"\n'
)


def _by(p, *keys):
    return {tuple(str(r[k]) if k != "date" else f"{r[k]:%Y-%m-%d}" for k in keys): r for _, r in p.iterrows()}


def test_a_german_campaign_report_by_day_imports_with_exact_money(write):
    r = read_files([write("kampagnen.csv", DE_CAMPAIGNS)])
    p = r.performance
    assert r.mapping.profile == "google_ads" and r.report["format"] == ["Google Ads report"]
    assert set(p["currency"]) == {"EUR"} and set(p["platform"]) == {"google"}
    assert r.report["total_rows_dropped"] == 1  # the 'Gesamt: Konto' row
    rows = _by(p, "external_id", "date")
    assert sorted(rows) == [("111", "2026-09-01"), ("111", "2026-09-02"), ("222", "2026-09-01")]  # 01.09. is 1 September
    assert Decimal(str(rows["111", "2026-09-01"]["spend"])) == Decimal("1234.56")  # '1.234,56': never 1.23456 or 123456
    assert Decimal(str(rows["111", "2026-09-02"]["spend"])) == Decimal("0.19")
    assert Decimal(str(rows["222", "2026-09-01"]["spend"])) == Decimal("10.00")
    # spend 1.234,56 + 0,19 + 10,00 = 1.244,75 (the Gesamt row's figure)
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1244.75")
    assert rows["111", "2026-09-01"]["impressions"] == 1000 and p["impressions"].sum() == 1350  # '1.000' is a thousand
    assert rows["111", "2026-09-02"]["clicks"] == 0  # '--' is Google's blank
    assert [rows[k]["conversions"] for k in sorted(rows)] == [2.0, 0.0, 0.5]
    assert [Decimal(str(rows[k]["conversion_value"])) for k in sorted(rows)] == [Decimal("300.00"), Decimal("0"), Decimal("12.30")]
    assert sorted(p["campaign_name"].unique()) == ["Generisch", "Marke"]


def test_a_french_campaign_report_reads_spaced_thousands_and_day_first_dates(write):
    """One day only: nothing in the data says 05/09 is 5 September, but a French download writes days first
    (it was read as 9 May, with a note)."""
    r = read_files([write("campagnes.csv", FR_CAMPAIGNS)])
    p = r.performance
    assert r.mapping.profile == "google_ads" and set(p["currency"]) == {"EUR"}
    assert r.report["total_rows_dropped"] == 1
    rows = _by(p, "external_id", "date")
    assert sorted(rows) == [("111", "2026-09-05"), ("222", "2026-09-05")]
    assert Decimal(str(rows["111", "2026-09-05"]["spend"])) == Decimal("1234.56")  # '1 234,56' with a narrow no-break space
    assert Decimal(str(rows["222", "2026-09-05"]["spend"])) == Decimal("0.19")
    assert rows["111", "2026-09-05"]["impressions"] == 1000 and rows["222", "2026-09-05"]["clicks"] == 0  # ' --' is blank
    assert p["conversions"].sum() == 2.5  # 2,00 + 0,50
    assert Decimal(str(rows["111", "2026-09-05"]["conversion_value"])) == Decimal("1300.00")
    assert sum(Decimal(str(v)) for v in p["conversion_value"]) == Decimal("1312.30")  # 1 300,00 + 12,30
    assert not any("month first" in w for w in r.report["warnings"])


@pytest.mark.parametrize("header", [
    "Día,Campaña,ID de campaña,Código de moneda,Coste,Impr.,Clics,Conversiones,Valor de conv.",  # Spain
    "Día,Campaña,ID de campaña,Código de moneda,Costo,Impr.,Clics,Conversiones,Valor de conv.",  # Latin America
    "Dia,Campanha,ID da campanha,Código da moeda,Custo,Impr.,Cliques,Conversões,Valor de conv.",  # Brazil
    "Giorno,Campagna,ID campagna,Codice valuta,Costo,Impr.,Clic,Conversioni,Valore conv.",
], ids=["es", "es-419", "pt-br", "it"])
def test_spanish_portuguese_and_italian_downloads_are_google_ads(write, header):
    csv = ("Informe\n\"1 - 2\"\n" + header + "\n"
           '01/09/2026,A,1,EUR,"1.234,56",1.000,10,"1,00","50,00"\n'
           '02/09/2026,A,1,EUR,"0,44",10,0,"0,00","0,00"\n')
    r = read_files([write("report.csv", csv)])
    p = r.performance.sort_values("date")
    assert r.mapping.profile == "google_ads" and set(p["currency"]) == {"EUR"}
    assert [f"{d:%Y-%m-%d}" for d in p["date"]] == ["2026-09-01", "2026-09-02"]
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1235.00")  # 1.234,56 + 0,44
    assert p["impressions"].tolist() == [1000, 10] and p["conversion_value"].sum() == 50.0


def test_month_first_days_in_a_localized_download_are_refused_not_guessed(write):
    """A German download writes days first; '09/13/2026' cannot be one, so the file is refused, naming the cell."""
    csv = ("Tag,Kampagne,Kampagnen-ID,Währungscode,Kosten,Impr.,Klicks\n"
           '09/12/2026,A,1,EUR,"1,00",10,1\n09/13/2026,A,1,EUR,"2,00",10,1\n')
    with pytest.raises(IngestError) as err:
        read_files([write("us_days.csv", csv)])
    assert (err.value.file, err.value.row, err.value.column) == ("us_days.csv", 2, "Tag")
    assert "day first" in str(err.value)


@pytest.mark.parametrize("columns, profile", [
    (["Tag", "Kampagne", "Kampagnen-ID", "Kosten", "Impr.", "Klicks", "Conv.-Wert"], "google_ads"),
    (["Jour", "Campagne", "Coût", "Impr.", "Clics", "Valeur de conv."], "google_ads"),
    # English Google Ads and localized Meta exports are detected as before
    (["Day", "Campaign", "Campaign ID", "Currency code", "Cost", "Impr.", "Clicks", "Conv. value"], "google_ads"),
    (["Nome da campanha", "ID da campanha", "Dia", "Valor usado", "Impressões", "Resultados"], "meta_ads"),
    (["Nom de la campagne", "Jour", "Montant dépensé", "Impressions", "Clics sur un lien", "Résultats"], "meta_ads"),
    (["Kampagnenname", "Berichtsbeginn", "Berichtsende", "Ausgegebener Betrag", "Impressionen", "Link-Klicks", "Ergebnisse"], "meta_ads"),
    (["Nombre de la campaña", "Día", "Importe gastado", "Impresiones", "Resultados"], "meta_ads"),
    (["Nome della campagna", "Giorno", "Importo speso", "Impressioni", "Risultati"], "meta_ads"),
    # an event file with a 'tag' column and a cost, and a Fivetran stats table, are no Google Ads report
    (["user_id", "timestamp", "event", "tag", "kosten", "campaign"], "events"),
    (["date", "conn__platform", "conn__entity_type", "conn__entity_id", "cost_micros", "impressions", "clicks"],
     "connector_stats"),
])
def test_detection_of_localized_google_ads_and_the_formats_beside_it(columns, profile):
    assert detect_profile("f.csv", columns).profile == profile  # (Meta headers: their currency suffix is removed on reading)


@pytest.mark.parametrize("column", ["Suchbegriff", "Terme de recherche"])
def test_a_localized_search_terms_report_is_named_not_summed_into_campaigns(write, column):
    csv = (f"Tag,{column},Kampagne,Anzeigengruppe,Währungscode,Kosten,Impr.,Klicks\n"
           '01.09.2026,rote schuhe,Marke,AG1,EUR,"1,00",10,1\n')
    with pytest.raises(IngestError, match="search terms report"):
        read_files([write("terms.csv", csv)])


_DE_HEADER = "Tag,Kampagne,Kampagnen-ID,Währungscode,Kosten,Impr.,Klicks\n"


@pytest.mark.parametrize("first, second, shown", [
    ("1.234", "5.000", "1.234 with a decimal point or as 1234 with a decimal comma"),  # was read as 1.234 and 5
    ('"1,234"', '"2,500"', "1234 with a decimal point or as 1.234 with a decimal comma"),  # was read as 1234 and 2500
], ids=["dots", "commas"])
def test_amounts_that_read_two_ways_in_a_localized_download_are_refused(write, first, second, shown):
    csv = _DE_HEADER + f"01.09.2026,A,1,EUR,{first},10,1\n02.09.2026,A,1,EUR,{second},10,1\n"
    with pytest.raises(IngestError) as err:
        read_files([write("zweideutig.csv", csv)])
    assert (err.value.file, err.value.row, err.value.column) == ("zweideutig.csv", 1, "Kosten") and shown in str(err.value)


@pytest.mark.parametrize("first, second, spend", [
    ("1.234", '"0,50"', [1234.0, 0.5]),   # the comma in 0,50 shows the decimal mark
    ('"1,234"', "0.50", [1234.0, 0.5]),   # the point in 0.50 shows it (a Mexican download)
], ids=["comma-shown", "point-shown"])
def test_amounts_whose_column_shows_the_decimal_mark_are_read(write, first, second, spend):
    csv = _DE_HEADER + f"01.09.2026,A,1,EUR,{first},10,1\n02.09.2026,A,1,EUR,{second},10,1\n"
    p = read_files([write("klar.csv", csv)]).performance.sort_values("date")
    assert p["spend"].tolist() == spend


def test_a_german_xlsx_download_keeps_its_cell_values(tmp_path):
    """A workbook's cells are numbers, not text in a language: 2.125 conversions (data-driven credit) is no
    ambiguous '2.125', and day cells are dates."""
    import datetime as dt

    import openpyxl

    book = openpyxl.Workbook()
    for row in (["Kampagnenbericht"], ["1. September 2026 - 2. September 2026"],
                ["Tag", "Kampagne", "Kampagnen-ID", "Währungscode", "Kosten", "Impr.", "Klicks", "Conversions", "Conv.-Wert"],
                [dt.datetime(2026, 9, 1), "Marke", 111, "EUR", 1234.56, 1000, 94, 2.125, 300.5],
                [dt.datetime(2026, 9, 2), "Marke", 111, "EUR", 0.19, 100, None, 1.375, 0],
                ["Gesamt: Konto", "--", "--", "EUR", 1234.75, 1100, 94, 3.5, 300.5]):
        book.active.append(row)
    book.save(tmp_path / "Kampagnenbericht.xlsx")
    r = read_files([tmp_path / "Kampagnenbericht.xlsx"])
    p = r.performance.sort_values("date")
    assert r.mapping.profile == "google_ads" and r.report["total_rows_dropped"] == 1
    assert [f"{d:%Y-%m-%d}" for d in p["date"]] == ["2026-09-01", "2026-09-02"]
    assert sum(Decimal(str(v)) for v in p["spend"]) == Decimal("1234.75")  # 1234.56 + 0.19
    assert p["conversions"].tolist() == [2.125, 1.375]
