"""Channel rules cannot stall imports (issue 11 §3): only linear-time (RE2) patterns are accepted, refused
at save time with a clear message, and evaluation runs once per distinct value, in linear time."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from core.ingest import ChannelRule, IngestError, assign_channels, import_files, load_channel_rules, save_channel_rules
from core.ingest.channels import MAX_RULES, default_rules, rules_from_frame


@pytest.mark.parametrize("pattern, says", [
    (r"(?<=a)b", "lookahead or lookbehind"),
    (r"(?<!x)y", "lookahead or lookbehind"),
    (r"foo(?=bar)", "lookahead or lookbehind"),
    (r"(a)\1", "backreference"),
    (r"(?P<x>a)(?P=x)", "backreference"),
    (r"a++b", "possessive"),
    (r"(?>ab)", "atomic group"),
    (r"\Z", "RE2 syntax"),
    ("a" * 301, "at most 300"),
], ids=["lookbehind", "negative-lookbehind", "lookahead", "backref", "named-backref", "possessive", "atomic", "python-only-escape",
        "too-long"])
def test_backtracking_patterns_are_refused_when_saved(sqlite_url, pattern, says):
    from core.store.db import make_engine

    engine = make_engine(sqlite_url)
    with pytest.raises(IngestError, match=says) as err:
        save_channel_rules(engine, "ws", [ChannelRule(1, "x", source_pattern=pattern)])
    assert "channel rule 1 (x): source_pattern" in str(err.value)
    assert load_channel_rules(engine, "ws") == default_rules()  # nothing was saved
    engine.dispose()


def test_rules_table_from_the_page_is_checked_too():
    frame = pd.DataFrame({"priority": [1], "channel": ["x"], "source_pattern": [""], "medium_pattern": [r"(\w+)\1"],
                          "campaign_pattern": [""]})
    with pytest.raises(IngestError, match="backreference"):
        rules_from_frame(frame)


def test_too_many_rules_are_refused():
    with pytest.raises(IngestError, match=f"at most {MAX_RULES}"):
        assign_channels(pd.Series(["a"]), pd.Series(["b"]), pd.Series(["c"]),
                        [ChannelRule(i, "x", source_pattern="a") for i in range(MAX_RULES + 1)])


def test_a_stored_exponential_rule_does_not_stall_an_import(engine, write):
    """A rule saved before this check (written straight into the table) is refused at import, in no time."""
    from core.store.models import ChannelRule as RuleRow

    with engine.begin() as conn:
        conn.execute(insert(RuleRow), [{"workspace_id": "ws", "priority": 1, "channel": "evil",
                                        "source_pattern": r"^(a|aa)+(?<=b)$", "medium_pattern": "", "campaign_pattern": ""}])
    path = write("e.csv", "user_id,ts,source,medium\nu," + "2024-01-01T00:00:00Z," + "a" * 28 + ",cpc\n")
    start = time.perf_counter()
    with pytest.raises(IngestError, match="lookahead or lookbehind"):
        import_files(engine, "ws", [path])
    assert time.perf_counter() - start < 5


def test_catastrophic_looking_patterns_run_in_linear_time():
    """(a+)+$ backtracks exponentially in Python's re; under RE2 a long cell costs microseconds."""
    rules = [ChannelRule(1, "slow?", source_pattern=r"^(a+)+$"), ChannelRule(2, "nested", medium_pattern=r"(x*)*y")]
    n = 5_000
    src = pd.Series(["a" * 40 + "!" + str(i) for i in range(n)])  # every source distinct, each a worst case for backtracking
    med = pd.Series(["x" * 40 + str(i) for i in range(n)])
    start = time.perf_counter()
    got = assign_channels(src, med, pd.Series([None] * n), rules)
    assert time.perf_counter() - start < 5
    assert (got == "other").all()
    assert assign_channels(pd.Series(["aaa"]), pd.Series([""]), pd.Series([""]), rules).tolist() == ["slow?"]


def test_patterns_run_per_distinct_part_value_not_per_combination(monkeypatch):
    """1,000 sources x 1,000 campaigns = up to a million combinations; each pattern sees ~2,000 values."""
    from core.ingest import channels

    seen = []
    real = channels._matches
    monkeypatch.setattr(channels, "_matches", lambda values, pattern: (seen.append(len(values)), real(values, pattern))[1])
    rng = np.random.default_rng(3)
    n = 200_000
    src = pd.Series(np.char.add("s", rng.integers(0, 1000, n).astype(str)))
    camp = pd.Series(np.char.add("c", rng.integers(0, 1000, n).astype(str)))
    got = assign_channels(src, pd.Series(["cpc"] * n), camp, [ChannelRule(1, "s7", source_pattern="^s7$"), ChannelRule(2, "c", campaign_pattern="^c1")])
    assert max(seen) <= 1001
    expect = np.where(src == "s7", "s7", np.where(camp.str.startswith("c1"), "c", "other"))
    assert (got.to_numpy() == expect).all()


def test_default_rules_are_all_re2():
    for rule in default_rules():
        rule.check()
