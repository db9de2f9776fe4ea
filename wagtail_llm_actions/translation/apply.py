"""The translated page's values: a copy of the source's stored values (structure, block ids,
images, documents, embeds, choices, numbers, URLs kept) with the texts set, and page links,
in rich text and page choosers, pointed at the target locale's translation where one exists."""

from __future__ import annotations

from typing import Any

from wagtail.models import Page

from .markup import linked_page_ids, retarget_links
from .segments import PAGE, RICH, slots, stored_values


def page_map(source: Any, values: dict[str, Any], locale) -> dict[int, int]:
    """Source page id → its translation's id in ``locale``, for every page ``values`` link."""
    ids: set[int] = set()
    for slot in slots(source, values):
        if slot.kind == PAGE and isinstance(slot.value, int):
            ids.add(slot.value)
        elif slot.kind == RICH and isinstance(slot.value, str):
            ids |= linked_page_ids(slot.value)
    if not ids:
        return {}
    keys = dict(Page.objects.filter(pk__in=ids).values_list("pk", "translation_key"))
    translated = dict(
        Page.objects.filter(translation_key__in=keys.values(), locale=locale).values_list(
            "translation_key", "pk"
        )
    )
    return {pk: translated[key] for pk, key in keys.items() if key in translated}


def translated_values(
    source: Any, texts: dict[str, str], kept: dict[str, str], locale
) -> dict[str, Any]:
    """The source's values with ``texts`` (new translations) and ``kept`` (the target's own
    texts) set by path; other texts stay the source's. Links are retargeted in all but the
    kept texts (a person chose those)."""
    values = stored_values(source)
    pages = page_map(source, values, locale)
    for slot in list(slots(source, values)):
        if slot.kind == PAGE:
            if isinstance(slot.value, int) and slot.value in pages:
                slot.set(pages[slot.value])
            continue
        if slot.path in kept:
            slot.set(kept[slot.path])
            continue
        text = texts.get(slot.path, slot.value)
        if slot.kind == RICH and isinstance(text, str):
            text = retarget_links(text, pages)
        slot.set(text)
    return values


def set_values(obj: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(obj, name, value)


def current_texts(obj: Any) -> dict[str, str]:
    """The texts ``obj`` holds now, by path (a translation's, to compare with the memory)."""
    return {
        slot.path: slot.value
        for slot in slots(obj, stored_values(obj))
        if slot.kind != PAGE and isinstance(slot.value, str)
    }


def override(obj: Any, values: dict[str, Any], texts: dict[str, str]) -> None:
    """Set ``texts`` (by path) into ``values`` (a person's texts that win over the run's)."""
    for slot in slots(obj, values):
        if slot.kind != PAGE and slot.path in texts:
            slot.set(texts[slot.path])
