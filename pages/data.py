"""Data: upload journeys, path tables or campaign performance; map, validate, store; browse data sets."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from core.ingest import (
    DEFAULT_SQL_ROW_LIMIT,
    DEFAULT_STATEMENT_TIMEOUT,
    PROFILES,
    IngestError,
    build_result,
    delete_dataset,
    list_datasets,
    load_channel_rules,
    prepare_tables,
    read_sql_source,
    read_tables,
    rules_frame,
    rules_from_frame,
    save_channel_rules,
    save_import,
    unique_name,
)
from core.ingest import stream
from core.ingest.mapping import MappingNeeded, MappingProposal
from core.ingest.report import report_table
from core.ingest.persist import content_hash as dataset_content_hash
from core.ingest.saved_mappings import remembered_overrides, save_mapping
from core.ingest.sessionize import SessionSettings
from core.journeys import JourneyError
from core.journeys.engines import EventSource, as_import_result, build_paths, default_engine, event_source
from core.journeys.sql import plan_pathtable_sql
from core.money import format_money, money_table
from core.platforms.sync import dataset_label
from core.summary import dataset_overview
from ui.context import actor, engine, workspace
from ui.mapping_editor import mapping_editor
from ui.downloads import download_csv, download_text
from ui.text import plain, plain_table

eng, ws = engine(), workspace()
st.title("Data")
st.caption("Journeys (touchpoints + conversions), path tables or campaign performance: CSV, CSV.gz, Parquet, JSON lines.")


@contextmanager
def _status(label: str):
    """`st.status` that turns to an error state (no spinner left running) when its work fails; the
    caller still catches the error and says what went wrong."""
    with st.status(label, expanded=True) as status:
        try:
            yield status
        except Exception:
            status.update(label=f"{label.rstrip('…')} failed", state="error", expanded=False)
            raise


def _progress_bar(label: str, status=None):
    """A progress callback ``(fraction, message)`` drawing a bar (and the status label, if given)."""
    bar = st.progress(0.0, text=label)

    def update(fraction, message):
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=plain(message))
        if status is not None:
            status.update(label=plain(message))

    return update


def _download(frame: pd.DataFrame, label: str, filename: str, key: str) -> None:
    download_csv(frame, f"Download {label} (CSV)", filename, key=key)


def _report(report: dict, key: str, title: str = "Validation report") -> None:
    """The import report as a readable table (never raw JSON), with its download and its warnings."""
    table = report_table(report)
    st.markdown(f"**{title}**")
    st.table(plain_table(table), hide_index=True, hide_header=True)
    _download(table, title.lower(), f"{title.lower().replace(' ', '-')}.csv", f"{key}.report.download")
    for warning in report.get("warnings", []):
        st.warning(plain(warning))


TOUCHES = {"auto": "Chosen from the data", "sessions": "One touch per session", "events": "Every event is a touch"}


def _touch_settings() -> SessionSettings:
    """The touches choice (auto / sessions / events) and session timeout set on this page."""
    return SessionSettings(st.session_state.get("data.touches", "auto"), float(st.session_state.get("data.session_timeout", 30)))


def _touches_choice(result, key: str) -> None:
    """Every event a touch, or one touch per session (clickstreams), with the default from the data."""
    rep = result.report
    st.markdown(f"**Touches:** {rep.get('touch_events', 0):,} events → {rep.get('sessions', 0):,} sessions → "
                f"{rep.get('touchpoints', 0):,} touches ({plain(rep.get('touches_are'))}: {plain(rep.get('touches_reason'))})")
    left, right = st.columns([3, 1])
    left.radio("Touches", list(TOUCHES), format_func=TOUCHES.get, horizontal=True, key="data.touches",
               help="A clickstream holds many events per visit: one touch per session credits the visit's acquisition "
                    "channel, not each page view. A new session starts after the inactivity timeout or when the "
                    "source / medium / campaign changes.")
    right.number_input("Session timeout (minutes)", min_value=1, max_value=10080, value=30, step=5, key="data.session_timeout")


def _show_result(result, key: str) -> None:
    """Detected format, validation report and preview of a read (not yet stored) import."""
    labels = ", ".join(sorted({PROFILES[m.profile].label for m in result.mappings.values()}))
    st.success(f"Detected **{result.kind}** data ({labels})")
    if result.kind == "journeys":
        _touches_choice(result, key)
    elif result.kind == "performance":
        st.markdown(f"**Entities:** {plain(result.report.get('entities_text'))}")
    _report(result.report, key)
    st.markdown("**Preview**")
    st.dataframe(result.preview(20), hide_index=True, width="stretch")


def _read(files: list, key: str):
    """Raw tables of the uploads, read once per upload; None (with the error shown) when reading fails.
    Large CSV uploads are previewed (their first block, for the mapping) and later read block by block,
    so memory stays bounded; the third item says which (`stream.preview_tables`)."""
    cached = st.session_state.get("data.tables")
    if cached and cached[0] == key:
        return cached[1], cached[2], cached[3]
    with st.status("Reading files…", expanded=True) as status:
        try:
            tables, notes, preview = None, [], False
            if stream.wanted(files):
                try:
                    tables, preview = stream.preview_tables(files), True
                except stream.StreamRefused:
                    pass  # not streamable: read whole below
            if tables is None:
                tables, notes = prepare_tables(read_tables(files, progress=_progress_bar("Reading files…", status)))
        except IngestError as exc:
            status.update(label="Reading failed", state="error", expanded=False)
            failure = exc
        else:
            status.update(label=f"Read {len(tables)} file(s)", state="complete", expanded=False)
            failure = None
    if failure is not None:  # outside the collapsed status, so the reason is in sight
        st.error(f"Nothing was imported. {plain(failure)}")
        return None
    st.session_state["data.tables"] = (key, tables, notes, preview)
    return tables, notes, preview


def _convert(files, tables, notes, preview: bool, key: str, edits, rules, tz, sessions, remembered):
    """The uploads mapped and converted, and the reading notes: block by block after a preview, else from the
    whole tables. A preview whose files turn out to need the whole-file path is read whole once, then remembered."""
    if preview:
        try:
            return stream.read_previewed(files, tables, edits or None, rules, tz, sessions=sessions, remembered=remembered,
                                         progress=_progress_bar("Reading and checking the files block by block…")), notes
        except stream.StreamRefused:
            tables, notes = prepare_tables(read_tables(files, progress=_progress_bar("Reading files…")))
            st.session_state["data.tables"] = (key, tables, notes, False)
    return build_result(tables, edits or None, rules, tz, sessions=sessions, remembered=remembered, prepared=True), notes


def _remembered(tables) -> dict:
    """Mappings saved for each table's column set: {file: (overrides, name)}."""
    out = {}
    for t in tables:
        found = remembered_overrides(eng, ws, t.frame.columns)
        if found:
            out[t.name] = found
    return out


# ----------------------------------------------------------------------------------------- upload
upload_tab, sql_tab, big_tab, rules_tab = st.tabs(["Upload files", "SQL source", "Folder or cluster", "Channel rules"])

with upload_tab:
    uploads = st.file_uploader(
        "Files", accept_multiple_files=True, key="data.upload",
        type=["csv", "gz", "parquet", "jsonl", "ndjson", "json", "txt", "tsv", "xlsx"],
        help="One event file with an event type column, or touchpoints and conversions as two files; a GA4 export; "
             "orders; a path table; a performance export (with the connector's history tables to name its rows).",
    )
    tz = st.selectbox("Time zone of timestamps without one", ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"], key="data.tz")
    if uploads:
        files = [(f.name, f.getvalue()) for f in uploads]
        digest = hashlib.sha256(b"".join(hashlib.sha256(d).digest() for _, d in files)).hexdigest()[:16]
        key = f"data.read.{digest}"
        read = _read(files, key)
        if read is not None:
            tables, notes, preview = read
            edits = st.session_state.setdefault(f"{key}.overrides", {})
            remembered = {f: o for f, (o, _n) in _remembered(tables).items() if f not in edits}
            rules = load_channel_rules(eng, ws)
            sessions = SessionSettings(st.session_state.get("data.touches", "auto"),
                                       float(st.session_state.get("data.session_timeout", 30)))
            # Converting is the slow part after reading: keep this session's last result, keyed on everything that shapes it.
            read_key = (ws, key, repr(edits), repr(remembered), tz, repr(rules), sessions)
            cached = st.session_state.get("data.last_read")
            result, proposals, error = (cached[1], None, None) if cached and cached[0] == read_key else (None, None, None)
            if result is None:
                try:
                    result, notes = _convert(files, tables, notes, preview, key, edits, rules, tz, sessions, remembered)
                    result.report["warnings"] = notes + result.report.get("warnings", [])
                    st.session_state["data.last_read"] = (read_key, result)
                except MappingNeeded as exc:
                    proposals = exc.proposals
                except IngestError as exc:
                    error = exc
            if proposals is None and result is not None:
                proposals = [MappingProposal(m) for m in result.mappings.values()]
            names = {f: n for f, (_o, n) in _remembered(tables).items()}
            pending = {}
            for i, proposal in enumerate(proposals or []):
                change = mapping_editor(proposal, f"{key}.map.{i}", remembered=names.get(proposal.mapping.file))
                if change is not None:
                    pending[proposal.mapping.file] = change
            if pending and pending != {f: edits.get(f) for f in pending}:
                st.info("Mapping edited: press **Apply mapping** to read the files again with it.")
                if st.button("Apply mapping", key=f"{key}.apply", type="primary"):
                    edits.update(pending)
                    st.rerun()
            if error is not None:
                st.error(f"Nothing was imported. {plain(error)}")
            elif result is None:
                st.error("Nothing was imported yet: map the missing column(s) above, then press **Apply mapping**.")
            else:
                _show_result(result, key)
                imported = st.session_state.get(f"{key}.imported")
                if imported:
                    st.success(f"Imported **{plain(imported[1])}** (data set {imported[0]}). Upload other files to import more.")
                else:
                    default_name = unique_name(eng, ws, ", ".join(result.files))
                    name = st.text_input("Data set name", value=default_name, key=f"{key}.name")
                    if st.button("Import", type="primary", key=f"{key}.import"):
                        try:
                            dataset_id = save_import(eng, ws, name, result, progress=_progress_bar("Storing…"), actor=actor())
                        except IngestError as exc:
                            st.error(plain(exc))
                        else:
                            for file in edits:  # remembered for the next upload of the same columns
                                if file in result.mappings:
                                    save_mapping(eng, ws, result.mappings[file], actor=actor())
                            st.session_state["data.choice"] = dataset_id
                            st.session_state[f"{key}.imported"] = (dataset_id, name)
                            st.rerun()

def _store_paths(result, source, name: str, status) -> None:
    """Store an engine's path table as a path-level data set and say what was fetched."""
    stored_name = unique_name(eng, ws, name)
    dataset_id = save_import(eng, ws, stored_name, as_import_result(result, source), source=f"{result.engine}:{source.describe()}",
                             progress=_progress_bar("Storing…", status), actor=actor())
    status.update(label="Paths stored", state="complete", expanded=False)
    st.session_state["data.choice"] = dataset_id
    figures = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.report.items()
                        if k in ("rows", "bytes_fetched", "seconds", "peak_worker_memory_bytes") and v is not None)
    st.success(f"Stored **{plain(stored_name)}** (data set {dataset_id}): {result.paths.n_paths:,} paths built by the "
               f"{result.engine} engine ({figures}).")


with sql_tab:
    with st.form("data.sql"):
        url = st.text_input("SQLAlchemy URL", type="password", placeholder="postgresql+psycopg://user:password@host/db",
                            help="SQLite, PostgreSQL or DuckDB, read-only: nothing is ever written. Used for this import "
                                 "only; never stored.", key="data.sql.url")
        table = st.text_input("Table", placeholder="events", key="data.sql.table")
        query = st.text_area("…or a SELECT query", placeholder="SELECT user_id, ts, channel, event_type, value FROM events",
                             key="data.sql.query")
        how = st.radio("How", ["Import the events", "Build paths in the database"], horizontal=True, key="data.sql.how",
                       help="Building paths in the database runs the journey rules there (SQL pushdown) and fetches only the "
                            "path table: for tables too big to move. The result is a path-level data set.")
        c1, c2 = st.columns(2)
        sql_lookback = c1.number_input("Lookback (days)", min_value=0.5, value=30.0, step=1.0, key="data.sql.lookback")
        sql_level = c2.selectbox("Level", ["channel", "campaign"], key="data.sql.level")
        lim1, lim2 = st.columns(2)
        row_limit = lim1.number_input("Row limit (import)", 1, None, DEFAULT_SQL_ROW_LIMIT, 100_000, key="data.sql.row_limit",
                                      help="An import whose source returns more rows is refused, never cut.")
        sql_timeout = lim2.number_input("Time limit (s)", 1, 3600, int(DEFAULT_STATEMENT_TIMEOUT), 30, key="data.sql.timeout",
                                        help="An import's query is cancelled after this long.")
        sql_name = st.text_input("Data set name", value="sql import")
        b1, b2 = st.columns(2)
        submitted = b1.form_submit_button("Import from SQL")
        preview = b2.form_submit_button("Preview the SQL")
    pushdown = how == "Build paths in the database"
    if (submitted or preview) and not url.strip():
        st.error("Enter the SQLAlchemy URL of the database to read from, e.g. `sqlite:////path/to/file.db`.")
    elif (submitted or preview) and not (table.strip() or query.strip()):
        st.error("Enter a table name or a SELECT query.")
    elif preview:
        try:
            with st.spinner("Reading the columns…"):
                sql_preview = plan_pathtable_sql(url.strip(), table.strip() or None, query.strip() or None,
                                                 lookback_days=sql_lookback, level=sql_level, channel_rules=load_channel_rules(eng, ws))
        except (IngestError, JourneyError) as exc:
            st.error(plain(exc))
        else:
            st.caption("The one query the database runs to build the paths (nothing is run by this preview).")
            st.code(sql_preview, language="sql")
            download_text(sql_preview, "Download the SQL", "paths.sql", key="data.sql.download")
    elif submitted and pushdown:
        try:
            with _status("Building paths in the database…") as status:
                src = EventSource(url=url.strip(), table=table.strip() or None, query=None if table.strip() else query.strip())
                built = build_paths(src, "sql", lookback_days=sql_lookback, level=sql_level, channel_rules=load_channel_rules(eng, ws),
                                    progress=_progress_bar("Building paths…", status), sessions=_touch_settings())
                _store_paths(built, src, sql_name.strip() or "sql paths", status)
        except (IngestError, JourneyError) as exc:
            st.error(f"Nothing was stored. {plain(exc)}")
    elif submitted:
        with st.status("Querying…", expanded=True) as status:
            try:
                result = read_sql_source(url.strip(), table.strip() or None, query.strip() or None,
                                         channel_rules=load_channel_rules(eng, ws), row_limit=int(row_limit),
                                         timeout=float(sql_timeout), progress=_progress_bar("Querying…", status),
                                         sessions=SessionSettings(st.session_state.get("data.touches", "auto"),
                                                                  float(st.session_state.get("data.session_timeout", 30))))
                stored_name = unique_name(eng, ws, sql_name.strip() or "sql import")
                dataset_id = save_import(eng, ws, stored_name, result, source="sql",
                                         progress=_progress_bar("Storing…", status), actor=actor())
            except IngestError as exc:
                status.update(label="Import failed", state="error", expanded=False)
                failure = exc
            else:
                status.update(label="Imported", state="complete", expanded=False)
                failure = None
        if failure is not None:
            st.error(f"Nothing was imported. {plain(failure)}" + (
                " Map it by uploading the table as a file, or name the columns in the query (… AS user_id)."
                if isinstance(failure, MappingNeeded) else ""))
        else:
            st.session_state["data.choice"] = dataset_id
            st.success(f"Imported **{plain(stored_name)}** (data set {dataset_id}, {result.report.get('rows_kept', '?')} rows).")

with big_tab:
    st.caption("Event files on this machine or a shared disk, too big to upload: a folder or a glob of Parquet/CSV files. "
               "The paths are built by the engine you pick and stored as a path-level data set.")
    with st.form("data.big"):
        where = st.text_input("Folder or glob", placeholder="/data/events/  or  /data/events/*.parquet")
        engine_name = st.radio("Engine", ["automatic", "memory", "sql", "dask"], horizontal=True, key="data.big.engine",
                               help="memory: this process; sql: DuckDB queries the files in place; dask: a cluster "
                                    "(a local one on 127.0.0.1 unless you give a scheduler). Automatic picks by size.")
        scheduler = st.text_input("Dask scheduler address (optional)", placeholder="tcp://10.0.0.5:8786")
        c1, c2, c3 = st.columns(3)
        big_lookback = c1.number_input("Lookback (days)", min_value=0.5, value=30.0, step=1.0, key="data.big.lookback")
        big_level = c2.selectbox("Level", ["channel", "campaign"], key="data.big.level")
        big_name = c3.text_input("Data set name", value="folder paths")
        go = st.form_submit_button("Build paths")
    if go and not where.strip():
        st.error("Enter a folder or a glob pattern of Parquet/CSV files.")
    elif go:
        try:
            src = event_source([where.strip()])
            chosen = None if engine_name == "automatic" else engine_name
            with _status(f"Building paths ({chosen or default_engine(src)} engine)…") as status:
                built = build_paths(src, chosen, lookback_days=big_lookback, level=big_level, channel_rules=load_channel_rules(eng, ws),
                                    scheduler=scheduler.strip() or None, progress=_progress_bar("Building paths…", status),
                                    sessions=_touch_settings())
                _store_paths(built, src, big_name.strip() or "folder paths", status)
        except (IngestError, JourneyError, OSError) as exc:
            st.error(f"Nothing was stored. {plain(exc)}")

with rules_tab:
    st.caption("source / medium / campaign (regular expressions, case-insensitive) → channel. The first matching rule wins. Used by the next import.")
    rules = rules_frame(load_channel_rules(eng, ws))
    edited_rules = st.data_editor(rules, key="data.rules", num_rows="dynamic", hide_index=True, width="stretch")
    _download(rules, "channel rules", "channel-rules.csv", "data.rules.download")
    if st.button("Save channel rules", key="data.rules.save"):
        try:
            count = save_channel_rules(eng, ws, rules_from_frame(edited_rules), actor=actor())
        except (IngestError, ValueError) as exc:
            st.error(plain(exc))
        else:
            st.success(f"Saved {count} rules.")

# ------------------------------------------------------------------------------------ data sets
st.header("Data sets")
if flash := st.session_state.pop("data.flash", None):
    st.success(flash)
datasets = list_datasets(eng, ws)
if datasets.empty:
    st.info("No data set yet: upload files above.")
    st.stop()

shown = datasets[["id", "name", "kind", "source", "created_at", "rows"]].assign(name=datasets["name"].map(dataset_label))
st.dataframe(shown, hide_index=True, width="stretch", column_config={
    "id": st.column_config.NumberColumn("id", width="small"), "name": st.column_config.TextColumn("name", width="medium"),
    "kind": st.column_config.TextColumn("kind", width="small"), "source": st.column_config.TextColumn("source", width="medium"),
    "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm", width="small"),
    "rows": st.column_config.NumberColumn("rows", width="small")})
_download(shown, "the list", "datasets.csv", "data.list.download")

ids = datasets["id"].tolist()
if st.session_state.get("data.choice") not in ids:  # first visit, or the chosen one was deleted
    journeys = datasets.loc[datasets["kind"] == "journeys", "id"].tolist()  # the journeys are what people came for
    st.session_state["data.choice"] = int(journeys[0]) if journeys else ids[0]
labels = {int(r.id): f"{dataset_label(r.name)} · {r.kind} (#{r.id})" for r in datasets.itertuples()}
choice = st.selectbox("Data set", ids, format_func=labels.get, key="data.choice")
row = datasets[datasets["id"] == choice].iloc[0]
lookback = st.slider("Lookback window (days)", 1, 90, 30, key="data.lookback") if row.kind == "journeys" else 30


@st.cache_data(show_spinner="Summarizing…", max_entries=32)
def _overview(_eng, url_key: str, ws_id: str, dataset_id: int, content_hash: str, kind: str, lookback_days: int) -> dict:
    return dataset_overview(_eng, ws_id, dataset_id, kind, lookback_days)


# the current hash: a synced, simulated or live data set keeps growing, and its summary must follow
overview = _overview(eng, str(eng.url), ws, int(choice), dataset_content_hash(eng, ws, int(choice)), row.kind, int(lookback))
MONEY_METRICS = {"spend", "value", "conversion value"}  # at the currency's decimals: 6,900.00 USD, 1.234 KWD, 1,500 JPY


def _with_currency(metrics: dict) -> dict:
    """Metrics with the currency in the money labels: ``spend (EUR)``; per currency when the data set
    mixes currencies (the summary gives those as {currency: amount}, never one sum across them)."""
    cur = metrics.get("currency")
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k} ({c})" if c else k: x for c, x in v.items()})
        elif k in MONEY_METRICS and isinstance(cur, str) and cur:
            out[f"{k} ({cur})"] = v
        else:
            out[k] = v
    return out


metrics = _with_currency(overview["metrics"])
numbers = {k: v for k, v in metrics.items()
           if (isinstance(v, (int, float)) and not isinstance(v, bool)) or (v is None and k.startswith("ROAS"))}
texts = {k: v for k, v in metrics.items() if k not in numbers and v is not None}


def _metric_text(label: str, value) -> str:
    if value is None or value != value:  # unknown (e.g. ROAS of data without conversion value)
        return "—"
    name, _, code = label.partition(" (")
    if name in MONEY_METRICS:
        return format_money(value, code.rstrip(")") or None)
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:,.2f}"
    return f"{value:,.0f}"


cols = st.columns(4)
for i, (label, value) in enumerate(numbers.items()):
    cols[i % 4].metric(plain(label), _metric_text(label, value))
st.caption(" · ".join(f"**{plain(k)}**: {plain(' → '.join(map(str, v)) if isinstance(v, tuple) else ', '.join(map(str, v)) if isinstance(v, list) else v)}"
                      for k, v in texts.items()))
money = overview.get("money")
if money is not None and len(money) > 1:
    st.info(f"This data set holds campaigns in {len(money)} currencies ({plain(', '.join(money['currency']))}): spend and value are "
            "shown per currency and never added up. The Optimizer plans one currency at a time.")
    st.dataframe(money_table(money, ["spend", "conversion value"], money["currency"]), hide_index=True, width="stretch",
                 key="data.money")  # each currency's row at its own precision

if overview["lengths"] is not None and not overview["lengths"].empty:
    import altair as alt  # here, not at the top: a third of a second off the first page of a fresh install

    chart = (
        alt.Chart(overview["lengths"]).mark_bar()
        .encode(x=alt.X("touches:O", title="touches per journey"), y=alt.Y("journeys:Q", title="journeys", axis=alt.Axis(tickMinStep=1)),
                color=alt.Color("outcome:N", scale=alt.Scale(domain=["converting", "null"])),
                tooltip=["touches", "outcome", alt.Tooltip("journeys:Q", format=",.0f")])
        .properties(title="Path length distribution", height=260)
    )
    st.altair_chart(chart, width="stretch")
if overview["channels"] is not None:
    st.dataframe(overview["channels"], hide_index=True, width="stretch")
    _download(overview["channels"], "channels", f"dataset-{choice}-channels.csv", "data.channels.download")
for table_name, table_frame in (overview.get("tables") or {}).items():
    _download(table_frame, table_name, f"dataset-{choice}-{table_name.replace(' ', '-')}.csv", f"data.{table_name}.download")
if overview["journey_report"]:
    with st.expander("Journey building report"):
        journey = pd.DataFrame([(k.replace("_", " "), f"{v:,.2f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:,.0f}")
                                for k, v in overview["journey_report"].items()], columns=["item", "value"])
        st.table(plain_table(journey), hide_index=True, hide_header=True)
with st.expander("Import report"):
    _report(row.report or {}, f"data.ds.{choice}", "Import report")

with st.expander("Delete this data set"):
    st.warning("Deletes the data set and the attribution runs computed from it.")
    sure = st.checkbox("Yes, delete it", key=f"data.delete.sure.{choice}")
    if st.button("Delete", disabled=not sure, key=f"data.delete.{choice}"):
        delete_dataset(eng, ws, int(choice), actor=actor())
        _overview.clear()
        st.session_state["data.flash"] = f"Deleted data set **{plain(row['name'])}** (#{int(choice)})."
        st.rerun()
