"""Command line: ``python -m core import|paths|attribute|optimize ...``.

Every subcommand exits non-zero with the same clear message the app shows on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load_paths_and_journeys(files: list[str], lookback_days: float, level: str):
    """PathTable (and Journeys when the input is event-level) from files of any supported format."""
    from core.ingest import read_files
    from core.journeys import build_journeys

    result = read_files([Path(f) for f in files])
    if result.kind == "paths":
        if level != "channel":
            raise ValueError("a path-level table has no campaign ids: use --level channel")
        return result.paths, None
    if result.kind != "journeys":
        raise ValueError(f"{', '.join(files)}: this is {result.kind} data, not journeys or paths")
    journeys = build_journeys(result.touchpoints, result.conversions, lookback_days=lookback_days, level=level)
    return journeys.to_pathtable(), journeys


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
    paths, _ = _load_paths_and_journeys(args.files, args.lookback_days, args.level)
    paths.to_frame().to_csv(args.out, index=False)
    print(f"wrote {paths.n_paths} paths ({paths.total_conversions:g} conversions, value {paths.total_value:.2f}) to {args.out}")
    return 0


def cmd_attribute(args) -> int:
    from core.attribution.compare import MODEL_NAMES, run_attribution

    models = list(MODEL_NAMES) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)} or all")
    paths, journeys = _load_paths_and_journeys([args.file], args.lookback_days, args.level)
    if journeys is None and "time_decay" in models:
        if args.models == "all":
            models.remove("time_decay")
            print("note: time_decay needs event timestamps; a path-level file runs every other model", file=sys.stderr)
        else:
            raise ValueError("time_decay needs event timestamps: give an event-level file")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketing Suite command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import journey, path or performance files and print the import report")
    p.add_argument("files", nargs="+")
    p.add_argument("--workspace", default="default")
    p.add_argument("--name", default=None, help="data set name (default: the file names)")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("paths", help="write the PathTable in ChannelAttribution's format")
    p.add_argument("files", nargs="+")
    p.add_argument("--lookback-days", type=float, default=30.0)
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("attribute", help="credit per channel under each attribution model")
    p.add_argument("file")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; any failure is one line on stderr (no traceback, no secret), exit status 2
    for bad input or an unusable database, 1 for an unexpected error (its detail goes to the error log)."""
    from core.errors import is_user_error, log_errors_to_file, report_unexpected, user_message

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # IngestError, PathTableError, AllocationError are ValueErrors
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if is_user_error(exc):  # e.g. DatabaseUnavailable, DatabaseBusy: written for the user
            print(f"error: {user_message(exc)}", file=sys.stderr)
            return 2
        log = log_errors_to_file()
        error_id = report_unexpected(exc, f"python -m core {args.command}")
        print(f"error: an unexpected {type(exc).__name__} (error id {error_id}; the details are in {log})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
