"""Who may do what: the acting identity, roles per workspace, the check every mutating function runs,
four-eyes approval and the workspace audit log (issue 16). `core` never trusts a page or a command to
check: each mutating function is `guarded` and checks its ``actor`` itself."""

from .audit import AUDIT_COLUMNS, audit_actions, audit_export, audit_frame
from .four_eyes import FourEyes, approval_refusal, check_four_eyes, exposure, load_four_eyes, second_person_reason, set_four_eyes
from .guard import (
    GUARDED,
    NOT_GUARDED,
    Need,
    acting,
    as_actor,
    audit_note,
    audit_target,
    current_actor,
    guarded,
    local_mode,
    may,
    record_refusal,
    register_self_checked,
    require,
    set_local_mode,
    system_task,
)
from .members import (
    add_member,
    bind_subject,
    create_workspace,
    list_members,
    remove_member,
    role_of,
    workspace_exists,
    workspaces_for,
)
from .roles import ENTRY_POINTS, ROLES, AccessDenied, AccessError, Actor, Role, normalize_email, parse_role

__all__ = [
    "AUDIT_COLUMNS", "ENTRY_POINTS", "approval_refusal", "GUARDED", "NOT_GUARDED", "ROLES", "AccessDenied", "AccessError", "Actor",
    "FourEyes", "Need", "Role", "acting", "add_member", "as_actor", "audit_actions", "audit_export", "audit_frame",
    "audit_note", "audit_target", "bind_subject", "check_four_eyes", "create_workspace", "current_actor", "exposure",
    "guarded", "list_members", "load_four_eyes", "local_mode", "may", "normalize_email", "parse_role", "record_refusal", "register_self_checked",
    "remove_member", "require", "role_of", "second_person_reason", "set_four_eyes", "set_local_mode", "system_task",
    "workspace_exists", "workspaces_for",
]
