"""Acceptance audit of issue 9 on public files nobody here wrote: what the command line prints for
them must say what it computes (a count is never called value) and keep the numbers of the rows."""

from __future__ import annotations

import json
from pathlib import Path



PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"



def test_optimizing_clicks_is_not_called_maximizing_value(run):
    # fivetran google_ads.campaign_stats: 231.33 USD of cost_micros, zero conversions and value
    out = run("optimize", str(PUBLIC / "fivetran_google_ads_campaign_stats.csv"), "--budget", "2")
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()[0]
    assert "maximizing clicks" in head
    assert "maximize clicks at total budget 2.00" in head and "value" not in head
    js = run("optimize", str(PUBLIC / "fivetran_google_ads_campaign_stats.csv"), "--budget", "2", "--json")
    assert json.loads(js.stdout)["objective"] == "maximize clicks at total budget 2.00"


def test_optimizing_conversions_of_ad_groups_names_conversions(run):
    # google_ads.ad_group_stats: 14.48 conversions, no conversion value -> conversions are the objective
    out = run("optimize", str(PUBLIC / "fivetran_google_ads_ad_group_stats.csv"), "--budget", "100")
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()[0]
    assert "rolled up from 1 ad group" in head and "maximize conversions at total budget 100.00" in head
