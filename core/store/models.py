"""ORM models. Every table carries ``workspace_id``; `core.store.db` filters every query on it.

Money columns are ``Numeric`` (exact); analytical counts are floats.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

MONEY = Numeric(20, 6)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC datetime")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), Decimal: MONEY, dict: JSON, list: JSON}


class WorkspaceScoped:
    """Mixin: the row belongs to one workspace; sessions made by `db.workspace_session` only see theirs."""

    workspace_id: Mapped[str] = mapped_column(String(64), index=True)


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Dataset(WorkspaceScoped, Base):
    """One import (file set, SQL query, platform sync or sample data)."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))  # journeys | paths | performance
    source: Mapped[str] = mapped_column(Text, default="")  # file names, "sql", "sync:<platform>", "sample"
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    report: Mapped[dict] = mapped_column(default=dict)  # the import report shown on the Data page
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_dataset_name"),)


class Touchpoint(WorkspaceScoped, Base):
    __tablename__ = "touchpoints"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_key: Mapped[str] = mapped_column(String(200))
    ts: Mapped[dt.datetime]
    channel: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str | None] = mapped_column(String(200))
    medium: Mapped[str | None] = mapped_column(String(200))
    interaction: Mapped[str] = mapped_column(String(20), default="visit")
    source_system: Mapped[str] = mapped_column(String(20), default="csv")
    __table_args__ = (Index("ix_touch_dataset_user_ts", "dataset_id", "user_key", "ts"),)


class Conversion(WorkspaceScoped, Base):
    __tablename__ = "conversions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_key: Mapped[str] = mapped_column(String(200))
    ts: Mapped[dt.datetime]
    conversion_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100), default="purchase")
    value: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    __table_args__ = (UniqueConstraint("dataset_id", "conversion_id", name="uq_conversion_id"),)


class PathRow(WorkspaceScoped, Base):
    """A row of a path-level import (ChannelAttribution format)."""

    __tablename__ = "path_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    conversions: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    nulls: Mapped[float] = mapped_column(Float)


class ChannelRule(WorkspaceScoped, Base):
    """source/medium/campaign regular expressions -> channel; lowest priority number wins."""

    __tablename__ = "channel_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    priority: Mapped[int] = mapped_column(Integer)
    source_pattern: Mapped[str] = mapped_column(String(300), default="")
    medium_pattern: Mapped[str] = mapped_column(String(300), default="")
    campaign_pattern: Mapped[str] = mapped_column(String(300), default="")
    channel: Mapped[str] = mapped_column(String(100))


class AdEntity(WorkspaceScoped, Base):
    """A campaign, ad set / ad group or ad as last synced from a platform."""

    __tablename__ = "ad_entities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    daily_budget: Mapped[Decimal | None]
    bid: Mapped[Decimal | None]
    bid_strategy: Mapped[str | None] = mapped_column(String(60))
    shared_budget: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3))
    synced_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: the platform's learning state as it reports it (Meta ad set ``learning_stage_info.status``: LEARNING /
    #: SUCCESS / FAIL; Google ``bidding_strategy_system_status``: LEARNING_BUDGET_CHANGE ...); None = not reported
    learning_status: Mapped[str | None] = mapped_column(String(60), default=None)
    #: the last significant edit the platform counts for learning (Meta ``last_sig_edit_ts``)
    last_significant_edit: Mapped[dt.datetime | None] = mapped_column(default=None)
    __table_args__ = (UniqueConstraint("workspace_id", "platform", "account_id", "entity_type", "external_id", name="uq_ad_entity"),)


class PerformanceDaily(WorkspaceScoped, Base):
    """Daily spend and results of one entity (and optionally one segment) from one dataset."""

    __tablename__ = "performance_daily"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[str] = mapped_column(String(64), default="")
    entity_type: Mapped[str] = mapped_column(String(20), default="campaign")
    external_id: Mapped[str] = mapped_column(String(64))
    entity_name: Mapped[str] = mapped_column(String(300), default="")
    date: Mapped[dt.date] = mapped_column(Date)
    segment_type: Mapped[str] = mapped_column(String(20), default="")
    segment_value: Mapped[str] = mapped_column(String(60), default="")
    spend: Mapped[Decimal]
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[float] = mapped_column(Float, default=0.0)
    conversion_value: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    # ingest-formats: the campaign / ad set a row's entity belongs to (its own id at its own level)
    campaign_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    campaign_name: Mapped[str] = mapped_column(String(300), default="", server_default="")
    ad_set_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    ad_set_name: Mapped[str] = mapped_column(String(300), default="", server_default="")
    __table_args__ = (
        UniqueConstraint(
            "dataset_id", "platform", "account_id", "entity_type", "external_id", "date", "segment_type", "segment_value",
            name="uq_performance_day",
        ),
    )


class AttributionRun(WorkspaceScoped, Base):
    """A stored attribution run: its parameters and its results, reopened after a refresh."""

    __tablename__ = "attribution_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    params: Mapped[dict] = mapped_column(default=dict)
    results: Mapped[list] = mapped_column(default=list)  # tidy credit table as records
    details: Mapped[dict] = mapped_column(default=dict)  # transition matrix, removal effects, ...
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Scenario(WorkspaceScoped, Base):
    """A named what-if budget vector."""

    __tablename__ = "scenarios"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    budgets: Mapped[dict] = mapped_column(default=dict)  # external_id -> budget (string Decimal)
    summary: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_scenario_name"),)


class ChangePlan(WorkspaceScoped, Base):
    """A set of changes that goes draft -> previewed -> approved -> executing -> done."""

    __tablename__ = "change_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    platform: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    origin: Mapped[str] = mapped_column(String(20), default="optimizer")  # optimizer | rollback | manual
    rollback_of_id: Mapped[int | None] = mapped_column(ForeignKey("change_plans.id"))
    settings: Mapped[dict] = mapped_column(default=dict)  # safety limits in force
    preview: Mapped[dict] = mapped_column(default=dict)  # frozen safety + validation results
    execution_token: Mapped[str | None] = mapped_column(String(64))  # claims the plan for one executor
    #: the executor holding ``execution_token`` renews this before every platform write (its lease);
    #: a resume may take the plan over only once the heartbeat is older than the lease
    heartbeat_at: Mapped[dt.datetime | None]
    changes: Mapped[list["Change"]] = relationship(back_populates="plan", order_by="Change.seq", cascade="all, delete-orphan")
    events: Mapped[list["PlanEvent"]] = relationship(back_populates="plan", order_by="PlanEvent.id", cascade="all, delete-orphan")


class Change(WorkspaceScoped, Base):
    __tablename__ = "changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("change_plans.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    entity_type: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    entity_name: Mapped[str] = mapped_column(String(300), default="")
    field: Mapped[str] = mapped_column(String(20))
    old_value: Mapped[str | None] = mapped_column(String(60))  # Decimal text or status
    new_value: Mapped[str] = mapped_column(String(60))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    reason: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|applied|failed|stale|blocked
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(60))
    error_message: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(120))
    response: Mapped[dict] = mapped_column(default=dict)
    applied_at: Mapped[dt.datetime | None]
    # balanced plans (core.funding): the value an increase may set when the decreases funding it did not all apply
    funded_value: Mapped[str | None] = mapped_column(String(60))
    plan: Mapped[ChangePlan] = relationship(back_populates="changes")


class PlanEvent(WorkspaceScoped, Base):
    """Audit log: every plan status transition with who, when and a note."""

    __tablename__ = "plan_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("change_plans.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[ChangePlan] = relationship(back_populates="events")


class SandboxAccount(WorkspaceScoped, Base):
    """The sandbox ad account's hidden state: seed, simulation clock and response-curve parameters.

    Live entity state lives in ``ad_entities`` (platform "sandbox-live"); its simulated daily performance
    in ``performance_daily`` under dataset ``dataset_id``. ``params`` is never shown to the user.
    """

    __tablename__ = "sandbox_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    clock: Mapped[dt.date] = mapped_column(Date)  # last simulated day
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    params: Mapped[dict] = mapped_column(default=dict)  # hidden curves per campaign / child weights
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "account_id", name="uq_sandbox_account"),)


# ------------------------------------------------------------------------------------------------
# Autopilot (branch autopilot): schedules and their runs, workspace guardrails and kill switch,
# glide paths of staged changes, and the measured outcome of every executed change.
# ------------------------------------------------------------------------------------------------


class AutopilotSchedule(WorkspaceScoped, Base):
    """When one account is optimized without a person: daily or weekly at a time of day in ``timezone``."""

    __tablename__ = "autopilot_schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[str] = mapped_column(String(64))
    frequency: Mapped[str] = mapped_column(String(10), default="daily")  # daily | weekly
    weekday: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday (weekly only)
    time_of_day: Mapped[str] = mapped_column(String(5), default="06:00")  # HH:MM in ``timezone``
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")  # the account's IANA zone
    settings: Mapped[dict] = mapped_column(default=dict)  # `core.autopilot.settings.AutopilotSettings`
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_execute: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_emails: Mapped[list] = mapped_column(default=list)  # recipients; SMTP settings come from secrets
    notify_webhook: Mapped[bool] = mapped_column(Boolean, default=False)  # the URL comes from secrets
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # access (issue 16): whom the schedule acts for (`core.access.Actor.to_dict`), and who switched
    # auto-execute on, when, under which guardrails
    owner: Mapped[dict | None] = mapped_column(JSON, default=None)
    auto_execute_by: Mapped[dict | None] = mapped_column(JSON, default=None)
    auto_execute_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    auto_execute_guardrails: Mapped[dict | None] = mapped_column(JSON, default=None)
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_autopilot_schedule_name"),)


class AutopilotRun(WorkspaceScoped, Base):
    """One run of a schedule. The row is the claim: (schedule, due_at) is unique, so two runners never run
    the same slot twice."""

    __tablename__ = "autopilot_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("autopilot_schedules.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[dt.datetime]  # the slot (UTC); a manual run uses the moment it was asked for
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")  # schedule | manual
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | completed | failed | skipped | interrupted
    runner: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    plan_ids: Mapped[list] = mapped_column(default=list)
    summary: Mapped[dict] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("schedule_id", "due_at", name="uq_autopilot_run_slot"),)


class WorkspaceGuardrails(WorkspaceScoped, Base):
    """The workspace's guardrails (`core.guardrails.Guardrails`) and its kill switch; one row per workspace."""

    __tablename__ = "workspace_guardrails"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    limits: Mapped[dict] = mapped_column(default=dict)
    kill_switch: Mapped[bool] = mapped_column(Boolean, default=False)
    kill_note: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", name="uq_workspace_guardrails"),)


class GlidePath(WorkspaceScoped, Base):
    """A change larger than the step limit, taken in steps: ``steps`` lists each step's value and the change
    that carried it (``change_id`` once planned); only one step is in flight at a time."""

    __tablename__ = "glide_paths"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    entity_name: Mapped[str] = mapped_column(String(300), default="")
    field: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    start_value: Mapped[str] = mapped_column(String(60))
    target_value: Mapped[str] = mapped_column(String(60))
    step_pct: Mapped[float] = mapped_column(Float)
    cooldown_days: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | completed | superseded | stopped
    note: Mapped[str] = mapped_column(Text, default="")
    steps: Mapped[list] = mapped_column(default=list)  # [{"value", "change_id", "plan_id", "status"}]
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("autopilot_schedules.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_glide_entity", "workspace_id", "platform", "account_id", "external_id", "field"),)


class ChangeOutcome(WorkspaceScoped, Base):
    """What one executed change predicted (spend and value per day with a 90 % band) and, once observed,
    what happened: the actuals over the observation window and a verdict with its reason."""

    __tablename__ = "change_outcomes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), unique=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("change_plans.id", ondelete="CASCADE"), index=True)
    change_day: Mapped[dt.date] = mapped_column(Date)  # the account's day the change was made
    first_day: Mapped[dt.date] = mapped_column(Date)  # the first full day with the new value
    entity_key: Mapped[str] = mapped_column(String(200), index=True)  # platform:account:entity_type:external_id
    prediction: Mapped[dict] = mapped_column(default=dict)
    predicted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    window_days: Mapped[int] = mapped_column(Integer, default=7)
    verdict: Mapped[str] = mapped_column(String(20), default="too early")
    reason: Mapped[str] = mapped_column(Text, default="")
    actual: Mapped[dict] = mapped_column(default=dict)
    evaluated_at: Mapped[dt.datetime | None]
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # actual outside the predicted band
    reported_in_run: Mapped[int | None] = mapped_column(Integer)  # the run whose summary carried the flag


# --- ingest-formats: column mappings remembered per source shape and saved by name -----------------
class SavedMapping(WorkspaceScoped, Base):
    """A confirmed column mapping: found again by the file's column-set fingerprint (so the second
    upload of an export needs no clicks) or by its name (``--mapping NAME`` on the command line)."""

    __tablename__ = "saved_mappings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(40), index=True)
    profile: Mapped[str] = mapped_column(String(40))
    fields: Mapped[dict] = mapped_column(default=dict)  # {field: column}
    columns: Mapped[list] = mapped_column(default=list)  # the columns of the file it was made for
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_saved_mapping_name"),)


# ---- Tracking (issue 12): collector keys, tracked touches/conversions, conversion outbox ------------
from .tracking_models import (  # noqa: E402,F401
    ConversionDelivery,
    TrackedConversion,
    TrackedTouch,
    TrackingDestination,
    TrackingKey,
    TrackingRunJob,
)


# --------------------------------------------------------------------------- event storage (issue 15 §2)
class StoreSetting(Base):
    """Settings of this database as a whole (not of a workspace), e.g. its event-store instance id."""

    __tablename__ = "store_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class EventSet(WorkspaceScoped, Base):
    """Where the event-level rows of a journeys data set live: Parquet files (partitioned by date) under
    ``uri``, a folder or an fsspec URL. The row is committed before the files are published, so a row
    whose files are still staged is finished (published) by the next reader or cleanup."""

    __tablename__ = "event_sets"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    uri: Mapped[str] = mapped_column(Text)
    touchpoints: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0)
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------------------------
# Connections (optimizer-honest): platform credentials entered on the Connections page, encrypted
# --------------------------------------------------------------------------------------------


class StoredCredential(WorkspaceScoped, Base):
    """One platform's credentials of a workspace, encrypted at rest (`core.platforms.secret_store`).

    ``ciphertext`` is a Fernet token of the JSON of the settings; ``hints`` holds only what may be
    shown (key names, masked tails, identifiers), never a secret in full. ``platform`` is "meta",
    "google", or a pending OAuth sign-in ("google-oauth:<state>").
    """

    __tablename__ = "stored_credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(120))
    ciphertext: Mapped[str] = mapped_column(Text)
    hints: Mapped[dict] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "platform", name="uq_stored_credential"),)


# --------------------------------------------------------------------------------------------
# Attribution accuracy (issue 14): lift-test results the user enters, to calibrate attribution
# --------------------------------------------------------------------------------------------
class LiftTest(WorkspaceScoped, Base):
    """An experiment's measured incremental conversions of one channel over a period (e.g. a geo or
    conversion-lift test), with its interval; attribution credit is compared with and calibrated to it."""

    __tablename__ = "lift_tests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(200))
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)  # inclusive
    incremental_conversions: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200), default="")  # e.g. "Meta conversion lift", "geo test"
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# ---- Access (issue 16): workspace members and roles, four-eyes thresholds, audit log ------------------
from .access_models import AuditEvent, WorkspaceAccess, WorkspaceMember  # noqa: E402,F401
