"""The request that translates one page into one locale: every segment to send in one JSON
object (rich text with its markup as placeholders), one answer as a JSON object by the same
keys. One request per page and locale keeps a page's terms consistent and costs one system
prompt; a segment that comes back broken is asked again once, alone with the others that did."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.utils.translation import gettext as _

from . import glossary
from .markup import MarkupMismatch, Protected, protect, restore
from .segments import RICH, Segment

INSTRUCTIONS = (
    "You translate website content from {source} into {target}. The user message is a JSON "
    'object whose "segments" maps keys to texts. Answer with one JSON object mapping every '
    "key to its translation, nothing else. Placeholders such as ⟦1⟧ stand for markup: keep "
    "every one of them exactly once, around the words they belong to. Keep numbers, names "
    "and URLs as they are."
)


@dataclass
class Sent:
    """A segment as sent: its key in the request, and its markup when it is rich text."""

    key: str
    segment: Segment
    protected: Protected | None


def prepare(segments: list[Segment]) -> list[Sent]:
    return [
        Sent(str(n), seg, protect(seg.source) if seg.kind == RICH else None)
        for n, seg in enumerate(segments, start=1)
    ]


def messages(
    sent: list[Sent], *, source: str, target: str, target_code: str, settings, system: str = ""
) -> list[dict]:
    """The chat messages for ``sent``; ``settings`` is the action's translation settings."""
    lines = [INSTRUCTIONS.format(source=source, target=target)]
    if system.strip():
        lines.append(system.strip())
    if settings is not None and settings.style.strip():
        lines.append("Style: " + settings.style.strip())
    terms = glossary.terms_for(settings.glossary if settings else "", target_code)
    if terms:
        lines.append(
            "Glossary (always use these translations):\n"
            + "\n".join(f"- {term} → {translation}" for term, translation in terms.items())
        )
    keep = glossary.keep_terms(settings.do_not_translate if settings else "")
    if keep:
        lines.append("Never translate these terms:\n" + "\n".join(f"- {t}" for t in keep))
    payload = {
        "target_language": target_code,
        "segments": {s.key: (s.protected.text if s.protected else s.segment.source) for s in sent},
    }
    return [
        {"role": "system", "content": "\n\n".join(lines)},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=1)},
    ]


def parse(text: str) -> dict[str, str]:
    """The answer's key → text (a fenced or bare JSON object; ``{"segments": {...}}`` too)."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        try:
            data = json.loads(body[start : end + 1]) if start >= 0 < end else None
        except ValueError:
            data = None
    if isinstance(data, dict) and isinstance(data.get("segments"), dict):
        data = data["segments"]
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def results(sent: list[Sent], answer: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(translated, failed)``: each segment path's stored text, or why it is refused."""
    done: dict[str, str] = {}
    failed: dict[str, str] = {}
    for s in sent:
        text = answer.get(s.key)
        if text is None or not text.strip():
            failed[s.segment.path] = _("the answer has no translation for it")
            continue
        if s.protected is None:
            done[s.segment.path] = text
            continue
        try:
            done[s.segment.path] = restore(text, s.protected)
        except MarkupMismatch as e:
            failed[s.segment.path] = str(e)
    return done, failed
