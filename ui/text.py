"""User-supplied text (names of data sets, platforms, campaigns, channels, files; messages quoting them)
shown as plain text wherever Streamlit renders Markdown (captions, alerts, metric labels, headers).

`plain` neutralises everything Markdown, its GitHub extensions and Streamlit's own syntax give a meaning
to, so ``[login](http://evil.example)`` stays those characters and never becomes a link, ``**`` never
bolds, ``:red[...]`` never colours, ``$...$`` never becomes math, a leading ``#`` or ``-`` never makes
a heading or a list, and a bare ``http://...``, ``www....`` or ``a@b.c`` is not turned into a link.
Punctuation without a meaning where it stands is left alone, so messages stay readable.
"""

from __future__ import annotations

import re

#: Characters that are Markdown syntax wherever they stand (links, images, emphasis, code, HTML, strike,
#: math, tables, escapes).
_ALWAYS = re.compile(r"([\\`*\[\]<~$|])")
#: ``_`` opens emphasis only when not inside a word (``google_client_id`` is safe as it is).
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
#: Block syntax at the start of the text: heading, list item, quote, ordered list ("1." / "1)").
_LEADING = re.compile(r"^(\s*)([#+\->=])|^(\s*\d+)([.)])")
#: Where GitHub's autolink literals (``http://``, ``www.``, ``a@b.c``) and Streamlit's ``:material/...:``
#: icons would start: the link finder runs on the text after escapes are resolved, so an invisible
#: zero-width space breaks the pattern instead.
_BREAK = re.compile(r"(?=://)|(?<=www)(?=\.)|(?<=@)|(?<=:)(?=material/)", re.IGNORECASE)
_ZWSP = "\u200b"


def plain(value: object) -> str:
    r"""``value`` as text that Streamlit's Markdown shows character for character (one line).

    >>> plain("[login](evil)") == r"\[login\](evil)", plain("google_client_id")
    (True, 'google_client_id')
    """
    text = "" if value is None else str(value)
    text = _BREAK.sub(_ZWSP, re.sub(r"[\r\n\t]+", " ", text))
    text = _ALWAYS.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    return _LEADING.sub(lambda m: f"{m[1]}\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}", text)


def plain_table(frame):
    """A copy of ``frame`` for `st.table`, which renders every cell and header as Markdown: each text cell,
    header and index label passed through `plain` (numbers and dates stay as they are)."""
    def cell(value):
        return plain(value) if isinstance(value, str) else value

    out = frame.map(cell)
    out.columns = [cell(c) for c in out.columns]
    out.index = [cell(i) for i in out.index]
    return out


__all__ = ["plain", "plain_table"]
