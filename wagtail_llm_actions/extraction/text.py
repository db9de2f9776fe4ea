"""HTML to plain text, and the plain-text helpers every reader shares."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from html.parser import HTMLParser

from django.utils.translation import gettext as _


class _TextParser(HTMLParser):
    """Collects the text of an HTML fragment, one line per block element."""

    BLOCK_TAGS = frozenset(
        "address article aside blockquote caption dd details div dl dt figcaption figure footer "
        "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul".split()
    )
    SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "head", "iframe", "svg"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping += 1
        elif tag == "br" or tag in self.BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "embed" and not self.skipping:
            # Wagtail's stored rich text: <embed embedtype="image" alt="…"/>, or "media" url=…
            values = dict(attrs)
            if values.get("embedtype") == "image" and values.get("alt"):
                self.parts.append(f"\n{_('Image')}: {values['alt']}\n")
            elif values.get("embedtype") == "media" and values.get("url"):
                self.parts.append(f"\n{_('Embed')}: {values['url']}\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            # Line breaks in HTML source are just spaces; only elements break lines. (Other
            # whitespace is collapsed when the lines are joined: see html_to_text.)
            self.parts.append(data.replace("\n", " "))


def html_to_text(html: str) -> str:
    """Text of an HTML fragment: block elements and ``<br>`` on their own lines, no tags."""
    if not html:
        return ""
    parser = _TextParser()
    parser.feed(str(html))
    parser.close()
    return _join_lines("".join(parser.parts).split("\n"))


def _join_lines(parts: Iterable[str]) -> str:
    """Join non-blank parts with newlines, collapsing whitespace within each line."""
    lines = (" ".join(line.split()) for part in parts for line in str(part).split("\n"))
    return "\n".join(line for line in lines if line)


def _normalise(text: str) -> str:
    """Collapse whitespace within lines and keep at most one blank line between paragraphs."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n\n".join(p for p in (_join_lines([para]) for para in paragraphs) if p)


def _truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars``, at the last whitespace if there is one."""
    max_chars = max(max_chars, 0)
    if len(text) <= max_chars:
        return text
    if text[max_chars].isspace():
        return text[:max_chars].rstrip()
    head = text[:max_chars]
    cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return (head[:cut] if cut > 0 else head).rstrip()


def source_hash(text: str) -> str:
    """SHA-256 hex digest of ``text``, to tell whether a source changed since the last run."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
