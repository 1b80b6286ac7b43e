"""What the command line needs from ingestion: the mapping options (``--map field=column``, a saved
mapping by name, touches per session or per event), reading files with them, and the import report
and mapping problems as readable text (the same facts the Data page shows)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .api import ImportResult, build_result, read_tables
from .mapping import MappingNeeded, parse_map_args
from .profiles import PROFILES
from .sessionize import DEFAULT_TIMEOUT_MINUTES, MODES, SessionSettings


def add_mapping_arguments(parser: argparse.ArgumentParser, *, saving: bool = False) -> None:
    parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="give a role a column, e.g. --map channel=acquisition_channel (repeatable; "
                             "--map profile=orders forces a format; FIELD= unmaps)")
    parser.add_argument("--mapping", default=None, metavar="NAME", help="use a mapping saved in the workspace under NAME")
    if saving:
        parser.add_argument("--save-mapping", default=None, metavar="NAME",
                            help="save the mapping used under NAME (it is also remembered for files of the same columns)")
    parser.add_argument("--touches", choices=MODES, default="auto",
                        help="sessions: one touch per session (clickstreams); events: every event is a touch; "
                             "auto (default): chosen from the data")
    parser.add_argument("--session-timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                        help="inactivity that ends a session (default 30)")
    parser.add_argument("--workspace", default="default")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")


def _engine(args):
    from core.store.db import make_engine

    return make_engine(args.db)


def read_with_mapping(files, args, *, engine=None, remember: bool = True, channel_rules=None,
                      progress=None) -> ImportResult:
    """Read ``files`` with the mapping options of ``args``: ``--map`` overrides, else ``--mapping NAME``,
    else a mapping remembered for each file's column set (when a database is at hand). Large event
    CSVs are read block by block (`core.ingest.stream`), with the same result."""
    from . import stream
    from .api import prepare_tables
    from .errors import IngestError
    from .readers import open_csv_batches

    settings = SessionSettings(args.touches, args.session_timeout).validated()
    paths = [Path(f) for f in files]
    if stream.wanted(paths):
        try:
            columns = {}
            for path in paths:
                columns[path.name] = open_csv_batches(path).columns  # the header only
            overrides, remembered, notes = _mapping_options(columns, args, engine, remember)
            result = stream.read_files_streamed(paths, overrides, channel_rules, sessions=settings, remembered=remembered,
                                                progress=progress)
        except (stream.StreamRefused, IngestError):
            result = None  # read whole, which says what is wrong, if anything
        if result is not None:
            result.report["warnings"] = notes + list(result.report.get("warnings", []))
            return result
    tables, notes = prepare_tables(read_tables(paths, progress=progress))
    overrides, remembered, more = _mapping_options({t.name: t.frame.columns for t in tables}, args, engine, remember)
    result = build_result(tables, overrides, channel_rules, sessions=settings, remembered=remembered, prepared=True)
    result.report["warnings"] = notes + more + list(result.report.get("warnings", []))
    return result


def _mapping_options(columns: dict, args, engine, remember: bool) -> tuple[dict | None, dict | None, list[str]]:
    """(overrides, remembered, notes) for files by name -> their columns."""
    overrides = parse_map_args(args.map) or None
    remembered, notes = None, []
    if getattr(args, "mapping", None):
        engine = engine or _engine(args)
        from .saved_mappings import named_overrides

        named = {name: named_overrides(engine, args.workspace, args.mapping, cols) for name, cols in columns.items()}
        overrides = {**named, **({name: {**named[name], **overrides} for name in columns} if overrides else {})}
    elif remember and engine is not None and overrides is None:
        from .saved_mappings import remembered_overrides

        remembered = {}
        for name, cols in columns.items():
            found = remembered_overrides(engine, args.workspace, cols)
            if found:
                remembered[name] = found[0]
                notes.append(f"{name}: the mapping saved as {found[1]!r} for these columns is used")
    return overrides, remembered, notes


def mapping_problem(exc: MappingNeeded) -> str:
    """Why a file could not be mapped, what is missing, and how to map it from the command line."""
    lines = []
    for p in exc.proposals:
        if p.complete:
            continue
        m = p.mapping
        lines.append(f"{m.file}: {p.reason}")
        if p.missing:
            lines.append(f"  missing: {', '.join(p.missing)}")
        found = {k: v for k, v in m.as_dict().items() if v}
        if found:
            lines.append(f"  found so far ({PROFILES[m.profile].label}): " + ", ".join(f"{k}={v}" for k, v in found.items()))
        example = next((x for x in p.missing if " or " not in x), p.missing[0].split(" or ")[0] if p.missing else "channel")
        lines.append(f"  map it with --map {example}=<column> (and --map profile=<format> to choose the format: "
                     f"{', '.join(n for n, pr in PROFILES.items() if pr.kind != 'dimension')})")
    return "\n".join(lines)


def report_lines(report: dict) -> list[str]:
    """The import report as ``label: value`` lines, warnings last (never a raw dict)."""
    from .report import report_table

    table = report_table(report)
    width = max((len(r) for r in table["item"]), default=0)
    lines = [f"  {item.ljust(width)}  {value}" for item, value in zip(table["item"], table["value"])]
    for w in report.get("warnings", []):
        lines.append(f"  warning: {w}")
    return lines


def save_used_mapping(engine, workspace: str, result: ImportResult, name: str) -> list[str]:
    from .saved_mappings import save_mapping

    return [save_mapping(engine, workspace, m, name if len(result.mappings) == 1 else f"{name} · {f}")
            for f, m in result.mappings.items()]


__all__ = ["add_mapping_arguments", "read_with_mapping", "mapping_problem", "report_lines", "save_used_mapping"]
