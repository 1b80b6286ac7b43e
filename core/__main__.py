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
    from core.attribution.compare import MODEL_NAMES, default_models, run_attribution, unavailable_models

    models = None if args.models == "all" else list(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    unknown = sorted(set(models or []) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)} or all")
    paths, journeys = _load_paths_and_journeys([args.file], args.lookback_days, args.level)
    timestamps = journeys is not None
    if models is None:  # every model the data can run; the others are named with the reason
        models, notes = default_models(timestamps=timestamps, n_channels=paths.n_channels)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        left = unavailable_models(timestamps=timestamps, n_channels=paths.n_channels)
        asked = [m for m in models if m in left]
        if asked:
            raise ValueError("; ".join(f"{m} {left[m]}" for m in asked))
    result = run_attribution(paths, journeys, models, order=args.order, evaluate=True if args.evaluate else None)
    table = result.table[["channel", "model", "conversions", "value", "share"]]
    evaluation = result.details.get("evaluation") if args.evaluate else None
    if args.json:
        records = table.to_dict(orient="records")
        print(json.dumps(records if evaluation is None else {"credit": records, "evaluation": evaluation}, indent=2,
                         default=_json_default))
    elif args.csv:
        sys.stdout.write(table.to_csv(index=False))
    else:
        wide = table.pivot(index="channel", columns="model", values="conversions")[models]
        print(wide.round(2).to_string())
        if "data_driven" in result.details:
            dd = result.details["data_driven"]
            print(f"\ndata_driven leaves {dd['baseline_conversions']:.2f} of {paths.total_conversions:g} conversions to the "
                  f"baseline (no channel); channels are credited {dd['incremental_conversions']:.2f}")
    if evaluation is not None and not args.json:
        print(_evaluation_text(evaluation), file=sys.stderr if args.csv else sys.stdout)
    return 0


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def _recommended_label(evaluation: dict) -> str:
    rec = evaluation["recommended"]
    return f"markov (order {evaluation['recommended_order']})" if rec == "markov" else rec


def _evaluation_text(evaluation: dict) -> str:
    """The held-out scores and the recommendation, as the command line prints them."""
    import pandas as pd

    scores = pd.DataFrame(evaluation["scores"])[["model", "variant", "log_loss", "auc", "brier"]]
    lines = [f"\nheld-out evaluation ({evaluation['folds']}-fold cross-validation over journeys; lower log loss is better):",
             scores.to_string(index=False, float_format=lambda x: f"{x:.4f}"),
             f"\nrecommended: {_recommended_label(evaluation)} -- {evaluation['reason']}",
             f"Markov order: {evaluation['markov_order']} -- {evaluation['markov_reason']}"]
    lines += [f"note: {n}" for n in evaluation.get("notes", [])]
    return "\n".join(lines)


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
    p.add_argument("--models", default="all",
                   help="comma list of first,last,linear,position,time_decay,markov,shapley,shapley_rate,data_driven, or all")
    p.add_argument("--order", type=int, default=1, choices=[1, 2, 3, 4])
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--lookback-days", type=float, default=30.0)
    p.add_argument("--evaluate", action="store_true",
                   help="score every model that predicts conversion on held-out journeys and recommend one")
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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # IngestError, PathTableError, AllocationError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
