"""Marketing Suite core: ingestion, journeys, attribution, optimization and execution.

Plain Python; never imports Streamlit. Pages call into this package.
"""

__version__ = "0.1.0"

from core.redact import install_log_redaction as _install_log_redaction

# One redaction filter for every log record of any process that uses core (app, CLI, collector, tests).
_install_log_redaction()
