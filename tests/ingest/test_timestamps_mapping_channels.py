"""Timestamp units and zones, column mapping (synonyms, fuzzy, overrides), channel rules."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from core.ingest import (
    ChannelRule,
    ColumnMapping,
    IngestError,
    assign_channels,
    default_rules,
    detect_profile,
    load_channel_rules,
    read_files,
    rules_frame,
    rules_from_frame,
    save_channel_rules,
)

MOMENT = pd.Timestamp("2024-06-01 12:34:56", tz="UTC")


@pytest.mark.parametrize("value", [
    "1717245296", "1717245296000", "1717245296000000", "1717245296000000000",  # s, ms, us, ns
    "2024-06-01T12:34:56Z", "2024-06-01T14:34:56+02:00", "2024-06-01 08:34:56-0400", "2024-06-01 12:34:56 UTC",
])
def test_units_and_zones(write, value):
    r = read_files([write("t.csv", f"user_id,ts,channel\nu,{value},seo\n")])
    assert r.touchpoints["ts"].iloc[0] == MOMENT


def test_naive_text_uses_the_given_zone(write):
    p = write("t.csv", "user_id,ts,channel\nu,2024-06-01 14:34:56,seo\nv,2024-01-15 13:00:00,seo\n")
    assert read_files([p]).touchpoints.set_index("user_key")["ts"]["u"] == pd.Timestamp("2024-06-01 14:34:56", tz="UTC")
    berlin = read_files([p], timezone="Europe/Berlin").touchpoints.set_index("user_key")["ts"]
    assert berlin["u"] == MOMENT  # CEST, UTC+2
    assert berlin["v"] == pd.Timestamp("2024-01-15 12:00", tz="UTC")  # CET, UTC+1
    with pytest.raises(IngestError, match="unknown time zone"):
        read_files([p], timezone="Mars/Olympus")


def test_fractional_epoch_seconds(write):
    r = read_files([write("t.csv", "user_id,ts,channel\nu,1717245296.5,seo\n")])
    assert r.touchpoints["ts"].iloc[0] == MOMENT + pd.Timedelta("500ms")


# ------------------------------------------------------------------------------------------ mapping
def test_synonyms_then_fuzzy():
    m = detect_profile("f.csv", ["Visitor ID", "Event Time", "UTM Source", "utm_medium", "campain_name"])
    assert m.profile == "events"
    assert m.fields["user_key"].column == "Visitor ID" and m.fields["user_key"].method == "synonym"
    assert m.column("ts") == "Event Time" and m.column("source") == "UTM Source"
    assert m.fields["campaign"].method == "fuzzy" and m.column("campaign") == "campain_name"
    assert 88 <= m.fields["campaign"].score < 100
    table = m.to_frame()
    assert {"field", "column", "method", "score", "required"} <= set(table.columns)
    assert table.set_index("field").loc["user_key", "required"]


def test_a_qualified_id_answers_to_its_plain_name():
    """A public anonymized journey table (User_ID_Anon, Timestamp, Step_Order, Channel, Conversion_Flag) needed a
    hand mapping: the anonymized user id is still the user id. A bare ``id`` left over maps nothing, and a
    column with the plain name wins over a qualified one."""
    m = detect_profile("f.csv", ["User_ID_Anon", "Timestamp", "Step_Order", "Channel", "Conversion_Flag"])
    assert m.profile == "events" and m.column("user_key") == "User_ID_Anon" and m.fields["user_key"].method == "synonym"
    assert m.column("conversion_flag") == "Conversion_Flag" and m.column("channel") == "Channel"
    assert detect_profile("f.csv", ["hashed_user_id", "user_id", "ts", "channel"]).column("user_key") == "user_id"
    assert detect_profile("f.csv", ["email_sha256", "ts", "channel"]).column("user_key") == "email_sha256"
    assert detect_profile("f.csv", ["anonymous_id", "ts", "channel"]).column("user_key") == "anonymous_id"  # Segment's own name
    mapped = detect_profile("f.csv", ["id_hash", "visitor", "ts", "channel"])
    assert mapped.column("user_key") == "visitor" and "id_hash" not in [f.column for f in mapped.fields.values()]


def test_fuzzy_ignores_weak_matches():
    m = detect_profile("f.csv", ["user_id", "ts", "channel", "resource", "mediums_x"])
    assert m.column("source") is None


def test_override_dict_and_edited_mapping(write):
    p = write("o.csv", "who,when,chan,other_chan\nu,2024-01-01T00:00:00Z,seo,ppc\n")
    with pytest.raises(IngestError, match="cannot tell"):
        read_files([p])
    r = read_files([p], mapping_overrides={"user_key": "who", "ts": "when", "channel": "other_chan"})
    assert r.touchpoints["channel"].tolist() == ["ppc"] and r.mapping.fields["channel"].method == "override"
    edited = r.mapping.with_overrides({"channel": "chan"})
    assert isinstance(edited, ColumnMapping)
    again = read_files([p], mapping_overrides={"o.csv": edited})
    assert again.touchpoints["channel"].tolist() == ["seo"]
    with pytest.raises(IngestError, match="does not have") as info:
        read_files([p], mapping_overrides={"user_key": "nope", "ts": "when", "channel": "chan"})
    assert info.value.column == "nope"
    with pytest.raises(IngestError, match="unknown field"):
        r.mapping.with_overrides({"colour": "chan"})


def test_override_unmaps_and_forces_profile(write):
    p = write("u.csv", "user_id,ts,channel,source,medium\nu,2024-01-01T00:00:00Z,Custom,google,cpc\n")
    assert read_files([p]).touchpoints["channel"].tolist() == ["Custom"]
    assert read_files([p], mapping_overrides={"channel": None}).touchpoints["channel"].tolist() == ["google"]
    with pytest.raises(IngestError, match="missing required"):
        read_files([p], mapping_overrides={"profile": "paths"})


# ------------------------------------------------------------------------------------------ channels
@pytest.mark.parametrize("source,medium,campaign,channel", [
    ("google", "cpc", "", "google"), ("google", "organic", "", "organic"), ("bing", "cpc", "", "microsoft"),
    ("facebook", "paid", "", "meta"), ("instagram", "cpc", "", "meta"), ("facebook.com", "referral", "", "organic_social"),
    ("linkedin", "cpc", "", "linkedin"), ("tiktok", "paid_social", "", "tiktok"), ("twitter", "cpc", "", "twitter"),
    ("newsletter", "email", "", "email"), ("(direct)", "(none)", "", "direct"), ("", "", "", "direct"),
    ("example.com", "referral", "", "referral"), ("duckduckgo", "organic", "", "organic"), ("criteo", "display", "", "display"),
    ("partner", "affiliate", "", "affiliates"), ("partner", "cpc", "summer cross-network", "cross_network"),
    ("youtube", "referral", "", "organic_video"), ("weird", "thing", "", "other"),
])
def test_default_rules(source, medium, campaign, channel):
    got = assign_channels(pd.Series([source]), pd.Series([medium]), pd.Series([campaign]))
    assert got.tolist() == [channel]


def test_custom_rules_priority_and_vectorized_scale():
    rules = [ChannelRule(2, "paid", medium_pattern="cpc"), ChannelRule(1, "brand", campaign_pattern="^brand")]
    n = 300_000
    rng = np.random.default_rng(1)
    src = pd.Series(rng.choice(["google", "bing"], n))
    med = pd.Series(rng.choice(["cpc", "organic"], n))
    camp = pd.Series(rng.choice(["brand_x", "generic", None], n))
    start = time.perf_counter()
    got = assign_channels(src, med, camp, rules)
    assert time.perf_counter() - start < 5  # 12 unique combinations evaluated, not 300k rows
    expect = np.where(camp.fillna("").str.startswith("brand"), "brand", np.where(med == "cpc", "paid", "other"))
    assert (got.to_numpy() == expect).all()


def test_bad_rules_are_refused():
    with pytest.raises(IngestError, match="not a valid regular expression"):
        assign_channels(pd.Series(["a"]), pd.Series(["b"]), pd.Series(["c"]), [ChannelRule(1, "x", source_pattern="(")])
    with pytest.raises(IngestError, match="priority"):
        rules_from_frame(pd.DataFrame({"priority": ["first"], "channel": ["x"], "source_pattern": [""], "medium_pattern": [""], "campaign_pattern": [""]}))


def test_rules_roundtrip_table_and_database(tmp_path, write):
    from core.store.db import make_engine

    frame = rules_frame(default_rules())
    assert rules_from_frame(frame) == default_rules()
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    assert load_channel_rules(engine, "ws1") == default_rules()
    mine = [ChannelRule(1, "everything", source_pattern=".*")]
    assert save_channel_rules(engine, "ws1", mine) == 1
    assert load_channel_rules(engine, "ws1") == mine
    assert load_channel_rules(engine, "ws2") == default_rules()  # other workspace untouched
    p = write("e.csv", "user_id,ts,source,medium\nu,2024-01-01T00:00:00Z,google,cpc\n")
    assert read_files([p], channel_rules=mine).touchpoints["channel"].tolist() == ["everything"]
    engine.dispose()
