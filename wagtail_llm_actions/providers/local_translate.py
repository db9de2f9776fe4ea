"""The offline provider's ``local/translate``: a translation request (a JSON object whose
``segments`` maps keys to texts, and ``target_language``) answered deterministically, with no
key and no network, so that the sandbox shows translation working. Each segment gets the
language code in brackets after its leading markup, and a few common words are swapped for
the target language's; ``⟦n⟧`` placeholders stay exactly where they were."""

from __future__ import annotations

import json
import re

#: A few words per language: enough to see a translation happen in the demo.
WORDS: dict[str, dict[str, str]] = {
    "de": {
        "the": "die",
        "and": "und",
        "with": "mit",
        "for": "für",
        "of": "von",
        "in": "in",
        "a": "ein",
        "is": "ist",
        "page": "Seite",
        "compost": "Kompost",
        "soil": "Boden",
        "water": "Wasser",
        "garden": "Garten",
        "dumplings": "Teigtaschen",
        "dough": "Teig",
    },
    "fr": {
        "the": "le",
        "and": "et",
        "with": "avec",
        "for": "pour",
        "of": "de",
        "in": "dans",
        "a": "un",
        "is": "est",
        "page": "page",
        "compost": "compost",
        "soil": "sol",
        "water": "eau",
        "garden": "jardin",
        "dumplings": "raviolis",
        "dough": "pâte",
    },
}

_LEADING = re.compile(r"^((?:⟦\d+⟧)*)")
_WORD = re.compile(r"[^\W\d_]+")


def translate_text(text: str, language: str) -> str:
    words = WORDS.get(language.split("-")[0].lower(), {})

    def swap(match: re.Match) -> str:
        word = match.group(0)
        found = words.get(word.lower())
        if found is None:
            return word
        return found[:1].upper() + found[1:] if word[:1].isupper() else found

    parts = re.split(r"(⟦\d+⟧)", text)
    body = "".join(p if p.startswith("⟦") else _WORD.sub(swap, p) for p in parts)
    lead = _LEADING.match(body).group(1)
    return f"{lead}[{language}] {body[len(lead) :]}"


def translate_request(prompt: str) -> str:
    """The JSON answer to a translation request; the prompt as it is if it is not one."""
    try:
        data = json.loads(prompt)
        segments = data["segments"]
        language = str(data.get("target_language") or "xx")
    except (ValueError, KeyError, TypeError):
        return prompt
    answer = {key: translate_text(str(text), language) for key, text in segments.items()}
    return json.dumps(answer, ensure_ascii=False)
