"""Plan lifecycle: preview (dry run + freeze), approve, execute, record, roll back.

draft -> previewed -> approved -> executing -> completed / partially_failed / failed
(draft / previewed / approved -> cancelled). Every transition is a conditional UPDATE on the
expected status, stored with an audit event (who, when, note) in the same transaction, so two
tabs or a double click cannot both move a plan. Execution claims the plan with
``UPDATE ... WHERE status='approved' AND content_hash=:h`` and a fresh execution token; each change's
outcome is committed on its own right after the platform call, so a crash loses nothing and
``execute(..., resume=True)`` applies only what is still pending.

Two executors never apply the same change: the token holder keeps a lease on the plan (``heartbeat_at``,
renewed in the same transaction that claims each change, ``pending -> applying``, before every platform
write), and a resume may take the plan over only once that heartbeat is older than ``LEASE``. A change
left ``applying`` by a dead executor is settled on resume by reading the live value (already at the new
value -> applied; still at the old value -> applied now; anything else -> stale), never blindly re-sent;
a change never sent whose live value already is the new one is recorded as "unchanged" (not sent).
While a platform call is in flight a keeper thread renews the lease, so a call slower than the lease
never lets a Resume send the same change twice.
Platform guardrails (Meta: an ad set's budget at most 4 times an hour) are checked here, right after the
claim, counting applied changes and other executors' in-flight ones.

Budget decreases are executed first, and the increases are funded only by what the decreases freed
(`core.funding`): a decrease that did not apply reduces or holds the increases, so an execution, a resumed
one included, never takes the account's daily budgets above the total that was approved.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as _replace

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from core import funding
from core.access import Role, approval_refusal, check_four_eyes, guarded
from core.changes import (
    ChangePlanError,
    PlannedChange,
    SafetySettings,
    add_event,
    check_changes,
    content_hash,
    create_rollback_plan,
    display_value,
    format_value,
    load_plan,
    parse_value,
    lock_plan,
    same_value,
    to_planned,
)
from core.errors import report_unexpected
from core.guardrails import check_change_now, dry_run_warnings
from core.guardrails import check_changes as check_guardrails
from core.platforms.base import AdPlatform, ApplyResult, AuthError, ChangeRequest, PlatformError, ValidationResult
from core.store.db import DatabaseBusy, patient_write, transaction
from core.store.models import Change, ChangePlan, utcnow

#: Change statuses an execution still has to settle: not yet attempted, or claimed by an executor that died.
OPEN_CHANGE_STATUSES = ("pending", "applying")

ProgressFn = Callable[[int, int, dict], None]

#: How long an executor's heartbeat stays valid: a resume cannot take a plan over before it expires.
#: Every platform request times out well inside it (`core.platforms.base.PLATFORM_CALL_TIMEOUT`), and
#: while a platform call is in flight a keeper renews the heartbeat every quarter lease.
LEASE = dt.timedelta(seconds=120)
#: A platform call still running after this long is taken for hung: its lease is no longer renewed.
IN_FLIGHT_LIMIT = dt.timedelta(minutes=10)
#: Seconds the start of an execution waits for SQLite's write lock (saying so) before refusing to start.
START_PATIENCE = 30.0
#: Seconds a write during an execution (claim a change, record its outcome) waits for the lock, saying so.
WRITE_PATIENCE = 600.0


class PlanStateError(RuntimeError):
    """The plan is not in a status that allows this step (e.g. executing a plan nobody approved)."""


class PlanHashMismatch(PlanStateError):
    """The confirmed content hash is not the frozen plan's: the reviewer saw something else."""


class PlanClaimError(PlanStateError):
    """Another confirmation already claimed (or finished) this plan's execution."""


class ExecutionStopped(PlanStateError):
    """An unexpected error stopped the execution; the plan can be resumed at once (the message has the error id)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient platform errors: exponential backoff honouring ``retry_after``, capped.

    ``sleep`` is injectable so tests wait microseconds (and can record the waits).
    """

    max_attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        if self.max_attempts < 1 or self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("RetryPolicy: max_attempts >= 1 and non-negative waits")

    def wait(self, retry_state) -> float:
        base = wait_exponential(multiplier=self.initial_wait, max=self.max_wait)(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        return min(max(base, float(hint)), self.max_wait)


@dataclass(frozen=True)
class PreviewResult:
    plan_id: int
    content_hash: str
    status: str
    checks: dict
    validations: dict
    auto_approved: bool = False


@dataclass
class ExecutionResult:
    plan_id: int
    status: str
    counts: dict = field(default_factory=dict)
    interrupted: str | None = None  # set when another executor took the plan over


# ------------------------------------------------------------------------------ helpers
def _plan_for_update(s, plan_id: int) -> ChangePlan:
    plan = s.get(ChangePlan, plan_id)
    if plan is None:
        raise ChangePlanError(f"plan {plan_id} does not exist in this workspace")
    return plan


def _transition(s, plan_id: int, expected: tuple[str, ...], to_status: str, actor: str, note: str, **values) -> None:
    """Move the plan from one of ``expected`` to ``to_status`` atomically (with its audit event), or raise."""
    plan = _plan_for_update(s, plan_id)
    prior = plan.status
    if prior not in expected:
        raise PlanStateError(f"plan {plan_id} is {prior}; {to_status} needs it to be {' or '.join(expected)}")
    res = s.execute(update(ChangePlan).where(ChangePlan.id == plan_id, ChangePlan.status == prior)
                    .values(status=to_status, **values).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise PlanClaimError(f"plan {plan_id} changed status while {to_status} was being recorded: reload it")
    add_event(s, plan, to_status, actor, note, from_status=prior)


def _request(c: PlannedChange) -> ChangeRequest:
    return ChangeRequest(key=c.key, entity_type=c.entity_type, external_id=c.external_id, field=c.field,
                         old_value=c.old_value, new_value=c.new_value, currency=c.currency)


def _check_platform(plan_platform: str, plan_account: str, platform: AdPlatform) -> None:
    if platform.name != plan_platform or platform.account_id != plan_account:
        raise PlanStateError(f"the plan targets {plan_platform}/{plan_account}, not {platform.name}/{platform.account_id}")


# ------------------------------------------------------------------------------ preview / approve
@guarded(Role.ANALYST, "plan.preview", target="plan #{plan_id}")
def preview(engine: Engine, workspace_id: str, plan_id: int, platform: AdPlatform, *, actor: str,
            settings: SafetySettings | None = None, auto_approve: bool = False) -> PreviewResult:
    """Dry run: safety checks + platform validation, stored with the content hash (the plan is frozen).

    Allowed from draft or previewed (a re-preview refreshes the verdicts). ``settings`` replaces the
    plan's limits (part of the hash). With ``auto_approve`` (the user's switch) a plan whose every
    passing change is marked auto_approve is approved at once, and the audit log says so.
    """
    view = load_plan(engine, workspace_id, plan_id)
    if view.status not in ("draft", "previewed"):
        raise PlanStateError(f"plan {plan_id} is {view.status}: only a draft or previewed plan can be previewed")
    _check_platform(view.platform, view.account_id, platform)
    settings = settings or view.settings
    checks = check_changes(view.changes, settings, view.platform)
    checks, held, warnings = _workspace_guardrails(engine, workspace_id, view, platform, checks)
    validations = platform.validate([_request(c) for c in view.changes])
    by_key = {v.key: v for v in validations}
    missing = [c.seq for c in view.changes if c.key not in by_key]
    if missing:
        raise PlanStateError(f"the platform returned no validation for changes {missing}")
    if view.origin == "rollback":
        by_key.update(_changed_since(platform, view))
    frozen = {
        "checks": {str(c.seq): {"ok": c.ok, "messages": list(c.messages), "change_pct": c.change_pct,
                                **({"guardrails": held[c.seq]} if held.get(c.seq) else {})} for c in checks},
        "warnings": {str(k): v for k, v in warnings.items()},
        "validations": {k: {"ok": v.ok, "message": v.message, "code": v.code} for k, v in by_key.items()},
        "at": utcnow().isoformat(), "by": actor,
    }
    h = content_hash(view.platform, view.account_id, settings, view.changes)
    n_ok = sum(1 for c in checks if c.ok and by_key[str(c.seq)].ok)
    frozen["funding"] = funding.describe_rule(view.changes, {c.seq for c in checks if c.ok and by_key[str(c.seq)].ok})
    with transaction(engine, workspace_id) as s:
        _transition(s, plan_id, ("draft", "previewed"), "previewed", actor,
                    f"dry run: {n_ok}/{len(checks)} changes pass safety checks and platform validation; hash {h[:12]}",
                    content_hash=h, preview=frozen, settings=settings.to_dict())
    auto = False
    if auto_approve:
        auto = _auto_approve(engine, workspace_id, plan_id, h, actor=actor)
    return PreviewResult(plan_id, h, "approved" if auto else "previewed", frozen["checks"], frozen["validations"], auto)


def _changed_since(platform: AdPlatform, view) -> dict[str, ValidationResult]:
    """A rollback's preview reads every entity's live value: one that someone else changed since the plan
    being rolled back set it is left alone ("changed_since"), never reverted over their change."""
    out: dict[str, ValidationResult] = {}
    for c in view.changes:
        try:
            live = parse_value(c.field, platform.read_live(c.entity_type, c.external_id, c.field))
        except PlatformError as exc:
            out[c.key] = ValidationResult(c.key, False, f"could not read the live value to check it: {exc.message}",
                                          code=exc.code or "live_read")
            continue
        if live is not None and same_value(c.field, live, c.new_value):
            out[c.key] = ValidationResult(c.key, True, "already at the value to restore: it will not be sent")
        elif live != c.old_value:
            shown = display_value(c.field, live, c.currency)
            out[c.key] = ValidationResult(
                c.key, False, f"changed since by someone else: live value {shown}, but plan #{view.rollback_of_id} set "
                              f"{display_value(c.field, c.old_value, c.currency)}; not rolled back", code="changed_since")
    return out


def _passing(view) -> list[PlannedChange]:
    checks, vals = view.preview.get("checks", {}), view.preview.get("validations", {})
    return [c for c in view.changes if checks.get(c.key, {}).get("ok") and vals.get(c.key, {}).get("ok")]


def _verify_frozen(view, content_hash_: str) -> None:
    """The confirmed hash must be the stored one, and the stored rows must still hash to it."""
    if not view.content_hash:
        raise PlanStateError(f"plan {view.id} was never previewed")
    if content_hash_ != view.content_hash:
        raise PlanHashMismatch(f"plan {view.id} changed since you reviewed it (hash {content_hash_[:12]} != "
                               f"{view.content_hash[:12]}): review it again")
    if content_hash(view.platform, view.account_id, view.settings, view.changes) != view.content_hash:
        raise PlanHashMismatch(f"plan {view.id}'s stored changes no longer match its frozen hash: refusing")


@guarded(Role.APPROVER, "plan.approve", target="plan #{plan_id}")
def approve(engine: Engine, workspace_id: str, plan_id: int, content_hash_: str, *, actor: str) -> None:
    """Approve the previewed plan the reviewer saw (by hash); refuses a different or unpreviewed plan."""
    view = load_plan(engine, workspace_id, plan_id)
    if view.status != "previewed":
        raise PlanStateError(f"plan {plan_id} is {view.status}: only a previewed plan can be approved")
    _verify_frozen(view, content_hash_)
    ok = _passing(view)
    if not ok:
        raise PlanStateError(f"plan {plan_id}: no change passes the safety checks and platform validation")
    check_four_eyes(engine, workspace_id, plan_id=plan_id, author=view.created_by, changes=ok, approver=actor)
    with transaction(engine, workspace_id) as s:
        _transition(s, plan_id, ("previewed",), "approved", actor,
                    f"approved {len(ok)} of {len(view.changes)} changes (hash {content_hash_[:12]})",
                    content_hash=content_hash_)


def _auto_approve(engine: Engine, workspace_id: str, plan_id: int, content_hash_: str, *, actor: str) -> bool:
    """Approve without a click when every passing change is marked auto_approve; False otherwise."""
    view = load_plan(engine, workspace_id, plan_id)
    _verify_frozen(view, content_hash_)
    ok = _passing(view)
    refused = ok and approval_refusal(engine, workspace_id, plan_id=plan_id, author=view.created_by, changes=ok,
                                      approver=actor)
    if not ok or not all(c.auto_approve for c in ok) or refused:
        with transaction(engine, workspace_id) as s:
            plan = _plan_for_update(s, plan_id)
            add_event(s, plan, plan.status, actor, f"auto-approval on, but {refused}: waiting for a manual approval"
                      if refused else "auto-approval on, but not every change is above the confidence "
                                      "threshold: waiting for a manual approval")
        return False
    with transaction(engine, workspace_id) as s:
        _transition(s, plan_id, ("previewed",), "approved", "auto-approval",
                    f"auto-approved: all {len(ok)} passing changes are above the confidence threshold; "
                    f"auto-approval switched on by {actor} (hash {content_hash_[:12]})")
    return True


@guarded(Role.ANALYST, "plan.cancel", target="plan #{plan_id}")
def cancel(engine: Engine, workspace_id: str, plan_id: int, *, actor: str, note: str = "") -> None:
    """Discard a plan that has not started executing."""
    with transaction(engine, workspace_id) as s:
        _transition(s, plan_id, ("draft", "previewed", "approved"), "cancelled", actor, note or "cancelled")


# ------------------------------------------------------------------------------ execution
def _claim(engine: Engine, workspace_id: str, plan_id: int, content_hash_: str, actor: str, resume: bool,
           lease: dt.timedelta = LEASE, prepare: Callable | None = None) -> str:
    """Take the plan for this executor (conditional UPDATE); returns the execution token.

    ``prepare(session, plan)`` runs in the same transaction as a successful claim (it blocks the changes
    that fail the checks), so an execution either starts whole or not at all.
    """
    token = uuid.uuid4().hex
    with transaction(engine, workspace_id) as s:
        res = s.execute(update(ChangePlan).where(ChangePlan.id == plan_id, ChangePlan.status == "approved",
                                                 ChangePlan.content_hash == content_hash_)
                        .values(status="executing", execution_token=token, heartbeat_at=utcnow())
                        .execution_options(synchronize_session=False))
        if res.rowcount == 1:
            plan = s.get(ChangePlan, plan_id)
            add_event(s, plan, "executing", actor, "execution started", from_status="approved")
            if prepare is not None:
                prepare(s, plan)
            return token
    alive_since = None
    if resume:
        view = load_plan(engine, workspace_id, plan_id)
        if view.status == "executing":
            with transaction(engine, workspace_id) as s:
                plan = _plan_for_update(s, plan_id)
                old, beat = plan.execution_token, plan.heartbeat_at
                now = utcnow()
                # take over only a dead executor's plan: its lease (last heartbeat + LEASE) has run out.
                # The WHERE re-checks token and heartbeat, so a heartbeat written meanwhile wins the race.
                res = s.execute(update(ChangePlan).where(
                    ChangePlan.id == plan_id, ChangePlan.status == "executing", ChangePlan.content_hash == content_hash_,
                    ChangePlan.execution_token == old,
                    (ChangePlan.heartbeat_at.is_(None)) | (ChangePlan.heartbeat_at <= now - lease))
                    .values(execution_token=token, heartbeat_at=now).execution_options(synchronize_session=False))
                if res.rowcount == 1:
                    add_event(s, plan, "executing", actor, "execution resumed: applying the changes still pending",
                              from_status="executing")
                    if prepare is not None:
                        prepare(s, plan)
                    return token
                alive_since = beat
    view = load_plan(engine, workspace_id, plan_id)
    if view.content_hash and view.content_hash != content_hash_:
        raise PlanHashMismatch(f"plan {plan_id} is not the plan you confirmed (hash mismatch)")
    if view.status == "executing" and alive_since is not None:
        ago = max(0, int((utcnow() - alive_since).total_seconds()))
        wait = max(1, int((alive_since + lease - utcnow()).total_seconds()) + 1)
        raise PlanClaimError(f"plan {plan_id} is still being executed elsewhere (its executor's last heartbeat was "
                             f"{ago} s ago): resuming is possible once it has been silent for "
                             f"{int(lease.total_seconds())} s, in about {wait} s")
    if view.status == "executing":
        raise PlanClaimError(f"plan {plan_id} is already being executed (another tab or click); "
                             "resume it only if that execution was interrupted")
    if view.status in ("completed", "partially_failed", "failed"):
        raise PlanClaimError(f"plan {plan_id} was already executed ({view.status})")
    raise PlanStateError(f"plan {plan_id} is {view.status}: only an approved plan can be executed")


def _begin(engine: Engine, workspace_id: str, plan_id: int, change_id: int, token: str) -> str:
    """Renew this executor's lease and claim one change (``pending``/``applying`` -> ``applying``), atomically.

    Returns "ok", "lost" (another executor took the plan over: stop) or "done" (the change was settled
    meanwhile: skip it). Runs before every platform write, so a write only ever follows a live lease.
    """
    C, P = Change.__table__, ChangePlan.__table__
    now = utcnow()
    with engine.begin() as conn:
        beat = conn.execute(update(P).where(P.c.id == plan_id, P.c.workspace_id == workspace_id,
                                            P.c.status == "executing", P.c.execution_token == token)
                            .values(heartbeat_at=now))
        if beat.rowcount != 1:
            return "lost"
        got = conn.execute(update(C).where(C.c.id == change_id, C.c.workspace_id == workspace_id,
                                           C.c.status.in_(OPEN_CHANGE_STATUSES))
                           .values(status="applying", response={"claimed_by": token, "claimed_at": now.isoformat()}))
    return "ok" if got.rowcount == 1 else "done"


def _in_flight_elsewhere(engine: Engine, workspace_id: str, view, c: PlannedChange, change_id: int,
                         lease: dt.timedelta) -> str | None:
    """Which other live executor has the same entity field in flight ("applying"), or None.

    Runs after this change's claim is committed, so of two executors claiming one field at once at
    least the later one sees the other and holds back: never two writes in flight on one field (a
    manual plan and an autopilot plan on one campaign would otherwise both read the old value and
    both be recorded as applied). Claims of executors whose lease ran out (dead) do not count. Across
    workspaces, like the platform's own limits: the ad account is the same whoever sends.
    """
    C, P = Change.__table__, ChangePlan.__table__
    with engine.connect() as conn:  # deliberately not workspace-scoped: reads only whether and which plan
        # the few live executing plans first, then their changes through the plan_id index (never a scan of
        # every change ever made: usually there is no other executing plan and the second query is skipped)
        live = dict(conn.execute(select(P.c.id, P.c.workspace_id).where(
            P.c.platform == view.platform, P.c.account_id == view.account_id, P.c.id != view.id,
            P.c.status == "executing", P.c.heartbeat_at > utcnow() - lease)).all())
        rival = conn.execute(select(C.c.plan_id).where(
            C.c.plan_id.in_(list(live)), C.c.entity_type == c.entity_type, C.c.external_id == c.external_id,
            C.c.field == c.field, C.c.status == "applying", C.c.id != change_id).limit(1)).scalar() if live else None
    if rival is None:
        return None
    return f"plan #{rival}" if live[rival] == workspace_id else "a plan of another workspace"


def _heartbeat(engine: Engine, workspace_id: str, plan_id: int, token: str) -> bool:
    """Renew the lease (between retries, and while a call is in flight); False when another executor took the plan over."""
    P = ChangePlan.__table__
    with engine.begin() as conn:
        res = conn.execute(update(P).where(P.c.id == plan_id, P.c.workspace_id == workspace_id,
                                           P.c.status == "executing", P.c.execution_token == token)
                           .values(heartbeat_at=utcnow()))
    return res.rowcount == 1


class _LeaseKeeper:
    """Renews the executor's lease every quarter lease while a platform call is in flight.

    A call slower than the lease (a slow platform, retries with backoff) thus never lets a Resume from
    another tab take the plan over and send the same change again. Renewal stops after
    `IN_FLIGHT_LIMIT` (a hung call), or as soon as the lease turns out to be lost.
    """

    def __init__(self, renew: Callable[[], bool], lease: dt.timedelta):
        self._renew, self._interval = renew, max(0.02, lease.total_seconds() / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _run(self) -> None:
        deadline = time.monotonic() + IN_FLIGHT_LIMIT.total_seconds()
        while not self._stop.wait(self._interval) and time.monotonic() < deadline:
            try:
                if not self._renew():
                    self.lost = True
                    return
            except Exception:  # a busy database: the next beat tries again; the claim/record stay conditional
                continue

    def __enter__(self) -> "_LeaseKeeper":
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _record(engine: Engine, workspace_id: str, plan_id: int, change_id: int, token: str, **values) -> bool:
    """Commit one claimed change's outcome; False when the plan was taken over meanwhile.

    The outcome is written even then (the platform call did happen), unless the change was settled
    already. A Core transaction with explicit workspace filters: it runs once per change, so it stays lean.
    """
    C, P = Change.__table__, ChangePlan.__table__
    values.setdefault("response", {})
    with engine.begin() as conn:
        conn.execute(update(C).where(C.c.id == change_id, C.c.workspace_id == workspace_id,
                                     C.c.status.in_(OPEN_CHANGE_STATUSES)).values(**values))
        current = conn.execute(select(P.c.execution_token).where(P.c.id == plan_id, P.c.workspace_id == workspace_id)).scalar()
    return current == token


def _release(engine: Engine, workspace_id: str, plan_id: int, token: str, actor: str, note: str) -> None:
    """Give up this executor's lease at once (the plan stays "executing"), so it can be resumed without waiting."""
    with transaction(engine, workspace_id) as s:
        res = s.execute(update(ChangePlan).where(ChangePlan.id == plan_id, ChangePlan.status == "executing",
                                                 ChangePlan.execution_token == token)
                        .values(heartbeat_at=None).execution_options(synchronize_session=False))
        if res.rowcount == 1:
            add_event(s, s.get(ChangePlan, plan_id), "executing", actor, note, from_status="executing")


def _read_live(platform: AdPlatform, c: PlannedChange, policy: RetryPolicy):
    for attempt in Retrying(retry=retry_if_exception(lambda e: isinstance(e, PlatformError) and e.transient),
                            stop=stop_after_attempt(policy.max_attempts), wait=policy.wait, sleep=policy.sleep, reraise=True):
        with attempt:
            return platform.read_live(c.entity_type, c.external_id, c.field)


class _LeaseLost(Exception):
    """Another executor took the plan over between two attempts: stop without writing."""


class _StaleMeanwhile(Exception):
    """Someone else set the entity's value while a retry waited: the retry is not sent."""

    def __init__(self, live):
        super().__init__(str(live))
        self.live = live


def _apply(platform: AdPlatform, c: PlannedChange, policy: RetryPolicy, attempts: list[int],
           heartbeat: Callable[[], bool]) -> ApplyResult:
    """Send ``c`` with retries of transient errors; a write whose answer was lost is found, not sent again.

    A timeout or 5xx may come after the platform wrote (the answer was lost). So before every retry, and
    once more when the retries run out, the live value is read: already the new value -> applied (with a
    note), never a second write (Meta counts each budget write against its 4 an hour) nor a false "failed"
    that History would show and a rollback would skip. Neither old nor new value before a retry: someone
    else changed it during the wait -> `_StaleMeanwhile`, never overwritten.
    """
    last: list[PlatformError] = []
    try:
        for attempt in Retrying(retry=retry_if_exception(lambda e: isinstance(e, PlatformError) and e.transient),
                                stop=stop_after_attempt(policy.max_attempts), wait=policy.wait, sleep=policy.sleep,
                                reraise=True):
            with attempt:
                if attempts[0]:  # a retry after a wait: only while the lease is still ours, and only if still needed
                    if not heartbeat():
                        raise _LeaseLost()
                    live = _live_now(platform, c)
                    if live is not None and same_value(c.field, live, c.new_value):
                        return _landed(c, live, last[-1], attempts[0])
                    if live is not None and live != c.old_value:
                        raise _StaleMeanwhile(live)
                attempts[0] += 1
                try:
                    return platform.apply(_request(c))
                except PlatformError as exc:
                    last.append(exc)
                    raise
    except PlatformError as exc:
        if exc.transient and not isinstance(exc, AuthError):
            live = _live_now(platform, c)
            if live is not None and same_value(c.field, live, c.new_value):
                return _landed(c, live, exc, attempts[0])
        raise


def _live_now(platform: AdPlatform, c: PlannedChange):
    """The entity field's live value, or None when it cannot be read right now (the caller then decides without it)."""
    try:
        return parse_value(c.field, platform.read_live(c.entity_type, c.external_id, c.field))
    except (PlatformError, ValueError, TypeError):
        return None


def _landed(c: PlannedChange, live, error: PlatformError, sent: int) -> ApplyResult:
    """The applied result of a write whose answer (``error``) was lost but whose value is live."""
    return ApplyResult(c.key, True, read_back=live, request_id=error.request_id, response={
        "note": f"the platform's answer to {'the write' if sent == 1 else f'write {sent}'} was lost ({error.message}); "
                "the live value shows it landed: not sent again", "lost_error": error.code, "live": str(live)})


def _error_values(exc: PlatformError, attempts: int) -> dict:
    kind = "auth" if isinstance(exc, AuthError) else "transient" if exc.transient else "permanent"
    return dict(status="failed", attempts=attempts, error_code=str(exc.code) if exc.code is not None else kind,
                error_message=exc.message[:2000], request_id=exc.request_id,
                response={"error": kind, "code": exc.code, "message": exc.message, "request_id": exc.request_id,
                          "retry_after": exc.retry_after})


def _block_failing(view, checks: dict, passing: set[int]) -> Callable:
    """The claim's ``prepare`` step: block every pending change that fails the checks now or failed at preview."""

    def prepare(s, plan) -> None:
        for row in plan.changes:
            if row.status != "pending":
                continue
            ck = checks[row.seq]
            if not ck.ok or row.seq not in passing:
                row.status = "blocked"
                frozen = view.preview.get("validations", {}).get(str(row.seq), {})
                row.error_code = "safety" if not ck.ok else (frozen.get("code") or "validation")
                row.error_message = "; ".join(ck.messages) if not ck.ok else (
                    frozen.get("message") or "failed the safety checks at preview")
                held = view.preview.get("checks", {}).get(str(row.seq), {}).get("guardrails")
                if ck.ok and held:  # a workspace guardrail hit at the dry run
                    row.error_code, row.error_message = "guardrail", "; ".join(held)

    return prepare


def _say_waiting(progress: ProgressFn | None, done: int, total: int, c: PlannedChange | None, what: str) -> Callable:
    """``on_wait`` for `patient_write`: tells the progress callback that a write is waiting for the database."""

    def on_wait(waited: float) -> None:
        if progress is not None:
            progress(done, total, {"seq": c.seq if c else None, "external_id": c.external_id if c else "",
                                   "field": c.field if c else "", "status": "waiting",
                                   "note": f"waiting for another write to the database (e.g. an import) to finish "
                                           f"before {what} ({waited:.0f} s so far)"})

    return on_wait


@guarded(Role.APPROVER, "plan.execute", target="plan #{plan_id}")
def execute(engine: Engine, workspace_id: str, plan_id: int, content_hash_: str, platform: AdPlatform, *, actor: str,
            progress: ProgressFn | None = None, retry: RetryPolicy | None = None,
            settings: SafetySettings | None = None, resume: bool = False, lease: dt.timedelta | None = None,
            guard_clock: Callable[[], dt.datetime] | None = None) -> ExecutionResult:
    """Execute the approved, frozen plan ``plan_id`` confirmed with ``content_hash_``, exactly once.

    Safety checks run again (with ``settings`` when given, else the frozen ones); each pending change
    reads the live value first (different from the plan's old value -> "stale", skipped; already the
    new value -> "unchanged", not sent), then is applied with retries of transient errors; permanent
    and auth errors are recorded with code, message and request id. Every outcome is committed right
    after its platform call, and the lease is renewed while the call is in flight.
    ``resume=True`` also takes over a plan left "executing" by a crash (once its executor's heartbeat
    is older than ``lease``, default `LEASE`) and settles only the rest. Meta ad set budget changes pass
    the 4-per-hour guardrail (`core.platforms.guardrails`) right before they are sent, else "blocked".

    A write that must wait for SQLite's lock says so through ``progress`` (status "waiting"); when the
    database stays busy the execution does not start at all (`DatabaseBusy`). An error no adapter
    mapped stops it with `ExecutionStopped` (error id in the message, detail in the log) and releases
    the lease, so it can be resumed at once.
    """
    policy = retry or RetryPolicy()
    view = load_plan(engine, workspace_id, plan_id)
    _check_platform(view.platform, view.account_id, platform)
    if view.status in ("completed", "partially_failed", "failed"):
        raise PlanClaimError(f"plan {plan_id} was already executed ({view.status})")
    if view.status not in ("approved", "executing"):
        raise PlanStateError(f"plan {plan_id} is {view.status}: only an approved plan can be executed")
    _verify_frozen(view, content_hash_)
    lease = LEASE if lease is None else lease
    total = len(view.changes)
    # safety again, at execution time; anything failing now or at preview is blocked, not applied
    checks = {c.seq: c for c in check_changes(view.changes, settings or view.settings, view.platform)}
    passing = {c.seq for c in _passing(view)}
    token = patient_write(
        engine, lambda: _claim(engine, workspace_id, plan_id, content_hash_, actor, resume, lease,
                               prepare=_block_failing(view, checks, passing)),
        patience=START_PATIENCE, what=f"plan {plan_id} was not started and nothing was sent; execute it again once "
                                      "the other write has finished",
        on_wait=_say_waiting(progress, 0, total, None, "starting"))
    guard = None
    if platform.name == "meta":
        from core.platforms.guardrails import MetaBudgetGuard

        guard = MetaBudgetGuard(engine, workspace_id, count_in_flight=True,
                                **({"clock": guard_clock} if guard_clock is not None else {}))

    with transaction(engine, workspace_id) as s:
        plan = _plan_for_update(s, plan_id)
        pending = funding.execution_order([(row.id, to_planned(row), row.status == "applying") for row in plan.changes
                                           if row.status in OPEN_CHANGE_STATUSES])
    done = total - len(pending)
    funded: dict[int, tuple] | None = None  # the increases' funding: settled at the first increase, once every decrease is
    interrupted = None
    auth_failed: AuthError | None = None

    def renew() -> bool:
        return _heartbeat(engine, workspace_id, plan_id, token)

    def patient_renew() -> bool:
        try:
            return patient_write(engine, renew, patience=WRITE_PATIENCE, what="renewing the lease")
        except DatabaseBusy:
            return False

    for change_id, c, was_in_flight in pending:
        values: dict
        approved_c = c
        if funding.budget_move(c) == funding.INCREASE:
            if funded is None:
                try:
                    funded = patient_write(engine, lambda: _fund(engine, workspace_id, plan_id, token, passing, actor),
                                           patience=WRITE_PATIENCE, what="the increases were not sent",
                                           on_wait=_say_waiting(progress, done, total, c, "funding the increases"))
                except DatabaseBusy as exc:
                    interrupted = f"stopped before the increases: {exc}; resume the plan to apply the rest"
                    break
                if funded is None:
                    interrupted = "another executor resumed this plan; stopped here"
                    break
            if change_id in funded:
                value, why = funded[change_id]
                if value is None:  # held: recorded by the funding step, nothing to send
                    done += 1
                    if progress is not None:
                        progress(done, total, {"seq": c.seq, "external_id": c.external_id, "field": c.field,
                                               "status": "held", "error_code": funding.FUNDING_CODE, "error_message": why})
                    continue
                c = _replace(c, new_value=value)
        try:
            claim = patient_write(engine, lambda: _begin(engine, workspace_id, plan_id, change_id, token),
                                  patience=WRITE_PATIENCE, what=f"change {c.seq} was not sent",
                                  on_wait=_say_waiting(progress, done, total, c, "sending this change"))
        except DatabaseBusy as exc:
            interrupted = f"stopped before change {c.seq}: {exc}; resume the plan to apply the rest"
            break
        if claim == "lost":
            interrupted = "another executor resumed this plan; stopped here"
            break
        if claim == "done":
            done += 1
            continue
        refusal = guard.check(platform.account_id, _request(c), exclude_change_id=change_id) if guard else None
        refusal = refusal or check_change_now(engine, workspace_id, platform, c, change_id=change_id, origin=view.origin)
        rival = None if refusal else _in_flight_elsewhere(engine, workspace_id, view, c, change_id, lease)
        if refusal:
            values = dict(status="blocked", error_code="guardrail", error_message=refusal)
        elif rival:
            values = dict(status="skipped", error_code="concurrent", error_message=(
                f"{rival} is changing {c.entity_type} {c.external_id} {c.field} at this moment: not sent, so the two "
                "writes cannot overwrite each other; execute a new plan once it has finished (its live value decides)"))
        elif auth_failed is not None:
            values = dict(status="skipped", error_code="not_attempted",
                          error_message=f"not attempted: authentication failed earlier ({auth_failed.message})")
        else:
            attempts = [0]
            try:
                with _LeaseKeeper(renew, lease):
                    live = _read_live(platform, c, policy)
                    live_v = parse_value(c.field, live)
                    if live_v is not None and same_value(c.field, live_v, c.new_value):
                        values = _already_there(live_v, was_in_flight)
                    elif live_v != c.old_value:
                        values = dict(status="stale", error_code="stale",
                                      error_message=f"live value {live_v} differs from the plan's old value {c.old_value}: skipped",
                                      response={"live": None if live_v is None else str(live_v)})
                    else:
                        res = _apply(platform, c, policy, attempts, patient_renew)
                        values = dict(status="applied" if res.ok else "failed", attempts=attempts[0],
                                      request_id=res.request_id, applied_at=utcnow() if res.ok else None,
                                      response={**res.response,
                                                "read_back": None if res.read_back is None else str(res.read_back)})
                        if not res.ok:
                            values.update(error_code="rejected", error_message=str(res.response)[:2000])
            except AuthError as exc:
                auth_failed = exc
                values = _error_values(exc, max(attempts[0], 1))
            except PlatformError as exc:
                values = _error_values(exc, max(attempts[0], 1))
            except _StaleMeanwhile as exc:
                values = dict(status="stale", error_code="stale", attempts=attempts[0], response={"live": str(exc.live)},
                              error_message=f"live value {exc.live} was set by someone else while a retry waited (the "
                                            f"plan's old value is {c.old_value}): not sent again, nothing overwritten")
            except _LeaseLost:
                interrupted = "another executor resumed this plan during a retry wait; stopped here"
                break
            except Exception as exc:  # no adapter mapped it: stop, keep the change "applying" (settled on resume)
                error_id = report_unexpected(exc, f"executing plan {plan_id} change {c.seq}")
                note = (f"stopped at change {c.seq} ({c.external_id} {c.field}) by an unexpected error (error id "
                        f"{error_id}); resume to settle it from its live value and apply the rest")
                _release(engine, workspace_id, plan_id, token, actor, note)
                raise ExecutionStopped(f"plan {plan_id} {note}. Nothing was sent twice.") from None
        if c is not approved_c and values.get("status") == "applied":  # sent smaller than approved: not funded in full
            values.update(status="reduced", error_code=funding.FUNDING_CODE, error_message=funded[change_id][1])
        still_ours = patient_write(engine, lambda: _record(engine, workspace_id, plan_id, change_id, token, **values),
                                   patience=WRITE_PATIENCE, what=f"the outcome of change {c.seq} is not recorded yet "
                                   "(resuming the plan settles it from its live value)",
                                   on_wait=_say_waiting(progress, done, total, c, "recording this change"))
        done += 1
        if progress is not None:
            progress(done, total, {"seq": c.seq, "external_id": c.external_id, "field": c.field, **{
                k: v for k, v in values.items() if k in ("status", "error_code", "error_message", "request_id")}})
        if not still_ours:
            interrupted = "another executor resumed this plan; stopped here"
            break
    if interrupted:
        return ExecutionResult(plan_id, "executing", _counts(engine, workspace_id, plan_id), interrupted)
    return patient_write(engine, lambda: _finish(engine, workspace_id, plan_id, token, actor),
                         patience=WRITE_PATIENCE, what=f"plan {plan_id}'s final status is not recorded yet",
                         on_wait=_say_waiting(progress, done, total, None, "recording the plan's result"))


def _fund(engine: Engine, workspace_id: str, plan_id: int, token: str, approved: set[int], actor: str) -> dict | None:
    """Settle the funding of the plan's open increases once its decreases are settled (`core.funding.allocate`).

    One transaction, only while this executor holds the lease (None otherwise): a held increase is recorded
    as such, a reduced one gets its ``funded_value``; a resume finds them stored and sends the same values.
    Returns change id -> (value to send, or None when held; why) for every open increase funded short.
    """
    with transaction(engine, workspace_id) as s:
        lock_plan(s, plan_id)
        plan = _plan_for_update(s, plan_id)
        if plan.status != "executing" or plan.execution_token != token:
            return None
        rows = {row.seq: row for row in plan.changes}
        alloc = funding.allocate([to_planned(r) for r in rows.values()], approved, plan.platform)
        for seq, why in alloc.held.items():
            row = rows[seq]
            row.status, row.error_code, row.error_message = "held", funding.FUNDING_CODE, why
        for seq, (value, why) in alloc.funded.items():
            row = rows[seq]
            row.funded_value, row.error_code, row.error_message = format_value(value), funding.FUNDING_CODE, why
        if alloc:
            held = ", ".join(str(q) for q in sorted(alloc.held))
            reduced = ", ".join(str(q) for q in sorted(alloc.funded))
            add_event(s, plan, "executing", actor, "not every decrease applied, so the increases are funded short: "
                      + "; ".join(x for x in (f"held change {held}" if held else "",
                                              f"reduced change {reduced}" if reduced else "") if x), from_status="executing")
        return {row.id: (None if row.status == "held" else parse_value(row.field, row.funded_value), row.error_message or "")
                for row in rows.values() if row.error_code == funding.FUNDING_CODE
                and (row.status == "held" or (row.funded_value is not None and row.status in OPEN_CHANGE_STATUSES))}


def _already_there(live_v, was_in_flight: bool) -> dict:
    """The outcome of a change whose live value already is its new value.

    Claimed by an executor that died mid-call: our write landed before the interruption ("applied").
    Never claimed before: someone else set it, nothing was sent ("unchanged"; a rollback leaves it alone).
    """
    if was_in_flight:
        return dict(status="applied", applied_at=utcnow(), response={
            "note": "already at the new value (applied before an interruption)", "live": str(live_v)})
    return dict(status="unchanged", error_code="unchanged", error_message="already at the new value (not sent)",
                response={"note": "already at the new value (not sent)", "live": str(live_v)})


def _counts(engine: Engine, workspace_id: str, plan_id: int) -> dict:
    view = load_plan(engine, workspace_id, plan_id)
    out: dict[str, int] = {}
    for c in view.changes:
        out[c.status] = out.get(c.status, 0) + 1
    return out


def _finish(engine: Engine, workspace_id: str, plan_id: int, token: str, actor: str) -> ExecutionResult:
    counts = _counts(engine, workspace_id, plan_id)
    reached, total = counts.get("applied", 0) + counts.get("unchanged", 0), sum(counts.values())
    final = "completed" if reached == total else "failed" if reached == 0 else "partially_failed"
    note = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    with transaction(engine, workspace_id) as s:
        res = s.execute(update(ChangePlan).where(ChangePlan.id == plan_id, ChangePlan.status == "executing",
                                                 ChangePlan.execution_token == token)
                        .values(status=final).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            return ExecutionResult(plan_id, "executing", counts, "another executor took this plan over")
        plan = s.get(ChangePlan, plan_id)
        add_event(s, plan, final, actor, note, from_status="executing")
    return ExecutionResult(plan_id, final, counts)


@guarded(Role.APPROVER, "plan.rollback", target="plan #{plan_id}")
def rollback(engine: Engine, workspace_id: str, plan_id: int, *, actor: str) -> int:
    """Create the inverse plan of ``plan_id``'s applied changes (a draft to preview and approve)."""
    return create_rollback_plan(engine, workspace_id, plan_id, actor=actor)


def interrupted_plans(engine: Engine, workspace_id: str, older_than: dt.timedelta = dt.timedelta(0)) -> list[int]:
    """Plans left 'executing' whose executor's last heartbeat is older than ``older_than`` (e.g. `LEASE`)."""
    cutoff = utcnow() - older_than
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(ChangePlan.id, ChangePlan.heartbeat_at).where(ChangePlan.status == "executing")
                         .order_by(ChangePlan.id)).all()
    return [pid for pid, at in rows if at is None or at <= cutoff]


def executor_heartbeat(engine: Engine, workspace_id: str, plan_id: int) -> dt.datetime | None:
    """When the executor of ``plan_id`` last proved it was alive (None if it never ran)."""
    with transaction(engine, workspace_id) as s:
        return s.scalar(select(ChangePlan.heartbeat_at).where(ChangePlan.id == plan_id))


# ------------------------------------------------------------------------------ workspace guardrails
def _workspace_guardrails(engine: Engine, workspace_id: str, view, platform: AdPlatform, checks: list):
    """The safety verdicts with the workspace guardrails' hits added (`core.guardrails`), the hits per seq,
    and the dry run's warnings (step limit exceeded, entity in learning) per seq."""
    from dataclasses import replace as _replace

    from core.guardrails import account_today, load_guardrails

    state = load_guardrails(engine, workspace_id)
    hits = check_guardrails(engine, workspace_id, view.platform, view.account_id, view.changes,
                            today=account_today(platform, state.limits.timezone), origin=view.origin, state=state)
    merged = [_replace(c, ok=c.ok and not hits.get(c.seq), messages=tuple(c.messages) + tuple(
        f"guardrail: {m}" for m in hits.get(c.seq, ()))) for c in checks]
    warnings = dry_run_warnings(engine, workspace_id, view.platform, view.account_id, view.changes, state=state)
    return merged, {k: v for k, v in hits.items() if v}, warnings
