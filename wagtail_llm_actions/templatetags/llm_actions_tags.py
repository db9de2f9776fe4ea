"""Template filters of the admin screens: ``{% load llm_actions_tags %}``."""

from django import template

from ..formatting import UNKNOWN, format_cost, format_cost_total, format_ms, format_number

register = template.Library()


@register.filter(name="llm_cost")
def llm_cost(value, unknown: str = "—") -> str:
    """``{{ interaction.cost|llm_cost }}`` → ``$0.00042``; ``|llm_cost:"unknown"`` for None."""
    return format_cost(value, unknown=unknown)


@register.filter(name="llm_ms")
def llm_ms(value) -> str:
    """``{{ interaction.latency_ms|llm_ms }}`` → ``2,226 ms`` (localised), a dash for None."""
    return format_ms(value)


@register.filter(name="llm_number")
def llm_number(value) -> str:
    """``{{ interaction.total_tokens|llm_number }}`` → ``12,345`` (localised), a dash for None."""
    return UNKNOWN if value is None or value == "" else format_number(value)


@register.simple_tag(name="llm_cost_total")
def llm_cost_total(value, unpriced=0) -> str:
    """``{% llm_cost_total totals.cost totals.unpriced %}`` → ``$1.20 + 14 calls at unknown
    price``: a sum that names the calls without a known price instead of counting them as 0."""
    return format_cost_total(value, unpriced)


@register.filter(name="llm_will_run")
def llm_will_run(plan) -> str:
    """``{{ plan|llm_will_run }}`` → "6 pages will run." (the start message's words)."""
    from ..job_counts import will_run_text

    return will_run_text(plan.will_run, exact=plan.is_exact)


@register.filter(name="llm_role")
def llm_role(role) -> str:
    """``{{ message.role|llm_role }}`` → "System", "User" (not the request's codes)."""
    from ..labels import role_label

    return role_label(role)


@register.filter(name="llm_error")
def llm_error(code) -> str:
    """``{{ interaction.error_code|llm_error }}`` → "Connection failed" (not ``connection``)."""
    from ..labels import error_label

    return error_label(code)


@register.simple_tag
def llm_provenance(page, field: str):
    """Where ``field`` of ``page`` came from, for a visible label on the site.

    ``{% llm_provenance page "summary" %}`` prints ``generated``, ``generated_reviewed`` or
    ``human``; ``{% llm_provenance page "summary" as p %}`` gives the details
    (``p.reviewed_by``, ``p.model``, ``p.generated_at``, ``p.similarity``…).
    """
    from ..provenance import HUMAN, FieldProvenance, field_provenance

    if page is None:
        return FieldProvenance(field, HUMAN)
    return field_provenance(getattr(page, "specific", page), field)


@register.simple_tag
def llm_provenance_jsonld(page, *fields: str):
    """``<script type="application/ld+json">`` describing the generated fields of ``page``
    (``{% llm_provenance_jsonld page "summary" "search_description" %}``; with no field
    named, every field an action wrote on the page)."""
    import json

    from django.utils.safestring import mark_safe

    from ..provenance import jsonld, written_fields

    if page is None:
        return ""
    page = getattr(page, "specific", page)
    names = list(fields) or written_fields(page)
    url = page.get_full_url() if hasattr(page, "get_full_url") else ""
    text = json.dumps(jsonld(page, names, url=url or ""), ensure_ascii=False)
    # Nothing inside may end the script element or open a comment.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return mark_safe(f'<script type="application/ld+json">{text}</script>')  # noqa: S308


@register.inclusion_tag("wagtail_llm_actions/images/edit_actions.html", takes_context=True)
def llm_image_actions(context, image) -> dict:
    """The image edit view's buttons: one per image action the user may run on ``image``."""
    from ..views.images import image_actions_for

    request = context.get("request")
    user = getattr(request, "user", None)
    actions = image_actions_for(user, image) if user is not None and image.pk else []
    return {"image": image, "actions": actions, "csrf_token": context.get("csrf_token")}
