"""A translation action's glossary (``locale: term = translation`` a line) and its
do-not-translate terms (one a line)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _


@dataclass(frozen=True)
class Entry:
    locale: str
    term: str
    translation: str
    line: int


def parse(text: str) -> tuple[list[Entry], list[str]]:
    """The glossary's entries and, for each line that is not one, why."""
    entries: list[Entry] = []
    problems: list[str] = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        locale, colon, rest = line.partition(":")
        term, equals, translation = rest.partition("=")
        if not colon or not equals or not locale.strip() or not term.strip():
            problems.append(
                _("Line %(line)s is not “locale: term = translation”: %(text)s")
                % {"line": number, "text": line}
            )
            continue
        entries.append(Entry(locale.strip().lower(), term.strip(), translation.strip(), number))
    return entries, problems


def glossary_problems(text: str) -> list[str]:
    """Malformed lines, and terms given twice for one locale (whatever their case)."""
    entries, problems = parse(text)
    seen: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        key = (entry.locale, entry.term.casefold())
        first = seen.get(key)
        if first is not None:
            problems.append(
                _(
                    "“%(term)s” is in the glossary twice for %(locale)s (lines %(first)s and "
                    "%(line)s): keep one translation."
                )
                % {
                    "term": entry.term,
                    "locale": entry.locale,
                    "first": first.line,
                    "line": entry.line,
                }
            )
        else:
            seen[key] = entry
    return problems


def terms_for(text: str, language_code: str) -> dict[str, str]:
    """The glossary's term → translation for one locale (``de`` also takes ``de-at``'s base
    entries when the locale is ``de-at`` and has none of its own)."""
    entries, _problems = parse(text)
    code = language_code.lower()
    base = code.split("-")[0]
    exact = {e.term: e.translation for e in entries if e.locale == code}
    general = {e.term: e.translation for e in entries if e.locale == base and base != code}
    return {**general, **exact}


def keep_terms(text: str) -> list[str]:
    """The do-not-translate terms."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]
