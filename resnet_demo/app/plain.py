"""Text a person supplied (an upload's file name, a message that quotes it), made safe for Streamlit's Markdown.

Headings, alerts, captions and radio labels all render Markdown, so a file named "[x](http://e.vil).png" became a
link and ":red[c].png" coloured text. Escaping every ASCII punctuation mark with a backslash stops the Markdown
syntax; Streamlit also turns some patterns into links or icons after parsing (www. and http:// addresses, e-mail
addresses, :material/...: icons), so a zero-width space is put around : / @ and . as well. What the page shows
reads exactly as the name was typed.
"""
from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark
_PATTERN_CHARS = re.compile(r"(\\[:/@.])")
_ZERO_WIDTH = "\u200b"


def plain(text: str) -> str:
    """Markdown that shows `text` literally, on one line."""
    escaped = _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
    return _PATTERN_CHARS.sub(_ZERO_WIDTH + r"\1" + _ZERO_WIDTH, escaped)
