"""Alt text for the image blocks of a page's StreamField (the action's target field).

A run finds the blocks without alt text (decorative ones stay decorative), asks the model
once per image with a rendition and the text around it (:mod:`.calls.image_blocks`), and
writes the answers into the draft by patching only those blocks' ``alt_text`` in the field's
stored JSON: every other block stays as stored. The interaction's ``output_value`` holds
the answers by block (:func:`encode`), so a write rebased onto a newer revision patches the
same blocks there (:func:`apply_answers`).
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext as _

from ..exceptions import SourceEmpty
from ..extraction.image_blocks import find_spots, load, patch, with_context
from ..extraction.readers import block_text
from ..models import LLMAction
from . import stored_form
from .prepare import PreparedRun, content_hash, inputs_hash, render_messages

#: The key of the answers in an interaction's ``output_value``.
ALT_TEXTS = "image_alt_text"


def image_model() -> type:
    from wagtail.images import get_image_model

    return get_image_model()


def spot_values(action: LLMAction, page: Any, image: Any, context: str) -> dict[str, str]:
    """The prompt's variables for one image block: the image's (see
    ``images.messages.prompt_values``), ``{surrounding_text}`` and ``{page_title}``."""
    from ..images.messages import prompt_values

    values = prompt_values(action, image)
    values.update({"surrounding_text": context, "page_title": str(getattr(page, "title", ""))})
    return values


def prepare_image_blocks(action: LLMAction, obj: Any) -> PreparedRun:
    """The image blocks of ``obj``'s target field that need alt text, with their context;
    ``SourceEmpty`` when none does (each has alt text, is decorative or has no image)."""
    name = action.target_field
    stream_block = obj._meta.get_field(name).stream_block
    data = load(stored_form.stored_json(obj, name))
    spots = [spot for spot in find_spots(stream_block, data) if spot.needs_alt_text]
    images = image_model().objects.in_bulk([spot.image_id for spot in spots])
    spots = [spot for spot in spots if spot.image_id in images]
    if not spots:
        raise SourceEmpty(
            _(
                "No image in “%(field)s” needs alt text: each has alt text, is decorative or "
                "has no image."
            )
            % {"field": name}
        )
    with_context(stream_block, data, spots, block_text)
    for spot in spots:
        spot.image = images[spot.image_id]
    values = [spot_values(action, obj, spot.image, spot.context) for spot in spots]
    rendered = [render_messages(action, v) for v in values]
    return PreparedRun(
        action=action,
        obj=obj,
        messages=rendered[0],
        source_text="\n\n".join(spot.context for spot in spots),
        source_hash=content_hash([f"{s.key}|{s.image_id}|{s.context}" for s in spots]),
        truncated=False,
        variables=values[0],
        inputs_hash=inputs_hash(action, [m for messages in rendered for m in messages]),
        image_spots=spots,
    )


def encode(answers: dict[str, str]) -> str:
    return json.dumps({ALT_TEXTS: answers}, ensure_ascii=False)


def decode(value: str) -> dict[str, str] | None:
    """The answers by block of an interaction's ``output_value`` (None if it holds none)."""
    if not value or not value.startswith('{"' + ALT_TEXTS):
        return None
    try:
        answers = json.loads(value).get(ALT_TEXTS)
    except (TypeError, ValueError, AttributeError):
        return None
    return answers if isinstance(answers, dict) else None


def apply_answers(obj: Any, name: str, answers: dict[str, str]) -> dict[str, str]:
    """Write ``answers`` into the image blocks of ``obj``'s field ``name``, changing nothing
    else in its stored JSON; returns the alt text each written block had before."""
    stream_block = obj._meta.get_field(name).stream_block
    data = load(stored_form.stored_json(obj, name))
    before = patch(stream_block, data, answers)
    stored_form.replace_stored(obj, name, json.dumps(data, ensure_ascii=False))
    return before


__all__ = ["ALT_TEXTS", "apply_answers", "decode", "encode", "prepare_image_blocks"]
