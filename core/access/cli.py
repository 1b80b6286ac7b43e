"""``python -m core members add|list|remove|four-eyes``, and whom the command line acts for.

The command line runs with the database URL, so it is trusted like the machine's user: it acts as the
local user (admin of every workspace) unless ``--as EMAIL`` (or ``MARKETING_SUITE_ACTOR``) names a member,
whose role then applies to every command. That is how first setup works (make the first admin) and how a
script can be held to a person's role.
"""

from __future__ import annotations

import os

from .roles import ROLES, Actor

#: Environment variable naming whom the command line acts for (same as ``--as``).
ACTOR_ENV = "MARKETING_SUITE_ACTOR"
_CLI: dict[str, str | None] = {"as": None}


def set_cli_identity(email: str | None) -> None:
    _CLI["as"] = (email or "").strip() or None
    from .guard import _MODE, set_default_actor, set_local_mode

    set_local_mode(_MODE["local_allowed"], entry="cli")  # actions that name no actor come from the command line

    who = cli_actor()
    set_default_actor(who if who.kind == "user" else None)  # every command acts as the named member


def cli_actor() -> Actor:
    """The actor of a command: the member named by ``--as`` / ``MARKETING_SUITE_ACTOR``, else the local user."""
    email = _CLI["as"] or os.environ.get(ACTOR_ENV, "").strip() or None
    return Actor.user(email=email, entry="cli") if email else Actor.local(entry="cli")


def add_members_parser(sub, func) -> None:
    p = sub.add_parser("members", help="who may do what: add, list or remove a workspace's members; four-eyes rule")
    msub = p.add_subparsers(dest="members_command", required=True)
    a = msub.add_parser("add", help="give an e-mail a role in a workspace (or change its role)")
    a.add_argument("--workspace", required=True)
    a.add_argument("--email", required=True)
    a.add_argument("--role", required=True, help=" | ".join(ROLES))
    a.add_argument("--create", action="store_true", help="create the workspace when it does not exist yet")
    a.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    r = msub.add_parser("remove", help="take an e-mail out of a workspace")
    r.add_argument("--workspace", required=True)
    r.add_argument("--email", required=True)
    r.add_argument("--db", default=None)
    ls = msub.add_parser("list", help="the members of a workspace (of every workspace without --workspace)")
    ls.add_argument("--workspace", default=None)
    ls.add_argument("--db", default=None)
    f = msub.add_parser("four-eyes", help="show or set the amounts above which a plan needs a second person")
    f.add_argument("--workspace", required=True)
    f.add_argument("--total", default=None, help="daily budget moved by a plan in total; 'off' to turn this rule off")
    f.add_argument("--single", default=None, help="largest single budget or bid change; 'off' to turn it off")
    f.add_argument("--db", default=None)
    p.set_defaults(func=func)


def _threshold(text: str | None, current):
    if text is None:
        return current
    return None if text.strip().lower() in ("off", "none", "") else text.strip()


def members_command(args) -> int:
    from core.store.db import check_workspace_id, list_workspaces, make_engine

    from . import four_eyes, members
    from .roles import AccessError, normalize_email, parse_role

    engine = make_engine(args.db)
    actor = cli_actor()
    cmd = args.members_command
    if cmd == "add":
        ws = check_workspace_id(args.workspace)
        parse_role(args.role), normalize_email(args.email)  # a typo creates nothing
        if args.create and not members.workspace_exists(engine, ws):
            members.create_workspace(engine, ws, actor=actor)
            print(f"created workspace {ws!r}")
        print(members.add_member(engine, ws, args.email, args.role, actor=actor) + f" in workspace {ws!r}")
    elif cmd == "remove":
        ws = check_workspace_id(args.workspace)
        if not members.remove_member(engine, ws, args.email, actor=actor):
            raise AccessError(f"{args.email} is not a member of workspace {ws!r}")
        print(f"removed {args.email.strip().lower()} from workspace {ws!r}")
    elif cmd == "list":
        spaces = [check_workspace_id(args.workspace)] if args.workspace else list_workspaces(engine)
        for ws in spaces:
            if not members.workspace_exists(engine, ws):
                raise AccessError(f"workspace {ws!r} does not exist (known: {', '.join(list_workspaces(engine))})")
            df = members.list_members(engine, ws)
            print(f"{ws}: " + ("no members (only the local user of single-user mode can act)" if df.empty else
                               f"{len(df)} member(s)"))
            for r in df.itertuples(index=False):
                print(f"  {r.email:<40} {r.role:<9} {'signed in' if r.signed_in else 'not signed in yet':<18} "
                      f"added by {r.added_by} {r.added_at:%Y-%m-%d %H:%M}")
    else:
        ws = check_workspace_id(args.workspace)
        if not members.workspace_exists(engine, ws):
            raise AccessError(f"workspace {ws!r} does not exist (known: {', '.join(list_workspaces(engine))})")
        policy = four_eyes.load_four_eyes(engine, ws)
        if args.total is not None or args.single is not None:
            policy = four_eyes.FourEyes(_threshold(args.total, policy.total), _threshold(args.single, policy.single))
            four_eyes.set_four_eyes(engine, ws, policy, actor=actor)
        print(f"{ws}: four-eyes {policy.describe()}")
    return 0


__all__ = ["ACTOR_ENV", "add_members_parser", "cli_actor", "members_command", "set_cli_identity"]
