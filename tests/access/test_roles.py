"""Role checks of every mutating function of `core`, driven by one table of (function, least role), so
none is forgotten: the table must list exactly the guarded functions, every writer found in the source
must be guarded (or listed as nobody's action), and each function refuses every role below its own,
before doing anything, with a message naming the role required and a refusal row in the audit log."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

import core
from core.access import GUARDED, NOT_GUARDED, AccessDenied, Actor, Role, add_member, create_workspace, require, set_local_mode
from core.store.access_models import AuditEvent
from core.store.db import make_engine

from .writers import writers

for _m in pkgutil.walk_packages(core.__path__, "core."):  # every guarded function registers at import
    importlib.import_module(_m.name)

V, A, P, D = Role.VIEWER, Role.ANALYST, Role.APPROVER, Role.ADMIN
#: function -> the least role that may call it (issue 16 §2: viewer reads, analyst imports/attributes/optimizes/
#: drafts, approver approves/executes/rolls back, admin manages members, connections, keys, schedules, auto-execute)
ROLE_TABLE: dict[str, Role] = {
    "core.access.four_eyes.set_four_eyes": D,
    "core.access.members.add_member": D,
    "core.access.members.create_workspace": D,
    "core.access.members.remove_member": D,
    "core.attribution.lift_store.add_lift_test": A,
    "core.attribution.lift_store.delete_lift_test": A,
    "core.attribution_runs.execute_run": A,
    "core.attribution_runs.mark_opened": V,
    "core.attribution_runs.store_run": A,
    "core.autopilot.glide.record_paths": A,
    "core.autopilot.glide.refresh_paths": A,
    "core.autopilot.outcomes.evaluate_outcomes": A,
    "core.autopilot.outcomes.mark_reported": A,
    "core.autopilot.outcomes.record_predictions": A,
    "core.autopilot.runner.run_schedule": A,
    "core.autopilot.schedules.claim_run": A,
    "core.autopilot.schedules.create_schedule": D,
    "core.autopilot.schedules.finish_run": A,
    "core.autopilot.schedules.close_abandoned_runs": A,
    "core.autopilot.schedules.update_schedule": D,
    "core.changes.create_plan": A,
    "core.changes.create_rollback_plan": P,
    "core.execute.approve": P,
    "core.execute.cancel": A,
    "core.execute.execute": P,
    "core.execute.preview": A,
    "core.execute.rollback": P,
    "core.guardrails.save_guardrails": D,
    "core.guardrails.set_kill_switch": P,
    "core.ingest.channels.save_channel_rules": A,
    "core.ingest.persist.delete_dataset": A,
    "core.ingest.persist.import_files": A,
    "core.ingest.persist.move_row_events_to_files": D,
    "core.ingest.persist.save_import": A,
    "core.ingest.saved_mappings.delete_mapping": A,
    "core.ingest.saved_mappings.save_mapping": A,
    "core.ingest.sql.import_sql": A,
    "core.optimize.session.ensure_sandbox": A,
    "core.optimize.whatif.delete_scenario": A,
    "core.optimize.whatif.save_scenario": A,
    "core.platforms.secret_store.CredentialStore.delete": D,
    "core.platforms.secret_store.CredentialStore.delete_prefix": D,
    "core.platforms.secret_store.CredentialStore.save": D,
    "core.platforms.sync.sync_platform": A,
    "core.tracking.config.save_destination": D,
    "core.tracking.dispatch.retry_now": D,
    "core.tracking.keys.create_key": D,
    "core.tracking.keys.revoke_key": D,
    "core.tracking.live.ensure_live_dataset": A,
    "core.tracking.runs.create_job": A,
    "core.tracking.runs.run_job": A,
    "core.tracking.store.write": A,
}
#: functions that run their own check inside (their workspace is found or made in the body)
SELF_CHECKED = {"core.access.members.create_workspace", "core.ingest.persist.move_row_events_to_files"}
#: functions whose workspace comes from their input rows (collector writes); checked in tests/tracking
BY_INPUT = {"core.tracking.store.write"}
WS = "acme"
PEOPLE = {role: f"{role.label}@acme.example" for role in Role}
CASES = [(name, role, role >= need) for name, need in sorted(ROLE_TABLE.items()) for role in Role]


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory):
    """A workspace with one member of each role, local single-user mode off (a provider is configured)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('roles') / 'app.db'}")
    create_workspace(engine, WS, actor=None)
    for role, email in PEOPLE.items():
        add_member(engine, WS, email, role)
    set_local_mode(False, entry="page")
    try:
        yield engine
    finally:
        set_local_mode(True, entry="cli")
        engine.dispose()


def test_the_table_lists_every_guarded_function():
    assert set(ROLE_TABLE) == set(GUARDED), "add the new guarded function to ROLE_TABLE with its least role"
    for name, need in ROLE_TABLE.items():
        assert GUARDED[name].need.role == need, name


def test_every_writer_of_core_is_guarded_or_nobodys_action():
    found = writers()
    missing = {name: why for name, why in found.items()
               if name not in GUARDED and not any(name == k or name.startswith(k + ".") for k in NOT_GUARDED)}
    assert not missing, f"writers without a role check: {missing}"


def _callable_of(name: str):
    module, _, rest = name.partition(".")
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj, len(parts) - cut > 1
    raise LookupError(name)


def _call(engine, name: str, actor: Actor):
    """Call the guarded function with the actor and placeholders for everything else: a refusal comes
    before the body, so the placeholders are never used by a refused call."""
    fn, is_method = _callable_of(name)
    sig = inspect.signature(fn)
    args = {}
    for p in sig.parameters.values():
        if p.name == "self":
            args[p.name] = types.SimpleNamespace(engine=engine)
        elif p.name == "engine":
            args[p.name] = engine
        elif p.name in ("workspace_id", "workspace"):
            args[p.name] = WS
        elif p.name == "actor":
            args[p.name] = actor
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            args[p.name] = None
    if is_method:
        return fn(**args)
    return fn(**args)


def _refusals(engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(AuditEvent.id).where(AuditEvent.outcome == "refused")).all())


@pytest.mark.parametrize("name,role,allowed", CASES, ids=[f"{n.split('.', 1)[1]}-{r.label}" for n, r, _ in CASES])
def test_role_table(signed_in, name, role, allowed):
    actor = Actor.user(email=PEOPLE[role], subject=f"sub-{role.label}")
    need = ROLE_TABLE[name]
    if allowed:  # the check lets the member through (the functions themselves are tested where they live)
        assert require(signed_in, WS, actor, need) == role
        return
    if name in SELF_CHECKED or name in BY_INPUT:
        with pytest.raises(AccessDenied) as refused:
            require(signed_in, WS, actor, need, action=GUARDED[name].action)
    else:
        before = _refusals(signed_in)
        with pytest.raises(AccessDenied) as refused:
            _call(signed_in, name, actor)
        assert _refusals(signed_in) == before + 1  # the refused attempt is in the audit log
    assert f"needs the {need.label} role" in str(refused.value)
    assert refused.value.required == need


def test_without_sign_in_the_local_user_is_refused_and_strangers_too(signed_in):
    with pytest.raises(AccessDenied, match="signed-in identity"):
        _call(signed_in, "core.changes.create_plan", Actor.local(entry="page"))
    with pytest.raises(AccessDenied, match="not a member"):
        _call(signed_in, "core.changes.create_plan", Actor.user(email="mallory@evil.example"))


def test_a_member_bound_to_another_subject_is_refused(signed_in):
    from core.access import bind_subject

    bind_subject(signed_in, Actor.user(email=PEOPLE[Role.ADMIN], subject="real-admin"))
    assert require(signed_in, WS, Actor.user(email=PEOPLE[Role.ADMIN], subject="real-admin"), D) == D
    with pytest.raises(AccessDenied):  # same address from another provider account
        require(signed_in, WS, Actor.user(email=PEOPLE[Role.ADMIN], subject="impostor"), V)


def test_audit_log_is_append_only_in_the_database(signed_in):
    with Session(signed_in) as s:
        assert s.scalar(select(AuditEvent.id).limit(1)) is not None
    with signed_in.connect() as c:
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                c.execute(text(statement))
            c.rollback()
