"""Unexpected errors: an error id for the user, the detail (redacted) for the log.

Every entry point (each page through `ui.errors.error_boundary`, the command line, the executor when
a platform call fails in a way no adapter mapped) reports an error it did not expect through
`report_unexpected`: the user sees one line with an error id, the log gets the traceback under the
same id, and the process-wide redaction (`core.redact`) keeps secrets out of it.

`is_user_error` tells the errors written for users (raised by `core` itself: bad input, a refused
plan, a platform's answer, a busy database) from bugs (a builtin ``KeyError``, ``TypeError`` ...).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from core.redact import redact_text

#: The application's logger; unexpected errors go to ``marketing_suite.errors``.
LOGGER_NAME = "marketing_suite"
log = logging.getLogger(f"{LOGGER_NAME}.errors")


def new_error_id() -> str:
    """A short id a user can quote and an operator can find in the log."""
    return uuid.uuid4().hex[:10]


def report_unexpected(exc: BaseException, where: str) -> str:
    """Log ``exc`` with its traceback under a new error id (secrets redacted) and return the id."""
    error_id = new_error_id()
    log.error("error %s in %s: %s: %s", error_id, where, type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    return error_id


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by `core` for a user to read (its message says what went wrong and where)."""
    return type(exc).__module__.split(".")[0] == "core"


def user_message(exc: BaseException) -> str:
    """The message of a user error, redacted (it may quote a driver or a platform)."""
    return redact_text(str(exc)) or type(exc).__name__


def error_log_path() -> Path:
    """The error log of the command line: ``errors.log`` in the user's data directory."""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("marketing-suite", appauthor=False)) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "errors.log"


def log_errors_to_file(path: Path | None = None) -> Path:
    """Send the application's records to a file, and only there (once per process; the command line
    prints one line and keeps tracebacks out of the terminal). Returns the file's path."""
    path = Path(path or error_log_path())
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in logger.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    return path


__all__ = ["report_unexpected", "is_user_error", "user_message", "new_error_id", "error_log_path", "log_errors_to_file"]
