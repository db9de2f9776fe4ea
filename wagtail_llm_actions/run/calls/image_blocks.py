"""Alt text for a page's image blocks: one vision call per block, answers set on the draft.

Usage of every call is added up on the run's one interaction; its response lists each
block's answer. A failing call stops the run with nothing written (the answers received
before it stay in the interaction's response, recorded with the error).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from ... import outputs
from ...exceptions import OutputRejected
from ...models import LLMInteraction
from ..image_blocks import apply_answers, encode, spot_values
from ..prepare import PreparedRun, render_messages
from .common import call, refuse_cut_answer

#: The longest alt text written (screen readers read it whole).
ALT_TEXT_MAX_CHARS = 400


def fill_alt_texts(working_obj: Any, prepared: PreparedRun, interaction: LLMInteraction) -> None:
    """Ask for the alt text of each image block of ``prepared`` and set the answers on
    ``working_obj`` (only those blocks' ``alt_text`` changes)."""
    from ...images.files import picture
    from ...images.messages import for_the_log, with_picture

    action = prepared.action
    if action.vision_support() is False:
        from ...images.messages import no_vision

        raise no_vision(action)
    answers: dict[str, str] = {}
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "latency_ms": 0}
    cost, cost_known = 0, True
    logged: list[dict] = []
    try:
        for spot in prepared.image_spots:
            image_part = picture(spot.image, action.image_size, action.image_format)
            values = spot_values(action, working_obj, spot.image, spot.context)
            messages = with_picture(render_messages(action, values), image_part)
            try:
                call(action, messages, interaction, max_chars=ALT_TEXT_MAX_CHARS)
            finally:
                logged = logged or for_the_log(messages, image_part)
                for name in usage:
                    usage[name] += getattr(interaction, name) or 0
                cost_known = cost_known and interaction.cost is not None
                cost += interaction.cost or 0
            refuse_cut_answer(action, interaction)
            text = outputs.clean_model_text(interaction.response_text)
            if not text:
                raise OutputRejected(_("The model gave no alt text for an image."), code="empty")
            answers[spot.key] = text[:ALT_TEXT_MAX_CHARS].strip()
    finally:
        for name, value in usage.items():
            setattr(interaction, name, value)
        interaction.cost = cost if cost_known else None
        interaction.messages = logged
        interaction.response_text = "\n".join(f"{key}: {text}" for key, text in answers.items())
    before = apply_answers(working_obj, action.target_field, answers)
    interaction.output_value = encode(answers)
    interaction.previous_value = encode(before)


__all__ = ["ALT_TEXT_MAX_CHARS", "fill_alt_texts"]
