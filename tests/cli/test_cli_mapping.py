"""The command line on real and hostile files: --map, saved and remembered mappings, touches per
session, and no result in which every conversion is '(no touch)' printed with exit status 0."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.cli.test_cli import run as run_process

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"

FLAGS = """cookie,time,interaction,conversion,conversion_value,channel
c1,2018-07-03T13:02:11Z,impression,0,0,Instagram
c1,2018-07-17T19:15:07Z,impression,0,0,Online Display
c1,2018-07-24T15:51:46Z,click,1,12.5,Online Display
c2,2018-07-03T07:14:10Z,impression,0,0,Paid Search
c2,2018-07-04T07:14:10Z,impression,0,0,Facebook
c3,2018-07-05T10:00:00Z,click,1,20,Paid Search
"""



def test_the_process_exits_non_zero_on_a_mapping_problem(tmp_path):
    out = run_process("paths", str(PUBLIC / "snowplow_sessions_derived.csv"), "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 2 and out.stderr.startswith("error: a column mapping is needed")


def test_a_converted_flag_makes_the_converting_touch_a_conversion(run, tmp_path):
    f = tmp_path / "flags.csv"
    f.write_text(FLAGS.replace("conversion,", "converted,", 1))
    out = run("attribute", str(f), "--models", "last,linear", "--csv")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(pd.io.common.StringIO(out.stdout))
    last = table[table["model"] == "last"].set_index("channel")["conversions"]
    assert "(no touch)" not in last.index
    assert last.to_dict() == {"Instagram": 0.0, "Online Display": 1.0, "Paid Search": 1.0, "Facebook": 0.0} or \
        last[last > 0].to_dict() == {"Online Display": 1.0, "Paid Search": 1.0}
    assert table[table["model"] == "linear"]["conversions"].sum() == 2


def test_every_conversion_without_a_touch_is_an_error_not_a_table(run, tmp_path):
    f = tmp_path / "late.csv"  # every touch comes after the user's conversion
    f.write_text("user_id,timestamp,event_type,channel,order_id,value\n"
                 "u1,2024-01-01T10:00:00Z,purchase,,o1,10\nu1,2024-01-02T10:00:00Z,visit,seo,,\n"
                 "u2,2024-01-01T10:00:00Z,purchase,,o2,10\nu2,2024-01-03T10:00:00Z,visit,email,,\n")
    out = run("attribute", str(f))
    assert out.returncode == 2 and "all 2 conversions have no touch before them" in out.stderr
    assert out.stdout == ""


def test_orders_alone_and_performance_tables_are_refused(run, tmp_path):
    out = run("attribute", str(PUBLIC / "ra_attribution_orders.csv"))
    assert out.returncode == 2 and "no touchpoints" in out.stderr and "(no touch)" in out.stderr
    out = run("attribute", str(PUBLIC / "fivetran_google_ads_campaign_stats.csv"))
    assert out.returncode == 2 and "performance data, not journeys" in out.stderr


def test_no_conversions_is_an_error(run, tmp_path):
    out = run("attribute", str(PUBLIC / "snowplow_sp_event.csv"))
    assert out.returncode == 2 and "no conversions" in out.stderr


def test_mapping_needed_says_what_is_missing_and_how_to_map(run, tmp_path):
    out = run("paths", str(PUBLIC / "snowplow_sessions_derived.csv"), "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 2
    assert "a column mapping is needed" in out.stderr and "missing: user_key, ts" in out.stderr
    assert "--map user_key=<column>" in out.stderr and "'session_start'" in out.stderr


def test_map_saves_and_the_same_columns_are_remembered(run, tmp_path):
    db = f"sqlite:///{tmp_path / 'm.db'}"
    src = PUBLIC / "snowplow_sessions_derived.csv"
    out = run("import", str(src), "--map", "user_key=user_snowplow_domain_id", "--map", "ts=session_start",
              "--save-mapping", "snowplow sessions", env_db=db)
    assert out.returncode == 0, out.stderr
    assert "mapping saved as 'snowplow sessions'" in out.stdout and "touches" in out.stdout
    again = tmp_path / "renamed.csv"  # the same export under another name: no --map needed
    again.write_bytes(src.read_bytes())
    out = run("import", str(again), env_db=db)
    assert out.returncode == 0, out.stderr
    assert "the mapping saved as 'snowplow sessions' for these columns is used" in out.stdout
    out = run("paths", str(again), "--mapping", "snowplow sessions", "--out", str(tmp_path / "p.csv"), env_db=db)
    assert out.returncode == 0, out.stderr  # null journeys only: a path table with no conversions is still written
    out = run("paths", str(again), "--mapping", "nope", "--out", str(tmp_path / "p.csv"), env_db=db)
    assert out.returncode == 2 and "no saved mapping named 'nope'" in out.stderr and "snowplow sessions" in out.stderr


def test_bad_map_arguments_name_the_problem(run, tmp_path):
    src = str(PUBLIC / "snowplow_sessions_derived.csv")
    out = run("paths", src, "--map", "user_key", "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 2 and "--map takes field=column" in out.stderr
    out = run("paths", src, "--map", "user_key=user_snowplow_domain", "--map", "ts=session_start", "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 2 and "did you mean 'user_snowplow_domain_id'" in out.stderr


def test_import_prints_a_readable_report_with_money_per_currency(run, tmp_path):
    out = run("import", str(PUBLIC / "ga4_purchase_events.csv"), env_db=f"sqlite:///{tmp_path / 'g.db'}")
    assert out.returncode == 0, out.stderr
    assert "3,442.45 GBP" in out.stdout and "events → sessions → touches" in out.stdout
    assert "{" not in out.stdout, "no raw dicts in the report"


def test_touches_option_keeps_every_event(run, tmp_path):
    out = run("paths", str(PUBLIC / "ga4_purchase_events.csv"), str(PUBLIC / "ga4_ecommerce_funnel_events.csv"),
              "--touches", "events", "--out", str(tmp_path / "every.csv"))
    assert out.returncode == 0, out.stderr
    out2 = run("paths", str(PUBLIC / "ga4_purchase_events.csv"), str(PUBLIC / "ga4_ecommerce_funnel_events.csv"),
               "--out", str(tmp_path / "sessions.csv"))
    assert out2.returncode == 0, out2.stderr
    every, sessions = pd.read_csv(tmp_path / "every.csv"), pd.read_csv(tmp_path / "sessions.csv")
    length = lambda t: (t["path"].str.count(">") + 1).mul(t["total_conversions"] + t["total_null"]).sum()  # noqa: E731
    assert length(every) > length(sessions)
    assert every["total_conversions"].sum() == sessions["total_conversions"].sum() == 23
