"""Only what changed, never over a person's edit: which source segments to send, and which
target texts to keep, from the hash and machine output stored per segment
(:class:`~wagtail_llm_actions.models.LLMTranslationSegment`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .segments import Segment


def segment_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Plan:
    """What a translation run does with each source segment."""

    send: list[Segment] = field(default_factory=list)
    #: Target texts kept as they are, by path (unchanged, or edited by a person).
    keep: dict[str, str] = field(default_factory=dict)
    #: Paths whose source changed while a person edited the translation: kept, to review.
    review: list[str] = field(default_factory=list)
    #: Paths whose source is as last translated (nothing to do).
    unchanged: list[str] = field(default_factory=list)


def plan(segments: list[Segment], target_texts: dict[str, str] | None, records: dict) -> Plan:
    """``target_texts``: the existing translation's texts by path (None: no translation yet);
    ``records``: its stored segments by path."""
    result = Plan()
    for segment in segments:
        if target_texts is None:
            result.send.append(segment)
            continue
        current = target_texts.get(segment.path)
        record = records.get(segment.path)
        if record is not None:
            edited = current is not None and current != record.machine_text
            if record.source_hash == segment_hash(segment.source):
                result.keep[segment.path] = current if current is not None else record.machine_text
                result.unchanged.append(segment.path)
            elif edited:
                result.keep[segment.path] = current
                result.review.append(segment.path)
            else:
                result.send.append(segment)
        elif current is None or current == segment.source:
            result.send.append(segment)
        else:
            # Translated before, not by us: a person's text, kept.
            result.keep[segment.path] = current
            result.review.append(segment.path)
    return result
