"""Ingestion: files (CSV, CSV.gz, Parquet, JSON lines), uploads and SQL sources -> canonical
touchpoints/conversions, path tables or daily performance, with column auto-mapping (and a mapping
for every file, remembered per source shape), sessionizing of event streams, channel rules,
validation that names file/row/column, and storage of imports as single transactions.

Formats: generic events, GA4 exports (nested JSON, JSON text in CSV, connector columns), Segment and
RudderStack tables, Snowplow atomic events, orders (Shopify, CRM), path tables, Meta / Google Ads
exports, Fivetran ad_reporting and raw connector tables with their history tables.

Rows in errors are 1-based data rows below the header (title lines and the header not counted).
"""

from .api import (
    ImportResult,
    build_result,
    prepare_tables,
    propose_mappings,
    read_files,
    read_performance,
    read_tables,
    read_uploaded,
    value_by_currency,
)
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
from .mapping import (
    PROFILES,
    ColumnMapping,
    FieldMatch,
    MappingNeeded,
    MappingProposal,
    auto_map,
    detect_profile,
    parse_map_args,
    shape_fingerprint,
)
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
from .report import report_table
from .sessionize import SessionSettings, sessionize
from .sql import DEFAULT_SQL_ROW_LIMIT, DEFAULT_STATEMENT_TIMEOUT, import_sql, read_sql_source

__all__ = [
    "ImportResult", "build_result", "prepare_tables", "propose_mappings", "read_files", "read_performance", "read_tables",
    "read_uploaded", "value_by_currency", "MappingNeeded", "MappingProposal", "parse_map_args", "shape_fingerprint",
    "report_table", "SessionSettings", "sessionize",
    "DEFAULT_RULES", "ChannelRule", "assign_channels", "default_rules", "load_channel_rules", "rules_frame",
    "rules_from_frame", "save_channel_rules", "IngestError", "PROFILES", "ColumnMapping", "FieldMatch", "auto_map",
    "detect_profile", "delete_dataset", "import_files", "list_datasets", "load_events", "load_pathtable",
    "load_performance", "save_import", "stored_event_files", "stored_events", "unique_name", "DEFAULT_SIZE_LIMIT", "import_sql", "read_sql_source",
    "DEFAULT_SQL_ROW_LIMIT", "DEFAULT_STATEMENT_TIMEOUT",
]
