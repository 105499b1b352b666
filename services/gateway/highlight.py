"""Highlighting of matched search terms in plain text (escaped, then wrapped in <mark>)."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_WORD = re.compile(r"\w+", re.UNICODE)


def highlight(text: str | None, terms: list[str]) -> Markup:
    """Escape ``text`` and mark every word that starts with one of the (stemmed) ``terms``."""
    if not text:
        return Markup("")
    stems = sorted({t.lower() for t in terms if len(t) >= 2}, key=len, reverse=True)
    if not stems:
        return escape(text)
    out: list[str] = []
    last = 0
    for match in _WORD.finditer(text):
        word = match.group(0)
        if any(word.lower().startswith(stem) for stem in stems):
            out.append(str(escape(text[last:match.start()])))
            out.append(f"<mark>{escape(word)}</mark>")
            last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))
