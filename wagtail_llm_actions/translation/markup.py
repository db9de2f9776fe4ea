"""Rich text with its markup protected: every tag becomes a numbered placeholder ``⟦n⟧`` the
model keeps, and the answer is accepted only if each placeholder came back exactly once, in
an order that still nests. Text is sent unescaped and escaped again on the way back.

The alt text of an image embedded in the rich text (``<embed embedtype="image" … alt="…"/>``)
is translated with the text around it: the tag becomes two placeholders with the alt text
between them (``⟦2⟧Hands pleating a wrapper⟦3⟧``), which must come back next to each other,
and the translated alt text is escaped for an attribute."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from django.utils.translation import gettext as _

PLACEHOLDER_RE = re.compile(r"⟦(\d+)⟧")
VOID_TAGS = frozenset({"br", "hr", "img", "embed", "input", "wbr"})
#: The tag name recorded for the two halves of an image embed around its alt text.
ALT = "@alt"
ALT_RE = re.compile(r'(\balt=")([^"]*)(")')


@dataclass
class Protected:
    """A rich-text value as the model sees it (``text``) and the tags its placeholders hold."""

    text: str
    tags: list[str] = field(default_factory=list)
    #: For each tag: ("open" | "close" | "void", tag name).
    kinds: list[tuple[str, str]] = field(default_factory=list)


class MarkupMismatch(ValueError):
    """The answer lost, repeated, invented or misnested a placeholder."""


class _Splitter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[str] = []
        self.kinds: list[tuple[str, str]] = []

    def _tag(self, raw: str, kind: str, name: str) -> None:
        self.parts.append(f"⟦{len(self.tags) + 1}⟧")
        self.tags.append(raw)
        self.kinds.append((kind, name))

    def handle_starttag(self, tag, attrs):
        kind = "void" if tag in VOID_TAGS else "open"
        self._tag(self.get_starttag_text() or f"<{tag}>", kind, tag)

    def handle_startendtag(self, tag, attrs):
        raw = self.get_starttag_text() or f"<{tag}/>"
        found = ALT_RE.search(raw) if tag == "embed" else None
        if found and ("embedtype", "image") in attrs and found.group(2).strip():
            self._tag(raw[: found.end(1)], "open", ALT)  # the alt text is translated
            self.handle_data(html.unescape(found.group(2)))
            self._tag(raw[found.start(3) :], "close", ALT)
            return
        self._tag(raw, "void", tag)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        self._tag(f"</{tag}>", "close", tag)

    def handle_data(self, data):
        self.parts.append(data.replace("⟦", "[").replace("⟧", "]"))


def protect(value: str) -> Protected:
    """``value`` (rich text as stored) with each tag replaced by a placeholder."""
    splitter = _Splitter()
    splitter.feed(value or "")
    splitter.close()
    return Protected("".join(splitter.parts), splitter.tags, splitter.kinds)


def has_text(protected: Protected) -> bool:
    return bool(PLACEHOLDER_RE.sub("", protected.text).strip())


def restore(answer: str, protected: Protected) -> str:
    """The stored form of a translated ``answer``; :class:`MarkupMismatch` unless every
    placeholder came back once and opening and closing tags still nest."""
    numbers = [int(n) for n in PLACEHOLDER_RE.findall(answer)]
    expected = list(range(1, len(protected.tags) + 1))
    if sorted(numbers) != expected:
        missing = sorted(set(expected) - set(numbers))
        extra = sorted(n for n in set(numbers) if n not in expected or numbers.count(n) > 1)
        raise MarkupMismatch(_describe(protected, missing, extra))
    stack: list[str] = []
    for previous, number in zip([0, *numbers], numbers, strict=False):
        kind, name = protected.kinds[number - 1]
        if stack and stack[-1] == ALT and number != previous + 1:  # inside an alt text
            raise MarkupMismatch(
                _("the answer moved %(tag)s into an image's alt text")
                % {"tag": protected.tags[number - 1]}
            )
        if kind == "open":
            stack.append(name)
        elif kind == "close":
            if not stack or stack.pop() != name:
                tag = protected.tags[number - 1] if name == ALT else f"</{name}>"
                raise MarkupMismatch(_("the answer closes %(tag)s out of order") % {"tag": tag})
    pieces = PLACEHOLDER_RE.split(answer)
    out: list[str] = []
    in_alt = False
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(protected.tags[int(piece) - 1])
            in_alt = protected.kinds[int(piece) - 1] == ("open", ALT)
        else:
            text = html.escape(piece, quote=False)
            out.append(text.replace('"', "&quot;") if in_alt else text)
    return "".join(out)


def _describe(protected: Protected, missing: list[int], extra: list[int]) -> str:
    parts = []
    if missing:
        parts.append(
            _("the answer lost %(tags)s")
            % {"tags": ", ".join(protected.tags[n - 1] for n in missing)}
        )
    if extra:
        parts.append(
            _("the answer invented or repeated %(tags)s")
            % {"tags": ", ".join(f"⟦{n}⟧" for n in extra)}
        )
    return "; ".join(parts)


ANCHOR_RE = re.compile(r"<a\b[^>]*>")
ID_RE = re.compile(r'(\bid=")(\d+)(")')


def retarget_links(value: str, page_ids: dict[int, int]) -> str:
    """Rich text whose page links point at the pages ``page_ids`` maps them to."""

    def swap_id(match: re.Match) -> str:
        target = page_ids.get(int(match.group(2)))
        return match.group(0) if target is None else f"{match.group(1)}{target}{match.group(3)}"

    def swap(match: re.Match) -> str:
        tag = match.group(0)
        return ID_RE.sub(swap_id, tag, count=1) if 'linktype="page"' in tag else tag

    return ANCHOR_RE.sub(swap, value)


def linked_page_ids(value: str) -> set[int]:
    """The ids of the pages ``value``'s rich text links to."""
    ids = set()
    for tag in ANCHOR_RE.findall(value or ""):
        found = ID_RE.search(tag)
        if 'linktype="page"' in tag and found:
            ids.add(int(found.group(2)))
    return ids
