"""Command line: ``python -m core import|paths|attribute|optimize ...``.

Every subcommand exits non-zero with the same clear message the app shows on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load_paths_and_journeys(files: list[str], lookback_days: float, level: str, args=None, *, to_credit: bool = False):
    """PathTable (and Journeys when the input is event-level) from files of any supported format,
    read with the mapping options; the import's warnings go to stderr. Refuses a result in which no
    conversion can be credited to a channel."""
    from core.ingest.commandline import read_with_mapping
    from core.journeys import JourneyError, build_journeys_with_report

    engine = None
    if args is not None and (args.mapping or args.db):
        from core.store.db import make_engine

        engine = make_engine(args.db)
    result = read_with_mapping(files, args, engine=engine, remember=engine is not None)
    for warning in result.report.get("warnings", []):
        print(f"note: {warning}", file=sys.stderr)
    if result.kind == "paths":
        if level != "channel":
            raise ValueError("a path-level table has no campaign ids: use --level channel")
        if to_credit and result.paths.total_conversions <= 0:
            raise ValueError(f"{', '.join(files)}: the path table has no conversions: nothing to credit")
        return result.paths, None
    if result.kind != "journeys":
        raise ValueError(f"{', '.join(files)}: this is {result.kind} data, not journeys or paths")
    journeys, report = build_journeys_with_report(result.touchpoints, result.conversions, lookback_days=lookback_days, level=level)
    reason = report.no_credit_reason()
    if to_credit and report.conversions == 0:
        reason = ("the data holds no conversions, so there is nothing to credit (is the conversion event, flag or "
                  "order column mapped? --map event_type=... or --map conversion_flag=...)")
    if reason:
        raise JourneyError(f"{', '.join(files)}: {reason}")
    currencies = result.report.get("currency") or []
    if len(currencies) > 1:
        print(f"note: conversions are in {len(currencies)} currencies ({', '.join(currencies)}); value credit adds "
              "them up, so read the value columns per currency only after filtering one", file=sys.stderr)
    return journeys.to_pathtable(), journeys


def cmd_import(args) -> int:
    from core.ingest import load_channel_rules, save_import, unique_name
    from core.ingest.commandline import read_with_mapping, report_lines, save_used_mapping
    from core.store.db import make_engine, redact_url, resolve_url

    engine = make_engine(args.db)
    result = read_with_mapping(args.files, args, engine=engine, channel_rules=load_channel_rules(engine, args.workspace))
    name = args.name or unique_name(engine, args.workspace, ", ".join(result.files))
    dataset_id = save_import(engine, args.workspace, name, result)
    print(f"imported dataset {dataset_id} into workspace {args.workspace!r} ({redact_url(resolve_url(args.db))})")
    print("\n".join(report_lines(result.report)))
    if args.save_mapping or args.map:  # a mapping given by hand is remembered for files of the same columns
        saved = save_used_mapping(engine, args.workspace, result, args.save_mapping)
        print(f"mapping saved as {', '.join(map(repr, saved))}")
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
    paths, journeys = _load_paths_and_journeys([args.file], args.lookback_days, args.level, args, to_credit=True)
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

    from core.ingest.commandline import add_mapping_arguments

    p = sub.add_parser("import", help="import journey, path or performance files and print the import report")
    p.add_argument("files", nargs="+")
    p.add_argument("--name", default=None, help="data set name (default: the file names)")
    add_mapping_arguments(p, saving=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("paths", help="write the PathTable in ChannelAttribution's format")
    p.add_argument("files", nargs="+")
    p.add_argument("--lookback-days", type=float, default=30.0)
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--out", required=True)
    add_mapping_arguments(p)
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
    add_mapping_arguments(p)
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
    args = build_parser().parse_args(argv)
    from core.ingest.mapping import MappingNeeded

    try:
        return args.func(args)
    except MappingNeeded as exc:
        from core.ingest.commandline import mapping_problem

        print(f"error: a column mapping is needed\n{mapping_problem(exc)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # IngestError, PathTableError, AllocationError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
