"""The sandbox's snippet demo: two gardening tips (a snippet with drafts and revisions) and a
"Summarize tip" action on ``local/extractive``, so the snippet editor's entry, the snippet
listing's bulk action and the command work with no key."""

from __future__ import annotations

TIPS = [
    (
        "Water in the morning",
        "Water the garden early in the morning. The soil stays cool, less water evaporates "
        "and the leaves dry before evening, so mildew has less chance.",
    ),
    (
        "Mulch the beds",
        "A layer of mulch keeps the soil moist and the weeds down. Spread five centimetres of "
        "bark or compost around the plants, away from their stems.",
    ),
]


def create_snippet_demo(stdout, reset: bool = False) -> None:
    from django.contrib.contenttypes.models import ContentType

    from blog.models import Tip
    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    for title, text in TIPS:
        if not Tip.objects.filter(title=title).exists():
            tip = Tip.objects.create(title=title, text=text, live=True)
            tip.save_revision()
    prompt, created = LLMPrompt.objects.get_or_create(
        slug="summarize-tip",
        defaults={"name": "Summarize tip", "template": "Summarize the tip “{title}”:\n\n{text}"},
    )
    if created or prompt.latest_revision_id is None:
        prompt.save_revision()
    action = LLMAction.objects.filter(slug="summarize-tip").first()
    if action is not None and not reset:
        stdout.write(f"Kept the existing action “{action.name}”.")
        return
    if action is None:
        action = LLMAction(slug="summarize-tip")
    action.name = "Summarize tip"
    action.prompt = prompt
    action.source_field = "text"
    action.target_field = "summary"
    action.model = "local/extractive"
    action.max_tokens = 120
    action.save()
    action.snippet_types.set([ContentType.objects.get_for_model(Tip)])
