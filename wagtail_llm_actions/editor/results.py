"""What the browser fills into the open form: an editor job's result, for an action's
answer (its candidates, a structured answer's fields) or a pipeline's written steps.
"""

from __future__ import annotations

from typing import Any

from wagtail.models import Page

from ..extraction import PathError, get_target_field, html_to_text
from ..models import InteractionOutcome, InteractionStatus, LLMAction, LLMInteraction
from .pages import WIDGET_DRAFTAIL, WIDGET_TAGS, WIDGET_TEXT, form_class_for, widget_kind


def _fill_value(obj: Page, field_name: str, output_value: str) -> dict:
    """What the browser puts into the field, in the form its widget needs."""
    form_class = form_class_for(obj)
    form_field = form_class.base_fields.get(field_name)
    kind = widget_kind(form_field.widget) if form_field is not None else WIDGET_TEXT
    value: Any = output_value
    if kind == WIDGET_TAGS:
        value = [t.strip() for t in output_value.split(",") if t.strip()]
    elif kind == WIDGET_DRAFTAIL:
        value = form_field.widget.format_value(output_value)
    return {"widget": kind, "value": value, "text": _display_text(obj, field_name, output_value)}


def _display_text(obj, field_name: str, output_value: str) -> str:
    try:
        field = get_target_field(type(obj), field_name)
    except PathError:
        return output_value
    from wagtail.fields import RichTextField

    if isinstance(field, RichTextField):
        return html_to_text(output_value)
    return output_value


def editor_result(obj: Page, action: LLMAction, interaction: LLMInteraction) -> dict:
    """The job result the browser fills the form from: one field, several fields (a
    structured action) or one field with candidates to choose from. ``warning`` says why
    the answer may be incomplete (cut off by the token limit), when it may."""
    result: dict[str, Any] = {"interaction": interaction.pk}
    if interaction.cut_warning:
        result["warning"] = interaction.cut_warning
    if interaction.output_values:
        result["fields"] = [
            {"field": name, "output": value, **_fill_value(obj, name, value)}
            for name, value in interaction.output_values.items()
        ]
        return result
    result.update(
        field=action.target_field,
        output=interaction.output_value,
        **_fill_value(obj, action.target_field, interaction.output_value),
    )
    if len(interaction.candidates or []) > 1:
        result["candidates"] = [
            {"index": index, "output": value, **_fill_value(obj, action.target_field, value)}
            for index, value in enumerate(interaction.candidates)
        ]
    return result


def pipeline_result(obj: Page, run, writers: list[LLMInteraction]) -> dict:
    """The job result of an editor pipeline run: one entry per written field, each with its
    own interaction (the writing step's; "<id>:<field>" for one field of a structured step),
    filled and reviewed like a structured answer's fields."""
    fields = []
    for i in writers:
        if i.output_values:  # a structured step: several fields, one outcome each
            for name, value in i.output_values.items():
                fields.append(
                    {
                        "field": name,
                        "output": value,
                        "interaction": f"{i.pk}:{name}",
                        "interaction_id": i.pk,
                        "outcome_field": name,
                        "step": i.step_name,
                        **_fill_value(obj, name, value),
                    }
                )
            continue
        fields.append(
            {
                "field": i.target_field,
                "output": i.output_value,
                "interaction": i.pk,
                "interaction_id": i.pk,
                "step": i.step_name,
                **({"warning": i.cut_warning} if i.cut_warning else {}),
                **_fill_value(obj, i.target_field, i.output_value),
            }
        )
    return {
        "run": run.pk,
        "interaction": writers[-1].pk if writers else None,
        "pipeline": True,
        "fields": fields,
    }


def _writers(run) -> list[LLMInteraction]:
    """The interactions of an editor pipeline run whose answers fill the form."""
    return list(
        run.interactions.filter(
            chunk_index__isnull=True,
            status=InteractionStatus.SUCCESS,
            outcome=InteractionOutcome.PENDING,
        ).order_by("step_index", "pk")
    )
