"""The one error every ingestion step raises: it names the file, the row and the column."""

from __future__ import annotations


class IngestError(ValueError):
    """Bad input, with where it is.

    ``row`` is the 1-based data row as a person counts it below the header (the header line and any
    title lines above it are not counted); ``line`` is the 1-based physical line of a text file when
    it is known. ``column`` is the column name as written in the file.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, line: int | None = None):
        self.reason = message
        self.file = file
        self.row = row
        self.column = column
        self.line = line
        super().__init__(self._text())

    def _text(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason
