"""Ingestion: files (CSV, CSV.gz, Parquet, JSON lines), uploads and SQL sources -> canonical
touchpoints/conversions, path tables or daily performance, with column auto-mapping, channel rules,
validation that names file/row/column, and storage of imports as single transactions.

Rows in errors are 1-based data rows below the header (title lines and the header not counted).
"""

from .api import ImportResult, build_result, read_files, read_performance, read_uploaded
from .channels import (
    DEFAULT_RULES,
    ChannelRule,
    assign_channels,
    default_rules,
    load_channel_rules,
    rules_frame,
    rules_from_frame,
    save_channel_rules,
)
from .errors import IngestError
from .mapping import PROFILES, ColumnMapping, FieldMatch, auto_map, detect_profile
from .persist import (
    delete_dataset,
    import_files,
    list_datasets,
    load_events,
    load_pathtable,
    load_performance,
    save_import,
    stored_event_files,
    stored_events,
    unique_name,
)
from .readers import DEFAULT_SIZE_LIMIT
from .sql import DEFAULT_SQL_ROW_LIMIT, DEFAULT_STATEMENT_TIMEOUT, import_sql, read_sql_source

__all__ = [
    "ImportResult", "build_result", "read_files", "read_performance", "read_uploaded",
    "DEFAULT_RULES", "ChannelRule", "assign_channels", "default_rules", "load_channel_rules", "rules_frame",
    "rules_from_frame", "save_channel_rules", "IngestError", "PROFILES", "ColumnMapping", "FieldMatch", "auto_map",
    "detect_profile", "delete_dataset", "import_files", "list_datasets", "load_events", "load_pathtable",
    "load_performance", "save_import", "stored_event_files", "stored_events", "unique_name", "DEFAULT_SIZE_LIMIT", "import_sql", "read_sql_source",
    "DEFAULT_SQL_ROW_LIMIT", "DEFAULT_STATEMENT_TIMEOUT",
]
