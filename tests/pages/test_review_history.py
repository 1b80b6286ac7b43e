"""AppTest of the Review and History pages, started from app.py on a temporary SQLite database."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.changes import DraftChange, SafetySettings, create_plan, load_plan, plans_frame
from core.platforms.sandbox import SandboxPlatform
from core.store.db import make_engine

WS = "default"
APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = "sqlite:///" + str(tmp_path / "app.db")
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    sb = SandboxPlatform(eng, WS, n_meta=2, n_google=1, history_days=5)
    yield eng, sb
    eng.dispose()


def drafts(sb, factor="1.2"):
    return [DraftChange("sandbox", "sandbox-1", e.entity_type, e.external_id, e.name, "budget", e.daily_budget,
                        (e.daily_budget * Decimal(factor)).quantize(Decimal("0.01")), "USD", "grow", 80.0)
            for e in sb.list_entities() if e.entity_type == "campaign"]


def app_on(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def frame(at, column):
    """The first table on the page that has ``column``."""
    for d in at.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no table with {column!r}; have {[list(d.value.columns)[:4] for d in at.dataframe]}")


def button(at, key):
    return next(b for b in at.button if b.key == key)


def test_review_preview_confirm_execute(db):
    eng, sb = db
    pid = create_plan(eng, WS, drafts(sb), actor="opt", name="grow all")
    at = app_on("pages/review.py")
    assert _plan_select(at).value == pid
    assert "Draft changes" in [s.value for s in at.subheader]
    tile = next(m for m in at.metric if m.label == "Daily budget change")
    currency = drafts(sb)[0].currency.upper()
    assert tile.value.endswith(f" {currency}") and tile.value.startswith("+"), tile.value  # an amount says its currency

    button(at, f"review.{pid}.preview").click().run()
    assert not at.exception, at.exception
    assert load_plan(eng, WS, pid).status == "previewed"
    diff = frame(at, "safety")
    assert list(diff["field"]) == ["budget"] * 3 and set(diff["safety"]) == {"ok"} and set(diff["validation"]) == {"ok"}
    assert diff["change_pct"].round(1).tolist() == [20.0] * 3

    button(at, f"review.{pid}.approve").click().run()  # opens the dialog from the stored flag
    assert at.session_state["review.pending"]["hash"] == load_plan(eng, WS, pid).content_hash
    assert load_plan(eng, WS, pid).status == "previewed"  # nothing happens before the confirmation
    button(at, "review.confirm_yes").click().run()
    assert not at.exception, at.exception
    view = load_plan(eng, WS, pid)
    assert view.status == "completed" and {c.status for c in view.changes} == {"applied"}
    assert any("completed" in s.value for s in at.success)
    assert "review.pending" not in at.session_state
    assert all(sb.read_live("campaign", c.external_id, "budget") == c.new_value for c in view.changes)


def test_review_blocks_unsafe_changes_and_cancel_closes_the_dialog(db):
    eng, sb = db
    pid = create_plan(eng, WS, drafts(sb, "1.8"), actor="opt", settings=SafetySettings(max_change_pct=50))
    at = app_on("pages/review.py")
    button(at, f"review.{pid}.preview").click().run()
    diff = frame(at, "safety")
    assert diff["safety"].str.contains("exceeds").all()
    assert not any(b.key == f"review.{pid}.approve" for b in at.button)  # nothing passes: no approve button

    ok = create_plan(eng, WS, drafts(sb, "1.1"), actor="opt")
    at.run()
    _plan_select(at).set_value(ok).run()
    button(at, f"review.{ok}.preview").click().run()
    button(at, f"review.{ok}.approve").click().run()
    button(at, "review.confirm_no").click().run()
    assert "review.pending" not in at.session_state and load_plan(eng, WS, ok).status == "previewed"


def test_history_lists_filters_and_rolls_back(db):
    from core import execute as ex

    eng, sb = db
    before = {e.external_id: e.daily_budget for e in sb.list_entities() if e.entity_type == "campaign"}
    pid = create_plan(eng, WS, drafts(sb), actor="alice", name="grow all")
    pr = ex.preview(eng, WS, pid, sb, actor="alice")
    ex.approve(eng, WS, pid, pr.content_hash, actor="alice")
    ex.execute(eng, WS, pid, pr.content_hash, sb, actor="alice")
    other = create_plan(eng, WS, drafts(sb, "1.1"), actor="bob", name="draft only")

    at = app_on("pages/history.py")
    plans = frame(at, "n_applied")
    assert set(plans["id"]) == {pid, other}
    assert plans.set_index("id").loc[pid, "n_applied"] == 3 and plans.set_index("id").loc[pid, "executed_by"] == "alice"
    at.multiselect(key="history.status").set_value(["completed"]).run()
    assert list(frame(at, "n_applied")["id"]) == [pid]
    changes = frame(at, "response")
    assert (changes["status"] == "applied").all() and changes["request_id"].str.startswith("sbx-req-").all()
    assert changes["response"].str.contains("read_back").all()

    button(at, f"history.{pid}.rollback").click().run()
    assert not at.exception, at.exception
    rb = int(plans_frame(eng, WS)["id"].max())
    view = load_plan(eng, WS, rb)
    assert view.origin == "rollback" and view.rollback_of_id == pid and view.status == "draft"
    assert at.session_state["review.plan_id"] == rb
    assert _plan_select(at).value == rb  # landed on Review with the inverse plan
    at.switch_page("pages/review.py")  # AppTest reruns its own current page; pin it to where the app went

    button(at, f"review.{rb}.preview").click().run()
    assert set(frame(at, "safety")["safety"]) == {"ok"}, frame(at, "safety").to_dict("records")
    button(at, f"review.{rb}.approve").click().run()
    button(at, "review.confirm_yes").click().run()
    assert load_plan(eng, WS, rb).status == "completed"
    assert {e.external_id: e.daily_budget for e in sb.list_entities() if e.entity_type == "campaign"} == before


def test_sandbox_advance_from_the_sidebar(db):
    eng, sb = db
    create_plan(eng, WS, drafts(sb), actor="opt")
    clock = sb.clock()
    at = app_on("pages/review.py")
    at.number_input(key="review.sandbox_days").set_value(3).run()
    button(at, "review.sandbox_advance").click().run()
    assert not at.exception, at.exception
    assert (sb.clock() - clock).days == 3
    assert any("Simulated" in s.value for s in at.success)


def test_interrupted_execution_shows_what_was_applied_and_resumes(db):
    from core import execute as ex

    eng, sb = db
    pid = create_plan(eng, WS, drafts(sb), actor="alice")
    pr = ex.preview(eng, WS, pid, sb, actor="alice")
    ex.approve(eng, WS, pid, pr.content_hash, actor="alice")

    def crash(done, total, info):
        if done == 1:
            raise KeyboardInterrupt("server restarted")

    with pytest.raises(KeyboardInterrupt):
        ex.execute(eng, WS, pid, pr.content_hash, sb, actor="alice", progress=crash)

    at = app_on("pages/review.py")
    assert list(frame(at, "safety")["status"]) == ["applied", "pending", "pending"]
    # the executor was alive a moment ago: no resume yet, and the page says why and when
    assert any("being executed" in i.value and "2 changes" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == f"review.{pid}.resume"]
    from tests.execution.conftest import expire_lease

    expire_lease(eng, pid, WS)
    at = app_on("pages/review.py")
    assert any("2 changes still pending" in w.value for w in at.warning)
    button(at, f"review.{pid}.resume").click().run()
    button(at, "review.confirm_yes").click().run()
    assert not at.exception, at.exception
    view = load_plan(eng, WS, pid)
    assert view.status == "completed" and [c.status for c in view.changes] == ["applied"] * 3
    assert all(sb.read_live("campaign", c.external_id, "budget") == c.new_value for c in view.changes)


def test_review_says_why_a_pause_is_blocked_and_how_to_allow_it(db):
    eng, sb = db
    e = next(x for x in sb.list_entities() if x.entity_type == "campaign")
    pause = [DraftChange(sb.name, sb.account_id, e.entity_type, e.external_id, e.name, "status", e.status, "PAUSED",
                         e.currency, "below target ROAS", 80.0)]
    pid = create_plan(eng, WS, pause, actor="opt")
    at = app_on("pages/review.py")
    assert any("Allow pausing / activating" in w.value and "block status changes" in w.value for w in at.warning)
    button(at, f"review.{pid}.preview").click().run()
    assert frame(at, "safety")["safety"].iloc[0] == "status changes are not allowed by the safety settings"
    assert any("blocked" in w.value and "tick **Allow pausing / activating**" in w.value for w in at.warning)
    assert not any(b.key == f"review.{pid}.approve" for b in at.button)
    # ticking the box and running the dry run again lets the pause through
    at.checkbox(key=f"review.{pid}.status").check().run()
    button(at, f"review.{pid}.preview").click().run()
    assert frame(at, "safety")["safety"].iloc[0] == "ok"
    assert any(b.key == f"review.{pid}.approve" for b in at.button)


def _plan_select(at):
    """The Review page's plan picker (its key follows the plan labels, so find it by its label)."""
    return next(s for s in at.selectbox if s.label == "Change plan")


def test_a_balanced_plan_states_its_rule_and_shows_a_held_increase(db):
    """The dry run states the order and the funding rule; a stale decrease holds the increase it funded, and
    Review and History show the held change with the decrease that did not apply."""
    from core.platforms.base import ChangeRequest

    eng, sb = db
    camps = [e for e in sb.list_entities() if e.entity_type == "campaign"]
    up, down = camps[0], camps[1]
    moves = [DraftChange(sb.name, sb.account_id, "campaign", up.external_id, up.name, "budget", up.daily_budget,
                         up.daily_budget + Decimal("10"), "USD", "move", 80.0),
             DraftChange(sb.name, sb.account_id, "campaign", down.external_id, down.name, "budget", down.daily_budget,
                         down.daily_budget - Decimal("10"), "USD", "move", 80.0)]
    pid = create_plan(eng, WS, moves, actor="opt", name="move 10")
    at = app_on("pages/review.py")
    button(at, f"review.{pid}.preview").click().run()
    assert any(i.value.startswith("Execution order: the 1 budget decrease(s) first (change 2)") for i in at.info)
    sb.apply(ChangeRequest("x", "campaign", down.external_id, "budget", down.daily_budget,
                           down.daily_budget - Decimal("1")))  # someone edits the decreased campaign after the review
    button(at, f"review.{pid}.approve").click().run()
    button(at, "review.confirm_yes").click().run()
    assert not at.exception, at.exception
    diff = frame(at, "safety").set_index("seq")
    assert diff.loc[1, "status"] == "held" and diff.loc[2, "status"] == "stale"
    assert f"the decrease of campaign {down.name} (change 2" in diff.loc[1, "error_message"]
    assert any("1 increase(s) held (change 1)" in w.value for w in at.warning)
    assert sb.read_live("campaign", up.external_id, "budget") == up.daily_budget

    at = app_on("pages/history.py")
    assert frame(at, "n_held").set_index("id").loc[pid, "n_held"] == 1
    changes = frame(at, "response").set_index("seq")
    assert changes.loc[1, "status"] == "held" and "was stale" in changes.loc[1, "error_message"]
    assert any("1 increase(s) held (change 1)" in w.value for w in at.warning)
