"""Four-eyes approval with signed-in people, the audit log naming them, and the sign-in rules of the app
(provider configured or not, loopback only without sign-in)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import execute as ex
from core.access import AccessDenied, Actor, FourEyes, add_member, audit_frame, set_four_eyes, set_local_mode
from core.access.signin import auth_configured, is_loopback, serving_refusal, signed_in_actor
from core.changes import SafetySettings, create_plan, plans_frame
from tests.execution.conftest import TODAY, WS, budget_drafts, eng  # noqa: F401  (fixture)

ANN, BOB, CAT, VIC = (Actor.user(email=f"{n}@acme.example", subject=f"sub-{n}") for n in ("ann", "bob", "cat", "vic"))


@pytest.fixture
def team(eng):
    """ann drafts (analyst), bob and cat approve (approver), vic only reads; sign-in required."""
    from core.platforms.sandbox import SandboxPlatform

    platform = SandboxPlatform(eng, WS, seed=3, n_meta=2, n_google=0, history_days=5, today=TODAY)
    for who, role in ((ANN, "analyst"), (BOB, "approver"), (CAT, "approver"), (VIC, "viewer")):
        add_member(eng, WS, who.email, role)
    set_four_eyes(eng, WS, FourEyes(total=Decimal("10"), single=None))
    set_local_mode(False, entry="page")
    yield platform
    set_local_mode(True, entry="cli")


def _previewed(eng, platform, author, factor="1.5"):
    pid = create_plan(eng, WS, budget_drafts(platform, factor), actor=author, settings=SafetySettings())
    return pid, ex.preview(eng, WS, pid, platform, actor=author).content_hash


def test_viewer_cannot_draft_analyst_cannot_approve_author_cannot_approve_own_large_plan(eng, team):
    with pytest.raises(AccessDenied, match="needs the analyst role"):
        create_plan(eng, WS, budget_drafts(team), actor=VIC, settings=SafetySettings())
    pid, digest = _previewed(eng, team, ANN)
    with pytest.raises(AccessDenied, match="needs the approver role"):
        ex.approve(eng, WS, pid, digest, actor=ANN)
    own, own_digest = _previewed(eng, team, BOB)
    with pytest.raises(AccessDenied, match="someone other than its author"):
        ex.approve(eng, WS, own, own_digest, actor=BOB)
    ex.approve(eng, WS, own, own_digest, actor=CAT)  # a second person
    ex.execute(eng, WS, own, own_digest, team, actor=BOB)
    plans = plans_frame(eng, WS).set_index("id")
    assert (plans.loc[own, "created_by"], plans.loc[own, "approved_by"], plans.loc[own, "executed_by"]) == (
        BOB.email, CAT.email, BOB.email)
    log = audit_frame(eng, WS)
    done = log[log["outcome"] == "ok"]
    assert {"plan.create", "plan.preview", "plan.approve", "plan.execute"} <= set(done["action"])
    assert set(done.loc[done["action"].str.startswith("plan."), "email"]) <= {ANN.email, BOB.email, CAT.email}
    assert (done.loc[done["action"].str.startswith("plan."), "entry_point"] == "page").all()
    refused = log[log["outcome"] == "refused"]
    assert {VIC.email, ANN.email, BOB.email} <= set(refused["email"])


def test_a_small_plan_may_be_approved_by_its_author(eng, team):
    pid, digest = _previewed(eng, team, BOB, factor="1.01")  # well under the 10 a day threshold
    ex.approve(eng, WS, pid, digest, actor=BOB)


AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "suite",
        "client_secret": "s", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def test_sign_in_configuration_and_loopback_rule():
    assert auth_configured(AUTH)
    assert auth_configured({"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "c",
                            "corp": {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}})
    assert not auth_configured(None) and not auth_configured({**AUTH, "client_secret": ""})
    assert not auth_configured({**AUTH, "cookie_secret": ""})
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.5.0.1")
    assert not is_loopback("") and not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("::")
    assert serving_refusal("127.0.0.1", sign_in=False) is None and serving_refusal("0.0.0.0", sign_in=True) is None
    message = serving_refusal("0.0.0.0", sign_in=False)
    assert "0.0.0.0" in message and "sign-in" in message
    assert "every network interface" in serving_refusal("", sign_in=False)


def test_the_four_eyes_rule_binds_signed_in_people_not_the_local_user():
    from core.access.four_eyes import applies_to

    assert applies_to(signed_in_actor({"email": "ann@acme.example", "sub": "1"}))
    assert not applies_to(None) and not applies_to("local user")


def test_signed_in_actor_needs_an_email():
    who = signed_in_actor({"email": "Ann@Acme.example", "sub": "123", "name": "Ann"})
    assert (str(who), who.subject, who.kind, who.entry) == ("ann@acme.example", "123", "user", "page")
    with pytest.raises(ValueError, match="e-mail"):
        signed_in_actor({"sub": "123"})


def test_access_page_in_local_mode(tmp_path, monkeypatch):
    from tests.pages.conftest import new_app

    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    at = new_app()
    at.switch_page("pages/access.py").run()
    assert not at.exception, at.exception
    assert any("Audit log" in h.value for h in at.subheader)
    # the rule is shown as it is, and the page does not claim a second person is needed where none can be
    rule = next(c.value for c in at.caption if c.value.startswith("a second person must approve"))
    assert "with sign-in only: in local single-user mode there is no second person" in rule
    at.text_input(key="access.add.email").input("ann@acme.example")
    at.selectbox(key="access.add.role").select("approver")
    at.button[[b.label for b in at.button].index("Add or change role")].click().run()
    assert not at.exception, at.exception
    from core.access import list_members
    from core.store.db import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        assert list(list_members(eng, "default")["email"]) == ["ann@acme.example"]
        log = audit_frame(eng, "default")
        assert log.iloc[0]["action"] == "member.add" and log.iloc[0]["entry_point"] == "page"
    finally:
        eng.dispose()


def test_with_a_provider_configured_nobody_signed_in_sees_nothing(tmp_path, monkeypatch):
    """The app asks to sign in and shows no workspace, no page and no data until someone has."""
    from tests.pages.conftest import new_app

    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    at = new_app()
    at.secrets["auth"] = AUTH
    try:
        at.switch_page("pages/access.py").run()
        assert not at.exception, at.exception
        assert not at.button and not at.selectbox and not at.dataframe  # reached without the frame: stops
        assert "Sign in" in at.warning[0].value
        at = new_app()
        at.secrets["auth"] = AUTH
        at.run()  # through the app's frame: only the sign-in button
        assert not at.exception, at.exception
        assert [b.label for b in at.button] == ["Sign in"] and not at.dataframe
    finally:
        set_local_mode(True, entry="cli")
