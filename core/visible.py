"""Names as people see them: invisible characters that make two different names look the same, or
reorder what is shown, are removed wherever names come in (imported files, the collector).

They are the "Trojan Source" bidirectional controls, the zero-width space, the byte-order mark and the
Arabic letter mark: with them "Google\u202e" would be a second channel that looks exactly like "Google".
The zero-width joiners U+200C/U+200D stay, because Persian spelling and emoji sequences need them.
"""

from __future__ import annotations

import re

#: A regular expression (Python ``re`` and RE2 alike) matching one invisible character.
INVISIBLE = "[\u200B\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF\u061C]"
_INVISIBLE = re.compile(INVISIBLE)


def visible(text: str) -> str:
    """``text`` without `INVISIBLE` characters."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


__all__ = ["INVISIBLE", "visible"]
