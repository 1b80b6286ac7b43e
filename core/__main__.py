"""Command line: ``python -m core import|paths|attribute|optimize|serve|keys|dispatch ...``.

Every subcommand exits non-zero with the same clear message the app shows on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path


def _load_paths_and_journeys(sources: list[str], lookback_days: float, level: str, args=None, *, to_credit: bool = False):
    """PathTable (and Journeys when the memory engine read event-level input) from files, folders,
    globs or a database URL, on the engine asked for (or picked by size). Files read in memory take
    the mapping options (``--map``, ``--mapping``, ``--touches``) and print the import's warnings.
    Refuses a result in which no conversion can be credited to a channel."""
    from core.journeys.engines import build_paths, default_engine, event_source

    source = event_source(sources, getattr(args, "table", None), getattr(args, "query", None))
    engine = getattr(args, "engine", None) or default_engine(source)
    if engine == "memory" and not source.is_sql:
        return _read_in_memory(list(source.files), lookback_days, level, args, to_credit)
    if args is not None and (getattr(args, "map", None) or getattr(args, "mapping", None)):
        raise ValueError(f"--map and --mapping apply to files read in memory; the {engine} engine reads columns by their names")
    from core.ingest.sessionize import DEFAULT_TIMEOUT_MINUTES, SessionSettings

    sessions = SessionSettings(getattr(args, "touches", "auto"), getattr(args, "session_timeout", DEFAULT_TIMEOUT_MINUTES)).validated()
    progress = _progress_on_stderr() if engine != "memory" else None
    result = build_paths(source, engine, lookback_days=lookback_days, level=level, scheduler=getattr(args, "scheduler", None),
                         n_workers=getattr(args, "workers", 2), memory_limit=getattr(args, "memory_limit", "2GB"),
                         progress=progress, sessions=sessions)
    if progress is not None:
        progress.done()
    if result.engine != "memory":
        figures = {k: result.report[k] for k in ("rows", "bytes_fetched", "peak_worker_memory_bytes", "seconds") if k in result.report}
        print(f"engine {result.engine}: " + ", ".join(f"{k} {v:,}" for k, v in figures.items()), file=sys.stderr)
        if "touches_are" in result.report:
            print(f"touches: {result.report['touches_are']} ({result.report['touches_reason']})", file=sys.stderr)
    _refuse_uncreditable(result.paths, source.describe(), to_credit)
    return result.paths, result.journeys


def _refuse_uncreditable(paths, where: str, to_credit: bool) -> None:
    """No printed result where every conversion is '(no touch)' (or, to credit, where there is none)."""
    from core.journeys import NO_TOUCH

    total = float(paths.total_conversions)
    if to_credit and total <= 0:
        raise ValueError(f"{where}: the data holds no conversions, so there is nothing to credit (is the conversion "
                         "event, flag or order column mapped? --map event_type=... or --map conversion_flag=...)")
    frame = paths.to_frame()
    if total > 0 and float(frame.loc[frame["path"] == NO_TOUCH, "total_conversions"].sum()) >= total:
        raise ValueError(f"{where}: all {total:,.0f} conversions have no touch ('(no touch)'): the touches are missing, "
                         "after the conversions or outside the lookback window")


def _read_in_memory(files: list[str], lookback_days: float, level: str, args, to_credit: bool):
    """Files read and imported in this process with the mapping options; journeys built in memory."""
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


def _engine_arguments(p) -> None:
    p.add_argument("--engine", choices=["memory", "sql", "dask"], default=None,
                   help="memory (this process), sql (build paths in the database; DuckDB for files), dask (a cluster); "
                        "default: sql for a database, dask for files over 2 GB, else memory")
    p.add_argument("--table", default=None, help="with a database URL: the events table")
    p.add_argument("--query", default=None, help="with a database URL: one SELECT returning events")
    p.add_argument("--scheduler", default=None, help="dask: address of a running scheduler (default: a LocalCluster on 127.0.0.1)")
    p.add_argument("--workers", type=int, default=2, help="dask LocalCluster: worker processes")
    p.add_argument("--memory-limit", default="2GB", help="dask LocalCluster: memory per worker")


class _progress_on_stderr:
    """Progress of long work on stderr, so a large import is not a silent wait: one line rewritten in place on a
    terminal; otherwise (a log, a pipe) a line per step of at least ten percent or per new stage."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last: tuple[int, str] | None = None
        self.drawn = False

    def __call__(self, fraction: float, message: str) -> None:
        percent = int(min(max(float(fraction), 0.0), 1.0) * 100)
        stage = re.sub(r"[\d,.]+", "#", str(message))  # "1,234 rows read" and "5,678 rows read" are one stage
        if self.tty:
            self.stream.write(f"\r\033[K{percent:3d}% {message}"[:200])
            self.drawn = True
        elif self.last is None or stage != self.last[1] or percent >= self.last[0] + 10:
            self.stream.write(f"{percent:3d}% {message}\n")
        else:
            return
        self.stream.flush()
        self.last = (percent, stage)

    def part(self, start: float, end: float):
        """A callback for one part of the work, drawn as [start, end] of the whole."""
        return lambda fraction, message: self(start + (end - start) * float(fraction), message)

    def done(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


def cmd_import(args) -> int:
    from core.ingest import load_channel_rules, save_import, unique_name
    from core.ingest.commandline import read_with_mapping, report_lines, save_used_mapping
    from core.store.db import make_engine, redact_url, resolve_url

    engine = make_engine(args.db)
    progress = _progress_on_stderr()
    result = read_with_mapping(args.files, args, engine=engine, channel_rules=load_channel_rules(engine, args.workspace),
                               progress=progress.part(0.0, 0.7))
    name = args.name or unique_name(engine, args.workspace, ", ".join(result.files))
    dataset_id = save_import(engine, args.workspace, name, result, progress=progress.part(0.7, 1.0))
    progress.done()
    print(f"imported dataset {dataset_id} into workspace {args.workspace!r} ({redact_url(resolve_url(args.db))})")
    print("\n".join(report_lines(result.report)))
    if args.save_mapping or args.map:  # a mapping given by hand is remembered for files of the same columns
        saved = save_used_mapping(engine, args.workspace, result, args.save_mapping)
        print(f"mapping saved as {', '.join(map(repr, saved))}")
    return 0


def _check_out(path: str, sources=()) -> Path:
    """``--out`` checked before any work: a file name in an existing folder, and none of the input files."""
    target = Path(path)
    for source in sources:
        if Path(str(source)).exists() and target.exists() and target.resolve() == Path(str(source)).resolve():
            raise ValueError(f"{path}: is an input file; give another file name for --out (it would be overwritten)")
    if target.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name for --out")
    if not target.resolve().parent.is_dir():
        raise FileNotFoundError(f"{path}: its folder {target.resolve().parent} does not exist")
    return target


def _write_whole(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: into a temporary file beside it, then renamed over it,
    so an interrupted run (Ctrl-C, a full disk) never leaves a truncated file that looks complete."""
    import tempfile

    target = _check_out(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_paths(args) -> int:
    _check_out(args.out, args.files)  # before minutes of work, not after
    paths, _ = _load_paths_and_journeys(args.files, args.lookback_days, args.level, args)
    _write_whole(args.out, paths.to_frame().to_csv(index=False).encode("utf-8"))
    print(f"wrote {paths.n_paths} paths ({paths.total_conversions:g} conversions, value {paths.total_value:.2f}) to {args.out}")
    return 0


def cmd_attribute(args) -> int:
    from core.attribution.compare import MODEL_NAMES, default_models, model_paths, run_attribution, unavailable_models

    models = None if args.models == "all" else list(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    unknown = sorted(set(models or []) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)} or all")
    paths, journeys = _load_paths_and_journeys([args.file], args.lookback_days, args.level, args, to_credit=True)
    timestamps = journeys is not None
    if models is None:  # every model the data can run; the others are named with the reason
        models, notes = default_models(timestamps=timestamps, n_channels=model_paths(paths).n_channels)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        left = unavailable_models(timestamps=timestamps, n_channels=model_paths(paths).n_channels)
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
    elif args.csv:  # a table people open in a spreadsheet: channel names cannot run as formulas there
        from core.export import csv_bytes

        sys.stdout.write(csv_bytes(table).decode("utf-8"))
    else:
        wide = table.pivot(index="channel", columns="model", values="conversions")[models]
        print(wide.round(2).to_string())
        if "data_driven" in result.details:
            dd = result.details["data_driven"]
            print(f"\ndata_driven leaves {dd['baseline_conversions']:.2f} of {paths.total_conversions:g} conversions to the "
                  f"baseline (no channel); channels are credited {dd['incremental_conversions']:.2f}")
            from core.attribution_runs import negative_note, unmeasured_note

            for note in (unmeasured_note(result.details), negative_note(result.details)):
                if note:
                    print(note)
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
                           as_json=args.json, currency=args.currency, level=args.level, metric=args.metric,
                           extrapolation=args.extrapolation, margin=args.margin))
    return 0


def cmd_autopilot(args) -> int:
    from core.autopilot.cli import autopilot_command

    return autopilot_command(args)


def cmd_serve(args) -> int:
    from core.serve import serve

    serve(args.db, args.host, args.port, rate_limit=args.rate_limit or None, dispatch=not args.no_dispatch,
          workers=args.workers, forwarded_allow_ips=args.forwarded_allow_ips)
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


def cmd_prepare_sample(args) -> int:
    from core.sample import run_preparation
    from core.store.db import make_engine

    return run_preparation(make_engine(args.db), args.workspace, Path(args.progress))


def _trusted_proxies(text: str) -> str | None:
    """An argparse type: `core.serve.trusted_proxies`, a usage error naming the entry that is not an address."""
    from core.serve import trusted_proxies

    try:
        return trusted_proxies(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(kind: type, low: float, high: float | None = None):
    """An argparse type: a finite ``kind`` (int or float) in [low, high], else a usage error naming the range."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {f'between {low:g} and {high:g}' if high is not None else f'at least {low:g}'}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketing Suite command line")
    parser.add_argument("--as", dest="as_email", default=None, metavar="EMAIL",
                        help="act as this workspace member (their role applies; default: MARKETING_SUITE_ACTOR, "
                             "else the local user, admin of every workspace)")
    sub = parser.add_subparsers(dest="command", required=True)

    from core.ingest.commandline import add_mapping_arguments

    p = sub.add_parser("import", help="import journey, path or performance files and print the import report")
    p.add_argument("files", nargs="+")
    p.add_argument("--name", default=None, help="data set name (default: the file names)")
    add_mapping_arguments(p, saving=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("paths", help="write the PathTable in ChannelAttribution's format")
    p.add_argument("files", nargs="+", metavar="SOURCE", help="files, folders or globs of event files, or one SQLAlchemy URL")
    _engine_arguments(p)
    p.add_argument("--lookback-days", type=float, default=30.0)
    p.add_argument("--level", choices=["channel", "campaign"], default="channel")
    p.add_argument("--out", required=True)
    add_mapping_arguments(p)
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("attribute", help="credit per channel under each attribution model")
    p.add_argument("file", metavar="SOURCE", help="a file, folder or glob of event files, or a SQLAlchemy URL")
    _engine_arguments(p)
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
    add_mapping_arguments(p)
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("optimize", help="allocate a budget over campaigns from their performance history")
    p.add_argument("file")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--max-change", type=float, default=0.3)
    p.add_argument("--target-roas", type=float, default=None)
    p.add_argument("--currency", default=None, help="the currency to optimize when the file mixes currencies (e.g. EUR)")
    p.add_argument("--level", choices=["campaign", "ad_set", "ad_group", "auto"], default="campaign",
                   help="campaign (ad sets / ad groups rolled up to their campaigns), a child level, or auto (where budgets live)")
    p.add_argument("--metric", choices=["auto", "value", "conversions", "clicks"], default="auto",
                   help="what to maximize (auto: conversion value, else conversions, else clicks)")
    p.add_argument("--extrapolation", choices=["cap", "mark"], default="cap",
                   help="cap: budgets stay within the observed daily spend (+ margin); mark: allowed, marked, confidence capped")
    p.add_argument("--margin", type=float, default=0.2, help="how far beyond the observed spend still counts as evidence (0.2 = 20%%)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_optimize)

    from core.autopilot.cli import add_autopilot_parser

    add_autopilot_parser(sub, cmd_autopilot)

    p = sub.add_parser("serve", help="run the first-party collector (and the conversion dispatcher)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_number(int, 1, 65535), default=8502)
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.add_argument("--rate-limit", type=_number(float, 0), default=200.0, help="requests per second per key (0: no limit)")
    p.add_argument("--no-dispatch", action="store_true", help="do not deliver conversions from this process")
    p.add_argument("--workers", type=_number(int, 1, 64), default=1, help="processes serving the port (the dispatcher runs once)")
    p.add_argument("--forwarded-allow-ips", type=_trusted_proxies, default=None, metavar="IPS",
                   help="reverse proxies (comma-separated addresses or networks) whose X-Forwarded-For names the client "
                        "(default: none; every request comes from its TCP peer)")
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
    p.add_argument("--lease-seconds", type=_number(float, 1, 86400), default=120.0,
                   help="how long claimed rows stay this run's; after a crash others re-send them once it runs out")
    p.set_defaults(func=cmd_dispatch)

    p = sub.add_parser("storage", help="where event files are kept; move row-stored data sets to files; clean orphans")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.add_argument("--move-row-events", action="store_true", help="move data sets stored as rows by older versions into files")
    p.add_argument("--clean", action="store_true", help="remove files no data set owns (interrupted imports)")
    p.set_defaults(func=cmd_storage)


    p = sub.add_parser("prepare-sample", help="load the sample data, open the sandbox and run a first attribution (first start)")
    p.add_argument("--workspace", default="default")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    p.add_argument("--progress", required=True, help="JSON file the progress is written to")
    p.set_defaults(func=cmd_prepare_sample)

    from core.access.cli import add_members_parser

    add_members_parser(sub, cmd_members)
    return parser


def cmd_storage(args) -> int:
    """Storage location, event sets and their size; optional moves and cleanup."""
    from core.ingest.persist import move_row_events_to_files
    from core.store import event_store
    from core.store.db import make_engine

    engine = make_engine(args.db)
    try:
        print(f"event files: {event_store.storage_location(engine)}")
        if args.move_row_events:
            moved = move_row_events_to_files(engine, progress=lambda _n, m: print(m))
            print(f"moved {len(moved)} data set(s) to files")
        if args.clean:
            print("cleanup: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in event_store.clean_orphans(engine).items()))
        sets = event_store.summary(engine)
        print(f"{sets['sets']} event set(s), {sets['events']:,} events, {sets['bytes'] / 1e6:,.1f} MB")
    finally:
        engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; any failure is one line on stderr (no traceback, no secret), exit status 2
    for bad input or an unusable database, 1 for an unexpected error (its detail goes to the error log)."""
    from core.errors import is_user_error, log_errors_to_file, report_unexpected, user_message

    args = build_parser().parse_args(argv)
    from core.ingest.mapping import MappingNeeded

    try:
        from core.access.cli import set_cli_identity

        set_cli_identity(args.as_email)
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback (an import is one transaction: nothing of it is stored)
        print(f"interrupted: python -m core {args.command} stopped before it finished"
              + ("; nothing was imported" if args.command == "import" else ""), file=sys.stderr)
        return 130
    except MappingNeeded as exc:
        from core.ingest.commandline import mapping_problem

        print(f"error: a column mapping is needed\n{mapping_problem(exc)}", file=sys.stderr)
        return 2
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
