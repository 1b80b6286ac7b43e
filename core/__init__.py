"""Marketing Suite core: ingestion, journeys, attribution, optimization and execution.

Plain Python; never imports Streamlit. Pages call into this package.
"""

__version__ = "0.1.0"
