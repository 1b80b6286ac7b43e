"""Command line: ``python -m core import|paths|attribute|optimize|serve|keys|dispatch ...``.

Every subcommand exits non-zero with the same clear message the app shows on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _load_paths_and_journeys(sources: list[str], lookback_days: float, level: str, args=None):
    """PathTable (and Journeys when the memory engine read event-level input) from files, folders,
    globs or a database URL, on the engine asked for (or picked by size)."""
    from core.journeys.engines import build_paths, default_engine, event_source

    source = event_source(sources, getattr(args, "table", None), getattr(args, "query", None))
    engine = getattr(args, "engine", None) or default_engine(source)
    result = build_paths(source, engine, lookback_days=lookback_days, level=level, scheduler=getattr(args, "scheduler", None),
                         n_workers=getattr(args, "workers", 2), memory_limit=getattr(args, "memory_limit", "2GB"),
                         progress=_stderr_progress() if engine != "memory" else None)
    if result.engine != "memory":
        figures = {k: result.report[k] for k in ("rows", "bytes_fetched", "peak_worker_memory_bytes", "seconds") if k in result.report}
        print(f"engine {result.engine}: " + ", ".join(f"{k} {v:,}" for k, v in figures.items()), file=sys.stderr)
    return result.paths, result.journeys


def _stderr_progress():
    """Progress lines on stderr (at most one per 5 % step), so stdout stays the result."""
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction >= 1.0 or fraction - last[0] >= 0.05:
            last[0] = fraction
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    return report


def _engine_arguments(p) -> None:
    p.add_argument("--engine", choices=["memory", "sql", "dask"], default=None,
                   help="memory (this process), sql (build paths in the database; DuckDB for files), dask (a cluster); "
                        "default: sql for a database, dask for files over 2 GB, else memory")
    p.add_argument("--table", default=None, help="with a database URL: the events table")
    p.add_argument("--query", default=None, help="with a database URL: one SELECT returning events")
    p.add_argument("--scheduler", default=None, help="dask: address of a running scheduler (default: a LocalCluster on 127.0.0.1)")
    p.add_argument("--workers", type=int, default=2, help="dask LocalCluster: worker processes")
    p.add_argument("--memory-limit", default="2GB", help="dask LocalCluster: memory per worker")


def cmd_import(args) -> int:
    from core.ingest import import_files
    from core.store.db import make_engine, redact_url, resolve_url

    engine = make_engine(args.db)
    dataset_id, report = import_files(engine, args.workspace, [Path(f) for f in args.files], name=args.name)
    print(f"imported dataset {dataset_id} into workspace {args.workspace!r} ({redact_url(resolve_url(args.db))})")
    for key, value in report.items():
        print(f"  {key}: {value}")
    return 0


def cmd_paths(args) -> int:
    paths, _ = _load_paths_and_journeys(args.files, args.lookback_days, args.level, args)
    paths.to_frame().to_csv(args.out, index=False)
    print(f"wrote {paths.n_paths} paths ({paths.total_conversions:g} conversions, value {paths.total_value:.2f}) to {args.out}")
    return 0


def cmd_attribute(args) -> int:
    from core.attribution.compare import MODEL_NAMES, run_attribution

    models = list(MODEL_NAMES) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)} or all")
    paths, journeys = _load_paths_and_journeys([args.file], args.lookback_days, args.level, args)
    if journeys is None and "time_decay" in models:
        if args.models == "all":
            models.remove("time_decay")
            print("note: time_decay needs per-journey timestamps (the memory engine on event-level input); "
                  "every other model runs", file=sys.stderr)
        else:
            raise ValueError("time_decay needs event timestamps: give an event-level file (the memory engine keeps them)")
    result = run_attribution(paths, journeys, models, order=args.order)
    table = result.table[["channel", "model", "conversions", "value", "share"]]
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=2))
    elif args.csv:
        sys.stdout.write(table.to_csv(index=False))
    else:
        wide = table.pivot(index="channel", columns="model", values="conversions")[models]
        print(wide.round(2).to_string())
    return 0


def cmd_optimize(args) -> int:
    from core.optimize.cli import optimize_command

    print(optimize_command(args.file, args.budget, max_change=args.max_change, target_roas=args.target_roas,
                           as_json=args.json, currency=args.currency))
    return 0


def cmd_autopilot(args) -> int:
    from core.autopilot.cli import autopilot_command

    return autopilot_command(args)


def cmd_serve(args) -> int:
    from core.serve import serve

    serve(args.db, args.host, args.port, rate_limit=args.rate_limit or None, dispatch=not args.no_dispatch)
    return 0


def cmd_keys(args) -> int:
    from core.store.db import make_engine
    from core.tracking import keys

    engine = make_engine(args.db)
    actor = os.environ.get("USER") or "command line"
    if args.action == "create":
        kind = "browser" if args.origin else "server"
        key, row = keys.create_key(engine, args.workspace, kind=kind, origins=args.origin or [], name=args.name or "",
                                   rate_limit=args.rate_limit, actor=actor)
        print(f"created {kind} key #{row['id']} for workspace {args.workspace!r}" +
              (f" (origins: {', '.join(row['origins'])})" if row["origins"] else ""))
        print("the key is shown only now; store it safely:")
        print(key)
    elif args.action == "list":
        rows = keys.list_keys(engine, args.workspace)
        if not rows:
            print(f"no keys in workspace {args.workspace!r}")
        for r in rows:
            state = "active" if r["active"] else f"revoked {r['revoked_at']:%Y-%m-%d %H:%M} by {r['revoked_by'] or '?'}"
            print(f"#{r['id']}  {r['prefix']:<16} {r['kind']:<8} {state:<30} {r['name']}  {' '.join(r['origins'])}")
    else:
        if args.id is None:
            raise ValueError("revoke needs the key's number: python -m core keys revoke ID")
        row = keys.revoke_key(engine, args.workspace, args.id, actor=actor)
        print(f"revoked key #{row['id']} ({row['prefix']}) of workspace {args.workspace!r}")
    return 0


def cmd_members(args) -> int:
    from core.access.cli import members_command

    return members_command(args)


def cmd_dispatch(args) -> int:
    from core.store.db import make_engine
    from core.tracking.dispatch import Dispatcher

    counts = Dispatcher(make_engine(args.db), lease_seconds=args.lease_seconds).run_once()
    print("nothing due" if not counts else ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketing Suite command line")
    parser.add_argument("--as", dest="as_email", default=None, metavar="EMAIL",
                        help="act as this workspace member (their role applies; default: MARKETING_SUITE_ACTOR, "
                             "else the local user, admin of every workspace)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import journey, path or performance files and print the import report")
    p.add_argument("files", nargs="+")
    p.add_argument("--workspace", default="default")
    p.add_argument("--name", default=None, help="data set name (default: the file names)")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("paths", help="write the PathTable in ChannelAttribution's format")
    p.add_argument("files", nargs="+", metavar="SOURCE", help="files, folders or globs of event files, or one SQLAlchemy URL")
    _engine_arguments(p)
    p.add_argument("--lookback-days", type=float, default=30.0)
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("attribute", help="credit per channel under each attribution model")
    p.add_argument("file", metavar="SOURCE", help="a file, folder or glob of event files, or a SQLAlchemy URL")
    _engine_arguments(p)
    p.add_argument("--models", default="all", help="comma list of first,last,linear,position,time_decay,markov,shapley,shapley_rate, or all")
    p.add_argument("--order", type=int, default=1, choices=[1, 2, 3, 4])
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--lookback-days", type=float, default=30.0)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("optimize", help="allocate a budget over campaigns from their performance history")
    p.add_argument("file")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--max-change", type=float, default=0.3)
    p.add_argument("--target-roas", type=float, default=None)
    p.add_argument("--currency", default=None, help="the currency to optimize when the file mixes currencies (e.g. EUR)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_optimize)

    from core.autopilot.cli import add_autopilot_parser

    add_autopilot_parser(sub, cmd_autopilot)

    p = sub.add_parser("serve", help="run the first-party collector (and the conversion dispatcher)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8502)
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.add_argument("--rate-limit", type=float, default=200.0, help="requests per second per key (0: no limit)")
    p.add_argument("--no-dispatch", action="store_true", help="do not deliver conversions from this process")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="create, list or revoke the collector's write keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("id", nargs="?", type=int, help="the key's number (revoke)")
    p.add_argument("--workspace", default="default")
    p.add_argument("--origin", action="append", help="makes a browser key allowed from this origin (repeatable)")
    p.add_argument("--name", default=None)
    p.add_argument("--rate-limit", type=float, default=None, help="this key's requests per second")
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("dispatch", help="deliver due conversions to Meta, Google and GA4 once, then exit")
    p.add_argument("--db", default=None)
    p.add_argument("--lease-seconds", type=float, default=120.0,
                   help="how long claimed rows stay this run's; after a crash others re-send them once it runs out")
    p.set_defaults(func=cmd_dispatch)

    from core.access.cli import add_members_parser

    add_members_parser(sub, cmd_members)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from core.access.cli import set_cli_identity

        set_cli_identity(args.as_email)
        return args.func(args)
    except (ValueError, OSError) as exc:  # IngestError, PathTableError, AllocationError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
