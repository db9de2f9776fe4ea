"""What an action's ``clean()`` checks beyond its own fields: the provider policy, and its
paths and prompt variables against page types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext

if TYPE_CHECKING:
    from .actions import LLMAction


def provider_problems(action: LLMAction) -> dict[str, list[str]]:
    """What the provider policy refuses in the model, fallbacks, API base, key name and
    extra parameters, by field (see ``providers/policy.py``; checked again at call time).

    With a blank API base a model's requests go where its provider sends them by default
    (a local server for ``ollama/``, ``llamafile/``…; an ``*_API_BASE`` variable): that
    destination is checked like an API base, for the model and each fallback (which gets
    the action's API base only when it has the model's provider prefix).
    """
    from ..conf import get_setting
    from ..providers import split_model_string, validate_model_string
    from ..providers.destinations import destination
    from ..providers.policy import (
        PolicyError,
        check_api_base,
        check_destination,
        check_extra_params,
        check_key_name,
    )

    errors: dict[str, list[str]] = {}
    custom = set(get_setting("PROVIDERS") or {})
    main_prefix = split_model_string(action.model or "")[0]
    for name in [action.model, *action.fallback_model_list]:
        field = "model" if name == action.model else "fallback_models"
        try:
            validate_model_string(name)
        except ValueError as e:
            errors.setdefault(field, []).append(str(e))
            continue
        prefix = split_model_string(name)[0]
        if prefix == "local" or prefix in custom:
            continue
        base = action.api_base if prefix == main_prefix else ""
        try:
            check_destination(destination(name, base))
        except PolicyError as e:
            errors.setdefault(field, []).append(str(e))
    for field, check, value in (
        ("api_key_name", check_key_name, action.api_key_name),
        ("api_base", check_api_base, action.api_base),
    ):
        try:
            check(value)
        except PolicyError as e:
            errors.setdefault(field, []).append(str(e))
    try:
        check_extra_params(action.extra_params, (action.model or "").strip())
    except PolicyError as e:
        errors.setdefault("extra_params", []).append(str(e))
    return errors


def page_model_problems(action: LLMAction, page_models: list[type]) -> dict[str, list[str]]:
    """Field-specific errors for paths and prompt variables against ``page_models``."""
    from ..extraction import PathError, validate_source_path, validate_target_field
    from ..templating import (
        BUILTIN_VARIABLES,
        TemplateSyntaxError,
        is_step_variable,
        template_variables,
    )

    errors: dict[str, list[str]] = {}
    if getattr(action, "runs_on_image_blocks", False):
        return image_block_target_problems(action, page_models)
    for model in page_models:
        try:
            validate_source_path(model, action.source_field)
        except PathError as e:
            errors.setdefault("source_field", []).append(str(e))
        if action.is_structured:
            from ..structured import mapping_field_problems

            for problem in mapping_field_problems(model, action.output_fields):
                errors.setdefault("output_fields", []).append(problem)
            continue
        if getattr(action, "translates", False) and not (action.target_field or "").strip():
            continue  # a translation action writes whole pages, not one field
        try:
            validate_target_field(model, action.target_field, action.output_mode)
        except PathError as e:
            errors.setdefault("target_field", []).append(str(e))
    # A pipeline step's own prompt is an unsaved LLMPrompt (see LLMPipelineStep.as_action).
    prompt = action.prompt if action.prompt_id or "prompt" in action._state.fields_cache else None
    if prompt is not None:
        try:
            variables = template_variables(prompt.template)
        except TemplateSyntaxError as e:
            errors.setdefault("prompt", []).append(str(e))
            variables = []
        for var in variables:
            if var in BUILTIN_VARIABLES or var == "source" or is_step_variable(var):
                # {steps.x} names are checked where the action is used in a pipeline.
                continue
            for model in page_models:
                try:
                    validate_source_path(model, var)
                except PathError as e:
                    errors.setdefault("prompt", []).append(
                        gettext("The prompt uses {%(var)s}: %(error)s") % {"var": var, "error": e}
                    )
    return errors


def image_block_target_problems(action: LLMAction, page_models: list[type]) -> dict[str, list[str]]:
    """An action writing images' alt text targets a StreamField holding image blocks on
    every page type (its prompt's variables are the images', see ``image_block_problems``)."""
    from ..extraction.image_blocks import holds_image_blocks

    name = (action.target_field or "").strip()
    missing = [m._meta.verbose_name for m in page_models if not holds_image_blocks(m, name)]
    if not missing:
        return {}
    return {
        "target_field": [
            gettext(
                "“%(field)s” is not a StreamField with image blocks (ImageBlock) on: %(types)s."
            )
            % {"field": name, "types": ", ".join(str(m) for m in missing)}
        ]
    }
